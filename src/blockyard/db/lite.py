"""`LiteDatabase`: the run-history interface of `Database` on a SQLite file, with the
stdlib `sqlite3` module only.

`import sqlalchemy` alone costs 0.2-0.35 s with a cold page cache, more than the
rest of `blockyard run` of a small pipeline. The engine's run path (migrate check,
orphan recovery, pipeline and block runs, the recorder) therefore goes through
plain SQL here. The stored values are exactly what SQLAlchemy writes on SQLite
(datetimes as naive-UTC 'YYYY-MM-DD HH:MM:SS.ffffff' text, JSON through the same
serializer with None as NULL, booleans as 0/1), so `Database` and `LiteDatabase`
read each other's rows.

SQLAlchemy and Alembic stay the source of truth for the schema: when the database
is not at `HEAD_REVISION`, `migrate()` hands over to `Database.migrate()`. Every
other attribute (`engine`, `url`, ...) is delegated to a full `Database` on the
same file, created on first use. Database errors are raised as the SQLAlchemy
exceptions `Database` raises (`sqlalchemy.exc.IntegrityError`, ...); that is the
only other moment SQLAlchemy gets imported.
"""
from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import weakref
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence
from urllib.parse import quote, unquote

from blockyard.db.columns import (
    BLOCK_RUN_BOOLEANS,
    BLOCK_RUN_COLUMN_NAMES,
    BLOCK_RUN_DATETIMES,
    BLOCK_RUN_DEFAULTS,
    BLOCK_RUN_JSON,
    HEAD_REVISION,
    PIPELINE_RUN_BOOLEANS,
    PIPELINE_RUN_COLUMN_NAMES,
    PIPELINE_RUN_DATETIMES,
    PIPELINE_RUN_DEFAULTS,
    PIPELINE_RUN_JSON,
    UNFINISHED_STATUSES,
    to_utc,
    utcnow,
)
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

_DRIVERS = ("sqlite", "sqlite+pysqlite")


def sqlite_file(url: str | os.PathLike) -> tuple[str, str] | None:
    """`(drivername, database)` of a URL that names a SQLite file, parsed the way
    `Database` (SQLAlchemy's make_url) does; None for anything LiteDatabase does not
    handle: other databases, in-memory SQLite, URI filenames, query arguments."""
    text = os.fspath(url)
    if "://" not in text:
        text = f"sqlite:///{Path(text).expanduser()}"
    driver, sep, rest = text.partition(":///")
    if not sep or driver not in _DRIVERS or "?" in rest:
        return None
    database = unquote(rest)
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return driver, database


# ------------------------------------------------------------------ values
def _bind_datetime(value: Any) -> str | None:
    # As schema.UTCDateTime and then SQLAlchemy's SQLite DATETIME do it.
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    value = to_utc(value)
    return "%04d-%02d-%02d %02d:%02d:%02d.%06d" % (
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
    )


def _bind_json(value: Any) -> str | None:
    return None if value is None else _json_dumps(value)


_STRICT_BOOLS = frozenset([None, True, False])


def _bind_bool(value: Any) -> int | None:
    # SQLAlchemy's Boolean refuses anything but None/True/False (1 and 0 compare equal).
    if value not in _STRICT_BOOLS:
        if not isinstance(value, int):
            raise TypeError(f"Not a boolean value: {value!r}")
        raise ValueError(f"Value {value!r} is not None, True, or False")
    return None if value is None else int(value)


def _read_datetime(value: Any) -> datetime:
    return to_utc(datetime.fromisoformat(value))


def _read_bool(value: Any) -> bool:
    return True if value else False


