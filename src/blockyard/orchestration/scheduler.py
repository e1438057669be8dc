"""The scheduler: fires time triggers on time, queues sensor-trigger runs, watches SLAs.

It never imports or calls user code: sensor blocks, like every block, run in a worker.

`run_forever` computes the earliest `next_run_at` of the active triggers and sleeps
until exactly then (at most `max_sleep` seconds, so triggers created by another
process are seen quickly), then `tick`s. A tick:

1. syncs triggers.yaml files that changed into `pipeline_schedules`;
2. fires due time triggers in batches, each batch one transaction: the due schedule
   rows are locked (PostgreSQL `FOR UPDATE SKIP LOCKED`; SQLite `BEGIN IMMEDIATE`),
   a `pipeline_schedule_fires` row is inserted per (trigger, execution time) with
   `ON CONFLICT DO NOTHING` — its primary key makes a second fire of the same time
   impossible, whatever the number of schedulers — then the runs and the new cursors;
3. queues a run for each due sensor trigger (its sensor block polls in a worker);
4. reports runs past their SLA (blockyard.notify.notify_sla_passed, if present);
5. refreshes its heartbeat row.

Catch-up: after downtime only the latest missed execution time fires, unless the
trigger has `settings.catchup: true`, in which case every missed time fires (at most
`max_catchup` per trigger per tick; the rest on the following ticks).
"""
from __future__ import annotations

import os
import socket
import threading
import time
import uuid as _uuid
from datetime import datetime, timedelta
from typing import Any

from blockyard.orchestration._util import (
    as_clock,
    call_notify,
    link_stop,
    log,
    notify_runs_queued,
    register_scheduler_event,
    unregister_scheduler_event,
)
from blockyard.orchestration.scheduler_firing import TimeTriggerFiring
from blockyard.orchestration.scheduler_sensors import SensorPolling
from blockyard.orchestration.triggers import SENSOR_TYPES, TriggerStore, schedule_for


