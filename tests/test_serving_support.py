"""Helpers for the serving tests: a small model trained on real mirror data, registered
in a temp MLflow store (no tests here)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COURSE = REPO / "mlops"
TRANSFORM = "mlops.utils.data_preparation.feature_engineering:combine_features"
ROW = {"PULocationID": 74, "DOLocationID": 75, "trip_distance": 2.5}

if str(REPO) not in sys.path:  # `import mlops.utils...` as the course's blocks do
    sys.path.insert(0, str(REPO))


def month_frame(month: str | list[str] = "2023-01", rows: int = 20_000):
    """Cleaned trips of `month` (or of each month of a list) with PU_DO (the course's
    utils): the first `rows` (of each month, `rows` // their number)."""
    import pandas as pd

    from blockyard.datasets import load_green_taxi
    from mlops.utils.data_preparation.cleaning import clean
    from mlops.utils.data_preparation.feature_engineering import combine_features

    months = [month] if isinstance(month, str) else list(month)
    parts = [combine_features(clean(load_green_taxi([m]))) for m in months]
    if rows:
        parts = [p.head(max(1, rows // len(parts))) for p in parts]
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].reset_index(drop=True)


def train_and_register(workspace: Path, *, month: str | list[str] = "2023-01", rows: int = 20_000, kind: str = "xgboost",
                       rounds: int = 10, rmse: float | None = None) -> str:
    """Train a small model on `month` (or months), log it with its DictVectorizer, register it and
    make it the champion when `rmse` (default: its training RMSE) beats the current one.
    Returns the registered version."""
    from mlops.utils.data_preparation.encoders import vectorize_features
    from mlops.utils.data_preparation.feature_selector import select_features

    from blockyard.ml.metrics import rmse as rmse_of
    from blockyard.ml.registry import promote_if_better
    from blockyard.ml.tracking import log_final_model

    df = month_frame(month, rows)
    X, _, dv = vectorize_features(select_features(df))
    y = df["duration"].to_numpy()
    if kind == "xgboost":
        import xgboost as xgb

        model = xgb.train({"max_depth": 5, "nthread": 1, "seed": 1}, xgb.DMatrix(X, label=y), num_boost_round=rounds)
        fitted = model.predict(xgb.DMatrix(X))
    else:
        from sklearn.linear_model import LinearRegression

        model = LinearRegression().fit(X, y)
        fitted = model.predict(X)
    score = rmse if rmse is not None else rmse_of(y, fitted)
    final = log_final_model(model, dv, {"rmse": score}, {"month": month if isinstance(month, str) else ",".join(month)},
                            workspace=workspace)
    promotion = promote_if_better(final.model_uri, score, run_id=final.run_id, workspace=workspace,
                                  register_all=True)
    return promotion.version


def subprocess_env(home: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO)] + [p for p in [env.get("PYTHONPATH")] if p])
    env["BLOCKYARD_HOME"] = str(home)
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("BLOCKYARD_DATABASE_URL", None)
    env.pop("BLOCKYARD_STORE_URL", None)
    return env
