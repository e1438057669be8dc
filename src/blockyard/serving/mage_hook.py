"""Served pipelines: the Mage trigger routes answer from the warm model.

A pipeline is served when its metadata.yaml has a `serve` section (Mage ignores it)::

    serve:
      model: nyc-taxi-duration   # registered model (default)
      alias: champion            # registry alias, followed when it moves (default)
      block: inference           # the block whose output the predictions stand for (default)
      transform: null            # 'module:function'; default: the workspace's combine_features
      poll_seconds: 2            # how often the alias is checked (default 2)

Then `POST /api/pipeline_schedules/{id}/pipeline_runs/{token}` with
``{"pipeline_run": {"variables": {"inputs": [...]}}}`` and `POST /api/runs` for that
block answer with the predictions at once (no run queued, no run row) from a model
loaded once per web process. `serve: false` or no section: the routes behave as before.
The server calls `served_config` and, when it is not None, `predict_variables`.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from blockyard.serving.features import RequestError, check_records

INPUTS = "inputs"
_predlogs: dict[str, Any] = {}
_predlogs_lock = threading.Lock()


def served_config(spec: Any) -> dict | None:
    """The pipeline's `serve` section, completed with defaults; None when not served.
    A malformed section raises RequestError (422) naming the key."""
    raw = (getattr(spec, "raw", None) or {}).get("serve")
    if raw in (None, False):
        return None
    if raw is True:
        raw = {}
    where = f"pipeline {spec.uuid}: metadata.yaml serve"
    if not isinstance(raw, dict):
        raise RequestError(f"{where}: expected a mapping (model, alias, block), got {type(raw).__name__}",
                           field="serve")
    unknown = set(raw) - {"model", "alias", "block", "transform", "poll_seconds"}
    if unknown:
        raise RequestError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}", field="serve")
    conf = {"model": "nyc-taxi-duration", "alias": "champion", "block": "inference", "transform": None,
            "poll_seconds": 2.0}
    conf.update({k: v for k, v in raw.items() if v is not None})
    for key in ("model", "alias", "block"):
        if not isinstance(conf[key], str) or not conf[key]:
            raise RequestError(f"{where}.{key}: expected a non-empty string", field=f"serve.{key}")
    try:
        conf["poll_seconds"] = float(conf["poll_seconds"])
    except (TypeError, ValueError):
        raise RequestError(f"{where}.poll_seconds: expected a number of seconds", field="serve.poll_seconds") from None
    return conf


def predict_variables(workspace_root: Path, conf: dict, variables: dict, *, source: str,
                      warm_only: bool = False) -> dict | None:
    """Predictions for `variables['inputs']` from the served model:
    {"predictions": [...], "model": name, "alias": alias, "version": v, "latency_ms": ms}.
    `warm_only`: None when the model is not loaded yet (the caller loads it off the event loop)."""
    from blockyard.serving.model import ModelNotFound, holder_for

    started = time.perf_counter()
    if INPUTS not in (variables or {}):
        raise RequestError("variables.inputs is missing: send {\"inputs\": [{...trip...}, ...]}",
                           field="variables.inputs")
    records = check_records(variables[INPUTS], f"variables.{INPUTS}")
    try:
        holder = holder_for(workspace_root, conf["model"], conf["alias"], transform=conf.get("transform"),
                            poll_seconds=conf["poll_seconds"], warm_only=warm_only)
        if holder is None:
            return None
    except ModelNotFound as exc:
        raise RequestError(f"{exc}; train and register a model first", status=503) from None
    model = holder.current
    predictions = model.predict(records, f"variables.{INPUTS}")
    latency_ms = (time.perf_counter() - started) * 1000
    _predlog(workspace_root).record(model.name, model.version, records, predictions, latency_ms, source)
    return {"predictions": predictions, "model": model.name, "alias": model.alias, "version": model.version,
            "latency_ms": round(latency_ms, 3)}


def _predlog(workspace_root: Path):
    from blockyard.serving.predlog import PredictionLog, predictions_dir

    log = _predlogs.get(str(workspace_root))  # the hot path: no resolve() per request
    if log is not None:
        return log
    key = str(Path(workspace_root).resolve())
    with _predlogs_lock:
        log = _predlogs.get(key)
        if log is None:
            import atexit

            log = _predlogs[key] = PredictionLog(predictions_dir(Path(key)))
            atexit.register(log.close)  # the web server's last second of predictions too
        _predlogs[str(workspace_root)] = log
    return log


def flush_logs() -> None:
    """Write the queued predictions now (tests, shutdown)."""
    with _predlogs_lock:
        logs = list(_predlogs.values())
    for log in logs:
        log.flush()


# ------------------------------------------------------------- the routes' two calls

_conf_cache: dict[str, tuple[int, dict | None, dict]] = {}


def _conf_for(workspace: Any, project: str, uuid: str) -> tuple[dict | None, dict]:
    """(served_config, the pipeline's variables) of project/uuid; metadata.yaml is parsed
    again only when it changes (parsing it costs more than a prediction)."""
    path = workspace.project(project).pipelines_dir / uuid / "metadata.yaml"
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return None, {}
    cached = _conf_cache.get(str(path))
    if cached is None or cached[0] != mtime:
        spec = workspace.project(project).pipeline(uuid)
        cached = (mtime, served_config(spec), dict(spec.variables or {}))
        _conf_cache[str(path)] = cached
    return cached[1], cached[2]


def answer_trigger(workspace: Any, project: str, uuid: str, trigger: dict, variables: dict) -> dict | None:
    """The API trigger's answer for a served pipeline (None: not served, queue a run).
    Mage's shape (`pipeline_run`, with `id: null` since no run is queued) plus
    `predictions` and the model version that made them."""
    conf, _ = _conf_for(workspace, project, uuid)
    if conf is None:
        return None
    merged = {**(trigger.get("variables") or {}), **(variables or {})}
    result = predict_variables(Path(workspace.root), conf, merged, source="api_trigger")
    return {
        "pipeline_run": {
            "id": None, "pipeline_uuid": uuid, "project": project, "pipeline_schedule_id": trigger.get("id"),
            "status": "completed", "variables": {k: v for k, v in merged.items() if k != INPUTS},
            "served": True, "output": result["predictions"],
        },
        **result,
    }


def answer_block_run(workspace: Any, project: str, uuid: str, block_uuid: str, variables: dict, *,
                     warm_only: bool = False) -> dict | None:
    """`POST /api/runs` for the served block: the block's output is the predictions.
    None: not served (or, with `warm_only`, its model is not loaded yet)."""
    conf, defaults = _conf_for(workspace, project, uuid)
    if conf is None or conf["block"] != block_uuid:
        return None
    merged = {**defaults, **(variables or {})}
    result = predict_variables(workspace.root, conf, merged, source="block_run", warm_only=warm_only)
    if result is None:
        return None
    return {"run": {
        "pipeline_run_id": None, "pipeline_uuid": uuid, "project": project,
        "block_uuid": block_uuid, "status": "completed", "mode": "served",
        "variables": {k: v for k, v in (variables or {}).items() if k != INPUTS},
        "output": result["predictions"], "error": None,
        "model": result["model"], "alias": result["alias"], "version": result["version"],
        "latency_ms": result["latency_ms"],
    }}
