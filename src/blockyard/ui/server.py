"""Routes of the web UI: the single-page app's pages, its static files, the Plotly bundle
of the installed `plotly` package, and the UI-only JSON endpoints under /ui-api."""
from __future__ import annotations

import hmac
import secrets as _secrets
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from blockyard.ui import PAGE_PREFIXES

STATIC = Path(__file__).parent / "static"
CSRF_COOKIE = "blockyard_csrf"
CSRF_HEADER = "x-blockyard-csrf"
UNSAFE = ("POST", "PUT", "PATCH", "DELETE")


def plotly_path() -> Path | None:
    """plotly.min.js inside the installed `plotly` wheel (None when plotly is missing)."""
    import importlib.util

    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "package_data" / "plotly.min.js"
    return path if path.is_file() else None


def _index_html() -> str:
    return (STATIC / "index.html").read_text(encoding="utf-8")


def mount(app: FastAPI) -> FastAPI:
    if getattr(app.state, "blockyard_ui", False):
        return app
    app.state.blockyard_ui = True
    # The server's placeholder page at "/" makes way for the app.
    app.router.routes[:] = [
        r for r in app.router.routes if not (getattr(r, "path", None) == "/" and "GET" in (getattr(r, "methods", None) or ()))
    ]
    index = _index_html()

    def page(_request: Request) -> HTMLResponse:
        return HTMLResponse(index, headers={"Cache-Control": "no-cache"})

    app.add_api_route("/", page, methods=["GET"], include_in_schema=False)
    for prefix in PAGE_PREFIXES:
        app.add_api_route(f"/{prefix}", page, methods=["GET"], include_in_schema=False)
        app.add_api_route(f"/{prefix}/{{rest:path}}", page, methods=["GET"], include_in_schema=False)

    def plotly_js() -> Response:
        path = plotly_path()
        if path is None:
            return Response(
                "/* plotly is not installed: pip install plotly (charts are drawn with it) */\n"
                "window.Plotly = undefined;\n",
                media_type="text/javascript",
            )
        return FileResponse(path, media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})

    app.add_api_route("/static/vendor/plotly.min.js", plotly_js, methods=["GET"], include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC), name="blockyard-ui-static")

    from blockyard.ui.api import router
    from blockyard.ui.files_api import router as files_router
    from blockyard.ui.outputs_api import router as outputs_router
    from blockyard.ui.settings_api import router as settings_router
    from blockyard.ui.serving_api import router as serving_router

    app.include_router(router)
    app.include_router(files_router)
    app.include_router(outputs_router)
    app.include_router(settings_router)
    app.include_router(serving_router)
    return app


# --------------------------------------------------------------------------- guards
def server_token(request: Request) -> str | None:
    st = getattr(request.app.state, "blockyard", None)
    return getattr(getattr(st, "config", None), "token", None)


def require_auth(request: Request) -> None:
    """/ui-api needs the server token like /api does (when one is configured)."""
    from blockyard.server.errors import Unauthorized
    from blockyard.server.middleware import bearer_token, token_matches

    token = server_token(request)
    if token and not token_matches(bearer_token(request.headers), token):
        raise Unauthorized()


def cross_origin(request: Request) -> bool:
    """True when a browser says the request comes from another site (Fetch metadata /
    Origin), which no page of ours sends."""
    site = request.headers.get("sec-fetch-site")
    if site in ("cross-site", "same-site"):
        return True
    origin = request.headers.get("origin")
    if origin and origin != "null":
        host = request.headers.get("host", "")
        return origin.split("://", 1)[-1].rstrip("/") != host
    return origin == "null"


def require_csrf(request: Request) -> None:
    """State-changing /ui-api requests: same origin and the double-submit token (the
    `blockyard_csrf` cookie echoed in the X-Blockyard-CSRF header)."""
    from blockyard.server.errors import Forbidden

    if request.method not in UNSAFE:
        return
    if cross_origin(request):
        raise Forbidden("cross-origin request refused")
    cookie = request.cookies.get(CSRF_COOKIE) or ""
    header = request.headers.get(CSRF_HEADER) or ""
    if not cookie or not hmac.compare_digest(cookie.encode(), header.encode()):
        raise Forbidden("missing or wrong CSRF token: reload the page")


def guarded() -> list:
    return [Depends(require_auth), Depends(require_csrf)]


def new_csrf_token() -> str:
    return _secrets.token_urlsafe(24)


def csrf_response(data: dict, request: Request) -> JSONResponse:
    token = request.cookies.get(CSRF_COOKIE) or new_csrf_token()
    data["csrf"] = token
    resp = JSONResponse(data)
    resp.set_cookie(CSRF_COOKIE, token, samesite="strict", httponly=False, path="/")
    return resp


def state(request: Request) -> Any:
    return request.app.state.blockyard
