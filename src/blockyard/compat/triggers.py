"""`mage_ai.orchestration.triggers.api`: `trigger_pipeline`.

Where the triggered run executes, in this order:

* **server** — BLOCKYARD_SERVER_URL is set: `POST {url}/api/pipelines/{uuid}/runs`
  (JSON `{"variables", "schedule_name"}`, bearer BLOCKYARD_API_TOKEN when set); the
  server queues it for its worker. `check_status` polls
  `GET {url}/api/pipelines/{uuid}/runs/{id}`.
* **worker** — a worker serving this workspace's database is alive (heartbeat younger
  than `LIVE_WORKER_SECONDS`; always so for a block a worker runs): the run is queued
  in the database (under the trigger named `schedule_name`, created as an API trigger
  when missing, as Mage does) and a worker runs it; `check_status` polls the database.
* **local** — otherwise (`blockyard run` with no worker): the pipeline runs in this
  process, on a background thread unless `check_status` waits for it.

As in Mage, `check_status=True` waits until the run ends (polling every
`poll_interval` s, at most `poll_timeout` s, then TimeoutError); then
`error_on_failure=True` raises PipelineRunFailed if it failed. A cancelled run is
returned, not raised.
"""
from __future__ import annotations

import json
import os
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

__all__ = ["trigger_pipeline", "TriggeredRun", "PipelineRunFailed", "ENV_SERVER_URL"]

ENV_SERVER_URL = "BLOCKYARD_SERVER_URL"
ENV_API_TOKEN = "BLOCKYARD_API_TOKEN"
FINISHED = ("completed", "failed", "cancelled")
DEFAULT_POLL_INTERVAL = 60
LIVE_WORKER_SECONDS = 15.0
_HTTP_TIMEOUT = 30.0


class PipelineRunFailed(Exception):
    """Raised with `check_status=True, error_on_failure=True` when the run failed."""


class RunStatus(str):
    """A status string that also answers `.value`, like Mage's PipelineRunStatus enum."""

    @property
    def value(self) -> str:
        return str(self)


