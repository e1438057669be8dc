"""LiteDatabase (stdlib sqlite3) against Database (SQLAlchemy): same schema facts, same
stored bytes, same answers; and `blockyard run` on SQLite without SQLAlchemy.

The behaviour of every method is also covered by tests/test_db.py, which runs each
test against LiteDatabase too (the "sqlite-lite" parameter)."""
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

from blockyard.db import Database, LiteDatabase, open_database
from blockyard.db import columns, schema
from blockyard.db.lite import sqlite_file
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
    """(LiteDatabase, Database) on the same migrated file."""
    full = Database(path)
    full.migrate()
    lite = LiteDatabase(path)
    yield lite, full
    lite.close()
    full.close()


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


def test_lite_modules_do_not_import_sqlalchemy():
    code = """
        import sys
        import blockyard.db.lite, blockyard.db.recorder, blockyard.db.columns, blockyard.db.common
        from blockyard.db import open_database, STATUSES
        open_database(sys.argv[1])
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
    full = Database(url)
    lite = LiteDatabase(url)
    try:
        assert lite.safe_url == full.safe_url
        assert lite.dialect == full.dialect == "sqlite"
        assert lite.path == os.path.abspath(full.url.database)
        assert repr(lite) == f"LiteDatabase({full.safe_url!r})"
    finally:
        lite.close()
        full.close()


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
def test_urls_lite_does_not_handle_go_to_database(url):
    assert sqlite_file(url) is None
    with pytest.raises(ValueError, match="LiteDatabase needs a SQLite file"):
        LiteDatabase(url)
    if url.startswith("mysql"):
        return
    db = open_database(url)
    try:
        assert isinstance(db, Database)
    finally:
        db.close()


def test_open_database_gives_lite_for_sqlite_files(tmp_path):
    for url in (f"sqlite:///{tmp_path / 'a.db'}", tmp_path / "b.db", str(tmp_path / "c.db")):
        db = open_database(url)
        try:
            assert isinstance(db, LiteDatabase)
        finally:
            db.close()


def test_pragmas_and_folder(tmp_path):
    path = tmp_path / "x" / "y" / "runs.db"
    db = LiteDatabase(f"sqlite:///{path}")
    try:
        assert path.parent.is_dir()
        conn = db._conn()
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
        from blockyard.db.lite import LiteDatabase
        start = float(sys.argv[1])
        for k in range(6):
            time.sleep(max(0.0, start + 0.25 * k - time.time()))
            db = LiteDatabase(f"{sys.argv[2]}/new{k}.db")
            db._conn()
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
    db = LiteDatabase(path)
    try:
        assert db._full is None
        assert db.migrate() is True  # nothing there yet: Database.migrate() and alembic
        assert db._full is not None
        run_id = db.create_pipeline_run("p", "pipe", {"a": 1}, None, ["x", "y"])
        assert [b["block_uuid"] for b in db.get_block_runs(run_id)] == ["x", "y"]
        assert db.migrate() is False
    finally:
        db.close()
    again = LiteDatabase(path)
    try:
        assert again.migrate() is False
        assert again._full is None  # the fast path needed no SQLAlchemy
        assert again.get_pipeline_run(run_id)["variables"] == {"a": 1}
    finally:
        again.close()


def test_migration_from_an_older_revision(path):
    full = Database(path)
    try:
        alembic_migrate(full.engine, "0002_orchestration")
    finally:
        full.close()
    db = LiteDatabase(path)
    try:
        assert db._current_revision() == "0002_orchestration"
        assert db.migrate() is True
        assert db._current_revision() == schema.HEAD_REVISION
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
    lite, full = both
    lite_run, lite_queued = _populate(lite)
    full_run, full_queued = _populate(full)
    for a, b in ((lite_run, full_run), (lite_queued, full_queued)):
        assert _raw(path, "pipeline_runs", "id = ?", (a,)) == _raw(path, "pipeline_runs", "id = ?", (b,))
        assert _raw(path, "block_runs", "pipeline_run_id = ?", (a,)) == _raw(
            path, "block_runs", "pipeline_run_id = ?", (b,)
        )
    stored = _raw(path, "pipeline_runs", "id = ?", (lite_run,))[0]
    # SQLAlchemy's SQLite format: naive UTC, microseconds always printed.
    assert stored["execution_date"] == ("text", "'2024-03-10 00:30:00.000000'")
    assert stored["created_at"] == ("text", "'2024-02-29 23:59:58.123456'")
    assert stored["metrics"] == ("text", "'{\"seconds\": 1.5}'")
    assert stored["sla_deadline"] == ("null", "NULL")
    blocks = _raw(path, "block_runs", "pipeline_run_id = ?", (lite_run,))
    assert [b["cache_hit"] for b in blocks] == [("integer", "1")] + [("integer", "0")] * 4
    assert blocks[1]["tests"] == ("null", "NULL")  # Python None in a JSON column is SQL NULL


def test_each_reads_what_the_other_wrote(both):
    lite, full = both
    runs = [_populate(lite), _populate(full)]
    for run_id, queued in runs:
        for rid in (run_id, queued):
            a, b = lite.get_pipeline_run(rid), full.get_pipeline_run(rid)
            assert a == b and list(a) == list(b)
            assert list(a) == list(columns.PIPELINE_RUN_COLUMN_NAMES)
        a, b = lite.get_block_runs(run_id), full.get_block_runs(run_id)
        assert a == b and [list(r) for r in a] == [list(r) for r in b]
        row = lite.get_pipeline_run(run_id)
        assert row["execution_date"] == datetime(2024, 3, 10, 0, 30, tzinfo=timezone.utc)
        assert row["execution_date"].tzinfo is timezone.utc
        assert row["lease_expires_at"] == datetime(2024, 2, 29, 23, 0, tzinfo=timezone.utc)
        assert row["variables"]["unicode"] == "héllo ✓ 日本語 \u2028 \"quoted\" \\ back"
        assert row["variables"]["when"] == "2024-01-01T12:00:00+09:00"
        assert row["variables"]["nested"]["list"] == [1, 2.5, None, True, {"deep": ["x"]}]
        assert row["variables"]["tuple"] == [1, 2] and row["variables"]["path"] == "/tmp/x"
        assert row["metrics"] == {"seconds": 1.5} and row["sla_deadline"] is None
        blocks = {b["block_uuid"]: b for b in lite.get_block_runs(run_id)}
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
        assert lite.list_pipeline_runs(**args) == full.list_pipeline_runs(**args)
        count_args = {k: v for k, v in args.items() if k not in ("limit", "offset")}
        assert lite.count_pipeline_runs(**count_args) == full.count_pipeline_runs(**count_args)
    assert lite.latest_pipeline_run("proj", "pipe", "failed") == full.latest_pipeline_run("proj", "pipe", "failed")
    assert lite.latest_pipeline_run("proj", "pipe", None) == full.latest_pipeline_run("proj", "pipe", None)
    assert lite.lookup_cache("K") == full.lookup_cache("K") is not None
    for status in ("completed", "failed", None, "running"):
        assert lite.latest_block_run("proj", "pipe", "b:1", status) == full.latest_block_run(
            "proj", "pipe", "b:1", status
        )
        assert lite.latest_block_run("proj", "pipe", "a", status) == full.latest_block_run("proj", "pipe", "a", status)
    assert lite.get_block_run(runs[1][0], "b:0") == full.get_block_run(runs[1][0], "b:0")


def test_same_errors_as_database(both):
    lite, full = both
    for db in (lite, full):
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
def test_delegates_to_a_sqlalchemy_database_on_the_same_file(both):
    lite, _ = both
    run_id = lite.create_pipeline_run("p", "pipe", {}, None, ["a"])
    assert lite._full is None
    assert lite.url.database == str(lite.path)
    with lite.engine.connect() as conn:  # what server/orchestration code does
        assert conn.exec_driver_sql("SELECT count(*) FROM block_runs WHERE pipeline_run_id = ?", (run_id,)).scalar() == 1
    assert isinstance(lite._full, Database)
    with pytest.raises(AttributeError):
        lite._no_such_private_name
    lite.close()
    # Usable again after close(), like Database.
    assert lite.get_pipeline_run(run_id)["id"] == run_id


def test_one_connection_per_thread_and_close_closes_all(path):
    db = LiteDatabase(path)
    db.migrate()
    run_id = db.create_pipeline_run("p", "pipe", {}, None, [f"b{i}" for i in range(40)])
    seen = []
    barrier = threading.Barrier(4)

    def work(i):
        seen.append(id(db._conn()))
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
    main = db._conn()
    assert db._conn() is main
    db.close()
    with pytest.raises(sqlite3.ProgrammingError):
        main.execute("SELECT 1")
    assert db._conn() is not main


def test_recorder_thread_closes_its_connection(path):
    db = LiteDatabase(path)
    db.migrate()
    try:
        run_id = db.create_pipeline_run("p", "pipe", {}, None, ["a"])
        before = len(db._holders)
        with db.recorder() as rec:
            rec.update_block_run(run_id, "a", status="completed")
            rec.flush()
            assert len(db._holders) == before + 1
        assert len(db._holders) == before
        assert db.get_block_run(run_id, "a")["status"] == "completed"
    finally:
        db.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_does_not_reuse_the_parents_connection(path):
    db = LiteDatabase(path)
    db.migrate()
    run_id = db.create_pipeline_run("p", "pipe", {}, None, ["a"])
    parent_conn = db._conn()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            ok = db._conn() is not parent_conn
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
    assert db._conn() is parent_conn
    assert db.get_pipeline_run(int(child_run))["pipeline_uuid"] == "child"
    db.close()


def test_recover_orphans_matches_database(both):
    lite, full = both
    host = socket.gethostname()
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    dead = proc.pid
    orphans = [db.create_pipeline_run("p", "pipe", {}, None, ["a", "b"], pid=dead, hostname=host) for db in both]
    leased = lite.create_pipeline_run("p", "pipe", {}, None, ["a"], pid=dead, hostname=host)
    lite.update_pipeline_run(leased, lease_owner="worker-1")
    assert lite.recover_orphans() == 2
    assert full.recover_orphans() == 0
    for run_id in orphans:
        run = full.get_pipeline_run(run_id)
        assert run["status"] == "failed" and run["error"].startswith(f"the process running it (pid {dead})")
        assert {b["status"] for b in full.get_block_runs(run_id)} == {"failed"}
    assert lite.get_pipeline_run(leased)["status"] == "running"


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
        loaded = sorted({m.split(".")[0] for m in sys.modules} & {"sqlalchemy", "alembic"})
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


def test_session_db_is_lite_for_sqlite(tmp_path, monkeypatch):
    from blockyard.engine.session import Session
    from blockyard.project import Workspace

    monkeypatch.delenv("BLOCKYARD_HOME", raising=False)
    monkeypatch.delenv("BLOCKYARD_DATABASE_URL", raising=False)
    root = tmp_path / "ws"
    root.mkdir()
    write_pipeline(root, "p", "pipe", [block("a", "@custom\ndef a():\n    return 1\n")])
    session = Session(Workspace.open(root))
    try:
        assert isinstance(session.db, LiteDatabase)
        assert session.db._current_revision() == schema.HEAD_REVISION
    finally:
        session.close()
