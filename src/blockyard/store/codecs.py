"""Typed codecs for block outputs.

A codec turns one Python object into one file and back. The store asks the registered
codecs in order; the first whose `can_encode(obj)` is true and whose `save` does not
raise `CodecSkip` wins. The last codec (cloudpickle) takes anything.

Import discipline: this module imports no heavy library at import time, and a codec's
`can_encode` only looks at libraries that are already in `sys.modules` (an object cannot
be a pandas DataFrame if pandas was never imported), so asking "can you store this int?"
never imports pandas, scipy, xgboost or scikit-learn.
"""
from __future__ import annotations

import io
import json
import mmap
import pickle
import sys
import threading
from typing import Any

from blockyard.store import hashing as _hashing
from blockyard.store import summary as _summary

__all__ = [
    "Codec",
    "CodecSkip",
    "register_codec",
    "unregister_codec",
    "get_codec",
    "registered_codecs",
    "candidate_codecs",
    "is_local_fs",
]


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
    """

    name: str = ""
    extension: str = ""

    def can_encode(self, obj: Any) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def save(self, obj: Any, fs: Any, path: str) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def load(self, fs: Any, path: str) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def summarize(self, obj: Any) -> tuple[dict, Any]:
        return _summary.generic(obj)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} ({self.extension})>"


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


def _open_write(fs: Any, path: str):
    return open(path, "wb") if is_local_fs(fs) else fs.open(path, "wb")


def _open_read(fs: Any, path: str):
    return open(path, "rb") if is_local_fs(fs) else fs.open(path, "rb")


def _read_bytes(fs: Any, path: str) -> bytes:
    if is_local_fs(fs):
        with open(path, "rb") as f:
            return f.read()
    return fs.cat_file(path)


def _write_bytes(fs: Any, path: str, data: bytes) -> None:
    with _open_write(fs, path) as f:
        f.write(data)


def _loaded(module: str):
    """The module if it is already imported, else None (never imports)."""
    return sys.modules.get(module)


# --- JSON exactness ---------------------------------------------------------------------

_JSON_SCALARS = (type(None), bool, int, float, str)
_MAX_JSON_DEPTH = 100


def json_exact(obj: Any, _depth: int = 0) -> bool:
    """True when json.dumps/json.loads gives back an equal object of the same types:
    exact builtin types only (no tuples, no subclasses such as numpy.float64 or
    OrderedDict, only str dict keys)."""
    t = type(obj)
    if t in _JSON_SCALARS:
        return True
    if _depth >= _MAX_JSON_DEPTH:
        return False
    if t is list:
        return all(json_exact(x, _depth + 1) for x in obj)
    if t is dict:
        return all(type(k) is str and json_exact(v, _depth + 1) for k, v in obj.items())
    return False


# --- Arrow helpers (pandas + polars share the file format) --------------------------------


def _write_arrow_table(table: Any, fs: Any, path: str) -> dict | None:
    """Write an uncompressed Arrow IPC file. Locally, large files are hashed while they
    are written; returns {"blake2b", "bytes"} then (else None: the store hashes)."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    options = ipc.IpcWriteOptions(compression=None)
    if not is_local_fs(fs):
        with fs.open(path, "wb") as f:
            sink = pa.PythonFile(f, mode="w")
            with ipc.new_file(sink, table.schema, options=options) as writer:
                writer.write_table(table)
            sink.flush()
        return None
    hasher = None
    try:
        with pa.OSFile(path, "wb") as sink:
            if table.nbytes >= _hashing.FOLLOW_MIN_BYTES:
                hasher = _hashing.FollowingHasher(path)
            with ipc.new_file(sink, table.schema, options=options) as writer:
                writer.write_table(table)
    except BaseException:
        if hasher is not None:
            hasher.abort()
        raise
    if hasher is None:
        return None
    digest, size = hasher.finish()
    return {"blake2b": digest, "bytes": size}


