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
    "blockyard.db.sqlite_writes",
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


def preload_modules() -> list[str]:
    """PRELOAD plus `BLOCKYARD_RUN_PRELOAD` (comma-separated modules, e.g.
    `blockyard.ml.preload`): heavy libraries every run imports (MLflow, scikit-learn,
    Evidently: ~7 s of CPU per run on the course's monitoring backfill) are then
    imported once in the forkserver instead of once per run."""
    extra = [m.strip() for m in os.environ.get("BLOCKYARD_RUN_PRELOAD", "").split(",") if m.strip()]
    return PRELOAD + [m for m in extra if m not in PRELOAD]


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
            ctx.set_forkserver_preload(preload_modules())
        _contexts[method] = ctx
    return ctx


def database_url(db: Any) -> str:
    """The URL a child opens the same database with (password included)."""
    source = getattr(db, "_source", None)  # the URL or path it was opened with
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


class RunSession:
    """The engine session of one run a worker executes: the worker's database (a run
    is recorded where it was claimed), the workspace's store, logs and prelude."""

    prelude: tuple[str, ...] = ("blockyard.compat.shim:install",)

    def __init__(self, workspace: Any, db: Any, store: Any, data_dir: Any, logs_dir: Any) -> None:
        self.workspace = workspace
        self.db = db
        self.store = store
        self.data_dir = data_dir
        self.logs_dir = logs_dir


def stop_on_block_failure(settings: dict, stop: Any) -> Any:
    """An event subscriber: a failed block stops the run (`stop()`), unless the
    trigger allows blocks to fail (Mage's `allow_blocks_to_fail`)."""
    from blockyard.engine.events import BlockFinished

    allow = bool((settings or {}).get("allow_blocks_to_fail", False))

    def on_event(event: Any) -> None:
        if isinstance(event, BlockFinished) and event.status == "failed" and not allow:
            stop()

    return on_event


