"""Backfills: one queued run per interval between two dates.

Interval i covers [start + i*step, start + (i+1)*step); runs are created for every
interval whose start is <= `end` (so `--start 2024-01-01 --end 2024-01-07 --interval day`
makes 7 runs). Each run gets `execution_date` = the interval start and the variables
`interval_start_datetime` / `interval_end_datetime` (ISO 8601 strings, UTC), on top of
the backfill's own variables.
"""
from __future__ import annotations

import builtins
from datetime import datetime, timedelta
from typing import Any, Mapping

from blockyard.errors import BlockyardError
from blockyard.orchestration._util import log, notify_runs_queued, parse_datetime, utcnow

INTERVALS = ("hour", "day", "week", "month")
_ALIASES = {
    "h": "hour", "hour": "hour", "hours": "hour", "hourly": "hour",
    "d": "day", "day": "day", "days": "day", "daily": "day",
    "w": "week", "week": "week", "weeks": "week", "weekly": "week",
    "m": "month", "month": "month", "months": "month", "monthly": "month",
}
MAX_RUNS = 100_000
BACKFILL_STATUSES = ("running", "completed", "failed", "cancelled")


class BackfillError(BlockyardError, ValueError):
    """Bad backfill parameters (a ValueError)."""


class BackfillNotFound(BackfillError, LookupError):
    pass


def normalize_interval(interval: str) -> str:
    key = str(interval).strip().lower()
    if key not in _ALIASES:
        raise BackfillError(f"unknown interval {interval!r}; use one of {', '.join(INTERVALS)}")
    return _ALIASES[key]


def _add_months(dt: datetime, n: int) -> datetime:
    month = dt.month - 1 + n
    year = dt.year + month // 12
    month = month % 12 + 1
    import calendar

    day = min(dt.day, calendar.monthrange(year, month)[1])
    return dt.replace(year=year, month=month, day=day)


def step(dt: datetime, interval: str, units: int = 1) -> datetime:
    if interval == "hour":
        return dt + timedelta(hours=units)
    if interval == "day":
        return dt + timedelta(days=units)
    if interval == "week":
        return dt + timedelta(weeks=units)
    return _add_months(dt, units)


def intervals(start: datetime, end: datetime, interval: str, units: int = 1) -> list[tuple[datetime, datetime]]:
    """(interval_start, interval_end) for every interval whose start is <= end."""
    out = []
    i = 0
    current = start
    while current <= end:
        nxt = step(start, interval, units * (i + 1)) if interval == "month" else step(current, interval, units)
        out.append((current, nxt))
        if len(out) > MAX_RUNS:
            raise BackfillError(f"a backfill is limited to {MAX_RUNS} runs; use a longer interval or a shorter range")
        current = nxt
        i += 1
    return out


def _tables():
    from blockyard.db.schema import backfills, pipeline_runs

    return backfills, pipeline_runs


def create_backfill(
    db: Any,
    workspace: Any,
    *,
    project: str | None,
    pipeline_uuid: str,
    start: datetime | str,
    end: datetime | str,
    interval: str,
    variables: Mapping[str, Any] | None = None,
    name: str | None = None,
    units: int = 1,
) -> dict:
    """Create the backfill and its queued runs (one transaction); returns get(db, id)."""
    import sqlalchemy as sa

    from blockyard.orchestration.runs import run_values

    bf, pr = _tables()
    interval = normalize_interval(interval)
    if int(units) < 1:
        raise BackfillError("units must be at least 1")
    try:
        start_dt = parse_datetime(start, what="start")
        end_dt = parse_datetime(end, what="end")
    except ValueError as exc:
        raise BackfillError(str(exc)) from None
    if start_dt is None or end_dt is None:
        raise BackfillError("a backfill needs a start and an end")
    if end_dt < start_dt:
        raise BackfillError(f"end ({end_dt.isoformat()}) is before start ({start_dt.isoformat()})")
    if workspace is not None:
        spec = workspace.find_pipeline(f"{project}/{pipeline_uuid}" if project else pipeline_uuid)
        project, pipeline_uuid = spec.project.name, spec.uuid
    if not project:
        raise BackfillError("a backfill needs the pipeline's project")
    spans = intervals(start_dt, end_dt, interval, int(units))
    now = utcnow()
    base_vars = dict(variables or {})
    with db.engine.begin() as conn:
        backfill_id = conn.execute(
            sa.insert(bf).values(
                project=project,
                pipeline_uuid=pipeline_uuid,
                name=name,
                start_datetime=start_dt,
                end_datetime=end_dt,
                interval=interval,
                interval_units=int(units),
                variables=base_vars,
                status="running",
                total_runs=len(spans),
                created_at=now,
            )
        ).inserted_primary_key[0]
        rows = []
        for s, e in spans:
            run_vars = dict(base_vars)
            run_vars["interval_start_datetime"] = s.isoformat()
            run_vars["interval_end_datetime"] = e.isoformat()
            rows.append(
                run_values(
                    project=project,
                    pipeline_uuid=pipeline_uuid,
                    variables=run_vars,
                    trigger_id=None,
                    execution_date=s,
                    idempotency_key=None,
                    backfill_id=int(backfill_id),
                    settings=None,
                    sla=None,
                )
            )
        for i in range(0, len(rows), 1000):
            conn.execute(sa.insert(pr), rows[i : i + 1000])
    notify_runs_queued()
    return get(db, int(backfill_id))


