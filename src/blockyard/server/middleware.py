"""ASGI middleware: the Host allow-list, the cross-site check, the API token, the
request size limit and body timeout, and the check for values no database can store.

Plain ASGI (not BaseHTTPMiddleware) so each request costs a few microseconds.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
from typing import Any

from blockyard.hosts import is_loopback
from blockyard.storable import check_json_body, check_query, is_json_request

log = logging.getLogger("blockyard.server")

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


def _json(status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None, **extra: Any):
    body = json.dumps({"detail": detail, **extra}).encode()
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


def _header(headers: list, name: bytes) -> str | None:
    for k, v in headers:
        if k == name:
            return v.decode("latin-1")
    return None


def split_host(value: str) -> str:
    """The host name of a Host header / Origin netloc ('[::1]:80' -> '::1'), lower case,
    without a trailing dot."""
    value = value.strip().lower()
    if value.startswith("["):
        name = value[1:].split("]", 1)[0]
    else:
        name = value.rsplit(":", 1)[0] if value.count(":") == 1 else value
    return name.rstrip(".")


class HostPolicy:
    """Which names the server answers to: loopback names on any port, the address the
    connection came in on, the --host it was started with, and the configured names
    (`*.example.com` for subdomains, `*` for any)."""

    def __init__(self, allowed: tuple[str, ...] = (), bound: str | None = None) -> None:
        names = [a.strip().lower().rstrip(".") for a in allowed if a and a.strip()]
        self.any = "*" in names
        self.exact = {n for n in names if not n.startswith("*.")}
        bound = (bound or "").strip().strip("[]").lower()
        if bound and bound not in ("0.0.0.0", "::"):
            self.exact.add(bound)
        self.suffixes = tuple(n[1:] for n in names if n.startswith("*."))

    def allows(self, name: str, scope: dict) -> bool:
        if self.any:
            return True
        if not name:
            return False
        if name in self.exact or is_loopback(name):
            return True
        if self.suffixes and name.endswith(self.suffixes):
            return True
        server = scope.get("server")
        # The address this connection reached (an IP from the socket, never a DNS name an
        # attacker controls), e.g. the LAN address of a server bound to 0.0.0.0.
        return bool(server) and str(server[0]).strip("[]").lower() == name


def _cross_site(headers: list, policy: HostPolicy, scope: dict) -> str | None:
    """Why a browser write comes from another site, or None. `Sec-Fetch-Site` can only
    refuse, never allow: the Origin must name an allowed host and the Host addressed."""
    origin = _header(headers, b"origin")
    host = _header(headers, b"host")
    fetch_site = _header(headers, b"sec-fetch-site")
    if fetch_site in ("cross-site", "same-site"):
        return f"Sec-Fetch-Site: {fetch_site}"
    if origin is None:
        return None  # not a browser (curl, Mage clients, scripts)
    if origin == "null":
        return "Origin: null"
    netloc = origin.split("://", 1)[-1].rstrip("/").lower()
    if not policy.allows(split_host(netloc), scope):
        return f"Origin {origin} is not an allowed host"
    if host is not None and netloc != host.strip().lower():
        return f"Origin {origin} is not the host addressed ({host})"
    return None


class _TooLarge(HTTPException):
    """Raised from `receive` when a streamed body passes the limit; an HTTPException so
    FastAPI's body parsing re-raises it (it turns other exceptions into a 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body too large: the limit is {limit} bytes")


class _BodyTimeout(HTTPException):
    def __init__(self, seconds: float) -> None:
        super().__init__(408, f"the request body did not arrive: nothing received for {seconds:g} s")


