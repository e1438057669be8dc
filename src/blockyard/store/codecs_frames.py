"""Codecs for data frames: pandas DataFrame/Series and polars DataFrame as Arrow IPC
files (uncompressed), read back memory-mapped and, where Arrow allows, zero-copy."""
from __future__ import annotations

import json
import mmap
from typing import Any

import blockyard.store.hashing as _hashing
import blockyard.store.summary as _summary
from blockyard.store.codec_base import JSON_SCALARS, Codec, CodecSkip, is_local_fs, readable


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
    with _hashing.HashWhileWriting() as hashed:
        with pa.OSFile(path, "wb") as sink:
            hashed.follow(path, when=table.nbytes >= _hashing.FOLLOW_MIN_BYTES)
            with ipc.new_file(sink, table.schema, options=options) as writer:
                writer.write_table(table)
    return hashed.result


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
    library, type_name = "pandas", "DataFrame"
    summarizer = staticmethod(_summary.pandas_frame)
    kind = "dataframe"

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

    def _as_frame(self, obj: Any) -> tuple[Any, dict]:
        """(the frame to store, the metadata that brings `obj` back from it)."""
        return obj, {"kind": self.kind}

    def save(self, obj: Any, fs: Any, path: str) -> dict | None:
        return _write_arrow_table(self._to_table(*self._as_frame(obj)), fs, path)

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


class PandasSeriesCodec(PandasFrameCodec):
    """pandas Series -> Arrow IPC (one-column frame); name, index and dtype kept."""

    name = "pandas_series_arrow"
    type_name = "Series"
    summarizer = staticmethod(_summary.pandas_series)
    kind = "series"
    _COLUMN = "__series__"

    def _as_frame(self, obj: Any) -> tuple[Any, dict]:
        name = obj.name
        if type(name) not in JSON_SCALARS:
            raise CodecSkip(f"series name {name!r} is not a plain scalar")
        column = name if isinstance(name, str) else self._COLUMN
        return obj.to_frame(name=column), {"kind": self.kind, "name": name}

    def load(self, fs: Any, path: str) -> Any:
        df, meta = self._to_pandas(*_read_arrow_table(fs, path))
        series = df.iloc[:, 0]
        series.name = meta.get("name")
        return series


# --- polars -------------------------------------------------------------------------------


class PolarsFrameCodec(Codec):
    """polars DataFrame -> Arrow IPC (uncompressed); read with polars.read_ipc."""

    name = "polars_arrow"
    extension = ".arrow"
    library, type_name = "polars", "DataFrame"
    summarizer = staticmethod(_summary.polars_frame)

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

        return pl.read_ipc(readable(fs, path))  # polars 1.x+ has no memory_map=; locally it reads the path itself
