"""Workers: claim queued runs with leases and execute them.

A worker claims runs atomically (PostgreSQL: `SELECT ... FOR UPDATE SKIP LOCKED`, plus
a transaction-scoped advisory lock per pipeline/trigger when a concurrency limit
applies; SQLite: one `UPDATE ... WHERE status = 'queued' ... RETURNING` inside a
`BEGIN IMMEDIATE` transaction). A claimed run is `running` with `lease_owner` = the
worker and `lease_expires_at` in the future; a heartbeat thread renews the leases
every `heartbeat_interval` seconds and, in the same pass, notices cancel requests,
run timeouts and leases it lost.

Crash recovery: a run whose lease expired (any host), or whose worker process is
gone (same host: its pid no longer exists), is put back in the queue (`resume_count`
+1) — the resumed run reuses the blocks it had completed itself (the engine looks their
cache keys up among this run's own block runs) — or failed with the reason once it was
resumed `max_resumes` times. Every worker does this at start and every
`recover_interval` seconds.

Isolation (`isolation="process"`, the default): each run executes in a child process
(see orchestration/isolation.py), so a cancel or a run timeout ends its code (SIGTERM,
then SIGKILL after `kill_grace` s) and frees its memory, and a block that crashes the
process fails only its run. `isolation="thread"` runs it on a thread of the worker
(`BLOCKYARD_RUN_ISOLATION=thread`; the bench's in-process baseline).
"""
from __future__ import annotations

import hashlib
import os
import socket
import threading
import uuid as _uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from blockyard.orchestration._util import (
    as_clock,
    call_notify,
    link_stop,
    log,
    notify_runs_queued,
    register_worker_event,
    unregister_worker_event,
    write_txn,
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


class _LeasedDatabase:
    """What the runner of one claimed run sees as `session.db`: the real database, except
    that starting and finishing *this* run only happen while the worker holds its lease
    (so a worker that lost a run can never overwrite the new owner's result), and the
    final status reflects why the worker stopped it (timeout, cancel request, ...)."""

    def __init__(self, worker: "Worker", ctx: _Active) -> None:
        self._worker = worker
        self._ctx = ctx
        self._db = worker.db

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)

    def start_pipeline_run(self, run_id, block_uuids, pid=None, hostname=None) -> None:
        if int(run_id) == self._ctx.run_id and (self._ctx.cancel_reason == "lease_lost" or self._ctx.finalized):
            return
        self._db.start_pipeline_run(run_id, block_uuids, pid=pid, hostname=hostname)

    def finish_pipeline_run(self, run_id, status, error=None, error_details=None, metrics=None) -> None:
        if int(run_id) != self._ctx.run_id:  # e.g. a global data product's producer run
            self._db.finish_pipeline_run(run_id, status, error=error, error_details=error_details, metrics=metrics)
            return
        self._worker._finalize(self._ctx, status, error, error_details, metrics)


class _RunSession:
    """The engine Session for one run: the worker's database (leased) and the workspace's store."""

    def __init__(self, base: Any, workspace: Any, db: Any) -> None:
        self._base = base
        self.workspace = workspace
        self.db = db
        self.data_dir = base.data_dir
        self.logs_dir = base.logs_dir

    @property
    def store(self):
        return self._base.store


