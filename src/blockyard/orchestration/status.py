"""Liveness rows of schedulers and workers (`orchestrator_heartbeats`)."""
from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta
from typing import Any

from blockyard.orchestration._util import log, utcnow


def beat(db: Any, *, id: str, role: str, started_at: datetime, now: datetime | None = None, info: dict | None = None) -> None:
    """Insert or refresh the heartbeat row `id`."""
    import sqlalchemy as sa

    from blockyard.db.schema import orchestrator_heartbeats as hb

    now = now or utcnow()
    values = {"heartbeat_at": now, "info": info}
    with db.engine.begin() as conn:
        n = conn.execute(sa.update(hb).where(hb.c.id == id).values(values)).rowcount
        if not n:
            try:
                with conn.begin_nested():
                    conn.execute(
                        sa.insert(hb).values(
                            id=id,
                            role=role,
                            hostname=socket.gethostname(),
                            pid=os.getpid(),
                            started_at=started_at,
                            **values,
                        )
                    )
            except sa.exc.IntegrityError:  # pragma: no cover - same id twice, raced
                conn.execute(sa.update(hb).where(hb.c.id == id).values(values))


def remove(db: Any, id: str) -> None:
    import sqlalchemy as sa

    from blockyard.db.schema import orchestrator_heartbeats as hb

    try:
        with db.engine.begin() as conn:
            conn.execute(sa.delete(hb).where(hb.c.id == id))
    except Exception:  # pragma: no cover - shutting down anyway
        log.debug("could not remove heartbeat %s", id, exc_info=True)


def prune(db: Any, older_than: timedelta = timedelta(days=1), now: datetime | None = None) -> int:
    import sqlalchemy as sa

    from blockyard.db.schema import orchestrator_heartbeats as hb

    cutoff = (now or utcnow()) - older_than
    with db.engine.begin() as conn:
        return conn.execute(sa.delete(hb).where(hb.c.heartbeat_at < cutoff)).rowcount


def heartbeats(db: Any, role: str | None = None) -> list[dict]:
    """Heartbeat rows (newest first), each with `age` in seconds."""
    import sqlalchemy as sa

    from blockyard.db.schema import orchestrator_heartbeats as hb

    query = sa.select(hb).order_by(hb.c.heartbeat_at.desc())
    if role is not None:
        query = query.where(hb.c.role == role)
    now = utcnow()
    with db.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
    for r in rows:
        r["age"] = (now - r["heartbeat_at"]).total_seconds()
    return rows


def _age(db: Any, role: str, now: datetime | None) -> float | None:
    import sqlalchemy as sa

    from blockyard.db.schema import orchestrator_heartbeats as hb

    try:
        with db.engine.connect() as conn:
            latest = conn.execute(sa.select(sa.func.max(hb.c.heartbeat_at)).where(hb.c.role == role)).scalar()
    except sa.exc.SQLAlchemyError:
        return None
    if latest is None:
        return None
    from blockyard.db.schema import to_utc

    latest = to_utc(latest) if not isinstance(latest, str) else to_utc(datetime.fromisoformat(latest))
    return max(0.0, ((now or utcnow()) - latest).total_seconds())


def scheduler_heartbeat_age(db: Any, now: datetime | None = None) -> float | None:
    """Seconds since the most recent scheduler heartbeat; None if no scheduler ever ran."""
    return _age(db, "scheduler", now)


def worker_heartbeat_age(db: Any, now: datetime | None = None) -> float | None:
    """Seconds since the most recent worker heartbeat; None if no worker ever ran."""
    return _age(db, "worker", now)
