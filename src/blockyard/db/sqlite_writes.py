"""The sqlite3 fast path: the few writes a run makes on a SQLite file, with stdlib
`sqlite3` only.

`import sqlalchemy` costs 0.1-0.35 s, about as much as the rest of `blockyard run` of
a small pipeline. `Database` on a SQLite file therefore sends the writes of a run's
start, progress and end (schema revision check, orphan recovery, pipeline-run
create/start/update/finish, the recorder's block-run batches) through this module;
every read goes through SQLAlchemy Core (`Database`), imported on first use.

Stored values are exactly what SQLAlchemy writes on SQLite (datetimes as naive-UTC
'YYYY-MM-DD HH:MM:SS.ffffff' text, JSON through the same serializer with None as
NULL, booleans as 0/1), so the reads cannot tell which path wrote a row. Errors are
raised as the SQLAlchemy exceptions the Core path raises (`IntegrityError`, ...);
that error path is the only other moment SQLAlchemy gets imported.
"""
from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from contextlib import contextmanager
from datetime import datetime, timezone
from operator import itemgetter
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence
from urllib.parse import unquote

from blockyard.db.columns import (
    BLOCK_RUN_BOOLEANS,
    BLOCK_RUN_COLUMN_NAMES,
    BLOCK_RUN_DATETIMES,
    BLOCK_RUN_DEFAULTS,
    BLOCK_RUN_JSON,
    PIPELINE_RUN_BOOLEANS,
    PIPELINE_RUN_COLUMN_NAMES,
    PIPELINE_RUN_DATETIMES,
    PIPELINE_RUN_DEFAULTS,
    PIPELINE_RUN_JSON,
    UNFINISHED_STATUSES,
    to_utc,
    utcnow,
)
from blockyard.db.common import _initial_block_rows, _json_dumps, orphan_message, pid_alive, set_sqlite_pragmas

_DRIVERS = ("sqlite", "sqlite+pysqlite")


def sqlite_file(url: str | os.PathLike) -> tuple[str, str] | None:
    """`(drivername, database)` of a URL that names a SQLite file, parsed the way
    SQLAlchemy's make_url does; None for anything the fast path does not handle:
    other databases, in-memory SQLite, URI filenames, query arguments."""
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
_UTC = timezone.utc


def bind_datetime(value: Any) -> str | None:
    # As schema.UTCDateTime and then SQLAlchemy's SQLite DATETIME do it.
    if not (type(value) is datetime and (value.tzinfo is _UTC or value.tzinfo is None)):
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        value = to_utc(value)
    # Already UTC (the engine's timestamps) or made so; %-formatting is ~1/3 cheaper than
    # isoformat(" ", "microseconds") of an aware datetime, same digits.
    return "%04d-%02d-%02d %02d:%02d:%02d.%06d" % (
        value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond,
    )


def _bind_json(value: Any) -> str | None:
    if value is None:
        return None
    if type(value) is dict and len(value) == 1:
        # Every block run's metrics: {"duration": seconds}. The encoder's text (default
        # separators, float repr) without its per-call setup, for a finite float.
        duration = value.get("duration")
        if type(duration) is float and duration - duration == 0.0:
            return f'{{"duration": {float.__repr__(duration)}}}'
    return _json_dumps(value)


_STRICT_BOOLS = frozenset([None, True, False])


def _bind_bool(value: Any) -> int | None:
    # SQLAlchemy's Boolean refuses anything but None/True/False (1 and 0 compare equal).
    if value not in _STRICT_BOOLS:
        if not isinstance(value, int):
            raise TypeError(f"Not a boolean value: {value!r}")
        raise ValueError(f"Value {value!r} is not None, True, or False")
    return None if value is None else int(value)


# (sql, getter, conversions): a statement for one column set, an itemgetter of its
# parameters from a row dict, and the (position, binder) pairs to apply to them.
_Plan = tuple[str, Callable[[Mapping[str, Any]], tuple], tuple[tuple[int, Callable[[Any], Any]], ...]]
_PLAN_CACHE_SIZE = 256  # column sets seen; a run uses a handful


def _getter(names: Sequence[str]) -> Callable[[Mapping[str, Any]], tuple]:
    if len(names) == 1:  # itemgetter of one name returns the bare value
        get = itemgetter(names[0])
        return lambda row: (get(row),)
    return itemgetter(*names)


