"""Workers: claim queued runs with leases and execute them.

A worker claims runs atomically (orchestration/claiming.py: PostgreSQL `SELECT ... FOR
UPDATE SKIP LOCKED` plus advisory locks for concurrency limits; SQLite one `UPDATE ...
RETURNING` in `BEGIN IMMEDIATE`). A claimed run is `running` with `lease_owner` = the
worker and `lease_expires_at` in the future; a heartbeat thread renews the leases
every `heartbeat_interval` seconds and, in the same pass, notices cancel requests,
run timeouts and leases it lost. The engine reports the run as events: the worker's
`LeaseGuard` (a RunHistory subclass) records its start and end only under the lease,
and a subscriber stops the run when a block fails (unless blocks may fail).

Crash recovery (orchestration/recovery.py): a run whose lease expired (any host), or
whose worker process is gone (same host: its pid no longer exists), is put back in the
queue (`resume_count` +1) — the resumed run reuses the blocks it completed itself (the
engine looks their cache keys up among this run's own block runs) — or failed with the
reason once it was resumed `max_resumes` times. Every worker does this at start and
every `recover_interval` seconds.

Isolation (`isolation="process"`, the default): each run executes in a child process
(orchestration/isolation.py), so a cancel or a run timeout ends its code (SIGTERM,
then SIGKILL after `kill_grace` s) and frees its memory, and a block that crashes the
process fails only its run. `isolation="thread"` runs it on a thread of the worker
(`BLOCKYARD_RUN_ISOLATION=thread`; the bench's in-process baseline).
"""
from __future__ import annotations

import os
import socket
import threading
import uuid as _uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from blockyard.engine.history import RunHistory
from blockyard.orchestration._util import (
    as_clock,
    call_notify,
    link_stop,
    log,
    register_worker_event,
    unregister_worker_event,
)


@dataclass(eq=False)
class _Active:
    run_id: int
    row: dict
    claimed_at: datetime
    runner: Any = None
    thread: threading.Thread | None = None
    proc: Any = None  # the child process executing the run (isolation="process")
    stop: threading.Event = field(default_factory=threading.Event)  # end the child now
    cancel_reason: str | None = None  # requested | timeout | block_failed | lease_lost
    finalized: bool = False  # the run row was finished (by us) already
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def settings(self) -> dict:
        return self.row.get("settings") or {}


class LeaseGuard(RunHistory):
    """The run history of a run this worker executes on one of its threads: starting
    and finishing *this* run happen only while the worker holds its lease (a worker
    that lost a run never overwrites the new owner's result), and the final status
    says why the worker stopped it (timeout, cancel request, a failed block)."""

    def __init__(self, worker: "Worker", ctx: _Active) -> None:
        super().__init__(worker.db)
        self._worker = worker
        self._ctx = ctx

    def start_run(self, run_id: int, blocks: list[str]) -> None:
        if self._ctx.cancel_reason == "lease_lost" or self._ctx.finalized:
            return
        super().start_run(run_id, blocks)

    def finish_run(self, run_id: int, status: str, error: Any, error_details: Any) -> None:
        self._worker._finalize(self._ctx, status, error, error_details)


