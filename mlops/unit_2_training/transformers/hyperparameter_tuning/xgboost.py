from typing import Dict, List, Tuple

import pandas as pd
from scipy.sparse import csr_matrix
from sklearn.base import BaseEstimator

from blockyard.ml.tracking import tuning_run
from blockyard.ml.tuning import tune_xgboost

if 'transformer' not in globals():
    from mage_ai.data_preparation.decorators import transformer


@transformer
def hyperparameter_tuning(
    training_set: Dict[str, List],
    *args,
    **kwargs,
) -> Tuple[Dict, csr_matrix, pd.Series, csr_matrix, pd.Series, BaseEstimator, Dict]:
    """Tune XGBoost on the training set, with early stopping on the validation set.

    Variables: `max_evaluations` (trials), `early_stopping_rounds`,
    `num_boost_round` (the most rounds a trial may use), `random_state`,
    `max_tuning_seconds` (stop starting new trials after this long).
    Trials whose validation curve falls behind the median are pruned.
    """
    X, X_train, X_val, y, y_train, y_val, dv = training_set['build']

    timeout = kwargs.get('max_tuning_seconds')
    with tuning_run('xgboost.Booster', context=kwargs) as run:
        result = tune_xgboost(
            X_train,
            y_train,
            X_val,
            y_val,
            max_evaluations=int(kwargs.get('max_evaluations', 8)),
            early_stopping_rounds=int(kwargs.get('early_stopping_rounds', 20)),
            num_boost_round=int(kwargs.get('num_boost_round', 300)),
            random_state=int(kwargs.get('random_state', 7)),
            timeout=float(timeout) if timeout else None,
            logger=kwargs.get('logger'),
            on_trial=run.on_trial,
        )
        run.finish(
            result.best_params,
            {
                'rmse': result.best_rmse,
                'trials': result.n_trials,
                'best_iteration': result.best_iteration or 0,
            },
        )

    model_info = dict(
        cls='xgboost.Booster',
        name='XGBoost',
        rmse=result.best_rmse,
        trials=result.n_trials,
        best_iteration=result.best_iteration,
        tuning_run_id=run.run_id,
    )
    return result.best_params, X_train, y_train, X_val, y_val, dv, model_info
