"""XGBoost tuning: search space, fixed parameters, early stopping and pruning callbacks."""
from __future__ import annotations

import logging
import os
import time
from typing import Callable

from blockyard.ml.tuning_study import DEFAULT_START, OnTrial, TuningResult, _run_study, space_sampler

XGBOOST_FIXED = {
    "objective": "reg:squarederror",
    "eval_metric": "rmse",
    "tree_method": "hist",
    "grow_policy": "lossguide",
    "max_depth": 0,
}

# A configuration known to do well on the course data (val RMSE 4.9923, best round 104;
# the former reg_lambda 1 / min_child_weight 0.5 / learning_rate 0.2 gave 5.0325, see
# bench/RESULTS.md "XGBoost defaults"): tried first, so a handful of evaluations suffices.
XGBOOST_START = {
    "max_leaves": 255,
    "learning_rate": 0.3,
    "min_child_weight": 1.0,
    "reg_lambda": 30.0,
    "reg_alpha": 0.001,
    "max_bin": 1024,
}


def xgboost_search_space(trial) -> dict:
    return {
        "max_leaves": trial.suggest_int("max_leaves", 31, 1023, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 0.05, 0.4, log=True),
        "min_child_weight": trial.suggest_float("min_child_weight", 0.1, 10.0, log=True),
        "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
        "reg_alpha": trial.suggest_float("reg_alpha", 1e-3, 1.0, log=True),
        "max_bin": trial.suggest_categorical("max_bin", [256, 512, 1024]),
    }


def xgboost_params(params: dict, random_state: int | None = None, nthread: int | None = None) -> dict:
    """Sampled parameters + the fixed ones xgb.train needs."""
    full = {**XGBOOST_FIXED, **params}
    full["seed"] = int(random_state or 0)
    full["nthread"] = int(nthread or os.cpu_count() or 1)
    full["verbosity"] = 0
    return full


def _pruning_callback(trial, observation_key: str = "validation-rmse"):
    import optuna
    import xgboost as xgb

    dataset, metric = observation_key.split("-", 1)

    class _Prune(xgb.callback.TrainingCallback):
        def after_iteration(self, model, epoch: int, evals_log) -> bool:
            score = evals_log[dataset][metric][-1]
            trial.report(float(score), step=epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at round {epoch} (validation rmse {score:.4f})")
            return False

    return _Prune()


def _deadline_callback(deadline: float):
    """Stop boosting (keeping the best round so far) once the tuning time is up."""
    import xgboost as xgb

    class _Deadline(xgb.callback.TrainingCallback):
        def after_iteration(self, model, epoch: int, evals_log) -> bool:
            return time.monotonic() > deadline

    return _Deadline()


def to_dmatrix(X, y=None):
    import xgboost as xgb

    if isinstance(X, xgb.DMatrix):
        return X
    label = None if y is None else getattr(y, "to_numpy", lambda: y)()
    return xgb.DMatrix(X, label=label)


def tune_xgboost(
    X_train,
    y_train,
    X_val,
    y_val,
    *,
    max_evaluations: int = 6,
    timeout: float | None = None,
    random_state: int | None = 7,
    search_space: Callable | None = None,
    start_params: dict | str | None = DEFAULT_START,
    logger: logging.Logger | None = None,
    on_trial: OnTrial | None = None,
    progress: bool | None = None,
    # xgboost only
    num_boost_round: int = 300,
    early_stopping_rounds: int = 20,
    prune: bool = True,
    prune_warmup_rounds: int = 30,
    nthread: int | None = None,
) -> TuningResult:
    """Tune xgboost on DMatrix data with early stopping on the validation set.

    `search_space(trial) -> params` or `search_space(trial, random_state) -> params`
    (default: `xgboost_search_space`); `start_params` "default" is `XGBOOST_START`
    (with any search space: it is a point of the default one, tried as is).

    With `prune`, a trial whose validation RMSE after `prune_warmup_rounds` rounds is
    worse than the median of the finished trials at the same round is stopped.
    `timeout` (seconds) bounds the whole search: no trial starts after it, and the
    trial running when it passes stops boosting and keeps its best round so far.

    `best_params` holds the sampled parameters; `best_iteration` the number of
    boosting rounds the best trial needed."""
    import xgboost as xgb

    sample = space_sampler(search_space or xgboost_search_space, random_state)
    dtrain = to_dmatrix(X_train, y_train)
    dval = to_dmatrix(X_val, y_val)
    if start_params == DEFAULT_START:
        start_params = XGBOOST_START

    deadline = time.monotonic() + float(timeout) if timeout else None

    def evaluate(trial, params: dict) -> tuple[float, dict]:
        callbacks = [_pruning_callback(trial)] if (prune and trial is not None) else []
        if deadline is not None:
            callbacks.append(_deadline_callback(deadline))
        booster = xgb.train(
            xgboost_params(params, random_state, nthread),
            dtrain,
            num_boost_round=int(num_boost_round),
            evals=[(dval, "validation")],
            early_stopping_rounds=int(early_stopping_rounds),
            verbose_eval=False,
            callbacks=callbacks,
        )
        try:
            score, rounds = float(booster.best_score), int(booster.best_iteration) + 1
        except AttributeError:  # stopped by the deadline before early stopping kept score
            from blockyard.ml.metrics import rmse

            score, rounds = rmse(dval.get_label(), booster.predict(dval)), booster.num_boosted_rounds()
        return score, {"rmse": score, "best_iteration": rounds}

    result = _run_study(
        label="xgboost",
        model_class="xgboost.Booster",
        sample=sample,
        evaluate=evaluate,
        max_evaluations=max_evaluations,
        timeout=timeout,
        random_state=random_state,
        start_params=start_params,
        logger=logger,
        on_trial=on_trial,
        progress=progress,
        prune=prune,
        prune_warmup_rounds=prune_warmup_rounds,
    )
    best = next((t for t in result.trials if t.get("best")), None)
    if best is not None:
        result.best_iteration = best["metrics"].get("best_iteration")
    return result

