"""Hyperparameter tuning with Optuna (seeded TPE), for scikit-learn regressors and XGBoost.

    result = tune_sklearn("linear_model.Lasso", X_train, y_train, X_val, y_val,
                          max_evaluations=20, random_state=7, logger=kwargs["logger"])
    result.best_params, result.best_rmse

Every trial is logged to `logger` (one line each) and, on a terminal, a rich progress
bar shows the trials; `on_trial(number, params, metrics)` lets a block log trials to
MLflow (see `blockyard.ml.tracking.log_trial`). The objective is RMSE on the
validation set. XGBoost trials use early stopping on the validation set and are
pruned (median rule) when their learning curve falls behind.

Both tuners take the training and validation data positionally, then the same keywords
in the same order (see `tuning_study.COMMON_PARAMETERS`): `max_evaluations` (trials),
`timeout` (seconds for the whole search), `random_state` (seeds the sampler and the
models), `search_space`, `start_params` ("default": the tuner's known-good first
trial; None: none; or a dict), `logger`, `on_trial`, `progress`. Tuner-specific keywords
come after them.

A custom `search_space` returns one trial's parameters from an Optuna trial, and both
tuners take it in either form: `search_space(trial)`, or `search_space(trial,
random_state)` (told apart by its signature; `tuning_study.space_sampler`):

    def space(trial):
        return {"alpha": trial.suggest_float("alpha", 1e-4, 1.0, log=True)}
"""
from __future__ import annotations

import logging
from typing import Callable

from blockyard.ml.tuning_study import DEFAULT_START, OnTrial, TuningResult, _run_study, space_sampler
from blockyard.ml.tuning_xgboost import (
    XGBOOST_FIXED,
    XGBOOST_START,
    to_dmatrix,
    tune_xgboost,
    xgboost_params,
    xgboost_search_space,
)

# Short names the course uses (variable `models`), mapped to sklearn classes.
SKLEARN_MODELS = {
    "linear_model.LinearRegression": "sklearn.linear_model.LinearRegression",
    "linear_model.Lasso": "sklearn.linear_model.Lasso",
    "linear_model.Ridge": "sklearn.linear_model.Ridge",
    "svm.LinearSVR": "sklearn.svm.LinearSVR",
    "ensemble.RandomForestRegressor": "sklearn.ensemble.RandomForestRegressor",
    "ensemble.GradientBoostingRegressor": "sklearn.ensemble.GradientBoostingRegressor",
    "ensemble.ExtraTreesRegressor": "sklearn.ensemble.ExtraTreesRegressor",
}

DEFAULT_SKLEARN_MODELS = "linear_model.LinearRegression,linear_model.Lasso"

# ---------------------------------------------------------------------------------------
# scikit-learn


def model_class_path(name: str) -> str:
    """'linear_model.Lasso', 'Lasso' or 'sklearn.linear_model.Lasso' -> full import path."""
    if name in SKLEARN_MODELS:
        return SKLEARN_MODELS[name]
    if name.startswith("sklearn."):
        return name
    for short, full in SKLEARN_MODELS.items():
        if short.split(".")[-1] == name:
            return full
    if "." in name:
        return f"sklearn.{name}"
    raise ValueError(
        f"unknown model class {name!r}; use 'module.Class' as in sklearn, e.g. "
        + ", ".join(SKLEARN_MODELS)
    )


def load_model_class(name: str) -> type:
    import importlib

    path = model_class_path(name)
    module_name, _, class_name = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, class_name)
    except (ImportError, AttributeError):
        raise ValueError(
            f"cannot import model class {path!r} (from {name!r}); known: " + ", ".join(SKLEARN_MODELS)
        ) from None


def parse_model_list(value: str | list | tuple | None) -> list[str]:
    """'linear_model.LinearRegression, linear_model.Lasso' -> ['linear_model.LinearRegression', ...]."""
    if value is None or value == "":
        value = DEFAULT_SKLEARN_MODELS
    items = value.split(",") if isinstance(value, str) else list(value)
    names = [str(v).strip() for v in items if str(v).strip()]
    for n in names:
        model_class_path(n)  # validate early, with the helpful message
    return names


def _sklearn_space(class_name: str, trial, random_state: int | None) -> dict:
    """The per-class search space. Fixed parameters are returned alongside the sampled ones."""
    s = trial
    if class_name == "LinearRegression":
        return {"fit_intercept": s.suggest_categorical("fit_intercept", [True, False])}
    if class_name == "Lasso":
        return {
            "alpha": s.suggest_float("alpha", 1e-4, 1.0, log=True),
            "max_iter": 2000,
            "tol": 1e-3,
        }
    if class_name == "Ridge":
        return {"alpha": s.suggest_float("alpha", 1e-3, 100.0, log=True)}
    if class_name == "LinearSVR":
        return {
            "C": s.suggest_float("C", 1e-2, 10.0, log=True),
            "epsilon": s.suggest_float("epsilon", 0.0, 2.0),
            "loss": s.suggest_categorical("loss", ["epsilon_insensitive", "squared_epsilon_insensitive"]),
            "max_iter": 2000,
            "dual": "auto",
            "random_state": random_state,
        }
    if class_name in ("RandomForestRegressor", "ExtraTreesRegressor"):
        return {
            "n_estimators": s.suggest_int("n_estimators", 10, 60),
            "max_depth": s.suggest_int("max_depth", 5, 40),
            "min_samples_leaf": s.suggest_int("min_samples_leaf", 1, 10),
            "min_samples_split": s.suggest_int("min_samples_split", 2, 10),
            "max_features": s.suggest_categorical("max_features", [1.0, "sqrt", 0.3]),
            "n_jobs": -1,
            "random_state": random_state,
        }
    if class_name == "GradientBoostingRegressor":
        return {
            "n_estimators": s.suggest_int("n_estimators", 20, 120),
            "learning_rate": s.suggest_float("learning_rate", 0.02, 0.3, log=True),
            "max_depth": s.suggest_int("max_depth", 3, 8),
            "min_samples_leaf": s.suggest_int("min_samples_leaf", 1, 10),
            "subsample": s.suggest_float("subsample", 0.6, 1.0),
            "random_state": random_state,
        }
    raise ValueError(f"no search space for {class_name!r}; known: " + ", ".join(SKLEARN_MODELS))