def _read_arrow_table(fs: Any, path: str) -> tuple[Any, Any]:
    """(table, mapping). Local files are memory-mapped copy-on-write (MAP_PRIVATE): the
    table's buffers point into the page cache, and writable numpy views of the same
    pages can be handed out (writes go to private copies, never to the file)."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    if is_local_fs(fs):
        with open(path, "rb") as f:
            mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        source = pa.BufferReader(pa.py_buffer(mapping))
    else:
        mapping = None
        source = pa.BufferReader(fs.cat_file(path))
    return ipc.open_file(source).read_all(), mapping


_META_KEY = b"blockyard"
_ZERO_COPY_MAX_COLUMNS = 64
_ZERO_COPY_MIN_COLUMN_BYTES = 1 << 20


def _missing_kind(values: Any) -> str | None:
    """How an object array marks missing values: "none", "nan", or None when mixed
    (None with NaN, pd.NA, NaT...), which Arrow's single null cannot keep apart."""
    import pandas as pd

    missing = values[pd.isna(values)]
    kinds = {"none" if v is None else "nan" if type(v) is float else "other" for v in missing}
    if kinds <= {"none"}:
        return "none"
    if kinds == {"nan"}:
        return "nan"
    return None


# --- pandas -------------------------------------------------------------------------------


class _Region:
    """The address range of a copy-on-write mapping, to turn read-only numpy views that
    Arrow handed out into writable views of the same (private) pages."""

    def __init__(self, mapping: Any) -> None:
        self.mapping = mapping
        if mapping is not None and len(mapping):
            import numpy as np

            self.start = np.frombuffer(mapping, dtype=np.uint8).ctypes.data
            self.end = self.start + len(mapping)
        else:
            self.start = self.end = 0

    def writable_view(self, arr: Any) -> Any | None:
        import numpy as np

        if not (isinstance(arr, np.ndarray) and arr.ndim == 1 and arr.flags.c_contiguous):
            return None
        ptr = arr.__array_interface__["data"][0]
        if not (self.start <= ptr and ptr + arr.nbytes <= self.end):
            return None
        return np.frombuffer(self.mapping, dtype=arr.dtype, count=arr.size, offset=ptr - self.start)


def _backing_arrays(arr: Any) -> list:
    out = []
    for attr in ("_ndarray", "_data", "_mask", "_left", "_right"):
        value = getattr(arr, attr, None)
        if value is not None and hasattr(value, "flags"):
            out.append(value)
    return out


def _writable_column(series: Any, region: _Region) -> Any:
    """The column as something pandas can modify in place: itself when its arrays are
    already writable, a writable view of the mapped file when Arrow gave a zero-copy
    read-only array, else a copy."""
    import numpy as np

    dtype = series.dtype
    if getattr(dtype, "storage", None) == "pyarrow" or type(dtype).__name__ == "ArrowDtype":
        return series  # immutable Arrow data; pandas builds new arrays on assignment
    arr = series.array
    backing = _backing_arrays(arr)
    if backing and all(b.flags.writeable for b in backing):
        return series
    if len(backing) == 1:
        view = region.writable_view(backing[0])
        if view is not None:
            if isinstance(dtype, np.dtype):
                return view
            try:
                return arr._from_backing_data(view)  # Categorical codes, tz-aware datetimes, periods
            except Exception:
                pass
    return series.copy()


