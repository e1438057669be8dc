"""Loading a block file into its functions.

A block file is executed in a fresh module namespace with the decorators already
in its globals. The result is cached by content hash, so 10,000 dynamic clones of
one block compile it once, and an edited file is always reloaded.
"""
from __future__ import annotations

import hashlib
import importlib.util
import inspect
import os
import sys
import threading
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from blockyard import file_stamps, marshal_files
from blockyard.engine import decorators
from blockyard.errors import BlockLoadError

_cache: dict[tuple[str, str], "LoadedBlock"] = {}
_cache_lock = threading.Lock()


@dataclass
class LoadedBlock:
    path: Path
    code_hash: str
    main: Callable | None
    main_kind: str | None
    tests: list[Callable] = field(default_factory=list)
    conditions: list[Callable] = field(default_factory=list)
    callbacks: list[tuple[str, Callable]] = field(default_factory=list)  # (status, fn)
    module: types.ModuleType | None = None

    def callbacks_for(self, status: str) -> list[Callable]:
        return [fn for statuses, fn in self.callbacks if status in statuses.split(",")]


# path -> (stat stamp, source, hash): a long-lived process (server, worker) reads an
# unchanged block file once (file_stamps.settled: a file changed within the filesystem's
# clock tick is not kept).
_sources: dict[str, tuple[file_stamps.Stamp, str, str]] = {}


def read_source(path: Path, block_uuid: str | None = None) -> tuple[str, str]:
    key = str(path)
    try:
        st = os.stat(key)
        stamp = file_stamps.stamp(st)
        hit = _sources.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1], hit[2]
        data = path.read_bytes()
    except FileNotFoundError:
        raise BlockLoadError(
            "block file not found",
            file=path,
            block=block_uuid,
            hint="create it, or fix configuration.file_source.path in the pipeline's metadata.yaml",
        ) from None
    source, code_hash = data.decode("utf-8"), hashlib.blake2b(data, digest_size=16).hexdigest()
    if file_stamps.settled(st):
        if len(_sources) > 20_000:  # edited files in a very long-lived process
            _sources.clear()
        _sources[key] = (stamp, source, code_hash)
    return source, code_hash


def load_block(
    path: Path,
    block_uuid: str | None = None,
    *,
    require_main: bool = True,
    source: str | None = None,
    code_hash: str | None = None,
) -> LoadedBlock:
    """Execute the block file (once per content) and return its decorated functions."""
    if source is None or code_hash is None:
        source, code_hash = read_source(path, block_uuid)
    key = (str(path), code_hash)
    cached = _cache.get(key)
    if cached is not None:
        return cached
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None:
            return cached
        loaded = _exec_block(path, block_uuid, source, code_hash, require_main)
        _cache[key] = loaded
        return loaded


_compiled: dict[tuple[str, str], types.CodeType] = {}


def is_compiled(path: Path, code_hash: str) -> bool:
    return (str(path), code_hash) in _compiled


def compile_block(path: Path, block_uuid: str | None, source: str, code_hash: str) -> types.CodeType:
    """The block file's code object (compiled once per content); a syntax error becomes a
    BlockLoadError naming the file, line and block. The runner calls it to check every
    block before a run starts, the loader to execute it."""
    key = (str(path), code_hash)
    code = _compiled.get(key)
    if code is None:
        try:
            code = compile(source, str(path), "exec")
        except SyntaxError as exc:
            raise BlockLoadError(
                f"syntax error: {exc.msg}", file=path, line=exc.lineno, block=block_uuid
            ) from None
        _compiled[key] = code
    return code


# ------------------------------------------------------------ compiled-code bundles
# A fresh process (every `blockyard run`, every worker's run) would compile each block
# file again: ~60 us for even a tiny one, most of a 1,000-block run's start. A pipeline's
# code objects are kept in one marshal file under the data folder (like Python's .pyc,
# one per pipeline instead of one per file): one read, ~2 us per block to load. Entries
# are keyed by (path, content hash) and the file by the interpreter's bytecode magic, so
# an edited block or another Python simply compiles again.
_BUNDLE_MAGIC = b"blockyard-code-1\0" + importlib.util.MAGIC_NUMBER


def load_code_bundle(path: Path) -> int:
    """Add the bundle's code objects to the compile cache; how many (0 if unusable)."""
    codes = marshal_files.read(path, _BUNDLE_MAGIC)
    if not isinstance(codes, dict):
        return 0
    for key, code in codes.items():
        if isinstance(key, tuple) and isinstance(code, types.CodeType):
            _compiled.setdefault(key, code)
    return len(codes)


def save_code_bundle(path: Path, keys: list[tuple[str, str]]) -> None:
    """Write the code objects of `keys` (all compiled already) as the bundle; best effort."""
    marshal_files.write(path, _BUNDLE_MAGIC, {k: _compiled[k] for k in keys if k in _compiled})


