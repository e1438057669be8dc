"""The `blockyard` executable: `run` goes straight to its own light parser, the rest to Typer.

`blockyard run` is what schedules and scripts call over and over; the Typer app (every
command's parser, click, completion) costs about a third of a two-block run's start-up,
so it is imported only for the other commands (and for `blockyard run` nowhere).
"""
from __future__ import annotations

import sys


def split_command(args: list[str]) -> tuple[str | None, str | None, list[str]]:
    """`[-w WS] COMMAND REST...` -> (WS, COMMAND, REST). COMMAND is None when something other
    than the workspace flag comes before it (`--help`, a typo): the full app reports those."""
    workspace = None
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-w", "--workspace"):
            if i + 1 == len(args):
                return workspace, None, []
            workspace, i = args[i + 1], i + 2
        elif arg.startswith("--workspace="):
            workspace, i = arg.split("=", 1)[1], i + 1
        elif arg.startswith("-w") and len(arg) > 2 and not arg.startswith("--"):
            workspace, i = arg[2:], i + 1
        elif arg.startswith("-"):
            return workspace, None, []
        else:
            return workspace, arg, args[i + 1:]
    return workspace, None, []


def main() -> None:
    workspace, command, rest = split_command(sys.argv[1:])
    if command == "run":
        from blockyard.cli_run import main as run_main

        sys.exit(run_main(rest, workspace))
    from blockyard.cli import app

    app()


if __name__ == "__main__":
    main()
