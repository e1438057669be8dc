"""Plain values out of pandas/numpy objects: flat lists, lists of series, JSON-able scalars."""
from __future__ import annotations

import datetime as _dt
import math
from typing import Any


def values(value: Any) -> list:
    """A flat list from a Series, Index, ndarray, list or scalar."""
    import numpy as np

    if value is None:
        return []
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        out = value.tolist()
        return out if isinstance(out, list) else [out]
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, np.generic):
        return [value.item()]
    try:
        return list(value)
    except TypeError:
        return [value]


def series_list(value: Any) -> list[list]:
    """y as a list of series: [1, 2] -> [[1, 2]]; [[1, 2], [3, 4]] stays."""
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        return [values(value[c]) for c in value.columns]
    items = values(value)
    if items and all(isinstance(i, (list, tuple)) or hasattr(i, "tolist") for i in items):
        return [values(i) for i in items]
    return [items]


def scalar(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    try:
        import pandas as pd

        if value is pd.NaT or (not isinstance(value, (list, dict)) and pd.isna(value)):
            return None
        if isinstance(value, pd.Timestamp):
            return value.isoformat()
        if isinstance(value, pd.Timedelta):
            return str(value)
    except (ImportError, TypeError, ValueError):
        pass
    if hasattr(value, "item"):
        try:
            return scalar(value.item())
        except (TypeError, ValueError):
            pass
    return str(value)


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return scalar(value)
