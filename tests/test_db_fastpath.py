"""The sqlite3 fast path for a run's writes against SQLAlchemy Core writes: same schema
facts, same stored bytes, same answers through the one (Core) read implementation, on
SQLite and PostgreSQL; and `blockyard run` on SQLite without SQLAlchemy.

The behaviour of every method is also covered by tests/test_db.py, which runs each
test with both write paths (the "sqlite" and "sqlite-core" parameters)."""
from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from blockyard.db import Database, open_database
from blockyard.db import columns, schema
from blockyard.db.sqlite_writes import sqlite_file
from blockyard.db.migrate import migrate as alembic_migrate
from blockyard.db.recorder import RecorderError
from wsbuilder import block, write_pipeline

SRC = str(Path(__file__).resolve().parents[1] / "src")
TOKYO = timezone(timedelta(hours=9))


@pytest.fixture
def path(tmp_path):
    return tmp_path / "runs" / "blockyard.db"


@pytest.fixture
def both(path):
    """(fast, core) on the same migrated file: run writes through sqlite3, and every
    write through SQLAlchemy Core."""
    core = Database(path, sqlite3_writes=False)
    core.migrate()
    fast = Database(path)
    assert fast.sqlite3_writes and not core.sqlite3_writes
    yield fast, core
    fast.close()
    core.close()


# ------------------------------------------------------- schema facts agree
@pytest.mark.parametrize(
    "table, names, datetimes, jsons, booleans, defaults",
    [
        (
            schema.pipeline_runs,
            columns.PIPELINE_RUN_COLUMN_NAMES,
            columns.PIPELINE_RUN_DATETIMES,
            columns.PIPELINE_RUN_JSON,
            columns.PIPELINE_RUN_BOOLEANS,
            columns.PIPELINE_RUN_DEFAULTS,
        ),
        (
            schema.block_runs,
            columns.BLOCK_RUN_COLUMN_NAMES,
            columns.BLOCK_RUN_DATETIMES,
            columns.BLOCK_RUN_JSON,
            columns.BLOCK_RUN_BOOLEANS,
            columns.BLOCK_RUN_DEFAULTS,
        ),
    ],
    ids=["pipeline_runs", "block_runs"],
)
def test_column_lists_match_the_sqlalchemy_tables(table, names, datetimes, jsons, booleans, defaults):
    assert names == tuple(c.name for c in table.c)  # same order: the row dicts' key order
    assert datetimes == {c.name for c in table.c if isinstance(c.type, schema.UTCDateTime)}
    assert jsons == {c.name for c in table.c if isinstance(c.type, schema.JSONType)}
    assert booleans == {c.name for c in table.c if isinstance(c.type, sa.Boolean)}
    assert defaults == {c.name: c.default.arg for c in table.c if c.default is not None}
    # Anything else is stored as the driver gets it: integers and strings.
    others = [c for c in table.c if c.name not in datetimes | jsons | booleans]
    assert all(isinstance(c.type, (sa.Integer, sa.String)) for c in others)


def test_column_sets_and_constants_match_schema():
    assert columns.PIPELINE_RUN_COLUMNS == schema.PIPELINE_RUN_COLUMNS
    assert columns.BLOCK_RUN_COLUMNS == schema.BLOCK_RUN_COLUMNS
    assert columns.BLOCK_RUN_FIELDS == schema.BLOCK_RUN_FIELDS
    for name in ("STATUSES", "UNFINISHED_STATUSES", "FINISHED_STATUSES", "HEAD_REVISION", "utcnow", "to_utc"):
        assert getattr(schema, name) is getattr(columns, name)
    import blockyard.db

    assert blockyard.db.HEAD_REVISION == schema.HEAD_REVISION


