"""BlockSpec: one entry of a pipeline's metadata.yaml (`blocks`, `callbacks`, `conditionals`, `widgets`)."""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Sequence

from blockyard.errors import ProjectError
from blockyard.project.names import (
    BLOCK_TYPE_DIRS,
    EXECUTABLE_TYPES,
    extension_for,
    is_safe_relative,
)
from blockyard.project.protocols import PipelineLike, ProjectLike
from blockyard.project.yaml_io import ATOMIC_TYPES, plain_copy, set_key, type_name

# Fields kept as attributes and written back to `raw` when changed (the keys of `_fields`).
_FIELDS = ("uuid", "name", "type", "language", "upstream_blocks", "configuration", "retry_config", "timeout")


class BlockSpec:
    """A block as listed in pipeline metadata.

    Attributes mirror Mage's keys; everything else stays in `raw` and is written
    back untouched. `downstream_blocks` is derived from the other blocks'
    `upstream_blocks` (Mage's own downstream lists are often stale).
    """

    def __init__(
        self,
        raw: dict | None,
        pipeline: "PipelineLike | None" = None,
        *,
        group: str = "blocks",
        line: int | None = None,
        upstream_lines: "Sequence[int | None] | None" = None,
        _loaded: dict | None = None,
    ) -> None:
        """`_loaded`: this entry in a cached parse, never changed. `raw` None: the block's
        own copy of it is made when `raw` is first asked for (with the pipeline's, so that
        `pipeline.raw` still holds this very `raw`); the values as loaded are worked out
        from it when first needed (sync_raw), not kept."""
        self._raw = raw
        self.pipeline = pipeline
        self.group = group
        self.line = line  # line of this entry in metadata.yaml when loaded (None for new blocks)
        self.upstream_lines = upstream_lines or ()  # read only
        fields = _fields(raw if raw is not None else _loaded)
        self.uuid: str = fields["uuid"]
        self.type: str = fields["type"]
        self.name: str = fields["name"]
        self.language: str = fields["language"]
        self.upstream_blocks: list[str] = fields["upstream_blocks"]
        self.configuration: dict = plain_copy(fields["configuration"])
        self.retry_config: dict | None = plain_copy(fields["retry_config"])
        self.timeout: float | None = fields["timeout"]
        self._loaded = _loaded
        self._snapshot = self._values() if _loaded is None else None
        self._paths: tuple | None = None  # (inputs, file_source candidates, default path) of file_path

    # -- the metadata entry -----------------------------------------------------------
    @property
    def raw(self) -> dict:
        """This block's entry in metadata.yaml, its own to change."""
        raw = self._raw
        if raw is None:
            pipeline = self.pipeline
            if pipeline is not None and getattr(pipeline, "_raw", False) is None:
                pipeline.raw  # copies the whole file, this block's entry with it
            raw = self._raw
            if raw is None:  # not in that pipeline's lists any more
                raw = self._raw = plain_copy(self._loaded)
        return raw

    @raw.setter
    def raw(self, value: dict) -> None:
        self._raw = value

    def raw_value(self, key: str, default: Any = None) -> Any:
        """`raw.get(key, default)` without making the block's own copy of its entry: for
        reading only (the value may be shared with other loads)."""
        raw = self._raw if self._raw is not None else self._loaded
        return raw.get(key, default)

    # -- derived values -------------------------------------------------------------
    @property
    def dynamic(self) -> bool:
        return bool(self.configuration.get("dynamic"))

    @dynamic.setter
    def dynamic(self, value: bool) -> None:
        self.configuration["dynamic"] = bool(value)

    @property
    def reduce_output(self) -> bool:
        return bool(self.configuration.get("reduce_output"))

    @reduce_output.setter
    def reduce_output(self, value: bool) -> None:
        self.configuration["reduce_output"] = bool(value)

    @property
    def file_source(self) -> str | None:
        fs = self.configuration.get("file_source")
        if isinstance(fs, dict) and isinstance(fs.get("path"), str) and fs["path"].strip():
            return fs["path"].strip()
        return None

    @property
    def callback_blocks(self) -> list[str]:
        return list(self.raw_value("callback_blocks") or [])

    @property
    def conditional_blocks(self) -> list[str]:
        return list(self.raw_value("conditional_blocks") or [])

    @property
    def executable(self) -> bool:
        """True for types whose code runs in a pipeline run (their file must exist)."""
        return self.type in EXECUTABLE_TYPES

    @property
    def downstream_blocks(self) -> list[str]:
        """Blocks (in the pipeline's `blocks` list) that list this one as upstream."""
        if self.pipeline is None:
            return list(self.raw_value("downstream_blocks") or [])
        return self.pipeline.downstream_of(self.uuid)

    @property
    def project(self) -> "ProjectLike | None":
        return self.pipeline.project if self.pipeline is not None else None

    @property
    def default_file_path(self) -> Path | None:
        """`<project>/<type dir>/<uuid><ext>`, or None for types without a code file."""
        return _default_path(self.project, self.type, self.uuid, self.language)

    @property
    def file_path(self) -> Path | None:
        """Where this block's code lives.

        `configuration.file_source.path` is tried against the workspace root, the
        project folder, and with a leading workspace/project folder name stripped;
        the first existing file wins. Otherwise `<project>/<type dir>/<uuid>.py`
        (`.md` for markdown). None for types without files (global_data_product, ...).
        """
        project = self.project
        if project is None or self.type == "global_data_product":
            return None
        source = self.file_source
        if not source:  # the default path alone: _default_path remembers it
            return _default_path(project, self.type, self.uuid, self.language)
        # The paths depend only on these; whether a candidate exists is asked every time.
        ws = project.workspace
        inputs = (project, project.path, ws.root, ws.name, ws.multi_project, self.type, self.uuid, self.language, source)
        paths = self._paths
        if paths is None or paths[0] != inputs:
            candidates = _source_candidates(source, project)
            paths = self._paths = (inputs, candidates, _default_path(project, self.type, self.uuid, self.language))
        for candidate in paths[1]:
            if candidate.is_file():
                return candidate
        return paths[2]

    def relative_file_source(self, path: Path) -> str:
        """`path` written the way Mage writes `file_source.path` (relative to the workspace root)."""
        project = self.project
        assert project is not None
        ws = project.workspace
        base = ws.root if ws.multi_project else ws.root.parent
        return PurePosixPath(Path(os.path.relpath(path, base))).as_posix()

    # -- writing back ----------------------------------------------------------------
    def _values(self) -> dict[str, Any]:
        """The fields kept as attributes and written back to `raw` when changed, copied
        (an attribute may be changed in place)."""
        values = {}
        for f in _FIELDS:
            value = getattr(self, f)
            values[f] = value if type(value) in ATOMIC_TYPES else plain_copy(value)
        return values

    def sync_raw(self) -> dict:
        """Write changed attributes into `raw` (unchanged ones are left exactly as loaded)."""
        current = self._values()
        snapshot = self._snapshot if self._snapshot is not None else _fields(self._loaded)
        for field, value in current.items():
            if value != snapshot[field]:
                if field == "timeout" and value is not None and float(value).is_integer():
                    value = int(value)
                set_key(self.raw, field, plain_copy(value))
        self._snapshot = current
        return self.raw

    def to_dict(self, *, downstream: dict[str, list[str]] | None = None) -> dict[str, Any]:
        """`downstream`: the pipeline's downstream_map(), when converting all its blocks."""
        path = self.file_path
        if downstream is not None and self.pipeline is not None:
            downstream_blocks = list(downstream.get(self.uuid, []))
        else:
            downstream_blocks = self.downstream_blocks
        return {
            "uuid": self.uuid,
            "name": self.name,
            "type": self.type,
            "language": self.language,
            "group": self.group,
            "upstream_blocks": list(self.upstream_blocks),
            "downstream_blocks": downstream_blocks,
            "configuration": plain_copy(self.configuration),
            "retry_config": plain_copy(self.retry_config),
            "timeout": self.timeout,
            "dynamic": self.dynamic,
            "reduce_output": self.reduce_output,
            "file_path": str(path) if path is not None else None,
        }

    def __repr__(self) -> str:
        return f"BlockSpec(uuid={self.uuid!r}, type={self.type!r}, upstream={self.upstream_blocks!r})"

    @classmethod
    def new_raw(
        cls,
        uuid: str,
        block_type: str,
        *,
        upstream: list[str] | None = None,
        name: str | None = None,
        language: str = "python",
        configuration: dict | None = None,
    ) -> dict:
        """A metadata entry with the keys Mage writes, sorted as Mage sorts them."""
        return {
            "all_upstream_blocks_executed": True,
            "color": None,
            "configuration": dict(configuration or {}),
            "downstream_blocks": [],
            "executor_config": None,
            "executor_type": "local_python",
            "has_callback": False,
            "language": language,
            "name": name if name is not None else uuid,
            "retry_config": None,
            "status": "not_executed",
            "timeout": None,
            "type": block_type,
            "upstream_blocks": list(upstream or []),
            "uuid": uuid,
        }