class _Table:
    """How one table's values are written and read back."""

    def __init__(
        self,
        name: str,
        columns: Sequence[str],
        datetimes: Iterable[str],
        jsons: Iterable[str],
        booleans: Iterable[str],
        defaults: Mapping[str, Any],
    ) -> None:
        self.name = name
        self.columns = tuple(columns)
        self.defaults = dict(defaults)
        self.binders: dict[str, Callable[[Any], Any]] = {}
        readers: dict[str, Callable[[Any], Any]] = {}
        for c in datetimes:
            self.binders[c], readers[c] = _bind_datetime, _read_datetime
        for c in jsons:
            self.binders[c], readers[c] = _bind_json, json.loads
        for c in booleans:
            self.binders[c], readers[c] = _bind_bool, _read_bool
        self._readers = [(c, readers[c]) for c in self.columns if c in readers]
        self.select = f"SELECT {', '.join(f'{name}.{c}' for c in self.columns)} FROM {name}"
        self._sql: dict[Any, str] = {}

    def ordered(self, names: Iterable[str]) -> tuple[str, ...]:
        names = set(names)
        return tuple(c for c in self.columns if c in names)

    def insert_sql(self, cols: tuple[str, ...]) -> str:
        sql = self._sql.get(("insert", cols))
        if sql is None:
            sql = f"INSERT INTO {self.name} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
            self._sql[("insert", cols)] = sql
        return sql

    def update_sql(self, cols: tuple[str, ...], where: str) -> str:
        sql = self._sql.get(("update", cols, where))
        if sql is None:
            sets = ", ".join(f"{c} = ?" for c in cols)
            sql = f"UPDATE {self.name} SET {sets} WHERE {where}"
            self._sql[("update", cols, where)] = sql
        return sql

    def bind(self, cols: tuple[str, ...], rows: Sequence[Mapping[str, Any]], sql: str, extra=()) -> list[tuple]:
        """Positional parameters for `cols` of each row, then the `extra` keys' values."""
        binders = [self.binders.get(c) for c in cols]
        try:
            return [
                tuple(v if f is None else f(v) for f, v in zip(binders, (row[c] for c in cols)))
                + tuple(row[k] for k in extra)
                for row in rows
            ]
        except Exception as exc:  # a value SQLAlchemy could not convert either
            raise _sqlalchemy_error(exc, sql, rows, len(rows) > 1) from exc

    def read(self, row: Sequence[Any] | None) -> dict | None:
        if row is None:
            return None
        out = dict(zip(self.columns, row))
        for c, reader in self._readers:
            value = out[c]
            if value is not None:
                out[c] = reader(value)
        return out


_PR = _Table(
    "pipeline_runs",
    PIPELINE_RUN_COLUMN_NAMES,
    PIPELINE_RUN_DATETIMES,
    PIPELINE_RUN_JSON,
    PIPELINE_RUN_BOOLEANS,
    PIPELINE_RUN_DEFAULTS,
)
_BR = _Table(
    "block_runs",
    BLOCK_RUN_COLUMN_NAMES,
    BLOCK_RUN_DATETIMES,
    BLOCK_RUN_JSON,
    BLOCK_RUN_BOOLEANS,
    BLOCK_RUN_DEFAULTS,
)


# ---------------------------------------------------------------- execution
def _sqlalchemy_error(exc: BaseException, statement: str, params: Any, many: bool = False) -> BaseException:
    """The exception `Database` raises for the same failure: IntegrityError,
    OperationalError, ... for a sqlite3 error, StatementError for a value that could not
    be converted. Callers (and RecorderError.original) see one set of exception types
    whichever implementation they use; SQLAlchemy is imported on this error path only."""
    from sqlalchemy.exc import DBAPIError

    return DBAPIError.instance(statement, params, exc, sqlite3.Error, ismulti=many)