def test_fast_path_modules_do_not_import_sqlalchemy():
    code = """
        import sys
        import blockyard.db.sqlite_writes, blockyard.db.recorder, blockyard.db.columns, blockyard.db.common
        import blockyard.db.database
        from blockyard.db import open_database, STATUSES
        db = open_database(sys.argv[1])
        db.safe_url, repr(db), db.dialect, db.sqlite3_writes
        print(sorted(m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'alembic')))
    """
    out = _run_py(code, "/tmp/unused-blockyard-test/x.db")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------- URL handling
@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////tmp/by/x.db",
        "sqlite+pysqlite:////tmp/by/x.db",
        "sqlite:////tmp/by/a%20b.db",
        "sqlite:////tmp/by/a b:c+d@e.db",
        "sqlite:///relative/x.db",
        "/tmp/by/bare.db",
        "~/by-test-bare.db",
    ],
)
def test_url_parsing_and_safe_url_match_database(url, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    core = Database(url, sqlite3_writes=False)
    fast = Database(url)
    try:
        assert fast._url is None  # computed without SQLAlchemy
        assert fast.safe_url == core.safe_url == core.url.render_as_string(hide_password=True)
        assert fast.dialect == core.dialect == "sqlite"
        assert fast.path == os.path.abspath(core.url.database)
        assert repr(fast) == f"Database({core.safe_url!r})"
        assert fast.url == core.url
    finally:
        fast.close()
        core.close()


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite:////tmp/x.db?timeout=3",
        "sqlite:///file:x.db?mode=ro&uri=true",
        "postgresql://u:p@h/d",
        "postgresql+psycopg://u@h/d",
        "mysql://u@h/d",
    ],
)
def test_urls_the_fast_path_does_not_handle_go_through_sqlalchemy(url):
    assert sqlite_file(url) is None
    with pytest.raises(ValueError, match="the sqlite3 fast path needs a SQLite file"):
        Database(url, sqlite3_writes=True)
    if url.startswith("mysql"):
        return
    db = open_database(url)
    try:
        assert isinstance(db, Database) and not db.sqlite3_writes
    finally:
        db.close()


def test_open_database_takes_the_fast_path_for_sqlite_files(tmp_path):
    for url in (f"sqlite:///{tmp_path / 'a.db'}", tmp_path / "b.db", str(tmp_path / "c.db")):
        db = open_database(url)
        try:
            assert isinstance(db, Database) and db.sqlite3_writes
        finally:
            db.close()


def test_pragmas_and_folder(tmp_path):
    path = tmp_path / "x" / "y" / "runs.db"
    db = Database(f"sqlite:///{path}")
    try:
        assert path.parent.is_dir()
        conn = db._writes.conn()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    finally:
        db.close()


