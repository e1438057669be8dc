"""Editing a pipeline: add, remove, rename and re-wire blocks, write block code.

PipelineEditing is a mixin of PipelineSpec (blockyard.project.pipeline), which gives it
raw, blocks, path, project, get_block, all_blocks and save. Every edit is checked first
and saved at once.
"""
from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

from blockyard.errors import ProjectError
from blockyard.project.block import BlockSpec
from blockyard.project.names import (
    BLOCK_TYPE_DIRS,
    GROUP_FOR_TYPE,
    check_block_type,
    check_block_uuid,
    extension_for,
)
from blockyard.project.protocols import ProjectLike
from blockyard.project.validate import cycle_error, find_cycle
from blockyard.project.yaml_io import type_name, write_text_atomic


def check_code(code: str, path: Path | str, *, block: str | None = None, pipeline: str | None = None) -> None:
    """compile() Python source; a syntax error becomes ProjectError with file and line."""
    if not isinstance(code, str):
        raise ProjectError(f"block code must be a string, not a {type_name(code)}", file=path, block=block)
    try:
        compile(code, str(path), "exec", dont_inherit=True)
    except SyntaxError as exc:
        text = (exc.text or "").strip()
        raise ProjectError(
            f"syntax error: {exc.msg}",
            file=path,
            line=exc.lineno,
            block=block,
            pipeline=pipeline,
            hint=f"near: {text}" if text else None,
        ) from None
    except ValueError as exc:  # e.g. null bytes
        raise ProjectError(f"invalid source: {exc}", file=path, block=block, pipeline=pipeline) from None


