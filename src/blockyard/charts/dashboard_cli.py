"""`blockyard dashboard NAME -o FILE.html|png` (registered by blockyard.cli)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import typer


def register(app: typer.Typer, workspace_getter: Callable[[], Any], fail: Callable[..., None]) -> None:
    @app.command()
    def dashboard(
        name: str = typer.Argument(None, help="Dashboard name: presenters/<name>/dashboard/block_layout.yaml."),
        out: Path = typer.Option(None, "--out", "-o", help="File to write: .html (Plotly) or .png."),
        var: list[str] = typer.Option(None, "--var", help="Variable key=value for the chart code (repeatable)."),
    ) -> None:
        """Render a dashboard (Mage's presenters format) to HTML or PNG; without NAME, list them."""
        from blockyard.charts.dashboard import list_dashboards, load_dashboard, render_dashboard
        from blockyard.errors import BlockyardError

        ws = workspace_getter()
        if not name:
            for item in list_dashboards(ws.root):
                typer.echo(item)
            return
        if out is None:
            fail("give the file to write with -o NAME.html or -o NAME.png")
        variables = {}
        for item in var or []:
            key, sep, value = item.partition("=")
            if not sep or not key:
                fail(f"--var {item!r} is not key=value")
            variables[key] = value
        try:
            board = load_dashboard(ws.root, name)
            path = render_dashboard(board, out, variables=variables)
        except BlockyardError as exc:
            fail(str(exc))
        failed = [c for row in board.charts for c in row if c.get("error")]
        for chart in failed:
            typer.echo(f"chart {chart['uuid']}: {chart['error']}", err=True)
        typer.echo(f"wrote {path} ({sum(len(r) for r in board.charts)} charts, {len(failed)} failed)")
        if failed:
            raise typer.Exit(1)
