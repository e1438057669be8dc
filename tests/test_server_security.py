"""Issue 10, server side, against real `blockyard start` processes (SQLite and the real
PostgreSQL where the database matters): the Host allow-list (DNS rebinding), values
that cannot be stored, the file guard, name/interval limits, connection handling."""
from __future__ import annotations

import http.client
import json
import socket
import sqlite3
from pathlib import Path

import pytest
import yaml

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from test_server_support import ServerProcess, make_workspace  # noqa: E402


def call(port: int, method: str, path: str, *, host: str | None = None, headers: dict | None = None,
         body: bytes | str | dict | None = None, conn: http.client.HTTPConnection | None = None):
    """One request with exactly the headers given (Host included): (status, parsed body)."""
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host or f"127.0.0.1:{port}")
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else (body if isinstance(body, str) else json.dumps(body)).encode()
            conn.putheader("Content-Type", "application/json")
            conn.putheader("Content-Length", str(len(data)))
        conn.endheaders(data)
        r = conn.getresponse()
        raw = r.read()
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw.decode("utf-8", "replace")
        return r.status, parsed
    finally:
        if own:
            conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
def db_env(request):
    if request.param == "postgres":
        return {"BLOCKYARD_DATABASE_URL": request.getfixturevalue("pg_url")}
    return {}


@pytest.fixture
def server_factory(tmp_path):
    started = []

    def start(space, *args, env=None):
        s = ServerProcess(space.root, "--role", "web", *args, env=env)
        started.append(s)
        s.wait_ready()
        return s

    yield start
    for s in started:
        assert s.stop() == 0, s.output()


# ------------------------------------------------------------------ 1. DNS rebinding
def test_foreign_host_is_refused_before_any_handler(tmp_path, server_factory):
    """What a DNS-rebinding page sends: Host and Origin of the attacker's name, and
    Sec-Fetch-Site: same-origin (the browser thinks it is). Nothing may be written or run."""
    space = make_workspace(tmp_path)
    server = server_factory(space, env={"BLOCKYARD_ALLOWED_HOSTS": "blockyard.lan, *.corp.example"})
    port = server.port
    evil = f"evil.example:{port}"
    attack = {"Origin": f"http://{evil}", "Sec-Fetch-Site": "same-origin"}
    block_file = space.root / space.project / "custom" / "pwned.py"
    status, body = call(port, "POST", f"/api/projects/{space.project}/pipelines/echo/blocks", host=evil,
                        headers=attack, body={"uuid": "pwned", "type": "custom", "code": "x = 1\n"})
    assert status in (400, 421), body
    assert "host" in body["detail"].lower() and "BLOCKYARD_ALLOWED_HOSTS" in body["detail"]
    assert not block_file.exists()
    status, _ = call(port, "POST", f"/api/pipelines/{space.project}/echo/runs", host=evil, headers=attack, body={})
    assert status in (400, 421)
    for path in ("/api/projects", "/", "/api/status"):  # reads (and the UI) too: rebinding reads answers
        assert call(port, "GET", path, host=evil)[0] in (400, 421), path
    assert httpx.get(server.url + "/api/runs").json()["total"] == 0

    # Loopback names on any port, the configured names, and the bound address are fine.
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}", "127.0.0.1:1",
                 f"blockyard.lan:{port}", f"api.corp.example:{port}", f"LOCALHOST:{port}"):
        assert call(port, "GET", "/api/projects", host=host)[0] == 200, host
    assert call(port, "GET", "/api/projects", host=f"corp.example.evil.example:{port}")[0] in (400, 421)
    assert call(port, "GET", "/api/projects", host=f"localhost.evil.example:{port}")[0] in (400, 421)

    # A write from a page of another origin, sent to an allowed Host, is refused even
    # when Sec-Fetch-Site claims same-origin.
    status, body = call(port, "POST", f"/api/pipelines/{space.project}/echo/runs",
                        headers={"Origin": f"http://{evil}", "Sec-Fetch-Site": "same-origin"}, body={})
    assert status == 403, body
    # The UI's own page (same origin) and clients without Origin can write.
    status, _ = call(port, "POST", f"/api/pipelines/{space.project}/echo/runs",
                     headers={"Origin": f"http://127.0.0.1:{port}"}, body={})
    assert status == 201
    status, _ = call(port, "POST", f"/api/pipelines/{space.project}/echo/runs", body={})
    assert status == 201


