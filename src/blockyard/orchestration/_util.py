"""Small shared pieces: clocks, datetime parsing, write transactions, wake-ups, hooks."""
from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from datetime import date, datetime, timezone
from typing import Any, Callable, Iterator

log = logging.getLogger("blockyard.orchestration")

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_clock(clock: Clock | None) -> Clock:
    """`clock` or the real UTC clock; a clock's naive results are taken as UTC."""
    if clock is None:
        return utcnow
    return lambda: to_utc(clock())


def to_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def parse_datetime(value: Any, tz: Any = None, *, what: str = "datetime") -> datetime | None:
    """A datetime, date, ISO string or epoch number as an aware UTC datetime.

    Naive values are read in `tz` (a tzinfo) when given, else as UTC.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), timezone.utc)
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"{what} {value!r} is not a date/time; use ISO 8601, e.g. 2024-01-01 or "
                "2024-01-01T06:00:00+00:00"
            ) from None
    else:
        raise ValueError(f"{what} must be a date/time, not {type(value).__name__}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz or timezone.utc)
    return dt.astimezone(timezone.utc)


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@contextlib.contextmanager
def write_txn(db: Any) -> Iterator[Any]:
    """A transaction that takes the write lock up front on SQLite (BEGIN IMMEDIATE), so
    reads inside it see the latest data and concurrent writers queue up (busy_timeout);
    a plain transaction on PostgreSQL (use row locks there)."""
    if db.dialect == "sqlite":
        with db.engine.connect() as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
    else:
        with db.engine.begin() as conn:
            yield conn


def dialect_insert(db: Any, table: Any):
    """INSERT supporting on_conflict_do_nothing for the database's dialect."""
    if db.dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


# ------------------------------------------------------------------ wake-ups
# Workers and schedulers living in this process register an Event here; whoever
# queues a run (enqueue_run, the scheduler, a backfill, a resumed run) or changes a
# trigger sets them, so an in-process worker starts a run without waiting for its poll.
_lock = threading.Lock()
_worker_events: "weakref.WeakSet[threading.Event]" = weakref.WeakSet()
_scheduler_events: "weakref.WeakSet[threading.Event]" = weakref.WeakSet()


def register_worker_event(event: threading.Event) -> None:
    with _lock:
        _worker_events.add(event)


def unregister_worker_event(event: threading.Event) -> None:
    with _lock:
        _worker_events.discard(event)


def register_scheduler_event(event: threading.Event) -> None:
    with _lock:
        _scheduler_events.add(event)


def unregister_scheduler_event(event: threading.Event) -> None:
    with _lock:
        _scheduler_events.discard(event)


def notify_runs_queued() -> None:
    with _lock:
        events = list(_worker_events)
    for e in events:
        e.set()


def notify_schedules_changed() -> None:
    with _lock:
        events = list(_scheduler_events)
    for e in events:
        e.set()


def link_stop(stop: threading.Event, wake: threading.Event) -> None:
    """Set `wake` when `stop` is set (so a loop waiting on `wake` notices a stop at once)."""

    def watch() -> None:
        stop.wait()
        wake.set()

    threading.Thread(target=watch, name="blockyard-stop-watch", daemon=True).start()


# --------------------------------------------------------------------- hooks
def call_notify(name: str, workspace: Any, db: Any, row: dict | None) -> None:
    """Call blockyard.notify.<name>(workspace, db, row) if that module exists."""
    if row is None:
        return
    try:
        import blockyard.notify as notify  # noqa: PLC0415 - optional, written separately
    except ImportError:
        return
    fn = getattr(notify, name, None)
    if fn is None:
        return
    try:
        fn(workspace, db, row)
    except Exception:  # an alerting problem must never break orchestration
        log.exception("blockyard.notify.%s failed for run %s", name, row.get("id"))
