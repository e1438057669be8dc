"""Content-hash cache keys, built from composable cache policies.

Caching is opt-in (Mage runs every block on every run): a run with `cache` set, a
pipeline with `cache: true` or a block with `configuration.cache: true` reuses the
outputs of a completed block run whose key is the same. A resumed or retried run
looks keys up only among its own earlier attempts (recovery, not caching).

A key is made of the parts its policy names (like Prefect's cache policies, they
compose with `+`):

- `source`: the block's file, its attached conditional and callback files, and the
  workspace modules it imports (transitively), all by content;
- `inputs`: the content digests of its upstream outputs (the store hashes the bytes
  it writes, so an upstream that re-ran with the same data keeps the key);
- `configuration`: the block's configuration;
- `variables`: the run's user variables (not execution_date, run id, ...);
- `execution_date`: the run's execution time (for scheduled runs that must not
  reuse another day's outputs).

The default policy is source + inputs + configuration + variables; a block chooses
its own with `configuration.cache_policy: [inputs, source]`.
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from blockyard import file_stamps

# Kwargs that change every run and must not break the cache.
VOLATILE_KEYS = {
    "execution_date",
    "ds",
    "pipeline_run_id",
    "logger",
    "dynamic_block_index",
    "block_uuid",
    "interval_start_datetime",
    "interval_end_datetime",
    "event",
}
# Configuration keys that steer caching itself, so turning caching on finds the keys
# recorded while it was off.
_CACHE_SETTINGS = ("cache", "cache_policy", "disable_cache")


@dataclass
class KeyParts:
    """What a block run's key may depend on; policies pick from it."""

    block_type: str
    code_hash: str
    attached_hashes: list[str] = field(default_factory=list)
    imports_hash: str = ""
    configuration: dict | None = None
    variables: dict = field(default_factory=dict)
    variables_text: str | None = None  # variables_json(variables), when worked out already
    input_digests: list[Any] = field(default_factory=list)
    dynamic_index: int | None = None
    execution_date: Any = None


# json.dumps with these options builds a new encoder per call; this one is stateless.
_STABLE = json.JSONEncoder(sort_keys=True, default=repr, separators=(",", ":"))


def _stable(value: Any) -> str:
    return _STABLE.encode(value)


def _feed(h: Any, parts: list[str]) -> None:
    if parts:  # each part NUL-terminated (parts are strings)
        h.update(("\x00".join(parts) + "\x00").encode())


def configuration_json(configuration: dict | None) -> str:
    if not configuration:
        return "{}"  # most blocks: no JSON encoder call
    return _stable({a: b for a, b in configuration.items() if a not in _CACHE_SETTINGS})


def variables_json(variables: dict) -> str:
    return _stable({a: b for a, b in variables.items() if a not in VOLATILE_KEYS})


class CachePolicy:
    name = ""
    per_node = False  # True: differs between the nodes (clones) of one block in a run

    def parts(self, k: KeyParts) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def members(self) -> list["CachePolicy"]:
        return [self]

    def __add__(self, other: "CachePolicy") -> "CachePolicy":
        mine = self.policies if isinstance(self, Compound) else [self]
        theirs = other.policies if isinstance(other, Compound) else [other]
        merged: list[CachePolicy] = []
        for p in mine + theirs:  # idempotent: source + source == source
            if all(q.name != p.name for q in merged):
                merged.append(p)
        return Compound(merged)

    def key(self, k: KeyParts) -> str:
        return self.node_key(self.block_hasher(k), k)

    def block_hasher(self, k: KeyParts) -> Any:
        """A hash of the parts that are the same for every node of a block in a run
        (the runner keeps one per block and finishes a copy per node: cheap per block)."""
        h = hashlib.blake2b(digest_size=20)
        _feed(h, [self.name])
        for p in self.members:
            if not p.per_node:
                _feed(h, p.parts(k))
        return h

    def node_key(self, block_hasher: Any, k: KeyParts) -> str:
        h = block_hasher.copy()
        for p in self.members:
            if p.per_node:
                _feed(h, p.parts(k))
        return h.hexdigest()

    def __repr__(self) -> str:
        return f"<CachePolicy {self.name}>"


class Compound(CachePolicy):
    def __init__(self, policies: list[CachePolicy]) -> None:
        self.policies = sorted(policies, key=lambda p: p.name)  # order does not change the key
        self.name = "+".join(p.name for p in self.policies)

    @property
    def members(self) -> list[CachePolicy]:
        return self.policies

    def parts(self, k: KeyParts) -> list[str]:
        return [part for p in self.policies for part in p.parts(k)]


class Source(CachePolicy):
    name = "source"

    def parts(self, k: KeyParts) -> list[str]:
        return [k.block_type, k.code_hash, ",".join(k.attached_hashes), k.imports_hash]


class Inputs(CachePolicy):
    name = "inputs"
    per_node = True

    def parts(self, k: KeyParts) -> list[str]:
        return [_stable(k.input_digests), str(k.dynamic_index)]


class Configuration(CachePolicy):
    name = "configuration"

    def parts(self, k: KeyParts) -> list[str]:
        return [configuration_json(k.configuration)]


class Variables(CachePolicy):
    name = "variables"

    def parts(self, k: KeyParts) -> list[str]:
        return [k.variables_text if k.variables_text is not None else variables_json(k.variables)]


class ExecutionDate(CachePolicy):
    name = "execution_date"

    def parts(self, k: KeyParts) -> list[str]:
        d = k.execution_date
        return [d.isoformat() if hasattr(d, "isoformat") else str(d)]


