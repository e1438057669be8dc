"""PipelineSpec: a pipeline's metadata.yaml, its checks and the editing API."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Iterator, NamedTuple

from blockyard.errors import ProjectError
from blockyard.project.block import BlockSpec, parse_block
from blockyard.project import parse_cache
from blockyard.project.names import GROUPS
from blockyard.project.pipeline_edit import PipelineEditing, check_code
from blockyard.project.protocols import ProjectLike
from blockyard.project.validate import derive_downstream, pipeline_problems
from blockyard.project.yaml_io import (
    YamlDoc,
    dump_yaml,
    mapping_doc,
    parse_yaml,
    plain_copy,
    read_mapping,
    read_text,
    set_key,
    type_name,
    write_text_atomic,
)

# Pipeline-level fields kept as attributes and written back when changed.
_FIELDS = ("name", "description", "type", "tags", "variables", "retry_config")


class PipelineSpec(PipelineEditing):
    """One pipeline (`pipelines/<uuid>/metadata.yaml`).

    `raw` is the whole file as loaded; unknown keys are kept and written back.
    Editing methods (add_block, remove_block, rename_block, set_upstream,
    set_variables) change the spec and save it at once; write_block_code writes
    the block file.
    """

    def __init__(
        self,
        raw: dict,
        *,
        uuid: str | None = None,
        project: "ProjectLike | None" = None,
        path: Path | None = None,
        doc: YamlDoc | None = None,
        _parsed: "_Parsed | None" = None,
    ) -> None:
        # From a cached parse (`raw` is `_parsed.raw`): the spec's own copy of the file is
        # made when `raw` is first asked for (a run never asks; an edit does).
        self._raw: dict | None = None if _parsed is not None and raw is _parsed.raw else raw
        self._loaded_raw = _parsed.raw if _parsed is not None else None
        self.project = project
        self.path = Path(path) if path is not None else None
        self.uuid: str = uuid or str(raw.get("uuid") or "")
        file = self.path or Path("metadata.yaml")
        line_of = doc.line_of if doc is not None else (lambda *keys: None)

        def expect(key: str, kinds: tuple[type, ...], expected: str) -> None:
            value = raw.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, kinds)):
                raise ProjectError(
                    f"'{key}' must be {expected}, not a {type_name(value)}",
                    file=file,
                    line=line_of(key),
                    pipeline=self.uuid,
                )

        if _parsed is None:  # a cached parse was checked when it was first loaded
            for group in GROUPS:
                expect(group, (list,), "a list of blocks")
            expect("variables", (dict,), "a mapping of names to values")
            expect("tags", (list,), "a list")
            expect("name", (str,), "a string")
            expect("type", (str,), "a string")
            expect("retry_config", (dict,), "a mapping or null")

        self.name: str = raw.get("name") if raw.get("name") is not None else self.uuid
        description = raw.get("description")
        self.description: str | None = description if description is None else str(description)
        self.type: str = raw.get("type") or "python"
        self.tags: list = list(raw.get("tags") or [])
        self.variables: dict = plain_copy(raw.get("variables") or {})
        self.retry_config: dict | None = plain_copy(raw.get("retry_config"))

        self.blocks: list[BlockSpec] = []
        self.callbacks: list[BlockSpec] = []
        self.conditionals: list[BlockSpec] = []
        self.widgets: list[BlockSpec] = []
        for group in GROUPS:
            target = getattr(self, group)
            if _parsed is not None:
                own = self._raw.get(group) or [] if self._raw is not None else None
                for i, (kept, (line, upstream_lines)) in enumerate(zip(_parsed.raw.get(group) or [], _parsed.lines[group])):
                    entry = own[i] if own is not None else None
                    target.append(BlockSpec(entry, self, group=group, line=line, upstream_lines=upstream_lines, _loaded=kept))
                continue
            for index, entry in enumerate(raw.get(group) or []):
                target.append(
                    parse_block(
                        entry,
                        group=group,
                        index=index,
                        file=file,
                        line_of=line_of,
                        pipeline=self,
                        pipeline_uuid=self.uuid,
                        item_lines=doc.item_lines if doc is not None else None,
                    )
                )
        self._snapshot = self._values()
        # What save() compares against; never changed in place (save() replaces it), so
        # specs loaded from one cached parse share it.
        self._saved_raw = _parsed.raw if _parsed is not None else plain_copy(raw)

    # -- the file's data ----------------------------------------------------------------
    @property
    def raw(self) -> dict:
        """The whole metadata.yaml as loaded, this spec's own to change."""
        raw = self._raw
        if raw is None:
            memo: dict = {}
            raw = self._raw = plain_copy(self._loaded_raw, memo)
            for block in self.all_blocks():  # each block's raw is its entry in this copy
                if block._raw is None and block._loaded is not None:
                    block._raw = memo.get(id(block._loaded))
        return raw

    @raw.setter
    def raw(self, value: dict) -> None:
        self._raw = value

    def raw_value(self, key: str, default: Any = None) -> Any:
        """`raw.get(key, default)` without making the spec's own copy of the file: for
        reading only (the value may be shared with other loads)."""
        raw = self._raw if self._raw is not None else self._loaded_raw
        return raw.get(key, default)

    # -- loading ------------------------------------------------------------------------
    @classmethod
    def load(cls, path: Path | str, project: "ProjectLike | None" = None) -> "PipelineSpec":
        """Read metadata.yaml. An unchanged file (same text as at the last load in this
        process) is not parsed again: the spec is rebuilt from that parse, and copies it
        only when its `raw` is asked for."""
        path = Path(path)
        uuid = path.parent.name if path.parent.parent.name == "pipelines" else None
        text = read_text(path)
        parsed = _cached(path, text)
        root = _workspace_root(project)
        if parsed is None and root is not None:  # a fresh process: the parse kept on disk
            kept = parse_cache.load(root, path, text)
            if kept is not None:
                parsed = _Parsed(text, kept[0], kept[1])
                _remember(path, parsed)
        if parsed is not None:
            return cls(parsed.raw, uuid=uuid or parsed.raw.get("uuid"), project=project, path=path, _parsed=parsed)
        doc = mapping_doc(parse_yaml(text, path), "pipeline metadata", empty_ok=False)
        spec = cls(doc.data, uuid=uuid or doc.data.get("uuid"), project=project, path=path, doc=doc)
        lines = {group: [(b.line, tuple(b.upstream_lines)) for b in getattr(spec, group)] for group in GROUPS}
        _remember(path, _Parsed(text, spec._saved_raw, lines))
        if root is not None:
            parse_cache.save(root, path, text, spec._saved_raw, lines)
        return spec

    def reload(self) -> "PipelineSpec":
        if self.path is None:
            raise ProjectError("pipeline has no file to reload from", pipeline=self.uuid)
        return PipelineSpec.load(self.path, self.project)

    # -- lookups --------------------------------------------------------------------------
    def all_blocks(self) -> Iterator[BlockSpec]:
        """Blocks, then callbacks, conditionals and widgets, each in file order."""
        for group in GROUPS:
            yield from getattr(self, group)

    def block_uuids(self) -> list[str]:
        return [b.uuid for b in self.blocks]

    def get_block(self, uuid: str) -> BlockSpec | None:
        for block in self.all_blocks():
            if block.uuid == uuid:
                return block
        return None

    def block(self, uuid: str) -> BlockSpec:
        block = self.get_block(uuid)
        if block is None:
            raise ProjectError(
                f"no block '{uuid}' in this pipeline",
                file=self.path,
                pipeline=self.uuid,
                hint="blocks: " + (", ".join(b.uuid for b in self.all_blocks()) or "none"),
            )
        return block

    def downstream_of(self, uuid: str, *, include_widgets: bool = False) -> list[str]:
        """Uuids whose `upstream_blocks` contain `uuid`, in file order.

        Only the `blocks` list by default; `include_widgets=True` also looks at
        callbacks, conditionals and widgets (as Mage's downstream_blocks do).
        """
        entries = list(self.all_blocks()) if include_widgets else self.blocks
        return [b.uuid for b in entries if uuid in b.upstream_blocks and b.uuid != uuid]

    def downstream_map(self) -> dict[str, list[str]]:
        """`{uuid: downstream_of(uuid)}` for every uuid listed upstream, in one pass
        (downstream_of for each block in turn would be O(n^2))."""
        out: dict[str, list[str]] = {}
        for b in self.blocks:
            for up in dict.fromkeys(b.upstream_blocks):
                if up != b.uuid:
                    out.setdefault(up, []).append(b.uuid)
        return out

    def upstream_of(self, uuid: str) -> list[str]:
        return list(self.block(uuid).upstream_blocks)

    def triggers(self) -> list[dict]:
        """Raw entries of `triggers.yaml` next to metadata.yaml ([] if there is none)."""
        if self.path is None:
            return []
        doc = read_mapping(self.path.parent / "triggers.yaml", "triggers file", missing_ok=True)
        triggers = doc.data.get("triggers") or []
        if not isinstance(triggers, list) or not all(isinstance(t, dict) for t in triggers):
            raise ProjectError(
                "'triggers' must be a list of mappings",
                file=doc.path,
                line=doc.line_of("triggers"),
                pipeline=self.uuid,
            )
        return triggers

    # -- checks ---------------------------------------------------------------------------
    def problems(self, *, check_files: bool = True) -> list[ProjectError]:
        return pipeline_problems(self, check_files=check_files)

    def validate(self, *, check_files: bool = True) -> "PipelineSpec":
        """Raise the first problem (ProjectError, with `.problems` holding all of them)."""
        problems = self.problems(check_files=check_files)
        if problems:
            first = problems[0]
            if len(problems) > 1:
                first.message += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
            first.problems = problems  # type: ignore[attr-defined]
            raise first
        return self

    # -- writing --------------------------------------------------------------------------
    def _values(self) -> dict[str, Any]:
        return {f: plain_copy(getattr(self, f)) for f in _FIELDS}

    def sync_raw(self) -> dict:
        """Bring `raw` up to date: changed fields, block lists, recomputed downstream_blocks."""
        current = self._values()
        for field, value in current.items():
            if value != self._snapshot[field]:
                set_key(self.raw, field, plain_copy(value))
        self._snapshot = current
        entries = list(self.all_blocks())
        for block in entries:
            block.sync_raw()
        for group in GROUPS:
            blocks = getattr(self, group)
            if group in self.raw or blocks:
                old = self.raw.get(group)
                new = [b.raw for b in blocks]
                if not (old is None and not new):
                    set_key(self.raw, group, new)
        downstream = derive_downstream([b.uuid for b in entries], {b.uuid: b.upstream_blocks for b in reversed(entries)})
        for block in entries:
            new = downstream.get(block.uuid, [])
            old = block.raw.get("downstream_blocks")
            if isinstance(old, list) and len(old) == len(new) and set(old) == set(new):
                continue  # same blocks: keep the file's order
            if "downstream_blocks" in block.raw or new:
                set_key(block.raw, "downstream_blocks", new)
        return self.raw

    def save(self) -> bool:
        """Write metadata.yaml if anything changed (atomic). Returns True if the file was written."""
        if self.path is None:
            raise ProjectError("pipeline has no metadata.yaml path to save to", pipeline=self.uuid)
        self.sync_raw()
        if self.raw == self._saved_raw and self.path.is_file():
            return False
        write_text_atomic(self.path, dump_yaml(self.raw))
        self._saved_raw = plain_copy(self.raw)
        return True

    def to_dict(self) -> dict[str, Any]:
        downstream = self.downstream_map()
        return {
            "uuid": self.uuid,
            "project": self.project.name if self.project is not None else None,
            "name": self.name,
            "description": self.description,
            "type": self.type,
            "tags": list(self.tags),
            "variables": plain_copy(self.variables),
            "retry_config": plain_copy(self.retry_config),
            "path": str(self.path) if self.path is not None else None,
            **{group: [b.to_dict(downstream=downstream) for b in getattr(self, group)] for group in GROUPS},
        }

    def __repr__(self) -> str:
        project = self.project.name if self.project is not None else None
        return f"PipelineSpec(project={project!r}, uuid={self.uuid!r}, blocks={self.block_uuids()!r})"


