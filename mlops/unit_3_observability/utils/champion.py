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
    """The model and its DictVectorizer. Each run of a backfill is its own process, and
    MLflow's model loading costs more than the month's scoring: the pair is kept as one
    pickle per registry version and run under the workspace's monitoring folder."""
    import os
    import pickle

    from blockyard.ml.monitoring import reference_dir

    cache = reference_dir(MODEL_NAME) / f'champion-v{version}-{run_id}.pkl'
    if cache.is_file():
        with cache.open('rb') as f:
            return pickle.load(f)
    pair = _load_from_mlflow(model_uri, run_id)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f'.{os.getpid()}.tmp')
    with tmp.open('wb') as f:
        pickle.dump(pair, f)
    os.replace(tmp, cache)  # atomic: a concurrent run reads a whole file or none
    return pair


def _load_from_mlflow(model_uri: str, run_id: str) -> Tuple[Any, Any]:
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
