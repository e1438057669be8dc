"""Hyperparameter tuning with Optuna (seeded TPE), for scikit-learn regressors and XGBoost.

    result = tune_sklearn("linear_model.Lasso", X_train, y_train, X_val, y_val,
                          max_evaluations=20, random_state=7, logger=kwargs["logger"])
    result.best_params, result.best_rmse

Every trial is logged to `logger` (one line each) and, on a terminal, a rich progress
bar shows the trials; `on_trial(number, params, metrics)` lets a block log trials to
MLflow (see `blockyard.ml.tracking.log_trial`). The objective is RMSE on the
validation set. XGBoost trials use early stopping on the validation set and are
pruned (median rule) when their learning curve falls behind.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

_log = logging.getLogger("blockyard.ml.tuning")

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

OnTrial = Callable[[int, dict, dict], None]


# ---------------------------------------------------------------------------------------
# Results


@dataclass
class TuningResult:
    model_class: str
    best_params: dict
    best_rmse: float
    n_trials: int
    trials: list[dict] = field(default_factory=list)
    best_iteration: int | None = None  # xgboost: boosting rounds of the best trial
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {
            "model_class": self.model_class,
            "best_params": dict(self.best_params),
            "best_rmse": self.best_rmse,
            "n_trials": self.n_trials,
            "trials": list(self.trials),
            "best_iteration": self.best_iteration,
            "seconds": self.seconds,
        }


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
    random_state: int | None = 7,
    logger: logging.Logger | None = None,
    on_trial: OnTrial | None = None,
    progress: bool | None = None,
    timeout: float | None = None,
    search_space: Callable | None = None,
    start_params: dict | str | None = "default",
) -> TuningResult:
    """Search `model_class`'s hyperparameters, minimising validation RMSE.

    The first trial uses `start_params` ("default": `SKLEARN_START` for the class;
    None: none); the rest come from the seeded TPE sampler."""
    from blockyard.ml.metrics import rmse
    from blockyard.ml.tracking import model_class_name

    if isinstance(model_class, str):
        cls = load_model_class(model_class)
    else:
        cls = model_class
    name = cls.__name__
    space = search_space or sklearn_search_space(name)
    X_train = ensure_int32_indices(X_train)
    X_val = ensure_int32_indices(X_val)

    def evaluate(params: dict) -> tuple[float, dict]:
        model = cls(**params)
        model.fit(X_train, y_train)
        score = rmse(y_val, model.predict(X_val))
        return score, {"rmse": score}

    if start_params == "default":
        start_params = SKLEARN_START.get(name) if search_space is None else None
    return _run_study(
        label=name,
        model_class=model_class_name(cls),
        sample=lambda trial: space(trial, random_state),
        evaluate=lambda trial, params: evaluate(params),
        start_params=start_params,
        max_evaluations=max_evaluations,
        random_state=random_state,
        logger=logger,
        on_trial=on_trial,
        progress=progress,
        timeout=timeout,
    )


# ---------------------------------------------------------------------------------------
# XGBoost

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
    early_stopping_rounds: int = 20,
    num_boost_round: int = 300,
    random_state: int | None = 7,
    logger: logging.Logger | None = None,
    on_trial: OnTrial | None = None,
    progress: bool | None = None,
    timeout: float | None = None,
    search_space: Callable | None = None,
    start_params: dict | None = XGBOOST_START,
    prune: bool = True,
    prune_warmup_rounds: int = 30,
    nthread: int | None = None,
) -> TuningResult:
    """Tune xgboost on DMatrix data with early stopping on the validation set.

    With `prune`, a trial whose validation RMSE after `prune_warmup_rounds` rounds is
    worse than the median of the finished trials at the same round is stopped.
    `timeout` (seconds) bounds the whole search: no trial starts after it, and the
    trial running when it passes stops boosting and keeps its best round so far.

    `best_params` holds the sampled parameters; `best_iteration` the number of
    boosting rounds the best trial needed."""
    import xgboost as xgb

    dtrain = to_dmatrix(X_train, y_train)
    dval = to_dmatrix(X_val, y_val)
    space = search_space or xgboost_search_space

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
        sample=space,
        evaluate=evaluate,
        max_evaluations=max_evaluations,
        random_state=random_state,
        logger=logger,
        on_trial=on_trial,
        progress=progress,
        timeout=timeout,
        start_params=start_params,
        pruner=prune,
        prune_warmup=prune_warmup_rounds,
    )
    best = next((t for t in result.trials if t.get("best")), None)
    if best is not None:
        result.best_iteration = best["metrics"].get("best_iteration")
    return result


# ---------------------------------------------------------------------------------------
# The shared study loop


def _run_study(
    *,
    label: str,
    model_class: str,
    sample: Callable,
    evaluate: Callable,
    max_evaluations: int,
    random_state: int | None,
    logger,
    on_trial: OnTrial | None,
    progress: bool | None,
    timeout: float | None,
    start_params: dict | None = None,
    pruner: bool = False,
    prune_warmup: int = 30,
) -> TuningResult:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    log = logger or _log
    max_evaluations = max(1, int(max_evaluations))
    sampler = optuna.samplers.TPESampler(
        seed=None if random_state is None else int(random_state),
        n_startup_trials=min(10, max(2, max_evaluations // 3)),
    )
    study = optuna.create_study(
        direction="minimize",
        sampler=sampler,
        pruner=(
            # A trial whose validation curve is behind the median of the finished
            # trials after `prune_warmup` rounds stops: keeps tuning in budget.
            optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=int(prune_warmup))
            if pruner
            else optuna.pruners.NopPruner()
        ),
    )
    if start_params:
        study.enqueue_trial(dict(start_params))

    seen: dict[str, tuple[float, dict]] = {}
    trials: list[dict] = []
    repeats = 0
    started = time.perf_counter()

    def objective(trial) -> float:
        nonlocal repeats
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. a start value outside a custom space
            params = sample(trial)
        if start_params and trial.number == 0:
            params = {**params, **start_params}  # exactly the known-good configuration
        key = json.dumps(params, sort_keys=True, default=str)
        t0 = time.perf_counter()
        if key in seen:
            # The space is small (LinearRegression has two points): don't refit.
            score, metrics = seen[key]
            repeats += 1
            repeated = True
        else:
            score, metrics = evaluate(trial, params)
            seen[key] = (score, metrics)
            repeats = 0
            repeated = False
        record = {
            "number": trial.number,
            "params": _jsonable(params),
            "metrics": dict(metrics),
            "rmse": score,
            "seconds": round(time.perf_counter() - t0, 3),
            "state": "repeat" if repeated else "complete",
        }
        trials.append(record)
        if not repeated and on_trial is not None:
            on_trial(trial.number, record["params"], record["metrics"])
        if repeats >= 5:
            study.stop()
        return score

    with _TrialProgress(label, max_evaluations, progress) as bar:

        def after(study_, frozen) -> None:
            state = frozen.state.name.lower()
            if state == "pruned":
                trials.append(
                    {
                        "number": frozen.number,
                        "params": _jsonable(frozen.params),
                        "metrics": {},
                        "rmse": None,
                        "seconds": None,
                        "state": "pruned",
                    }
                )
            best = _best_value(study_)
            if state == "complete" and frozen.value is not None:
                value = f"{frozen.value:.4f}"
            elif state == "pruned" and frozen.intermediate_values:
                step = max(frozen.intermediate_values)
                value = f"pruned at round {step + 1} ({frozen.intermediate_values[step]:.4f})"
            else:
                value = state
            log.info(
                "%s trial %d/%d: rmse=%s best=%s params=%s",
                label,
                frozen.number + 1,
                max_evaluations,
                value,
                f"{best:.4f}" if best is not None else "-",
                json.dumps(_jsonable(frozen.params), sort_keys=True),
            )
            bar.advance(best)
            if timeout and time.perf_counter() - started > float(timeout):
                log.info("%s: time budget of %ss used up, no more trials", label, timeout)
                study_.stop()

        study.optimize(
            objective,
            n_trials=max_evaluations,
            callbacks=[after],
            catch=(),
            gc_after_trial=False,
        )

    best_trial = study.best_trial  # raises ValueError if every trial was pruned
    best_params = None
    for record in trials:
        if record["number"] == best_trial.number and record["state"] != "pruned":
            record["best"] = True
            best_params = record["params"]
    if best_params is None:
        best_params = _jsonable(best_trial.params)
    seconds = time.perf_counter() - started
    log.info(
        "%s: best rmse %.4f after %d trials in %.1fs, params=%s",
        label,
        best_trial.value,
        len(study.trials),
        seconds,
        json.dumps(best_params, sort_keys=True),
    )
    return TuningResult(
        model_class=model_class,
        best_params=best_params,
        best_rmse=float(best_trial.value),
        n_trials=len(study.trials),
        trials=trials,
        seconds=round(seconds, 3),
    )


def _best_value(study) -> float | None:
    try:
        return float(study.best_value)
    except ValueError:
        return None


def _jsonable(params: dict) -> dict:
    out: dict[str, Any] = {}
    for k, v in params.items():
        if hasattr(v, "item") and not isinstance(v, (str, bytes)):
            v = v.item()
        out[k] = v
    return out


class _TrialProgress:
    """A rich progress bar over trials, shown only on a terminal."""

    def __init__(self, label: str, total: int, enabled: bool | None) -> None:
        self.label = label
        self.total = total
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._bar = None
        self._task = None

    def __enter__(self) -> "_TrialProgress":
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("[bold]tuning {task.fields[label]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("best rmse {task.fields[best]}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task("tuning", total=self.total, label=self.label, best="-")
        return self

    def advance(self, best: float | None) -> None:
        from blockyard import runtime

        self.done = getattr(self, "done", 0) + 1
        runtime.report_progress(
            self.done, self.total, f"trials {self.label}, best rmse {best:.4f}" if best is not None else f"trials {self.label}"
        )
        if self._bar is not None:
            self._bar.update(self._task, advance=1, best=f"{best:.4f}" if best is not None else "-")

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()
