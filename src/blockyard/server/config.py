"""Server settings and the bind/auth rule (no FastAPI import here)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from blockyard.hosts import is_loopback

ENV_API_TOKEN = "BLOCKYARD_API_TOKEN"
ENV_ALLOWED_HOSTS = "BLOCKYARD_ALLOWED_HOSTS"
ENV_BODY_TIMEOUT = "BLOCKYARD_BODY_TIMEOUT"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 6789
DEFAULT_MAX_BODY = 5 * 1024 * 1024
DEFAULT_BODY_TIMEOUT = 15.0
ROLES = ("all", "web", "scheduler", "worker", "serve")  # serve: blockyard.serving (online inference)


@dataclass
class ServerConfig:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    role: str = "all"
    workers: int = 4
    # The server token: every /api request but /api/status must carry
    # `Authorization: Bearer <token>` when it is set.
    token: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY
    # Host names (besides loopback and the bound address) the server answers to; a
    # request with another Host is refused (DNS rebinding). "*.example.com" matches
    # subdomains, "*" turns the check off (behind a proxy that checks it).
    allowed_hosts: tuple[str, ...] = field(default_factory=lambda: allowed_hosts_from_env())
    # Seconds a request body may stall (between two chunks) before a 408.
    body_timeout: float = field(default_factory=lambda: body_timeout_from_env())
    # How often the SSE log stream polls the run (seconds).
    stream_interval: float = 0.2
    log_level: str = "info"
    # Roles without the web server answer /healthz and /readyz on this port (None: off).
    health_port: int | None = None
    # Bind the web port with SO_REUSEPORT (zero-downtime restart on one host).
    reuse_port: bool = False

    @property
    def auth_enabled(self) -> bool:
        return bool(self.token)

    @property
    def web(self) -> bool:
        return self.role in ("all", "web")

    @property
    def scheduler(self) -> bool:
        return self.role in ("all", "scheduler")

    @property
    def worker(self) -> bool:
        return self.role in ("all", "worker")


def token_from_env() -> str | None:
    value = os.environ.get(ENV_API_TOKEN, "").strip()
    return value or None


def allowed_hosts_from_env() -> tuple[str, ...]:
    raw = os.environ.get(ENV_ALLOWED_HOSTS, "")
    return tuple(h.strip().lower() for h in raw.split(",") if h.strip())


def body_timeout_from_env() -> float:
    raw = os.environ.get(ENV_BODY_TIMEOUT, "").strip()
    try:
        value = float(raw) if raw else DEFAULT_BODY_TIMEOUT
    except ValueError:
        value = DEFAULT_BODY_TIMEOUT
    return value if value > 0 else DEFAULT_BODY_TIMEOUT


def bind_problem(host: str, token: str | None) -> str | None:
    """Why binding to `host` is refused (None when it is allowed).

    Anything beyond loopback exposes endpoints that run code and write files, so it
    needs a server token."""
    if is_loopback(host) or token:
        return None
    return (
        f"refusing to listen on {host}: it is reachable from other machines and no API token "
        f"is configured, so anyone could run code in this workspace. Set {ENV_API_TOKEN} "
        f"(or pass --token) to require `Authorization: Bearer <token>` on the API, "
        f"or listen on 127.0.0.1 (the default)."
    )