def ensure_int32_indices(X):
    """A scipy sparse matrix with 64-bit indices (DictVectorizer makes them) as one with
    32-bit indices, which every sklearn estimator accepts (Lasso, LinearSVR... refuse
    64-bit ones). Anything else is returned unchanged."""
    import numpy as np

    indices = getattr(X, "indices", None)
    indptr = getattr(X, "indptr", None)
    if indices is None or indptr is None:
        return X
    if indices.dtype == np.int32 and indptr.dtype == np.int32:
        return X
    if X.nnz >= 2**31 - 1 or max(X.shape) >= 2**31 - 1:
        return X
    out = X.copy()
    out.indices = indices.astype(np.int32)
    out.indptr = indptr.astype(np.int32)
    return out


# The first trial of each class: sklearn's defaults or a point known to do well here,
# so that a handful of evaluations always includes a sensible model.
SKLEARN_START: dict[str, dict] = {
    "LinearRegression": {"fit_intercept": True},
    "Lasso": {"alpha": 1e-4},
    "Ridge": {"alpha": 1.0},
    "LinearSVR": {"C": 1.0, "epsilon": 0.0, "loss": "epsilon_insensitive"},
    "RandomForestRegressor": {
        "n_estimators": 30, "max_depth": 20, "min_samples_leaf": 1, "min_samples_split": 2, "max_features": 1.0,
    },
    "ExtraTreesRegressor": {
        "n_estimators": 30, "max_depth": 20, "min_samples_leaf": 1, "min_samples_split": 2, "max_features": 1.0,
    },
    "GradientBoostingRegressor": {
        "n_estimators": 100, "learning_rate": 0.1, "max_depth": 3, "min_samples_leaf": 1, "subsample": 1.0,
    },
}


def sklearn_search_space(class_name: str) -> Callable:
    """`space(trial, random_state) -> params` for a class name like 'Lasso'."""
    class_name = class_name.rsplit(".", 1)[-1]
    if not any(k.endswith("." + class_name) for k in SKLEARN_MODELS):
        raise ValueError(f"no search space for {class_name!r}; known: " + ", ".join(SKLEARN_MODELS))
    return lambda trial, random_state=None: _sklearn_space(class_name, trial, random_state)


def tune_sklearn(
    model_class: str | type,
    X_train,
    y_train,
    X_val,
    y_val,
    *,
    max_evaluations: int = 50,
    timeout: float | None = None,
    random_state: int | None = 7,
    search_space: Callable | None = None,
    start_params: dict | str | None = DEFAULT_START,
    logger: logging.Logger | None = None,
    on_trial: OnTrial | None = None,
    progress: bool | None = None,
) -> TuningResult:
    """Search `model_class`'s hyperparameters, minimising validation RMSE.

    `search_space(trial) -> params` or `search_space(trial, random_state) -> params`
    (default: `sklearn_search_space` of the class). The first trial uses `start_params`
    ("default": `SKLEARN_START` for the class, unless a custom `search_space` is given;
    None: none); the rest come from the seeded TPE sampler. `timeout` stops new trials
    from starting."""
    from blockyard.ml.metrics import rmse
    from blockyard.ml.tracking import model_class_name

    if isinstance(model_class, str):
        cls = load_model_class(model_class)
    else:
        cls = model_class
    name = cls.__name__
    sample = space_sampler(search_space or sklearn_search_space(name), random_state)
    X_train = ensure_int32_indices(X_train)
    X_val = ensure_int32_indices(X_val)

    def evaluate(params: dict) -> tuple[float, dict]:
        model = cls(**params)
        model.fit(X_train, y_train)
        score = rmse(y_val, model.predict(X_val))
        return score, {"rmse": score}

    if start_params == DEFAULT_START:
        start_params = SKLEARN_START.get(name) if search_space is None else None
    return _run_study(
        label=name,
        model_class=model_class_name(cls),
        sample=sample,
        evaluate=lambda trial, params: evaluate(params),
        max_evaluations=max_evaluations,
        timeout=timeout,
        random_state=random_state,
        start_params=start_params,
        logger=logger,
        on_trial=on_trial,
        progress=progress,
    )



__all__ = [
    "SKLEARN_MODELS",
    "DEFAULT_SKLEARN_MODELS",
    "OnTrial",
    "TuningResult",
    "model_class_path",
    "load_model_class",
    "parse_model_list",
    "ensure_int32_indices",
    "sklearn_search_space",
    "tune_sklearn",
    "XGBOOST_FIXED",
    "XGBOOST_START",
    "xgboost_search_space",
    "xgboost_params",
    "to_dmatrix",
    "tune_xgboost",
]
