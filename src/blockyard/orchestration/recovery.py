"""Crash recovery for workers: runs whose worker (or `blockyard run` process) is gone.

A run whose lease expired (any host), or whose worker process is gone (same host: its
pid no longer exists), is put back in the queue (`resume_count` + 1; the resumed run
reuses the blocks it completed itself) or failed with the reason once it was resumed
`max_resumes` times. Runs without a lease (`blockyard run`) are failed when their
process is gone or stopped heartbeating. Also: the late-SLA report of a finished run.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from blockyard.orchestration._util import call_notify, log, notify_runs_queued, write_txn


def recover(worker: Any, now: datetime | None = None) -> dict:
    """Requeue (or fail, after max_resumes) runs whose worker is gone: lease expired,
    or the worker process on this host no longer exists. Returns {'requeued', 'failed'}."""
    import sqlalchemy as sa

    from blockyard.db.common import pid_alive
    from blockyard.db.schema import pipeline_runs as pr
    from blockyard.orchestration.runs import fail_lost, get_run, requeue_for_resume

    now = now or worker.clock()
    out: dict[str, list[int]] = {"requeued": [], "failed": []}
    projects = worker._projects()
    if not projects:
        return out
    with worker.db.engine.connect() as conn:
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
                    sa.or_(pr.c.lease_expires_at < now, pr.c.hostname == worker.hostname),
                )
            )
        ]
    mine = set(worker.active_run_ids)
    for row in candidates:
        if row["lease_owner"] == worker.worker_id and row["id"] in mine:
            continue
        expired = row["lease_expires_at"] is not None and row["lease_expires_at"] < now
        gone = (
            row["hostname"] == worker.hostname
            and row["pid"] is not None
            and int(row["pid"]) != worker.pid
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
        with write_txn(worker.db) as conn:
            if attempt <= worker.max_resumes:
                if requeue_for_resume(conn, row, f"resumed (resume {attempt} of at most {worker.max_resumes}): {why}"):
                    out["requeued"].append(int(row["id"]))
            else:
                reason = (
                    f"the run was lost {attempt} times (its worker crashed or stopped heartbeating); "
                    f"giving up after {worker.max_resumes} resumes. Last time: {why}"
                )
                if fail_lost(conn, row, reason):
                    out["failed"].append(int(row["id"]))
    out["failed"].extend(reap_unleased(worker, projects, now))
    for run_id in out["requeued"]:
        log.warning("run %s requeued for resumption: its worker was lost", run_id)
    if out["requeued"]:
        notify_runs_queued()
    for run_id in out["failed"]:
        row = get_run(worker.db, run_id)
        log.error("run %s failed: %s", run_id, row and row.get("error"))
        if row and row.get("backfill_id"):
            from blockyard.orchestration import backfills

            backfills.refresh(worker.db, row["backfill_id"])
        call_notify("notify_run_finished", worker._workspace(), worker.db, row)
    return out

def reap_unleased(worker: Any, projects: list[str], now: datetime) -> list[int]:
    """Fail runs no worker leases (`blockyard run`) whose process is gone from this
    host, or whose host stopped heartbeating them for longer than `run_lease`."""
    import sqlalchemy as sa

    from blockyard.db.common import pid_alive
    from blockyard.db.schema import pipeline_runs as pr
    from blockyard.orchestration.runs import fail_unleased

    stale_before = now - worker.run_lease
    with worker.db.engine.connect() as conn:
        rows = conn.execute(
            sa.select(pr.c.id, pr.c.pid, pr.c.hostname, pr.c.heartbeat_at).where(
                pr.c.status == "running",
                pr.c.lease_owner.is_(None),
                pr.c.project.in_(projects),
                sa.or_(pr.c.hostname == worker.hostname, pr.c.heartbeat_at < stale_before),
            )
        ).all()
    failed: list[int] = []
    for r in rows:
        if r.hostname == worker.hostname:
            if r.pid is None or pid_alive(int(r.pid)):
                continue
            why = f"its process (pid {r.pid} on {r.hostname}) is gone; the run was stopped by a crash or kill"
        elif r.heartbeat_at is not None and r.heartbeat_at < stale_before:
            why = (
                f"its process (pid {r.pid} on {r.hostname}) stopped heartbeating: no heartbeat since "
                f"{r.heartbeat_at.isoformat()} (lease timeout {worker.run_lease.total_seconds():g} s)"
            )
        else:
            continue
        with write_txn(worker.db) as conn:
            if fail_unleased(conn, int(r.id), why):
                failed.append(int(r.id))
                log.error("run %s failed: %s", r.id, why)
    return failed


def check_late_sla(worker: Any, row: dict) -> None:
    """A run that finished after its SLA deadline, not yet reported: report it."""
    from blockyard.db.run_queries import mark_sla_reported

    deadline = row.get("sla_deadline")
    if deadline is None or row.get("sla_notified_at") is not None:
        return
    finished = row.get("completed_at")
    if finished is None or finished <= deadline:
        return
    with worker.db.engine.begin() as conn:
        claimed = mark_sla_reported(conn, row["id"], worker.clock())
    if claimed:
        call_notify("notify_sla_passed", worker._workspace(), worker.db, row)
