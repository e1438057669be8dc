"""The model registry: one registered model, one 'champion' alias that only moves forward.

    promotion = promote_if_better(final.model_uri, final.metrics["rmse"], run_id=final.run_id)
    if promotion:          # True when the model became the champion
        ...

A model is registered (as a new version of ``nyc-taxi-duration``) and given the
alias ``champion`` only when its validation RMSE is strictly lower than the current
champion's. The compare-and-set holds a file lock, so parallel training blocks
(dynamic clones) cannot both think they won.
"""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from blockyard.ml.tracking import EXPERIMENT_NAME, data_dir, setup_mlflow

MODEL_NAME = "nyc-taxi-duration"
CHAMPION = "champion"
METRIC = "rmse"

_log = logging.getLogger("blockyard.ml.registry")
_thread_lock = threading.Lock()


@dataclass
class Promotion:
    promoted: bool
    name: str
    rmse: float
    version: str | None = None  # the new version, when registered
    previous_version: str | None = None
    previous_rmse: float | None = None

    def __bool__(self) -> bool:
        return self.promoted

    def to_dict(self) -> dict:
        return {
            "promoted": self.promoted,
            "name": self.name,
            "rmse": self.rmse,
            "version": self.version,
            "previous_version": self.previous_version,
            "previous_rmse": self.previous_rmse,
        }


@contextmanager
def _registry_lock(workspace) -> Iterator[None]:
    with _thread_lock:
        folder = data_dir(workspace)
        folder.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: the thread lock is all we have
            yield
            return
        with open(folder / "registry.lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def champion(
    name: str = MODEL_NAME,
    alias: str = CHAMPION,
    *,
    workspace: str | Path | None = None,
    experiment_name: str = EXPERIMENT_NAME,
) -> dict | None:
    """The current champion: {version, run_id, rmse, model_uri, source} or None."""
    from mlflow.exceptions import MlflowException

    client = setup_mlflow(workspace, experiment_name).client
    try:
        mv = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    return {
        "version": str(mv.version),
        "run_id": mv.run_id,
        "rmse": _version_rmse(client, mv),
        "model_uri": f"models:/{name}@{alias}",
        "source": mv.source,
    }


def _version_rmse(client, mv) -> float | None:
    value = (mv.tags or {}).get(METRIC)
    if value is not None:
        try:
            return float(value)
        except ValueError:
            pass
    if mv.run_id:
        try:
            return client.get_run(mv.run_id).data.metrics.get(METRIC)
        except Exception:
            return None
    return None


def promote_if_better(
    model_uri: str,
    rmse: float,
    *,
    run_id: str | None = None,
    name: str = MODEL_NAME,
    alias: str = CHAMPION,
    tags: Mapping[str, Any] | None = None,
    register_all: bool = False,
    workspace: str | Path | None = None,
    experiment_name: str = EXPERIMENT_NAME,
) -> Promotion:
    """Register `model_uri` and make it the champion if `rmse` beats the champion's.

    With `register_all`, a model that does not win is still registered as a version
    (without the alias). Returns a `Promotion`, truthy when the alias moved."""
    import mlflow

    rmse = float(rmse)
    tracking = setup_mlflow(workspace, experiment_name)
    client = tracking.client
    with _registry_lock(workspace):
        current = champion(name, alias, workspace=workspace, experiment_name=experiment_name)
        previous_rmse = current["rmse"] if current else None
        better = current is None or previous_rmse is None or rmse < previous_rmse
        result = Promotion(
            promoted=False,
            name=name,
            rmse=rmse,
            previous_version=current["version"] if current else None,
            previous_rmse=previous_rmse,
        )
        if not better and not register_all:
            _log.info(
                "model %s (rmse %.4f) does not beat champion v%s (rmse %.4f); not registered",
                model_uri, rmse, result.previous_version, previous_rmse,
            )
            return result
        version_tags = {METRIC: repr(rmse), **{str(k): str(v) for k, v in (tags or {}).items()}}
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mv = mlflow.register_model(model_uri, name, tags=version_tags)
        result.version = str(mv.version)
        if run_id and not mv.run_id:
            client.set_model_version_tag(name, mv.version, "run_id", run_id)
        if better:
            client.set_registered_model_alias(name, alias, mv.version)
            result.promoted = True
            _log.info(
                "model %s v%s (rmse %.4f) is the new %s (was v%s, rmse %s)",
                name, mv.version, rmse, alias, result.previous_version,
                f"{previous_rmse:.4f}" if previous_rmse is not None else "-",
            )
        return result