class Worker:
    """Executes queued runs of one workspace's projects.

    `run_forever(stop_event)` claims and runs until the event is set; `claim()`,
    `run_once()`, `check_runs()` and `recover()` are the single steps (tests drive
    them with a controllable `clock`).
    """

    def __init__(
        self,
        workspace: Any,
        db: Any,
        concurrency: int = 4,
        clock: Any = None,
        *,
        worker_id: str | None = None,
        lease_seconds: float = 30.0,
        heartbeat_interval: float = 1.0,
        poll_interval: float = 0.5,
        recover_interval: float = 5.0,
        max_resumes: int = 2,
        executor: str | None = None,  # None: each pipeline's executor_type, else thread
        shutdown_timeout: float = 10.0,
        isolation: str | None = None,
        kill_grace: float = 3.0,
        run_lease_seconds: float | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.workspace = workspace
        self.db = db
        self.concurrency = int(concurrency)
        self.clock = as_clock(clock)
        self.hostname = socket.gethostname()
        self.pid = os.getpid()
        self.worker_id = worker_id or f"worker:{self.hostname}:{self.pid}:{_uuid.uuid4().hex[:6]}"
        self.lease = timedelta(seconds=float(lease_seconds))
        self.heartbeat_interval = float(heartbeat_interval)
        self.poll_interval = float(poll_interval)
        self.recover_interval = float(recover_interval)
        self.max_resumes = int(max_resumes)
        self.executor = executor
        self.shutdown_timeout = float(shutdown_timeout)
        isolation = isolation or os.environ.get("BLOCKYARD_RUN_ISOLATION") or "process"
        if isolation not in ("process", "thread"):
            raise ValueError(f"isolation must be 'process' or 'thread', not {isolation!r}")
        self.isolation = isolation
        self.kill_grace = float(kill_grace)
        # How long a run without a worker lease (`blockyard run`) on another host may go
        # without a heartbeat before it counts as lost (its host never came back).
        if run_lease_seconds is None:
            run_lease_seconds = float(os.environ.get("BLOCKYARD_RUN_LEASE_SECONDS", "60"))
        self.run_lease = timedelta(seconds=float(run_lease_seconds))
        self._active: dict[int, _Active] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._started_at = self.clock()
        self._ws_cache: tuple[float, Any] | None = None
        self._limit_cache: dict[tuple[str, str], tuple[Any, int | None]] = {}
        self._base_session = None

    # ------------------------------------------------------------ workspace
    def _workspace(self):
        import time

        from blockyard.errors import BlockyardError
        from blockyard.project import Workspace

        cached = self._ws_cache
        if cached is not None and time.monotonic() - cached[0] < 2.0:
            return cached[1]
        try:
            ws = Workspace.open(self.workspace.root)
        except BlockyardError:
            ws = self.workspace
        self._ws_cache = (time.monotonic(), ws)
        return ws

    def _projects(self) -> list[str]:
        return self._workspace().project_names()

    # ---------------------------------------------------------------- claim
    @property
    def active_run_ids(self) -> list[int]:
        with self._lock:
            return sorted(self._active)

    def claim(self, limit: int | None = None, now: datetime | None = None) -> list[dict]:
        """Claim up to `limit` (default: free capacity) queued runs; returns their rows
        (now `running`, leased by this worker). Does not execute them."""
        from blockyard.orchestration import claiming

        return claiming.claim(self, limit, now)

    def run_once(self, now: datetime | None = None) -> list[dict]:
        """Recover lost runs, then claim up to the free capacity and start them (threads)."""
        self.recover(now)
        claimed = self.claim(now=now)
        for row in claimed:
            self.start(row, now=now)
        return claimed

    # -------------------------------------------------------------- execute
    def start(self, row: dict, now: datetime | None = None) -> threading.Thread:
        """Execute a claimed run on a new thread."""
        ctx = _Active(run_id=int(row["id"]), row=row, claimed_at=now or self.clock())
        thread = threading.Thread(target=self._execute, args=(ctx,), name=f"blockyard-run-{ctx.run_id}", daemon=True)
        ctx.thread = thread
        with self._lock:
            self._active[ctx.run_id] = ctx
        thread.start()
        return thread

    def _execute(self, ctx: _Active) -> None:
        """Execute one claimed run (on its own thread) to the end, whatever happens."""
        try:
            if ctx.row.get("cancel_requested_at") is not None:
                ctx.cancel_reason = "requested"
                self._finalize(ctx, "cancelled", "cancelled before it started")
            elif self.isolation == "process":
                from blockyard.orchestration import isolation

                isolation.supervise(self, ctx)
            else:
                self._run_here(ctx)
        except BaseException as exc:  # noqa: BLE001 - a run's failure must not kill the worker
            self._fail_run(ctx, exc)
        finally:
            # The run stays active until its finish hooks (alerts, backfill progress) ran:
            # shutdown and wait_idle() wait for active runs, so no alert is lost.
            try:
                if ctx.proc is not None and ctx.proc.exitcode is None:  # pragma: no cover
                    from blockyard.orchestration import isolation

                    isolation.stop_child(ctx.proc, self.kill_grace)
                self._after_run(ctx)
            finally:
                with self._lock:
                    self._active.pop(ctx.run_id, None)
                self._wake.set()

    def _fail_run(self, ctx: _Active, exc: BaseException | str) -> None:
        """The one place a run fails for a reason outside its blocks (the engine raised,
        the child crashed): recorded once, under the lease, never raising."""
        if isinstance(exc, BaseException):
            log.exception("run %s failed in the worker", ctx.run_id, exc_info=exc)
        else:
            log.error("run %s: %s", ctx.run_id, exc)
        if ctx.finalized or ctx.cancel_reason == "lease_lost":
            return
        try:
            self._finalize(ctx, "failed", exc)
        except Exception:  # pragma: no cover - database down; the lease expires
            log.exception("could not record the failure of run %s", ctx.run_id)

    def base_session(self) -> Any:
        if self._base_session is None:
            from blockyard.session import Session

            self._base_session = Session(self.workspace)
        return self._base_session

    def _run_here(self, ctx: _Active) -> None:
        """isolation="thread": the run executes on this thread of the worker."""
        from blockyard.engine.runner import PipelineRunner
        from blockyard.orchestration.isolation import RunSession, stop_on_block_failure

        ws = self._workspace()
        row = ctx.row
        base = self.base_session()
        runner = PipelineRunner(
            RunSession(ws, self.db, base.store, base.data_dir, base.logs_dir),
            ws.project(row["project"]).pipeline(row["pipeline_uuid"]),
            variables=dict(row.get("variables") or {}),
            run_id=ctx.run_id,
            trigger_id=row.get("trigger_id"),
            execution_date=row.get("execution_date"),
            executor=self.executor,
            history=LeaseGuard(self, ctx),
            subscribers=[stop_on_block_failure(ctx.settings, lambda: self._cancel(ctx, "block_failed"))],
        )
        with ctx.lock:
            ctx.runner = runner
            if ctx.cancel_reason is not None:
                runner.cancel()
        runner.run()
        if not ctx.finalized and ctx.cancel_reason != "lease_lost":  # pragma: no cover - runner always finishes
            self._fail_run(ctx, "the run ended without recording a result")

    def _cancel(self, ctx: _Active, reason: str) -> None:
        with ctx.lock:
            if ctx.cancel_reason is None:
                ctx.cancel_reason = reason
            runner = ctx.runner
            proc = ctx.proc
        if runner is not None:
            runner.cancel()
        # A child process gets SIGTERM now; its run thread sends SIGKILL after the grace period.
        ctx.stop.set()
        if proc is not None and proc.exitcode is None:
            try:
                proc.terminate()
            except (OSError, ValueError):  # already gone
                pass

    def _finalize(self, ctx: _Active, status: str, error: Any = None, error_details: Any = None, metrics: Any = None) -> None:
        """Record the run's end once, while holding its lease."""
        from blockyard.orchestration.runs import finish_leased

        with ctx.lock:
            if ctx.finalized or ctx.cancel_reason == "lease_lost":
                return
            ctx.finalized = True
            reason = ctx.cancel_reason
        if reason == "timeout":
            status = ctx.settings.get("timeout_status") or "failed"
            error = f"run timed out after {ctx.settings.get('timeout'):g} s (trigger setting 'timeout')"
            error_details = None
        elif reason == "block_failed" and status == "cancelled":
            status = "failed"
        elif reason == "requested" and status == "cancelled" and not error:
            error = "cancelled on request"
        ok = finish_leased(self.db, ctx.run_id, self.worker_id, status, error, error_details, metrics)
        if not ok:
            log.warning("run %s: lease lost before it finished; its new owner records the result", ctx.run_id)
            ctx.cancel_reason = "lease_lost"

    def _after_run(self, ctx: _Active) -> None:
        from blockyard.orchestration.runs import get_run

        if ctx.cancel_reason in ("lease_lost", "shutdown"):
            return
        try:
            row = get_run(self.db, ctx.run_id)
        except Exception:  # pragma: no cover
            log.exception("could not read run %s", ctx.run_id)
            return
        if row is None:
            return
        if row.get("backfill_id"):
            try:
                from blockyard.orchestration import backfills

                backfills.refresh(self.db, row["backfill_id"])
            except Exception:  # pragma: no cover
                log.exception("could not refresh backfill %s", row["backfill_id"])
        from blockyard.orchestration.recovery import check_late_sla

        check_late_sla(self, row)
        call_notify("notify_run_finished", self._workspace(), self.db, row)

    # ------------------------------------------------------------ heartbeat
    def check_runs(self, now: datetime | None = None) -> dict:
        """Renew the leases of the runs this worker executes; act on cancel requests,
        timeouts and lost leases. Returns {'renewed', 'cancelled', 'timed_out', 'lost'}."""
        import sqlalchemy as sa

        from blockyard.db.schema import pipeline_runs as pr

        now = now or self.clock()
        out: dict[str, list[int]] = {"renewed": [], "cancelled": [], "timed_out": [], "lost": []}
        with self._lock:
            active = [c for c in self._active.values() if not c.finalized and c.cancel_reason != "lease_lost"]
        if not active:
            return out
        ids = [c.run_id for c in active]
        with self.db.engine.begin() as conn:
            rows = conn.execute(
                sa.update(pr)
                .where(pr.c.id.in_(ids), pr.c.lease_owner == self.worker_id, pr.c.status == "running")
                .values(lease_expires_at=now + self.lease, heartbeat_at=now)
                .returning(pr.c.id, pr.c.cancel_requested_at)
            ).all()
        seen = {int(r.id): r for r in rows}
        for ctx in active:
            r = seen.get(ctx.run_id)
            if r is None:
                if ctx.finalized or (ctx.proc is not None and self._finished_by_child(ctx.run_id)):
                    continue
                out["lost"].append(ctx.run_id)
                log.warning("run %s: this worker lost its lease; stopping it", ctx.run_id)
                self._cancel(ctx, "lease_lost")
                with ctx.lock:
                    ctx.cancel_reason = "lease_lost"
                continue
            out["renewed"].append(ctx.run_id)
            if r.cancel_requested_at is not None and ctx.cancel_reason is None:
                out["cancelled"].append(ctx.run_id)
                self._cancel(ctx, "requested")
                self._finalize(ctx, "cancelled", "cancelled on request")
            timeout = ctx.settings.get("timeout")
            if timeout and ctx.cancel_reason is None and (now - ctx.claimed_at).total_seconds() >= float(timeout):
                out["timed_out"].append(ctx.run_id)
                self._cancel(ctx, "timeout")
                self._finalize(ctx, "failed")
        return out

    def _finished_by_child(self, run_id: int) -> bool:
        """The run's child recorded its result (and released the lease) itself."""
        from blockyard.orchestration.runs import get_run

        row = get_run(self.db, run_id) or {}
        return row.get("status") in ("completed", "failed", "cancelled") and row.get("lease_owner") is None

    def beat(self, now: datetime | None = None) -> None:
        from blockyard.orchestration import status

        status.beat(
            self.db,
            id=self.worker_id,
            role="worker",
            started_at=self._started_at,
            now=now or self.clock(),
            info={"concurrency": self.concurrency, "active": self.active_run_ids},
        )

    # ------------------------------------------------------------- recovery
    def recover(self, now: datetime | None = None) -> dict:
        """Requeue (or fail, after max_resumes) runs whose worker is gone: see
        orchestration/recovery.py. Returns {'requeued', 'failed'}."""
        from blockyard.orchestration import recovery

        return recovery.recover(self, now)

    # ------------------------------------------------------------------ loop
    def run_forever(self, stop_event: threading.Event | None = None) -> None:
        """Claim and execute runs until `stop_event` is set. Then stop claiming and wait up
        to `shutdown_timeout` s for the runs in progress (runs still going when the
        process exits are resumed by the next worker: their lease expires)."""
        import time

        stop = stop_event or threading.Event()
        register_worker_event(self._wake)
        link_stop(stop, self._wake)
        hb = threading.Thread(target=self._heartbeat_loop, args=(stop,), name="blockyard-worker-heartbeat", daemon=True)
        hb.start()
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    if time.monotonic() >= self._next_recover:
                        self.recover()
                        self._next_recover = time.monotonic() + self.recover_interval
                    for row in self.claim():
                        self.start(row)
                except Exception:
                    log.exception("worker %s: claiming runs failed; retrying", self.worker_id)
                    stop.wait(1.0)
                self._wake.wait(self.poll_interval)
        finally:
            unregister_worker_event(self._wake)
            deadline = time.monotonic() + self.shutdown_timeout
            for ctx in list(self._active.values()):
                if ctx.thread is not None:
                    ctx.thread.join(max(0.0, deadline - time.monotonic()))
            # Child processes still running are ended (their runs stay 'running' and are
            # resumed by the next worker: this process is gone, its lease expires).
            for ctx in list(self._active.values()):
                if ctx.proc is not None and ctx.proc.exitcode is None:
                    with ctx.lock:
                        ctx.cancel_reason = ctx.cancel_reason or "shutdown"
                    ctx.stop.set()
            for ctx in list(self._active.values()):
                if ctx.proc is not None and ctx.thread is not None:
                    ctx.thread.join(self.kill_grace + 5)
            hb.join(timeout=self.heartbeat_interval + 5)
            if not self._active:
                from blockyard.orchestration import status

                status.remove(self.db, self.worker_id)

    _next_recover = 0.0

    def _heartbeat_loop(self, stop: threading.Event) -> None:
        while True:
            try:
                self.check_runs()
                self.beat()
            except Exception:
                log.exception("worker %s: heartbeat failed", self.worker_id)
            if stop.wait(self.heartbeat_interval):
                break
        # Keep renewing the leases of runs still finishing during shutdown.
        while self._active:
            try:
                self.check_runs()
            except Exception:  # pragma: no cover
                log.exception("worker %s: heartbeat failed", self.worker_id)
            threading.Event().wait(self.heartbeat_interval)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no run is executing (tests, the CLI). True if idle."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                threads = [c.thread for c in self._active.values() if c.thread is not None]
            if not threads:
                return True
            for t in threads:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                t.join(remaining)
            if deadline is not None and time.monotonic() >= deadline:
                with self._lock:
                    return not self._active


__all__ = ["Worker"]
