"""The Serving page's data: the main UI (:6789) reads the serving process
(`blockyard serve`, :6790 by default) through these same-origin routes, so the browser
needs no CORS and the serve port need not be reachable from it.

GET  /ui-api/serving              {url, reachable, error, health, version, stats, retraining}
POST /ui-api/serving/invocations  the serving process's answer, status and body as they are

The serving process is `BLOCKYARD_SERVE_URL` (default http://127.0.0.1:6790), with
`BLOCKYARD_SERVE_TOKEN` as its bearer token when it has one.
"""
from __future__ import annotations

import os
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from blockyard.ui.server import guarded

router = APIRouter(prefix="/ui-api/serving", tags=["ui"], include_in_schema=False)

DEFAULT_URL = "http://127.0.0.1:6790"
TIMEOUT = 3.0


def serve_url() -> str:
    return (os.environ.get("BLOCKYARD_SERVE_URL") or DEFAULT_URL).rstrip("/")


def _headers() -> dict:
    token = os.environ.get("BLOCKYARD_SERVE_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


@router.get("", dependencies=guarded())
def serving_overview() -> dict:
    """Everything the page shows, in one request (each part None when unavailable)."""
    import httpx

    url = serve_url()
    out: dict[str, Any] = {"url": url, "reachable": False, "error": None,
                           "health": None, "version": None, "stats": None, "retraining": None}
    try:
        with httpx.Client(base_url=url, timeout=TIMEOUT, headers=_headers()) as client:
            for part in ("health", "version", "stats", "retraining"):
                r = client.get(f"/{part}")
                out["reachable"] = True
                if r.headers.get("content-type", "").startswith("application/json"):
                    out[part] = r.json()
    except httpx.HTTPError as exc:
        out["error"] = f"the serving process at {url} is not reachable ({type(exc).__name__}); start it with `blockyard serve WORKSPACE` or set BLOCKYARD_SERVE_URL"
    return out


@router.post("/invocations", dependencies=guarded())
async def serving_invocations(request: Request) -> Response:
    """Send a prediction request (the page's form) and hand back the answer as it is."""
    import httpx

    body = await request.body()
    try:
        async with httpx.AsyncClient(base_url=serve_url(), timeout=TIMEOUT * 3, headers=_headers()) as client:
            r = await client.post("/invocations", content=body,
                                  headers={"content-type": request.headers.get("content-type") or "application/json"})
    except httpx.HTTPError as exc:
        return JSONResponse({"detail": f"the serving process at {serve_url()} is not reachable ({type(exc).__name__})"},
                            status_code=502)
    headers = {k: v for k, v in r.headers.items() if k.lower() in ("content-type", "x-model-version")}
    return Response(r.content, status_code=r.status_code, headers=headers)
