"""The registry's champion model and its DictVectorizer, loaded once per process and
version (a backfill over 14 months scores every month with the same objects)."""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Dict, Tuple

import pandas as pd

from mlops.utils.data_preparation.feature_selector import select_features

MODEL_NAME = 'nyc-taxi-duration'


def champion_info() -> Dict[str, Any]:
    from blockyard.ml.registry import champion

    info = champion(MODEL_NAME)
    if info is None:
        raise RuntimeError(
            f"no champion model '{MODEL_NAME}' in the MLflow registry: run a unit_2_training "
            'pipeline first (e.g. blockyard run mlops unit_2_training/sklearn_training)'
        )
    return info


@lru_cache(maxsize=4)
def _load(version: str, run_id: str, model_uri: str) -> Tuple[Any, Any]:
    import mlflow

    from blockyard.ml.tracking import load_dv, setup_mlflow

    setup_mlflow()
    flavors = mlflow.models.get_model_info(model_uri).flavors
    if 'xgboost' in flavors:
        import mlflow.xgboost

        model = mlflow.xgboost.load_model(model_uri)
    else:
        import mlflow.sklearn

        model = mlflow.sklearn.load_model(model_uri)
    return model, load_dv(run_id)


def predict(df: pd.DataFrame, info: Dict[str, Any] | None = None):
    """The champion's predicted durations for prepared trips (unit 1's features)."""
    from blockyard.ml.tracking import _predict

    info = info or champion_info()
    model, dv = _load(info['version'], info['run_id'], info['model_uri'])
    X = dv.transform(select_features(df).to_dict('records'))
    return _predict(model, X)
