"""GET /api/status (health for people), /healthz and /readyz (probes for load
balancers and orchestrators); none needs a token."""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable

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


# ---------------------------------------------------------------- /healthz, /readyz
# Probes for load balancers and orchestrators (Kubernetes, compose healthchecks),
# open like /api/status. Liveness says only "the process answers"; readiness checks
# what a role needs to do its work and turns 503 while the process drains.
# Not in the OpenAPI schema: they are for machines, and /readyz answers 503 by design
# (draining, migrations behind), which API clients and fuzzers would read as an error.
health_router = APIRouter(tags=["status"], include_in_schema=False)


def readiness(db: Any, roles: dict[str, str]) -> tuple[bool, dict]:
    """(ready, body): database reachable, migrations at head, every role ready."""
    from blockyard.db import HEAD_REVISION

    checks: dict[str, Any] = {}
    try:
        from blockyard.db.migrate import current_revision

        with db.engine.connect() as conn:
            revision = current_revision(conn)
        checks["database"] = "ok"
        checks["migrations"] = (
            "ok" if revision == HEAD_REVISION else f"at {revision or 'none'}, head is {HEAD_REVISION}"
        )
    except Exception as exc:  # noqa: BLE001 - a probe reports, never raises
        log.warning("readyz: database check failed: %s: %s", type(exc).__name__, str(exc)[:300])
        checks["database"] = "unreachable (see the log)"
        checks["migrations"] = "unknown"
    checks["roles"] = roles
    ready = (
        checks["database"] == "ok"
        and checks["migrations"] == "ok"
        and bool(roles)
        and all(v == "ready" for v in roles.values())
    )
    return ready, {"status": "ready" if ready else "not ready", "checks": checks}


def _roles(st: Any) -> dict[str, str]:
    probe = getattr(st, "role_probe", None)
    if probe is not None:
        return probe()
    return {"web": "draining" if st.stop_event.is_set() else "ready"}


@health_router.get("/healthz", summary="Liveness: the process answers")
def healthz(request: Request):
    return {"status": "ok", "role": state(request).config.role}


@health_router.get("/readyz", summary="Readiness: database, migrations, roles")
def readyz(request: Request):
    from fastapi.responses import JSONResponse

    st = state(request)
    ready, body = readiness(st.db, _roles(st))
    body["role"] = st.config.role
    return JSONResponse(body, status_code=200 if ready else 503)


class HealthServer:
    """/healthz and /readyz for roles without the web server (scheduler, worker):
    a stdlib HTTP server on its own port and thread."""

    def __init__(self, host: str, port: int, role: str, db: Any, roles: Callable[[], dict]) -> None:
        import json
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                path = self.path.split("?", 1)[0].rstrip("/")
                if path == "/healthz":
                    code, body = 200, {"status": "ok", "role": role}
                elif path == "/readyz":
                    ready, body = readiness(outer.db, outer.roles())
                    body["role"] = role
                    code = 200 if ready else 503
                else:
                    code, body = 404, {"status": 404, "detail": "only /healthz and /readyz here"}
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:  # probes every few seconds: no access log
                pass

        self.db = db
        self.roles = roles
        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="blockyard-health", daemon=True
        )

    def start(self) -> "HealthServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
