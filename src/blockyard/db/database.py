"""`Database`: run history on SQLite (default) or PostgreSQL.

One implementation of every read: SQLAlchemy Core, the same query on either database.
The writes a run makes (create/start/update/finish a pipeline run, the recorder's
block-run batches, orphan recovery, the schema revision check) go through a small
writer: stdlib sqlite3 on a SQLite file (`sqlite_writes`, so that `blockyard run`
never imports SQLAlchemy, ~0.1-0.35 s), SQLAlchemy Core elsewhere (`core_writes`).
SQLAlchemy, the table definitions and the engine are loaded on first use; schema
changes go through Alembic (`migrate.py`).
"""
from __future__ import annotations

import os
import threading
import weakref
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import quote

from blockyard.db.columns import UNFINISHED_STATUSES, HEAD_REVISION, to_utc
from blockyard.db.common import (
    _json_dumps,
    check_block_run_fields,
    check_pipeline_run_fields,
    finish_values,
    new_run_values,
    set_sqlite_pragmas,
    start_values,
)
from blockyard.db.sqlite_writes import sqlite_file
from blockyard.hosts import hostname


def normalize_url(url: str | os.PathLike):
    """The SQLAlchemy URL: `postgresql://` / `postgres://` use psycopg 3; a bare path
    means a SQLite file."""
    from sqlalchemy.engine import make_url

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


def _core():
    """(sqlalchemy, blockyard.db.schema), imported on the first read."""
    import sqlalchemy

    from blockyard.db import schema

    return sqlalchemy, schema


def _row(row) -> dict | None:
    return dict(row._mapping) if row is not None else None