def _fields(data: dict) -> dict[str, Any]:
    """The attribute values a metadata entry gives (mutable ones not copied)."""
    uuid = data["uuid"]
    timeout = data.get("timeout")
    return {
        "uuid": uuid,
        "name": data.get("name") if data.get("name") is not None else uuid,
        "type": data.get("type") or "",
        "language": data.get("language") or "python",
        "upstream_blocks": list(data.get("upstream_blocks") or []),
        "configuration": data.get("configuration") or {},
        "retry_config": data.get("retry_config"),
        "timeout": float(timeout) if timeout is not None else None,
    }


_default_paths: dict[tuple, Path | None] = {}  # pure function of its key; Paths are immutable


def _default_path(project: "ProjectLike | None", block_type: str, uuid: str, language: str) -> Path | None:
    if project is None:
        return None
    key = (project.path, block_type, uuid, language)
    try:
        path = _default_paths.get(key, _default_paths)  # the dict itself: not remembered yet
    except TypeError:  # an unhashable attribute someone set
        path = _default_paths
    if path is not _default_paths:
        return path
    folder = BLOCK_TYPE_DIRS.get(block_type)
    if folder is None or not is_safe_relative(uuid):
        path = None
    else:
        path = project.path / folder / (uuid + extension_for(block_type, language))
    if len(_default_paths) >= 50_000:  # bounded: many projects or renames in a long-lived server
        _default_paths.clear()
    try:
        _default_paths[key] = path
    except TypeError:  # an unhashable attribute someone set: just don't remember it
        pass
    return path


