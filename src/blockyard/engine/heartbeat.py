"""Heartbeats of the runs this process executes without a worker lease (`blockyard run`).

A run started from the CLI has no lease; one thread per process stamps `heartbeat_at`
on each such run every `BLOCKYARD_RUN_HEARTBEAT_SECONDS` (default 10) s. A worker fails
a run whose process is gone on its own host at once, and a run from any host whose
heartbeat is older than its lease timeout (the host never came back): see
`Worker.recover`.
"""
from __future__ import annotations

import os
import threading
from typing import Any

_lock = threading.Lock()
_runs: dict[int, Any] = {}  # run id -> database
_thread: threading.Thread | None = None
_thread_pid: int | None = None
_wake = threading.Event()


def interval() -> float:
    try:
        return max(0.05, float(os.environ.get("BLOCKYARD_RUN_HEARTBEAT_SECONDS", "10")))
    except ValueError:
        return 10.0


def register(db: Any, run_id: int) -> None:
    global _thread, _thread_pid
    with _lock:
        _runs[int(run_id)] = db
        if _thread is None or _thread_pid != os.getpid() or not _thread.is_alive():
            _thread = threading.Thread(target=_loop, name="blockyard-run-heartbeat", daemon=True)
            _thread_pid = os.getpid()
            _thread.start()


def unregister(run_id: int) -> None:
    with _lock:
        _runs.pop(int(run_id), None)


def _loop() -> None:
    from datetime import datetime, timezone

    while True:
        _wake.wait(interval())
        with _lock:
            runs = list(_runs.items())
        for run_id, db in runs:
            try:
                db.update_pipeline_run(run_id, heartbeat_at=datetime.now(timezone.utc))
            except Exception:  # a busy or closed database: the next beat tries again
                pass
