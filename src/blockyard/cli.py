"""The `blockyard` command line (Typer + Rich).

Heavy modules are imported inside commands so `blockyard --help` stays quick.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Optional

import typer

app = typer.Typer(
    name="blockyard",
    help="Blockyard: Mage-compatible ML pipelines — run, test and inspect them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
new_app = typer.Typer(help="Scaffold a project, pipeline or block from templates.", no_args_is_help=True)
app.add_typer(new_app, name="new")

_state: dict[str, Any] = {"workspace": None}


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _fail(message: str, code: int = 1) -> None:
    _console(stderr=True).print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
    raise typer.Exit(code)


def _workspace():
    from blockyard.cli_run import open_workspace

    return open_workspace(_state["workspace"], _fail)


@app.callback()
def main_options(
    workspace: Optional[Path] = typer.Option(
        None,
        "--workspace",
        "-w",
        envvar="BLOCKYARD_WORKSPACE",
        help="Workspace folder (default: found from the current directory upward).",
    ),
) -> None:
    _state["workspace"] = workspace


def _parse_vars(pairs: list[str], vars_json: str | None) -> dict:
    from blockyard.cli_args import parse_pairs

    return parse_pairs(pairs, vars_json, _fail)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def run(ctx: typer.Context) -> None:
    """Run a pipeline (or one block) and record it in the run history."""
    # the options live in cli_run.parser() (argparse, for start-up): handed over as they are
    from blockyard.cli_run import main as run_main

    raise typer.Exit(run_main(list(ctx.args), _state["workspace"]))


@app.command("test")
def test_cmd(
    pipeline: str = typer.Argument(..., help="project/pipeline or a unique pipeline name."),
    var: list[str] = typer.Option([], "--var", help="A runtime variable key=value (repeatable)."),
    vars_json: Optional[str] = typer.Option(None, "--vars-json"),
) -> None:
    """Run a pipeline with its @test functions (no cache) and report N/M passed per block."""
    from blockyard.cli_run import execute

    variables = _parse_vars(var, vars_json)
    result = execute(_workspace(), pipeline, variables, use_cache=False, executor="thread", quiet=True,
                     on_error=_fail)
    console = _console()
    total_pass = total = 0
    for b in result.block_runs.values():
        if not b.tests and b.status == "completed":
            continue
        passed = sum(t["passed"] for t in b.tests)
        total_pass += passed
        total += len(b.tests)
        color = "green" if passed == len(b.tests) and b.status == "completed" else "red"
        line = f"[{color}]{b.uuid}: {passed}/{len(b.tests)} passed[/]"
        if b.status not in ("completed",) and not b.tests:
            line = f"[red]{b.uuid}: {b.status}[/]"
        console.print(line)
        for t in b.tests:
            if not t["passed"]:
                console.print(f"  [red]✗ {t['name']}: {t['error']}[/]", markup=True)
    console.print(f"{total_pass}/{total} tests passed, run {result.run_id} {result.status}")
    raise typer.Exit(0 if result.ok else 1)


@app.command()
def runs(
    pipeline: Optional[str] = typer.Option(None, "--pipeline", "-p", help="Only runs of this pipeline (uuid)."),
    status: Optional[str] = typer.Option(None, "--status", help="Only runs with this status."),
    limit: int = typer.Option(20, "--limit", "-n"),
    as_json: bool = typer.Option(False, "--json", help="Print the runs as JSON lines."),
) -> None:
    """List recent pipeline runs."""
    from rich.table import Table

    from blockyard.session import session_for

    ws = _workspace()
    db = session_for(ws).db
    if pipeline and "/" in pipeline:
        project, pipeline = pipeline.split("/", 1)
    else:
        project = None
    rows = db.list_pipeline_runs(project=project, pipeline_uuid=pipeline, status=status, limit=limit)
    if as_json:
        for r in rows:
            sys.stdout.write(json.dumps(r, default=str) + "\n")
        return
    table = Table(show_header=True, header_style="bold")
    for col in ("id", "pipeline", "status", "started", "duration", "error"):
        table.add_column(col)
    for r in rows:
        started = r.get("started_at") or r.get("created_at")
        dur = ""
        if r.get("completed_at") and started:
            dur = f"{(r['completed_at'] - started).total_seconds():.2f}s"
        table.add_row(
            str(r["id"]),
            f"{r.get('project') or ''}/{r['pipeline_uuid']}",
            r["status"],
            started.strftime("%Y-%m-%d %H:%M:%S") if started else "",
            dur,
            (r.get("error") or "")[:80],
        )
    _console().print(table)


@app.command()
def logs(
    run_id: int = typer.Argument(..., help="Pipeline run id (see `blockyard runs`)."),
    block: Optional[str] = typer.Option(None, "--block", "-b", help="Only this block run's log."),
) -> None:
    """Print the logs of a run's block runs."""
    from blockyard.session import session_for

    ws = _workspace()
    sess = session_for(ws)
    run_row = sess.db.get_pipeline_run(run_id)
    if run_row is None:
        _fail(f"no pipeline run {run_id} (see `blockyard runs`)")
    block_runs = sess.db.get_block_runs(run_id)
    if block:
        block_runs = [b for b in block_runs if b["block_uuid"] == block or b.get("base_block_uuid") == block]
        if not block_runs:
            _fail(f"run {run_id} has no block run '{block}'")
    out = sys.stdout
    for b in block_runs:
        path = b.get("log_path")
        out.write(f"==> {b['block_uuid']} [{b['status']}]\n")
        if path and Path(path).exists():
            out.write(Path(path).read_text(encoding="utf-8", errors="replace"))
        elif b.get("cache_hit"):
            out.write("(cached: skipped, no log)\n")
        elif b["status"] == "completed":
            out.write("(the block printed and logged nothing)\n")
        if b.get("error") and not (path and Path(path).exists()):
            out.write(f"{b['error']}\n")
    if run_row.get("error") and not block_runs:
        out.write(f"{run_row['error']}\n")


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")


