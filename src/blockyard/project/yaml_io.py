"""Reading and writing YAML files with errors that name the file and line.

`read_yaml` keeps the composed node tree so a later type check can say on which
line a bad value sits. `write_text_atomic` writes through a temp file in the same
folder and `os.replace`, so readers never see half a file.
"""
from __future__ import annotations

import os
import stat
import uuid as _uuid
from pathlib import Path
from typing import Any

import yaml

from blockyard.errors import ProjectError

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlDoc:
    """Parsed YAML plus a way to find the line of any value in it."""

    def __init__(self, path: Path, data: Any, node: yaml.Node | None) -> None:
        self.path = path
        self.data = data
        self._node = node

    def line_of(self, *keys: str | int) -> int | None:
        """1-based line of the value at `keys` (mapping keys / list indexes).

        Falls back to the nearest ancestor that exists; None for an empty file.
        """
        node = self._node
        if node is None:
            return None
        line = node.start_mark.line + 1
        for key in keys:
            child = None
            if isinstance(node, yaml.MappingNode):
                for k_node, v_node in node.value:
                    if isinstance(k_node, yaml.ScalarNode) and k_node.value == str(key):
                        child = v_node
                        line = k_node.start_mark.line + 1
                        break
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
                if 0 <= key < len(node.value):
                    child = node.value[key]
                    line = child.start_mark.line + 1
            if child is None:
                return line
            node = child
        return line


def parse_yaml(text: str, path: Path | str) -> YamlDoc:
    path = Path(path)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        where = f" at column {mark.column + 1}" if mark is not None else ""
        context = ""
        if exc.context and exc.problem:
            context = f"; {exc.context}"
            if exc.context_mark is not None and mark is not None and exc.context_mark.line != mark.line:
                context += f" started at line {exc.context_mark.line + 1}"
        raise ProjectError(
            f"invalid YAML{where}: {problem}{context}",
            file=path,
            line=mark.line + 1 if mark is not None else None,
            hint="check indentation, quotes and the ':' after each key",
        ) from None
    except yaml.YAMLError as exc:
        raise ProjectError(f"invalid YAML: {exc}", file=path) from None
    finally:
        loader.dispose()
    return YamlDoc(path, data, node)


def read_yaml(path: Path | str) -> YamlDoc:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProjectError("file not found", file=path) from None
    except UnicodeDecodeError as exc:
        raise ProjectError(f"not UTF-8 text: {exc.reason}", file=path) from None
    except OSError as exc:
        raise ProjectError(f"cannot read file: {exc.strerror or exc}", file=path) from None
    return parse_yaml(text, path)


def read_mapping(path: Path | str, what: str, *, missing_ok: bool = False, empty_ok: bool = True) -> YamlDoc:
    """Read a YAML file that must hold a mapping (None/empty becomes {} if `empty_ok`)."""
    path = Path(path)
    if missing_ok and not path.exists():
        return YamlDoc(path, {}, None)
    doc = read_yaml(path)
    if doc.data is None:
        if not empty_ok:
            raise ProjectError(f"{what} is empty; expected a mapping", file=path, line=1)
        doc.data = {}
    if not isinstance(doc.data, dict):
        raise ProjectError(
            f"{what} must be a mapping of keys to values, not a {type_name(doc.data)}",
            file=path,
            line=doc.line_of(),
        )
    return doc


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "mapping", list: "list", str: "string", bool: "boolean", int: "number", float: "number"}.get(
        type(value), type(value).__name__
    )


def dump_yaml(data: Any) -> str:
    """Block-style YAML as Mage writes it, keeping key order."""
    return yaml.dump(
        data,
        Dumper=yaml.SafeDumper,
        default_flow_style=False,
        sort_keys=False,
        allow_unicode=True,
    )


def write_text_atomic(path: Path | str, text: str) -> None:
    """Write `text` to `path` via a temp file and os.replace (keeps the old file's mode)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{_uuid.uuid4().hex[:10]}.tmp"
    try:
        with open(tmp, "x", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
        except FileNotFoundError:
            pass
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


def write_yaml(path: Path | str, data: Any) -> None:
    write_text_atomic(path, dump_yaml(data))


def set_key(mapping: dict, key: str, value: Any) -> None:
    """Set `key`; a new key goes to its sorted place if the mapping's keys are sorted (as Mage writes them)."""
    if key in mapping:
        mapping[key] = value
        return
    keys = list(mapping)
    if keys and keys == sorted(keys):
        items = list(mapping.items())
        items.append((key, value))
        items.sort(key=lambda kv: kv[0])
        mapping.clear()
        mapping.update(items)
    else:
        mapping[key] = value