def test_processes_opening_a_new_file_at_once(tmp_path):
    # Switching a new file to WAL from several processes at the same moment made
    # SQLite answer "database is locked" at once (without waiting): the connection
    # retries that pragma.
    code = """
        import sys, time
        from blockyard.db import Database
        start = float(sys.argv[1])
        for k in range(6):
            time.sleep(max(0.0, start + 0.25 * k - time.time()))
            db = Database(f"{sys.argv[2]}/new{k}.db")
            db._writes.conn()
            db.close()
        print("ok")
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    start = time.time() + 1.5
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), str(start), str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(4)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0 and out.strip() == "ok", err


# ---------------------------------------------------------------- migration
def test_migration_due_on_a_fresh_file_goes_through_alembic(path):
    db = Database(path)
    try:
        assert db._engine is None
        assert db.migrate() is True  # nothing there yet: alembic, through SQLAlchemy
        assert db._engine is not None
        run_id = db.create_pipeline_run("p", "pipe", {"a": 1}, None, ["x", "y"])
        assert [b["block_uuid"] for b in db.get_block_runs(run_id)] == ["x", "y"]
        assert db.migrate() is False
    finally:
        db.close()
    again = Database(path)
    try:
        assert again.migrate() is False
        assert again._engine is None  # the fast path needed no SQLAlchemy
        assert again.get_pipeline_run(run_id)["variables"] == {"a": 1}
    finally:
        again.close()


def test_migration_from_an_older_revision(path):
    core = Database(path)
    try:
        alembic_migrate(core.engine, "0002_orchestration")
    finally:
        core.close()
    db = Database(path)
    try:
        assert db._writes.current_revision() == "0002_orchestration"
        assert db.migrate() is True
        assert db._writes.current_revision() == schema.HEAD_REVISION
        with db.engine.connect() as conn:  # the new table is there
            assert conn.exec_driver_sql("SELECT count(*) FROM secrets").scalar() == 0
    finally:
        db.close()


# ------------------------------------------------------ cross-compatibility
_FIXED = datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=timezone.utc)


def _populate(db) -> tuple[int, int]:
    """The same writes through either implementation; returns two run ids."""
    variables = {
        "nested": {"list": [1, 2.5, None, True, {"deep": ["x"]}], "empty": {}},
        "unicode": "héllo ✓ 日本語 \u2028 \"quoted\" \\ back",
        "none": None,
        "when": datetime(2024, 1, 1, 12, 0, tzinfo=TOKYO),
        "tuple": (1, 2),
        "path": Path("/tmp/x"),
    }
    run_id = db.create_pipeline_run(
        "proj",
        "pipe",
        variables,
        datetime(2024, 3, 10, 9, 30, 0, 0, tzinfo=TOKYO),  # no microseconds
        ["a", "b", "c"],
        trigger_id=3,
        pid=12345,
        hostname="host-ü",
    )
    queued = db.create_pipeline_run("proj", "pipe", None, None, [], status="queued")
    db.update_pipeline_run(
        run_id,
        created_at=_FIXED,
        started_at=datetime(2024, 2, 29, 23, 59, 58),  # naive: UTC
        lease_expires_at="2024-03-01T08:00:00+09:00",  # a string is parsed
        heartbeat_at=datetime(1999, 12, 31, 23, 59, 59, 1, tzinfo=TOKYO),
        settings={"timeout": 30, "list": [None]},
        metrics=None,
        sla_deadline=None,
        resume_count=2,
    )
    db.update_pipeline_run(
        queued, created_at=_FIXED - timedelta(days=1), execution_date=_FIXED, variables={"s": "ß"}
    )
    db.finish_pipeline_run(
        run_id, "failed", error="boom ✗", error_details={"file": "f.py", "line": 3}, metrics={"seconds": 1.5}
    )
    db.update_pipeline_run(run_id, completed_at=_FIXED + timedelta(seconds=1))
    with db.recorder(interval=30) as rec:
        rec.update_block_run(
            run_id,
            "a",
            status="completed",
            started_at=_FIXED,
            completed_at=datetime(2024, 3, 1, 0, 0, tzinfo=TOKYO),
            attempts=2,
            cache_key="K",
            cache_hit=True,
            output_ref="outputs/a",  # the same in every run, for the byte comparison
            digest="d" * 64,
            tests=[{"name": "t", "passed": True, "message": None}],
            metrics={"rows": 10, "ratio": 0.25, "names": ["é"]},
            log_path="logs/a.log",
        )
        rec.update_block_run(run_id, "b", status="failed", error="bad", traceback="Traceback...", tests=None)
        rec.add_block_run(run_id, "b:0", parent_uuid="b", dynamic_index=0, started_at=_FIXED)
        rec.add_block_run(run_id, "b:1", status="running", parent_uuid="b", dynamic_index=1, cache_hit=False)
    return run_id, queued


def _raw(path: Path, table: str, where: str, params) -> list[tuple]:
    """Every column of the rows as SQLite stores them: (typeof, quote) per column."""
    conn = sqlite3.connect(path)
    try:
        names = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
        names = [n for n in names if n not in ("id", "pipeline_run_id")]
        select = ", ".join(f"typeof({n}), quote({n})" for n in names)
        rows = conn.execute(f"SELECT {select} FROM {table} WHERE {where} ORDER BY id", params).fetchall()
        return [dict(zip(names, zip(r[::2], r[1::2]))) for r in rows]
    finally:
        conn.close()


def test_both_implementations_store_identical_bytes(both, path):
    fast, core = both
    fast_run, fast_queued = _populate(fast)
    full_run, full_queued = _populate(core)
    for a, b in ((fast_run, full_run), (fast_queued, full_queued)):
        assert _raw(path, "pipeline_runs", "id = ?", (a,)) == _raw(path, "pipeline_runs", "id = ?", (b,))
        assert _raw(path, "block_runs", "pipeline_run_id = ?", (a,)) == _raw(
            path, "block_runs", "pipeline_run_id = ?", (b,)
        )
    stored = _raw(path, "pipeline_runs", "id = ?", (fast_run,))[0]
    # SQLAlchemy's SQLite format: naive UTC, microseconds always printed.
    assert stored["execution_date"] == ("text", "'2024-03-10 00:30:00.000000'")
    assert stored["created_at"] == ("text", "'2024-02-29 23:59:58.123456'")
    assert stored["metrics"] == ("text", "'{\"seconds\": 1.5}'")
    assert stored["sla_deadline"] == ("null", "NULL")
    blocks = _raw(path, "block_runs", "pipeline_run_id = ?", (fast_run,))
    assert [b["cache_hit"] for b in blocks] == [("integer", "1")] + [("integer", "0")] * 4
    assert blocks[1]["tests"] == ("null", "NULL")  # Python None in a JSON column is SQL NULL


def test_each_reads_what_the_other_wrote(both):
    fast, core = both
    runs = [_populate(fast), _populate(core)]
    for run_id, queued in runs:
        for rid in (run_id, queued):
            a, b = fast.get_pipeline_run(rid), core.get_pipeline_run(rid)
            assert a == b and list(a) == list(b)
            assert list(a) == list(columns.PIPELINE_RUN_COLUMN_NAMES)
        a, b = fast.get_block_runs(run_id), core.get_block_runs(run_id)
        assert a == b and [list(r) for r in a] == [list(r) for r in b]
        row = fast.get_pipeline_run(run_id)
        assert row["execution_date"] == datetime(2024, 3, 10, 0, 30, tzinfo=timezone.utc)
        assert row["execution_date"].tzinfo is timezone.utc
        assert row["lease_expires_at"] == datetime(2024, 2, 29, 23, 0, tzinfo=timezone.utc)
        assert row["variables"]["unicode"] == "héllo ✓ 日本語 \u2028 \"quoted\" \\ back"
        assert row["variables"]["when"] == "2024-01-01T12:00:00+09:00"
        assert row["variables"]["nested"]["list"] == [1, 2.5, None, True, {"deep": ["x"]}]
        assert row["variables"]["tuple"] == [1, 2] and row["variables"]["path"] == "/tmp/x"
        assert row["metrics"] == {"seconds": 1.5} and row["sla_deadline"] is None
        blocks = {b["block_uuid"]: b for b in fast.get_block_runs(run_id)}
        assert blocks["a"]["cache_hit"] is True and blocks["b"]["cache_hit"] is False
        assert blocks["a"]["tests"] == [{"name": "t", "passed": True, "message": None}]
        assert blocks["b"]["tests"] is None and blocks["b:0"]["attempts"] == 0
        assert blocks["a"]["completed_at"] == datetime(2024, 2, 29, 15, 0, tzinfo=timezone.utc)
    # The queries agree on a database written by both.
    for args in [
        {},
        {"project": "proj"},
        {"status": "failed"},
        {"status": ["queued", "failed"]},
        {"status": []},
        {"pipeline_uuid": "pipe", "limit": 2, "offset": 1},
        {"limit": None, "offset": 3},
    ]:
        assert fast.list_pipeline_runs(**args) == core.list_pipeline_runs(**args)
        count_args = {k: v for k, v in args.items() if k not in ("limit", "offset")}
        assert fast.count_pipeline_runs(**count_args) == core.count_pipeline_runs(**count_args)
    assert fast.latest_pipeline_run("proj", "pipe", "failed") == core.latest_pipeline_run("proj", "pipe", "failed")
    assert fast.latest_pipeline_run("proj", "pipe", None) == core.latest_pipeline_run("proj", "pipe", None)
    assert fast.lookup_cache("K") == core.lookup_cache("K") is not None
    for status in ("completed", "failed", None, "running"):
        assert fast.latest_block_run("proj", "pipe", "b:1", status) == core.latest_block_run(
            "proj", "pipe", "b:1", status
        )
        assert fast.latest_block_run("proj", "pipe", "a", status) == core.latest_block_run("proj", "pipe", "a", status)
    assert fast.get_block_run(runs[1][0], "b:0") == core.get_block_run(runs[1][0], "b:0")


def _same_ids(value, ids: dict[int, int]):
    """`value` (rows, a row, a count) with the database-assigned run ids replaced by
    their position in `ids`, so that two databases' answers can be compared."""
    if isinstance(value, list):
        return [_same_ids(v, ids) for v in value]
    if isinstance(value, dict):
        out = dict(value)
        if "pipeline_run_id" in out:  # a block run
            out.pop("id")
            out["pipeline_run_id"] = ids[out["pipeline_run_id"]]
        elif "id" in out:
            out["id"] = ids[out["id"]]
        return out
    return value


