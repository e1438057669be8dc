"""What a block, a pipeline check or a pipeline needs of the objects above it, as Protocols.

A BlockSpec points back to its PipelineSpec and a PipelineSpec to its Project. Typing
those back-references with the classes themselves would make block, validate, pipeline
and workspace import each other; with these Protocols the imports go one way:
workspace -> pipeline -> (block, validate) -> protocols.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Protocol


class WorkspaceLike(Protocol):
    """The parts of a Workspace (blockyard.project.workspace) that blocks use."""

    @property
    def root(self) -> Path: ...

    @property
    def name(self) -> str: ...

    @property
    def multi_project(self) -> bool: ...


class ProjectLike(Protocol):
    """The parts of a Project (blockyard.project.workspace) that pipelines use."""

    @property
    def name(self) -> str: ...

    @property
    def path(self) -> Path: ...

    @property
    def workspace(self) -> Any: ...  # a Workspace (see WorkspaceLike)

    def pipeline_uuids(self) -> list[str]: ...

    def pipeline(self, uuid: str) -> Any: ...  # a PipelineSpec


class PipelineLike(Protocol):
    """The parts of a PipelineSpec (blockyard.project.pipeline) that blocks and checks use."""

    @property
    def uuid(self) -> str: ...

    @property
    def path(self) -> Path | None: ...

    @property
    def project(self) -> ProjectLike | None: ...

    def all_blocks(self) -> Iterator[Any]: ...  # BlockSpecs

    def downstream_of(self, uuid: str, *, include_widgets: bool = False) -> list[str]: ...