class Scheduler(TimeTriggerFiring, SensorPolling):
    def __init__(
        self,
        workspace: Any,
        db: Any,
        clock: Any = None,
        *,
        scheduler_id: str | None = None,
        sync_interval: float = 2.0,
        full_sync_interval: float = 60.0,
        heartbeat_interval: float = 2.0,
        max_sleep: float = 1.0,
        batch_size: int = 500,
        max_catchup: int = 100,
        sensor_threads: int = 4,
    ) -> None:
        self.workspace = workspace
        self.db = db
        self.clock = as_clock(clock)
        self.scheduler_id = scheduler_id or f"scheduler:{socket.gethostname()}:{os.getpid()}:{_uuid.uuid4().hex[:6]}"
        self.store = TriggerStore(workspace, db, clock=self.clock)
        self.sync_interval = float(sync_interval)
        self.full_sync_interval = float(full_sync_interval)
        self.heartbeat_interval = float(heartbeat_interval)
        self.max_sleep = float(max_sleep)
        self.batch_size = int(batch_size)
        self.max_catchup = int(max_catchup)
        self._schedules: dict[int, tuple[Any, Any]] = {}
        self._wake = threading.Event()
        del sensor_threads  # sensors poll in workers now; kept for callers that pass it
        self._started_at = self.clock()
        self._last_beat: float | None = None
        self._last_sync: float | None = None
        self._last_full_sync: float | None = None
        self._projects_cache: tuple[float, list[str]] | None = None
        # (schedule_id, execution_date, committed_at) per fire, for benchmarks.
        self.record_fires = False
        self.fire_log: list[tuple[int, datetime, datetime]] = []

    # ------------------------------------------------------------ helpers
    def _projects(self) -> list[str]:
        cached = self._projects_cache
        if cached is not None and time.monotonic() - cached[0] < 2.0:
            return cached[1]
        names = self.store.project_names()
        self._projects_cache = (time.monotonic(), names)
        return names

    def _schedule(self, row: dict):
        cached = self._schedules.get(row["id"])
        key = (row.get("config_hash") or "", row.get("last_enabled_at"))  # intervals count from last_enabled_at
        if cached is not None and cached[0] == key:
            return cached[1]
        sched = schedule_for(row)
        self._schedules[row["id"]] = (key, sched)
        return sched

    def sync(self, *, force: bool = False) -> dict:
        """Sync triggers.yaml files into the table (changed files only unless `force`)."""
        return self.store.sync(force=force)

    # --------------------------------------------------------------- tick
    def tick(self, now: datetime | None = None) -> list[dict]:
        """One pass at time `now` (default: the clock): sync trigger files, fire due
        triggers, queue runs of due sensor triggers, check SLAs, heartbeat. Returns
        the runs created (rows, status queued)."""
        return self._tick(now, sync=True, wait_sensors=True)

    def _tick(self, now: datetime | None, *, sync: bool, wait_sensors: bool, fire_first: bool = False) -> list[dict]:
        now = now or self.clock()
        fired = self.fire_due(now) if fire_first else []  # run_forever: what is due first
        if sync:
            self._sync_files()
        if not fire_first:
            fired = self.fire_due(now)
        fired += self.poll_sensors(now, wait=wait_sensors)
        try:
            self.check_sla(now)
        except Exception:
            log.exception("scheduler: SLA check failed")
        if self._last_beat is None or time.monotonic() - self._last_beat >= self.heartbeat_interval:
            self.beat(now)
        if fired:
            notify_runs_queued()
        return fired

    def _sync_files(self) -> None:
        try:
            full = self._last_full_sync is None or time.monotonic() - self._last_full_sync >= self.full_sync_interval
            self.store.sync(force=full)
            if full:
                self._last_full_sync = time.monotonic()
            self._last_sync = time.monotonic()
            self._sync_error = None
        except Exception as exc:
            # Retry at the next interval, not at once (the loop would spin), and log an
            # error once until it changes.
            self._last_sync = time.monotonic()
            # The first line only: a driver's DETAIL carries the failing row with its
            # timestamps, which would make the same error look new on every retry.
            first = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [""])[0]
            text = f"{type(exc).__name__}: {first[:200]}"
            if text != getattr(self, "_sync_error", None):
                self._sync_error = text
                log.exception("scheduler: syncing triggers.yaml files failed (logged once until it changes)")

    def beat(self, now: datetime | None = None) -> None:
        from blockyard.orchestration import status

        try:
            status.beat(self.db, id=self.scheduler_id, role="scheduler", started_at=self._started_at, now=now or self.clock())
            self._last_beat = time.monotonic()
        except Exception:
            log.exception("scheduler: heartbeat failed")

    def next_due(self) -> datetime | None:
        """The earliest next_run_at of the active time and sensor triggers."""
        import sqlalchemy as sa

        from blockyard.db.schema import pipeline_schedules as ps

        projects = self._projects()
        if not projects:
            return None
        with self.db.engine.connect() as conn:
            return conn.execute(
                sa.select(sa.func.min(ps.c.next_run_at)).where(
                    ps.c.status == "active",
                    ps.c.schedule_type.in_(("time",) + SENSOR_TYPES),
                    ps.c.next_run_at.is_not(None),
                    ps.c.project.in_(projects),
                )
            ).scalar()

    # ---------------------------------------------------------------- SLA
    def check_sla(self, now: datetime) -> list[dict]:
        """Report (once) every unfinished run whose SLA deadline passed."""
        import sqlalchemy as sa

        from blockyard.db.run_queries import mark_sla_reported
        from blockyard.db.schema import UNFINISHED_STATUSES
        from blockyard.db.schema import pipeline_runs as pr

        projects = self._projects()
        if not projects:
            return []
        with self.db.engine.connect() as conn:
            rows = [
                dict(r._mapping)
                for r in conn.execute(
                    sa.select(pr).where(
                        pr.c.sla_deadline.is_not(None),
                        pr.c.sla_deadline <= now,
                        pr.c.sla_notified_at.is_(None),
                        pr.c.status.in_(UNFINISHED_STATUSES),
                        pr.c.project.in_(projects),
                    )
                )
            ]
        reported = []
        for row in rows:
            with self.db.engine.begin() as conn:
                claimed = mark_sla_reported(conn, row["id"], now)
            if claimed:
                row["sla_notified_at"] = now
                reported.append(row)
                log.warning(
                    "run %s of %s/%s passed its SLA (deadline %s)", row["id"], row["project"], row["pipeline_uuid"], row["sla_deadline"]
                )
                call_notify("notify_sla_passed", self.store._fresh_workspace(), self.db, row)
        return reported

    # ---------------------------------------------------------------- loop
    def run_forever(self, stop_event: threading.Event | None = None) -> None:
        """Fire triggers on time until `stop_event` is set."""
        stop = stop_event or threading.Event()
        register_scheduler_event(self._wake)
        link_stop(stop, self._wake)
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    sync = self._last_sync is None or time.monotonic() - self._last_sync >= self.sync_interval
                    self._tick(None, sync=sync, wait_sensors=False, fire_first=True)
                    if self._sleep_seconds() > 0.05:
                        self.prepare(self.clock())
                    timeout = self._sleep_seconds()
                except Exception:
                    log.exception("scheduler: tick failed; retrying in 1 s")
                    timeout = 1.0
                if timeout > 0:
                    self._wake.wait(timeout)
        finally:
            unregister_scheduler_event(self._wake)
            from blockyard.orchestration import status

            status.remove(self.db, self.scheduler_id)

    def prepare(self, now: datetime, horizon: float = 10.0) -> int:
        """Compute ahead, while idle, the execution time after the cursor of each trigger
        due within `horizon` seconds, so firing it does no cron arithmetic."""
        import sqlalchemy as sa

        from blockyard.db.schema import pipeline_schedules as ps

        projects = self._projects()
        if not projects:
            return 0
        cols = [ps.c.id, ps.c.config_hash, ps.c.schedule_type, ps.c.schedule_interval, ps.c.settings,
                ps.c.start_time, ps.c.last_enabled_at, ps.c.created_at, ps.c.error, ps.c.next_run_at]
        with self.db.engine.connect() as conn:
            rows = conn.execute(
                sa.select(*cols).where(
                    ps.c.status == "active",
                    ps.c.schedule_type == "time",
                    ps.c.next_run_at.is_not(None),
                    ps.c.next_run_at <= now + timedelta(seconds=horizon),
                    ps.c.project.in_(projects),
                )
            ).all()
        for r in rows:
            sched = self._schedule(dict(r._mapping))
            if sched is not None and sched.kind != "once":
                sched.next_after(r.next_run_at)
        return len(rows)

    def _sleep_seconds(self) -> float:
        due = self.next_due()
        timeout = self.max_sleep
        if due is not None:
            timeout = min(timeout, (due - self.clock()).total_seconds())
        if self._last_sync is not None:
            timeout = min(timeout, self.sync_interval - (time.monotonic() - self._last_sync))
        if self._last_beat is not None:
            timeout = min(timeout, self.heartbeat_interval - (time.monotonic() - self._last_beat))
        return max(0.0, timeout)


__all__ = ["Scheduler"]
