"""Claiming queued runs for a worker, atomically and within concurrency limits.

PostgreSQL: `SELECT ... FOR UPDATE SKIP LOCKED`, plus a transaction-scoped advisory
lock per pipeline/trigger when a concurrency limit applies; SQLite: one
`UPDATE ... WHERE status = 'queued' ... RETURNING` inside a `BEGIN IMMEDIATE`
transaction. A claimed run is `running`, leased by the worker.
"""
from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from blockyard.orchestration._util import write_txn


def _lock_key(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big", signed=True)


def pipeline_limit(worker: Any, project: str, pipeline_uuid: str) -> int | None:
    """`concurrency_config.pipeline_run_limit` of the pipeline's metadata.yaml."""
    import yaml

    try:
        path = worker._workspace().project(project).pipelines_dir / pipeline_uuid / "metadata.yaml"
        st = path.stat()
    except Exception:
        return None
    sig = (st.st_mtime_ns, st.st_size, st.st_ino)
    cached = worker._limit_cache.get((project, pipeline_uuid))
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
    worker._limit_cache[(project, pipeline_uuid)] = (sig, limit)
    return limit


def claim(worker: Any, limit: int | None = None, now: datetime | None = None) -> list[dict]:
    """Claim up to `limit` (default: free capacity) queued runs; returns their rows
    (now `running`, leased by this worker). Does not execute them."""
    import sqlalchemy as sa

    from blockyard.db.schema import pipeline_runs as pr

    with worker._lock:
        free = worker.concurrency - len(worker._active)
    cap = free if limit is None else int(limit)
    if cap <= 0:
        return []
    projects = worker._projects()
    if not projects:
        return []
    now = now or worker.clock()
    pg = worker.db.dialect == "postgresql"
    with worker.db.engine.connect() as conn:  # cheap check before taking any lock
        if conn.execute(
            sa.select(pr.c.id).where(pr.c.status == "queued", pr.c.project.in_(projects)).limit(1)
        ).first() is None:
            return []
    with write_txn(worker.db) as conn:
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
                pipe_limits[key] = pipeline_limit(worker, *key)
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
                lease_owner=worker.worker_id,
                lease_expires_at=now + worker.lease,
                heartbeat_at=now,
                started_at=now,
                pid=worker.pid,
                hostname=worker.hostname,
            )
            .returning(*pr.c)
        ).all()
    claimed = sorted((dict(r._mapping) for r in rows), key=lambda r: r["id"])
    return claimed
