from typing import Dict

import pandas as pd

from mlops.unit_4_triggering.utils.retraining import load_months, watch_dir

if 'data_exporter' not in globals():
    from mage_ai.data_preparation.decorators import data_exporter


@data_exporter
def train_challenger(*args, **kwargs) -> Dict:
    """Train an XGBoost challenger on the months in `train_months` (files of the watched
    folder), log it with its DictVectorizer to MLflow and register it as a new version
    of `model_name` tagged with `retraining_id` — without moving any alias (the
    automatic_retraining pipeline decides that on the newest month)."""
    import mlflow
    import xgboost as xgb

    from blockyard.ml.metrics import rmse
    from blockyard.ml.tracking import log_final_model
    from mlops.utils.data_preparation.encoders import vectorize_features
    from mlops.utils.data_preparation.feature_selector import select_features

    months = list(kwargs.get('train_months') or [])
    if not months:
        raise ValueError('train_challenger needs the variable train_months (e.g. ["2023-01", "2023-02"])')
    df: pd.DataFrame = load_months(watch_dir(kwargs), months)
    X, _, dv = vectorize_features(select_features(df))
    y = df['duration'].to_numpy()
    params = {'max_depth': 6, 'learning_rate': 0.3, 'min_child_weight': 1, 'objective': 'reg:squarederror',
              'seed': 7, 'nthread': 2}
    booster = xgb.train(params, xgb.DMatrix(X, label=y), num_boost_round=int(kwargs.get('num_boost_round') or 60))
    train_rmse = rmse(y, booster.predict(xgb.DMatrix(X)))
    final = log_final_model(booster, dv, {'train_rmse': train_rmse}, {**params, 'train_months': ','.join(months)},
                            tags={'retraining_id': kwargs.get('retraining_id')}, context=kwargs)
    name = kwargs.get('model_name') or 'nyc-taxi-duration'
    mv = mlflow.register_model(final.model_uri, name,
                               tags={'retraining_id': str(kwargs.get('retraining_id')),
                                     'train_months': ','.join(months)})
    return {'version': str(mv.version), 'run_id': final.run_id, 'train_rmse': train_rmse, 'train_months': months}
