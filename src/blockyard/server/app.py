"""The FastAPI application: REST API under /api, OpenAPI docs at /docs."""
from __future__ import annotations

import os
import threading
from typing import Any

from fastapi import FastAPI

import blockyard
from blockyard.server.config import ServerConfig
from blockyard.server.errors import install_handlers
from blockyard.server.middleware import GuardMiddleware
from blockyard.server.state import AppState




def create_app(
    workspace: Any,
    config: ServerConfig | None = None,
    *,
    stop_event: threading.Event | None = None,
    local_workers: int = 0,
) -> FastAPI:
    """The API for `workspace` (a Workspace or a folder path).

    `stop_event` ends live log streams when the server shuts down. (An in-process
    worker is woken by the orchestration layer itself when a run is queued.)"""
    from blockyard.project import Workspace

    if isinstance(workspace, (str, os.PathLike)):
        workspace = Workspace.open(workspace)
    config = config or ServerConfig()
    st = AppState(workspace, config, stop_event=stop_event, local_workers=local_workers)
    st.db  # migrate the run history now, not on the first request

    app = FastAPI(
        title="Blockyard",
        version=blockyard.__version__,
        description=(
            "REST API of a Blockyard workspace: projects, pipelines, block code, runs, logs, "
            "outputs, triggers and backfills, plus Mage-compatible trigger endpoints. "
            "When the server has a token, send `Authorization: Bearer <token>` on /api requests "
            "(all but /api/status)."
        ),
    )
    app.state.blockyard = st
    install_handlers(app)
    app.add_middleware(GuardMiddleware, max_body=config.max_body_bytes, token=config.token,
                       allowed_hosts=config.allowed_hosts, bound_host=config.host,
                       body_timeout=config.body_timeout)

    from blockyard.server.routes import backfills, mage, runs, status, triggers, workspace as ws_routes

    app.include_router(status.router)
    app.include_router(status.health_router)
    app.include_router(ws_routes.router)
    app.include_router(mage.router)
    app.include_router(runs.router)
    app.include_router(triggers.router)
    app.include_router(backfills.router)

    from blockyard.server.routes import metrics

    app.include_router(metrics.router)  # /metrics (Prometheus) and /api/monitoring

    from blockyard.ui import mount

    mount(app)  # the web UI at / (pages, static files, /ui-api)
    return app
