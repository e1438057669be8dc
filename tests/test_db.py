"""blockyard.db against a real SQLite file and a real PostgreSQL database.

Every test that takes `db_url` or `db` runs three times: `Database` on a SQLite file
(run writes through the sqlite3 fast path, reads through SQLAlchemy Core), `Database`
on SQLite with every write through SQLAlchemy too ("sqlite-core"), and `Database` on
PostgreSQL."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from blockyard.db import Database
from blockyard.db.migrate import current_revision, script_head
from blockyard.db.recorder import RecorderError
from blockyard.db.schema import HEAD_REVISION, metadata
from blockyard.errors import BlockyardError

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _reset_pg(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "sqlite-core", "postgresql"])
def backend(request):
    return request.param


@pytest.fixture
def db_url(backend, request, tmp_path):
    """An empty database: a SQLite file in tmp_path, or a wiped PostgreSQL database."""
    if backend.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'nested' / 'dir' / 'blockyard.db'}"
    url = request.getfixturevalue("pg_url")
    _reset_pg(url)
    return url


class Impl:
    """Opens `Database` with the write path under test; `arg` names it to a subprocess
    (see `_open_code`)."""

    def __init__(self, sqlite3_writes):
        self.sqlite3_writes = sqlite3_writes
        self.arg = "core" if sqlite3_writes is False else "auto"

    def __call__(self, url, **kwargs):
        return Database(url, sqlite3_writes=self.sqlite3_writes, **kwargs)


# How a subprocess opens the database: argv[i] is the url, argv[i + 1] an Impl's arg.
def _open_code(i: int) -> str:
    return (
        f"blockyard.db.Database(sys.argv[{i}], "
        f"sqlite3_writes=None if sys.argv[{i + 1}] == 'auto' else False)"
    )


@pytest.fixture
def db_cls(backend):
    """The write path under test: SQLAlchemy Core for "sqlite-core", else the default
    (the sqlite3 fast path on a SQLite file)."""
    return Impl(False if backend == "sqlite-core" else None)


@pytest.fixture
def db(db_url, db_cls):
    database = db_cls(db_url)
    database.migrate()
    yield database
    database.close()


def _run_py(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


class StatementCounter:
    """Counts the SQL statements sent to the database (executemany counts once)."""

    def __init__(self, db, monkeypatch):
        self.statements: list[tuple[str, bool]] = []
        self._lock = threading.Lock()
        if db.sqlite3_writes:
            # The fast path sends every write through these two functions.
            from blockyard.db import sqlite_writes

            for name, many in (("_execute", False), ("_executemany", True)):
                monkeypatch.setattr(sqlite_writes, name, self._wrap(getattr(sqlite_writes, name), many))
        # Reads (and the writes off the fast path) go through SQLAlchemy.
        sa.event.listen(db.engine, "before_cursor_execute", self._on_execute)

    def _wrap(self, function, many):
        def counted(conn, statement, *args):
            self._on_execute(conn, None, statement, None, None, many)
            return function(conn, statement, *args)

        return counted

    def _on_execute(self, conn, cursor, statement, parameters, context, executemany):
        with self._lock:
            self.statements.append((" ".join(statement.split()).upper(), executemany))

    def count(self, prefix: str) -> int:
        prefix = prefix.upper()
        return sum(1 for s, _ in self.statements if s.startswith(prefix))


# ---------------------------------------------------------------- migrations
def test_migrate_creates_schema_and_is_idempotent(db_url, db_cls):
    db = db_cls(db_url)
    try:
        assert db.migrate() is True
        inspector = sa.inspect(db.engine)
        tables = set(inspector.get_table_names())
        assert {"pipeline_runs", "block_runs", "alembic_version"} <= tables
        columns = {c["name"] for c in inspector.get_columns("block_runs")}
        assert {"cache_key", "output_ref", "digest", "dynamic_index", "log_path"} <= columns
        index_names = {i["name"] for i in inspector.get_indexes("pipeline_runs")}
        assert "ix_pipeline_runs_pipeline_uuid_created_at" in index_names
        assert "ix_pipeline_runs_status" in index_names
        assert "ix_block_runs_cache_key" in {i["name"] for i in inspector.get_indexes("block_runs")}
        with db.engine.connect() as conn:
            assert current_revision(conn) == HEAD_REVISION
        run_id = db.create_pipeline_run("p", "pipe", {}, None, ["a"])
        assert db.migrate() is False
    finally:
        db.close()
    again = db_cls(db_url)
    try:
        assert again.migrate() is False
        assert again.get_pipeline_run(run_id)["pipeline_uuid"] == "pipe"  # data survived
        with again.engine.connect() as conn:
            versions = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all()
        assert versions == [HEAD_REVISION]
    finally:
        again.close()


def test_head_constant_matches_migration_scripts():
    assert script_head() == HEAD_REVISION


def test_migrated_schema_matches_table_definitions(db):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, metadata)
    assert diff == []


def test_fast_path_does_not_import_alembic(db_url, db_cls):
    code = """
        import sys
        import blockyard.db
        db = OPEN
        changed = db.migrate()
        print(changed, 'alembic' in sys.modules, 'sqlalchemy' in sys.modules)
    """
    code = code.replace("OPEN", _open_code(1))
    first = _run_py(code, db_url, db_cls.arg)
    assert first.returncode == 0, first.stderr
    # Control: migrating an empty database does need alembic.
    assert first.stdout.split() == ["True", "True", "True"]
    second = _run_py(code, db_url, db_cls.arg)
    assert second.returncode == 0, second.stderr
    # On the sqlite3 fast path the up-to-date check does not need SQLAlchemy either.
    fast = db_url.startswith("sqlite") and db_cls.sqlite3_writes is None
    assert second.stdout.split() == ["False", "False", str(not fast)]


def test_concurrent_first_migration(db_url, db_cls):
    start_at = time.time() + 2.0
    code = """
        import sys, time
        import blockyard.db
        db = blockyard.db.Database(sys.argv[1], sqlite3_writes=None if sys.argv[3] == 'auto' else False)
        time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
        print(db.migrate())
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), db_url, str(start_at), db_cls.arg],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(3)
    ]
    results = [p.communicate(timeout=60) for p in procs]
    for proc, (out, err) in zip(procs, results):
        assert proc.returncode == 0, err
    outputs = sorted(out.strip() for out, _ in results)
    assert outputs == ["False", "False", "True"]
    db = Database(db_url)
    try:
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all() == [
                HEAD_REVISION
            ]
        assert db.create_pipeline_run("p", "x", {}, None, ["a"]) > 0
    finally:
        db.close()


