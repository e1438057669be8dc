"""Run-history queries the API needs beyond `Database`'s (SQLAlchemy Core on db.schema)."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

import sqlalchemy as sa

from blockyard.db.schema import block_runs, pipeline_runs, to_utc


def _filters(
    *,
    project: str | None = None,
    pipeline_uuid: str | None = None,
    status: Iterable[str] | None = None,
    trigger_id: int | None = None,
    backfill_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list:
    c = pipeline_runs.c
    where = []
    if project is not None:
        where.append(c.project == project)
    if pipeline_uuid is not None:
        where.append(c.pipeline_uuid == pipeline_uuid)
    statuses = list(status or [])
    if len(statuses) == 1:
        where.append(c.status == statuses[0])
    elif statuses:
        where.append(c.status.in_(statuses))
    if trigger_id is not None:
        where.append(c.trigger_id == trigger_id)
    if backfill_id is not None:
        where.append(c.backfill_id == backfill_id)
    if since is not None:
        where.append(c.created_at >= to_utc(since))
    if until is not None:
        where.append(c.created_at < to_utc(until))
    return where


def list_runs(db: Any, *, limit: int, offset: int, **filters: Any) -> tuple[list[dict], int]:
    """Runs newest first with the total matching the filters (for pagination)."""
    where = _filters(**filters)
    query = (
        sa.select(pipeline_runs)
        .where(*where)
        .order_by(pipeline_runs.c.created_at.desc(), pipeline_runs.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    count = sa.select(sa.func.count()).select_from(pipeline_runs).where(*where)
    with db.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
        total = int(conn.execute(count).scalar_one())
    return rows, total


def status_counts(db: Any, statuses: Iterable[str] = ("queued", "running")) -> dict[str, int]:
    wanted = list(statuses)
    query = (
        sa.select(pipeline_runs.c.status, sa.func.count())
        .where(pipeline_runs.c.status.in_(wanted))
        .group_by(pipeline_runs.c.status)
    )
    out = {s: 0 for s in wanted}
    with db.engine.connect() as conn:
        for status, n in conn.execute(query):
            out[status] = int(n)
    return out


def ping(db: Any) -> None:
    with db.engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))


def run_status(db: Any, run_id: int) -> str | None:
    with db.engine.connect() as conn:
        return conn.execute(
            sa.select(pipeline_runs.c.status).where(pipeline_runs.c.id == run_id)
        ).scalar_one_or_none()


def block_statuses(db: Any, run_id: int) -> list[tuple[str, str]]:
    query = (
        sa.select(block_runs.c.block_uuid, block_runs.c.status)
        .where(block_runs.c.pipeline_run_id == run_id)
        .order_by(block_runs.c.id)
    )
    with db.engine.connect() as conn:
        return [(u, s) for u, s in conn.execute(query)]
