"""`Database`: run history on SQLite (default) or PostgreSQL, with SQLAlchemy Core."""
from __future__ import annotations

import os
import socket
import weakref
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Mapping

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.engine.url import URL

# The value helpers are shared with LiteDatabase (and re-exported from here, where
# other modules import them from).
from blockyard.db.common import (
    check_pipeline_run_fields,
    new_run_values,
    orphan_message,
    start_values,
    _initial_block_rows,
    _json_dumps,
    check_block_run_fields,
    finish_values,
    pid_alive,
    set_sqlite_pragmas,
)
from blockyard.db.schema import (
    UNFINISHED_STATUSES,
    block_runs,
    pipeline_runs,
    to_utc,
    utcnow,
)


def normalize_url(url: str | os.PathLike) -> URL:
    """`postgresql://` / `postgres://` use psycopg 3; a bare path means a SQLite file."""
    text = os.fspath(url)
    if "://" not in text:
        text = f"sqlite:///{Path(text).expanduser()}"
    if text.startswith("postgres://"):
        text = "postgresql://" + text[len("postgres://"):]
    parsed = make_url(text)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _set_sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    try:
        set_sqlite_pragmas(cursor)
    finally:
        cursor.close()


def _row(row) -> dict | None:
    return dict(row._mapping) if row is not None else None


