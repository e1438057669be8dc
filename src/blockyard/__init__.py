"""Blockyard: Mage-compatible ML pipeline orchestrator.

Kept import-light on purpose: `import blockyard` must not pull pandas, sklearn,
mlflow or xgboost. Public API names resolve lazily.
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "run_pipeline", "Workspace"]


def __getattr__(name: str):
    if name == "run_pipeline":
        from blockyard.api import run_pipeline

        return run_pipeline
    if name == "Workspace":
        from blockyard.project.workspace import Workspace

        return Workspace
    raise AttributeError(f"module 'blockyard' has no attribute {name!r}")