def _exec_block(
    path: Path, block_uuid: str | None, source: str, code_hash: str, require_main: bool
) -> LoadedBlock:
    code = compile_block(path, block_uuid, source, code_hash)
    module = types.ModuleType(f"blockyard_block_{code_hash}")
    module.__file__ = str(path)
    module.__dict__.update(decorators.INJECTED)
    with decorators.collecting() as collected:
        try:
            exec(code, module.__dict__)
        except Exception as exc:  # import errors, NameErrors at module level ...
            where = getattr(exc, "blockyard_where", None)  # the compat layer's unsupported import
            if where is not None:
                raise BlockLoadError(where[2], file=where[0] or path, line=where[1], block=block_uuid) from None
            line = _user_line(exc, str(path))
            raise BlockLoadError(
                f"error while loading the block: {type(exc).__name__}: {exc}",
                file=path,
                line=line,
                block=block_uuid,
            ) from exc
    loaded = LoadedBlock(path=path, code_hash=code_hash, main=None, main_kind=None, module=module)
    for kind, arg, fn in collected.items:
        if kind in decorators.MAIN_KINDS:
            if loaded.main is not None and loaded.main is not fn:
                raise BlockLoadError(
                    f"more than one decorated block function ({loaded.main.__name__} and "
                    f"{fn.__name__}); a block file has exactly one",
                    file=path,
                    line=_def_line(fn),
                    block=block_uuid,
                )
            loaded.main, loaded.main_kind = fn, kind
        elif kind == "test":
            loaded.tests.append(fn)
        elif kind == "condition":
            loaded.conditions.append(fn)
        elif kind == "callback":
            loaded.callbacks.append((arg or "success", fn))
        elif kind == "on_success":
            loaded.callbacks.append(("success", fn))
        elif kind == "on_failure":
            loaded.callbacks.append(("failure", fn))
    if loaded.main is None and require_main:
        raise BlockLoadError(
            "no decorated function found",
            file=path,
            block=block_uuid,
            hint="decorate the block's function with @data_loader, @transformer, "
            "@data_exporter, @custom or @sensor",
        )
    return loaded


def _def_line(fn: Callable) -> int | None:
    """The line of `def name(` (co_firstlineno points at the first decorator)."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return None
    import linecache

    first = code.co_firstlineno
    for offset in range(0, 50):
        text = linecache.getline(code.co_filename, first + offset)
        if not text:
            break
        if f"def {fn.__name__}" in text:
            return first + offset
    return first


def def_line(fn: Callable) -> int | None:
    return _def_line(fn)


def _user_line(exc: BaseException, filename: str) -> int | None:
    """The deepest traceback line inside `filename` (the user's block file)."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    if line is None and isinstance(exc, SyntaxError) and exc.filename == filename:
        line = exc.lineno
    return line


def user_line(exc: BaseException, filename: str) -> int | None:
    return _user_line(exc, filename)


_capacities: dict[tuple, tuple[int, int | None, bool, frozenset[str]]] = {}


def positional_capacity(fn: Callable) -> tuple[int, int | None, bool, frozenset[str]]:
    """(required positional, max positional or None for *args, accepts **kwargs, keyword names).

    Memoized per code object and number of positional defaults (all it depends on for
    a plain function): inspect.signature costs ~25 us, on every block run."""
    code = getattr(fn, "__code__", None)
    if (
        code is None
        or not isinstance(fn, types.FunctionType)
        # inspect.signature follows these: one decorator's wrapper code serves many
        # functions of different signatures
        or hasattr(fn, "__wrapped__")
        or hasattr(fn, "__signature__")
    ):
        return _capacity(fn)
    key = (code, len(fn.__defaults__ or ()))
    found = _capacities.get(key)
    if found is None:
        if len(_capacities) > 4096:  # edited blocks in a long-lived server
            _capacities.clear()
        found = _capacities[key] = _capacity(fn)
    return found


def _capacity(fn: Callable) -> tuple[int, int | None, bool, frozenset[str]]:
    sig = inspect.signature(fn)
    required = 0
    maximum: int | None = 0
    var_kw = False
    names: set[str] = set()
    for p in sig.parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            if p.default is p.empty:
                required += 1
            if maximum is not None:
                maximum += 1
            names.add(p.name)
        elif p.kind is p.VAR_POSITIONAL:
            maximum = None
        elif p.kind is p.KEYWORD_ONLY:
            names.add(p.name)
        elif p.kind is p.VAR_KEYWORD:
            var_kw = True
    return required, maximum, var_kw, frozenset(names)


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()
        _compiled.clear()
        _sources.clear()


def ensure_import_paths(*paths: Path) -> None:
    """Make `from mlops.utils... import x` work: the workspace's parent goes on sys.path."""
    for p in paths:
        s = str(p)
        if s not in sys.path:
            sys.path.insert(0, s)


_preludes_done: set[str] = set()


def run_prelude(names: tuple[str, ...] | list[str]) -> None:
    """Call each "module:function" once per process (see BlockTask.prelude): the
    engine does not know the compatibility layer, the layer above tells it."""
    for name in names:
        if name in _preludes_done:
            continue
        import importlib

        module, _, func = name.partition(":")
        getattr(importlib.import_module(module), func)()
        _preludes_done.add(name)