# ------------------------------------------------------- 6. values that break storage
BAD_VALUES = {
    "lone surrogate": '"\\ud800"',
    "NUL": '"a\\u0000b"',
    "NaN": "NaN",
    "Infinity": "Infinity",
    "-Infinity": "-Infinity",
    "overflowing number": "1e400",
}


def test_unstorable_values_are_422_before_anything_is_stored(tmp_path, server_factory, db_env):
    space = make_workspace(tmp_path)
    server = server_factory(space, env=db_env)
    port = server.port
    meta = space.root / space.project / "pipelines" / "echo" / "metadata.yaml"
    trig = httpx.post(server.url + "/api/triggers", json={"name": "api", "project": space.project,
                                                          "pipeline_uuid": "echo", "schedule_type": "api"})
    assert trig.status_code == 201, trig.text
    triggers_yaml = space.root / space.project / "pipelines" / "echo" / "triggers.yaml"
    before = (meta.read_bytes(), triggers_yaml.read_bytes())
    for what, literal in BAD_VALUES.items():
        raw = '{"variables": {"x": {"deep": [1, %s]}}}' % literal
        status, body = call(port, "POST", f"/api/pipelines/{space.project}/echo/runs", body=raw)
        assert status == 422, (what, body)
        assert "variables.x.deep.1" in body["detail"], (what, body)
        status, body = call(port, "PUT", f"/api/triggers/{trig.json()['id']}", body=raw)
        assert status == 422, (what, body)
        status, body = call(port, "PUT", f"/api/projects/{space.project}/pipelines/echo/variables", body=raw)
        assert status == 422, (what, body)
        # The key of an object counts too.
        status, body = call(port, "POST", f"/api/pipelines/{space.project}/echo/runs",
                            body='{"variables": {"a\\u0000": 1}}')
        assert status == 422, body
    assert (meta.read_bytes(), triggers_yaml.read_bytes()) == before
    assert httpx.get(server.url + "/api/runs").status_code == 200  # the whole list still reads
    runs = httpx.get(server.url + "/api/runs", params={"project": space.project})
    assert runs.status_code == 200 and runs.json()["total"] == 0
    assert httpx.get(server.url + "/api/triggers").status_code == 200
    # A NUL in a query parameter is a 4xx too, never a database error.
    status, _ = call(port, "GET", "/api/runs?pipeline=a%00b")
    assert 400 <= status < 500
    # Ordinary values, escapes included, still pass.
    ok = '{"variables": {"x": "caf\\u00e9 \\ud83d\\ude00", "n": 1e300, "t": "tab\\tend"}}'
    status, body = call(port, "POST", f"/api/pipelines/{space.project}/echo/runs", body=ok)
    assert status == 201, body
    assert httpx.get(server.url + f"/api/runs/{body['id']}").json()["variables"]["x"] == "caf\u00e9 \U0001F600"


# ------------------------------------------------- 7. one guard for every file access
def _point_block_at(space, pipeline: str, block: str, target: str) -> None:
    meta = space.root / space.project / "pipelines" / pipeline / "metadata.yaml"
    data = yaml.safe_load(meta.read_text())
    for entry in data["blocks"]:
        if entry["uuid"] == block:
            entry.setdefault("configuration", {})["file_source"] = {"path": target}
    meta.write_text(yaml.safe_dump(data))


