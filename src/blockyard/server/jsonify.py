"""Block outputs as JSON: data frames as records, arrays as lists, scalars as-is."""
from __future__ import annotations

import base64
import datetime as _dt
import decimal
import math
import uuid as _uuid
from pathlib import PurePath
from typing import Any

_MAX_DEPTH = 50


def to_jsonable(value: Any, _depth: int = 0) -> Any:
    """Convert a block output to something `json.dumps` accepts (NaN/inf become null).

    pandas DataFrame -> list of records (one dict per row); Series -> list; numpy
    arrays -> nested lists; numpy scalars -> Python scalars; scipy sparse ->
    {"format", "shape", "nnz", "data"} (dense rows only for small matrices); bytes ->
    base64; other objects -> their repr (e.g. a fitted model).
    """
    if _depth > _MAX_DEPTH:
        return repr(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): to_jsonable(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v, _depth + 1) for v in value]
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return None if value != value else value.isoformat()  # pandas.NaT is a datetime
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return to_jsonable(float(value))
    if isinstance(value, (_uuid.UUID, PurePath)):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")

    module = type(value).__module__.split(".")[0]
    if module == "pandas":
        return _pandas(value, _depth)
    if module == "polars":
        try:
            return to_jsonable(value.to_dicts() if hasattr(value, "to_dicts") else value.to_list(), _depth + 1)
        except Exception:
            return repr(value)
    if module == "numpy":
        return _numpy(value, _depth)
    if module == "scipy" and hasattr(value, "tocsr") and hasattr(value, "nnz"):
        return _sparse(value, _depth)
    if module == "pyarrow" and hasattr(value, "to_pylist"):
        return to_jsonable(value.to_pylist(), _depth + 1)
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return to_jsonable(item(), _depth + 1)
        except Exception:
            pass
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        try:
            return to_jsonable(tolist(), _depth + 1)
        except Exception:
            pass
    return repr(value)


def _pandas(value: Any, depth: int) -> Any:
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        frame = value
        if not frame.columns.is_unique or not all(isinstance(c, str) for c in frame.columns):
            frame = frame.copy()
            frame.columns = [str(c) for c in frame.columns]
        return [to_jsonable(r, depth + 1) for r in frame.to_dict(orient="records")]
    if isinstance(value, pd.Series):
        return [to_jsonable(v, depth + 1) for v in value.tolist()]
    if isinstance(value, (pd.Index,)):
        return [to_jsonable(v, depth + 1) for v in value.tolist()]
    if value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, pd.Timedelta):
        return value.total_seconds()
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return repr(value)


def _numpy(value: Any, depth: int) -> Any:
    import numpy as np

    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            if not np.isfinite(value).all():
                obj = value.astype(object)
                obj[~np.isfinite(value)] = None
                return to_jsonable(obj.tolist(), depth + 1)
            return value.tolist()
        if value.dtype.kind in "biu":
            return value.tolist()
        return to_jsonable(value.tolist(), depth + 1)
    if isinstance(value, np.generic):
        return to_jsonable(value.item(), depth + 1)
    return repr(value)


_SPARSE_DENSE_MAX = 100_000


def _sparse(value: Any, depth: int) -> Any:
    m = value.tocsr()
    out: dict[str, Any] = {"format": "csr", "shape": list(m.shape), "nnz": int(m.nnz)}
    if m.shape[0] * m.shape[1] <= _SPARSE_DENSE_MAX:
        out["data"] = _numpy(m.toarray(), depth + 1)
    return out