def _lock_key(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big", signed=True)


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

    def _pipeline_limit(self, project: str, pipeline_uuid: str) -> int | None:
        """`concurrency_config.pipeline_run_limit` of the pipeline's metadata.yaml."""
        import yaml

        try:
            path = self._workspace().project(project).pipelines_dir / pipeline_uuid / "metadata.yaml"
            st = path.stat()
        except Exception:
            return None
        sig = (st.st_mtime_ns, st.st_size, st.st_ino)
        cached = self._limit_cache.get((project, pipeline_uuid))
        if cached is not None and cached[0] == sig:
            return cached[1]
        limit = None
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            value = (data.get("concurrency_config") or {}).get("pipeline_run_limit")
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                limit = value
        except Exception:
            limit = None
        self._limit_cache[(project, pipeline_uuid)] = (sig, limit)
        return limit

    # ---------------------------------------------------------------- claim
    @property
    def active_run_ids(self) -> list[int]:
        with self._lock:
            return sorted(self._active)

    def claim(self, limit: int | None = None, now: datetime | None = None) -> list[dict]:
        """Claim up to `limit` (default: free capacity) queued runs; returns their rows
        (now `running`, leased by this worker). Does not execute them."""
        import sqlalchemy as sa

        from blockyard.db.schema import pipeline_runs as pr

        with self._lock:
            free = self.concurrency - len(self._active)
        cap = free if limit is None else int(limit)
        if cap <= 0:
            return []
        projects = self._projects()
        if not projects:
            return []
        now = now or self.clock()
        pg = self.db.dialect == "postgresql"
        with self.db.engine.connect() as conn:  # cheap check before taking any lock
            if conn.execute(
                sa.select(pr.c.id).where(pr.c.status == "queued", pr.c.project.in_(projects)).limit(1)
            ).first() is None:
                return []
        with write_txn(self.db) as conn:
            query = (
                sa.select(pr.c.id, pr.c.project, pr.c.pipeline_uuid, pr.c.trigger_id, pr.c.settings)
                .where(pr.c.status == "queued", pr.c.project.in_(projects))
                .order_by(pr.c.id)
                .limit(cap * 4 + 16)
            )
            if pg:
                query = query.with_for_update(skip_locked=True)
            candidates = conn.execute(query).all()
            if not candidates:
                return []
            pipe_limits = {}
            trig_limits = {}
            for c in candidates:
                key = (c.project, c.pipeline_uuid)
                if key not in pipe_limits:
                    pipe_limits[key] = self._pipeline_limit(*key)
                tl = (c.settings or {}).get("pipeline_run_limit") if c.trigger_id is not None else None
                if isinstance(tl, int) and not isinstance(tl, bool) and tl > 0:
                    trig_limits[c.trigger_id] = min(tl, trig_limits.get(c.trigger_id, tl))
            limited_pipes = sorted(k for k, v in pipe_limits.items() if v)
            pipe_running: dict[tuple[str, str], int] = {}
            trig_running: dict[int, int] = {}
            if limited_pipes or trig_limits:
                if pg:  # serialize the count-then-claim of limited pipelines across workers
                    keys = sorted(
                        {_lock_key(f"pipeline:{p}/{u}") for p, u in limited_pipes}
                        | {_lock_key(f"trigger:{t}") for t in trig_limits}
                    )
                    for k in keys:
                        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": k})
                for p, u in limited_pipes:
                    pipe_running[(p, u)] = conn.execute(
                        sa.select(sa.func.count()).select_from(pr).where(
                            pr.c.project == p, pr.c.pipeline_uuid == u, pr.c.status == "running"
                        )
                    ).scalar_one()
                if trig_limits:
                    for tid, n in conn.execute(
                        sa.select(pr.c.trigger_id, sa.func.count())
                        .where(pr.c.trigger_id.in_(list(trig_limits)), pr.c.status == "running")
                        .group_by(pr.c.trigger_id)
                    ):
                        trig_running[int(tid)] = int(n)
            chosen: list[int] = []
            for c in candidates:
                if len(chosen) >= cap:
                    break
                key = (c.project, c.pipeline_uuid)
                pl = pipe_limits.get(key)
                if pl and pipe_running.get(key, 0) >= pl:
                    continue
                tl = trig_limits.get(c.trigger_id) if c.trigger_id is not None else None
                if tl and trig_running.get(c.trigger_id, 0) >= tl:
                    continue
                chosen.append(int(c.id))
                if pl:
                    pipe_running[key] = pipe_running.get(key, 0) + 1
                if tl:
                    trig_running[c.trigger_id] = trig_running.get(c.trigger_id, 0) + 1
            if not chosen:
                return []
            rows = conn.execute(
                sa.update(pr)
                .where(pr.c.id.in_(chosen), pr.c.status == "queued")
                .values(
                    status="running",
                    lease_owner=self.worker_id,
                    lease_expires_at=now + self.lease,
                    heartbeat_at=now,
                    started_at=now,
                    pid=self.pid,
                    hostname=self.hostname,
                )
                .returning(*pr.c)
            ).all()
        claimed = sorted((dict(r._mapping) for r in rows), key=lambda r: r["id"])
        return claimed

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

    def _session(self, ws: Any, ctx: _Active) -> _RunSession:
        if self._base_session is None:
            from blockyard.session import Session

            self._base_session = Session(self.workspace)
        return _RunSession(self._base_session, ws, _LeasedDatabase(self, ctx))

    def _execute(self, ctx: _Active) -> None:
        from blockyard.engine.runner import PipelineRunner

        if self.isolation == "process":
            return self._execute_in_child(ctx)
        row = ctx.row
        try:
            if row.get("cancel_requested_at") is not None:
                ctx.cancel_reason = "requested"
                self._finalize(ctx, "cancelled", "cancelled before it started")
                return
            ws = self._workspace()
            spec = ws.project(row["project"]).pipeline(row["pipeline_uuid"])
            variables = dict(row.get("variables") or {})
            runner = PipelineRunner(
                self._session(ws, ctx),
                spec,
                variables=variables,
                run_id=ctx.run_id,
                trigger_id=row.get("trigger_id"),
                execution_date=row.get("execution_date"),
                executor=self.executor,
                on_event=lambda ev: self._on_event(ctx, ev),
            )
            with ctx.lock:
                ctx.runner = runner
                if ctx.cancel_reason is not None:
                    runner.cancel()
            runner.run()
            if not ctx.finalized and ctx.cancel_reason != "lease_lost":  # pragma: no cover - runner always finishes
                self._finalize(ctx, "failed", "the run ended without recording a result")
        except BaseException as exc:  # noqa: BLE001 - a run's failure must not kill the worker
            log.exception("run %s failed in the worker", ctx.run_id)
            if not ctx.finalized and ctx.cancel_reason != "lease_lost":
                try:
                    self._finalize(ctx, "failed", exc)
                except Exception:  # pragma: no cover - database down; the lease expires
                    log.exception("could not record the failure of run %s", ctx.run_id)
        finally:
            # The run stays active until its finish hooks (alerts, backfill progress) ran:
            # shutdown and wait_idle() wait for active runs, so no alert is lost.
            try:
                self._after_run(ctx)
            finally:
                with self._lock:
                    self._active.pop(ctx.run_id, None)
                self._wake.set()

    def _execute_in_child(self, ctx: _Active) -> None:
        """Execute the run in a child process; end it on cancel/timeout/lost lease, and
        record a crash (the child records everything else itself)."""
        from blockyard.orchestration import isolation

        row = ctx.row
        try:
            if row.get("cancel_requested_at") is not None:
                ctx.cancel_reason = "requested"
                self._finalize(ctx, "cancelled", "cancelled before it started")
                return
            if self._base_session is None:
                from blockyard.session import Session

                self._base_session = Session(self.workspace)
            base = self._base_session
            payload = {
                "run_id": ctx.run_id,
                "row": row,
                "variables": dict(row.get("variables") or {}),
                "worker_id": self.worker_id,
                "worker_pid": self.pid,
                "parent_pid": os.getpid(),
                "hostname": self.hostname,
                "database_url": isolation.database_url(self.db),
                "workspace_root": str(self.workspace.root),
                "store_url": str(base.store_url),
                "data_dir": str(base.data_dir),
                "logs_dir": str(base.logs_dir),
                "executor": self.executor,
                "environ": dict(os.environ),
                "cwd": os.getcwd(),
            }
            with ctx.lock:
                stop_now = ctx.cancel_reason is not None
            if stop_now:
                return
            proc, reader = isolation.start_child(payload)
            with ctx.lock:
                ctx.proc = proc
            if ctx.stop.is_set():  # cancelled while it started
                proc.terminate()
            from multiprocessing.connection import wait as wait_for_any

            running: set[str] = set()
            try:
                while proc.exitcode is None:
                    wait_for_any([proc.sentinel, reader], timeout=0.25)  # wakes at once on exit
                    isolation.drain(reader, running)
                    if ctx.stop.is_set() and proc.exitcode is None:
                        isolation.stop_child(proc, self.kill_grace)
                proc.join()
                isolation.drain(reader, running)
            finally:
                reader.close()
                lifeline = getattr(proc, "_blockyard_lifeline", None)
                if lifeline is not None:
                    lifeline.close()
            self._after_child(ctx, proc.exitcode, sorted(running))
        except BaseException as exc:  # noqa: BLE001 - a run's failure must not kill the worker
            log.exception("run %s failed in the worker", ctx.run_id)
            if not ctx.finalized and ctx.cancel_reason != "lease_lost":
                try:
                    self._finalize(ctx, "failed", exc)
                except Exception:  # pragma: no cover - database down; the lease expires
                    log.exception("could not record the failure of run %s", ctx.run_id)
        finally:
            try:
                proc = ctx.proc
                if proc is not None and proc.exitcode is None:  # pragma: no cover - defensive
                    isolation.stop_child(proc, self.kill_grace)
                self._after_run(ctx)
            finally:
                with self._lock:
                    self._active.pop(ctx.run_id, None)
                self._wake.set()

    def _after_child(self, ctx: _Active, exitcode: int | None, running: list[str]) -> None:
        """The child is gone. Close the block runs it left open; if it did not record the
        run's result (it crashed or was killed), record why."""
        import sqlalchemy as sa

        from blockyard.db.common import utcnow
        from blockyard.db.schema import block_runs as br
        from blockyard.db.schema import pipeline_runs as pr
        from blockyard.orchestration import isolation

        with self.db.engine.connect() as conn:
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
        mine = run.status == "running" and run.lease_owner == self.worker_id
        if mine and not ctx.finalized:
            message = isolation.describe_exit(exitcode, open_blocks)
            log.error("run %s: %s", ctx.run_id, message)
            self._finalize(ctx, "failed", message)
        else:
            ctx.finalized = True
            message = None
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
        with self.db.engine.begin() as conn:
            conn.execute(
                sa.update(br)
                .where(
                    br.c.pipeline_run_id == ctx.run_id,
                    br.c.block_uuid.in_(open_blocks),
                    br.c.status.not_in(("completed", "condition_failed")),
                )
                .values(status=status, error=message, completed_at=utcnow())
            )

    def _on_event(self, ctx: _Active, ev: dict) -> None:
        if ev.get("type") == "block" and ev.get("status") == "failed":
            if not ctx.settings.get("allow_blocks_to_fail", False):
                self._cancel(ctx, "block_failed")

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
        _check_late_sla(self, row)
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
        """Requeue (or fail, after max_resumes) runs whose worker is gone: lease expired,
        or the worker process on this host no longer exists. Returns {'requeued', 'failed'}."""
        import sqlalchemy as sa

        from blockyard.db.common import pid_alive
        from blockyard.db.schema import pipeline_runs as pr
        from blockyard.orchestration.runs import fail_lost, get_run, requeue_for_resume

        now = now or self.clock()
        out: dict[str, list[int]] = {"requeued": [], "failed": []}
        projects = self._projects()
        if not projects:
            return out
        with self.db.engine.connect() as conn:
            candidates = [
                dict(r._mapping)
                for r in conn.execute(
                    sa.select(
                        pr.c.id,
                        pr.c.lease_owner,
                        pr.c.lease_expires_at,
                        pr.c.hostname,
                        pr.c.pid,
                        pr.c.resume_count,
                    ).where(
                        pr.c.status == "running",
                        pr.c.lease_owner.is_not(None),
                        pr.c.project.in_(projects),
                        sa.or_(pr.c.lease_expires_at < now, pr.c.hostname == self.hostname),
                    )
                )
            ]
        mine = set(self.active_run_ids)
        for row in candidates:
            if row["lease_owner"] == self.worker_id and row["id"] in mine:
                continue
            expired = row["lease_expires_at"] is not None and row["lease_expires_at"] < now
            gone = (
                row["hostname"] == self.hostname
                and row["pid"] is not None
                and int(row["pid"]) != self.pid
                and not pid_alive(int(row["pid"]))
            )
            if not (expired or gone):
                continue
            why = (
                f"its worker process (pid {row['pid']} on {row['hostname']}) is gone"
                if gone
                else f"its worker {row['lease_owner']} stopped renewing the lease (expired {row['lease_expires_at'].isoformat()})"
            )
            attempt = int(row["resume_count"] or 0) + 1
            with write_txn(self.db) as conn:
                if attempt <= self.max_resumes:
                    if requeue_for_resume(conn, row, f"resumed (resume {attempt} of at most {self.max_resumes}): {why}"):
                        out["requeued"].append(int(row["id"]))
                else:
                    reason = (
                        f"the run was lost {attempt} times (its worker crashed or stopped heartbeating); "
                        f"giving up after {self.max_resumes} resumes. Last time: {why}"
                    )
                    if fail_lost(conn, row, reason):
                        out["failed"].append(int(row["id"]))
        out["failed"].extend(self._reap_unleased(projects, now))
        for run_id in out["requeued"]:
            log.warning("run %s requeued for resumption: its worker was lost", run_id)
        if out["requeued"]:
            notify_runs_queued()
        for run_id in out["failed"]:
            row = get_run(self.db, run_id)
            log.error("run %s failed: %s", run_id, row and row.get("error"))
            if row and row.get("backfill_id"):
                from blockyard.orchestration import backfills

                backfills.refresh(self.db, row["backfill_id"])
            call_notify("notify_run_finished", self._workspace(), self.db, row)
        return out

    def _reap_unleased(self, projects: list[str], now: datetime) -> list[int]:
        """Fail runs no worker leases (`blockyard run`) whose process is gone from this
        host, or whose host stopped heartbeating them for longer than `run_lease`."""
        import sqlalchemy as sa

        from blockyard.db.common import pid_alive
        from blockyard.db.schema import pipeline_runs as pr
        from blockyard.orchestration.runs import fail_unleased

        stale_before = now - self.run_lease
        with self.db.engine.connect() as conn:
            rows = conn.execute(
                sa.select(pr.c.id, pr.c.pid, pr.c.hostname, pr.c.heartbeat_at).where(
                    pr.c.status == "running",
                    pr.c.lease_owner.is_(None),
                    pr.c.project.in_(projects),
                    sa.or_(pr.c.hostname == self.hostname, pr.c.heartbeat_at < stale_before),
                )
            ).all()
        failed: list[int] = []
        for r in rows:
            if r.hostname == self.hostname:
                if r.pid is None or pid_alive(int(r.pid)):
                    continue
                why = f"its process (pid {r.pid} on {r.hostname}) is gone; the run was stopped by a crash or kill"
            elif r.heartbeat_at is not None and r.heartbeat_at < stale_before:
                why = (
                    f"its process (pid {r.pid} on {r.hostname}) stopped heartbeating: no heartbeat since "
                    f"{r.heartbeat_at.isoformat()} (lease timeout {self.run_lease.total_seconds():g} s)"
                )
            else:
                continue
            with write_txn(self.db) as conn:
                if fail_unleased(conn, int(r.id), why):
                    failed.append(int(r.id))
                    log.error("run %s failed: %s", r.id, why)
        return failed

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


def _check_late_sla(worker: Worker, row: dict) -> None:
    """A run that finished after its SLA deadline, not yet reported: report it."""
    import sqlalchemy as sa

    from blockyard.db.schema import pipeline_runs as pr

    deadline = row.get("sla_deadline")
    if deadline is None or row.get("sla_notified_at") is not None:
        return
    finished = row.get("completed_at")
    if finished is None or finished <= deadline:
        return
    with worker.db.engine.begin() as conn:
        n = conn.execute(
            sa.update(pr).where(pr.c.id == row["id"], pr.c.sla_notified_at.is_(None)).values(sla_notified_at=worker.clock())
        ).rowcount
    if n:
        call_notify("notify_sla_passed", worker._workspace(), worker.db, row)


__all__ = ["Worker"]
