"""`blockyard serve`: registered on the main Typer app by blockyard.cli (import-light)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import typer

from blockyard.hosts import is_loopback

DEFAULT_PORT = 6790


def run(ws: Any, *, host: str, port: int, model: str, alias: str, transform: Optional[str], poll: float,
        log_predictions: bool, token: Optional[str], fail: Callable[..., None]) -> int:
    """Shared by `blockyard serve` and `blockyard start --role serve`."""
    if not token and not is_loopback(host):
        fail(f"refusing to listen on {host} without a token: set BLOCKYARD_API_TOKEN (or --token) so "
             f"POST /invocations needs `Authorization: Bearer <token>`, or listen on 127.0.0.1")
    if poll < 0:
        fail("--poll must be >= 0 seconds (0: never look for a new version)")
    if not 0 <= port <= 65535:
        fail(f"--port {port}: use a port number from 1 to 65535")
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from blockyard.serving.app import run_server

    try:
        return run_server(Path(ws.root), host=host, port=port, model=model, alias=alias, transform=transform,
                          poll_seconds=poll, log_predictions=log_predictions, token=token)
    except ValueError as exc:  # a --transform that does not import
        fail(str(exc))
    return 1


def run_role(ws: Any, *, host: str, port: int, token: Optional[str], fail: Callable[..., None]) -> int:
    """`blockyard start --role serve`: the model and alias come from BLOCKYARD_SERVE_MODEL /
    BLOCKYARD_SERVE_ALIAS (default nyc-taxi-duration@champion), the poll interval from
    BLOCKYARD_SERVE_POLL (seconds, default 2)."""
    import os

    try:
        poll = float(os.environ.get("BLOCKYARD_SERVE_POLL", "2"))
    except ValueError:
        fail(f"BLOCKYARD_SERVE_POLL={os.environ['BLOCKYARD_SERVE_POLL']!r}: a number of seconds, please")
    return run(ws, host=host, port=port, model=os.environ.get("BLOCKYARD_SERVE_MODEL") or "nyc-taxi-duration",
               alias=os.environ.get("BLOCKYARD_SERVE_ALIAS") or "champion", transform=None, poll=poll,
               log_predictions=True, token=token, fail=fail)


def register(app: typer.Typer, workspace_getter: Callable[[], Any], fail: Callable[..., None]) -> None:
    @app.command()
    def serve(
        workspace: Optional[Path] = typer.Argument(
            None, help="Workspace folder (default: -w, BLOCKYARD_WORKSPACE, or found from the current directory)."),
        host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
        port: int = typer.Option(DEFAULT_PORT, "--port", "-p", help="Port to listen on."),
        model: str = typer.Option("nyc-taxi-duration", "--model", "-m", help="Registered model name."),
        alias: str = typer.Option("champion", "--alias", "-a", help="Registry alias to serve (followed when it moves)."),
        transform: Optional[str] = typer.Option(
            None, "--transform",
            help="Feature transform 'module:function' applied to the records (default: the workspace's "
                 "utils.data_preparation.feature_engineering:combine_features when it exists)."),
        poll: float = typer.Option(2.0, "--poll", help="Seconds between registry checks for a new version (0: never)."),
        no_log: bool = typer.Option(False, "--no-log", help="Do not log predictions to .blockyard/predictions/."),
        token: Optional[str] = typer.Option(None, "--token", envvar="BLOCKYARD_API_TOKEN",
                                            help="Require `Authorization: Bearer <token>` on POST /invocations (needed to listen beyond loopback)."),
    ) -> None:
        """Serve a registered model (MLflow scoring protocol) on http://127.0.0.1:6790/invocations."""
        if workspace is not None:
            from blockyard.errors import BlockyardError
            from blockyard.project import Workspace

            try:
                ws = Workspace.open(workspace)
            except BlockyardError as exc:
                fail(str(exc))
        else:
            ws = workspace_getter()
        code = run(ws, host=host, port=port, model=model, alias=alias, transform=transform, poll=poll,
                   log_predictions=not no_log, token=token, fail=fail)
        raise typer.Exit(code)
