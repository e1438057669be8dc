"""Value helpers shared by the SQLAlchemy Core and the sqlite3 write paths.

No SQLAlchemy here: the sqlite3 fast path keeps it off the run path of `blockyard run`.
"""
from __future__ import annotations

import json
import os
import random
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Mapping

from blockyard.db.columns import BLOCK_RUN_FIELDS, PIPELINE_RUN_COLUMNS, STATUSES, utcnow

# Set on every new SQLite connection, by both write paths and the engine alike.
SQLITE_PRAGMAS = ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=5000", "foreign_keys=ON")
_BUSY_RETRY_SECONDS = 5.0  # as busy_timeout


def set_sqlite_pragmas(cursor) -> None:
    """Run SQLITE_PRAGMAS on a new sqlite3 connection (or cursor)."""
    import sqlite3

    deadline = None
    for pragma in SQLITE_PRAGMAS:
        while True:
            try:
                cursor.execute(f"PRAGMA {pragma}")
                break
            except sqlite3.OperationalError as exc:
                # Processes that open a new file at the same moment and switch it to
                # WAL get SQLITE_BUSY at once: SQLite does not wait through the busy
                # timeout there (that could deadlock). Retry for as long as it would.
                busy = getattr(exc, "sqlite_errorcode", 5) & 0xFF == 5 and "locked" in str(exc)
                now = time.monotonic()
                if deadline is None:
                    deadline = now + _BUSY_RETRY_SECONDS
                if not busy or now >= deadline:
                    raise
                time.sleep(0.005 + random.random() * 0.02)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        try:
            return item()
        except Exception:
            pass
    return str(value)


# json.dumps(value, default=...) builds a new encoder on every call; one shared
# encoder (stateless between calls) gives the same text without that cost.
_ENCODER = json.JSONEncoder(default=_json_default)


def _json_dumps(value: Any) -> str:
    return _ENCODER.encode(value)


def _check_status(status: str) -> str:
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")
    return status


def check_block_run_fields(fields: Mapping[str, Any]) -> None:
    # Called for every queued block-run change: the common case is one C-level subset test.
    if not BLOCK_RUN_FIELDS.issuperset(fields):
        unknown = set(fields) - BLOCK_RUN_FIELDS
        raise ValueError(
            f"unknown block run field(s): {', '.join(sorted(unknown))}; "
            f"expected some of {', '.join(sorted(BLOCK_RUN_FIELDS))}"
        )
    if "status" in fields:
        _check_status(fields["status"])


def _initial_block_rows(run_id: int, uuids: Iterable[str]) -> list[dict[str, Any]]:
    return [
        {
            "pipeline_run_id": run_id,
            "block_uuid": u,
            "base_block_uuid": u,
            "status": "initial",
            "attempts": 0,
            "cache_hit": False,
        }
        for u in uuids
    ]


def new_run_values(
    project: str,
    pipeline_uuid: str,
    variables: Mapping[str, Any] | None,
    execution_date: datetime | None,
    block_count: int,
    status: str,
    **columns: Any,
) -> dict[str, Any]:
    """Columns of a new pipeline run (both database implementations insert exactly this)."""
    _check_status(status)
    now = utcnow()
    return {
        "project": project,
        "pipeline_uuid": pipeline_uuid,
        "status": status,
        "variables": dict(variables) if variables is not None else {},
        "execution_date": execution_date if execution_date is not None else now,
        "created_at": now,
        "started_at": now if status == "running" else None,
        "heartbeat_at": now if status == "running" else None,
        "block_count": block_count,
        **columns,
    }


def start_values(block_count: int, pid: int | None, hostname: str | None) -> dict[str, Any]:
    """Columns of a (queued) run moved to running by the process that claimed it."""
    return {
        "status": "running",
        "started_at": utcnow(),
        "heartbeat_at": utcnow(),
        "pid": pid,
        "hostname": hostname,
        "block_count": block_count,
        "error": None,
        "completed_at": None,
    }


def check_pipeline_run_fields(fields: Mapping[str, Any]) -> None:
    unknown = set(fields) - (PIPELINE_RUN_COLUMNS - {"id"})
    if unknown:
        raise ValueError(f"unknown pipeline run field(s): {', '.join(sorted(unknown))}")
    if "status" in fields:
        _check_status(fields["status"])


def orphan_message(pid: int) -> str:
    """The error of a run whose process died (recover_orphans)."""
    return f"the process running it (pid {pid}) exited before it finished"


def finish_values(
    status: str,
    error: "str | BaseException | None",
    error_details: Mapping[str, Any] | None,
    metrics: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Columns of a finished pipeline run. `error` may be an exception; a BlockyardError
    also fills `error_details` (file/line/block/hint) unless given."""
    _check_status(status)
    if isinstance(error, BaseException):
        exc = error
        error = str(exc) or type(exc).__name__
        if error_details is None and hasattr(exc, "to_dict"):
            try:
                error_details = exc.to_dict()
            except Exception:
                error_details = None
    from blockyard import masking

    values = {
        "status": status,
        "completed_at": utcnow(),
        "error": masking.mask(error),  # secret values the run touched: ***
        "error_details": masking.mask_data(dict(error_details)) if error_details is not None else None,
    }
    if metrics is not None:
        values["metrics"] = dict(metrics)
    return values


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists on this machine."""
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    if sys.platform == "win32":  # pragma: no cover
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)
        if not handle:
            return False
        ctypes.windll.kernel32.CloseHandle(handle)
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True