class Database:
    """Run history. Thread-safe (one SQLAlchemy engine with a connection pool)."""

    def __init__(self, url: str | os.PathLike, *, echo: bool = False) -> None:
        self.url: URL = normalize_url(url)
        self.dialect = self.url.get_backend_name()
        kwargs: dict[str, Any] = {
            "echo": echo,
            "json_serializer": _json_dumps,
        }
        if self.dialect == "sqlite":
            database = self.url.database
            if database and database != ":memory:" and not database.startswith("file:"):
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False}
            if not database or database == ":memory:":
                kwargs["poolclass"] = sa.pool.StaticPool
        else:
            kwargs["pool_pre_ping"] = True
            # A server process has API threads, a scheduler and worker heartbeats: the
            # default 5 (+10 overflow) made it open and close connections under load.
            kwargs["pool_size"] = int(os.environ.get("BLOCKYARD_DB_POOL_SIZE", "20"))
            kwargs["max_overflow"] = 20
        self.engine: Engine = sa.create_engine(self.url, **kwargs)
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _set_sqlite_pragmas)
        self._hostname = socket.gethostname()
        self._in_memory = self.dialect == "sqlite" and self.url.database in (None, "", ":memory:")
        if hasattr(os, "register_at_fork") and not self._in_memory:
            # A forked child must not reuse the parent's pooled connections.
            ref = weakref.ref(self)

            def _dispose_in_child() -> None:
                database = ref()
                if database is not None:
                    database.engine.dispose(close=False)

            os.register_at_fork(after_in_child=_dispose_in_child)

    # ------------------------------------------------------------------ basics
    @property
    def safe_url(self) -> str:
        """The URL with its password masked, for logs and messages."""
        return self.url.render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"Database({self.safe_url!r})"

    def migrate(self) -> bool:
        """Upgrade the schema to the newest revision. Returns False if it already was
        (that check does not import alembic)."""
        from blockyard.db.migrate import migrate

        return migrate(self.engine)

    def recorder(self, interval: float = 0.02):
        """A write-behind, batched recorder for block-run rows (see `Recorder`)."""
        from blockyard.db.recorder import Recorder

        return Recorder(self, interval=interval)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Database":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ----------------------------------------------------------- pipeline runs
    def create_pipeline_run(
        self,
        project: str,
        pipeline_uuid: str,
        variables: Mapping[str, Any] | None = None,
        execution_date: datetime | None = None,
        block_uuids: Iterable[str] = (),
        status: str = "running",
        trigger_id: int | None = None,
        pid: int | None = None,
        hostname: str | None = None,
        backfill_id: int | None = None,
    ) -> int:
        """Insert a pipeline run and one 'initial' block run per block uuid, in one transaction."""
        uuids = list(block_uuids)
        values = new_run_values(
            project, pipeline_uuid, variables, execution_date, len(uuids), status,
            trigger_id=trigger_id, backfill_id=backfill_id, pid=pid, hostname=hostname,
        )
        with self.engine.begin() as conn:
            run_id = conn.execute(pipeline_runs.insert().values(values)).inserted_primary_key[0]
            if uuids:
                conn.execute(
                    block_runs.insert(),
                    _initial_block_rows(run_id, uuids),
                )
        return int(run_id)

    def start_pipeline_run(
        self,
        run_id: int,
        block_uuids: Iterable[str],
        pid: int | None = None,
        hostname: str | None = None,
    ) -> None:
        """Move an existing (e.g. queued) run to running and add its missing block runs."""
        uuids = list(block_uuids)
        with self.engine.begin() as conn:
            have = set(
                conn.execute(
                    sa.select(block_runs.c.block_uuid).where(block_runs.c.pipeline_run_id == run_id)
                ).scalars()
            )
            conn.execute(
                pipeline_runs.update()
                .where(pipeline_runs.c.id == run_id)
                .values(start_values(len(uuids), pid, hostname))
            )
            missing = [u for u in uuids if u not in have]
            if missing:
                conn.execute(
                    block_runs.insert(),
                    _initial_block_rows(run_id, missing),
                )

    def update_pipeline_run(self, run_id: int, **fields: Any) -> None:
        """Set columns of a pipeline run (e.g. status='running', started_at=..., metrics=...)."""
        check_pipeline_run_fields(fields)
        if not fields:
            return
        with self.engine.begin() as conn:
            conn.execute(pipeline_runs.update().where(pipeline_runs.c.id == run_id).values(fields))

    def finish_pipeline_run(
        self,
        run_id: int,
        status: str,
        error: str | BaseException | None = None,
        error_details: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
    ) -> None:
        """Mark a run finished. `error` may be an exception; a BlockyardError also fills
        `error_details` (file/line/block/hint) unless given."""
        values = finish_values(status, error, error_details, metrics)
        with self.engine.begin() as conn:
            conn.execute(pipeline_runs.update().where(pipeline_runs.c.id == run_id).values(values))

    def get_pipeline_run(self, run_id: int) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(pipeline_runs).where(pipeline_runs.c.id == run_id)).first()
        return _row(row)

    @staticmethod
    def _run_filters(project, pipeline_uuid, status) -> list:
        where = []
        if project is not None:
            where.append(pipeline_runs.c.project == project)
        if pipeline_uuid is not None:
            where.append(pipeline_runs.c.pipeline_uuid == pipeline_uuid)
        if status is not None:
            if isinstance(status, str):
                where.append(pipeline_runs.c.status == status)
            else:
                where.append(pipeline_runs.c.status.in_(list(status)))
        return where

    def list_pipeline_runs(
        self,
        project: str | None = None,
        pipeline_uuid: str | None = None,
        status: str | Iterable[str] | None = None,
        limit: int | None = 50,
        offset: int = 0,
    ) -> list[dict]:
        """Pipeline runs, newest first. `status` may be one status or several."""
        query = (
            sa.select(pipeline_runs)
            .where(*self._run_filters(project, pipeline_uuid, status))
            .order_by(pipeline_runs.c.created_at.desc(), pipeline_runs.c.id.desc())
            .offset(offset)
        )
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def count_pipeline_runs(
        self,
        project: str | None = None,
        pipeline_uuid: str | None = None,
        status: str | Iterable[str] | None = None,
    ) -> int:
        query = (
            sa.select(sa.func.count())
            .select_from(pipeline_runs)
            .where(*self._run_filters(project, pipeline_uuid, status))
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def latest_pipeline_run(
        self, project: str, pipeline_uuid: str, status: str | None = "completed"
    ) -> dict | None:
        runs = self.list_pipeline_runs(project, pipeline_uuid, status, limit=1)
        return runs[0] if runs else None

    def delete_pipeline_runs_before(
        self, before: datetime, *, include_unfinished: bool = False
    ) -> list[int]:
        """Delete runs created before `before` (with their block runs); returns their ids.
        Runs still initial/queued/running are kept unless `include_unfinished`."""
        where = [pipeline_runs.c.created_at < to_utc(before)]
        if not include_unfinished:
            where.append(pipeline_runs.c.status.not_in(UNFINISHED_STATUSES))
        with self.engine.begin() as conn:
            ids = [
                int(i)
                for i in conn.execute(
                    sa.select(pipeline_runs.c.id).where(*where).order_by(pipeline_runs.c.id)
                ).scalars()
            ]
            if ids:
                for start in range(0, len(ids), 500):
                    chunk = ids[start : start + 500]
                    # ON DELETE CASCADE would do it too; explicit keeps it independent of PRAGMAs.
                    conn.execute(block_runs.delete().where(block_runs.c.pipeline_run_id.in_(chunk)))
                    conn.execute(pipeline_runs.delete().where(pipeline_runs.c.id.in_(chunk)))
        return ids

    # -------------------------------------------------------------- block runs
    def get_block_runs(self, run_id: int) -> list[dict]:
        """The run's block runs in creation order (the pipeline's block order, then clones)."""
        query = (
            sa.select(block_runs)
            .where(block_runs.c.pipeline_run_id == run_id)
            .order_by(block_runs.c.id)
        )
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def get_block_run(self, run_id: int, block_uuid: str) -> dict | None:
        query = sa.select(block_runs).where(
            block_runs.c.pipeline_run_id == run_id, block_runs.c.block_uuid == block_uuid
        )
        with self.engine.connect() as conn:
            return _row(conn.execute(query).first())

    def lookup_cache(self, cache_key: str, run_ids: list[int] | None = None) -> dict | None:
        """The latest completed block run with this cache key (its `output_ref` says where
        the outputs live), or None. With `run_ids`, only among those runs' block runs."""
        where = [block_runs.c.cache_key == cache_key, block_runs.c.status == "completed"]
        if run_ids is not None:
            where.append(block_runs.c.pipeline_run_id.in_([int(i) for i in run_ids]))
        query = sa.select(block_runs).where(*where).order_by(block_runs.c.id.desc()).limit(1)
        with self.engine.connect() as conn:
            return _row(conn.execute(query).first())

    def latest_block_run(
        self,
        project: str,
        pipeline_uuid: str,
        block_uuid: str,
        status: str | None = "completed",
    ) -> dict | None:
        """The newest run of this block in this pipeline (with `status`, if not None)."""
        where = [
            pipeline_runs.c.project == project,
            pipeline_runs.c.pipeline_uuid == pipeline_uuid,
            block_runs.c.block_uuid == block_uuid,
        ]
        if status is not None:
            where.append(block_runs.c.status == status)
        query = (
            sa.select(block_runs)
            .join(pipeline_runs, pipeline_runs.c.id == block_runs.c.pipeline_run_id)
            .where(*where)
            .order_by(block_runs.c.pipeline_run_id.desc(), block_runs.c.id.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            return _row(conn.execute(query).first())

    def recover_orphans(self) -> int:
        """Fail the runs that a dead process on this host left initial/queued/running.

        Only runs whose `hostname` is this machine and whose `pid` no longer exists
        are touched; their unfinished block runs are failed too. Returns how many
        pipeline runs were recovered. Runs held by an orchestration worker (a
        `lease_owner` is set) are left to the lease logic, which resumes them
        (blockyard.orchestration.worker).
        """
        with self.engine.connect() as conn:
            candidates = conn.execute(
                sa.select(pipeline_runs.c.id, pipeline_runs.c.pid).where(
                    pipeline_runs.c.status.in_(UNFINISHED_STATUSES),
                    pipeline_runs.c.hostname == self._hostname,
                    pipeline_runs.c.pid.is_not(None),
                    pipeline_runs.c.lease_owner.is_(None),
                )
            ).all()
        dead = [(int(i), int(p)) for i, p in candidates if not pid_alive(int(p))]
        if not dead:
            return 0
        now = utcnow()
        recovered = 0
        with self.engine.begin() as conn:
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

    # ------------------------------------------------------- used by Recorder
    check_block_run_fields = staticmethod(check_block_run_fields)

    def block_run_writer(self) -> "_BlockRunWriter":
        """What a `Recorder` writes its batches of block-run changes with."""
        return _BlockRunWriter(self.engine)


class _BlockRunWriter:
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
