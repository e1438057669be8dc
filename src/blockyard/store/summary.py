"""Cheap, JSON-safe descriptions of block outputs (kept in the manifest beside each file).

Nothing here scans a whole object: frames are summarised from their schema and `head()`,
arrays from their first rows, models from `get_params(deep=False)`.
"""
from __future__ import annotations

import math
import reprlib
from typing import Any

SAMPLE_ROWS = 10
MAX_COLUMNS = 1000  # columns listed in a summary
MAX_SAMPLE_COLUMNS = 50  # columns included in sample records
MAX_STR = 200
MAX_REPR = 300

_repr = reprlib.Repr()
_repr.maxstring = MAX_STR
_repr.maxother = MAX_STR
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 10
_repr.maxlevel = 3


def short_repr(obj: Any, limit: int = MAX_REPR) -> str:
    """A repr that never raises and never gets long."""
    try:
        text = _repr.repr(obj)
    except Exception as exc:  # a broken __repr__ must not break saving
        text = f"<{type_name(obj)} (repr failed: {type(exc).__name__})>"
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def type_name(obj: Any) -> str:
    cls = type(obj)
    module = cls.__module__
    if module in ("builtins", "__builtin__"):
        return cls.__qualname__
    return f"{module}.{cls.__qualname__}"


def _trunc(text: str) -> str:
    return text if len(text) <= MAX_STR else text[: MAX_STR - 3] + "..."


def json_safe(value: Any, depth: int = 0) -> Any:
    """Turn one sample value into something json.dumps accepts without losing its meaning.

    Timestamps become ISO strings, NaN/NaT/NA become null, numpy scalars become Python
    scalars; anything unknown becomes a short string.
    """
    if value is None or isinstance(value, bool):
        return value
    cls_name = type(value).__name__
    if cls_name in ("NAType", "NaTType"):
        return None
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return None if (math.isnan(value) or math.isinf(value)) else float(value)
    if isinstance(value, str):
        return _trunc(value)
    if cls_name in ("Timedelta", "timedelta"):
        return str(value)  # "0 days 00:12:00" reads better than ISO "P0DT0H12M0S"
    if hasattr(value, "isoformat") and callable(value.isoformat):  # datetime, date, time, Timestamp
        try:
            return value.isoformat()
        except Exception:
            return _trunc(str(value))
    if cls_name in ("datetime64", "timedelta64"):  # numpy: .item() may give an int for ns units
        return None if value != value else str(value)
    # numpy scalars (without importing numpy): they have .item() and a dtype
    if hasattr(value, "dtype") and hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        try:
            item = value.item()
        except Exception:
            return _trunc(str(value))
        if item is value or type(item) is type(value):
            return _trunc(str(value))
        return json_safe(item, depth)
    if depth < 3:
        if isinstance(value, dict):
            return {str(k): json_safe(v, depth + 1) for k, v in list(value.items())[:SAMPLE_ROWS]}
        if isinstance(value, (list, tuple)):
            return [json_safe(v, depth + 1) for v in value[:SAMPLE_ROWS]]
        if hasattr(value, "tolist") and getattr(value, "ndim", 2) == 1:  # small numpy arrays in cells
            try:
                return [json_safe(v, depth + 1) for v in value[:SAMPLE_ROWS].tolist()]
            except Exception:
                pass
    if isinstance(value, bytes):
        return short_repr(value, MAX_STR)
    return _trunc(str(value)) if not hasattr(value, "__dict__") else short_repr(value, MAX_STR)


# --- per-kind summaries -------------------------------------------------------------------


def generic(obj: Any) -> tuple[dict, Any]:
    summary: dict[str, Any] = {"type": type_name(obj), "repr": short_repr(obj)}
    try:
        summary["len"] = len(obj)  # type: ignore[arg-type]
    except Exception:
        pass
    return summary, None


def json_value(obj: Any) -> tuple[dict, Any]:
    summary, _ = generic(obj)
    return summary, json_safe(obj)


_SCALAR_NAMES = {type(None): "NoneType", bool: "bool", int: "int", float: "float", str: "str"}


def json_scalar(obj: Any) -> tuple[dict, Any]:
    """`json_value` of an exact None/bool/int/float/str, built without the generic walk
    (one per block run returning a scalar). Equal to `json_value(obj)`: the repr is
    reprlib's, which only differs from repr() for ints over `maxlong` digits and strings
    whose repr is over MAX_STR characters."""
    t = type(obj)
    if t is str:
        text = repr(obj) if len(obj) <= MAX_STR else ""
        if not 0 < len(text) <= MAX_STR:
            text = short_repr(obj)
        return {"type": "str", "repr": text, "len": len(obj)}, _trunc(obj)
    try:
        text = repr(obj)
    except ValueError:  # an int past sys.int_max_str_digits
        text = ""
    if not 0 < len(text) <= _repr.maxlong:
        text = short_repr(obj)
    if t is float and (math.isnan(obj) or math.isinf(obj)):
        return {"type": "float", "repr": text}, None
    return {"type": _SCALAR_NAMES[t], "repr": text}, obj


