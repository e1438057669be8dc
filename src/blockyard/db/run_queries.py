"""Run-history statements that the scheduler and the workers share.

Each takes the caller's connection, so it runs inside the caller's transaction (the
scheduler checks for an unfinished run in the same transaction that claims the trigger).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable


def unfinished_runs_of_triggers(conn: Any, trigger_ids: Iterable[int]) -> dict[int, int]:
    """{trigger id: id of its newest unfinished run}, for those of `trigger_ids` that
    have one (a trigger that waits for its previous run skips or postpones a fire)."""
    import sqlalchemy as sa

    from blockyard.db.schema import UNFINISHED_STATUSES
    from blockyard.db.schema import pipeline_runs as pr

    ids = [int(i) for i in trigger_ids]
    if not ids:
        return {}
    rows = conn.execute(
        sa.select(pr.c.trigger_id, sa.func.max(pr.c.id))
        .where(pr.c.trigger_id.in_(ids), pr.c.status.in_(UNFINISHED_STATUSES))
        .group_by(pr.c.trigger_id)
    )
    return {int(tid): int(rid) for tid, rid in rows}


def mark_sla_reported(conn: Any, run_id: int, at: datetime) -> bool:
    """Record that the run's SLA breach is being reported. A compare-and-set on
    `sla_notified_at`: False when a scheduler or worker already did, so each breach is
    reported once."""
    import sqlalchemy as sa

    from blockyard.db.schema import pipeline_runs as pr

    statement = sa.update(pr).where(pr.c.id == int(run_id), pr.c.sla_notified_at.is_(None)).values(sla_notified_at=at)
    return bool(conn.execute(statement).rowcount)