class _Parsed(NamedTuple):
    """A checked parse of one metadata.yaml, never changed: specs built from it read it
    (raw_value, their values as loaded) and make their own copy when `raw` is asked for."""

    text: str
    raw: dict
    lines: dict[str, list[tuple[int | None, tuple[int | None, ...]]]]  # per group: (line, upstream lines)


_CACHE_SIZE = 32
_cache: dict[str, _Parsed] = {}  # path -> last parse, least recently used first
_cache_lock = threading.Lock()


def _workspace_root(project: Any) -> Path | None:
    root = getattr(getattr(project, "workspace", None), "root", None)
    return Path(root) if root is not None else None


def _cached(path: Path, text: str) -> _Parsed | None:
    """The last parse of `path` if the file still holds exactly the text parsed then."""
    key = str(path)
    with _cache_lock:
        parsed = _cache.pop(key, None)
        if parsed is None or parsed.text != text:
            return None
        _cache[key] = parsed
        return parsed


def _remember(path: Path, parsed: _Parsed) -> None:
    with _cache_lock:
        _cache.pop(str(path), None)
        _cache[str(path)] = parsed
        while len(_cache) > _CACHE_SIZE:
            del _cache[next(iter(_cache))]


__all__ = ["PipelineSpec", "check_code"]