def _progress(conn, backfill_id: int) -> dict:
    """Counts over the latest run of each interval (a retried interval counts once)."""
    import sqlalchemy as sa

    _, pr = _tables()
    rows = conn.execute(
        sa.select(pr.c.id, pr.c.execution_date, pr.c.status)
        .where(pr.c.backfill_id == backfill_id)
        .order_by(pr.c.id)
    ).all()
    latest: dict[Any, str] = {}
    for r in rows:
        latest[r.execution_date] = r.status
    counts = {s: 0 for s in ("queued", "running", "completed", "failed", "cancelled")}
    for status in latest.values():
        key = status if status in counts else ("running" if status == "initial" else "failed")
        if status == "condition_failed":
            key = "completed"
        counts[key] += 1
    return counts


def _decorate(row: dict, counts: dict) -> dict:
    out = dict(row)
    total = int(row["total_runs"] or 0)
    done = counts["completed"] + counts["failed"] + counts["cancelled"]
    out.update(counts)
    out["done"] = done
    out["progress"] = (done / total) if total else 1.0
    out["pipeline"] = f"{row['project']}/{row['pipeline_uuid']}"
    return out


def _status_for(row: dict, counts: dict) -> str:
    if row["status"] == "cancelled":
        return "cancelled"
    total = int(row["total_runs"] or 0)
    done = counts["completed"] + counts["failed"] + counts["cancelled"]
    if done < total:
        return "running"
    if counts["failed"]:
        return "failed"
    if counts["cancelled"]:
        return "cancelled"
    return "completed"


def refresh(db: Any, backfill_id: int) -> dict | None:
    """Recompute a backfill's status from its runs (stored when it changed)."""
    import sqlalchemy as sa

    bf, _ = _tables()
    with db.engine.begin() as conn:
        row = conn.execute(sa.select(bf).where(bf.c.id == int(backfill_id))).first()
        if row is None:
            return None
        row = dict(row._mapping)
        counts = _progress(conn, int(backfill_id))
        status = _status_for(row, counts)
        if status != row["status"]:
            values: dict[str, Any] = {"status": status}
            if status in ("completed", "failed", "cancelled") and row["completed_at"] is None:
                values["completed_at"] = utcnow()
            conn.execute(sa.update(bf).where(bf.c.id == row["id"], bf.c.status == row["status"]).values(values))
            row.update(values)
    return _decorate(row, counts)


def get(db: Any, backfill_id: int) -> dict | None:
    """The backfill with its progress: total_runs, queued, running, completed, failed,
    cancelled, done, progress (0..1) and status (running|completed|failed|cancelled)."""
    return refresh(db, backfill_id)


def list(db: Any, project: str | None = None, pipeline_uuid: str | None = None, limit: int | None = 100) -> builtins.list[dict]:  # noqa: A001
    """Backfills, newest first, with their progress."""
    import sqlalchemy as sa

    bf, _ = _tables()
    query = sa.select(bf.c.id).order_by(bf.c.id.desc())
    if project is not None:
        query = query.where(bf.c.project == project)
    if pipeline_uuid is not None:
        query = query.where(bf.c.pipeline_uuid == pipeline_uuid)
    if limit is not None:
        query = query.limit(limit)
    with db.engine.connect() as conn:
        ids = [int(i) for i in conn.execute(query).scalars()]
    out = []
    for i in ids:
        row = get(db, i)
        if row is not None:
            out.append(row)
    return out


def cancel(db: Any, backfill_id: int) -> dict:
    """Cancel a backfill: its queued runs are cancelled, its running runs are asked to
    stop (their workers cancel them)."""
    import sqlalchemy as sa

    from blockyard.orchestration.runs import request_cancel

    bf, pr = _tables()
    now = utcnow()
    with db.engine.begin() as conn:
        row = conn.execute(sa.select(bf).where(bf.c.id == int(backfill_id))).first()
        if row is None:
            raise BackfillNotFound(f"no backfill with id {backfill_id}")
        conn.execute(
            sa.update(bf)
            .where(bf.c.id == int(backfill_id), bf.c.status == "running")
            .values(status="cancelled", completed_at=now)
        )
        conn.execute(
            sa.update(pr)
            .where(pr.c.backfill_id == int(backfill_id), pr.c.status.in_(("initial", "queued")))
            .values(
                status="cancelled",
                completed_at=now,
                cancel_requested_at=now,
                error=f"backfill {backfill_id} was cancelled",
            )
        )
        running = [
            int(i)
            for i in conn.execute(
                sa.select(pr.c.id).where(pr.c.backfill_id == int(backfill_id), pr.c.status == "running")
            ).scalars()
        ]
    for run_id in running:
        try:
            request_cancel(db, run_id)
        except Exception:  # pragma: no cover
            log.exception("could not cancel run %s of backfill %s", run_id, backfill_id)
    result = get(db, int(backfill_id))
    assert result is not None
    return result


__all__ = ["create_backfill", "get", "list", "cancel", "refresh", "intervals", "INTERVALS", "BackfillError", "BackfillNotFound"]
