"""Reading and writing YAML files with errors that name the file and line.

`read_yaml` keeps the composed node tree so a later type check can say on which
line a bad value sits. Plain documents (strings, numbers, booleans, nulls, maps and
lists without anchors or merge keys) are built by a direct walk of that tree, several
times faster than PyYAML's generic constructor; anything else goes through the
constructor itself, so results and errors are PyYAML's. `write_text_atomic` writes
through a temp file in the same folder and `os.replace`, so readers never see half a file.
"""
from __future__ import annotations

import copy
import os
import stat
from pathlib import Path
from typing import Any

from blockyard.errors import ProjectError

# PyYAML is imported on first use (`_load_yaml`): it is ~25 ms of a fresh process's start-up,
# which a `blockyard run` whose YAML files all come from the parse cache never needs. A
# YamlDoc with a node exists only after a parse, so its methods find the module loaded.
yaml: Any = None
_Loader: Any = None  # libyaml's parser when PyYAML was built with it; the pure-Python one otherwise
_STOCK: dict = {}
_TAG = "tag:yaml.org,2002:"


def _load_yaml() -> Any:
    global yaml, _Loader, _STOCK
    if yaml is None:
        import yaml as module

        _Loader = module.CSafeLoader if getattr(module, "__with_libyaml__", False) else module.SafeLoader
        _STOCK = {_TAG + t: getattr(module.SafeLoader, "construct_yaml_" + t)
                  for t in ("str", "null", "bool", "int", "float", "map", "seq")}
        yaml = module
    return yaml


class YamlDoc:
    """Parsed YAML plus a way to find the line of any value in it."""

    def __init__(self, path: Path, data: Any, node: yaml.Node | None) -> None:
        self.path = path
        self.data = data
        self._node = node
        self._keys: dict[int, dict[str, tuple[int, yaml.Node]]] = {}  # id(mapping node) -> its keys

    def _mapping_keys(self, node: yaml.MappingNode) -> dict[str, tuple[int, yaml.Node]]:
        """Scalar key -> (line of the key, value node); the first of duplicate keys wins."""
        index = self._keys.get(id(node))
        if index is None:
            index = {}
            for k_node, v_node in node.value:
                if isinstance(k_node, yaml.ScalarNode) and k_node.value not in index:
                    index[k_node.value] = (k_node.start_mark.line + 1, v_node)
            self._keys[id(node)] = index
        return index

    def line_of(self, *keys: str | int) -> int | None:
        """1-based line of the value at `keys` (mapping keys / list indexes).

        Falls back to the nearest ancestor that exists; None for an empty file.
        """
        return self._walk(keys)[1]

    def item_lines(self, count: int, *keys: str | int) -> list[int | None]:
        """`[line_of(*keys, i) for i in range(count)]`, walking to the list only once."""
        node, line = self._walk(keys)
        if node is None:
            return [line] * count
        if isinstance(node, yaml.SequenceNode):
            items = node.value
            return [items[i].start_mark.line + 1 if i < len(items) else line for i in range(count)]
        if isinstance(node, yaml.MappingNode):  # an index would be looked up as a key there
            return [self.line_of(*keys, i) for i in range(count)]
        return [line] * count

    def _walk(self, keys: tuple) -> tuple[yaml.Node | None, int | None]:
        """The node at `keys` (None where the path ends early) and the line line_of gives."""
        node = self._node
        if node is None:
            return None, None
        line = node.start_mark.line + 1
        for key in keys:
            child = None
            if isinstance(node, yaml.MappingNode):
                found = self._mapping_keys(node).get(str(key))
                if found is not None:
                    line, child = found
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
                if 0 <= key < len(node.value):
                    child = node.value[key]
                    line = child.start_mark.line + 1
            if child is None:
                return None, line
            node = child
        return node, line


def parse_yaml(text: str, path: Path | str) -> YamlDoc:
    path = Path(path)
    _load_yaml()
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = _construct(loader, node) if node is not None else None
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


class _NotPlain(Exception):
    """The document needs PyYAML's own constructor (aliases, merge keys, other tags)."""