def _child_history(db: Any, payload: dict) -> Any:
    """The child's run history: the run keeps the worker's pid (recovery checks the
    worker's process), finishing is a compare-and-set on the worker's lease (a run the
    worker already finished or lost is left alone)."""
    from blockyard.engine.history import RunHistory

    class ChildHistory(RunHistory):
        block_failed = False

        def start_run(self, run_id: int, blocks: list[str]) -> None:
            self.pid, self.hostname = payload["worker_pid"], payload["hostname"]
            super().start_run(run_id, blocks)

        def finish_run(self, run_id: int, status: str, error: Any, error_details: Any) -> None:
            from blockyard.orchestration.runs import finish_leased

            if self.block_failed and status == "cancelled":
                status = "failed"  # the run stopped because a block failed
            finish_leased(self.db, run_id, payload["worker_id"], status, error, error_details, None)

    return ChildHistory(db)


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
    from blockyard.engine.events import BlockFinished, BlockStarted
    from blockyard.engine.runner import PipelineRunner
    from blockyard.project import Workspace
    from blockyard.store import ArtifactStore

    # SQLite: the stdlib layer (a fresh process has no SQLAlchemy statement cache yet).
    db = open_database(payload["database_url"])
    history = _child_history(db, payload)
    runner = None
    try:
        ws = Workspace.open(payload["workspace_root"])
        row = payload["row"]
        spec = ws.project(row["project"]).pipeline(row["pipeline_uuid"])
        session = RunSession(
            ws, db, ArtifactStore(payload["store_url"]), Path(payload["data_dir"]), Path(payload["logs_dir"])
        )

        def tell_parent(event: Any) -> None:  # so that a crash can name the running blocks
            if events is not None and isinstance(event, (BlockStarted, BlockFinished)):
                try:
                    events.send(("running" if isinstance(event, BlockStarted) else "ended", event.node))
                except OSError:
                    pass

        def block_failed() -> None:
            history.block_failed = True
            runner.cancel()

        runner = PipelineRunner(
            session,
            spec,
            variables=payload["variables"],
            run_id=payload["run_id"],
            trigger_id=row.get("trigger_id"),
            execution_date=row.get("execution_date"),
            executor=payload["executor"],
            history=history,
            subscribers=[tell_parent, stop_on_block_failure(row.get("settings"), block_failed)],
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


# ------------------------------------------------------------ the worker side
def supervise(worker: Any, ctx: Any) -> None:
    """Execute a claimed run in a child process and wait for it; end it on cancel,
    timeout or a lost lease (`ctx.stop`), and record a crash (the child records
    everything else itself)."""
    from multiprocessing.connection import wait as wait_for_any

    base = worker.base_session()
    row = ctx.row
    payload = {
        "run_id": ctx.run_id,
        "row": row,
        "variables": dict(row.get("variables") or {}),
        "worker_id": worker.worker_id,
        "worker_pid": worker.pid,
        "parent_pid": os.getpid(),
        "hostname": worker.hostname,
        "database_url": database_url(worker.db),
        "workspace_root": str(worker.workspace.root),
        "store_url": str(base.store_url),
        "data_dir": str(base.data_dir),
        "logs_dir": str(base.logs_dir),
        "executor": worker.executor,
        "environ": dict(os.environ),
        "cwd": os.getcwd(),
    }
    with ctx.lock:
        if ctx.cancel_reason is not None:
            return
    proc, reader = start_child(payload)
    with ctx.lock:
        ctx.proc = proc
    if ctx.stop.is_set():  # cancelled while it started
        proc.terminate()
    running: set[str] = set()
    try:
        while proc.exitcode is None:
            wait_for_any([proc.sentinel, reader], timeout=0.25)  # wakes at once on exit
            drain(reader, running)
            if ctx.stop.is_set() and proc.exitcode is None:
                stop_child(proc, worker.kill_grace)
        proc.join()
        drain(reader, running)
    finally:
        reader.close()
        lifeline = getattr(proc, "_blockyard_lifeline", None)
        if lifeline is not None:
            lifeline.close()
    _after_child(worker, ctx, proc.exitcode, sorted(running))


def _after_child(worker: Any, ctx: Any, exitcode: int | None, running: list[str]) -> None:
    """The child is gone. Close the block runs it left open; if it did not record the
    run's result (it crashed or was killed), record why."""
    import sqlalchemy as sa

    from blockyard.db.common import utcnow
    from blockyard.db.schema import block_runs as br
    from blockyard.db.schema import pipeline_runs as pr

    with worker.db.engine.connect() as conn:
        run = conn.execute(sa.select(pr.c.status, pr.c.lease_owner).where(pr.c.id == ctx.run_id)).first()
        open_blocks = [
            r.block_uuid
            for r in conn.execute(
                sa.select(br.c.block_uuid).where(br.c.pipeline_run_id == ctx.run_id, br.c.status == "running")
            )
        ]
    open_blocks = sorted(set(open_blocks) | set(running))
    if run is None or ctx.cancel_reason in ("lease_lost", "shutdown"):
        return
    message = None
    if run.status == "running" and run.lease_owner == worker.worker_id and not ctx.finalized:
        message = describe_exit(exitcode, open_blocks)
        worker._fail_run(ctx, message)
    else:
        ctx.finalized = True
    if not open_blocks:
        return
    reason = ctx.cancel_reason
    if message is None:
        if reason == "timeout":
            message = f"stopped: the run timed out after {ctx.settings.get('timeout'):g} s"
        elif reason == "requested":
            message = "stopped: the run was cancelled"
        else:
            message = "stopped: the run ended while the block ran"
    status = "cancelled" if reason == "requested" else "failed"
    with worker.db.engine.begin() as conn:
        conn.execute(
            sa.update(br)
            .where(
                br.c.pipeline_run_id == ctx.run_id,
                br.c.block_uuid.in_(open_blocks),
                br.c.status.not_in(("completed", "condition_failed")),
            )
            .values(status=status, error=message, completed_at=utcnow())
        )
