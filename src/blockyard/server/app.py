"""The FastAPI application: REST API under /api, OpenAPI docs at /docs."""
from __future__ import annotations

import os
import threading
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

import blockyard
from blockyard.server.config import ServerConfig
from blockyard.server.errors import install_handlers
from blockyard.server.middleware import GuardMiddleware
from blockyard.server.state import AppState

_INDEX = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Blockyard</title>
<style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;line-height:1.5}}</style>
</head><body>
<h1>Blockyard</h1>
<p>Workspace <b>{workspace}</b>. The web UI will live here.</p>
<ul>
<li><a href="/docs">API documentation</a> (OpenAPI, try requests in the browser)</li>
<li><a href="/api/status">/api/status</a></li>
</ul>
</body></html>
"""


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
    app.add_middleware(GuardMiddleware, max_body=config.max_body_bytes, token=config.token)

    from blockyard.server.routes import backfills, mage, runs, status, triggers, workspace as ws_routes

    app.include_router(status.router)
    app.include_router(ws_routes.router)
    app.include_router(mage.router)
    app.include_router(runs.router)
    app.include_router(triggers.router)
    app.include_router(backfills.router)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        from html import escape

        return _INDEX.format(workspace=escape(st.workspace.name))

    return app