def _reads(db, run_id: int, queued: int) -> list:
    """Every read method of the one (SQLAlchemy Core) implementation, on `_populate`'s rows."""
    answers = [db.get_pipeline_run(run_id), db.get_pipeline_run(queued), db.get_pipeline_run(10**9)]
    answers += [db.get_block_runs(run_id), db.get_block_runs(queued), db.get_block_run(run_id, "b:0")]
    answers.append(db.get_block_run(run_id, "missing"))
    for args in [
        {},
        {"project": "proj"},
        {"status": "failed"},
        {"status": ["queued", "failed"]},
        {"status": []},
        {"pipeline_uuid": "pipe", "limit": 1, "offset": 1},
        {"limit": None, "offset": 1},
    ]:
        answers.append(db.list_pipeline_runs(**args))
        answers.append(db.count_pipeline_runs(**{k: v for k, v in args.items() if k not in ("limit", "offset")}))
    answers += [db.latest_pipeline_run("proj", "pipe", s) for s in ("failed", "queued", None, "completed")]
    answers += [db.lookup_cache("K"), db.lookup_cache("K", [queued]), db.lookup_cache("nope")]
    for status in ("completed", "failed", None, "running"):
        answers += [db.latest_block_run("proj", "pipe", u, status) for u in ("a", "b", "b:1")]
    return answers


