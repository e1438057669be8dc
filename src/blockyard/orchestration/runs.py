"""The run queue: enqueue (idempotent), cancel, retry, and the lease bookkeeping
workers use (claim / renew / finish / resume)."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping

from blockyard.errors import BlockyardError
from blockyard.orchestration._util import (
    log,
    notify_runs_queued,
    parse_datetime,
    utcnow,
)

UNFINISHED = ("initial", "queued", "running")


class RunNotFound(BlockyardError, LookupError):
    pass


class RunStateError(BlockyardError, ValueError):
    """The run is not in a state that allows what was asked."""


def _tables():
    from blockyard.db.schema import block_runs, pipeline_runs

    return pipeline_runs, block_runs


def get_run(db: Any, run_id: int, conn=None) -> dict | None:
    import sqlalchemy as sa

    pr, _ = _tables()
    query = sa.select(pr).where(pr.c.id == int(run_id))
    if conn is not None:
        row = conn.execute(query).first()
    else:
        with db.engine.connect() as c:
            row = c.execute(query).first()
    return dict(row._mapping) if row is not None else None


def run_values(
    *,
    project: str,
    pipeline_uuid: str,
    variables: Mapping[str, Any] | None,
    trigger_id: int | None,
    execution_date: datetime | None,
    idempotency_key: str | None,
    backfill_id: int | None,
    settings: Mapping[str, Any] | None,
    sla: int | None,
    retry_of: int | None = None,
    now: datetime | None = None,
) -> dict:
    """Column values of a new queued run."""
    created = utcnow()
    execution_date = parse_datetime(execution_date, what="execution_date") if execution_date is not None else (now or created)
    return {
        "project": project,
        "pipeline_uuid": pipeline_uuid,
        "status": "queued",
        "variables": dict(variables or {}),
        "execution_date": execution_date,
        "created_at": created,
        "trigger_id": trigger_id,
        "backfill_id": backfill_id,
        "block_count": 0,
        "idempotency_key": idempotency_key,
        "resume_count": 0,
        "settings": dict(settings) if settings else None,
        "sla_deadline": execution_date + timedelta(seconds=int(sla)) if sla else None,
        "retry_of": retry_of,
    }


def enqueue_run(
    db: Any,
    *,
    project: str,
    pipeline_uuid: str,
    variables: Mapping[str, Any] | None = None,
    trigger_id: int | None = None,
    execution_date: datetime | str | None = None,
    idempotency_key: str | None = None,
    backfill_id: int | None = None,
    settings: Mapping[str, Any] | None = None,
    sla: int | None = None,
) -> dict:
    """Queue a run and return its row (status 'queued'). A worker runs it.

    With `trigger_id`, the trigger's variables (under `variables`), settings (timeout,
    allow_blocks_to_fail, ...) and sla apply unless given. A repeated
    `idempotency_key` returns the run created the first time, whatever else differs.
    """
    import sqlalchemy as sa

    pr, _ = _tables()
    if idempotency_key is not None:
        idempotency_key = str(idempotency_key)
        existing = _by_key(db, idempotency_key)
        if existing is not None:
            return existing
    if trigger_id is not None:
        from blockyard.orchestration.triggers import get_trigger_row

        trig = get_trigger_row(db, trigger_id)
        if trig is not None:
            merged = dict(trig.get("variables") or {})
            merged.update(variables or {})
            variables = merged
            if settings is None:
                settings = trig.get("settings") or None
            if sla is None:
                sla = trig.get("sla")
    values = run_values(
        project=project,
        pipeline_uuid=pipeline_uuid,
        variables=variables,
        trigger_id=trigger_id,
        execution_date=execution_date,
        idempotency_key=idempotency_key,
        backfill_id=backfill_id,
        settings=settings,
        sla=sla,
    )
    try:
        with db.engine.begin() as conn:
            run_id = conn.execute(sa.insert(pr).values(values)).inserted_primary_key[0]
            row = get_run(db, run_id, conn)
    except sa.exc.IntegrityError:
        if idempotency_key is None:
            raise
        existing = _by_key(db, idempotency_key)
        if existing is None:  # pragma: no cover - the conflicting row vanished
            raise
        return existing
    notify_runs_queued()
    return row


def _by_key(db: Any, key: str) -> dict | None:
    import sqlalchemy as sa

    pr, _ = _tables()
    with db.engine.connect() as conn:
        row = conn.execute(sa.select(pr).where(pr.c.idempotency_key == key)).first()
    return dict(row._mapping) if row is not None else None


def request_cancel(db: Any, run_id: int, *, reason: str | None = None) -> dict:
    """Cancel a run: a queued (or initial) run is cancelled at once; for a running run the
    request is recorded and the worker holding it cancels it (blocks already running
    finish their current call; nothing new starts). Finished runs are left alone."""
    import sqlalchemy as sa

    pr, br = _tables()
    now = utcnow()
    with db.engine.begin() as conn:
        done = conn.execute(
            sa.update(pr)
            .where(pr.c.id == int(run_id), pr.c.status.in_(("initial", "queued")))
            .values(
                status="cancelled",
                completed_at=now,
                cancel_requested_at=now,
                error=reason or "cancelled before it started",
                lease_owner=None,
                lease_expires_at=None,
            )
        ).rowcount
        if done:
            conn.execute(
                sa.update(br)
                .where(br.c.pipeline_run_id == int(run_id), br.c.status.in_(UNFINISHED))
                .values(status="cancelled")
            )
        else:
            conn.execute(
                sa.update(pr)
                .where(pr.c.id == int(run_id), pr.c.status == "running", pr.c.cancel_requested_at.is_(None))
                .values(cancel_requested_at=now)
            )
        row = get_run(db, run_id, conn)
    if row is None:
        raise RunNotFound(f"no pipeline run with id {run_id}")
    if done:
        _after_external_finish(db, row)
    return row


def retry_incomplete(db: Any, run_id: int, *, idempotency_key: str | None = None) -> dict:
    """Queue a new run of a failed or cancelled run's pipeline with the same variables,
    execution date, trigger and backfill. Blocks that completed are not run again: the
    engine finds them among the retried run's block runs (same cache key: code,
    variables, inputs) and reuses their stored outputs; failed, cancelled and never-run
    blocks run. The new run's `retry_of` is
    `run_id`."""
    import sqlalchemy as sa

    pr, _ = _tables()
    row = get_run(db, run_id)
    if row is None:
        raise RunNotFound(f"no pipeline run with id {run_id}")
    if row["status"] in UNFINISHED:
        raise RunStateError(
            f"run {run_id} is still {row['status']}; cancel it or wait for it to finish before retrying",
        )
    if row["status"] in ("completed", "condition_failed"):
        raise RunStateError(f"run {run_id} completed; there is nothing left to retry")
    if idempotency_key is not None:
        existing = _by_key(db, str(idempotency_key))
        if existing is not None:
            return existing
    values = run_values(
        project=row["project"],
        pipeline_uuid=row["pipeline_uuid"],
        variables=row["variables"],
        trigger_id=row["trigger_id"],
        execution_date=row["execution_date"],
        idempotency_key=idempotency_key,
        backfill_id=row["backfill_id"],
        settings=row.get("settings"),
        sla=None,
        retry_of=int(run_id),
    )
    with db.engine.begin() as conn:
        new_id = conn.execute(sa.insert(pr).values(values)).inserted_primary_key[0]
        new = get_run(db, new_id, conn)
    notify_runs_queued()
    return new


def list_runs(db: Any, ids: Iterable[int]) -> list[dict]:
    import sqlalchemy as sa

    pr, _ = _tables()
    ids = [int(i) for i in ids]
    if not ids:
        return []
    with db.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(pr).where(pr.c.id.in_(ids)).order_by(pr.c.id))]


# --------------------------------------------------------- worker bookkeeping
def finish_leased(
    db: Any,
    run_id: int,
    owner: str,
    status: str,
    error: Any = None,
    error_details: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> bool:
    """Finish a run only if `owner` still holds its lease (and release the lease).
    False if the lease was lost (another worker took the run over)."""
    import sqlalchemy as sa

    from blockyard.db.common import finish_values

    pr, br = _tables()
    values: dict[str, Any] = {
        **finish_values(status, error, error_details),
        "lease_owner": None,
        "lease_expires_at": None,
    }
    if metrics is not None:
        values["metrics"] = dict(metrics)
    with db.engine.begin() as conn:
        n = conn.execute(
            sa.update(pr).where(pr.c.id == int(run_id), pr.c.lease_owner == owner).values(values)
        ).rowcount
        if n and status in ("failed", "cancelled"):
            # Blocks the runner never reached (e.g. it could not start) must not stay open.
            conn.execute(
                sa.update(br)
                .where(br.c.pipeline_run_id == int(run_id), br.c.status.in_(("initial", "queued")))
                .values(status="cancelled" if status == "cancelled" else "failed")
            )
    return bool(n)


def requeue_for_resume(conn: Any, row: dict, reason: str) -> bool:
    """Put a run whose worker was lost back in the queue (compare-and-set on its lease).

    Completed block runs are kept (the resumed run reuses them); other
    block runs go back to 'initial'; dynamic children are removed (the runner creates
    them again when their parent is expanded)."""
    import sqlalchemy as sa

    pr, br = _tables()
    where = [
        pr.c.id == row["id"],
        pr.c.status == "running",
        pr.c.lease_owner == row["lease_owner"],
    ]
    where.append(
        pr.c.lease_expires_at.is_(None) if row["lease_expires_at"] is None else pr.c.lease_expires_at == row["lease_expires_at"]
    )
    n = conn.execute(
        sa.update(pr)
        .where(*where)
        .values(
            status="queued",
            lease_owner=None,
            lease_expires_at=None,
            pid=None,
            hostname=None,
            resume_count=pr.c.resume_count + 1,
            error=reason,
        )
    ).rowcount
    if not n:
        return False
    conn.execute(
        sa.delete(br).where(
            br.c.pipeline_run_id == row["id"],
            br.c.base_block_uuid.is_not(None),
            br.c.base_block_uuid != br.c.block_uuid,
        )
    )
    conn.execute(
        sa.update(br)
        .where(br.c.pipeline_run_id == row["id"], br.c.status != "completed")
        .values(status="initial", error=None, traceback=None, completed_at=None)
    )
    return True


def fail_lost(conn: Any, row: dict, reason: str) -> bool:
    """Fail a run whose worker was lost too often (compare-and-set on its lease)."""
    import sqlalchemy as sa

    pr, br = _tables()
    now = utcnow()
    where = [pr.c.id == row["id"], pr.c.status == "running", pr.c.lease_owner == row["lease_owner"]]
    where.append(
        pr.c.lease_expires_at.is_(None) if row["lease_expires_at"] is None else pr.c.lease_expires_at == row["lease_expires_at"]
    )
    n = conn.execute(
        sa.update(pr)
        .where(*where)
        .values(status="failed", error=reason, completed_at=now, lease_owner=None, lease_expires_at=None)
    ).rowcount
    if n:
        conn.execute(
            sa.update(br)
            .where(br.c.pipeline_run_id == row["id"], br.c.status.in_(UNFINISHED))
            .values(status="failed", error=reason, completed_at=now)
        )
    return bool(n)


def fail_unleased(conn: Any, run_id: int, reason: str) -> bool:
    """Fail a run that no worker leases (started by `blockyard run`) whose process is gone."""
    import sqlalchemy as sa

    pr, br = _tables()
    now = utcnow()
    n = conn.execute(
        sa.update(pr)
        .where(pr.c.id == int(run_id), pr.c.status == "running", pr.c.lease_owner.is_(None))
        .values(status="failed", error=reason, completed_at=now)
    ).rowcount
    if n:
        conn.execute(
            sa.update(br)
            .where(br.c.pipeline_run_id == int(run_id), br.c.status.in_(UNFINISHED))
            .values(status="failed", error=reason, completed_at=now)
        )
    return bool(n)


def _after_external_finish(db: Any, row: dict) -> None:
    """A run finished outside a worker (cancelled while queued): keep its backfill's
    status current."""
    if row.get("backfill_id"):
        try:
            from blockyard.orchestration import backfills

            backfills.refresh(db, row["backfill_id"])
        except Exception:  # pragma: no cover - bookkeeping only
            log.exception("could not refresh backfill %s", row.get("backfill_id"))


__all__ = [
    "enqueue_run",
    "request_cancel",
    "retry_incomplete",
    "get_run",
    "RunNotFound",
    "RunStateError",
]
