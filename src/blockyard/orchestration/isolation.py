"""Each run a worker executes runs in a child process of its own.

Why a process: a Python thread cannot be stopped, so a run that timed out or was
cancelled used to keep burning CPU and holding memory inside the worker (and the
server that embeds it). A child process can be ended (SIGTERM, then SIGKILL after a
grace period), its memory goes back to the system when it exits, and a block that
crashes it (segfault in native code, `os._exit`, the OOM killer) fails only its run.

How: children come from a `multiprocessing` *forkserver* that has the engine,
SQLAlchemy, pandas and pyarrow imported already, so a child starts in milliseconds
without re-importing them (bench/bench_isolation.py compares fork, forkserver and
spawn). Plain `fork` of the worker itself was not chosen: the worker (and the server
around it) has threads, connection pools and library thread pools whose locks a
forked child could inherit held. The child opens its own database connection and
records the run itself (block runs through its recorder, the final status with the
worker's lease as compare-and-set), so nothing streams back to the parent; the
parent only waits, kills, and records a crash the child could not record.

A child dies with its parent (Linux `PR_SET_PDEATHSIG`): a worker killed with -9
leaves no run executing behind it, and its runs are resumed by the next worker.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

# Imported in the forkserver before any child is forked (best effort: missing ones are skipped).
PRELOAD = [
    "blockyard.orchestration.isolation",
    "blockyard.orchestration.runs",
    "blockyard.engine.runner",
    "blockyard.engine.execute",
    "blockyard.session",
    "blockyard.engine.gdp",
    "blockyard.engine.loader",
    "blockyard.project",
    "blockyard.compat.shim",
    "blockyard.db.lite",
    "blockyard.db.database",
    "blockyard.db.schema",
    "blockyard.store.artifact_store",
    "blockyard.store.codecs",
    "blockyard.store.hashing",
    "sqlalchemy",
    "psycopg",
    "yaml",
    "xxhash",
    "pandas",
    "pyarrow",
]

_contexts: dict[str, Any] = {}


def start_method() -> str:
    """`BLOCKYARD_RUN_START_METHOD` (forkserver | fork | spawn), default forkserver where
    the platform has it (Linux, macOS), else spawn."""
    import multiprocessing

    wanted = os.environ.get("BLOCKYARD_RUN_START_METHOD", "").strip().lower()
    available = multiprocessing.get_all_start_methods()
    if wanted in available:
        return wanted
    return "forkserver" if "forkserver" in available else "spawn"


def _context(method: str):
    import multiprocessing

    ctx = _contexts.get(method)
    if ctx is None:
        ctx = multiprocessing.get_context(method)
        if method == "forkserver":
            ctx.set_forkserver_preload(PRELOAD)
        _contexts[method] = ctx
    return ctx


def database_url(db: Any) -> str:
    """The URL a child opens the same database with (password included)."""
    source = getattr(db, "_source", None)  # LiteDatabase
    if source is not None:
        return os.fspath(source)
    return db.url.render_as_string(hide_password=False)


def start_child(payload: dict, method: str | None = None):
    """Start the child process executing one claimed run; returns (process, reader):
    the child sends ("running" | "ended", node uuid) on `reader` as blocks start and
    end, so that a crash can name the blocks that were running."""
    ctx = _context(method or start_method())
    reader, writer = ctx.Pipe(duplex=False)
    # The lifeline's write end stays in this process only: when it dies (even by
    # kill -9) the child reads EOF and kills itself. (A forkserver child cannot rely on
    # PR_SET_PDEATHSIG alone: its parent is the forkserver, which outlives a killed
    # worker while any of its children runs.)
    life_r, life_w = ctx.Pipe(duplex=False)
    proc = ctx.Process(
        target=child_main, args=(payload, writer, life_r), name=f"blockyard-run-{payload['run_id']}"
    )
    try:
        _start_without_main(proc)
    except BaseException:
        life_w.close()
        raise
    finally:
        writer.close()  # the child has its copies
        life_r.close()
    proc._blockyard_lifeline = life_w  # closed with the process object
    return proc, reader


def drain(reader: Any, running: set[str]) -> None:
    """Apply the block events the child sent so far to `running`."""
    try:
        while reader.poll():
            kind, node = reader.recv()
            if kind == "running":
                running.add(node)
            else:
                running.discard(node)
    except (EOFError, OSError):
        pass


_start_lock = threading.Lock()


def _start_without_main(proc: Any) -> None:
    """Start `proc` without re-running the parent's `__main__` in the child (spawn and
    forkserver do that by default): the child's entry point lives in this module, and a
    script that starts a worker without an `if __name__ == "__main__"` guard (or a big
    server entry point) must not run again for every run."""
    from multiprocessing import spawn

    original = spawn.get_preparation_data

    def preparation(name: str) -> dict:
        data = original(name)
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
        return data

    with _start_lock:
        spawn.get_preparation_data = preparation
        try:
            proc.start()
        finally:
            spawn.get_preparation_data = original


def stop_child(proc: Any, grace: float) -> None:
    """SIGTERM, then SIGKILL if it is still there after `grace` seconds; waits for it."""
    if proc.exitcode is not None:
        return
    try:
        proc.terminate()
    except (OSError, ValueError):  # already gone
        return
    proc.join(grace)
    if proc.exitcode is None:
        try:
            proc.kill()
        except (OSError, ValueError):
            pass
        proc.join(10)


def describe_exit(exitcode: int | None, running: list[str]) -> str:
    """Why a child ended without recording its run's result, for the run's error."""
    where = f" while block(s) {', '.join(repr(b) for b in running[:5])} ran" if running else ""
    if exitcode is None:
        return f"the run's process did not end{where}"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        why = {
            "SIGSEGV": "a segmentation fault (native code crashed)",
            "SIGBUS": "a bus error (native code crashed)",
            "SIGABRT": "an abort (native code crashed)",
            "SIGKILL": "SIGKILL (e.g. the system's out-of-memory killer, or kill -9)",
            "SIGTERM": "SIGTERM",
        }.get(name, name)
        return f"the run's process was killed by {why}{where}; the worker is unaffected"
    return (
        f"the run's process exited with code {exitcode} before the run finished{where} "
        "(a block called os._exit() or sys.exit()?)"
    )


# ------------------------------------------------------------------- the child
def _die_with_parent() -> None:
    """Linux: get SIGKILL when the parent (the forkserver or the worker) dies."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:  # pragma: no cover - no prctl: the lease logic still applies
        pass