# ------------------------------------------------------------- pipeline runs
def test_create_get_finish_pipeline_run(db):
    exec_date = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    before = datetime.now(timezone.utc)
    run_id = db.create_pipeline_run(
        project="unit_1",
        pipeline_uuid="data_preparation",
        variables={"split": 0.2, "when": datetime(2024, 1, 1, tzinfo=timezone.utc)},
        execution_date=exec_date,
        block_uuids=["ingest", "prepare", "export"],
        trigger_id=7,
        pid=os.getpid(),
        hostname=socket.gethostname(),
    )
    assert isinstance(run_id, int)
    run = db.get_pipeline_run(run_id)
    assert run["project"] == "unit_1"
    assert run["pipeline_uuid"] == "data_preparation"
    assert run["status"] == "running"
    assert run["variables"] == {"split": 0.2, "when": "2024-01-01T00:00:00+00:00"}
    assert run["execution_date"] == exec_date
    assert run["trigger_id"] == 7
    assert run["pid"] == os.getpid()
    assert run["block_count"] == 3
    assert run["started_at"] is not None and run["started_at"] >= before - timedelta(seconds=1)
    assert run["completed_at"] is None and run["error"] is None

    blocks = db.get_block_runs(run_id)
    assert [b["block_uuid"] for b in blocks] == ["ingest", "prepare", "export"]
    assert {b["status"] for b in blocks} == {"initial"}
    assert all(b["attempts"] == 0 and b["cache_hit"] is False for b in blocks)
    assert db.get_block_run(run_id, "prepare")["base_block_uuid"] == "prepare"
    assert db.get_block_run(run_id, "missing") is None

    db.finish_pipeline_run(
        run_id, "failed", error="boom", error_details={"file": "x.py", "line": 3, "block": "prepare"}
    )
    run = db.get_pipeline_run(run_id)
    assert run["status"] == "failed"
    assert run["error"] == "boom"
    assert run["error_details"] == {"file": "x.py", "line": 3, "block": "prepare"}
    assert run["completed_at"] >= run["created_at"]
    assert db.get_pipeline_run(run_id + 1000) is None