@dataclass
class TriggeredRun:
    """What `trigger_pipeline` returns (Mage returns its PipelineRun: `id`, `status`,
    `pipeline_uuid`, `variables`, `execution_date`, `pipeline_schedule_id`)."""

    pipeline_uuid: str
    id: int | None = None
    status: str = "running"
    error: str | None = None
    # local: run_pipeline's return value; server/worker: the run as a dict.
    result: Any = None
    variables: dict = field(default_factory=dict)
    project: str | None = None
    execution_date: Any = None
    pipeline_schedule_id: int | None = None
    mode: str = "local"  # local, worker or server
    _thread: threading.Thread | None = field(default=None, repr=False, compare=False)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "status" and isinstance(value, str) and not isinstance(value, RunStatus):
            value = RunStatus(value)
        object.__setattr__(self, name, value)

    def wait(self, timeout: float | None = None) -> "TriggeredRun":
        """Block until a local background run ends (no-op otherwise)."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self

    @property
    def done(self) -> bool:
        return self.status in FINISHED


def trigger_pipeline(
    pipeline_uuid: str,
    variables: dict | None = None,
    check_status: bool = False,
    error_on_failure: bool = False,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    poll_timeout: float | None = None,
    schedule_name: str | None = None,
    verbose: bool = True,
    remote_blocks: list | None = None,
    **unsupported: Any,
) -> TriggeredRun:
    """Start a run of `pipeline_uuid` with `variables` (see the module docstring)."""
    if remote_blocks or unsupported.get("return_remote_blocks"):
        raise NotImplementedError(
            "trigger_pipeline(remote_blocks=...) is not supported by Blockyard: the triggered "
            "pipeline reads other pipelines' outputs with get_variable() instead"
        )
    unknown = sorted(set(unsupported) - {"return_remote_blocks"})
    if unknown:
        raise TypeError(f"trigger_pipeline() got unexpected keyword argument(s): {', '.join(unknown)}")
    variables = dict(variables or {})
    interval = max(0.0, float(poll_interval if poll_interval is not None else DEFAULT_POLL_INTERVAL))
    server = os.environ.get(ENV_SERVER_URL, "").strip()
    if server:
        run = _trigger_remote(server.rstrip("/"), pipeline_uuid, variables, schedule_name,
                              check_status, interval, poll_timeout, verbose)
    else:
        target = _live_worker_target(pipeline_uuid)
        if target is not None:
            run = _trigger_queued(target, pipeline_uuid, variables, schedule_name,
                                  check_status, interval, poll_timeout, verbose)
        else:
            run = _trigger_local(pipeline_uuid, variables, check_status, poll_timeout, verbose)
    if check_status and error_on_failure and run.status == "failed":
        detail = f": {run.error}" if run.error else ""
        raise PipelineRunFailed(
            f"pipeline run {run.id if run.id is not None else '?'} of '{pipeline_uuid}' "
            f"ended failed{detail}"
        )
    return run


def _say(verbose: bool, run: TriggeredRun) -> None:
    if verbose:
        print(f"Pipeline run {run.id} for pipeline {run.pipeline_uuid}: {run.status}.")


def _wait_until_done(run: TriggeredRun, refresh: Any, interval: float, poll_timeout: float | None,
                     verbose: bool) -> None:
    """Call `refresh()` every `interval` s until the run has finished (Mage's polling)."""
    deadline = None if poll_timeout is None else time.monotonic() + float(poll_timeout)
    while not run.done:
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(
                f"pipeline run {run.id} of '{run.pipeline_uuid}' still {run.status} "
                f"after {poll_timeout} s"
            )
        wait = interval
        if deadline is not None:
            wait = min(wait, max(0.0, deadline - time.monotonic()))
        time.sleep(wait)
        refresh()
        _say(verbose, run)


# ------------------------------------------------------------------ in process
def _status_of(result: Any, default: str) -> tuple[int | None, str, str | None]:
    if isinstance(result, dict):
        get = result.get
    else:
        def get(key: str, fallback: Any = None) -> Any:
            return getattr(result, key, fallback)
    run_id = get("run_id", None)
    if run_id is None:
        run_id = get("id", None)
    status = get("status", None) or default
    error = get("error", None)
    return run_id, str(getattr(status, "value", status)), (str(error) if error else None)


def _local_target(pipeline_uuid: str) -> tuple[str, Any]:
    """(pipeline ref, workspace root or None) for an in-process run. A bare uuid means
    the running block's project first (Mage has one project); an unknown pipeline
    raises here, in the caller, not in the background run."""
    from blockyard.compat._context import find_pipeline, workspace_root_or_none
    from blockyard.compat.variables import _current_project

    root = workspace_root_or_none()
    if root is None:
        return pipeline_uuid, None
    _, spec = find_pipeline(pipeline_uuid, _current_project())
    return f"{spec.project.name}/{spec.uuid}", root


def _run_into(run: TriggeredRun, run_pipeline: Any, ref: str, root: Any, verbose: bool,
              raise_config: bool) -> None:
    from blockyard.errors import ProjectError

    try:
        kwargs = {"workspace": root} if root is not None else {}
        result = run_pipeline(ref, variables=run.variables, **kwargs)
    except Exception as exc:
        if raise_config and isinstance(exc, ProjectError):
            raise  # unknown pipeline, broken metadata: the caller's mistake
        # Anything else is reported through the run, like a failed block.
        run.status, run.error = "failed", f"{type(exc).__name__}: {exc}"
    else:
        run.result = result
        run.id, run.status, run.error = _status_of(result, "completed")
    _say(verbose, run)


def _trigger_local(pipeline_uuid: str, variables: dict, check_status: bool,
                   poll_timeout: float | None, verbose: bool) -> TriggeredRun:
    from blockyard.api import run_pipeline

    run = TriggeredRun(pipeline_uuid, variables=variables, mode="local")
    ref, root = _local_target(pipeline_uuid)
    if root is not None:
        run.project = ref.split("/", 1)[0]
    if check_status and poll_timeout is None:
        _run_into(run, run_pipeline, ref, root, verbose, raise_config=True)
        return run
    thread = threading.Thread(
        target=_run_into,
        args=(run, run_pipeline, ref, root, verbose, False),
        name=f"trigger-{pipeline_uuid}",
        daemon=False,  # the process waits for a triggered run before exiting
    )
    run._thread = thread
    thread.start()
    if check_status:
        thread.join(poll_timeout)
        if thread.is_alive():
            raise TimeoutError(
                f"pipeline run of '{pipeline_uuid}' still running after {poll_timeout} s "
                "(it goes on in the background)"
            )
    return run


# ------------------------------------------------------------------ via a worker
@dataclass
class _Target:
    workspace: Any
    db: Any
    project: str
    pipeline_uuid: str


def _live_worker_target(pipeline_uuid: str) -> _Target | None:
    """The queue to use when a worker serving this workspace's database is alive."""
    from blockyard.compat._context import data_dir, workspace_root_or_none

    if workspace_root_or_none() is None:
        return None
    try:
        from blockyard import settings
        from blockyard.compat._context import find_pipeline
        from blockyard.compat.variables import _current_project, _sqlite_file
        from blockyard.orchestration import status
    except ImportError:  # no orchestration layer in this build
        return None
    ws, spec = find_pipeline(pipeline_uuid, _current_project())
    url = settings.database_url_for(data_dir(ws))
    db_file = _sqlite_file(url)
    if db_file is not None and not db_file.exists():
        return None
    from blockyard.db import Database

    db = Database(url)
    try:
        age = status.worker_heartbeat_age(db)
    except Exception:  # noqa: BLE001 - no orchestration tables yet: nobody to queue for
        age = None
    if age is None or age > LIVE_WORKER_SECONDS:
        db.close()
        return None
    return _Target(ws, db, spec.project.name, spec.uuid)


def schedule_id_for_name(workspace: Any, db: Any, project: str, pipeline_uuid: str, name: str) -> int:
    """The id of the pipeline's trigger `name`, created as an active API trigger if missing."""
    from blockyard.orchestration.triggers import TriggerError, TriggerStore

    store = TriggerStore(workspace, db)
    found = store.find(project, pipeline_uuid, name)
    if found is None:
        try:
            found = store.create({"project": project, "pipeline_uuid": pipeline_uuid,
                                  "name": name, "schedule_type": "api", "status": "active"})
        except TriggerError:  # created meanwhile by another run
            found = store.find(project, pipeline_uuid, name)
            if found is None:
                raise
    return int(found["id"])


def _apply_row(run: TriggeredRun, row: dict) -> None:
    run.result = row
    run.id = row.get("id")
    run.status = row.get("status") or run.status
    error = row.get("error")
    run.error = str(error) if error else None
    run.variables = dict(row.get("variables") or {})
    run.execution_date = row.get("execution_date")
    run.pipeline_schedule_id = row.get("trigger_id")


def _trigger_queued(target: _Target, pipeline_uuid: str, variables: dict, schedule_name: str | None,
                    check_status: bool, interval: float, poll_timeout: float | None,
                    verbose: bool) -> TriggeredRun:
    from blockyard.orchestration import runs

    try:
        trigger_id = (schedule_id_for_name(target.workspace, target.db, target.project, target.pipeline_uuid,
                                           schedule_name) if schedule_name else None)
        row = runs.enqueue_run(target.db, project=target.project, pipeline_uuid=target.pipeline_uuid,
                               variables=variables, trigger_id=trigger_id)
        run = TriggeredRun(pipeline_uuid, project=target.project, mode="worker")
        _apply_row(run, row)
        _say(verbose, run)
        if check_status:
            def refresh() -> None:
                latest = runs.get_run(target.db, run.id)
                if latest is None:
                    raise RuntimeError(f"pipeline run {run.id} of '{pipeline_uuid}' was deleted")
                _apply_row(run, latest)

            _wait_until_done(run, refresh, interval, poll_timeout, verbose)
        return run
    finally:
        target.db.close()


# ------------------------------------------------------------------ via server
def _safe(url: str) -> str:
    """The URL without any user:password part, for messages."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _request(method: str, url: str, body: dict | None = None) -> dict:
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode("utf-8") if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", "application/json")
    token = os.environ.get(ENV_API_TOKEN, "").strip()
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=_HTTP_TIMEOUT) as response:
            payload = response.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")[:500]
        raise RuntimeError(
            f"{method} {_safe(url)} failed: HTTP {exc.code} {detail}".rstrip()
        ) from None
    except urllib.error.URLError as exc:
        raise ConnectionError(f"{method} {_safe(url)} failed: {exc.reason}") from None
    return json.loads(payload) if payload.strip() else {}


def _apply(run: TriggeredRun, payload: dict) -> None:
    if not isinstance(payload, dict):
        raise RuntimeError(f"expected a JSON object describing the run, got {payload!r:.200}")
    run.result = payload
    run_id, run.status, run.error = _status_of(payload, run.status)
    if run_id is not None:
        run.id = run_id
    if isinstance(payload.get("variables"), dict):
        run.variables = dict(payload["variables"])
    run.project = payload.get("project", run.project)
    run.execution_date = payload.get("execution_date", run.execution_date)
    run.pipeline_schedule_id = payload.get("trigger_id", run.pipeline_schedule_id)


def _trigger_remote(server: str, pipeline_uuid: str, variables: dict, schedule_name: str | None,
                    check_status: bool, interval: float, poll_timeout: float | None,
                    verbose: bool) -> TriggeredRun:
    runs_url = f"{server}/api/pipelines/{urllib.parse.quote(pipeline_uuid, safe='')}/runs"
    run = TriggeredRun(pipeline_uuid, status="queued", variables=variables, mode="server")
    _apply(run, _request("POST", runs_url, {"variables": variables, "schedule_name": schedule_name}))
    if verbose:
        print(f"Triggered pipeline '{pipeline_uuid}' on {_safe(server)}: run {run.id} {run.status}")
    if not check_status or run.done:
        return run
    if run.id is None:
        raise RuntimeError(f"{server} did not return a run id for '{pipeline_uuid}'")
    _wait_until_done(run, lambda: _apply(run, _request("GET", f"{runs_url}/{run.id}")),
                     interval, poll_timeout, verbose)
    return run