def _seconds(text: str) -> float:
    m = _DURATION.match(text.strip())
    if not m:
        _fail(f"--older-than {text!r}: use a number and a unit, e.g. 30d, 12h, 90m")
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]


@app.command()
def clean(
    older_than: str = typer.Option("30d", "--older-than", help="Remove runs older than this, e.g. 30d, 12h."),
) -> None:
    """Remove old runs: their history rows, stored outputs and logs."""
    import shutil
    from datetime import datetime, timedelta, timezone

    from blockyard.session import session_for

    ws = _workspace()
    sess = session_for(ws)
    cutoff = datetime.now(timezone.utc) - timedelta(seconds=_seconds(older_than))
    removed = sess.db.delete_pipeline_runs_before(cutoff)
    for run_id in removed:
        sess.store.delete_run(run_id)
        shutil.rmtree(sess.logs_dir / str(run_id), ignore_errors=True)
    _console().print(f"removed {len(removed)} run(s) older than {older_than}")


@app.command()
def pipelines() -> None:
    """List the workspace's projects and pipelines."""
    ws = _workspace()
    console = _console()
    for project in ws.projects():
        console.print(f"[bold]{project.name}[/]")
        for uuid in project.pipeline_uuids():
            console.print(f"  {project.name}/{uuid}")


@app.command()
def init(
    path: Path = typer.Argument(..., help="Folder for the new workspace."),
    project: str = typer.Option("default", "--project", help="Name of the first project."),
) -> None:
    """Create a workspace with a first project and an example pipeline."""
    from blockyard.errors import BlockyardError
    from blockyard.project.scaffold import init_workspace

    try:
        init_workspace(path, project_name=project)
    except BlockyardError as exc:
        _fail(str(exc))
    _console().print(f"created workspace {path} with project '{project}' — try: cd {path} && blockyard run example")


@new_app.command("project")
def new_project_cmd(name: str) -> None:
    """Create a project in the workspace and register it in settings.yaml."""
    from blockyard.errors import BlockyardError
    from blockyard.project.scaffold import new_project

    try:
        new_project(_workspace(), name)
    except BlockyardError as exc:
        _fail(str(exc))
    _console().print(f"created project {name}")


@new_app.command("pipeline")
def new_pipeline_cmd(ref: str = typer.Argument(..., help="project/pipeline_uuid")) -> None:
    """Create an empty pipeline in a project."""
    from blockyard.errors import BlockyardError
    from blockyard.project.scaffold import new_pipeline

    if "/" not in ref:
        _fail("give the pipeline as project/pipeline_uuid")
    project, uuid = ref.split("/", 1)
    try:
        new_pipeline(_workspace().project(project), uuid)
    except BlockyardError as exc:
        _fail(str(exc))
    _console().print(f"created pipeline {ref}")


@new_app.command("block")
def new_block_cmd(
    pipeline: str = typer.Argument(..., help="project/pipeline or a unique pipeline name."),
    block_type: str = typer.Argument(..., help="data_loader, transformer, data_exporter, custom, sensor, callback, conditional, chart, markdown."),
    uuid: str = typer.Argument(..., help="Block uuid; subfolders allowed (e.g. tuning/sklearn)."),
    upstream: list[str] = typer.Option([], "--upstream", "-u", help="An upstream block uuid (repeatable)."),
) -> None:
    """Add a block from its type's template to a pipeline."""
    from blockyard.errors import BlockyardError
    from blockyard.project.scaffold import new_block

    try:
        spec = _workspace().find_pipeline(pipeline)
        new_block(spec, block_type, uuid, upstream=upstream or None)
    except BlockyardError as exc:
        _fail(str(exc))
    _console().print(f"added {block_type} block {uuid} to {pipeline}")


@app.command()
def chart(
    pipeline: str = typer.Argument(..., help="project/pipeline or a unique pipeline name."),
    block: str = typer.Argument(..., help="The block the chart is attached to."),
    chart_uuid: str = typer.Argument(..., help="The chart widget's uuid."),
    out: Path = typer.Option(..., "--out", "-o", help="PNG file to write."),
) -> None:
    """Render a block's chart widget, from the block's latest stored output, to a PNG."""
    from blockyard.charts.cli_support import render_chart_for_block
    from blockyard.errors import BlockyardError

    try:
        path = render_chart_for_block(_workspace(), pipeline, block, chart_uuid, out)
    except BlockyardError as exc:
        _fail(str(exc))
    _console().print(f"wrote {path}")


def _register_extensions() -> None:
    """Commands that live with their layer (server, orchestration) register here.

    Each module exposes `register(app, workspace_getter, fail)` and must stay
    import-light (import its heavy parts inside the commands)."""
    import importlib

    for name in ("blockyard.server.cli", "blockyard.orchestration.cli", "blockyard.serving.cli",
                 "blockyard.charts.dashboard_cli", "blockyard.notify.cli"):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(app, _workspace, _fail)


_register_extensions()


def main() -> None:
    from blockyard.cli_entry import main as entry

    entry()


if __name__ == "__main__":
    main()
