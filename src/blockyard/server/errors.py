"""HTTP errors and the exception handlers: every failure becomes a 4xx with a message.

Library errors (BlockyardError, ProjectError, ...) carry a message meant for people;
they map to 400/404/409/422 here. Anything unexpected is logged with its traceback and
answered with a generic 500 that reveals nothing (no paths, no secrets).
"""
from __future__ import annotations

import logging
from typing import Any

from blockyard.errors import BlockyardError, PipelineNotFound, ProjectError

log = logging.getLogger("blockyard.server")


class ApiError(Exception):
    """An error with an HTTP status; `detail` is the message returned to the client."""

    status_code = 400

    def __init__(self, detail: str, *, status_code: int | None = None, extra: dict | None = None,
                 headers: dict | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if status_code is not None:
            self.status_code = status_code
        self.extra = extra or {}
        self.headers = headers


class BadRequest(ApiError):
    status_code = 400


class Unauthorized(ApiError):
    status_code = 401

    def __init__(self, detail: str = "missing or wrong API token: send `Authorization: Bearer <token>`") -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ApiError):
    status_code = 403


class NotFound(ApiError):
    status_code = 404


class Conflict(ApiError):
    status_code = 409


class Unprocessable(ApiError):
    status_code = 422


def status_for(exc: BlockyardError) -> int:
    """The HTTP status for a library error."""
    if type(exc).__name__ == "PathRefused":  # project/paths.py: the file guard
        return 403
    if isinstance(exc, (PipelineNotFound, LookupError)):  # RunNotFound, TriggerNotFound, ...
        return 404
    if type(exc).__name__ == "RunStateError":  # e.g. retrying a run that is still running
        return 409
    message = (exc.message or "").lower()
    if any(s in message for s in ("already exists", "already registered", "already has", "shares the file")):
        return 409
    if message.startswith("no ") or " not found" in message or "has no stored output" in message:
        return 404
    if isinstance(exc, ProjectError) or type(exc).__name__ == "TriggerError":  # a body that cannot be used
        return 422
    return 400


def error_body(detail: str, **extra: Any) -> dict:
    body = {"detail": detail}
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def install_handlers(app) -> None:
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    async def api_error(_request, exc: ApiError):
        return JSONResponse(error_body(exc.detail, **exc.extra), status_code=exc.status_code,
                            headers=exc.headers)

    async def blockyard_error(request, exc: BlockyardError):
        # The library's message is written for people; paths are shown relative to the
        # workspace root (the client addresses files that way).
        root = getattr(getattr(request.app.state, "blockyard", None), "root", None)
        details = {k: v for k, v in exc.to_dict().items() if v is not None}
        message = str(exc)
        if root is not None:
            prefix = str(root).rstrip("/") + "/"
            message = message.replace(prefix, "")
            details = {k: (v.replace(prefix, "") if isinstance(v, str) else v) for k, v in details.items()}
        details.pop("message", None)
        return JSONResponse(error_body(message, error=details or None), status_code=status_for(exc))

    async def validation_error(_request, exc: RequestValidationError):
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()))
            problems.append({"loc": loc, "msg": err.get("msg", ""), "type": err.get("type", "")})
        summary = "; ".join(f"{p['loc']}: {p['msg']}" for p in problems[:5]) or "invalid request"
        return JSONResponse(error_body(f"invalid request: {summary}", errors=problems), status_code=422)

    async def http_error(_request, exc: StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return JSONResponse(error_body(detail), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    async def unexpected(request, exc: Exception):
        from blockyard.server.middleware import redact

        log.error("unexpected error in %s %s", request.method, redact(request.url.path), exc_info=exc)
        return JSONResponse(
            error_body(f"internal error ({type(exc).__name__}); see the server log"), status_code=500
        )

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(BlockyardError, blockyard_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
