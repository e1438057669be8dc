from typing import Dict, List, Tuple

import pandas as pd
from scipy.sparse import csr_matrix
from sklearn.base import BaseEstimator

from blockyard.ml.tracking import tuning_run
from blockyard.ml.tuning import model_class_path, tune_sklearn

if 'transformer' not in globals():
    from mage_ai.data_preparation.decorators import transformer


@transformer
def hyperparameter_tuning(
    training_set: Dict[str, List],
    model_class_name: str,
    *args,
    **kwargs,
) -> Tuple[Dict, csr_matrix, pd.Series, csr_matrix, pd.Series, BaseEstimator, Dict]:
    """Search the hyperparameters of one model class (this block runs once per model).

    Variables: `max_evaluations` (trials), `random_state` (seeds the TPE sampler).
    Every trial is logged to MLflow as a child run of one tuning run.
    """
    X, X_train, X_val, y, y_train, y_val, dv = training_set['build']

    model_class = model_class_path(model_class_name)
    with tuning_run(model_class, context=kwargs) as run:
        result = tune_sklearn(
            model_class,
            X_train,
            y_train,
            X_val,
            y_val,
            max_evaluations=int(kwargs.get('max_evaluations', 20)),
            random_state=int(kwargs.get('random_state', 7)),
            logger=kwargs.get('logger'),
            on_trial=run.on_trial,
        )
        run.finish(result.best_params, {'rmse': result.best_rmse, 'trials': result.n_trials})

    model_info = dict(
        cls=model_class,
        name=model_class.split('.')[-1],
        rmse=result.best_rmse,
        trials=result.n_trials,
        tuning_run_id=run.run_id,
    )
    return result.best_params, X_train, y_train, X_val, y_val, dv, model_info
