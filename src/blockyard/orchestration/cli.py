"""`blockyard backfill` and `blockyard trigger ...` (registered by blockyard.cli).

Import-light: only typer at import time; everything else inside the commands.
"""
from __future__ import annotations

import json
from typing import Any, Callable, List, Optional

import typer


def _parse_pairs(pairs: list[str] | None, vars_json: str | None, fail: Callable, what: str = "--var") -> dict:
    from blockyard.cli_args import parse_pairs

    return parse_pairs(pairs, vars_json, fail, what)


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _db(ws):
    from blockyard.session import session_for

    return session_for(ws).db


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def register(app: typer.Typer, workspace_getter: Callable[[], Any], fail: Callable[..., None]) -> None:
    trigger_app = typer.Typer(help="List, create, enable and disable triggers (triggers.yaml).", no_args_is_help=True)
    app.add_typer(trigger_app, name="trigger")

    def _guard(fn: Callable[[], Any]) -> Any:
        from blockyard.errors import BlockyardError

        try:
            return fn()
        except BlockyardError as exc:
            fail(str(exc))
        except ValueError as exc:
            fail(str(exc))

    # ------------------------------------------------------------------ backfill
    @app.command("backfill")
    def backfill_cmd(
        pipeline: Optional[str] = typer.Argument(None, help="project/pipeline (or a unique pipeline name)."),
        start: Optional[str] = typer.Option(None, "--start", help="First interval start (ISO date/time, UTC)."),
        end: Optional[str] = typer.Option(None, "--end", help="Last interval start, inclusive (ISO date/time, UTC)."),
        interval: str = typer.Option("day", "--interval", help="hour, day, week or month."),
        units: int = typer.Option(1, "--every", help="Interval length in units (e.g. --interval hour --every 6)."),
        var: List[str] = typer.Option([], "--var", help="Variable key=value (repeatable)."),
        vars_json: Optional[str] = typer.Option(None, "--vars-json", help="Variables as a JSON object."),
        no_wait: bool = typer.Option(False, "--no-wait", help="Queue the runs and return at once."),
        worker: Optional[bool] = typer.Option(
            None,
            "--worker/--no-worker",
            help="Execute the runs in this process while waiting (default: only when no worker is alive).",
        ),
        concurrency: int = typer.Option(2, "--concurrency", help="Runs at a time for the in-process worker."),
        list_: bool = typer.Option(False, "--list", help="List backfills and exit."),
        cancel: Optional[int] = typer.Option(None, "--cancel", help="Cancel backfill ID and exit."),
        watch: Optional[int] = typer.Option(None, "--watch", help="Show the progress of backfill ID."),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    ) -> None:
        """Queue one run per interval between --start and --end and show their progress.

        Each run gets `execution_date` = its interval start and the variables
        `interval_start_datetime` / `interval_end_datetime`. Ctrl-C while waiting cancels
        the backfill.
        """
        from blockyard.orchestration import backfills

        ws = workspace_getter()
        db = _db(ws)
        console = _console()
        if list_:
            rows = _guard(lambda: backfills.list(db))
            if as_json:
                typer.echo(json.dumps(rows, default=_json_default, indent=2))
                return
            _print_backfills(console, rows)
            return
        if cancel is not None:
            row = _guard(lambda: backfills.cancel(db, cancel))
            if as_json:
                typer.echo(json.dumps(row, default=_json_default, indent=2))
            else:
                console.print(f"backfill {cancel}: {row['status']} ({row['cancelled']} run(s) cancelled)")
            return
        if watch is not None:
            row = backfills.get(db, watch)
            if row is None:
                fail(f"no backfill with id {watch}")
            bf_id = watch
        else:
            if not pipeline or not start or not end:
                fail("give PIPELINE, --start and --end (or --list / --cancel ID / --watch ID)")
            variables = _parse_pairs(var, vars_json, fail)
            row = _guard(
                lambda: backfills.create_backfill(
                    db,
                    ws,
                    project=None,
                    pipeline_uuid=pipeline,
                    start=start,
                    end=end,
                    interval=interval,
                    variables=variables,
                    units=units,
                )
            )
            bf_id = row["id"]
            if not as_json:
                console.print(
                    f"backfill {bf_id}: {row['total_runs']} run(s) of {row['pipeline']} queued "
                    f"(every {row['interval_units']} {row['interval']} from {row['start_datetime']:%Y-%m-%d %H:%M} "
                    f"to {row['end_datetime']:%Y-%m-%d %H:%M} UTC)"
                )
        if no_wait:
            if as_json:
                typer.echo(json.dumps(row, default=_json_default, indent=2))
            return
        final = _wait_backfill(ws, db, bf_id, worker, concurrency, console, quiet=as_json)
        if as_json:
            typer.echo(json.dumps(final, default=_json_default, indent=2))
        raise typer.Exit(0 if final["status"] == "completed" else 1)

    # ------------------------------------------------------------------- triggers
    def _store(ws):
        from blockyard.orchestration.triggers import TriggerStore

        return TriggerStore(ws, _db(ws))

    def _find(store, target: str, name: Optional[str]) -> dict:
        if name is None and target.isdigit():
            row = store.get(int(target))
            if row is None:
                fail(f"no trigger with id {target}")
            return row
        if name is None:
            fail("give a trigger id, or PIPELINE and the trigger NAME")
        ws = store.workspace
        spec = _guard(lambda: ws.find_pipeline(target))
        store.sync(project=spec.project.name, pipeline=spec.uuid)
        row = store.find(spec.project.name, spec.uuid, name)
        if row is None:
            fail(f"pipeline '{spec.project.name}/{spec.uuid}' has no trigger named '{name}'")
        return row

    @trigger_app.command("list")
    def trigger_list(
        pipeline: Optional[str] = typer.Argument(None, help="Only this pipeline's triggers."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Triggers of the workspace (or one pipeline), with their next execution time."""
        ws = workspace_getter()
        store = _store(ws)
        project = uuid = None
        if pipeline:
            spec = _guard(lambda: ws.find_pipeline(pipeline))
            project, uuid = spec.project.name, spec.uuid
        rows = _guard(lambda: store.list(project=project, pipeline=uuid))
        if as_json:
            typer.echo(json.dumps(rows, default=_json_default, indent=2))
            return
        console = _console()
        if not rows:
            console.print("no triggers")
            return
        from rich.table import Table

        table = Table(box=None, pad_edge=False, header_style="bold")
        for col in ("id", "pipeline", "name", "type", "schedule", "status", "next run (UTC)", "problem"):
            table.add_column(col)
        for r in rows:
            nxt = r["next_run_at"].strftime("%Y-%m-%d %H:%M:%S") if r["next_run_at"] else "-"
            color = "green" if r["status"] == "active" else "dim"
            table.add_row(
                str(r["id"]),
                r["pipeline"],
                r["name"],
                r["schedule_type"],
                r["schedule_interval"] or "-",
                f"[{color}]{r['status']}[/]",
                nxt,
                f"[red]{r['error']}[/]" if r["error"] else "",
            )
        console.print(table)

    @trigger_app.command("create")
    def trigger_create(
        pipeline: str = typer.Argument(..., help="project/pipeline (or a unique pipeline name)."),
        name: str = typer.Argument(..., help="Trigger name (unique in the pipeline)."),
        schedule_type: str = typer.Option("time", "--type", help="time, api or event (sensor)."),
        schedule: Optional[str] = typer.Option(
            None, "--schedule", "-s", help="@once, @hourly, @daily, @weekly, @monthly, a cron expression or 'every 15m'."
        ),
        start_time: Optional[str] = typer.Option(None, "--start-time", help="ISO date/time (naive = --timezone)."),
        tz: Optional[str] = typer.Option(None, "--timezone", help="IANA time zone for cron and start_time."),
        var: List[str] = typer.Option([], "--var", help="Trigger variable key=value (repeatable)."),
        setting: List[str] = typer.Option([], "--setting", help="Setting key=value, e.g. timeout=600 (repeatable)."),
        catchup: bool = typer.Option(False, "--catchup", help="Run every missed interval after downtime."),
        skip_if_running: bool = typer.Option(False, "--skip-if-running", help="Skip a fire while the previous run is unfinished."),
        sla: Optional[int] = typer.Option(None, "--sla", help="Seconds after the execution time the run must finish in."),
        inactive: bool = typer.Option(False, "--inactive", help="Create it disabled."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Add a trigger to the pipeline's triggers.yaml."""
        ws = workspace_getter()
        store = _store(ws)
        spec = _guard(lambda: ws.find_pipeline(pipeline))
        settings = _parse_pairs(setting, None, fail, "--setting")
        if tz:
            settings["timezone"] = tz
        if catchup:
            settings["catchup"] = True
        if skip_if_running:
            settings["skip_if_previous_running"] = True
        data: dict[str, Any] = {
            "project": spec.project.name,
            "pipeline_uuid": spec.uuid,
            "name": name,
            "schedule_type": schedule_type,
            "status": "inactive" if inactive else "active",
        }
        if schedule is not None:
            data["schedule_interval"] = schedule
        if start_time:
            data["start_time"] = start_time
        variables = _parse_pairs(var, None, fail)
        if variables:
            data["variables"] = variables
        if settings:
            data["settings"] = settings
        if sla is not None:
            data["sla"] = sla
        row = _guard(lambda: store.create(data))
        if as_json:
            typer.echo(json.dumps(row, default=_json_default, indent=2))
            return
        nxt = row["next_run_at"].isoformat() if row["next_run_at"] else "-"
        _console().print(f"trigger {row['id']} '{row['name']}' created ({row['status']}; next run {nxt})")
        if row["schedule_type"] == "api":
            _console().print(f"token: {row['token']}")

    def _set_status(target: str, name: Optional[str], status: str, as_json: bool) -> None:
        ws = workspace_getter()
        store = _store(ws)
        row = _find(store, target, name)
        row = _guard(lambda: store.update(row["id"], {"status": status}))
        if as_json:
            typer.echo(json.dumps(row, default=_json_default, indent=2))
            return
        nxt = row["next_run_at"].isoformat() if row["next_run_at"] else "-"
        _console().print(f"trigger {row['id']} '{row['name']}' is {row['status']} (next run {nxt})")

    @trigger_app.command("enable")
    def trigger_enable(
        target: str = typer.Argument(..., help="Trigger id, or PIPELINE (then NAME)."),
        name: Optional[str] = typer.Argument(None),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Set a trigger's status to active."""
        _set_status(target, name, "active", as_json)

    @trigger_app.command("disable")
    def trigger_disable(
        target: str = typer.Argument(..., help="Trigger id, or PIPELINE (then NAME)."),
        name: Optional[str] = typer.Argument(None),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Set a trigger's status to inactive."""
        _set_status(target, name, "inactive", as_json)

    @trigger_app.command("delete")
    def trigger_delete(
        target: str = typer.Argument(..., help="Trigger id, or PIPELINE (then NAME)."),
        name: Optional[str] = typer.Argument(None),
    ) -> None:
        """Remove a trigger from its triggers.yaml."""
        ws = workspace_getter()
        store = _store(ws)
        row = _find(store, target, name)
        _guard(lambda: store.delete(row["id"]))
        _console().print(f"trigger {row['id']} '{row['name']}' deleted")


def _print_backfills(console, rows: list[dict]) -> None:
    if not rows:
        console.print("no backfills")
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("id", "pipeline", "range", "interval", "status", "done", "failed"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["pipeline"],
            f"{r['start_datetime']:%Y-%m-%d %H:%M} .. {r['end_datetime']:%Y-%m-%d %H:%M}",
            r["interval"],
            r["status"],
            f"{r['done']}/{r['total_runs']}",
            str(r["failed"]),
        )
    console.print(table)


def _wait_backfill(ws, db, backfill_id: int, worker_flag: Optional[bool], concurrency: int, console, quiet: bool) -> dict:
    """Show a progress bar until the backfill is done; run a worker here if needed."""
    import threading
    import time

    from blockyard.orchestration import backfills, status

    use_worker = worker_flag
    if use_worker is None:
        age = status.worker_heartbeat_age(db)
        use_worker = age is None or age > 10
    stop = threading.Event()
    thread = None
    if use_worker:
        from blockyard.orchestration.worker import Worker

        w = Worker(ws, db, concurrency=max(1, concurrency))
        thread = threading.Thread(target=w.run_forever, args=(stop,), name="blockyard-backfill-worker", daemon=True)
        thread.start()
    row = backfills.get(db, backfill_id)
    try:
        if quiet:
            while row["status"] == "running":
                time.sleep(0.25)
                row = backfills.get(db, backfill_id)
        else:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            if not use_worker:
                console.print("[dim]runs are executed by the running worker(s); Ctrl-C cancels the backfill[/]")
            with Progress(
                TextColumn("backfill {task.fields[bf]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
                console=console,
            ) as progress:
                task = progress.add_task("", total=row["total_runs"], bf=backfill_id, detail="")
                while True:
                    detail = f"[green]{row['completed']} ok[/] [red]{row['failed']} failed[/] {row['running']} running {row['queued']} queued"
                    if row["cancelled"]:
                        detail += f" {row['cancelled']} cancelled"
                    progress.update(task, completed=row["done"], detail=detail)
                    if row["status"] != "running":
                        break
                    time.sleep(0.25)
                    row = backfills.get(db, backfill_id)
    except KeyboardInterrupt:
        console.print(f"\ncancelling backfill {backfill_id} ...")
        row = backfills.cancel(db, backfill_id)
    finally:
        stop.set()
        if thread is not None:
            thread.join(timeout=30)
    row = backfills.get(db, backfill_id) or row
    if not quiet:
        color = {"completed": "green", "failed": "red", "cancelled": "yellow"}.get(row["status"], "white")
        console.print(
            f"backfill {backfill_id}: [{color}]{row['status']}[/] — {row['completed']} completed, "
            f"{row['failed']} failed, {row['cancelled']} cancelled of {row['total_runs']}"
        )
    return row