class PandasFrameCodec(Codec):
    """pandas DataFrame -> Arrow IPC file (uncompressed), read back memory-mapped.

    Index, column names, dtypes (datetimes with tz, categoricals, strings, nullable ints,
    periods, intervals) and attrs round-trip through pyarrow's pandas metadata. Object
    columns are restored to object dtype (pyarrow would return them as `str`). Frames
    Arrow cannot hold exactly (mixed-type object columns, lists in object cells, duplicate
    column names, sparse columns) raise CodecSkip and go to cloudpickle.

    Loading is zero-copy for fixed-width columns without nulls: they are writable numpy
    views of a copy-on-write mapping of the file, so the frame behaves like any other
    (in-place edits copy the touched pages privately; the file never changes).
    """

    name = "pandas_arrow"
    extension = ".arrow"
    kind = "dataframe"

    def can_encode(self, obj: Any) -> bool:
        pd = _loaded("pandas")
        return pd is not None and type(obj) is pd.DataFrame

    def _to_table(self, df: Any, meta: dict) -> Any:
        import pyarrow as pa

        object_columns = [i for i, dt in enumerate(df.dtypes) if dt == object]
        try:
            table = pa.Table.from_pandas(df, preserve_index=None)
        except (pa.ArrowException, ValueError, TypeError, OverflowError) as exc:
            raise CodecSkip(f"Arrow cannot hold this frame: {exc}") from exc
        for i in object_columns:
            if pa.types.is_nested(table.schema.field(i).type):
                # lists/dicts in object cells would come back as numpy arrays / filled dicts
                raise CodecSkip(f"object column {df.columns[i]!r} holds nested values")
        object_nulls = {}
        for i in object_columns:
            if table.column(i).null_count:
                # Arrow has one null; remember whether the frame used None or NaN for it
                kind = _missing_kind(df.iloc[:, i].to_numpy())
                if kind is None:
                    raise CodecSkip(f"object column {df.columns[i]!r} mixes missing-value markers")
                if kind == "nan":
                    object_nulls[str(i)] = "nan"
        index = df.index
        object_index = (
            index.nlevels == 1 and type(index).__name__ == "Index" and index.dtype == object and len(index) > 0
        )
        if object_index and pa.types.is_nested(table.schema.field(df.shape[1]).type):
            raise CodecSkip("object index holds nested values")
        meta = dict(meta, object_columns=object_columns, object_index=bool(object_index))
        if object_nulls:
            meta["object_nulls"] = object_nulls
        metadata = dict(table.schema.metadata or {})
        metadata[_META_KEY] = json.dumps(meta, sort_keys=True).encode()
        return table.replace_schema_metadata(metadata)

    def save(self, obj: Any, fs: Any, path: str) -> None:
        table = self._to_table(obj, {"kind": self.kind})
        return _write_arrow_table(table, fs, path)

    @staticmethod
    def _to_pandas(table: Any, mapping: Any) -> Any:
        import numpy as np
        import pandas as pd

        meta = json.loads((table.schema.metadata or {}).get(_META_KEY, b"{}"))
        region = _Region(mapping)
        ncols = table.num_columns
        if ncols <= _ZERO_COPY_MAX_COLUMNS or table.nbytes >= ncols * _ZERO_COPY_MIN_COLUMN_BYTES:
            # long frames: zero-copy where Arrow allows, then swap the read-only columns
            # for writable views of the (copy-on-write) mapping
            raw = table.to_pandas(split_blocks=True)
            columns = {i: _writable_column(raw.iloc[:, i], region) for i in range(raw.shape[1])}
            df = pd.DataFrame(columns, index=raw.index, copy=False)
            df.columns = raw.columns
            if raw.attrs:
                df.attrs = raw.attrs
        else:
            # wide, short frames: one consolidated copy beats thousands of per-column views
            df = table.to_pandas()
            for i, dtype in enumerate(df.dtypes):
                if not isinstance(dtype, np.dtype):  # extension columns may still be zero-copy
                    column = df.iloc[:, i]
                    fixed = _writable_column(column, region)
                    if fixed is not column:
                        df.isetitem(i, fixed)
        object_nulls = meta.get("object_nulls", {})
        for i in meta.get("object_columns", ()):
            column = table.column(i)
            values = np.array(column.to_numpy(zero_copy_only=False), dtype=object)
            if object_nulls.get(str(i)) == "nan":
                values[column.is_null().to_numpy(zero_copy_only=False)] = np.nan
            # a Series with the frame's own index: pandas 3 would infer `str` from a bare array
            df.isetitem(i, pd.Series(values, index=df.index, dtype=object, copy=False))
        if meta.get("object_index"):
            values = table.column(df.shape[1]).to_numpy(zero_copy_only=False)
            df.index = pd.Index(np.asarray(values, dtype=object), dtype=object, name=df.index.name)
        return df, meta

    def load(self, fs: Any, path: str) -> Any:
        df, _ = self._to_pandas(*_read_arrow_table(fs, path))
        return df

    def summarize(self, obj: Any) -> tuple[dict, Any]:
        return _summary.pandas_frame(obj)


