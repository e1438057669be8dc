"""GET /api/status: health for people and load balancers (no token needed)."""
from __future__ import annotations

import logging

from fastapi import APIRouter, Request

import blockyard
from blockyard.server import queries
from blockyard.server.deps import state
from blockyard.server.models import DatabaseStatus, RunCounts, StatusOut

router = APIRouter(prefix="/api", tags=["status"])
log = logging.getLogger("blockyard.server")
# A worker beats every second; one silent for this long is counted as gone.
LIVE_SECONDS = 15.0


@router.get("/status", response_model=StatusOut, summary="Health, version, database, scheduler and queue")
def get_status(request: Request):
    st = state(request)
    ws = st.workspace
    dialect = "unknown"
    reachable, error = False, None
    counts = RunCounts()
    heartbeat = None
    workers = slots = 0
    try:
        db = st.db
        dialect = db.dialect
        queries.ping(db)
        reachable = True
        counts = RunCounts(**queries.status_counts(db))
    except Exception as exc:  # noqa: BLE001 - report, never fail the health check
        detail = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        log.warning("status: database check failed: %s", detail)
        # /api/status needs no token: with auth on, do not tell strangers about the database.
        error = "unreachable (see the server log)" if st.config.auth_enabled else detail
    if reachable:
        try:
            from blockyard.orchestration import status as orch_status

            heartbeat = orch_status.scheduler_heartbeat_age(db)
            live = [h for h in orch_status.heartbeats(db, role="worker") if h.get("age", 1e9) < LIVE_SECONDS]
            workers = len(live)
            slots = sum(int((h.get("info") or {}).get("concurrency") or 0) for h in live)
        except ImportError:
            heartbeat = None
        except Exception as exc:  # noqa: BLE001
            log.warning("status: scheduler heartbeat unavailable: %s", exc)
    return StatusOut(
        status="ok" if reachable else "degraded",
        version=blockyard.__version__,
        workspace=ws.name,
        role=st.config.role,
        auth=st.config.auth_enabled,
        database=DatabaseStatus(dialect=dialect, reachable=reachable, error=error),
        scheduler_heartbeat_age=heartbeat,
        workers=workers,
        worker_slots=slots,
        local_workers=st.local_workers,
        runs=counts,
    )