def test_finish_with_blockyard_error_and_status_validation(db):
    run_id = db.create_pipeline_run("p", "pipe", {}, None, [], status="queued")
    assert db.get_pipeline_run(run_id)["started_at"] is None
    err = BlockyardError("bad value", file="blocks/x.py", line=12, block="x", hint="fix it")
    db.finish_pipeline_run(run_id, "failed", error=err, metrics={"seconds": 1.5})
    run = db.get_pipeline_run(run_id)
    assert run["error"] == str(err)
    assert run["error_details"]["file"] == "blocks/x.py"
    assert run["error_details"]["line"] == 12
    assert run["error_details"]["hint"] == "fix it"
    assert run["metrics"] == {"seconds": 1.5}
    with pytest.raises(ValueError, match="unknown status"):
        db.finish_pipeline_run(run_id, "done")
    with pytest.raises(ValueError, match="unknown status"):
        db.create_pipeline_run("p", "pipe", {}, None, [], status="bogus")
    with pytest.raises(ValueError, match="unknown pipeline run field"):
        db.update_pipeline_run(run_id, colour="red")
    db.update_pipeline_run(run_id, status="cancelled", metrics=None)
    run = db.get_pipeline_run(run_id)
    assert run["status"] == "cancelled" and run["metrics"] is None


def test_create_pipeline_run_is_one_transaction(db):
    with pytest.raises(sa.exc.IntegrityError):
        db.create_pipeline_run("p", "dup", {}, None, ["a", "a"])  # duplicate block uuid
    assert db.count_pipeline_runs(pipeline_uuid="dup") == 0


def test_list_count_and_paginate(db):
    ids = []
    for i in range(7):
        pipeline = "train" if i % 2 else "prepare"
        run_id = db.create_pipeline_run("proj", pipeline, {"i": i}, None, ["a"])
        ids.append(run_id)
        if i < 5:
            db.finish_pipeline_run(run_id, "completed")
    other = db.create_pipeline_run("other_project", "train", {}, None, [])

    runs = db.list_pipeline_runs(project="proj")
    assert [r["id"] for r in runs] == list(reversed(ids))  # newest first
    assert db.count_pipeline_runs(project="proj") == 7
    assert db.count_pipeline_runs() == 8

    pages = [db.list_pipeline_runs(project="proj", limit=3, offset=o) for o in (0, 3, 6, 9)]
    assert [len(p) for p in pages] == [3, 3, 1, 0]
    assert [r["id"] for p in pages for r in p] == list(reversed(ids))

    train = db.list_pipeline_runs(project="proj", pipeline_uuid="train")
    assert [r["id"] for r in train] == [ids[5], ids[3], ids[1]]
    assert db.count_pipeline_runs(pipeline_uuid="train") == 4  # includes other_project
    assert [r["id"] for r in db.list_pipeline_runs(pipeline_uuid="train", limit=1)] == [other]
    assert db.count_pipeline_runs(project="proj", status="running") == 2
    assert {r["id"] for r in db.list_pipeline_runs(status="running")} == {ids[5], ids[6], other}
    assert db.count_pipeline_runs(status=["running", "completed"]) == 8

    assert db.latest_pipeline_run("proj", "prepare")["id"] == ids[4]  # ids[6] is still running
    assert db.latest_pipeline_run("proj", "prepare", status=None)["id"] == ids[6]
    assert db.latest_pipeline_run("proj", "nope") is None


def test_delete_pipeline_runs_before(db):
    old_done = db.create_pipeline_run("p", "pipe", {}, None, ["a", "b"])
    old_running = db.create_pipeline_run("p", "pipe", {}, None, ["a"])
    recent = db.create_pipeline_run("p", "pipe", {}, None, ["a"])
    long_ago = datetime.now(timezone.utc) - timedelta(days=30)
    db.update_pipeline_run(old_done, created_at=long_ago)
    db.update_pipeline_run(old_running, created_at=long_ago)
    db.finish_pipeline_run(old_done, "completed")
    db.finish_pipeline_run(recent, "completed")

    cutoff = datetime.now(timezone.utc) - timedelta(days=7)
    assert db.delete_pipeline_runs_before(cutoff) == [old_done]
    assert db.get_pipeline_run(old_done) is None
    assert db.get_block_runs(old_done) == []
    assert db.get_pipeline_run(old_running) is not None
    assert db.get_pipeline_run(recent) is not None
    assert db.delete_pipeline_runs_before(cutoff, include_unfinished=True) == [old_running]
    assert db.get_block_runs(old_running) == []
    assert [r["id"] for r in db.list_pipeline_runs()] == [recent]


