"""MLflow experiment tracking for blocks.

Where things live (default, no server needed)::

    <workspace>/.blockyard/mlflow.db        the tracking store (SQLite)
    <workspace>/.blockyard/mlartifacts/     models, DictVectorizers, plots

(`.blockyard` moves with ``BLOCKYARD_HOME``). The workspace root comes from the
`workspace` argument, else ``BLOCKYARD_WORKSPACE``, else the current directory. An
explicit `tracking_uri` argument or ``MLFLOW_TRACKING_URI`` wins over the default.
See it with::

    mlflow ui --backend-store-uri sqlite:///<workspace>/.blockyard/mlflow.db

Every run carries the tags ``model_class``, ``pipeline``, ``block`` and
``blockyard_run_id`` (taken from the block's ``**kwargs``, see `run_tags`).
"""
from __future__ import annotations

import logging
import os
import pickle
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

EXPERIMENT_NAME = "nyc-taxi-experiment"

TAG_MODEL_CLASS = "model_class"
TAG_PIPELINE = "pipeline"
TAG_BLOCK = "block"
TAG_BLOCK_RUN = "block_run"  # a dynamic clone's uuid, e.g. 'hyperparameter_tuning/sklearn:Lasso'
TAG_RUN_ID = "blockyard_run_id"
TAG_PROJECT = "project"
TAG_KIND = "blockyard_kind"  # "trial", "tuning", "final"

# scikit-learn's own compiled classes that skops stores but does not trust by default
# (it loads them through its dedicated, non-pickle loaders). They are named one by one
# and written into the model's MLmodel, which is what MLflow checks again on loading:
# every other type stays refused, so skops keeps guarding against arbitrary code.
SKOPS_TRUSTED_TYPES = (
    "sklearn.tree._tree.Tree",  # RandomForest, ExtraTrees, GradientBoosting, DecisionTree, AdaBoost
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",  # HistGradientBoosting
    "sklearn.neighbors._kd_tree.KDTree",  # KNeighbors
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
)

_log = logging.getLogger("blockyard.ml.tracking")
_setup_lock = threading.RLock()
_setup_cache: dict[tuple[str, str], "Tracking"] = {}


@dataclass
class Tracking:
    """What `setup_mlflow` established: where runs go and which experiment."""

    tracking_uri: str
    experiment_id: str
    experiment_name: str
    artifact_location: str | None
    workspace: Path

    @property
    def client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri)


def workspace_root(workspace: str | Path | None = None) -> Path:
    if workspace is not None:
        return Path(workspace).expanduser().resolve()
    env = os.environ.get("BLOCKYARD_WORKSPACE")
    if env:
        return Path(env).expanduser().resolve()
    return Path.cwd().resolve()


def data_dir(workspace: str | Path | None = None) -> Path:
    from blockyard.settings import data_dir_for

    return data_dir_for(workspace_root(workspace))


def default_tracking_uri(workspace: str | Path | None = None) -> str:
    return f"sqlite:///{data_dir(workspace) / 'mlflow.db'}"


def resolve_tracking_uri(workspace: str | Path | None = None, explicit: str | None = None) -> str:
    """`explicit`, else ``MLFLOW_TRACKING_URI``, else the workspace's SQLite store."""
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(workspace)


tracking_uri = resolve_tracking_uri


def artifact_root(workspace: str | Path | None = None) -> Path:
    return data_dir(workspace) / "mlartifacts"


