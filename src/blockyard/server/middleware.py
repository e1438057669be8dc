"""ASGI middleware: the request size limit and the API token check.

Plain ASGI (not BaseHTTPMiddleware) so each request costs a few microseconds.
"""
from __future__ import annotations

import hmac
import json
import re
from typing import Any

from starlette.exceptions import HTTPException

# Paths under /api that do not need the server token:
#  - /api/status: health checks from load balancers;
#  - Mage's API trigger URL carries its own (per-trigger) token;
#  - POST /api/runs checks its bearer itself (server token or an API trigger's token).
_OPEN_API = re.compile(r"^/api/(status/?|pipeline_schedules/[^/]+/pipeline_runs/[^/]+/?)$")
_TOKEN_IN_PATH = re.compile(r"(/pipeline_runs/)[^/?\s\"]+")


def redact(text: str) -> str:
    """`text` with the API trigger token of Mage's trigger URL replaced by ***."""
    return _TOKEN_IN_PATH.sub(r"\1***", text)


def _json(status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None):
    body = json.dumps({"detail": detail}).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *(headers or []),
        ],
    }
    return start, {"type": "http.response.body", "body": body}


def bearer_token(headers: Any) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (ASGI header list or mapping)."""
    if isinstance(headers, list):
        value = None
        for k, v in headers:
            if k == b"authorization":
                value = v.decode("latin-1")
                break
    else:
        value = headers.get("authorization")
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def token_matches(given: str | None, expected: str | None) -> bool:
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def _cross_site(headers: list) -> bool:
    """True for a browser request sent by another site: `Sec-Fetch-Site` says so, or an
    `Origin` header names another host than the one addressed."""
    origin = host = fetch_site = None
    for k, v in headers:
        if k == b"origin":
            origin = v.decode("latin-1")
        elif k == b"host":
            host = v.decode("latin-1")
        elif k == b"sec-fetch-site":
            fetch_site = v.decode("latin-1")
    if fetch_site in ("cross-site", "same-site"):
        return True
    if origin and origin != "null":
        netloc = origin.split("://", 1)[-1].rstrip("/")
        return host is not None and netloc.lower() != host.lower()
    return origin == "null"


class _TooLarge(HTTPException):
    """Raised from `receive` when a streamed body passes the limit; an HTTPException so
    FastAPI's body parsing re-raises it (it turns other exceptions into a 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body too large: the limit is {limit} bytes")


class GuardMiddleware:
    """413 for bodies over `max_body` bytes (Content-Length or counted while streaming);
    401 for /api requests without the server token when one is configured."""

    def __init__(self, app: Any, *, max_body: int, token: str | None) -> None:
        self.app = app
        self.max_body = max_body
        self.token = token

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        headers = scope.get("headers") or []
        if path.startswith("/api") and scope.get("method") in _UNSAFE and _cross_site(headers):
            # CSRF: a page on another site must not drive a loopback server through the
            # user's browser. curl and Mage clients send neither header and pass.
            start, body = _json(403, "cross-site request refused (Origin / Sec-Fetch-Site)")
            await send(start)
            await send(body)
            return
        if self.token and path.startswith("/api") and not self._open(scope, path):
            if not token_matches(bearer_token(headers), self.token):
                start, body = _json(
                    401,
                    "missing or wrong API token: send `Authorization: Bearer <token>`",
                    [(b"www-authenticate", b"Bearer")],
                )
                await send(start)
                await send(body)
                return
        length = None
        for k, v in headers:
            if k == b"content-length":
                try:
                    length = int(v)
                except ValueError:
                    length = None
                break
        if length is not None and length > self.max_body:
            await self._too_large(send)
            return

        received = 0
        started = False

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise _TooLarge(self.max_body)
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._too_large(send)

    def _open(self, scope, path: str) -> bool:
        if _OPEN_API.match(path):
            return True
        return scope.get("method") == "POST" and path.rstrip("/") == "/api/runs"

    async def _too_large(self, send) -> None:
        start, body = _json(413, f"request body too large: the limit is {self.max_body} bytes")
        await send(start)
        await send(body)