def test_foreign_key_cascade(db):
    run_id = db.create_pipeline_run("p", "pipe", {}, None, ["a", "b"])
    with db.engine.begin() as conn:
        conn.exec_driver_sql(f"DELETE FROM pipeline_runs WHERE id = {run_id}")
    assert db.get_block_runs(run_id) == []


# ---------------------------------------------------------------- timestamps
def test_timestamps_are_utc_and_timezone_aware(db_url, db_cls):
    if db_url.startswith("postgresql"):
        # A session time zone far from UTC: values must still come back in UTC.
        db_url += "?options=-c%20timezone%3DAsia/Tokyo"
    db = db_cls(db_url)
    try:
        db.migrate()
        tokyo = timezone(timedelta(hours=9))
        local_exec = datetime(2024, 3, 10, 9, 30, tzinfo=tokyo)
        run_id = db.create_pipeline_run("p", "pipe", {}, local_exec, ["a"])
        run = db.get_pipeline_run(run_id)
        assert run["execution_date"] == datetime(2024, 3, 10, 0, 30, tzinfo=timezone.utc)
        assert run["execution_date"].utcoffset() == timedelta(0)
        for key in ("created_at", "started_at"):
            assert run[key].tzinfo is not None and run[key].utcoffset() == timedelta(0)
            assert abs(run[key] - datetime.now(timezone.utc)) < timedelta(minutes=1)

        naive = datetime(2024, 3, 10, 0, 30)  # naive means UTC
        run2 = db.create_pipeline_run("p", "pipe", {}, naive, [])
        assert db.get_pipeline_run(run2)["execution_date"] == local_exec

        with db.recorder() as rec:
            rec.update_block_run(run_id, "a", started_at=local_exec, completed_at=naive)
        block = db.get_block_run(run_id, "a")
        assert block["started_at"] == local_exec and block["started_at"].utcoffset() == timedelta(0)
        assert block["completed_at"] == local_exec
        db.finish_pipeline_run(run_id, "completed")
        assert db.get_pipeline_run(run_id)["completed_at"].utcoffset() == timedelta(0)
    finally:
        db.close()


# ------------------------------------------------------------------ recorder
def test_recorder_coalesces_and_flush_writes_everything(db, monkeypatch):
    run_id = db.create_pipeline_run("p", "pipe", {}, None, ["a", "b", "c"])
    counter = StatementCounter(db, monkeypatch)
    t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    rec = db.recorder(interval=30)  # nothing is written until flush()
    try:
        for i, uuid in enumerate(["a", "b", "c"]):
            rec.update_block_run(run_id, uuid, status="running", started_at=t0, attempts=1)
            rec.update_block_run(run_id, uuid, attempts=2)
            rec.update_block_run(
                run_id, uuid, status="completed", completed_at=t0 + timedelta(seconds=i), attempts=3
            )
        # A dynamic child added mid-run, then updated: folded into its insert.
        rec.add_block_run(run_id, "b:0", parent_uuid="b", dynamic_index=0)
        rec.update_block_run(run_id, "b:0", status="completed", digest="d0", output_ref=f"{run_id}/b:0")
        time.sleep(0.1)
        assert rec.pending == 11
        assert db.get_block_run(run_id, "a")["status"] == "initial"  # write-behind
        assert db.get_block_run(run_id, "b:0") is None
        assert counter.count("UPDATE BLOCK_RUNS") == 0

        started = time.monotonic()
        rec.flush()
        assert time.monotonic() - started < 5  # flush does not wait for the 30 s interval
        assert rec.pending == 0
    finally:
        rec.close()

    for i, uuid in enumerate(["a", "b", "c"]):
        row = db.get_block_run(run_id, uuid)
        assert row["status"] == "completed"
        assert row["attempts"] == 3  # later values win
        assert row["started_at"] == t0  # earlier-only fields are kept
        assert row["completed_at"] == t0 + timedelta(seconds=i)
    child = db.get_block_run(run_id, "b:0")
    assert child["status"] == "completed"
    assert child["base_block_uuid"] == "b" and child["dynamic_index"] == 0
    assert child["digest"] == "d0" and child["output_ref"] == f"{run_id}/b:0"
    # Nine updates of three rows -> one executemany UPDATE; the child -> one INSERT.
    assert counter.count("UPDATE BLOCK_RUNS") == 1
    assert counter.count("INSERT INTO BLOCK_RUNS") == 1


