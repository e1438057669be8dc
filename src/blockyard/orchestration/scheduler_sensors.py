"""Queueing runs of sensor triggers; their sensor blocks poll in workers, never here."""
from __future__ import annotations

from datetime import datetime, timedelta

from blockyard.orchestration._util import (
    dialect_insert,
    log,
    utcnow,
    write_txn,
)
from blockyard.orchestration.triggers import SENSOR_TYPES, poke_interval


class SensorPolling:
    """The sensor-trigger half of Scheduler (which provides db, store and _projects)."""

    def poll_sensors(self, now: datetime, *, wait: bool = True) -> list[dict]:
        """Queue a run for each due sensor trigger whose previous run has finished.

        The scheduler never runs user code (Airflow's rule): the run's sensor block polls
        in a worker, every `poke_interval` seconds until it returns True (then the
        downstream blocks run) or until its `timeout`. Each trigger claims its due time
        with a compare-and-set on next_run_at, so two schedulers never queue it twice.
        `wait` is accepted for compatibility: queueing a run is immediate."""
        import sqlalchemy as sa

        from blockyard.db.run_queries import unfinished_runs_of_triggers
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
                busy = unfinished_runs_of_triggers(conn, [row["id"]])
                claimed = conn.execute(
                    sa.update(ps).where(ps.c.id == row["id"], ps.c.next_run_at == due).values(next_run_at=now + interval)
                ).rowcount
            if not claimed or busy:
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
