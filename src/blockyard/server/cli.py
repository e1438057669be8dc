"""`blockyard start`: registered on the main Typer app by blockyard.cli.

Import-light: FastAPI, uvicorn and the orchestration layer are imported inside the
command."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import typer


def register(app: typer.Typer, workspace_getter: Callable[[], Any], fail: Callable[..., None]) -> None:
    @app.command()
    def start(
        workspace: Optional[Path] = typer.Argument(
            None, help="Workspace folder (default: -w, BLOCKYARD_WORKSPACE, or found from the current directory)."
        ),
        host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on. Anything but loopback needs a token."),
        port: int = typer.Option(6789, "--port", "-p", help="Port to listen on."),
        role: str = typer.Option(
            "all", "--role",
            help="all (web + scheduler + worker), or one of web, scheduler, worker to split them across processes sharing BLOCKYARD_DATABASE_URL; serve: online inference only (see docs/serving.md).",
        ),
        workers: int = typer.Option(4, "--workers", help="Runs the worker executes at the same time (its threads)."),
        token: Optional[str] = typer.Option(
            None, "--token", envvar="BLOCKYARD_API_TOKEN", show_envvar=True,
            help="API token: /api requests (but /api/status) then need `Authorization: Bearer <token>`. Prefer the environment variable (command lines are visible to other users).",
        ),
        allowed_hosts: Optional[str] = typer.Option(
            None, "--allowed-hosts", envvar="BLOCKYARD_ALLOWED_HOSTS", show_envvar=True,
            help="Comma-separated host names the server answers to besides loopback names and the --host address "
                 "(e.g. blockyard.example.com, *.corp.example; * for any). Other Host headers get a 400 (DNS rebinding).",
        ),
        log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
        health_port: Optional[int] = typer.Option(
            None, "--health-port", envvar="BLOCKYARD_HEALTH_PORT", show_envvar=True,
            help="For --role scheduler or worker: answer /healthz and /readyz on this port (on --host).",
        ),
        reuse_port: bool = typer.Option(
            False, "--reuse-port", envvar="BLOCKYARD_REUSE_PORT",
            help="Bind the web port with SO_REUSEPORT: start the new process before stopping the old one to restart without dropping requests.",
        ),
    ) -> None:
        """Start the server (API + docs on http://127.0.0.1:6789), the scheduler and a worker."""
        from blockyard.server.config import ROLES, ServerConfig, bind_problem

        role = role.strip().lower()
        if role not in ROLES:
            fail(f"--role {role!r}: use one of {', '.join(ROLES)}")
        if workers < 1:
            fail("--workers must be at least 1")
        if not 0 <= port <= 65535:
            fail(f"--port {port}: use a port number from 1 to 65535")
        if log_level.lower() not in ("critical", "error", "warning", "info", "debug", "trace"):
            fail(f"--log-level {log_level!r}: use debug, info, warning or error")
        if health_port is not None and not 0 <= health_port <= 65535:
            fail(f"--health-port {health_port}: use a port number from 1 to 65535")
        token = (token or "").strip() or None
        hosts = tuple(h.strip().lower() for h in (allowed_hosts or "").split(",") if h.strip())
        config = ServerConfig(host=host, port=port, role=role, workers=workers, token=token,
                              log_level=log_level.lower(), allowed_hosts=hosts,
                              health_port=health_port, reuse_port=reuse_port)
        if config.web:
            problem = bind_problem(host, token)
            if problem:
                fail(problem)
        if workspace is not None:
            from blockyard.errors import BlockyardError
            from blockyard.project import Workspace

            try:
                ws = Workspace.open(workspace)
            except BlockyardError as exc:
                fail(str(exc))
        else:
            ws = workspace_getter()
        if role == "serve":
            from blockyard.serving.cli import run_role

            raise typer.Exit(run_role(ws, host=host, port=port, token=token, fail=fail))
        from blockyard.server.service import serve

        try:
            code = serve(ws, config)
        except ModuleNotFoundError as exc:
            fail(f"cannot start: {exc}; install the server extra: pip install 'blockyard[server]'")
        raise typer.Exit(code)