class Database:
    """Run history. Thread-safe (a SQLAlchemy connection pool for reads; on the sqlite3
    fast path, one connection per thread for writes).

    `sqlite3_writes`: None (default) uses the fast path for a SQLite file; False
    sends the writes through SQLAlchemy too; True insists on the fast path."""

    def __init__(self, url: str | os.PathLike, *, echo: bool = False, sqlite3_writes: bool | None = None) -> None:
        self._source = url
        self._echo = echo
        self._hostname = hostname()
        self._lock = threading.Lock()
        self._engine = None
        self._url = None
        parsed = sqlite_file(url)
        if parsed is None:
            if sqlite3_writes:
                raise ValueError(f"the sqlite3 fast path needs a SQLite file, not {os.fspath(url)!r}")
            self._url = normalize_url(url)
            self.dialect = self._url.get_backend_name()
            database = self._url.database if self.dialect == "sqlite" else None
            self.path = None
        else:
            self.dialect = "sqlite"
            self._driver, database = parsed
            self._database = database
            # Connect to the absolute path, as SQLAlchemy's pysqlite dialect does.
            self.path = os.path.abspath(Path(database).expanduser())
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self._in_memory = self.dialect == "sqlite" and database in (None, "", ":memory:")
        self._fast = parsed is not None and sqlite3_writes is not False
        if self._fast:
            from blockyard.db.sqlite_writes import SqliteWrites

            self._writes = SqliteWrites(self.path)
        else:
            from blockyard.db.core_writes import CoreWrites

            self._writes = CoreWrites(lambda: self.engine)

    # ------------------------------------------------------------------ basics
    @property
    def url(self):
        """The SQLAlchemy URL (imports SQLAlchemy)."""
        if self._url is None:
            self._url = normalize_url(self._source)
        return self._url

    @property
    def engine(self):
        """The SQLAlchemy engine, created on first use."""
        engine = self._engine
        if engine is None:
            with self._lock:
                if self._engine is None:
                    self._engine = self._create_engine()
                engine = self._engine
        return engine

    def _create_engine(self):
        import sqlalchemy as sa

        kwargs: dict[str, Any] = {"echo": self._echo, "json_serializer": _json_dumps}
        if self.dialect == "sqlite":
            kwargs["connect_args"] = {"check_same_thread": False}
            if self._in_memory:
                kwargs["poolclass"] = sa.pool.StaticPool
        else:
            kwargs["pool_pre_ping"] = True
            # A server process has API threads, a scheduler and worker heartbeats: the
            # default 5 (+10 overflow) made it open and close connections under load.
            kwargs["pool_size"] = int(os.environ.get("BLOCKYARD_DB_POOL_SIZE", "20"))
            kwargs["max_overflow"] = 20
        engine = sa.create_engine(self.url, **kwargs)
        if self.dialect == "sqlite":
            sa.event.listen(engine, "connect", _set_sqlite_pragmas)
        if hasattr(os, "register_at_fork") and not self._in_memory:
            # A forked child must not reuse the parent's pooled connections.
            ref = weakref.ref(engine)

            def _dispose_in_child() -> None:
                alive = ref()
                if alive is not None:
                    alive.dispose(close=False)

            os.register_at_fork(after_in_child=_dispose_in_child)
        return engine

    @property
    def sqlite3_writes(self) -> bool:
        """True if the run's writes take the sqlite3 fast path."""
        return self._fast

    @property
    def safe_url(self) -> str:
        """The URL with its password masked, for logs and messages."""
        if self._url is None and self.path is not None:  # no SQLAlchemy needed
            return f"{self._driver}:///" + quote(self._database, safe=" +/")
        return self.url.render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"Database({self.safe_url!r})"

    def migrate(self) -> bool:
        """Upgrade the schema to the newest revision. Returns False if it already was;
        on the fast path that check needs neither SQLAlchemy nor Alembic."""
        if self.sqlite3_writes and self._writes.current_revision() == HEAD_REVISION:
            return False
        from blockyard.db.migrate import migrate

        return migrate(self.engine)

    def recorder(self, interval: float = 0.02):
        """A write-behind, batched recorder for block-run rows (see `Recorder`)."""
        from blockyard.db.recorder import Recorder

        return Recorder(self, interval=interval)

    def close(self) -> None:
        """Close the connections (a later call connects again)."""
        self._writes.close()
        if self._engine is not None:
            self._engine.dispose()

    def __enter__(self) -> "Database":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ writes
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
        return self._writes.create_run(values, uuids)

    def start_pipeline_run(
        self,
        run_id: int,
        block_uuids: Iterable[str],
        pid: int | None = None,
        hostname: str | None = None,
    ) -> None:
        """Move an existing (e.g. queued) run to running and add its missing block runs."""
        uuids = list(block_uuids)
        self._writes.start_run(run_id, start_values(len(uuids), pid, hostname), uuids)

    def update_pipeline_run(self, run_id: int, **fields: Any) -> None:
        """Set columns of a pipeline run (e.g. status='running', started_at=..., metrics=...)."""
        check_pipeline_run_fields(fields)
        if fields:
            self._writes.update_run(run_id, fields)

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
        self._writes.update_run(run_id, finish_values(status, error, error_details, metrics))

    def recover_orphans(self) -> int:
        """Fail the runs that a dead process on this host left initial/queued/running.

        Only runs whose `hostname` is this machine and whose `pid` no longer exists
        are touched; their unfinished block runs are failed too. Returns how many
        pipeline runs were recovered. Runs held by an orchestration worker (a
        `lease_owner` is set) are left to the lease logic, which resumes them
        (blockyard.orchestration.worker).
        """
        return self._writes.recover_orphans(self._hostname)

    # Used by Recorder.
    check_block_run_fields = staticmethod(check_block_run_fields)

    def block_run_writer(self):
        """What a `Recorder` writes its batches of block-run changes with."""
        return self._writes.block_run_writer()

    def delete_pipeline_runs_before(
        self, before: datetime, *, include_unfinished: bool = False
    ) -> list[int]:
        """Delete runs created before `before` (with their block runs); returns their ids.
        Runs still initial/queued/running are kept unless `include_unfinished`."""
        sa, s = _core()
        pr, br = s.pipeline_runs, s.block_runs
        where = [pr.c.created_at < to_utc(before)]
        if not include_unfinished:
            where.append(pr.c.status.not_in(UNFINISHED_STATUSES))
        with self.engine.begin() as conn:
            ids = [int(i) for i in conn.execute(sa.select(pr.c.id).where(*where).order_by(pr.c.id)).scalars()]
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                # ON DELETE CASCADE would do it too; explicit keeps it independent of PRAGMAs.
                conn.execute(br.delete().where(br.c.pipeline_run_id.in_(chunk)))
                conn.execute(pr.delete().where(pr.c.id.in_(chunk)))
        return ids

    # ------------------------------------------------------------------- reads
    def _all(self, query) -> list[dict]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def _first(self, query) -> dict | None:
        with self.engine.connect() as conn:
            return _row(conn.execute(query).first())

    def get_pipeline_run(self, run_id: int) -> dict | None:
        sa, s = _core()
        return self._first(sa.select(s.pipeline_runs).where(s.pipeline_runs.c.id == run_id))

    @staticmethod
    def _run_filters(project, pipeline_uuid, status) -> list:
        _, s = _core()
        c = s.pipeline_runs.c
        where = []
        if project is not None:
            where.append(c.project == project)
        if pipeline_uuid is not None:
            where.append(c.pipeline_uuid == pipeline_uuid)
        if status is not None:
            where.append(c.status == status if isinstance(status, str) else c.status.in_(list(status)))
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
        sa, s = _core()
        pr = s.pipeline_runs
        query = (
            sa.select(pr)
            .where(*self._run_filters(project, pipeline_uuid, status))
            .order_by(pr.c.created_at.desc(), pr.c.id.desc())
            .offset(offset)
        )
        return self._all(query if limit is None else query.limit(limit))

    def count_pipeline_runs(
        self,
        project: str | None = None,
        pipeline_uuid: str | None = None,
        status: str | Iterable[str] | None = None,
    ) -> int:
        sa, s = _core()
        query = (
            sa.select(sa.func.count())
            .select_from(s.pipeline_runs)
            .where(*self._run_filters(project, pipeline_uuid, status))
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def latest_pipeline_run(
        self, project: str, pipeline_uuid: str, status: str | None = "completed"
    ) -> dict | None:
        runs = self.list_pipeline_runs(project, pipeline_uuid, status, limit=1)
        return runs[0] if runs else None

    def get_block_runs(self, run_id: int) -> list[dict]:
        """The run's block runs in creation order (the pipeline's block order, then clones)."""
        sa, s = _core()
        br = s.block_runs
        return self._all(sa.select(br).where(br.c.pipeline_run_id == run_id).order_by(br.c.id))

    def get_block_run(self, run_id: int, block_uuid: str) -> dict | None:
        sa, s = _core()
        br = s.block_runs
        return self._first(sa.select(br).where(br.c.pipeline_run_id == run_id, br.c.block_uuid == block_uuid))

    def lookup_cache(self, cache_key: str, run_ids: list[int] | None = None) -> dict | None:
        """The latest completed block run with this cache key (its `output_ref` says where
        the outputs live), or None. With `run_ids`, only among those runs' block runs."""
        sa, s = _core()
        br = s.block_runs
        where = [br.c.cache_key == cache_key, br.c.status == "completed"]
        if run_ids is not None:
            where.append(br.c.pipeline_run_id.in_([int(i) for i in run_ids]))
        return self._first(sa.select(br).where(*where).order_by(br.c.id.desc()).limit(1))

    def latest_block_run(
        self,
        project: str,
        pipeline_uuid: str,
        block_uuid: str,
        status: str | None = "completed",
    ) -> dict | None:
        """The newest run of this block in this pipeline (with `status`, if not None)."""
        sa, s = _core()
        pr, br = s.pipeline_runs, s.block_runs
        where = [pr.c.project == project, pr.c.pipeline_uuid == pipeline_uuid, br.c.block_uuid == block_uuid]
        if status is not None:
            where.append(br.c.status == status)
        query = (
            sa.select(br)
            .join(pr, pr.c.id == br.c.pipeline_run_id)
            .where(*where)
            .order_by(br.c.pipeline_run_id.desc(), br.c.id.desc())
            .limit(1)
        )
        return self._first(query)