def setup_mlflow(
    workspace: str | Path | None = None,
    experiment_name: str = EXPERIMENT_NAME,
    tracking_uri: str | None = None,
) -> Tracking:
    """Point MLflow at the workspace's store and make sure the experiment exists.

    Also sets MLflow's process-wide tracking URI and active experiment, so plain
    `mlflow.log_*` calls in a block land in the same place."""
    import mlflow

    root = workspace_root(workspace)
    uri = resolve_tracking_uri(root, tracking_uri)
    key = (uri, experiment_name)
    with _setup_lock:
        cached = _setup_cache.get(key)
        if cached is not None and uri.startswith("sqlite:///"):
            if not Path(uri[len("sqlite:///"):]).exists():  # the store was deleted meanwhile
                cached = None
        if cached is None:
            if uri.startswith("sqlite:///"):
                Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri=uri)
            experiment = client.get_experiment_by_name(experiment_name)
            if experiment is None:
                location = None
                if uri.startswith("sqlite:") or uri.startswith("file:"):
                    folder = artifact_root(root)
                    folder.mkdir(parents=True, exist_ok=True)
                    location = folder.as_uri()
                try:
                    experiment_id = client.create_experiment(experiment_name, artifact_location=location)
                except Exception:  # created concurrently by another block
                    experiment = client.get_experiment_by_name(experiment_name)
                    if experiment is None:
                        raise
                    experiment_id = experiment.experiment_id
                    location = experiment.artifact_location
            else:
                experiment_id = experiment.experiment_id
                location = experiment.artifact_location
            cached = Tracking(uri, experiment_id, experiment_name, location, root)
            _setup_cache[key] = cached
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(experiment_id=cached.experiment_id)
    return cached


