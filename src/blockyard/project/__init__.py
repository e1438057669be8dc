"""On-disk Mage-compatible project format: read, validate, write, scaffold.

Light on purpose: only PyYAML and the standard library.
"""
from __future__ import annotations

from blockyard.project.block import BlockSpec
from blockyard.project.names import BLOCK_TYPE_DIRS, check_block_uuid, check_flat_name
from blockyard.project.pipeline import PipelineSpec
from blockyard.project.validate import find_cycle
from blockyard.project.workspace import Project, Workspace

_SCAFFOLD = ("init_workspace", "new_block", "new_pipeline", "new_project")


def __getattr__(name: str):
    # scaffolding (templates via importlib.resources) loads on first use, not on every run's start-up
    if name in _SCAFFOLD:
        from blockyard.project import scaffold

        return getattr(scaffold, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "BLOCK_TYPE_DIRS",
    "BlockSpec",
    "PipelineSpec",
    "Project",
    "Workspace",
    "check_block_uuid",
    "check_flat_name",
    "find_cycle",
    "init_workspace",
    "new_block",
    "new_pipeline",
    "new_project",
]