def test_recorder_groups_by_column_set_and_keeps_order(db, monkeypatch):
    run_id = db.create_pipeline_run("p", "pipe", {}, None, ["a", "b", "c", "d"])
    counter = StatementCounter(db, monkeypatch)
    with db.recorder(interval=30) as rec:
        rec.update_block_run(run_id, "a", status="running")
        rec.update_block_run(run_id, "b", status="running")
        rec.update_block_run(run_id, "c", status="failed", error="x")
        rec.update_block_run(run_id, "d", status="failed", error="y")
        rec.flush()
        assert counter.count("UPDATE BLOCK_RUNS") == 2  # {status} and {status, error}
        # Inserting the same new row twice in one batch: the second insert must come
        # after the first (and fail on the unique constraint), not replace it.
        rec.add_block_run(run_id, "e", status="running")
        rec.update_block_run(run_id, "e", attempts=1)
        rec.add_block_run(run_id, "e", status="queued")
        with pytest.raises(RecorderError):
            rec.flush()
    e = db.get_block_run(run_id, "e")
    assert e["status"] == "running" and e["attempts"] == 1
    assert [db.get_block_run(run_id, u)["status"] for u in "abcd"] == [
        "running",
        "running",
        "failed",
        "failed",
    ]
    assert db.get_block_run(run_id, "d")["error"] == "y"


def test_recorder_thousand_block_runs(db):
    uuids = [f"block_{i:04d}" for i in range(1000)]
    run_id = db.create_pipeline_run("p", "big", {}, None, uuids)
    t0 = datetime.now(timezone.utc)
    with db.recorder() as rec:
        for i, uuid in enumerate(uuids):
            rec.update_block_run(run_id, uuid, status="running", started_at=t0)
        for i, uuid in enumerate(uuids):
            rec.update_block_run(
                run_id,
                uuid,
                status="completed",
                completed_at=t0,
                attempts=1,
                digest=f"digest{i}",
                output_ref=f"{run_id}/{uuid}",
                metrics={"rows": i},
            )
        for j in range(100):
            rec.add_block_run(run_id, f"block_0000:{j}", parent_uuid="block_0000", dynamic_index=j)
        rec.flush()
    # How fast it records is measured in bench/ (never asserted on the clock here).

    rows = db.get_block_runs(run_id)
    assert len(rows) == 1100
    by_uuid = {r["block_uuid"]: r for r in rows}
    for i, uuid in enumerate(uuids):
        row = by_uuid[uuid]
        assert row["status"] == "completed", uuid
        assert row["digest"] == f"digest{i}"
        assert row["output_ref"] == f"{run_id}/{uuid}"
        assert row["metrics"] == {"rows": i}
        assert row["started_at"] == t0 and row["attempts"] == 1
    clones = [r for r in rows if r["dynamic_index"] is not None]
    assert sorted(r["dynamic_index"] for r in clones) == list(range(100))
    assert {r["status"] for r in clones} == {"initial"}
    assert {r["base_block_uuid"] for r in clones} == {"block_0000"}