class _Table:
    """How one table's values are bound for sqlite3: a plan per column set, built once."""

    def __init__(self, name: str, columns: Sequence[str], datetimes: Iterable[str], jsons: Iterable[str],
                 booleans: Iterable[str], defaults: Mapping[str, Any]) -> None:
        self.name = name
        self.columns = tuple(columns)
        self.defaults = dict(defaults)
        self.binders: dict[str, Callable[[Any], Any]] = {}
        for names, binder in ((datetimes, bind_datetime), (jsons, _bind_json), (booleans, _bind_bool)):
            for c in names:
                self.binders[c] = binder
        self._plans: dict[tuple, _Plan] = {}

    def ordered(self, names: Iterable[str]) -> tuple[str, ...]:
        names = set(names)
        return tuple(c for c in self.columns if c in names)

    def _plan(self, cols: tuple[str, ...], sql: str, extra: tuple[str, ...]) -> _Plan:
        convs = tuple((i, self.binders[c]) for i, c in enumerate(cols) if c in self.binders)
        return sql, _getter(cols + extra), convs

    def insert_plan(self, keys: tuple[str, ...]) -> _Plan:
        """The plan of rows with these keys (the table's columns among them, in table order)."""
        plan = self._plans.get(("insert", keys))
        if plan is None:
            cols = self.ordered(keys)
            sql = f"INSERT INTO {self.name} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
            plan = self._remember(("insert", keys), self._plan(cols, sql, ()))
        return plan

    def update_plan(self, keys: tuple[str, ...], where: str, extra: tuple[str, ...]) -> _Plan:
        """SET the table's columns among `keys`; the `extra` keys' values fill `where`."""
        plan = self._plans.get(("update", keys, where))
        if plan is None:
            cols = self.ordered(k for k in keys if k not in extra)
            sql = f"UPDATE {self.name} SET {', '.join(f'{c} = ?' for c in cols)} WHERE {where}"
            plan = self._remember(("update", keys, where), self._plan(cols, sql, extra))
        return plan

    def _remember(self, key: tuple, plan: _Plan) -> _Plan:
        if len(self._plans) >= _PLAN_CACHE_SIZE:  # odd column sets must not grow it forever
            self._plans.clear()
        self._plans[key] = plan
        return plan

    @staticmethod
    def bind(plan: _Plan, rows: Sequence[Mapping[str, Any]]) -> list[Sequence[Any]]:
        """Positional parameters of each row."""
        sql, getter, convs = plan
        try:
            if not convs:
                return [getter(row) for row in rows]
            params = []
            for row in rows:
                values = list(getter(row))
                for i, binder in convs:
                    values[i] = binder(values[i])
                params.append(values)
            return params
        except Exception as exc:  # a value SQLAlchemy could not convert either
            raise _sqlalchemy_error(exc, sql, rows, len(rows) > 1) from exc


_PR = _Table("pipeline_runs", PIPELINE_RUN_COLUMN_NAMES, PIPELINE_RUN_DATETIMES, PIPELINE_RUN_JSON,
             PIPELINE_RUN_BOOLEANS, PIPELINE_RUN_DEFAULTS)
_BR = _Table("block_runs", BLOCK_RUN_COLUMN_NAMES, BLOCK_RUN_DATETIMES, BLOCK_RUN_JSON,
             BLOCK_RUN_BOOLEANS, BLOCK_RUN_DEFAULTS)


# ---------------------------------------------------------------- execution
def _sqlalchemy_error(exc: BaseException, statement: str, params: Any, many: bool = False) -> BaseException:
    """The exception the Core path raises for the same failure: IntegrityError,
    OperationalError, ... for a sqlite3 error, StatementError for a value that could not
    be converted, so callers (and RecorderError.original) see one set of types."""
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
    if not table.defaults.keys() <= rows[0].keys():
        rows = [{**table.defaults, **row} for row in rows]
    return _run(conn, table.insert_plan(tuple(rows[0])), rows)


def _run(conn: sqlite3.Connection, plan: _Plan, rows: Sequence[Mapping[str, Any]]) -> sqlite3.Cursor:
    params = _Table.bind(plan, rows)
    if len(params) == 1:
        return _execute(conn, plan[0], params[0])
    return _executemany(conn, plan[0], params)


def _update_run(conn: sqlite3.Connection, run_id: int, values: Mapping[str, Any]) -> None:
    row = {**values, "_id": run_id}
    _run(conn, _PR.update_plan(tuple(row), "id = ?", ("_id",)), [row])


def _marks(values: Sequence[Any]) -> str:
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
        _rollback(conn)
        raise


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass


class _Holder:
    """One thread's connection (a plain object so that a WeakSet can track it:
    sqlite3 connections take no weak references)."""

    __slots__ = ("conn", "__weakref__")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn


# Connections a forked child inherited: never used and never closed there (closing
# them could disturb the parent's locks), only kept from being garbage collected.
_inherited: list[sqlite3.Connection] = []


