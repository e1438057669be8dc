"""Cheap, independent snapshots of block outputs, so they can be written in the
background while downstream blocks already work on the live objects.

A snapshot must never change, whatever the downstream code does to the original,
and must cost far less than writing the output. That holds for:

* pandas DataFrames and Series under copy-on-write (pandas >= 3, or the option on):
  a shallow copy shares the column buffers, and a write through either object copies
  the touched block first. Object columns (mutable Python objects in the cells) and
  object indexes are excluded: copy-on-write does not protect what the cells point to.
* numpy arrays of plain dtypes and scipy sparse matrices: a memory copy (skipped for
  read-only arrays, which cannot change).

Anything else (models, arbitrary Python objects) returns None: such a block's
outputs are written before its downstream blocks start, as before.
"""
from __future__ import annotations

import sys
from typing import Any

# A background write only pays off for outputs worth a thread hop; tiny values
# (the common `return None` / small JSON) are written inline, synchronously.
_MIN_BACKGROUND_BYTES = 1 << 20
# Memory copies beyond this would cost more than they save (and double the memory).
_MAX_COPY_BYTES = 256 << 20


class _NoSnapshot(Exception):
    pass


def _pandas_cow(pd: Any) -> bool:
    major = int(pd.__version__.split(".", 1)[0])
    if major >= 3:
        return True
    try:
        return pd.get_option("mode.copy_on_write") is True
    except Exception:  # pragma: no cover - option missing in old pandas
        return False


def _snapshot_one(obj: Any) -> tuple[Any, int]:
    """(snapshot, approximate bytes) or _NoSnapshot."""
    pd = sys.modules.get("pandas")
    if pd is not None and type(obj) in (pd.DataFrame, pd.Series):
        if not _pandas_cow(pd):
            raise _NoSnapshot
        dtypes = obj.dtypes if type(obj) is pd.DataFrame else [obj.dtype]
        if any(dt == object for dt in dtypes) or obj.index.dtype == object:
            raise _NoSnapshot
        if isinstance(obj.index, pd.MultiIndex):
            raise _NoSnapshot
        usage = obj.memory_usage(index=True, deep=False)  # a Series for a frame
        return obj.copy(deep=False), int(usage.sum() if hasattr(usage, "sum") else usage)
    np = sys.modules.get("numpy")
    if np is not None and type(obj) is np.ndarray:
        if obj.dtype.hasobject:
            raise _NoSnapshot
        if not obj.flags.writeable and obj.base is None:
            return obj, obj.nbytes
        if obj.nbytes > _MAX_COPY_BYTES:
            raise _NoSnapshot
        return obj.copy(), obj.nbytes
    sparse = sys.modules.get("scipy.sparse")
    if sparse is not None and sparse.issparse(obj):
        size = sum(getattr(obj, a).nbytes for a in ("data", "indices", "indptr") if hasattr(obj, a))
        if obj.dtype.hasobject or size > _MAX_COPY_BYTES:
            raise _NoSnapshot
        return obj.copy(), size
    if obj is None or type(obj) in (bool, int, float, str):  # immutable
        return obj, 0
    raise _NoSnapshot


def snapshot_outputs(outputs: list[Any]) -> list[Any] | None:
    """Snapshots of all outputs, or None when any cannot be snapshotted cheaply or the
    whole is too small to be worth writing in the background."""
    snaps = []
    total = 0
    try:
        for obj in outputs:
            snap, size = _snapshot_one(obj)
            snaps.append(snap)
            total += size
    except _NoSnapshot:
        return None
    except Exception:  # an exotic subclass: write it the safe way
        return None
    return snaps if total >= _MIN_BACKGROUND_BYTES else None
