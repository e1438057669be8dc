"""`mage_ai.orchestration.triggers.api`: `trigger_pipeline`.

With BLOCKYARD_SERVER_URL set, the run is requested from that server
(`POST {url}/api/pipelines/{uuid}/runs`, JSON body `{"variables", "schedule_name"}`;
the reply is the run as JSON with at least `id` and `status`). When `check_status`
is true the run is then polled at `GET {url}/api/pipelines/{uuid}/runs/{id}`.
Without a server URL the pipeline runs in this process through
`blockyard.engine.api.run_pipeline`.
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
FINISHED = ("completed", "failed", "cancelled")
_HTTP_TIMEOUT = 30.0


class PipelineRunFailed(Exception):
    """Raised with `error_on_failure=True` when the triggered run does not complete."""


@dataclass
class TriggeredRun:
    """What `trigger_pipeline` returns (Mage returns its PipelineRun; same `id`/`status`)."""

    pipeline_uuid: str
    id: int | None = None
    status: str = "running"
    error: str | None = None
    # In-process: run_pipeline's return value. Server: the run JSON it returned.
    result: Any = None
    _thread: threading.Thread | None = field(default=None, repr=False, compare=False)

    def wait(self, timeout: float | None = None) -> "TriggeredRun":
        """Block until an in-process background run ends (no-op otherwise)."""
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
    poll_interval: float = 60,
    poll_timeout: float | None = None,
    schedule_name: str | None = None,
    verbose: bool = True,
) -> TriggeredRun:
    """Start a run of `pipeline_uuid` with `variables`.

    `check_status=True` waits for the run to finish; then `error_on_failure=True`
    raises PipelineRunFailed if it did not complete. `poll_interval`/`poll_timeout`
    (seconds) apply to waiting on a server run.
    """
    variables = dict(variables or {})
    server = os.environ.get(ENV_SERVER_URL, "").strip()
    if server:
        run = _trigger_remote(
            server.rstrip("/"), pipeline_uuid, variables, schedule_name,
            check_status, poll_interval, poll_timeout, verbose,
        )
    else:
        run = _trigger_local(pipeline_uuid, variables, check_status, verbose)
    if check_status and error_on_failure and run.status != "completed":
        detail = f": {run.error}" if run.error else ""
        raise PipelineRunFailed(
            f"pipeline run {run.id if run.id is not None else '?'} of '{pipeline_uuid}' "
            f"ended {run.status}{detail}"
        )
    return run


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


def _run_into(
    run: TriggeredRun, run_pipeline: Any, variables: dict, verbose: bool, raise_config: bool
) -> None:
    from blockyard.errors import ProjectError

    try:
        result = run_pipeline(run.pipeline_uuid, variables=variables)
    except Exception as exc:
        if raise_config and isinstance(exc, ProjectError):
            raise  # unknown pipeline, broken metadata: the caller's mistake
        # Anything else is reported through the run, like a failed block.
        run.status, run.error = "failed", f"{type(exc).__name__}: {exc}"
    else:
        run.result = result
        run.id, run.status, run.error = _status_of(result, "completed")
    if verbose:
        print(f"Pipeline '{run.pipeline_uuid}' run {run.id}: {run.status}")


def _trigger_local(
    pipeline_uuid: str, variables: dict, check_status: bool, verbose: bool
) -> TriggeredRun:
    from blockyard.engine.api import run_pipeline

    run = TriggeredRun(pipeline_uuid)
    if check_status:
        _run_into(run, run_pipeline, variables, verbose, raise_config=True)
        return run
    thread = threading.Thread(
        target=_run_into,
        args=(run, run_pipeline, variables, verbose, False),
        name=f"trigger-{pipeline_uuid}",
        daemon=False,
    )
    run._thread = thread
    thread.start()
    return run


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


def _trigger_remote(
    server: str,
    pipeline_uuid: str,
    variables: dict,
    schedule_name: str | None,
    check_status: bool,
    poll_interval: float,
    poll_timeout: float | None,
    verbose: bool,
) -> TriggeredRun:
    runs_url = f"{server}/api/pipelines/{urllib.parse.quote(pipeline_uuid, safe='')}/runs"
    run = TriggeredRun(pipeline_uuid, status="queued")
    _apply(run, _request("POST", runs_url, {"variables": variables, "schedule_name": schedule_name}))
    if verbose:
        print(f"Triggered pipeline '{pipeline_uuid}' on {_safe(server)}: run {run.id} {run.status}")
    if not check_status or run.done:
        return run
    if run.id is None:
        raise RuntimeError(f"{server} did not return a run id for '{pipeline_uuid}'")
    deadline = None if poll_timeout is None else time.monotonic() + poll_timeout
    while not run.done:
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(
                f"pipeline run {run.id} of '{pipeline_uuid}' still {run.status} "
                f"after {poll_timeout} s"
            )
        wait = poll_interval
        if deadline is not None:
            wait = min(wait, max(0.0, deadline - time.monotonic()))
        time.sleep(wait)
        _apply(run, _request("GET", f"{runs_url}/{run.id}"))
        if verbose:
            print(f"Pipeline '{pipeline_uuid}' run {run.id}: {run.status}")
    return run
