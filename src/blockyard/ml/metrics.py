"""Regression metrics on plain arrays / Series (numpy only)."""
from __future__ import annotations


def _arrays(y_true, y_pred):
    import numpy as np

    a = np.asarray(y_true, dtype="float64").ravel()
    b = np.asarray(y_pred, dtype="float64").ravel()
    if a.shape != b.shape:
        raise ValueError(f"y_true has {a.size} values but y_pred has {b.size}")
    if a.size == 0:
        raise ValueError("metrics need at least one value")
    return a, b


def mse(y_true, y_pred) -> float:
    a, b = _arrays(y_true, y_pred)
    return float(((a - b) ** 2).mean())


def rmse(y_true, y_pred) -> float:
    return mse(y_true, y_pred) ** 0.5


def mae(y_true, y_pred) -> float:
    import numpy as np

    a, b = _arrays(y_true, y_pred)
    return float(np.abs(a - b).mean())


def r2(y_true, y_pred) -> float:
    a, b = _arrays(y_true, y_pred)
    ss_res = float(((a - b) ** 2).sum())
    ss_tot = float(((a - a.mean()) ** 2).sum())
    if ss_tot == 0.0:
        return 1.0 if ss_res == 0.0 else 0.0
    return 1.0 - ss_res / ss_tot


def regression_metrics(y_true, y_pred, prefix: str = "") -> dict[str, float]:
    """{'rmse', 'mse', 'mae', 'r2'} (keys prefixed, e.g. 'val_rmse')."""
    return {
        f"{prefix}rmse": rmse(y_true, y_pred),
        f"{prefix}mse": mse(y_true, y_pred),
        f"{prefix}mae": mae(y_true, y_pred),
        f"{prefix}r2": r2(y_true, y_pred),
    }
