"""Batteries for ML blocks: experiment tracking, model registry, tuning, metrics.

Every module imports its heavy libraries (numpy, sklearn, mlflow, optuna, xgboost)
inside functions, so importing `blockyard.ml` costs nothing.

    from blockyard.ml.metrics import rmse
    from blockyard.ml.tuning import tune_sklearn, tune_xgboost
    from blockyard.ml.tracking import setup_mlflow, track_experiment, log_trial, log_final_model
    from blockyard.ml.registry import promote_if_better
"""