def test_code_endpoints_never_reach_keys_databases_or_outside(tmp_path, server_factory):
    space = make_workspace(tmp_path)
    server = server_factory(space)
    port = server.port
    data_dir = space.root / ".blockyard"
    key = data_dir / "secret.key"
    key.write_text("KEY-MATERIAL-DO-NOT-SHOW")
    assert httpx.post(f"{server.url}/api/pipelines/{space.project}/echo/runs", json={}).status_code == 201
    db_file = data_dir / "blockyard.db"
    assert db_file.is_file()
    (space.root / "deploy.key").write_text("OTHER-KEY")
    (space.root / "cache.sqlite3").write_bytes(b"SQLite format 3\x00")

    code_url = f"/api/projects/{space.project}/pipelines/pipe/code/load"
    for target in (".blockyard/secret.key", f"{space.root.name}/.blockyard/secret.key", "deploy.key",
                   ".blockyard/blockyard.db", "cache.sqlite3"):
        _point_block_at(space, "pipe", "load", target)
        status, body = call(port, "GET", code_url)
        assert status == 403, (target, body)
        assert "KEY-MATERIAL" not in json.dumps(body) and "OTHER-KEY" not in json.dumps(body)
        status, body = call(port, "PUT", code_url, body={"code": "x = 1\n"})
        assert status == 403, (target, body)
    assert key.read_text() == "KEY-MATERIAL-DO-NOT-SHOW"
    assert (space.root / "deploy.key").read_text() == "OTHER-KEY"
    # The database is intact: runs still list and new ones are stored.
    assert httpx.get(server.url + "/api/runs").json()["total"] == 1
    assert httpx.post(f"{server.url}/api/pipelines/{space.project}/echo/runs", json={}).status_code == 201
    with sqlite3.connect(db_file) as conn:
        assert conn.execute("select count(*) from pipeline_runs").fetchone()[0] == 2

    # Adding a block under a type folder that is a symlink leaving the workspace.
    outside = tmp_path / "outside"
    outside.mkdir()
    charts = space.root / space.project / "charts"
    if charts.exists():
        charts.rmdir()
    charts.symlink_to(outside, target_is_directory=True)
    status, body = call(port, "POST", f"/api/projects/{space.project}/pipelines/pipe/blocks",
                        body={"uuid": "chart_out", "type": "chart", "upstream_blocks": ["frame"]})
    assert status == 403, body
    assert list(outside.iterdir()) == []
    meta = yaml.safe_load((space.root / space.project / "pipelines" / "pipe" / "metadata.yaml").read_text())
    assert "chart_out" not in [w.get("uuid") for w in meta.get("widgets") or []]
    # A block file inside the workspace but in the data folder (symlinked type folder).
    custom = space.root / space.project / "custom"
    custom.rename(space.root / space.project / "custom_real")
    custom.symlink_to(data_dir, target_is_directory=True)
    status, body = call(port, "POST", f"/api/projects/{space.project}/pipelines/pipe/blocks",
                        body={"uuid": "secret", "type": "custom", "code": "x = 1\n"})
    assert status == 403, body
    assert key.read_text() == "KEY-MATERIAL-DO-NOT-SHOW" and not (data_dir / "secret.py").exists()
    # Ordinary blocks still work.
    status, body = call(port, "POST", f"/api/projects/{space.project}/pipelines/pipe/blocks",
                        body={"uuid": "more", "type": "transformer", "upstream_blocks": ["load"]})
    assert status == 201, body


def test_the_guard_behind_deps_inside(tmp_path):
    """deps.inside (used by other routes, e.g. a file browser) applies the full guard."""
    from blockyard.project import Workspace
    from blockyard.project.paths import PathRefused, guard_path
    from blockyard.server.deps import inside
    from blockyard.server.errors import Forbidden
    from blockyard.server.state import AppState

    space = make_workspace(tmp_path)
    ws = Workspace.open(space.root)
    st = AppState(ws)
    (space.root / ".blockyard").mkdir(exist_ok=True)
    for rel in (".blockyard/blockyard.db", ".blockyard", "x.db", "x.db-wal", "x.sqlite-shm", "a/b.key",
                "secret.key", "x.sqlite", "x.db-journal"):
        with pytest.raises(Forbidden):
            inside(st, space.root / rel, "file")
        with pytest.raises(PathRefused):
            guard_path(space.root / rel, ws)
    link = space.root / "escape"
    link.symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(Forbidden):
        inside(st, link / "x.py", "file")
    ok = inside(st, space.root / space.project / "custom" / "echo.py", "file")
    assert ok == (space.root / space.project / "custom" / "echo.py").resolve()
    assert inside(st, space.root, "workspace") == space.root.resolve()