def run_tags(
    context: Mapping[str, Any] | None = None,
    *,
    model_class: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The tags every run carries, from a block's kwargs (`pipeline_uuid`, `block_uuid`,
    `pipeline_run_id`, `project_uuid`); a dynamic clone is also tagged `block_run` with
    its own uuid (`dynamic_block_uuid`, e.g. 'hyperparameter_tuning/sklearn:Lasso')."""
    ctx = dict(context or {})
    tags: dict[str, str] = {}
    if model_class:
        tags[TAG_MODEL_CLASS] = str(model_class)
    for tag, key in (
        (TAG_PIPELINE, "pipeline_uuid"),
        (TAG_BLOCK, "block_uuid"),
        (TAG_RUN_ID, "pipeline_run_id"),
        (TAG_PROJECT, "project_uuid"),
    ):
        value = ctx.get(key, ctx.get("project") if key == "project_uuid" else None)
        if value is not None:
            tags[tag] = str(value)
    if ctx.get("dynamic_block_uuid"):
        tags[TAG_BLOCK_RUN] = str(ctx["dynamic_block_uuid"])
    for k, v in (extra or {}).items():
        if v is not None:
            tags[str(k)] = str(v)
    return tags


def _params_list(params: Mapping[str, Any] | None):
    from mlflow.entities import Param

    return [Param(str(k), str(v)[:6000]) for k, v in (params or {}).items()]


def _metrics_list(metrics: Mapping[str, Any] | None, step: int = 0):
    import math
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    out = []
    for k, v in (metrics or {}).items():
        try:
            value = float(v)
        except (TypeError, ValueError):
            continue
        if math.isnan(value):
            continue
        out.append(Metric(str(k), value, now, step))
    return out


def track_experiment(
    *,
    run_name: str | None = None,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    model_class: str | None = None,
    context: Mapping[str, Any] | None = None,
    parent_run_id: str | None = None,
    kind: str | None = None,
    status: str = "FINISHED",
    workspace: str | Path | None = None,
    experiment_name: str = EXPERIMENT_NAME,
) -> str:
    """Record one finished run (params, metrics, tags) and return its run id.

    Uses the MLflow client directly (no global active run), so it is safe from
    several threads; `parent_run_id` nests it under another run."""
    tracking = setup_mlflow(workspace, experiment_name)
    client = tracking.client
    all_tags = run_tags(context, model_class=model_class, extra=tags)
    if kind:
        all_tags[TAG_KIND] = kind
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    run = client.create_run(tracking.experiment_id, tags=all_tags, run_name=run_name)
    run_id = run.info.run_id
    client.log_batch(run_id, metrics=_metrics_list(metrics), params=_params_list(params))
    client.set_terminated(run_id, status=status)
    return run_id


def log_trial(
    parent_run_id: str | None,
    number: int,
    params: Mapping[str, Any],
    metrics: Mapping[str, Any],
    *,
    model_class: str | None = None,
    context: Mapping[str, Any] | None = None,
    workspace: str | Path | None = None,
    experiment_name: str = EXPERIMENT_NAME,
) -> str:
    """One tuning trial as a child run of `parent_run_id`."""
    short = (model_class or "model").rsplit(".", 1)[-1]
    return track_experiment(
        run_name=f"{short} trial {number}",
        params=params,
        metrics=metrics,
        tags={"trial": number},
        model_class=model_class,
        context=context,
        parent_run_id=parent_run_id,
        kind="trial",
        workspace=workspace,
        experiment_name=experiment_name,
    )


@contextmanager
def tuning_run(
    model_class: str,
    *,
    context: Mapping[str, Any] | None = None,
    run_name: str | None = None,
    workspace: str | Path | None = None,
    experiment_name: str = EXPERIMENT_NAME,
) -> Iterator["_OpenRun"]:
    """A parent run for a tuning study; yields an object with `run_id`, `on_trial`
    (pass it to `tune_*`) and `finish(params, metrics)`."""
    tracking = setup_mlflow(workspace, experiment_name)
    client = tracking.client
    tags = run_tags(context, model_class=model_class)
    tags[TAG_KIND] = "tuning"
    short = model_class.rsplit(".", 1)[-1]
    run = client.create_run(tracking.experiment_id, tags=tags, run_name=run_name or f"{short} tuning")
    handle = _OpenRun(run.info.run_id, model_class, context, workspace, experiment_name)
    try:
        yield handle
    except BaseException:
        client.set_terminated(handle.run_id, status="FAILED")
        raise
    else:
        client.set_terminated(handle.run_id, status="FINISHED")


class _OpenRun:
    def __init__(self, run_id, model_class, context, workspace, experiment_name) -> None:
        self.run_id = run_id
        self.model_class = model_class
        self.context = context
        self.workspace = workspace
        self.experiment_name = experiment_name
        self.trial_run_ids: list[str] = []

    def on_trial(self, number: int, params: dict, metrics: dict) -> None:
        self.trial_run_ids.append(
            log_trial(
                self.run_id,
                number,
                params,
                metrics,
                model_class=self.model_class,
                context=self.context,
                workspace=self.workspace,
                experiment_name=self.experiment_name,
            )
        )

    def finish(self, params: Mapping[str, Any] | None = None, metrics: Mapping[str, Any] | None = None) -> None:
        tracking = setup_mlflow(self.workspace, self.experiment_name)
        tracking.client.log_batch(self.run_id, metrics=_metrics_list(metrics), params=_params_list(params))


@dataclass
class FinalModel:
    run_id: str
    model_uri: str
    metrics: dict
    model_class: str
    experiment_id: str

    def to_dict(self) -> dict:
        return {
            "run_id": self.run_id,
            "model_uri": self.model_uri,
            "metrics": dict(self.metrics),
            "model_class": self.model_class,
            "experiment_id": self.experiment_id,
        }


def model_class_name(model_or_class: Any) -> str:
    """Public dotted name: 'sklearn.linear_model.Lasso' (private modules like
    `_coordinate_descent` left out), 'xgboost.Booster'."""
    cls = model_or_class if isinstance(model_or_class, type) else type(model_or_class)
    parts = [p for p in cls.__module__.split(".") if not p.startswith("_")]
    if parts and parts[0] == "xgboost":
        parts = ["xgboost"]
    return ".".join(parts + [cls.__qualname__])


def _predict(model: Any, X):
    try:
        import xgboost as xgb

        if isinstance(model, xgb.Booster):
            return model.predict(xgb.DMatrix(X))
    except ImportError:
        pass
    return model.predict(X)


def log_final_model(
    model: Any,
    dv: Any = None,
    metrics: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    sample: Any = None,
    *,
    context: Mapping[str, Any] | None = None,
    run_name: str | None = None,
    artifacts: Any = None,
    workspace: str | Path | None = None,
    experiment_name: str = EXPERIMENT_NAME,
    skops_trusted_types: Any = None,
) -> FinalModel:
    """Log a trained model as an MLflow model (sklearn or xgboost flavour), with its
    metrics, parameters, tags, the DictVectorizer `dv` as an artifact
    (``preprocessor/dv.pkl``) and a signature inferred from `sample` (a few rows of X).
    `artifacts`: more files to log, a list (logged at the run's root) or a mapping
    file -> artifact folder. sklearn models are stored as skops (no pickle); types beyond
    `SKOPS_TRUSTED_TYPES` that the model holds must be named in `skops_trusted_types`."""
    import mlflow

    tracking = setup_mlflow(workspace, experiment_name)
    cls_name = model_class_name(model)
    all_tags = run_tags(context, model_class=cls_name, extra=tags)
    all_tags[TAG_KIND] = "final"
    signature = None
    if sample is not None:
        from mlflow.models import infer_signature

        try:
            signature = infer_signature(sample, _predict(model, sample))
        except Exception as exc:  # a signature is nice to have, never worth failing for
            _log.warning("could not infer a model signature: %s", exc)

    with mlflow.start_run(
        experiment_id=tracking.experiment_id,
        nested=mlflow.active_run() is not None,
        run_name=run_name or f"{cls_name.rsplit('.', 1)[-1]} final",
        tags=all_tags,
    ) as run:
        client = tracking.client
        client.log_batch(run.info.run_id, metrics=_metrics_list(metrics), params=_params_list(params))
        if dv is not None:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "dv.pkl"
                with open(path, "wb") as fh:
                    pickle.dump(dv, fh)
                mlflow.log_artifact(str(path), artifact_path="preprocessor")
        if isinstance(artifacts, Mapping):
            for path, folder in artifacts.items():
                mlflow.log_artifact(str(path), artifact_path=folder or None)
        else:
            for path in artifacts or []:
                mlflow.log_artifact(str(path))
        info = _log_model(model, signature, skops_trusted_types)
        return FinalModel(
            run_id=run.info.run_id,
            model_uri=info.model_uri,
            metrics={k: float(v) for k, v in (metrics or {}).items()},
            model_class=cls_name,
            experiment_id=tracking.experiment_id,
        )


def _log_model(model: Any, signature, extra_trusted_types=None):
    import warnings

    try:
        import xgboost as xgb
    except ImportError:  # pragma: no cover - xgboost is in the ml extra
        xgb = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if xgb is not None and isinstance(model, (xgb.Booster, xgb.XGBModel)):
            import mlflow.xgboost

            return mlflow.xgboost.log_model(
                model,
                name="model",
                signature=signature,
                pip_requirements=[f"xgboost=={xgb.__version__}"],
                model_format="ubj",
            )
        import mlflow.sklearn
        import sklearn
        from mlflow.exceptions import MlflowException

        trusted = sorted(set(SKOPS_TRUSTED_TYPES) | set(extra_trusted_types or ()))
        try:
            return mlflow.sklearn.log_model(
                model,
                name="model",
                signature=signature,
                pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
                serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
                skops_trusted_types=trusted,
            )
        except MlflowException as exc:
            if "untrusted types" not in str(exc):
                raise
            raise ValueError(
                f"cannot log {model_class_name(model)} to MLflow: its skops file holds types outside "
                f"blockyard.ml.tracking.SKOPS_TRUSTED_TYPES ({str(exc).split('Root error: ', 1)[-1].strip()}); "
                "if they are safe to load, pass them as log_final_model(..., skops_trusted_types=[...])"
            ) from None


def load_dv(run_id: str, workspace: str | Path | None = None, experiment_name: str = EXPERIMENT_NAME):
    """The DictVectorizer logged with a final model run."""
    import mlflow

    setup_mlflow(workspace, experiment_name)
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="preprocessor/dv.pkl")
    with open(local, "rb") as fh:
        return pickle.load(fh)
