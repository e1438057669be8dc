"""Blockyard's web UI: a single-page app (plain ES modules, no build step) served by the
FastAPI server, talking to its REST API under /api, plus a few UI-only endpoints under
/ui-api (overview, pipeline block states, chart data, dashboards, MLflow metrics,
settings).

    from blockyard.ui import mount
    mount(app)          # app = blockyard.server.app.create_app(...)

`mount` is idempotent and replaces the server's placeholder `/` page.
Front-end libraries: CodeMirror 5 vendored under static/vendor (see vendor.sh); Plotly is
served from the installed `plotly` Python package (never copied into the repo).
"""
from __future__ import annotations

from typing import Any

__all__ = ["mount", "PAGE_PREFIXES"]

# Paths the single-page app answers (the browser's address bar); everything else is the API's.
PAGE_PREFIXES = ("pipelines", "projects", "runs", "triggers", "backfills", "dashboards", "settings", "login", "files", "serving")


def mount(app: Any) -> Any:
    """Add the UI (pages, static files, /ui-api) to `app`; returns `app`."""
    from blockyard.ui.server import mount as _mount

    return _mount(app)