class PipelineEditing:
    # -- editing --------------------------------------------------------------------------
    def _error(self, message: str, *, block: str | None = None, hint: str | None = None) -> ProjectError:
        return ProjectError(message, file=self.path, pipeline=self.uuid, block=block, hint=hint)

    def _require_project(self) -> "ProjectLike":
        if self.project is None:
            raise self._error("pipeline is not part of a project; cannot place block files")
        return self.project

    def _default_path(self, block_type: str, uuid: str, language: str | None) -> Path:
        project = self._require_project()
        return project.path / BLOCK_TYPE_DIRS[block_type] / (uuid + extension_for(block_type, language))

    def _guard(self, path: Path, uuid: str) -> Path:
        """project/paths.py's guard on a block's file (inside the workspace, no symlink
        escape, never Blockyard's data folder, key or database files)."""
        from blockyard.project.paths import guard_path

        project = self._require_project()
        return guard_path(path, project.workspace, what=f"the file of block '{uuid}'")

    def _check_upstream(self, uuid: str, upstream: list[str]) -> list[str]:
        if isinstance(upstream, str) or not isinstance(upstream, (list, tuple)):
            raise self._error(f"upstream blocks must be a list of uuids, not {upstream!r}", block=uuid)
        out: list[str] = []
        for up in upstream:
            if up == uuid:
                raise cycle_error([uuid, uuid], self)
            if self.get_block(up) is None:
                raise self._error(
                    f"block '{uuid}' cannot have unknown upstream block '{up}'",
                    block=uuid,
                    hint="blocks: " + (", ".join(b.uuid for b in self.all_blocks()) or "none"),
                )
            if up not in out:
                out.append(up)
        return out

    def _check_acyclic(self, changed: str, upstream: list[str]) -> None:
        entries = list(self.all_blocks())
        mapping = {b.uuid: b.upstream_blocks for b in reversed(entries)}
        mapping[changed] = upstream
        order = [b.uuid for b in entries]
        if changed not in order:
            order.append(changed)
        cycle = find_cycle(order, mapping)
        if cycle is not None:
            raise cycle_error(cycle, self)

    def add_block(
        self,
        uuid: str,
        type: str,  # noqa: A002 - matches Mage's key
        upstream: list[str] | None = None,
        code: str | None = None,
        *,
        name: str | None = None,
        language: str = "python",
        configuration: dict | None = None,
        after: str | None = None,
    ) -> BlockSpec:
        """Add a block (and its file from the type's template, or `code`, if the file is absent).

        `after`: the uuid of the block it is inserted behind in the pipeline's order
        (the notebook's "add between blocks"); by default it goes last.

        An existing file at the default path is reused (Mage shares block files
        between pipelines), unless `code` is given: then it is an error.
        """
        check_block_uuid(uuid)
        check_block_type(type)
        if type == "markdown":
            language = "markdown"
        if self.get_block(uuid) is not None:
            raise self._error(f"block '{uuid}' already exists in this pipeline", block=uuid)
        if after is not None and self.get_block(after) is None:
            raise self._error(f"cannot add block '{uuid}' after '{after}': no such block in this pipeline", block=uuid)
        upstream = self._check_upstream(uuid, list(upstream or []))
        path = self._default_path(type, uuid, language)
        self._guard(path, uuid)
        if code is not None:
            if path.exists():
                raise self._error(
                    f"block file already exists: {path}",
                    block=uuid,
                    hint="add the block without code to reuse the file, or use write_block_code()",
                )
            if language == "python":
                check_code(code, path, block=uuid, pipeline=self.uuid)
        config = dict(configuration or {})
        raw = BlockSpec.new_raw(uuid, type, upstream=upstream, name=name, language=language, configuration=config)
        group = GROUP_FOR_TYPE.get(type, "blocks")
        block = BlockSpec(raw, self, group=group)
        block.configuration.setdefault("file_source", {"path": block.relative_file_source(path)})
        if not path.exists():
            if code is None:
                from blockyard.project.templating import block_template  # editing only: start-up

                code = block_template(type, language)
            write_text_atomic(path, code)
        entries = getattr(self, group)
        at = next((i + 1 for i, b in enumerate(entries) if b.uuid == after), len(entries))
        entries.insert(at, block)  # `after` in another group (a chart after a block): last
        self.save()
        return block

    def remove_block(self, uuid: str, delete_file: bool = False) -> BlockSpec:
        """Remove a block and every reference to it; optionally delete its file."""
        block = self.block(uuid)
        path = block.file_path if delete_file else None
        if path is not None:
            self._guard(path, uuid)
        getattr(self, block.group).remove(block)
        for other in self.all_blocks():
            if uuid in other.upstream_blocks:
                other.upstream_blocks = [u for u in other.upstream_blocks if u != uuid]
            for key in ("callback_blocks", "conditional_blocks"):
                refs = other.raw.get(key)
                if isinstance(refs, list) and uuid in refs:
                    other.raw[key] = [r for r in refs if r != uuid]
        self.save()
        if path is not None and path.is_file():
            path.unlink()
        block.pipeline = None
        return block

    def rename_block(self, old: str, new: str) -> BlockSpec:
        """Rename a block: move its file to the new uuid's path and fix every reference.

        Other pipelines of the same project that use the same file are updated too.
        """
        check_block_uuid(new, "new block uuid")
        block = self.block(old)
        if old == new:
            return block
        if self.get_block(new) is not None:
            raise self._error(f"cannot rename '{old}' to '{new}': block '{new}' already exists", block=old)
        old_path = block.file_path
        new_path = (
            self._default_path(block.type, new, block.language) if block.type in BLOCK_TYPE_DIRS else None
        )
        move = old_path is not None and new_path is not None and old_path.is_file() and old_path != new_path
        if move:
            self._guard(old_path, old)
            self._guard(new_path, new)
        if move and new_path.exists():
            raise self._error(f"cannot rename '{old}' to '{new}': {new_path} already exists", block=old)
        sharing: list[PipelineEditing] = []  # other PipelineSpecs
        if move and self.project is not None:
            for other_uuid in self.project.pipeline_uuids():
                if other_uuid == self.uuid:
                    continue
                try:
                    other = self.project.pipeline(other_uuid)
                except ProjectError:
                    continue
                other_block = other.get_block(old)
                if other_block is not None and other_block.file_path == old_path:
                    if other.get_block(new) is not None:
                        raise self._error(
                            f"cannot rename '{old}' to '{new}': pipeline '{other_uuid}' shares the file "
                            f"and already has a block '{new}'",
                            block=old,
                        )
                    sharing.append(other)
        if move:
            new_path.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(old_path), str(new_path))
            _remove_empty_dirs(old_path.parent, stop=self._require_project().path)
        for spec in (self, *sharing):
            spec._apply_rename(old, new, new_path)
            spec.save()
        return block

    def _apply_rename(self, old: str, new: str, new_path: Path | None) -> None:
        block = self.block(old)
        block.uuid = new
        if block.raw.get("name") == old:
            block.name = new
        if new_path is not None and block.file_source is not None:
            block.configuration["file_source"]["path"] = block.relative_file_source(new_path)
        for other in self.all_blocks():
            if old in other.upstream_blocks:
                other.upstream_blocks = [new if u == old else u for u in other.upstream_blocks]
            for key in ("callback_blocks", "conditional_blocks"):
                refs = other.raw.get(key)
                if isinstance(refs, list) and old in refs:
                    other.raw[key] = [new if r == old else r for r in refs]

    def set_upstream(self, uuid: str, upstream: list[str]) -> BlockSpec:
        """Replace a block's upstream list (unknown uuids and cycles are refused)."""
        block = self.block(uuid)
        upstream = self._check_upstream(uuid, upstream)
        self._check_acyclic(uuid, upstream)
        block.upstream_blocks = upstream
        self.save()
        return block

    def set_variables(self, variables: dict) -> None:
        """Replace the pipeline's `variables` mapping."""
        if not isinstance(variables, dict):
            raise self._error(f"variables must be a mapping, not a {type_name(variables)}")
        self.variables = copy.deepcopy(variables)
        self.save()

    def read_block_code(self, uuid: str) -> str:
        block = self.block(uuid)
        path = block.file_path
        if path is None:
            raise self._error(f"block '{uuid}' of type '{block.type}' has no code file", block=uuid)
        self._guard(path, uuid)
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise self._error(f"file for block '{uuid}' not found: expected {path}", block=uuid) from None

    def write_block_code(self, uuid: str, code: str) -> Path:
        """Write a block's file; Python is compile()d first and a syntax error leaves the file untouched."""
        block = self.block(uuid)
        path = block.file_path
        if path is None:
            raise self._error(f"block '{uuid}' of type '{block.type}' has no code file", block=uuid)
        if block.language == "python" and block.type != "markdown":
            check_code(code, path, block=uuid, pipeline=self.uuid)
        elif not isinstance(code, str):
            raise self._error(f"block code must be a string, not a {type_name(code)}", block=uuid)
        self._guard(path, uuid)
        write_text_atomic(path, code)
        return path


def _remove_empty_dirs(folder: Path, *, stop: Path) -> None:
    """Remove now-empty subfolders left by moving `a/b` blocks, up to the type folder."""
    try:
        folder = folder.resolve()
        stop = stop.resolve()
    except OSError:
        return
    while folder != stop and stop in folder.parents and folder.parent != stop:
        try:
            os.rmdir(folder)
        except OSError:
            return
        folder = folder.parent