@pytest.fixture
def pg_db(pg_url):
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    engine.dispose()
    db = open_database(pg_url)
    db.migrate()
    yield db
    db.close()


def test_same_reads_on_sqlite_fast_path_sqlite_core_and_postgresql(tmp_path, pg_db):
    """The same writes through the sqlite3 fast path, through Core on SQLite and on
    PostgreSQL read back identically through the one read implementation."""
    fast = Database(tmp_path / "fast.db")
    core = Database(tmp_path / "core.db", sqlite3_writes=False)
    try:
        results = []
        for db in (fast, core, pg_db):
            db.migrate()
            run_id, queued = _populate(db)
            results.append(_same_ids(_reads(db, run_id, queued), {run_id: 0, queued: 1}))
        assert fast.sqlite3_writes and not core.sqlite3_writes and pg_db.dialect == "postgresql"
        a, b, c = results
        assert a == b
        assert a == c
    finally:
        fast.close()
        core.close()
    assert a[0]["status"] == "failed" and a[0]["variables"]["unicode"].startswith("héllo")
    assert [r["block_uuid"] for r in a[3]] == ["a", "b", "c", "b:0", "b:1"]
    assert a[0]["execution_date"] == datetime(2024, 3, 10, 0, 30, tzinfo=timezone.utc)
    assert a[3][0]["completed_at"].tzinfo is timezone.utc and a[3][0]["cache_hit"] is True
    assert a[2] is None and a[6] is None  # a missing run, a missing block run


