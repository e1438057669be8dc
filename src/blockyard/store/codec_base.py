"""What a codec is, and the small helpers every codec uses.

A codec turns one Python object into one file and back (see `Codec`). Codecs do their
file I/O through `fs`, an fsspec filesystem or `LocalFS`, with plain `open`/`os` on the
local filesystem. Nothing heavy is imported here.
"""
from __future__ import annotations

import io
import sys
from typing import Any, Callable

import blockyard.store.summary as _summary


class CodecSkip(Exception):
    """Raised by `Codec.save` when this codec cannot store this particular object exactly
    (e.g. a frame with mixed-type object columns). The store removes the partial file and
    tries the next codec."""


class Codec:
    """Base class (duck typing is enough: name, extension, can_encode, save, load).

    `extension` includes the dot (".arrow"). `save(obj, fs, path)` writes exactly one file
    at `path` on the fsspec filesystem `fs`; `load(fs, path)` reads it back. `save` may
    return {"blake2b": hex, "bytes": n} when it hashed the file while writing it (the
    digest of `blockyard.store.hashing`); otherwise the store reads the file once to hash it.
    `summarize(obj)` returns `(summary: dict, sample: JSON-able | None)` and must be cheap.

    A codec for one library type can state it instead of writing `can_encode`:
    `library` (module name) and `type_name`, with `exact = True` for that very type
    (subclasses fall through to a later codec) or False for any instance of it. The
    check never imports the library: an object cannot be of its type if it was never
    imported. `summarizer` names the `blockyard.store.summary` function for `summarize`.
    """

    name: str = ""
    extension: str = ""
    library: str = ""
    type_name: str = ""
    exact: bool = True
    summarizer: Callable[[Any], tuple[dict, Any]] = staticmethod(_summary.generic)

    def can_encode(self, obj: Any) -> bool:
        if not self.library:  # pragma: no cover - interface
            raise NotImplementedError
        module = loaded(self.library)
        if module is None:
            return False
        cls = getattr(module, self.type_name)
        return type(obj) is cls if self.exact else isinstance(obj, cls)

    def save(self, obj: Any, fs: Any, path: str) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def load(self, fs: Any, path: str) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def summarize(self, obj: Any) -> tuple[dict, Any]:
        return self.summarizer(obj)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} ({self.extension})>"


class BytesCodec(Codec):
    """A codec whose file is one bytes value: subclasses give `encode(obj) -> bytes` (may
    raise CodecSkip; nothing is written then) and `decode(data) -> obj`."""

    def encode(self, obj: Any) -> bytes:  # pragma: no cover - interface
        raise NotImplementedError

    def decode(self, data: bytes) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def save(self, obj: Any, fs: Any, path: str) -> None:
        write_bytes(fs, path, self.encode(obj))

    def load(self, fs: Any, path: str) -> Any:
        return self.decode(read_bytes(fs, path))


# --- filesystem helpers ------------------------------------------------------------------


class LocalFS:
    """The local filesystem without importing fsspec (~20 ms of `blockyard run` start-up).

    Built-in codecs use plain `open`/`os` when `is_local_fs(fs)`; any other attribute
    (a third-party codec calling `fs.open(...)`) is served by fsspec's
    LocalFileSystem, imported on first use."""

    _real: Any = None

    def __getattr__(self, name: str) -> Any:
        if LocalFS._real is None:
            import fsspec

            LocalFS._real = fsspec.filesystem("file")
        return getattr(LocalFS._real, name)

    def __repr__(self) -> str:
        return "LocalFS()"


def is_local_fs(fs: Any) -> bool:
    if isinstance(fs, LocalFS):
        return True
    local = sys.modules.get("fsspec.implementations.local")
    return local is not None and isinstance(fs, local.LocalFileSystem)


def open_write(fs: Any, path: str):
    return open(path, "wb") if is_local_fs(fs) else fs.open(path, "wb")


def open_read(fs: Any, path: str):
    return open(path, "rb") if is_local_fs(fs) else fs.open(path, "rb")


def read_bytes(fs: Any, path: str) -> bytes:
    if is_local_fs(fs):
        with open(path, "rb") as f:
            return f.read()
    return fs.cat_file(path)


def write_bytes(fs: Any, path: str, data: bytes) -> None:
    with open_write(fs, path) as f:
        f.write(data)


def readable(fs: Any, path: str) -> Any:
    """What a library's reader takes: the path itself locally (so it can open or
    memory-map the file its own way), else the remote file's bytes as a BytesIO."""
    return path if is_local_fs(fs) else io.BytesIO(fs.cat_file(path))


def loaded(module: str):
    """The module if it is already imported, else None (never imports)."""
    return sys.modules.get(module)


# --- JSON exactness ---------------------------------------------------------------------

JSON_SCALARS = (type(None), bool, int, float, str)
_MAX_JSON_DEPTH = 100


def json_exact(obj: Any, _depth: int = 0) -> bool:
    """True when json.dumps/json.loads gives back an equal object of the same types:
    exact builtin types only (no tuples, no subclasses such as numpy.float64 or
    OrderedDict, only str dict keys)."""
    t = type(obj)
    if t in JSON_SCALARS:
        return True
    if _depth >= _MAX_JSON_DEPTH:
        return False
    if t is list:
        return all(json_exact(x, _depth + 1) for x in obj)
    if t is dict:
        return all(type(k) is str and json_exact(v, _depth + 1) for k, v in obj.items())
    return False