def _source_candidates(source: str, project: "ProjectLike") -> list[Path]:
    ws = project.workspace
    root = ws.root
    parts = [p for p in PurePosixPath(source.replace("\\", "/")).parts if p not in ("/", "")]
    if not parts:
        return []
    bases: list[tuple[Path, list[str]]] = [(root, parts), (project.path, parts)]
    for i, part in enumerate(parts[:-1]):
        if part == ws.name:
            bases.append((root, parts[i + 1 :]))
        if part == project.path.name:
            bases.append((project.path, parts[i + 1 :]))
    if not ws.multi_project:
        bases.append((root.parent, parts))
    out: list[Path] = []
    root_str = os.path.normpath(root)
    for base, rel in bases:
        if not rel or ".." in rel or any(":" in p for p in rel):
            continue
        candidate = Path(os.path.normpath(base.joinpath(*rel)))
        if candidate != Path(root_str) and not str(candidate).startswith(root_str + os.sep):
            continue  # never leave the workspace
        if candidate not in out:
            out.append(candidate)
    return out


def parse_block(
    raw: Any,
    *,
    group: str,
    index: int,
    file: Path,
    line_of: Callable[..., int | None],
    pipeline: "PipelineLike | None",
    pipeline_uuid: str | None,
    item_lines: Callable[..., list[int | None]] | None = None,
) -> BlockSpec:
    """Check one metadata entry's types and build its BlockSpec (ProjectError on bad input).

    `item_lines(count, *keys)`, when given, gives the lines of a list's items at once
    (what `line_of(*keys, i)` gives for each i)."""
    if not _plainly_valid(raw):
        _check_entry(raw, group=group, index=index, file=file, line_of=line_of, pipeline_uuid=pipeline_uuid)
    upstream = raw.get("upstream_blocks")
    if not upstream:
        upstream_lines: list[int | None] = []
    elif item_lines is not None:
        upstream_lines = item_lines(len(upstream), group, index, "upstream_blocks")
    else:
        upstream_lines = [line_of(group, index, "upstream_blocks", i) for i in range(len(upstream))]
    return BlockSpec(raw, pipeline, group=group, line=line_of(group, index), upstream_lines=tuple(upstream_lines))