def test_same_errors_as_database(both):
    fast, core = both
    for db in (fast, core):
        run_id = db.create_pipeline_run("p", "pipe", {}, None, ["a"])
        with pytest.raises(sa.exc.IntegrityError):
            db.create_pipeline_run("p", "dup", {}, None, ["a", "a"])
        with pytest.raises(sa.exc.StatementError) as info:
            db.update_pipeline_run(run_id, execution_date="not a date")
        assert not isinstance(info.value, sa.exc.DBAPIError)
        assert isinstance(info.value.orig, ValueError)
        rec = db.recorder(interval=30)
        rec.update_block_run(run_id, "a", cache_hit=2, status="running")  # not a boolean
        rec.add_block_run(run_id, "b", status="completed")
        with pytest.raises(RecorderError) as info:
            rec.flush()
        assert info.value.lost == 1
        assert isinstance(info.value.original, sa.exc.StatementError)
        assert db.get_block_run(run_id, "b")["status"] == "completed"  # retried on its own
        assert db.get_block_run(run_id, "a")["status"] == "initial"
        rec.close()


# -------------------------------------------------- connections and threads
def test_engine_is_created_on_first_use_and_sees_fast_writes(both):
    fast, _ = both
    run_id = fast.create_pipeline_run("p", "pipe", {}, None, ["a"])
    assert fast._engine is None
    assert fast.url.database == str(fast.path)
    with fast.engine.connect() as conn:  # what server/orchestration code does
        assert conn.exec_driver_sql("SELECT count(*) FROM block_runs WHERE pipeline_run_id = ?", (run_id,)).scalar() == 1
    assert fast._engine is not None
    fast.close()
    # Usable again after close(), like Database.
    assert fast.get_pipeline_run(run_id)["id"] == run_id


def test_one_connection_per_thread_and_close_closes_all(path):
    db = Database(path)
    db.migrate()
    run_id = db.create_pipeline_run("p", "pipe", {}, None, [f"b{i}" for i in range(40)])
    seen = []
    barrier = threading.Barrier(4)

    def work(i):
        seen.append(id(db._writes.conn()))
        barrier.wait()  # all alive at once: four distinct connections
        for j in range(10):
            db.update_pipeline_run(run_id, block_count=i * 10 + j)
            assert db.get_pipeline_run(run_id)["id"] == run_id

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(seen)) == 4
    main = db._writes.conn()
    assert db._writes.conn() is main
    db.close()
    with pytest.raises(sqlite3.ProgrammingError):
        main.execute("SELECT 1")
    assert db._writes.conn() is not main


