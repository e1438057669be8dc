"""The recorder's lean write path: what `write_now()` of one completion does on the
sqlite3 fast path (one statement, cached per column set) stores what SQLAlchemy Core
stores, waits for other writers like a transaction does, and leaves the recorder
thread working. See tests/test_db.py for the recorder's behaviour on every backend."""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from blockyard.db import Database
from blockyard.db.common import _json_default, _json_dumps
from blockyard.db.sqlite_writes import _bind_json, bind_datetime

TOKYO = timezone(timedelta(hours=9))


class Stamp(datetime):
    """A datetime subclass (as pandas.Timestamp is one): bound through the general path."""


_DATETIMES = [
    datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=timezone.utc),
    datetime(2024, 1, 1, tzinfo=timezone.utc),  # microsecond 0: still printed
    datetime(1, 1, 1, 0, 0, 0, 1),  # naive: taken as UTC; year printed with 4 digits
    datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc),
    datetime(2024, 3, 1, 0, 0, tzinfo=TOKYO),  # converted to UTC
    Stamp(2024, 5, 6, 7, 8, 9, 10, tzinfo=timezone.utc),
    "2024-03-01T09:00:00+09:00",
    None,
]


def _reference(value):
    """The stored text as documented: naive UTC, microseconds always printed."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc)
    return "%04d-%02d-%02d %02d:%02d:%02d.%06d" % (
        value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond,
    )


@pytest.mark.parametrize("value", _DATETIMES, ids=repr)
def test_bind_datetime_prints_naive_utc_with_microseconds(value):
    assert bind_datetime(value) == _reference(value)


def test_json_text_is_what_json_dumps_gives():
    values = [
        {"duration": 0.000123},
        [{"name": "t", "passed": True, "message": None}],
        {"when": datetime(2024, 1, 1, tzinfo=TOKYO), "set": {3}, "path": Path("/tmp/x"), "n": np.int64(7)},
        "héllo ✓ \u2028",
        {"nan": float("nan"), "nested": {"a": [1, 2.5, None]}},
    ]
    for value in values:
        assert _json_dumps(value) == json.dumps(value, default=_json_default)


@pytest.mark.parametrize("value", [
    {"duration": 7.5e-05}, {"duration": 0.0}, {"duration": -0.0}, {"duration": 123456.789012},
    {"duration": 1e300}, {"duration": float("nan")}, {"duration": float("inf")}, {"duration": None},
    {"duration": 3}, {"other": 1.5}, {"duration": 1.5, "sensor": {"state": "met"}},
], ids=repr)
def test_bound_metrics_are_what_json_dumps_gives(value):
    # a finite float duration alone is bound without the encoder: the same text
    assert _bind_json(value) == json.dumps(value, default=_json_default)


@pytest.fixture
def both(tmp_path):
    path = tmp_path / "blockyard.db"
    core = Database(path, sqlite3_writes=False)
    core.migrate()
    fast = Database(path)
    assert fast.sqlite3_writes
    yield fast, core
    fast.close()
    core.close()


def _raw_block_runs(path: Path, run_id: int) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        names = [r[1] for r in conn.execute("PRAGMA table_info(block_runs)")]
        names = [n for n in names if n not in ("id", "pipeline_run_id")]
        select = ", ".join(f"typeof({n}), quote({n})" for n in names)
        return conn.execute(
            f"SELECT {select} FROM block_runs WHERE pipeline_run_id = ? ORDER BY id", (run_id,)
        ).fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("order", ["engine", "merged"])
def test_write_now_of_each_completion_stores_what_core_stores(both, order):
    """The engine's two changes per block (running, then its completion), written by
    write_now() one block at a time, give the same bytes as through SQLAlchemy.
    "engine": a block's running is written with its upstream's completion (one
    transaction of two statements); "merged": both changes of a block in one statement."""
    runs = []
    for db in both:
        uuids = [f"b{i}" for i in range(len(_DATETIMES))]
        run_id = db.create_pipeline_run("p", "chain", {}, None, uuids)
        rec = db.recorder(interval=30)
        try:
            for i, (uuid, when) in enumerate(zip(uuids, _DATETIMES)):
                rec.update_block_run(run_id, uuid, status="running", started_at=when)
                if order == "engine":
                    rec.write_now()
                rec.update_block_run(
                    run_id, uuid, status="completed" if i % 3 else "failed", attempts=i,
                    completed_at=when, error=None if i % 3 else "bad ✗", traceback=None,
                    output_ref=f"outputs/{uuid}", digest="d" * 64, tests=[{"passed": True}] if i % 2 else None,
                    metrics={"duration": i / 7}, log_path=f"logs/{uuid}.log", cache_key=f"k{i}",
                )
                if order == "merged":
                    rec.write_now()
                    assert rec.pending == 0
            rec.write_now()
            assert rec.pending == 0
        finally:
            rec.close()
        runs.append(run_id)
    fast_run, core_run = runs
    path = both[0].path
    assert _raw_block_runs(path, fast_run) == _raw_block_runs(path, core_run)
    row = both[0].get_block_run(fast_run, "b4")
    assert row["started_at"] == datetime(2024, 2, 29, 15, 0, tzinfo=timezone.utc)
    assert row["metrics"] == {"duration": 4 / 7} and row["tests"] is None


def test_many_column_sets(both):
    """More distinct column sets than the writer keeps plans for: each still written."""
    fast, _ = both
    names = ["attempts", "error", "traceback", "output_ref", "digest", "log_path", "cache_key", "metrics"]
    uuids = [f"b{i}" for i in range(300)]
    run_id = fast.create_pipeline_run("p", "wide", {}, None, uuids)
    with fast.recorder(interval=30) as rec:
        for i, uuid in enumerate(uuids):
            chosen = [n for bit, n in enumerate(names) if i & (1 << bit)]
            fields = {n: (i if n == "attempts" else {"i": i} if n == "metrics" else f"{n}{i}") for n in chosen}
            rec.update_block_run(run_id, uuid, status="completed", **fields)
            rec.write_now()
    for i, row in enumerate(fast.get_block_runs(run_id)):
        assert row["status"] == "completed"
        assert row["attempts"] == (i if i & 1 else 0)
        assert row["metrics"] == ({"i": i} if i & 128 else None)
        assert row["cache_key"] == (f"cache_key{i}" if i & 64 else None)


def test_write_now_waits_for_another_writer(both):
    """A single-statement write waits through busy_timeout like BEGIN IMMEDIATE did:
    another connection holding the write lock for a moment delays it, never fails it."""
    fast, _ = both
    run_id = fast.create_pipeline_run("p", "pipe", {}, None, ["a"])
    other = sqlite3.connect(fast.path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("UPDATE pipeline_runs SET block_count = 7 WHERE id = ?", (run_id,))
    release = threading.Timer(0.3, other.execute, ("COMMIT",))
    rec = fast.recorder(interval=30)
    try:
        release.start()
        rec.update_block_run(run_id, "a", status="completed", completed_at=datetime.now(timezone.utc))
        rec.write_now()  # would raise RecorderError ("database is locked") if it did not wait
    finally:
        release.join()
        rec.close()
        other.close()
    assert fast.get_block_run(run_id, "a")["status"] == "completed"
    assert fast.get_pipeline_run(run_id)["block_count"] == 7


@pytest.mark.parametrize("sqlite3_writes", [None, False], ids=["sqlite", "sqlite-core"])
def test_thread_keeps_writing_after_write_now_took_its_changes(tmp_path, sqlite3_writes):
    """write_now() takes the change that woke the recorder thread; the thread must go on
    writing later changes in the background (without flush)."""
    db = Database(tmp_path / "h.db", sqlite3_writes=sqlite3_writes)
    db.migrate()
    reader = Database(tmp_path / "h.db")
    uuids = [f"b{i}" for i in range(5)]
    run_id = db.create_pipeline_run("p", "pipe", {}, None, uuids)
    rec = db.recorder(interval=0.05)
    try:
        for uuid in uuids:
            time.sleep(0.12)  # two quiet intervals: the thread sleeps until a change comes
            rec.update_block_run(run_id, uuid, status="running")  # wakes it
            rec.write_now()  # takes the change while the thread gathers
            time.sleep(0.07)  # the thread's interval ends with nothing left to write
            rec.update_block_run(run_id, uuid, status="completed")  # background only
            deadline = time.monotonic() + 10
            while reader.get_block_run(run_id, uuid)["status"] != "completed" and time.monotonic() < deadline:
                time.sleep(0.01)
            assert reader.get_block_run(run_id, uuid)["status"] == "completed"
        rec.flush()
        assert rec.pending == 0
    finally:
        rec.close()
        reader.close()
        db.close()
