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
    dialect_insert,
    link_stop,
    log,
    notify_runs_queued,
    register_scheduler_event,
    unregister_scheduler_event,
    utcnow,
    write_txn,
)
from blockyard.orchestration.triggers import SENSOR_TYPES, TriggerStore, poke_interval, schedule_for


class Scheduler:
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
            text = f"{type(exc).__name__}: {str(getattr(exc, 'orig', None) or exc).strip()[:200]}"
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

    # ------------------------------------------------------- time triggers
    def fire_due(self, now: datetime) -> list[dict]:
        """Fire every active time trigger whose next execution time is <= now."""
        fired: list[dict] = []
        projects = self._projects()
        if not projects:
            return fired
        import sqlalchemy as sa

        attempts = 0
        while True:
            try:
                batch, more = self._fire_batch(now, projects)
            except sa.exc.OperationalError as exc:  # deadlock victim / database busy: try again
                attempts += 1
                if attempts > 3:
                    raise
                log.warning("scheduler: firing triggers failed (%s); retrying", str(exc).splitlines()[0])
                time.sleep(0.05 * attempts)
                continue
            fired.extend(batch)
            if not more:
                return fired

    def _fire_batch(self, now: datetime, projects: list[str]) -> tuple[list[dict], bool]:
        import sqlalchemy as sa

        from blockyard.db.schema import pipeline_runs as pr
        from blockyard.db.schema import pipeline_schedule_fires as pf
        from blockyard.db.schema import pipeline_schedules as ps
        from blockyard.orchestration.runs import run_values

        pg = self.db.dialect == "postgresql"
        due = [
            ps.c.status == "active",
            ps.c.schedule_type == "time",
            ps.c.next_run_at.is_not(None),
            ps.c.next_run_at <= now,
            ps.c.project.in_(projects),
        ]
        with self.db.engine.connect() as conn:  # cheap check before taking any lock
            if conn.execute(sa.select(ps.c.id).where(*due).limit(1)).first() is None:
                return [], False
        with write_txn(self.db) as conn:
            wanted = [c for c in ps.c if c.name not in ("extra", "token")]
            query = (
                sa.select(*wanted)
                .where(*due)
                .order_by(ps.c.next_run_at, ps.c.id)
                .limit(self.batch_size)
            )
            if pg:
                query = query.with_for_update(skip_locked=True)
            rows = [dict(r._mapping) for r in conn.execute(query)]
            if not rows:
                return [], False
            # Triggers that skip while a previous run is unfinished.
            skippers = [r["id"] for r in rows if (r.get("settings") or {}).get("skip_if_previous_running")]
            busy: dict[int, int] = {}
            if skippers:
                for tid, rid in conn.execute(
                    sa.select(pr.c.trigger_id, sa.func.max(pr.c.id))
                    .where(pr.c.trigger_id.in_(skippers), pr.c.status.in_(("initial", "queued", "running")))
                    .group_by(pr.c.trigger_id)
                ):
                    busy[int(tid)] = int(rid)
            fires: list[dict] = []
            cursor_updates: list[dict] = []
            for row in rows:
                sched = self._schedule(row)
                cursor = row["next_run_at"]
                if sched is None:
                    cursor_updates.append({"id": row["id"], "next_run_at": None, "last_execution_date": row["last_execution_date"]})
                    continue
                settings = row.get("settings") or {}
                if sched.kind == "once":
                    dates = [cursor] if row["last_execution_date"] is None else []
                    nxt = None
                elif settings.get("catchup"):
                    dates = []
                    d = cursor
                    while d is not None and d <= now and len(dates) < self.max_catchup:
                        dates.append(d)
                        d = sched.next_after(d)
                    nxt = d
                else:
                    following = sched.next_after(cursor)
                    if following is None or following > now:  # on time: the usual case
                        dates, nxt = [cursor], following
                    else:  # missed times (downtime): only the latest one fires
                        latest = sched.latest_at_or_before(now)
                        dates = [max(latest, cursor) if latest is not None else cursor]
                        nxt = sched.next_after(max(now, dates[0]))
                for d in dates:
                    if row["id"] in busy:
                        fires.append({"row": row, "date": d, "skip": f"previous run {busy[row['id']]} is still unfinished"})
                    else:
                        fires.append({"row": row, "date": d, "skip": None})
                        if settings.get("skip_if_previous_running"):
                            busy[row["id"]] = -1  # the run created just now
                cursor_updates.append(
                    {
                        "id": row["id"],
                        "next_run_at": nxt,
                        "last_execution_date": dates[-1] if dates else row["last_execution_date"],
                    }
                )
            created_at = utcnow()
            runs: list[dict] = []
            if fires:
                inserted = conn.execute(
                    dialect_insert(self.db, pf)
                    .on_conflict_do_nothing(index_elements=["schedule_id", "execution_date"])
                    .returning(pf.c.schedule_id, pf.c.execution_date),
                    [
                        {
                            "schedule_id": f["row"]["id"],
                            "execution_date": f["date"],
                            "status": "skipped" if f["skip"] else "fired",
                            "reason": f["skip"],
                            "created_at": created_at,
                        }
                        for f in fires
                    ],
                ).all()
                new = {(int(s), e) for s, e in inserted}
                to_run = [f for f in fires if not f["skip"] and (f["row"]["id"], f["date"]) in new]
                dupes = sum(1 for f in fires if (f["row"]["id"], f["date"]) not in new)
                if dupes:
                    log.info("scheduler: %d fire(s) already recorded by another scheduler", dupes)
                if to_run:
                    values = []
                    for f in to_run:
                        row = f["row"]
                        v = run_values(
                            project=row["project"],
                            pipeline_uuid=row["pipeline_uuid"],
                            variables=row.get("variables") or {},
                            trigger_id=row["id"],
                            execution_date=f["date"],
                            idempotency_key=None,
                            backfill_id=None,
                            settings=row.get("settings") or None,
                            sla=row.get("sla"),
                        )
                        v["created_at"] = created_at
                        values.append(v)
                    ids = conn.execute(
                        sa.insert(pr).returning(pr.c.id, sort_by_parameter_order=True), values
                    ).scalars().all()
                    blank = dict.fromkeys(c.name for c in pr.c)
                    runs = [{**blank, **v, "id": int(i)} for v, i in zip(values, ids)]
            if len(cursor_updates) <= 20:  # small batch: everything in one transaction
                self._bookkeeping(conn, runs, cursor_updates)
                cursor_updates = runs_done = []
            else:
                runs_done = runs
        # Large batches commit the runs first (workers see them now), then move the cursors
        # and link the fires to their runs. Safe: until the cursors move, a scheduler that
        # looks at these triggers again finds their fires recorded and creates nothing.
        if self.record_fires and runs:
            committed = utcnow()
            self.fire_log.extend((r["trigger_id"], r["execution_date"], committed) for r in runs)
        if cursor_updates or runs_done:
            with write_txn(self.db) as conn:
                self._bookkeeping(conn, runs_done, cursor_updates)
        return runs, len(rows) >= self.batch_size

    def _bookkeeping(self, conn: Any, runs: list[dict], cursor_updates: list[dict]) -> None:
        from blockyard.db.schema import pipeline_schedule_fires as pf
        from blockyard.db.schema import pipeline_schedules as ps

        # Always the same order (schedules by id, then fires by key), so two schedulers
        # doing this at once wait for each other instead of deadlocking.
        self._bulk_update(
            conn, ps, ["id"], ["next_run_at", "last_execution_date"], sorted(cursor_updates, key=lambda u: u["id"])
        )
        self._bulk_update(
            conn, pf, ["schedule_id", "execution_date"], ["run_id"],
            sorted(
                ({"schedule_id": r["trigger_id"], "execution_date": r["execution_date"], "run_id": r["id"]} for r in runs),
                key=lambda u: (u["schedule_id"], u["execution_date"]),
            ),
        )

    @staticmethod
    def _bulk_update(conn: Any, table: Any, keys: list[str], columns: list[str], rows: list[dict]) -> None:
        """UPDATE many rows by key with one executemany (psycopg pipelines it)."""
        import sqlalchemy as sa

        if not rows:
            return
        conn.execute(
            sa.update(table)
            .where(*[table.c[k] == sa.bindparam(f"k_{k}") for k in keys])
            .values({c: sa.bindparam(f"v_{c}") for c in columns}),
            [{**{f"k_{k}": r[k] for k in keys}, **{f"v_{c}": r[c] for c in columns}} for r in rows],
        )

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

    # ---------------------------------------------------------- sensors
    def poll_sensors(self, now: datetime, *, wait: bool = True) -> list[dict]:
        """Queue a run for each due sensor trigger whose previous run has finished.

        The scheduler never runs user code (Airflow's rule): the run's sensor block polls
        in a worker, every `poke_interval` seconds until it returns True (then the
        downstream blocks run) or until its `timeout`. Each trigger claims its due time
        with a compare-and-set on next_run_at, so two schedulers never queue it twice.
        `wait` is accepted for compatibility: queueing a run is immediate."""
        import sqlalchemy as sa

        from blockyard.db.schema import pipeline_runs as pr
        from blockyard.db.schema import pipeline_schedules as ps

        del wait
        projects = self._projects()
        if not projects:
            return []
        with self.db.engine.connect() as conn:
            rows = [
                dict(r._mapping)
                for r in conn.execute(
                    sa.select(ps).where(
                        ps.c.status == "active",
                        ps.c.schedule_type.in_(SENSOR_TYPES),
                        ps.c.next_run_at.is_not(None),
                        ps.c.next_run_at <= now,
                        ps.c.project.in_(projects),
                    )
                )
            ]
        fired: list[dict] = []
        for row in rows:
            interval = timedelta(seconds=poke_interval(row, self._sensor_default_interval(row)))
            due = row["next_run_at"]
            with self.db.engine.begin() as conn:
                busy = conn.execute(
                    sa.select(pr.c.id).where(pr.c.trigger_id == row["id"], pr.c.status.in_(("initial", "queued", "running"))).limit(1)
                ).first()
                claimed = conn.execute(
                    sa.update(ps).where(ps.c.id == row["id"], ps.c.next_run_at == due).values(next_run_at=now + interval)
                ).rowcount
            if not claimed or busy is not None:
                continue  # another scheduler took this time, or the last run is not done yet
            run = self._fire_sensor(row, now)
            if run is not None:
                fired.append(run)
        return fired

    def _sensor_default_interval(self, row: dict) -> float:
        """How soon after a run finished the next one is queued: the trigger's
        poke_interval, else the sensor block's (read from metadata.yaml, never run)."""
        block = self._sensor_block(row)
        if block is not None:
            value = (block.configuration or {}).get("poke_interval")
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                return float(value)
        from blockyard.orchestration.triggers import DEFAULT_POKE_INTERVAL

        return DEFAULT_POKE_INTERVAL

    def _sensor_block(self, row: dict):
        try:
            ws = self.store._fresh_workspace()
            spec = ws.project(row["project"]).pipeline(row["pipeline_uuid"])
        except Exception:
            return None
        name = (row.get("settings") or {}).get("sensor_block")
        if name:
            return spec.get_block(name)
        return next((b for b in spec.blocks if b.type == "sensor"), None)

    def _fire_sensor(self, row: dict, due: datetime) -> dict | None:
        import sqlalchemy as sa

        from blockyard.db.schema import pipeline_runs as pr
        from blockyard.db.schema import pipeline_schedule_fires as pf
        from blockyard.db.schema import pipeline_schedules as ps
        from blockyard.orchestration.runs import run_values

        now = utcnow()
        with write_txn(self.db) as conn:
            inserted = conn.execute(
                dialect_insert(self.db, pf)
                .on_conflict_do_nothing(index_elements=["schedule_id", "execution_date"])
                .returning(pf.c.schedule_id),
                [{"schedule_id": row["id"], "execution_date": due, "status": "fired", "reason": None, "created_at": now}],
            ).all()
            if not inserted:
                return None
            values = run_values(
                project=row["project"],
                pipeline_uuid=row["pipeline_uuid"],
                variables=row.get("variables") or {},
                trigger_id=row["id"],
                execution_date=due,
                idempotency_key=None,
                backfill_id=None,
                settings=row.get("settings") or None,
                sla=row.get("sla"),
            )
            run_id = conn.execute(sa.insert(pr).values(values)).inserted_primary_key[0]
            conn.execute(
                sa.update(pf).where(pf.c.schedule_id == row["id"], pf.c.execution_date == due).values(run_id=run_id)
            )
            conn.execute(sa.update(ps).where(ps.c.id == row["id"]).values(last_execution_date=due))
            run = dict(conn.execute(sa.select(pr).where(pr.c.id == run_id)).first()._mapping)
        log.info("sensor trigger %s fired run %s", row["name"], run_id)
        return run

    # ---------------------------------------------------------------- SLA
    def check_sla(self, now: datetime) -> list[dict]:
        """Report (once) every unfinished run whose SLA deadline passed."""
        import sqlalchemy as sa

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
                        pr.c.status.in_(("initial", "queued", "running")),
                        pr.c.project.in_(projects),
                    )
                )
            ]
        reported = []
        for row in rows:
            with self.db.engine.begin() as conn:
                n = conn.execute(
                    sa.update(pr).where(pr.c.id == row["id"], pr.c.sla_notified_at.is_(None)).values(sla_notified_at=now)
                ).rowcount
            if n:
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