def test_recorder_thread_closes_its_connection(path):
    db = Database(path)
    db.migrate()
    try:
        run_id = db.create_pipeline_run("p", "pipe", {}, None, ["a"])
        before = len(db._writes._holders)
        with db.recorder() as rec:
            rec.update_block_run(run_id, "a", status="completed")
            rec.flush()
            assert len(db._writes._holders) == before + 1
        assert len(db._writes._holders) == before
        assert db.get_block_run(run_id, "a")["status"] == "completed"
    finally:
        db.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_does_not_reuse_the_parents_connection(path):
    db = Database(path)
    db.migrate()
    run_id = db.create_pipeline_run("p", "pipe", {}, None, ["a"])
    parent_conn = db._writes.conn()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            ok = db._writes.conn() is not parent_conn
            child_run = db.create_pipeline_run("p", "child", {}, None, ["x"])
            ok = ok and db.get_pipeline_run(run_id)["pipeline_uuid"] == "pipe"
            db.close()
            os.write(write_end, f"{int(ok)} {child_run}".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    message = os.read(read_end, 100).decode()
    os.close(read_end)
    assert os.waitstatus_to_exitcode(status) == 0
    ok, child_run = message.split()
    assert ok == "1"
    # The parent's connection still works, and sees the child's run.
    assert db._writes.conn() is parent_conn
    assert db.get_pipeline_run(int(child_run))["pipeline_uuid"] == "child"
    db.close()


def test_recover_orphans_matches_database(both):
    fast, core = both
    host = socket.gethostname()
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    dead = proc.pid
    orphans = [db.create_pipeline_run("p", "pipe", {}, None, ["a", "b"], pid=dead, hostname=host) for db in both]
    leased = fast.create_pipeline_run("p", "pipe", {}, None, ["a"], pid=dead, hostname=host)
    fast.update_pipeline_run(leased, lease_owner="worker-1")
    assert fast.recover_orphans() == 2
    assert core.recover_orphans() == 0
    for run_id in orphans:
        run = core.get_pipeline_run(run_id)
        assert run["status"] == "failed" and run["error"].startswith(f"the process running it (pid {dead})")
        assert {b["status"] for b in core.get_block_runs(run_id)} == {"failed"}
    assert fast.get_pipeline_run(leased)["status"] == "running"


# ---------------------------------------------------- `blockyard run` path
def _run_py(code: str, *args: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


def test_blockyard_run_on_sqlite_imports_no_sqlalchemy(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    write_pipeline(root, "bench", "two", [
        block("a", "@data_loader\ndef a():\n    return 1\n", type="data_loader"),
        block("b", "@transformer\ndef b(x):\n    return x + 1\n", type="transformer", upstream=["a"]),
    ])
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLOCKYARD_")}
    env["BLOCKYARD_WORKSPACE"] = str(root)
    code = """
        import sys
        from blockyard.cli import main
        sys.argv = ["blockyard", "run", "bench/two", *sys.argv[1:]]
        try:
            main()
        except SystemExit as exc:
            code = exc.code
        else:
            code = 0
        # smtplib: the alert senders load only when a run has someone to alert.
        loaded = sorted({m.split(".")[0] for m in sys.modules} & {"sqlalchemy", "alembic", "smtplib"})
        print("EXIT", code, "LOADED", ",".join(loaded) or "-")
    """
    # First run: the database is created, so the migration imports both.
    first = _run_py(code, "-q", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "EXIT 0 LOADED alembic,sqlalchemy" in first.stdout, first.stdout
    # Already migrated: neither is imported, with or without the cache or live view.
    for args in (["-q"], ["-q", "--no-cache"], []):
        again = _run_py(code, *args, env=env, cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert "EXIT 0 LOADED -" in again.stdout, (args, again.stdout, again.stderr)
    db = Database(root / ".blockyard" / "blockyard.db")
    try:
        runs = db.list_pipeline_runs(pipeline_uuid="two")
        assert [r["status"] for r in runs] == ["completed"] * 4
        blocks = db.get_block_runs(runs[0]["id"])
        assert [(b["block_uuid"], b["status"]) for b in blocks] == [("a", "completed"), ("b", "completed")]
        assert all(b["completed_at"].tzinfo is timezone.utc for b in blocks)
    finally:
        db.close()


def test_session_db_takes_the_fast_path_for_sqlite(tmp_path, monkeypatch):
    from blockyard.session import Session
    from blockyard.project import Workspace

    monkeypatch.delenv("BLOCKYARD_HOME", raising=False)
    monkeypatch.delenv("BLOCKYARD_DATABASE_URL", raising=False)
    root = tmp_path / "ws"
    root.mkdir()
    write_pipeline(root, "p", "pipe", [block("a", "@custom\ndef a():\n    return 1\n")])
    session = Session(Workspace.open(root))
    try:
        assert session.db.sqlite3_writes
        assert session.db._writes.current_revision() == schema.HEAD_REVISION
    finally:
        session.close()