class SqliteWrites:
    """A run's writes on one SQLite file through sqlite3. Thread-safe: one connection
    per thread (the recorder's thread has its own)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._local = threading.local()
        self._holders: "weakref.WeakSet[_Holder]" = weakref.WeakSet()

    # ------------------------------------------------------------ connections
    def _connect(self) -> sqlite3.Connection:
        # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            set_sqlite_pragmas(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise _sqlalchemy_error(exc, "PRAGMA", ()) from exc
        return conn

    def conn(self) -> sqlite3.Connection:
        """This thread's connection."""
        if self._pid != os.getpid():
            self._after_fork()
        holder = getattr(self._local, "holder", None)
        if holder is None:
            holder = _Holder(self._connect())
            self._local.holder = holder
            with self._lock:
                self._holders.add(holder)
        return holder.conn

    @property
    def connection_count(self) -> int:
        return len(self._holders)

    def _after_fork(self) -> None:
        # A forked child must not reuse the parent's connections (nor a lock another
        # parent thread may have held at the fork).
        self._lock = threading.Lock()
        _inherited.extend(h.conn for h in list(self._holders))
        self._holders = weakref.WeakSet()
        self._local = threading.local()
        self._pid = os.getpid()

    def release_thread_connection(self) -> None:
        """Close this thread's connection (the recorder's thread, as it ends)."""
        holder = getattr(self._local, "holder", None)
        if holder is None or self._pid != os.getpid():
            return
        del self._local.holder
        with self._lock:
            self._holders.discard(holder)
        holder.conn.close()

    def close(self) -> None:
        """Close every thread's connection (a later write connects again)."""
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

    # ----------------------------------------------------------------- writes
    def current_revision(self) -> str | None:
        """The schema revision in `alembic_version` (read here so that an up-to-date
        database needs neither SQLAlchemy nor Alembic)."""
        conn = self.conn()
        exists = _execute(
            conn, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
        ).fetchone()
        if exists is None:
            return None
        rows = [r[0] for r in _execute(conn, "SELECT version_num FROM alembic_version")]
        if not rows:
            return None
        return ",".join(sorted(rows)) if len(rows) > 1 else rows[0]

    def create_run(self, values: Mapping[str, Any], uuids: Sequence[str]) -> int:
        with _transaction(self.conn()) as conn:
            run_id = _insert(conn, _PR, [values]).lastrowid
            if uuids:
                _insert(conn, _BR, _initial_block_rows(run_id, uuids))
        return int(run_id)

    def start_run(self, run_id: int, values: Mapping[str, Any], uuids: Sequence[str]) -> None:
        with _transaction(self.conn()) as conn:
            sql = "SELECT block_uuid FROM block_runs WHERE pipeline_run_id = ?"
            have = {r[0] for r in _execute(conn, sql, (run_id,))}
            _update_run(conn, run_id, values)
            missing = [u for u in uuids if u not in have]
            if missing:
                _insert(conn, _BR, _initial_block_rows(run_id, missing))

    def update_run(self, run_id: int, values: Mapping[str, Any]) -> None:
        with _transaction(self.conn()) as conn:
            _update_run(conn, run_id, values)

    def recover_orphans(self, hostname: str) -> int:
        unfinished = f"status IN ({_marks(UNFINISHED_STATUSES)})"
        candidates = _execute(
            self.conn(),
            f"SELECT id, pid FROM pipeline_runs WHERE {unfinished} AND hostname = ?"
            " AND pid IS NOT NULL AND lease_owner IS NULL",
            (*UNFINISHED_STATUSES, hostname),
        ).fetchall()
        dead = [(int(i), int(p)) for i, p in candidates if not pid_alive(int(p))]
        if not dead:
            return 0
        now = bind_datetime(utcnow())
        recovered = 0
        with _transaction(self.conn()) as conn:
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

    def block_run_writer(self) -> "SqliteBlockRunWriter":
        return SqliteBlockRunWriter(self)


_UPDATE_KEYS = ("_run_id", "_block_uuid")


_WHERE_KEY = "pipeline_run_id = ? AND block_uuid = ?"


def _write_group(conn: sqlite3.Connection, insert: bool, rows: Sequence[Mapping[str, Any]]) -> None:
    if insert:
        _insert(conn, _BR, rows)
    else:
        _run(conn, _BR.update_plan(tuple(rows[0]), _WHERE_KEY, _UPDATE_KEYS), rows)


class SqliteBlockRunWriter:
    """Writes the Recorder's grouped block-run changes (see
    `blockyard.db.recorder.BlockRunWriter`) on the recorder thread's own connection."""

    def __init__(self, writes: SqliteWrites) -> None:
        self._writes = writes

    def write(self, groups) -> None:
        conn = self._writes.conn()
        if len(groups) == 1 and len(groups[0][1]) == 1 and not conn.in_transaction:
            # One statement is a transaction of its own (all or nothing, and it takes
            # the write lock through busy_timeout as it starts): the usual write_now()
            # of one completion saves the BEGIN and COMMIT round trips.
            _write_group(conn, *groups[0])
            return
        # _transaction written out: its generator costs more than the rest of this
        # Python on every write_now().
        _execute(conn, "BEGIN IMMEDIATE")
        try:
            for insert, rows in groups:
                _write_group(conn, insert, rows)
            _execute(conn, "COMMIT")
        except BaseException:
            _rollback(conn)
            raise

    @staticmethod
    def is_row_error(exc: BaseException) -> bool:
        # The Core writer's classification, made on the sqlite3 error the raised
        # (SQLAlchemy) exception wraps: a constraint violation or a bad value concerns
        # one row; anything else would fail for every row alike.
        orig = getattr(exc, "orig", None)
        if orig is None:
            return False
        if isinstance(orig, sqlite3.Error):
            return isinstance(orig, (sqlite3.IntegrityError, sqlite3.DataError))
        return True  # a value that could not be converted (a StatementError)

    def close(self) -> None:
        self._writes.release_thread_connection()