class GuardMiddleware:
    """In order: 400 for a Host that is not allowed (DNS rebinding), 403 for a write
    from another site's page, 401 for /api requests without the server token when one
    is configured, 413 for bodies over `max_body` bytes, 408 when a body stalls for
    `body_timeout` s, 422 for a value no database can store (values.py). An unexpected
    error becomes a 500 here, so the connection stays usable."""

    def __init__(self, app: Any, *, max_body: int, token: str | None, allowed_hosts: tuple[str, ...] = (),
                 bound_host: str | None = None, body_timeout: float = 15.0) -> None:
        self.app = app
        self.max_body = max_body
        self.token = token
        self.hosts = HostPolicy(allowed_hosts, bound_host)
        self.body_timeout = body_timeout

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers") or []
        host = _header(headers, b"host")
        if host is not None and not self.hosts.allows(split_host(host), scope):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await self._send(send, 400, f"Host {host!r} is not allowed: this server answers to loopback "
                             "names and its own address; add other names to BLOCKYARD_ALLOWED_HOSTS",
                             close=True)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        method = scope.get("method")
        if method in _UNSAFE:
            why = _cross_site(headers, self.hosts, scope)
            if why:
                # CSRF: a page on another site must not drive a loopback server through the
                # user's browser. curl and Mage clients send neither header and pass.
                await self._send(send, 403, f"cross-site request refused ({why})")
                return
        if self.token and path.startswith("/api") and not self._open(scope, path):
            if not token_matches(bearer_token(headers), self.token):
                await self._send(send, 401, "missing or wrong API token: send `Authorization: Bearer <token>`",
                                 [(b"www-authenticate", b"Bearer")])
                return
        bad = check_query(scope.get("query_string") or b"")
        if bad is None and "\x00" in path:
            bad = ("path", "contains a NUL character (\\u0000)")
        if bad:
            await self._unstorable(send, *bad)
            return
        length = None
        value = _header(headers, b"content-length")
        if value is not None:
            try:
                length = int(value)
            except ValueError:
                length = None
        if length is not None and length > self.max_body:
            await self._send(send, 413, f"request body too large: the limit is {self.max_body} bytes", close=True)
            return

        received = 0
        body_done = method in ("GET", "HEAD", "OPTIONS") and not length
        started = False

        async def limited_receive():
            nonlocal received, body_done
            if body_done:  # after the body only a disconnect can come: no time limit
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.body_timeout)
            except asyncio.TimeoutError:
                raise _BodyTimeout(self.body_timeout) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise _TooLarge(self.max_body)
                if not message.get("more_body", False):
                    body_done = True
            else:
                body_done = True
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        app_receive = limited_receive
        try:
            if method in _UNSAFE and (length or _header(headers, b"transfer-encoding")) and is_json_request(headers):
                chunks = []
                while True:
                    message = await limited_receive()
                    if message["type"] != "http.request":
                        return  # the client went away
                    chunks.append(message.get("body", b""))
                    if not message.get("more_body", False):
                        break
                body = b"".join(chunks)
                bad = check_json_body(body) if body else None
                if bad:
                    await self._unstorable(send, *bad)
                    return
                replayed = False

                async def app_receive():
                    nonlocal replayed
                    if not replayed:
                        replayed = True
                        return {"type": "http.request", "body": body, "more_body": False}
                    return await receive()

            await self.app(scope, app_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._send(send, 413, f"request body too large: the limit is {self.max_body} bytes",
                                 close=True)
        except _BodyTimeout as exc:
            if not started:
                await self._send(send, 408, exc.detail, close=True)
        except Exception as exc:  # noqa: BLE001
            # Answered here rather than by Starlette's ServerErrorMiddleware, which re-raises
            # after its 500 and so makes uvicorn drop the keep-alive connection.
            log.error("unexpected error in %s %s", method, redact(path), exc_info=exc)
            if not started:
                await self._send(send, 500, f"internal error ({type(exc).__name__}); see the server log")

    def _open(self, scope, path: str) -> bool:
        if _OPEN_API.match(path):
            return True
        return scope.get("method") == "POST" and path.rstrip("/") == "/api/runs"

    @staticmethod
    async def _send(send, status: int, detail: str, headers: list | None = None, *, close: bool = False,
                    **extra: Any) -> None:
        headers = list(headers or [])
        if close:
            headers.append((b"connection", b"close"))
        start, body = _json(status, detail, headers, **extra)
        await send(start)
        await send(body)

    async def _unstorable(self, send, loc: str, reason: str) -> None:
        await self._send(send, 422, f"invalid request: {loc}: {reason}",
                         errors=[{"loc": loc, "msg": reason, "type": "unstorable_value"}])