def _execute(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
    try:
        return conn.execute(sql, params)
    except sqlite3.Error as exc:
        raise _sqlalchemy_error(exc, sql, params) from exc


def _executemany(conn: sqlite3.Connection, sql: str, params: Sequence[Sequence[Any]]) -> sqlite3.Cursor:
    try:
        return conn.executemany(sql, params)
    except sqlite3.Error as exc:
        raise _sqlalchemy_error(exc, sql, params, True) from exc


def _insert(conn: sqlite3.Connection, table: _Table, rows: Sequence[Mapping[str, Any]]) -> sqlite3.Cursor:
    """Insert rows that share one column set (plus the columns' client-side defaults)."""
    defaults = table.defaults
    if any(k not in rows[0] for k in defaults):
        rows = [{**defaults, **row} for row in rows]
    cols = table.ordered(rows[0])
    sql = table.insert_sql(cols)
    params = table.bind(cols, rows, sql)
    if len(params) == 1:
        return _execute(conn, sql, params[0])
    return _executemany(conn, sql, params)


def _placeholders(values: Sequence[Any]) -> str:
    return ", ".join("?" * len(values))


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    # IMMEDIATE takes the write lock up front (waiting through busy_timeout) instead
    # of failing to upgrade a read lock when another process wrote in between.
    _execute(conn, "BEGIN IMMEDIATE")
    try:
        yield conn
        _execute(conn, "COMMIT")
    except BaseException:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        raise


def _run_filters(project, pipeline_uuid, status) -> tuple[str, list]:
    where: list[str] = []
    params: list[Any] = []
    if project is not None:
        where.append("project = ?")
        params.append(project)
    if pipeline_uuid is not None:
        where.append("pipeline_uuid = ?")
        params.append(pipeline_uuid)
    if status is not None:
        if isinstance(status, str):
            where.append("status = ?")
            params.append(status)
        else:
            wanted = list(status)
            where.append(f"status IN ({_placeholders(wanted)})" if wanted else "1 = 0")
            params.extend(wanted)
    return (" WHERE " + " AND ".join(where) if where else ""), params


class _Holder:
    """One thread's connection (a plain object so that a WeakSet can track it:
    sqlite3 connections take no weak references)."""

    __slots__ = ("conn", "__weakref__")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn


# Connections a forked child inherited: never used and never closed there (closing
# them could disturb the parent's locks), only kept from being garbage collected.
_inherited: list[sqlite3.Connection] = []


class LiteDatabase:
    """Run history on a SQLite file through stdlib sqlite3 (see the module docstring).
    Thread-safe: one connection per thread."""

    dialect = "sqlite"

    def __init__(self, url: str | os.PathLike) -> None:
        parsed = sqlite_file(url)
        if parsed is None:
            raise ValueError(
                f"LiteDatabase needs a SQLite file, not {os.fspath(url)!r}; "
                "use blockyard.db.open_database() or Database for other URLs"
            )
        self._source = url
        self._driver, self._database = parsed
        # As Database: create the folder; connect to the absolute path like
        # SQLAlchemy's pysqlite dialect does.
        Path(self._database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self.path = os.path.abspath(self._database)
        self._hostname = socket.gethostname()
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._local = threading.local()
        self._holders: "weakref.WeakSet[_Holder]" = weakref.WeakSet()
        self._full = None  # the SQLAlchemy Database, created when something needs it

    # -------------------------------------------------------------- basics
    @property
    def safe_url(self) -> str:
        """The URL as `Database.safe_url` renders it (a SQLite URL has no password)."""
        return f"{self._driver}:///" + quote(self._database, safe=" +/")

    def __repr__(self) -> str:
        return f"LiteDatabase({self.safe_url!r})"

    def __getattr__(self, name: str) -> Any:
        # Only called for names LiteDatabase does not define itself.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._sqlalchemy_database(), name)

    def _sqlalchemy_database(self):
        full = self._full
        if full is None:
            with self._lock:
                full = self._full
                if full is None:
                    from blockyard.db.database import Database

                    full = self._full = Database(self._source)
        return full

    def _connect(self) -> sqlite3.Connection:
        # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            set_sqlite_pragmas(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise _sqlalchemy_error(exc, "PRAGMA", ()) from exc
        return conn

    def _conn(self) -> sqlite3.Connection:
        if self._pid != os.getpid():
            self._after_fork()
        holder = getattr(self._local, "holder", None)
        if holder is None:
            holder = _Holder(self._connect())
            self._local.holder = holder
            with self._lock:
                self._holders.add(holder)
        return holder.conn

    def _after_fork(self) -> None:
        # A forked child must not reuse the parent's connections (nor a lock another
        # parent thread may have held at the fork).
        self._lock = threading.Lock()
        _inherited.extend(h.conn for h in list(self._holders))
        self._holders = weakref.WeakSet()
        self._local = threading.local()
        self._pid = os.getpid()

    def _release_thread_connection(self) -> None:
        """Close this thread's connection (the recorder's thread, as it ends)."""
        holder = getattr(self._local, "holder", None)
        if holder is None or self._pid != os.getpid():
            return
        del self._local.holder
        with self._lock:
            self._holders.discard(holder)
        holder.conn.close()

    def migrate(self) -> bool:
        """Upgrade the schema to the newest revision. Returns False if it already was;
        that check reads `alembic_version` with sqlite3, and only an upgrade imports
        SQLAlchemy and Alembic (through `Database.migrate`)."""
        if self._current_revision() == HEAD_REVISION:
            return False
        return self._sqlalchemy_database().migrate()

    def _current_revision(self) -> str | None:
        conn = self._conn()
        exists = _execute(
            conn, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
        ).fetchone()
        if exists is None:
            return None
        rows = [r[0] for r in _execute(conn, "SELECT version_num FROM alembic_version")]
        if not rows:
            return None
        if len(rows) > 1:
            return ",".join(sorted(rows))
        return rows[0]

    def recorder(self, interval: float = 0.02):
        """A write-behind, batched recorder for block-run rows (see `Recorder`)."""
        from blockyard.db.recorder import Recorder

        return Recorder(self, interval=interval)

    def close(self) -> None:
        """Close every thread's connection (a later call connects again, as after
        `Database.close()`) and the SQLAlchemy engine if one was created."""
        if self._pid != os.getpid():
            self._after_fork()  # the parent's connections are not ours to close
        with self._lock:
            holders = list(self._holders)
            self._holders = weakref.WeakSet()
            self._local = threading.local()
        for holder in holders:
            try:
                holder.conn.close()
            except sqlite3.Error:  # pragma: no cover
                pass
        if self._full is not None:
            self._full.close()

    def __enter__(self) -> "LiteDatabase":
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
        with _transaction(self._conn()) as conn:
            run_id = _insert(conn, _PR, [values]).lastrowid
            if uuids:
                _insert(conn, _BR, _initial_block_rows(run_id, uuids))
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
        with _transaction(self._conn()) as conn:
            have = {
                r[0]
                for r in _execute(
                    conn, "SELECT block_uuid FROM block_runs WHERE pipeline_run_id = ?", (run_id,)
                )
            }
            self._update_run(conn, run_id, start_values(len(uuids), pid, hostname))
            missing = [u for u in uuids if u not in have]
            if missing:
                _insert(conn, _BR, _initial_block_rows(run_id, missing))

    @staticmethod
    def _update_run(conn: sqlite3.Connection, run_id: int, values: Mapping[str, Any]) -> None:
        cols = tuple(values)
        sql = _PR.update_sql(cols, "id = ?")
        _execute(conn, sql, _PR.bind(cols, [{**values, "_id": run_id}], sql, extra=("_id",))[0])

    def update_pipeline_run(self, run_id: int, **fields: Any) -> None:
        """Set columns of a pipeline run (e.g. status='running', started_at=..., metrics=...)."""
        check_pipeline_run_fields(fields)
        if not fields:
            return
        with _transaction(self._conn()) as conn:
            self._update_run(conn, run_id, fields)

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
        with _transaction(self._conn()) as conn:
            self._update_run(conn, run_id, values)

    def get_pipeline_run(self, run_id: int) -> dict | None:
        row = _execute(self._conn(), f"{_PR.select} WHERE id = ?", (run_id,)).fetchone()
        return _PR.read(row)

    def list_pipeline_runs(
        self,
        project: str | None = None,
        pipeline_uuid: str | None = None,
        status: str | Iterable[str] | None = None,
        limit: int | None = 50,
        offset: int = 0,
    ) -> list[dict]:
        """Pipeline runs, newest first. `status` may be one status or several."""
        where, params = _run_filters(project, pipeline_uuid, status)
        sql = f"{_PR.select}{where} ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?"
        params += [-1 if limit is None else limit, offset]
        return [_PR.read(r) for r in _execute(self._conn(), sql, params).fetchall()]

    def count_pipeline_runs(
        self,
        project: str | None = None,
        pipeline_uuid: str | None = None,
        status: str | Iterable[str] | None = None,
    ) -> int:
        where, params = _run_filters(project, pipeline_uuid, status)
        row = _execute(self._conn(), f"SELECT count(*) FROM pipeline_runs{where}", params).fetchone()
        return int(row[0])

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
        where = "created_at < ?"
        params: list[Any] = [_bind_datetime(to_utc(before))]
        if not include_unfinished:
            where += f" AND status NOT IN ({_placeholders(UNFINISHED_STATUSES)})"
            params.extend(UNFINISHED_STATUSES)
        with _transaction(self._conn()) as conn:
            ids = [
                int(r[0])
                for r in _execute(conn, f"SELECT id FROM pipeline_runs WHERE {where} ORDER BY id", params)
            ]
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = _placeholders(chunk)
                # ON DELETE CASCADE would do it too; explicit keeps it independent of PRAGMAs.
                _execute(conn, f"DELETE FROM block_runs WHERE pipeline_run_id IN ({marks})", chunk)
                _execute(conn, f"DELETE FROM pipeline_runs WHERE id IN ({marks})", chunk)
        return ids

    # -------------------------------------------------------------- block runs
    def get_block_runs(self, run_id: int) -> list[dict]:
        """The run's block runs in creation order (the pipeline's block order, then clones)."""
        sql = f"{_BR.select} WHERE pipeline_run_id = ? ORDER BY id"
        return [_BR.read(r) for r in _execute(self._conn(), sql, (run_id,)).fetchall()]

    def get_block_run(self, run_id: int, block_uuid: str) -> dict | None:
        sql = f"{_BR.select} WHERE pipeline_run_id = ? AND block_uuid = ?"
        return _BR.read(_execute(self._conn(), sql, (run_id, block_uuid)).fetchone())

    def lookup_cache(self, cache_key: str, run_ids: list[int] | None = None) -> dict | None:
        """The latest completed block run with this cache key (its `output_ref` says where
        the outputs live), or None. With `run_ids`, only among those runs' block runs."""
        params: list[Any] = [cache_key, "completed"]
        sql = f"{_BR.select} WHERE cache_key = ? AND status = ?"
        if run_ids is not None:
            ids = [int(i) for i in run_ids]
            sql += f" AND pipeline_run_id IN ({', '.join('?' * len(ids)) or 'NULL'})"
            params.extend(ids)
        sql += " ORDER BY id DESC LIMIT 1"
        return _BR.read(_execute(self._conn(), sql, params).fetchone())

    def latest_block_run(
        self,
        project: str,
        pipeline_uuid: str,
        block_uuid: str,
        status: str | None = "completed",
    ) -> dict | None:
        """The newest run of this block in this pipeline (with `status`, if not None)."""
        sql = (
            f"{_BR.select} JOIN pipeline_runs ON pipeline_runs.id = block_runs.pipeline_run_id"
            " WHERE pipeline_runs.project = ? AND pipeline_runs.pipeline_uuid = ?"
            " AND block_runs.block_uuid = ?"
        )
        params: list[Any] = [project, pipeline_uuid, block_uuid]
        if status is not None:
            sql += " AND block_runs.status = ?"
            params.append(status)
        sql += " ORDER BY block_runs.pipeline_run_id DESC, block_runs.id DESC LIMIT 1"
        return _BR.read(_execute(self._conn(), sql, params).fetchone())

    def recover_orphans(self) -> int:
        """Fail the runs that a dead process on this host left initial/queued/running
        (see `Database.recover_orphans`). Returns how many pipeline runs were recovered."""
        unfinished = f"status IN ({_placeholders(UNFINISHED_STATUSES)})"
        candidates = _execute(
            self._conn(),
            f"SELECT id, pid FROM pipeline_runs WHERE {unfinished} AND hostname = ?"
            " AND pid IS NOT NULL AND lease_owner IS NULL",
            (*UNFINISHED_STATUSES, self._hostname),
        ).fetchall()
        dead = [(int(i), int(p)) for i, p in candidates if not pid_alive(int(p))]
        if not dead:
            return 0
        now = _bind_datetime(utcnow())
        recovered = 0
        with _transaction(self._conn()) as conn:
            for run_id, pid in dead:
                message = orphan_message(pid)
                cursor = _execute(
                    conn,
                    "UPDATE pipeline_runs SET status = ?, error = ?, completed_at = ?"
                    f" WHERE id = ? AND {unfinished} AND lease_owner IS NULL",
                    ("failed", message, now, run_id, *UNFINISHED_STATUSES),
                )
                if cursor.rowcount:
                    recovered += 1
                    _execute(
                        conn,
                        "UPDATE block_runs SET status = ?, error = ?, completed_at = ?"
                        f" WHERE pipeline_run_id = ? AND {unfinished}",
                        ("failed", message, now, run_id, *UNFINISHED_STATUSES),
                    )
        return recovered

    # ------------------------------------------------------- used by Recorder
    check_block_run_fields = staticmethod(check_block_run_fields)

    def block_run_writer(self) -> "_BlockRunWriter":
        """What a `Recorder` writes its batches of block-run changes with."""
        return _BlockRunWriter(self)


_UPDATE_KEYS = ("_run_id", "_block_uuid")


class _BlockRunWriter:
    """Writes the Recorder's grouped block-run changes with sqlite3 (see
    `blockyard.db.recorder.BlockRunWriter`), on the recorder thread's own connection."""

    def __init__(self, db: LiteDatabase) -> None:
        self._db = db

    def write(self, groups) -> None:
        with _transaction(self._db._conn()) as conn:
            for insert, rows in groups:
                if insert:
                    _insert(conn, _BR, rows)
                    continue
                cols = _BR.ordered(k for k in rows[0] if k not in _UPDATE_KEYS)
                sql = _BR.update_sql(cols, "pipeline_run_id = ? AND block_uuid = ?")
                params = _BR.bind(cols, rows, sql, extra=_UPDATE_KEYS)
                if len(params) == 1:
                    _execute(conn, sql, params[0])
                else:
                    _executemany(conn, sql, params)

    @staticmethod
    def is_row_error(exc: BaseException) -> bool:
        # The same classification as the SQLAlchemy writer, made on the sqlite3 error
        # the raised (SQLAlchemy) exception wraps: a constraint violation or a bad
        # value concerns one row; anything else would fail for every row alike.
        orig = getattr(exc, "orig", None)
        if orig is None:
            return False
        if isinstance(orig, sqlite3.Error):
            return isinstance(orig, (sqlite3.IntegrityError, sqlite3.DataError))
        return True  # a value that could not be converted (a StatementError)

    def close(self) -> None:
        self._db._release_thread_connection()