SOURCE, INPUTS, CONFIGURATION, VARIABLES, EXECUTION_DATE = (
    Source(), Inputs(), Configuration(), Variables(), ExecutionDate()
)
POLICIES = {p.name: p for p in (SOURCE, INPUTS, CONFIGURATION, VARIABLES, EXECUTION_DATE)}
DEFAULT = SOURCE + INPUTS + CONFIGURATION + VARIABLES


def policy_from(value: Any) -> CachePolicy:
    """`configuration.cache_policy`: a list of policy names or 'a + b'; ValueError
    naming the unknown policy otherwise."""
    if value is None:
        return DEFAULT
    names = value.split("+") if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not names:
        raise ValueError(f"cache_policy must be a list of {', '.join(POLICIES)}, not {value!r}")
    policy: CachePolicy | None = None
    for name in names:
        p = POLICIES.get(str(name).strip())
        if p is None:
            raise ValueError(f"unknown cache policy {name!r}: choose from {', '.join(POLICIES)}")
        policy = p if policy is None else policy + p
    assert policy is not None
    return policy


def cache_setting(configuration: dict | None) -> bool | None:
    """A block's own say: True (cache it), False (never), None (as the run says)."""
    cfg = configuration or {}
    if cfg.get("cache") is False or cfg.get("disable_cache") is True:
        return False
    if cfg.get("cache") is True:
        return True
    return None


# ------------------------------------------------------------ file contents
# path -> (stat stamp, content digest, imported module references): a file is read and
# parsed again only when a write touched it (file_stamps.settled: a file changed within
# the filesystem's clock tick is not kept, as a same-size rewrite there keeps its stamp).
_files: dict[str, tuple[file_stamps.Stamp, str, list[tuple[int, str, tuple[str, ...]]]]] = {}


def _scan(path: Path) -> tuple[str, list[tuple[int, str, tuple[str, ...]]]]:
    """Content digest and import statements (level, module, names) of a file."""
    key = str(path)
    st = os.stat(path)
    stamp = file_stamps.stamp(st)
    cached = _files.get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1], cached[2]
    data = path.read_bytes()
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    imports: list[tuple[int, str, tuple[str, ...]]] = []
    if key.endswith(".py") and b"import" in data:
        try:
            tree = ast.parse(data)
        except SyntaxError:
            tree = None
        for node in ast.walk(tree) if tree is not None else ():
            if isinstance(node, ast.Import):
                imports.extend((0, a.name, ()) for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                imports.append((node.level, node.module or "", tuple(a.name for a in node.names)))
    if file_stamps.settled(st):
        _files[key] = (stamp, digest, imports)
    return digest, imports


def file_digest(path: Path) -> str:
    """Content digest of a file ('' if it is missing), re-read only when it changed."""
    try:
        return _scan(path)[0]
    except OSError:
        return ""


def _module_file(base: Path, dotted: str) -> list[Path]:
    """The file of module `dotted` under `base` and its packages' __init__ files
    ([] when it is not there)."""
    parts = [p for p in dotted.split(".") if p]
    if not parts:
        return []
    found: list[Path] = []
    d = base
    for part in parts[:-1]:
        d = d / part
        if (d / "__init__.py").is_file():
            found.append(d / "__init__.py")
        elif not d.is_dir():
            return []
    d = d / parts[-1]
    if d.with_suffix(".py").is_file():
        found.append(d.with_suffix(".py"))
    elif (d / "__init__.py").is_file():
        found.append(d / "__init__.py")
    elif not d.is_dir():
        return []
    return found


def imports_hash(path: Path, roots: Iterable[Path], within: Path) -> str:
    """Digest of every module under `within` (the workspace) that the file imports,
    transitively, by content. Third-party and standard-library imports resolve
    outside `within` and do not count."""
    try:
        if not _scan(path)[1]:
            return ""  # imports nothing (the common case for small blocks): nothing to follow
    except OSError:
        return ""
    roots = [Path(r) for r in roots]
    within_s = os.path.normpath(os.path.abspath(within)) + os.sep
    seen: dict[str, str] = {}
    own = os.path.normpath(os.path.abspath(path))
    todo = [Path(own)]
    while todo:
        current = todo.pop()
        try:
            _digest, imports = _scan(current)
        except OSError:
            continue
        for level, module, names in imports:
            if level:  # relative import: from the file's package
                base = current.parent
                for _ in range(level - 1):
                    base = base.parent
                candidates = [(base, module)] + [(base, f"{module}.{n}" if module else n) for n in names]
            else:
                candidates = [(r, module) for r in roots] + [
                    (r, f"{module}.{n}") for r in roots for n in names if n != "*"
                ]
            for base, dotted in candidates:
                for f in _resolve(base, dotted):
                    key = os.path.normpath(os.path.abspath(f))
                    if key in seen or key == own or not key.startswith(within_s):
                        continue
                    seen[key] = file_digest(Path(key))
                    todo.append(Path(key))
    if not seen:
        return ""
    h = hashlib.blake2b(digest_size=16)
    for key in sorted(seen):
        h.update(f"{os.path.relpath(key, within)}:{seen[key]}\n".encode())
    return h.hexdigest()


# (base, dotted) -> files; module files appearing or vanishing between runs of one
# process are rare, and a new module shows up in its importer's content anyway.
_resolved: dict[tuple[str, str], list[Path]] = {}


def _resolve(base: Path, dotted: str) -> list[Path]:
    key = (str(base), dotted)
    found = _resolved.get(key)
    if found is None:
        found = _resolved[key] = _module_file(base, dotted)
    return found