def _plainly_valid(raw: Any) -> bool:
    """A quick test, stricter than _check_entry, passed by entries that _check_entry accepts
    as they usually are written; the rest get _check_entry's full checks and messages."""
    if type(raw) is not dict:
        return False
    uuid = raw.get("uuid")
    block_type = raw.get("type")
    if type(uuid) is not str or not uuid or type(block_type) is not str or not block_type:
        return False
    for key in ("name", "language"):
        value = raw.get(key)
        if value is not None and type(value) is not str:
            return False
    for key in ("upstream_blocks", "downstream_blocks", "callback_blocks", "conditional_blocks"):
        value = raw.get(key)
        if value is not None and type(value) is not list:
            return False
    for key in ("upstream_blocks", "callback_blocks", "conditional_blocks"):
        for item in raw.get(key) or ():
            if type(item) is not str:
                return False
    config = raw.get("configuration")
    retry = raw.get("retry_config")
    timeout = raw.get("timeout")
    if (config is not None and type(config) is not dict) or (retry is not None and type(retry) is not dict):
        return False
    if timeout is not None and type(timeout) is not int and type(timeout) is not float:
        return False
    fs = (config or {}).get("file_source")
    if fs is not None and (type(fs) is not dict or (fs.get("path") is not None and type(fs.get("path")) is not str)):
        return False
    return is_safe_relative(uuid)


def _check_entry(
    raw: Any,
    *,
    group: str,
    index: int,
    file: Path,
    line_of: Callable[..., int | None],
    pipeline_uuid: str | None,
) -> None:
    """Raise ProjectError for the first thing wrong with a metadata entry."""

    def error(message: str, *keys: Any, block: str | None = None, hint: str | None = None) -> ProjectError:
        return ProjectError(
            message,
            file=file,
            line=line_of(group, index, *keys),
            block=block,
            pipeline=pipeline_uuid,
            hint=hint,
        )

    where = f"entry {index + 1} of '{group}'"
    if not isinstance(raw, dict):
        raise error(f"{where} must be a mapping with at least 'uuid' and 'type', not a {type_name(raw)}")
    uuid = raw.get("uuid")
    label = raw.get("name") if isinstance(raw.get("name"), str) else None
    if uuid is None or uuid == "":
        raise error(
            f"{where}{' (' + repr(label) + ')' if label else ''} has no 'uuid'",
            hint="every block needs a unique 'uuid:'",
        )
    if not isinstance(uuid, str):
        raise error(f"{where}: 'uuid' must be a string, not a {type_name(uuid)}", "uuid")
    if not is_safe_relative(uuid):
        raise error(
            f"block uuid {uuid!r} is not a safe relative name",
            "uuid",
            block=uuid,
            hint="no absolute paths, '..', ':' or empty path parts",
        )

    def expect(key: str, kinds: tuple[type, ...], expected: str) -> None:
        value = raw.get(key)
        if value is None:
            return
        if isinstance(value, bool) and bool not in kinds:
            ok = False
        else:
            ok = isinstance(value, kinds)
        if not ok:
            raise error(f"'{key}' must be {expected}, not a {type_name(value)}", key, block=uuid)

    block_type = raw.get("type")
    if block_type is None or block_type == "":
        raise error(
            "block has no 'type'",
            block=uuid,
            hint="e.g. type: data_loader, transformer, data_exporter, custom, sensor",
        )
    expect("type", (str,), "a string")
    expect("name", (str,), "a string")
    expect("language", (str,), "a string")
    for key in ("upstream_blocks", "downstream_blocks", "callback_blocks", "conditional_blocks"):
        expect(key, (list,), "a list of block uuids")
    for i, item in enumerate(raw.get("upstream_blocks") or []):
        if not isinstance(item, str):
            raise error(
                f"'upstream_blocks' item {i + 1} must be a block uuid string, not a {type_name(item)}",
                "upstream_blocks",
                i,
                block=uuid,
            )
    for key in ("callback_blocks", "conditional_blocks"):
        for i, item in enumerate(raw.get(key) or []):
            if not isinstance(item, str):
                raise error(f"'{key}' item {i + 1} must be a block uuid string", key, i, block=uuid)
    expect("configuration", (dict,), "a mapping")
    expect("retry_config", (dict,), "a mapping (retries, delay, max_delay, exponential_backoff) or null")
    timeout = raw.get("timeout")
    if timeout is not None:
        bad = isinstance(timeout, bool) or not isinstance(timeout, (int, float, str))
        if isinstance(timeout, str):
            try:
                float(timeout)
            except ValueError:
                bad = True
        if bad:
            raise error(f"'timeout' must be a number of seconds or null, not {timeout!r}", "timeout", block=uuid)
    config = raw.get("configuration") or {}
    fs = config.get("file_source")
    if fs is not None and not isinstance(fs, dict):
        raise error("'configuration.file_source' must be a mapping with 'path'", "configuration", "file_source", block=uuid)
    if isinstance(fs, dict) and fs.get("path") is not None and not isinstance(fs.get("path"), str):
        raise error("'configuration.file_source.path' must be a string", "configuration", "file_source", "path", block=uuid)
