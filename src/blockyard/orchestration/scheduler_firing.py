"""Firing time triggers: one transaction per batch, a fires row per (trigger, time)."""
from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from blockyard.orchestration._util import (
    dialect_insert,
    log,
    utcnow,
    write_txn,
)


class TimeTriggerFiring:
    """The time-trigger half of Scheduler (which provides db, _projects, _schedule,
    batch_size, max_catchup, record_fires and fire_log). See scheduler.py for the tick."""

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

        from blockyard.db.run_queries import unfinished_runs_of_triggers
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
            busy = unfinished_runs_of_triggers(conn, skippers)
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