def strict(value: Any) -> Any:
    """Deep copy of a summary/sample with NaN/inf -> None and unknown objects -> str,
    so the manifest is strict JSON whatever a (third-party) codec returned."""
    if isinstance(value, dict):
        return {str(k): strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return None if (math.isnan(value) or math.isinf(value)) else value
    return json_safe(value)


def pandas_frame(df: Any) -> tuple[dict, Any]:
    ncols = df.shape[1]
    cols = list(df.columns[:MAX_COLUMNS])
    dtypes = df.dtypes.iloc[:MAX_COLUMNS]
    summary: dict[str, Any] = {
        "type": type_name(df),
        "shape": list(df.shape),
        "columns": [json_safe(c) if not isinstance(c, tuple) else [json_safe(x) for x in c] for c in cols],
        "dtypes": {str(c): str(t) for c, t in zip(cols, dtypes)},
        "index": {
            "type": type(df.index).__name__,
            "names": [json_safe(n) for n in df.index.names],
            "dtype": str(df.index.dtype),
        },
    }
    if ncols > MAX_COLUMNS:
        summary["columns_truncated"] = True
    head = df.iloc[:SAMPLE_ROWS, :MAX_SAMPLE_COLUMNS]
    sample = []
    col_names = [str(c) for c in head.columns]
    # column-wise conversion: one .tolist() per column, not per cell lookups
    columns = [head.iloc[:, i].tolist() for i in range(head.shape[1])]
    for r in range(head.shape[0]):
        sample.append({name: json_safe(col[r]) for name, col in zip(col_names, columns)})
    return summary, sample


def pandas_series(s: Any) -> tuple[dict, Any]:
    summary = {
        "type": type_name(s),
        "shape": list(s.shape),
        "name": json_safe(s.name),
        "dtype": str(s.dtype),
        "index": {"type": type(s.index).__name__, "dtype": str(s.index.dtype)},
    }
    head = s.iloc[:SAMPLE_ROWS]
    sample = [
        {"index": json_safe(i), "value": json_safe(v)} for i, v in zip(head.index.tolist(), head.tolist())
    ]
    return summary, sample


def polars_frame(df: Any) -> tuple[dict, Any]:
    cols = df.columns[:MAX_COLUMNS]
    schema = df.schema
    summary = {
        "type": type_name(df),
        "shape": list(df.shape),
        "columns": list(cols),
        "dtypes": {c: str(schema[c]) for c in cols},
    }
    if len(df.columns) > MAX_COLUMNS:
        summary["columns_truncated"] = True
    head = df.head(SAMPLE_ROWS).select(df.columns[:MAX_SAMPLE_COLUMNS])
    sample = [{k: json_safe(v) for k, v in row.items()} for row in head.to_dicts()]
    return summary, sample


def ndarray(arr: Any) -> tuple[dict, Any]:
    summary = {"type": type_name(arr), "shape": list(arr.shape), "dtype": str(arr.dtype), "nbytes": int(arr.nbytes)}
    if arr.ndim == 0:
        return summary, json_safe(arr[()])
    head = arr[:SAMPLE_ROWS]
    if arr.dtype.kind in "Mm":
        head = head.astype(str)
    if head.ndim == 2:
        head = head[:, :MAX_SAMPLE_COLUMNS]
    elif head.ndim > 2:
        head = head.reshape(head.shape[0], -1)[:, :MAX_SAMPLE_COLUMNS]
    try:
        return summary, json_safe_nested(head.tolist())
    except Exception:
        return summary, None


def json_safe_nested(value: Any) -> Any:
    if isinstance(value, list):
        return [json_safe_nested(v) for v in value]
    return json_safe(value)


def sparse(m: Any) -> tuple[dict, Any]:
    rows, cols = (m.shape + (1, 1))[:2] if len(m.shape) >= 2 else (m.shape[0], 1)
    total = 1
    for d in m.shape:
        total *= int(d)
    nnz = int(m.nnz)
    summary = {
        "type": type_name(m),
        "shape": [int(d) for d in m.shape],
        "nnz": nnz,
        "density": (nnz / total) if total else 0.0,
        "format": m.format,
        "dtype": str(m.dtype),
    }
    sample = None
    if m.format == "csr" and len(m.shape) == 2:
        # first rows as {column: value}, read straight from indptr/indices/data
        sample = []
        n = min(SAMPLE_ROWS, int(rows))
        indptr, indices, data = m.indptr, m.indices, m.data
        for r in range(n):
            lo, hi = int(indptr[r]), int(indptr[r + 1])
            hi = min(hi, lo + MAX_SAMPLE_COLUMNS)
            sample.append({str(int(c)): json_safe(v) for c, v in zip(indices[lo:hi].tolist(), data[lo:hi].tolist())})
    return summary, sample


def _params(params: dict) -> dict:
    return {str(k): short_repr(v, MAX_STR) for k, v in list(params.items())[:100]}


def sklearn_model(model: Any) -> tuple[dict, Any]:
    summary: dict[str, Any] = {"type": type_name(model), "class": type(model).__name__}
    try:
        summary["params"] = _params(model.get_params(deep=False))
    except Exception as exc:
        summary["params_error"] = f"{type(exc).__name__}: {exc}"[:MAX_STR]
    n_features = getattr(model, "n_features_in_", None)
    if isinstance(n_features, int):
        summary["n_features_in"] = n_features
    if hasattr(model, "steps") and isinstance(model.steps, list):  # Pipeline
        summary["steps"] = [f"{name}: {type(step).__name__}" for name, step in model.steps[:50]]
    return summary, None


def xgboost_booster(booster: Any) -> tuple[dict, Any]:
    summary: dict[str, Any] = {"type": type_name(booster), "class": type(booster).__name__}
    for key, fn in (("num_boosted_rounds", "num_boosted_rounds"), ("num_features", "num_features")):
        try:
            summary[key] = int(getattr(booster, fn)())
        except Exception:
            pass
    try:
        attrs = booster.attributes()
        summary["attributes"] = {str(k): _trunc(str(v)) for k, v in list(attrs.items())[:50]}
    except Exception:
        pass
    names = getattr(booster, "feature_names", None)
    if names:
        summary["feature_names"] = [str(n) for n in list(names)[:MAX_SAMPLE_COLUMNS]]
    return summary, None
