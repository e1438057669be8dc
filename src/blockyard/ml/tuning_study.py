"""The study loop shared by every tuner: seeded TPE, trial logging, progress bar, result."""
from __future__ import annotations

import inspect
import json
import logging
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

_log = logging.getLogger("blockyard.ml.tuning")

OnTrial = Callable[[int, dict, dict], None]

# `start_params` value meaning "the tuner's own known-good first trial".
DEFAULT_START = "default"

# The keywords every tuner takes, in this order, before its own (names and order are
# part of the public API: blocks pass them by keyword).
COMMON_PARAMETERS = (
    "max_evaluations",
    "timeout",
    "random_state",
    "search_space",
    "start_params",
    "logger",
    "on_trial",
    "progress",
)


def space_sampler(search_space: Callable, random_state: int | None) -> Callable[[Any], dict]:
    """`sample(trial)` for a search space of either convention, told apart by its
    signature: `search_space(trial)`, or `search_space(trial, random_state)` when it
    takes a second positional argument (a default or `*args` counts). Any other
    shape is a TypeError naming the function, raised before the first trial."""
    if not callable(search_space):
        raise TypeError(f"search_space must be a function (trial) or (trial, random_state), not {search_space!r}")
    try:
        signature = inspect.signature(search_space)
    except (TypeError, ValueError):  # no signature to read (some builtins): the plain convention
        return search_space
    for args in ((None, random_state), (None,)):
        try:
            signature.bind(*args)
        except TypeError:
            continue
        if len(args) == 2:
            return lambda trial: search_space(trial, random_state)
        return search_space
    name = getattr(search_space, "__name__", None) or type(search_space).__name__
    raise TypeError(
        f"search_space {name}{signature} must take (trial) or (trial, random_state) "
        "and return the trial's parameters"
    )


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
# The shared study loop


def _run_study(
    *,
    label: str,
    model_class: str,
    sample: Callable,
    evaluate: Callable,
    max_evaluations: int,
    timeout: float | None,
    random_state: int | None,
    start_params: dict | None,
    logger,
    on_trial: OnTrial | None,
    progress: bool | None,
    prune: bool = False,
    prune_warmup_rounds: int = 30,
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
            # trials after `prune_warmup_rounds` rounds stops: keeps tuning in budget.
            optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=int(prune_warmup_rounds))
            if prune
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
