"""Run the scheduler and/or a worker without the web server.

    python -m blockyard.orchestration {scheduler|worker|all} [-w WORKSPACE] [--concurrency N]

The database is the workspace's (BLOCKYARD_DATABASE_URL, else its SQLite file).
SIGINT/SIGTERM stop it: the worker stops claiming and waits up to 10 s for the runs
in progress (runs still going are resumed by the next worker).
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m blockyard.orchestration", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("role", choices=("scheduler", "worker", "all"))
    ap.add_argument("-w", "--workspace", default=None, help="workspace folder (default: discovered)")
    ap.add_argument("--concurrency", type=int, default=4, help="runs at a time (worker)")
    ap.add_argument("--database-url", default=None, help="default: the workspace's database")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    stop = threading.Event()

    def on_signal(signum, _frame) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    from blockyard.errors import BlockyardError
    from blockyard.project import Workspace

    try:
        ws = Workspace.open(args.workspace) if args.workspace else Workspace.discover()
        if args.database_url:
            from blockyard.db import Database

            db = Database(args.database_url)
            db.migrate()
        else:
            from blockyard.session import session_for

            db = session_for(ws).db
    except BlockyardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    threads: list[threading.Thread] = []
    if args.role in ("scheduler", "all"):
        from blockyard.orchestration.scheduler import Scheduler

        threads.append(threading.Thread(target=Scheduler(ws, db).run_forever, args=(stop,), name="scheduler", daemon=True))
    if args.role in ("worker", "all"):
        from blockyard.orchestration.worker import Worker

        threads.append(threading.Thread(target=Worker(ws, db, concurrency=args.concurrency).run_forever,
                                        args=(stop,), name="worker", daemon=True))
    for t in threads:
        t.start()
    print(f"blockyard {args.role} running on {ws.root} ({db.safe_url}); Ctrl-C stops it", file=sys.stderr)
    while not stop.is_set() and any(t.is_alive() for t in threads):
        stop.wait(0.5)
    stop.set()
    for t in threads:  # the worker waits up to 10 s for runs in progress
        t.join(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
