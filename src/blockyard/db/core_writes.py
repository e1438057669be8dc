"""A run's writes through SQLAlchemy Core: PostgreSQL, in-memory SQLite, and SQLite
files opened with `Database(url, sqlite3_writes=False)`.

The same interface as `sqlite_writes.SqliteWrites` (the fast path on SQLite files);
`Database` computes the values and picks one of the two.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from blockyard.db.common import _initial_block_rows, orphan_message, pid_alive
from blockyard.db.schema import UNFINISHED_STATUSES, block_runs, pipeline_runs, utcnow


class CoreWrites:
    def __init__(self, engine: Callable[[], Engine]) -> None:
        self._engine = engine  # the Database's engine, created on first use

    def create_run(self, values: Mapping[str, Any], uuids: Sequence[str]) -> int:
        with self._engine().begin() as conn:
            run_id = conn.execute(pipeline_runs.insert().values(values)).inserted_primary_key[0]
            if uuids:
                conn.execute(block_runs.insert(), _initial_block_rows(run_id, uuids))
        return int(run_id)

    def start_run(self, run_id: int, values: Mapping[str, Any], uuids: Sequence[str]) -> None:
        with self._engine().begin() as conn:
            have = set(
                conn.execute(
                    sa.select(block_runs.c.block_uuid).where(block_runs.c.pipeline_run_id == run_id)
                ).scalars()
            )
            conn.execute(pipeline_runs.update().where(pipeline_runs.c.id == run_id).values(values))
            missing = [u for u in uuids if u not in have]
            if missing:
                conn.execute(block_runs.insert(), _initial_block_rows(run_id, missing))

    def update_run(self, run_id: int, values: Mapping[str, Any]) -> None:
        with self._engine().begin() as conn:
            conn.execute(pipeline_runs.update().where(pipeline_runs.c.id == run_id).values(values))

    def recover_orphans(self, hostname: str) -> int:
        with self._engine().connect() as conn:
            candidates = conn.execute(
                sa.select(pipeline_runs.c.id, pipeline_runs.c.pid).where(
                    pipeline_runs.c.status.in_(UNFINISHED_STATUSES),
                    pipeline_runs.c.hostname == hostname,
                    pipeline_runs.c.pid.is_not(None),
                    pipeline_runs.c.lease_owner.is_(None),
                )
            ).all()
        dead = [(int(i), int(p)) for i, p in candidates if not pid_alive(int(p))]
        if not dead:
            return 0
        now = utcnow()
        recovered = 0
        with self._engine().begin() as conn:
            for run_id, pid in dead:
                message = orphan_message(pid)
                result = conn.execute(
                    pipeline_runs.update()
                    .where(
                        pipeline_runs.c.id == run_id,
                        pipeline_runs.c.status.in_(UNFINISHED_STATUSES),
                        pipeline_runs.c.lease_owner.is_(None),
                    )
                    .values(status="failed", error=message, completed_at=now)
                )
                if result.rowcount:
                    recovered += 1
                    conn.execute(
                        block_runs.update()
                        .where(
                            block_runs.c.pipeline_run_id == run_id,
                            block_runs.c.status.in_(UNFINISHED_STATUSES),
                        )
                        .values(status="failed", error=message, completed_at=now)
                    )
        return recovered

    def block_run_writer(self) -> "CoreBlockRunWriter":
        return CoreBlockRunWriter(self._engine())

    def close(self) -> None:
        pass  # the Database disposes of its engine


class CoreBlockRunWriter:
    """Writes the Recorder's grouped block-run changes through SQLAlchemy (see
    `blockyard.db.recorder.BlockRunWriter`)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._update_stmt = block_runs.update().where(
            block_runs.c.pipeline_run_id == sa.bindparam("_run_id"),
            block_runs.c.block_uuid == sa.bindparam("_block_uuid"),
        )

    def write(self, groups) -> None:
        with self._engine.begin() as conn:
            for insert, rows in groups:
                conn.execute(block_runs.insert() if insert else self._update_stmt, rows)

    @staticmethod
    def is_row_error(exc: BaseException) -> bool:
        # A duplicate insert, a run that no longer exists, a bad value: worth retrying
        # the batch's other changes one by one. Anything else (database unreachable,
        # locked, read-only) would fail for every row alike.
        if isinstance(exc, (sa.exc.IntegrityError, sa.exc.DataError)):
            return True
        # A value that could not be converted for the driver (raised before the database).
        return isinstance(exc, sa.exc.StatementError) and not isinstance(exc, sa.exc.DBAPIError)

    def close(self) -> None:
        pass