class PandasSeriesCodec(PandasFrameCodec):
    """pandas Series -> Arrow IPC (one-column frame); name, index and dtype kept."""

    name = "pandas_series_arrow"
    extension = ".arrow"
    kind = "series"
    _COLUMN = "__series__"

    def can_encode(self, obj: Any) -> bool:
        pd = _loaded("pandas")
        return pd is not None and type(obj) is pd.Series

    def save(self, obj: Any, fs: Any, path: str) -> None:
        name = obj.name
        if type(name) not in _JSON_SCALARS:
            raise CodecSkip(f"series name {name!r} is not a plain scalar")
        column = name if isinstance(name, str) else self._COLUMN
        frame = obj.to_frame(name=column)
        table = self._to_table(frame, {"kind": self.kind, "name": name})
        return _write_arrow_table(table, fs, path)

    def load(self, fs: Any, path: str) -> Any:
        df, meta = self._to_pandas(*_read_arrow_table(fs, path))
        series = df.iloc[:, 0]
        series.name = meta.get("name")
        return series

    def summarize(self, obj: Any) -> tuple[dict, Any]:
        return _summary.pandas_series(obj)


# --- polars -------------------------------------------------------------------------------


class PolarsFrameCodec(Codec):
    """polars DataFrame -> Arrow IPC (uncompressed); read with polars.read_ipc."""

    name = "polars_arrow"
    extension = ".arrow"

    def can_encode(self, obj: Any) -> bool:
        pl = _loaded("polars")
        return pl is not None and type(obj) is pl.DataFrame

    def save(self, obj: Any, fs: Any, path: str) -> None:
        try:
            if is_local_fs(fs):
                obj.write_ipc(path, compression="uncompressed")
            else:
                with fs.open(path, "wb") as f:
                    obj.write_ipc(f, compression="uncompressed")
        except OSError:
            raise
        except Exception as exc:  # e.g. pl.Object columns
            raise CodecSkip(f"polars cannot write this frame as Arrow IPC: {exc}") from exc

    def load(self, fs: Any, path: str) -> Any:
        import polars as pl

        if is_local_fs(fs):
            return pl.read_ipc(path)  # polars 1.x+ has no memory_map= any more; it reads the path itself
        return pl.read_ipc(io.BytesIO(fs.cat_file(path)))

    def summarize(self, obj: Any) -> tuple[dict, Any]:
        return _summary.polars_frame(obj)


# --- scipy sparse -------------------------------------------------------------------------

class ScipySparseCodec(Codec):
    """scipy.sparse matrices/arrays -> uncompressed .npz (scipy.sparse.save_npz /
    load_npz): csr stays csr, csr_array stays csr_array."""

    name = "scipy_sparse_npz"
    extension = ".npz"
    _FORMATS = ("csr", "csc", "coo", "bsr", "dia")

    def can_encode(self, obj: Any) -> bool:
        sp = _loaded("scipy.sparse")
        if sp is None or not sp.issparse(obj):
            return False
        return getattr(obj, "format", None) in self._FORMATS and obj.dtype.kind != "O"

    def save(self, obj: Any, fs: Any, path: str) -> None:
        import scipy.sparse as sp

        # deterministic bytes: zipfile stamps members opened for writing with 1980-01-01
        with _open_write(fs, path) as f:
            sp.save_npz(f, obj, compressed=False)

    def load(self, fs: Any, path: str) -> Any:
        import scipy.sparse as sp

        if is_local_fs(fs):
            return sp.load_npz(path)
        return sp.load_npz(io.BytesIO(fs.cat_file(path)))

    def summarize(self, obj: Any) -> tuple[dict, Any]:
        return _summary.sparse(obj)


