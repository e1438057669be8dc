"""`blockyard run`: its parser, the run with or without the live view, the result line.

On argparse, not Typer: `blockyard run` is the command scheduled jobs and scripts call
over and over, and importing Typer (click, its completion, its type machinery) costs
about a third of a two-block run's whole-process time. Rich is imported only for the
live view. The Typer app lists `run` and hands its arguments here (cli.py), so the
options are defined once, in `parser()`.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, NoReturn

DESCRIPTION = "Run a pipeline (or one block) and record it in the run history."


class CliExit(Exception):
    """Stop the command with this exit code (the message, if any, already printed)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def fail(message: str, code: int = 1) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise CliExit(code)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="blockyard run", description=DESCRIPTION)
    p.add_argument("pipeline", help="project/pipeline, or a pipeline name unique in the workspace.")
    p.add_argument("--var", action="append", default=[], metavar="KEY=VALUE",
                   help="A runtime variable key=value (repeatable); values parse as JSON when they can.")
    p.add_argument("--vars-json", metavar="JSON", help="Runtime variables as a JSON object.")
    p.add_argument("--block", metavar="BLOCK",
                   help="Run only this block, on the stored outputs of its upstream blocks.")
    p.add_argument("--from-block", metavar="BLOCK", help="Run this block and everything downstream of it.")
    p.add_argument("--cache", action="store_true",
                   help="Reuse a block's output from an earlier run when its code, attached and imported "
                        "files, configuration, variables and inputs are unchanged (off by default: every "
                        "block runs).")
    p.add_argument("--no-cache", action="store_true",
                   help="Run every block even where the pipeline or block sets cache: true.")
    p.add_argument("--executor", metavar="NAME",
                   help="thread, process, inline or dask (BLOCKYARD_DASK_ADDRESS, else a local cluster); "
                        "default: the pipeline's executor_type, else thread.")
    p.add_argument("-q", "--quiet", action="store_true", help="No live view; print only the result line.")
    return p


def open_workspace(workspace: str | Path | None, on_error: Callable[[str], NoReturn] = fail):
    """The workspace at `workspace`, else BLOCKYARD_WORKSPACE, else found from the cwd upward."""
    from blockyard.errors import BlockyardError
    from blockyard.project import Workspace

    try:
        return Workspace.open(Path(workspace)) if workspace else Workspace.discover()
    except BlockyardError as exc:
        on_error(str(exc))


def execute(ws, pipeline: str, variables: dict, *, block: str | None = None, from_block: str | None = None,
            use_cache: bool | None = None, executor: str | None = None, quiet: bool = False,
            on_error: Callable[[str], NoReturn] = fail):
    """Run the pipeline, with the live view unless `quiet` (or plain output was asked for)."""
    from blockyard.api import run_pipeline
    from blockyard.errors import BlockyardError

    options = dict(workspace=ws, variables=variables, block=block, from_block=from_block,
                   use_cache=use_cache, executor=executor)
    try:
        if quiet:
            return run_pipeline(pipeline, **options)
        from rich.console import Console

        console = Console(highlight=False)
        if not console.is_terminal and os.environ.get("BLOCKYARD_PLAIN"):
            return run_pipeline(pipeline, **options)
        from blockyard.cli_live import LiveView

        with LiveView(console) as view:
            return run_pipeline(pipeline, **options, on_event=view.event)
    except BlockyardError as exc:
        on_error(str(exc))


def report(result, plain: bool = False) -> None:
    cached = sum(1 for b in result.block_runs.values() if b.cache_hit)
    extra = f", {cached} cached" if cached else ""
    tail = f" — {result.project}/{result.pipeline_uuid}, {len(result.block_runs)} block run(s){extra}"
    if plain:  # the result line only, without loading Rich
        print(f"run {result.run_id} {result.status}{tail}")
        if not result.ok and result.error:
            print(f"error: {result.error}", file=sys.stderr)
        return
    from rich.console import Console

    color = "green" if result.ok else "red"
    Console(highlight=False).print(f"[{color}]run {result.run_id} {result.status}[/]{tail}")
    if not result.ok and result.error:
        err = Console(stderr=True, highlight=False)
        err.print(f"[bold red]error:[/] {result.error}", soft_wrap=True)
        for b in result.block_runs.values():
            if b.status == "failed" and b.traceback:
                err.print(f"[dim]--- traceback of {b.uuid} ---[/]")
                err.print(b.traceback.rstrip(), markup=False, highlight=False, soft_wrap=True)
                break


def main(args: list[str], workspace: str | Path | None = None) -> int:
    """`blockyard run ARGS...`; returns the exit code (0 completed, 1 failed, 2 usage error)."""
    from blockyard.cli_args import parse_pairs

    try:
        opts = parser().parse_args(args)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed by argparse
        return int(exc.code or 0)
    try:
        variables = parse_pairs(opts.var, opts.vars_json, fail)
        if opts.cache and opts.no_cache:
            fail("--cache and --no-cache exclude each other")
        use_cache = True if opts.cache else (False if opts.no_cache else None)
        ws = open_workspace(workspace)
        result = execute(ws, opts.pipeline, variables, block=opts.block, from_block=opts.from_block,
                         use_cache=use_cache, executor=opts.executor, quiet=opts.quiet)
    except CliExit as exc:
        return exc.code
    report(result, plain=opts.quiet)
    return 0 if result.ok else 1
