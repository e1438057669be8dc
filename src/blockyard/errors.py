"""Errors meant for people: each says what was wrong, where, and what to do."""
from __future__ import annotations

from pathlib import Path


class BlockyardError(Exception):
    """Base error. `file`, `line` and `block` locate the problem; `hint` says what to do."""

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        block: str | None = None,
        pipeline: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = str(file) if file is not None else None
        self.line = line
        self.block = block
        self.pipeline = pipeline
        self.hint = hint

    def location(self) -> str:
        parts = []
        if self.file:
            parts.append(f"{self.file}:{self.line}" if self.line else self.file)
        if self.pipeline:
            parts.append(f"pipeline '{self.pipeline}'")
        if self.block:
            parts.append(f"block '{self.block}'")
        return ", ".join(parts)

    def __str__(self) -> str:
        loc = self.location()
        text = f"{loc}: {self.message}" if loc else self.message
        if self.hint:
            text += f" ({self.hint})"
        return text

    def to_dict(self) -> dict:
        return {
            "message": self.message,
            "file": self.file,
            "line": self.line,
            "block": self.block,
            "pipeline": self.pipeline,
            "hint": self.hint,
        }


class ProjectError(BlockyardError):
    """The on-disk project is malformed: YAML, metadata, missing files, cycles."""


class PipelineNotFound(ProjectError):
    pass


class BlockLoadError(BlockyardError):
    """A block file could not be loaded: syntax error, no decorated function, import error."""


class BlockSignatureError(BlockyardError):
    """The block function cannot take the inputs its upstream blocks give."""


class BlockTimeout(BlockyardError):
    pass


class BlockTestFailed(BlockyardError):
    pass


class StoreError(BlockyardError):
    """An output could not be written or read back."""


class DatasetError(BlockyardError):
    """A dataset could not be downloaded, verified or found in the mirror."""