class _ChildDatabase:
    """The child's database as its runner sees it: starting keeps the worker's pid on the
    run (recovery checks the worker's process), finishing is a compare-and-set on the
    worker's lease (a run the worker already finished or lost is left alone)."""

    def __init__(self, db: Any, payload: dict) -> None:
        self._db = db
        self._p = payload
        self.block_failed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)

    def start_pipeline_run(self, run_id, block_uuids, pid=None, hostname=None) -> None:
        if int(run_id) == self._p["run_id"]:
            pid, hostname = self._p["worker_pid"], self._p["hostname"]
        self._db.start_pipeline_run(run_id, block_uuids, pid=pid, hostname=hostname)

    def finish_pipeline_run(self, run_id, status, error=None, error_details=None, metrics=None) -> None:
        if int(run_id) != self._p["run_id"]:  # e.g. a global data product's producer run
            self._db.finish_pipeline_run(run_id, status, error=error, error_details=error_details, metrics=metrics)
            return
        from blockyard.orchestration.runs import finish_leased

        if self.block_failed and status == "cancelled":
            status = "failed"  # the run stopped because a block failed
        finish_leased(self._db, run_id, self._p["worker_id"], status, error, error_details, metrics)


class _ChildSession:
    def __init__(self, workspace: Any, db: Any, store: Any, data_dir: Any, logs_dir: Any) -> None:
        self.workspace = workspace
        self.db = db
        self.store = store
        self.data_dir = data_dir
        self.logs_dir = logs_dir


def _watch_lifeline(lifeline: Any) -> None:
    def watch() -> None:
        try:
            lifeline.recv()  # nothing is ever sent: returns (EOFError) when the worker is gone
        except BaseException:
            pass
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="blockyard-lifeline", daemon=True).start()


def child_main(payload: dict, events: Any = None, lifeline: Any = None) -> None:
    """Entry point of the child: execute the run, record it, exit."""
    _die_with_parent()
    if lifeline is not None:
        _watch_lifeline(lifeline)
    if os.getppid() != payload.get("parent_pid", os.getppid()) and payload.get("method") == "fork":
        os._exit(1)  # pragma: no cover - the worker died before we armed the signal
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the worker, which stops us
    os.environ.clear()
    os.environ.update(payload["environ"])
    try:
        os.chdir(payload["cwd"])
    except OSError:
        pass
    code = 0
    try:
        _execute(payload, events)
    except BaseException:  # noqa: BLE001 - reported to the parent through the exit code
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass
    # Not a normal interpreter exit: a block's thread that ignored its timeout must not
    # keep the process alive.
    os._exit(code)


def _execute(payload: dict, events: Any) -> None:
    from pathlib import Path

    from blockyard.db import open_database
    from blockyard.engine.runner import PipelineRunner
    from blockyard.project import Workspace
    from blockyard.store import ArtifactStore

    # SQLite: the stdlib layer (a fresh process has no SQLAlchemy statement cache yet).
    db = open_database(payload["database_url"])
    leased = _ChildDatabase(db, payload)
    runner = None
    try:
        ws = Workspace.open(payload["workspace_root"])
        row = payload["row"]
        spec = ws.project(row["project"]).pipeline(row["pipeline_uuid"])
        session = _ChildSession(
            ws, leased, ArtifactStore(payload["store_url"]), Path(payload["data_dir"]), Path(payload["logs_dir"])
        )
        allow_fail = bool((row.get("settings") or {}).get("allow_blocks_to_fail", False))

        def on_event(ev: dict) -> None:
            if ev.get("type") != "block":
                return
            if events is not None:
                try:
                    events.send(("running" if ev.get("status") == "running" else "ended", ev.get("node")))
                except OSError:
                    pass
            if ev.get("status") == "failed" and not allow_fail:
                leased.block_failed = True
                runner.cancel()

        runner = PipelineRunner(
            session,
            spec,
            variables=payload["variables"],
            run_id=payload["run_id"],
            trigger_id=row.get("trigger_id"),
            execution_date=row.get("execution_date"),
            executor=payload["executor"],
            on_event=on_event,
        )
        runner.run()
    except BaseException as exc:  # noqa: BLE001 - recorded on the run, then re-raised
        from blockyard.orchestration.runs import finish_leased

        try:
            finish_leased(db, payload["run_id"], payload["worker_id"], "failed", exc)
        except Exception:
            pass
        raise
    finally:
        try:
            db.close()
        except Exception:
            pass