def test_recorder_is_thread_safe(db):
    uuids = [f"b{i}" for i in range(200)]
    run_id = db.create_pipeline_run("p", "pipe", {}, None, uuids)
    rec = db.recorder(interval=0.005)
    errors = []

    def work(part):
        try:
            for uuid in part:
                rec.update_block_run(run_id, uuid, status="running")
                rec.update_block_run(run_id, uuid, status="completed", attempts=1)
        except Exception as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(uuids[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rec.close()
    assert errors == []
    rows = db.get_block_runs(run_id)
    assert [r["status"] for r in rows] == ["completed"] * 200
    assert {r["attempts"] for r in rows} == {1}


def test_recorder_flush_is_visible_to_other_connections(db_url, db_cls):
    db = db_cls(db_url)
    db.migrate()
    reader = db_cls(db_url)
    try:
        run_id = db.create_pipeline_run("p", "pipe", {}, None, ["a"])
        rec = db.recorder(interval=0.02)
        rec.update_block_run(run_id, "a", status="completed", cache_key="k1")
        rec.flush()
        assert reader.get_block_run(run_id, "a")["status"] == "completed"
        # Background writes happen without flush() too.
        rec.update_block_run(run_id, "a", log_path="logs/a.log")
        deadline = time.monotonic() + 5
        while reader.get_block_run(run_id, "a")["log_path"] is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert reader.get_block_run(run_id, "a")["log_path"] == "logs/a.log"
        rec.close()
        with pytest.raises(RuntimeError, match="closed"):
            rec.update_block_run(run_id, "a", status="failed")
    finally:
        reader.close()
        db.close()


def test_recorder_raises_failed_write_from_flush(db):
    run_id = db.create_pipeline_run("p", "pipe", {}, None, ["a", "b"])
    rec = db.recorder(interval=30)
    try:
        rec.update_block_run(run_id, "b", status="completed")
        rec.add_block_run(run_id, "a")  # already exists: unique violation
        rec.add_block_run(run_id + 999, "x")  # no such run: foreign key violation
        with pytest.raises(RecorderError) as info:
            rec.flush()
        assert isinstance(info.value.original, sa.exc.IntegrityError)
        assert info.value.lost == 2
        # The good change in the same batch was still written.
        assert db.get_block_run(run_id, "b")["status"] == "completed"
        assert db.get_block_run(run_id + 999, "x") is None
        # The error is raised once; the recorder keeps working.
        rec.update_block_run(run_id, "a", status="running")
        rec.flush()
        assert db.get_block_run(run_id, "a")["status"] == "running"
        # A failure right before close() is raised from close().
        rec.add_block_run(run_id, "b")
    finally:
        with pytest.raises(RecorderError):
            rec.close()


def test_recorder_raises_when_the_database_refuses_every_write(db):
    run_id = db.create_pipeline_run("p", "pipe", {}, None, ["a", "b"])
    rec = db.recorder(interval=30)
    with db.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE block_runs")
    rec.update_block_run(run_id, "a", status="running")
    rec.update_block_run(run_id, "b", status="running")
    rec.update_block_run(run_id, "a", status="completed")
    with pytest.raises(RecorderError, match="could not record 2 block run change") as info:
        rec.flush()
    assert isinstance(info.value.original, sa.exc.DBAPIError)
    assert info.value.lost == 2
    assert "block_runs" in str(info.value.original)
    rec.close()  # the error was already raised once


def test_recorder_rejects_unknown_fields_immediately(db):
    run_id = db.create_pipeline_run("p", "pipe", {}, None, ["a"])
    with db.recorder() as rec:
        with pytest.raises(ValueError, match="unknown block run field"):
            rec.update_block_run(run_id, "a", colour="blue")
        with pytest.raises(ValueError, match="unknown status"):
            rec.update_block_run(run_id, "a", status="done")
        with pytest.raises(ValueError, match="unknown block run field"):
            rec.update_block_run(run_id, "a", pipeline_run_id=5)
        assert rec.pending == 0


# ---------------------------------------------------------- cache and lookup
def test_lookup_cache_returns_latest_completed(db):
    runs = [db.create_pipeline_run("p", "pipe", {}, None, ["build", "other"]) for _ in range(4)]
    with db.recorder() as rec:
        rec.update_block_run(runs[0], "build", status="completed", cache_key="K", output_ref=f"{runs[0]}/build", digest="d-old")
        rec.update_block_run(runs[1], "build", status="completed", cache_key="K", output_ref=f"{runs[1]}/build", digest="d-new")
        # A cache hit: completed, pointing at run 1's outputs.
        rec.update_block_run(runs[2], "build", status="completed", cache_key="K", cache_hit=True, output_ref=f"{runs[1]}/build", digest="d-new")
        rec.update_block_run(runs[3], "build", status="failed", cache_key="K")
        rec.update_block_run(runs[3], "other", status="completed", cache_key="K2", output_ref=f"{runs[3]}/other", digest="d2")
    hit = db.lookup_cache("K")
    assert hit["pipeline_run_id"] == runs[2]
    assert hit["cache_hit"] is True
    assert hit["output_ref"] == f"{runs[1]}/build"
    assert hit["digest"] == "d-new"
    assert db.lookup_cache("K2")["output_ref"] == f"{runs[3]}/other"
    assert db.lookup_cache("missing") is None


def test_latest_block_run(db):
    r1 = db.create_pipeline_run("p", "pipe", {}, None, ["train"])
    r2 = db.create_pipeline_run("p", "pipe", {}, None, ["train"])
    r3 = db.create_pipeline_run("p", "other", {}, None, ["train"])
    with db.recorder() as rec:
        rec.update_block_run(r1, "train", status="completed", output_ref=f"{r1}/train")
        rec.update_block_run(r2, "train", status="failed")
        rec.update_block_run(r3, "train", status="completed")
    assert db.latest_block_run("p", "pipe", "train")["pipeline_run_id"] == r1
    assert db.latest_block_run("p", "pipe", "train", status=None)["pipeline_run_id"] == r2
    assert db.latest_block_run("p", "pipe", "train", status="failed")["pipeline_run_id"] == r2
    assert db.latest_block_run("p", "other", "train")["pipeline_run_id"] == r3
    assert db.latest_block_run("q", "pipe", "train") is None


# ------------------------------------------------------------------ orphans
def test_recover_orphans(db):
    host = socket.gethostname()
    dead = _dead_pid()
    orphan = db.create_pipeline_run("p", "pipe", {}, None, ["a", "b", "c"], pid=dead, hostname=host)
    queued_orphan = db.create_pipeline_run("p", "pipe", {}, None, ["a"], status="queued", pid=dead, hostname=host)
    alive = db.create_pipeline_run("p", "pipe", {}, None, ["a"], pid=os.getpid(), hostname=host)
    elsewhere = db.create_pipeline_run("p", "pipe", {}, None, ["a"], pid=dead, hostname="another-host")
    finished = db.create_pipeline_run("p", "pipe", {}, None, ["a"], pid=dead, hostname=host)
    db.finish_pipeline_run(finished, "completed")
    with db.recorder() as rec:
        rec.update_block_run(orphan, "a", status="completed")
        rec.update_block_run(orphan, "b", status="running")

    assert db.recover_orphans() == 2
    run = db.get_pipeline_run(orphan)
    assert run["status"] == "failed"
    assert run["error"] == f"the process running it (pid {dead}) exited before it finished"
    assert run["completed_at"] is not None
    blocks = {b["block_uuid"]: b for b in db.get_block_runs(orphan)}
    assert blocks["a"]["status"] == "completed"
    assert blocks["b"]["status"] == "failed" and blocks["c"]["status"] == "failed"
    assert db.get_pipeline_run(queued_orphan)["status"] == "failed"
    assert db.get_pipeline_run(alive)["status"] == "running"
    assert db.get_pipeline_run(elsewhere)["status"] == "running"
    assert db.get_pipeline_run(finished)["status"] == "completed"
    assert db.recover_orphans() == 0


# ------------------------------------------------------------- URLs, SQLite
def test_safe_url_hides_password_and_postgres_uses_psycopg():
    db = Database("postgresql://blockyard:s3cret@db.example:5432/runs")
    try:
        assert db.url.drivername == "postgresql+psycopg"
        assert "s3cret" not in db.safe_url and "s3cret" not in repr(db)
        assert db.safe_url == "postgresql+psycopg://blockyard:***@db.example:5432/runs"
    finally:
        db.close()
    db = Database("postgres://u:pw@h/d")
    try:
        assert db.url.drivername == "postgresql+psycopg"
    finally:
        db.close()


def test_sqlite_creates_folder_and_sets_pragmas(tmp_path):
    path = tmp_path / "a" / "b" / "runs.db"
    db = Database(f"sqlite:///{path}")
    try:
        assert path.parent.is_dir()
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        db.close()
    plain = Database(tmp_path / "plain.db")  # a bare path means SQLite
    try:
        assert plain.dialect == "sqlite"
        plain.migrate()
        assert (tmp_path / "plain.db").exists()
    finally:
        plain.close()


def test_sqlalchemy_is_imported_on_the_first_read_only(tmp_path):
    setup = Database(tmp_path / "lazy.db")
    assert setup.migrate() is True
    setup.close()
    result = _run_py(
        """
        import sys
        import blockyard.db
        print('sqlalchemy' in sys.modules)
        from blockyard.db import Database
        db = Database(sys.argv[1])
        print('sqlalchemy' in sys.modules)
        assert db.migrate() is False  # migrated by the parent
        run_id = db.create_pipeline_run("p", "pipe", {}, None, ["a"])
        print('sqlalchemy' in sys.modules)
        print(db.get_pipeline_run(run_id)["pipeline_uuid"], 'sqlalchemy' in sys.modules)
        """,
        str(tmp_path / "lazy.db"),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False", "False", "pipe", "True"]