def _construct(loader: Any, node: yaml.Node) -> Any:
    """The Python value of `node`, equal to `loader.construct_document(node)`."""
    if all(loader.yaml_constructors.get(tag) is fn for tag, fn in _STOCK.items()):
        try:
            return _plain(loader, node, set())
        except (_NotPlain, RecursionError):
            pass
    return loader.construct_document(node)


def _plain(loader: Any, node: yaml.Node, seen: set[int]) -> Any:
    kind = type(node)
    tag = node.tag
    if kind is yaml.ScalarNode:
        if tag == "tag:yaml.org,2002:str":
            return node.value
        if tag == "tag:yaml.org,2002:null":
            return None
        if tag == "tag:yaml.org,2002:bool":
            return loader.construct_yaml_bool(node)
        if tag == "tag:yaml.org,2002:int":
            return loader.construct_yaml_int(node)
        if tag == "tag:yaml.org,2002:float":
            return loader.construct_yaml_float(node)
        raise _NotPlain
    if id(node) in seen:  # an alias of a map or list: PyYAML shares the object
        raise _NotPlain
    seen.add(id(node))
    if kind is yaml.MappingNode and tag == "tag:yaml.org,2002:map":
        out = {}
        for k_node, v_node in node.value:
            if type(k_node) is not yaml.ScalarNode or k_node.tag in ("tag:yaml.org,2002:merge", "tag:yaml.org,2002:value"):
                raise _NotPlain
            out[_plain(loader, k_node, seen)] = _plain(loader, v_node, seen)
        return out
    if kind is yaml.SequenceNode and tag == "tag:yaml.org,2002:seq":
        return [_plain(loader, item, seen) for item in node.value]
    raise _NotPlain


# Immutable scalar types: a copy of one is the value itself.
ATOMIC_TYPES = frozenset((str, int, float, bool, type(None)))


def plain_copy(value: Any, memo: dict | None = None) -> Any:
    """copy.deepcopy for YAML data, faster: dicts, lists and immutable scalars are
    copied here (shared and recursive containers stay shared and recursive, as with
    deepcopy); anything else goes to copy.deepcopy."""
    kind = type(value)
    if kind in ATOMIC_TYPES:
        return value
    if memo is None:
        if not value and (kind is dict or kind is list):
            return kind()
        memo = {}
    done = memo.get(id(value))
    if done is not None:
        return done
    if kind is dict:
        out: Any = {}
        memo[id(value)] = out
        for k, v in value.items():
            if type(k) not in ATOMIC_TYPES:
                k = plain_copy(k, memo)
            out[k] = v if type(v) in ATOMIC_TYPES else plain_copy(v, memo)
        return out
    if kind is list:
        out = []
        memo[id(value)] = out
        out.extend([v if type(v) in ATOMIC_TYPES else plain_copy(v, memo) for v in value])
        return out
    return copy.deepcopy(value, memo)


def read_text(path: Path | str) -> str:
    """A UTF-8 text file; ProjectError (naming the file) when it is missing or unreadable."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProjectError("file not found", file=path) from None
    except UnicodeDecodeError as exc:
        raise ProjectError(f"not UTF-8 text: {exc.reason}", file=path) from None
    except OSError as exc:
        raise ProjectError(f"cannot read file: {exc.strerror or exc}", file=path) from None


def read_yaml(path: Path | str) -> YamlDoc:
    return parse_yaml(read_text(path), path)


def read_mapping(path: Path | str, what: str, *, missing_ok: bool = False, empty_ok: bool = True) -> YamlDoc:
    """Read a YAML file that must hold a mapping (None/empty becomes {} if `empty_ok`)."""
    path = Path(path)
    if missing_ok and not path.exists():
        return YamlDoc(path, {}, None)
    return mapping_doc(read_yaml(path), what, empty_ok=empty_ok)


def mapping_doc(doc: YamlDoc, what: str, *, empty_ok: bool = True) -> YamlDoc:
    """`doc` checked to hold a mapping (see read_mapping)."""
    path = doc.path
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
    module = _load_yaml()
    return module.dump(
        data,
        Dumper=module.SafeDumper,
        default_flow_style=False,
        sort_keys=False,
        allow_unicode=True,
    )


def write_text_atomic(path: Path | str, text: str) -> None:
    """Write `text` to `path` via a temp file and os.replace (keeps the old file's mode)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.urandom(5).hex()}.tmp"
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