# ------------------------------------------------------------------------ 9. smaller
def test_long_names_and_huge_intervals_are_422(tmp_path, server_factory):
    space = make_workspace(tmp_path)
    server = server_factory(space)
    port = server.port
    long = "n" * 300
    cases = [
        ("POST", "/api/projects", {"name": long}),
        ("POST", f"/api/projects/{space.project}/pipelines", {"uuid": long}),
        ("POST", f"/api/projects/{space.project}/pipelines/pipe/blocks", {"uuid": long, "type": "custom"}),
        ("POST", f"/api/projects/{space.project}/pipelines/pipe/blocks",
         {"uuid": "/".join(["d" * 200] * 3), "type": "custom"}),
        ("PATCH", f"/api/projects/{space.project}/pipelines/pipe/blocks/load", {"uuid": long}),
        ("POST", "/api/triggers", {"name": "big", "project": space.project, "pipeline_uuid": "pipe",
                                   "schedule_type": "time", "schedule_interval": "every 999999999999w"}),
        ("POST", "/api/triggers", {"name": "big", "project": space.project, "pipeline_uuid": "pipe",
                                   "schedule_type": "time", "schedule_interval": "999999999999999999999"}),
    ]
    for method, path, body in cases:
        status, answer = call(port, method, path, body=body)
        assert status == 422, (path, body, answer)
        assert "too long" in answer["detail"] or "too large" in answer["detail"], answer
    for path in (f"/api/projects/{long}", f"/api/projects/{space.project}/pipelines/{long}",
                 f"/api/pipelines/{long}/runs", f"/api/projects/{space.project}/pipelines/pipe/code/{long}"):
        method = "POST" if path.endswith("/runs") else "GET"
        status, answer = call(port, method, path, body={} if method == "POST" else None)
        assert 400 <= status < 500, (path, answer)
    assert not any(p.name.startswith("nnnn") for p in space.root.rglob("*"))


def test_a_short_body_does_not_hold_the_connection(tmp_path, server_factory):
    """Content-Length promises more than is sent: the server answers 408 and closes."""
    space = make_workspace(tmp_path)
    server = server_factory(space, env={"BLOCKYARD_BODY_TIMEOUT": "1"})
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(
            f"POST /api/pipelines/{space.project}/echo/runs HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"vari".encode()
        )
        received = b""
        while True:
            chunk = sock.recv(65536)  # socket.timeout (30 s) fails the test
            if not chunk:
                break  # closed by the server
            received += chunk
    assert received.startswith(b"HTTP/1.1 408"), received
    assert httpx.get(server.url + "/api/runs").json()["total"] == 0


def test_the_connection_survives_a_500(tmp_path, server_factory):
    """An unexpected server error (here: the run history's table is gone) answers 500, and
    the next request on the same keep-alive connection is answered."""
    space = make_workspace(tmp_path)
    server = server_factory(space)
    db_file = space.root / ".blockyard" / "blockyard.db"
    with sqlite3.connect(db_file) as conn:
        conn.execute("alter table pipeline_runs rename to pipeline_runs_gone")
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        status, body = call(server.port, "GET", "/api/runs", conn=conn)
        assert status == 500 and "internal error" in body["detail"]
        status, body = call(server.port, "GET", "/api/projects", conn=conn)
        assert status == 200, body
        status, body = call(server.port, "GET", "/api/runs", conn=conn)
        assert status == 500
        status, body = call(server.port, "GET", "/api/projects", conn=conn)
        assert status == 200
    finally:
        conn.close()
        with sqlite3.connect(db_file) as c:
            c.execute("alter table pipeline_runs_gone rename to pipeline_runs")


# --------------------------------- 6. a trigger's file and row change together or not at all
@pytest.fixture
def trigger_store(tmp_path, db_env, monkeypatch):
    """A TriggerStore on the real database, and `refuse(word)`: from then on the database
    itself refuses a trigger row whose variables contain `word` (a CHECK constraint on
    PostgreSQL, a RAISE trigger on SQLite) -- a real failure after the file was written."""
    from blockyard.session import reset_sessions, session_for
    from blockyard.orchestration.triggers import TriggerStore
    from blockyard.project import Workspace

    for key, value in db_env.items():
        monkeypatch.setenv(key, value)
    space = make_workspace(tmp_path)
    ws = Workspace.open(space.root)
    db = session_for(ws).db
    store = TriggerStore(ws, db)
    undo = []

    def refuse(word: str) -> None:
        import sqlalchemy as sa

        with db.engine.begin() as conn:
            if db.dialect == "postgresql":
                conn.execute(sa.text(f"ALTER TABLE pipeline_schedules ADD CONSTRAINT refuse_{word} "
                                     f"CHECK (variables::text NOT LIKE '%{word}%')"))
                undo.append(f"ALTER TABLE pipeline_schedules DROP CONSTRAINT refuse_{word}")
            else:
                for event in ("INSERT", "UPDATE"):
                    conn.exec_driver_sql(f"CREATE TRIGGER refuse_{word}_{event} BEFORE {event} ON pipeline_schedules "
                                         f"WHEN NEW.variables LIKE '%{word}%' BEGIN SELECT RAISE(ABORT, 'refused'); END")
                    undo.append(f"DROP TRIGGER refuse_{word}_{event}")

    store.space, store.refuse = space, refuse
    yield store
    with db.engine.begin() as conn:
        for statement in undo:
            conn.exec_driver_sql(statement)
    reset_sessions()