# --- numpy --------------------------------------------------------------------------------


class NumpyCodec(Codec):
    """numpy ndarray (no object fields) -> .npy. Large local files are memory-mapped
    copy-on-write and returned as a plain, writable np.ndarray view."""

    name = "numpy_npy"
    extension = ".npy"
    MMAP_MIN_BYTES = 1 << 20

    def can_encode(self, obj: Any) -> bool:
        np = _loaded("numpy")
        return np is not None and type(obj) is np.ndarray and not obj.dtype.hasobject

    def save(self, obj: Any, fs: Any, path: str) -> dict | None:
        import numpy as np

        hasher = None
        try:
            with _open_write(fs, path) as f:
                if is_local_fs(fs) and obj.nbytes >= _hashing.FOLLOW_MIN_BYTES:
                    hasher = _hashing.FollowingHasher(path)
                np.lib.format.write_array(f, obj, allow_pickle=False)
        except BaseException:
            if hasher is not None:
                hasher.abort()
            raise
        if hasher is None:
            return None
        digest, size = hasher.finish()
        return {"blake2b": digest, "bytes": size}

    def load(self, fs: Any, path: str) -> Any:
        import os

        import numpy as np

        if is_local_fs(fs):
            if os.path.getsize(path) >= self.MMAP_MIN_BYTES:
                mapped = np.load(path, mmap_mode="c", allow_pickle=False)
                return mapped.view(np.ndarray)  # writable (private pages), plain ndarray type
            return np.load(path, allow_pickle=False)
        return np.load(io.BytesIO(fs.cat_file(path)), allow_pickle=False)

    def summarize(self, obj: Any) -> tuple[dict, Any]:
        return _summary.ndarray(obj)


# --- models -------------------------------------------------------------------------------


class XGBoostBoosterCodec(Codec):
    """xgboost.Booster -> native UBJSON model (Booster.save_raw('ubj') / load_model).
    Keeps trees, feature names/types and attributes (best_iteration...); like
    save_model, it does not keep runtime-only config such as nthread."""

    name = "xgboost_ubj"
    extension = ".ubj"

    def can_encode(self, obj: Any) -> bool:
        xgb = _loaded("xgboost")
        return xgb is not None and isinstance(obj, xgb.Booster)

    def save(self, obj: Any, fs: Any, path: str) -> None:
        raw = obj.save_raw(raw_format="ubj")
        _write_bytes(fs, path, bytes(raw))

    def load(self, fs: Any, path: str) -> Any:
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(bytearray(_read_bytes(fs, path)))
        return booster

    def summarize(self, obj: Any) -> tuple[dict, Any]:
        return _summary.xgboost_booster(obj)


class SklearnCodec(Codec):
    """scikit-learn estimators (BaseEstimator instances: DictVectorizer, Pipeline,
    XGBRegressor...) -> a pickle protocol 5 stream (`joblib.load` reads it too).

    Not `joblib.dump`: its pure-Python pickler takes 37 ms for the course's fitted
    DictVectorizer where the C pickler takes 2 ms, and protocol 5 already writes
    numpy arrays as raw buffers. Estimators pickle cannot handle (lambdas inside)
    go to cloudpickle."""

    name = "sklearn_pickle"
    extension = ".skl.pkl"

    def can_encode(self, obj: Any) -> bool:
        base = _loaded("sklearn.base")
        return base is not None and isinstance(obj, base.BaseEstimator)

    def save(self, obj: Any, fs: Any, path: str) -> None:
        try:
            with _open_write(fs, path) as f:
                pickle.dump(obj, f, protocol=5)
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise CodecSkip(f"pickle cannot store this estimator: {exc}") from exc

    def load(self, fs: Any, path: str) -> Any:
        with _open_read(fs, path) as f:
            return pickle.load(f)

    def summarize(self, obj: Any) -> tuple[dict, Any]:
        return _summary.sklearn_model(obj)