def test_trigger_file_and_row_change_together(trigger_store):
    from blockyard.orchestration.triggers import TriggerError

    store, space = trigger_store, trigger_store.space
    word = f"refused{space.project}"
    path = space.root / space.project / "pipelines" / "pipe" / "triggers.yaml"
    created = store.create({"name": "nightly", "project": space.project, "pipeline_uuid": "pipe",
                            "schedule_type": "time", "schedule_interval": "@daily", "variables": {"v": 1}})
    before = (path.read_bytes(), store.get(created["id"]))
    # Values no database can store are refused with the key named, nothing written.
    for bad in ("a\x00b", "\ud800", float("nan"), float("inf")):
        with pytest.raises(TriggerError, match=r"variables\.v"):
            store.update(created["id"], {"variables": {"v": bad}})
    assert (path.read_bytes(), store.get(created["id"])) == before
    store.refuse(word)
    with pytest.raises(Exception):
        store.update(created["id"], {"variables": {"v": word}})
    assert (path.read_bytes(), store.get(created["id"])) == before
    with pytest.raises(Exception):
        store.update(created["id"], {"name": "renamed", "variables": {"v": word}})
    assert (path.read_bytes(), store.get(created["id"])) == before
    with pytest.raises(Exception):
        store.create({"name": "other", "project": space.project, "pipeline_uuid": "pipe",
                      "schedule_type": "api", "variables": {"v": word}})
    assert path.read_bytes() == before[0]
    assert store.find(space.project, "pipe", "other") is None
    # Fresh file for a pipeline without triggers: removed again.
    echo_file = space.root / space.project / "pipelines" / "echo" / "triggers.yaml"
    with pytest.raises(Exception):
        store.create({"name": "x", "project": space.project, "pipeline_uuid": "echo",
                      "schedule_type": "api", "variables": {"v": word}})
    assert not echo_file.exists()
    # And what works still works.
    assert store.update(created["id"], {"variables": {"v": 2}})["variables"] == {"v": 2}
    assert "v: 2" in path.read_text()


def test_scheduler_logs_a_lasting_sync_error_once(trigger_store, caplog):
    """A triggers.yaml the database refuses: the scheduler retries at its sync interval and
    logs the error once, instead of retrying (and logging) in a tight loop."""
    import logging
    import threading
    import time

    from blockyard.orchestration.scheduler import Scheduler

    store, space = trigger_store, trigger_store.space
    word = f"refused{space.project}"
    path = space.root / space.project / "pipelines" / "pipe" / "triggers.yaml"
    store.create({"name": "nightly", "project": space.project, "pipeline_uuid": "pipe",
                  "schedule_type": "time", "schedule_interval": "@daily", "variables": {"v": 1}})
    store.refuse(word)
    scheduler = Scheduler(store.workspace, store.db, sync_interval=0.05, full_sync_interval=0.05)
    syncs = []
    real_sync = scheduler.store.sync
    scheduler.store.sync = lambda **kw: (syncs.append(1), real_sync(**kw))[1]
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run_forever, args=(stop,), daemon=True)
    caplog.set_level(logging.INFO, logger="blockyard")
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not syncs and time.monotonic() < deadline:
            time.sleep(0.02)
        path.write_text(path.read_text().replace("v: 1", f"v: {word}"))  # an edit by hand

        def failures():
            return [r for r in caplog.records if "syncing triggers.yaml files failed" in r.getMessage()]

        while not failures() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert failures(), "the refused file never failed a sync"
        seen = len(syncs)
        while len(syncs) < seen + 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(syncs) >= seen + 5  # it kept retrying ...
    finally:
        stop.set()
        thread.join(30)
    assert len(failures()) == 1, len(failures())  # ... and said so once


def test_a_sixth_cron_field_is_the_seconds_written_last():
    """What docs/orchestration.md says about 6-field cron expressions."""
    from datetime import datetime, timezone

    from blockyard.orchestration.schedules import parse_schedule

    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    sched = parse_schedule("*/5 * * * * 30")
    first = sched.next_after(start)
    assert (first.minute, first.second) == (0, 30)
    second = sched.next_after(first)
    assert (second.minute, second.second) == (5, 30)
    other = parse_schedule("30 */5 * * * *").next_after(start)
    assert (other.hour, other.minute, other.second) == (0, 30, 0)