# --- plain values -------------------------------------------------------------------------


class JsonCodec(Codec):
    """None/bool/int/float/str and lists/dicts of those -> .json, only when JSON gives the
    same value back (tuples, non-str keys, numpy scalars, subclasses go to cloudpickle)."""

    name = "json"
    extension = ".json"

    def can_encode(self, obj: Any) -> bool:
        return json_exact(obj)

    def save(self, obj: Any, fs: Any, path: str) -> None:
        try:
            data = json.dumps(obj, separators=(",", ":")).encode()
        except (ValueError, RecursionError) as exc:
            raise CodecSkip(str(exc)) from exc
        _write_bytes(fs, path, data)

    def load(self, fs: Any, path: str) -> Any:
        return json.loads(_read_bytes(fs, path))

    def summarize(self, obj: Any) -> tuple[dict, Any]:
        return _summary.json_value(obj)


class PickleCodec(Codec):
    """Anything else -> cloudpickle (lambdas, closures, classes defined in blocks)."""

    name = "cloudpickle"
    extension = ".pkl"

    def can_encode(self, obj: Any) -> bool:
        return True

    def save(self, obj: Any, fs: Any, path: str) -> None:
        import cloudpickle

        with _open_write(fs, path) as f:
            cloudpickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)

    def load(self, fs: Any, path: str) -> Any:
        with _open_read(fs, path) as f:
            return pickle.load(f)


# --- registry -----------------------------------------------------------------------------

_LOCK = threading.Lock()
_FALLBACK = PickleCodec()
_CODECS: list[Any] = [
    PandasFrameCodec(),
    PandasSeriesCodec(),
    PolarsFrameCodec(),
    ScipySparseCodec(),
    NumpyCodec(),
    XGBoostBoosterCodec(),
    SklearnCodec(),
    JsonCodec(),
    _FALLBACK,
]


def register_codec(codec: Any, first: bool = True) -> None:
    """Add a codec. `first=True` puts it before the built-ins; `first=False` puts it just
    before the cloudpickle fallback. A codec with the same name is replaced (files saved
    with that name are then read by the new codec)."""
    for attr in ("name", "extension", "can_encode", "save", "load"):
        if not hasattr(codec, attr):
            raise TypeError(f"codec {codec!r} has no {attr!r}")
    if not codec.name:
        raise ValueError(f"codec {codec!r} needs a non-empty name")
    with _LOCK:
        _CODECS[:] = [c for c in _CODECS if c.name != codec.name]
        if first:
            _CODECS.insert(0, codec)
        else:
            pos = _CODECS.index(_FALLBACK) if _FALLBACK in _CODECS else len(_CODECS)
            _CODECS.insert(pos, codec)


def unregister_codec(name: str) -> bool:
    with _LOCK:
        before = len(_CODECS)
        _CODECS[:] = [c for c in _CODECS if c.name != name]
        return len(_CODECS) != before


def registered_codecs() -> list[Any]:
    with _LOCK:
        return list(_CODECS)


def get_codec(name: str) -> Any | None:
    with _LOCK:
        for codec in _CODECS:
            if codec.name == name:
                return codec
    return None


def candidate_codecs(obj: Any) -> list[Any]:
    """Codecs that say they can encode `obj`, in order; cloudpickle is always last."""
    out = []
    for codec in registered_codecs():
        try:
            ok = codec.can_encode(obj)
        except Exception:
            ok = False
        if ok:
            out.append(codec)
    if _FALLBACK not in out and get_codec(_FALLBACK.name) is _FALLBACK:
        out.append(_FALLBACK)
    return out
