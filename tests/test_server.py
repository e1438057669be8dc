"""The HTTP API, in process (FastAPI's TestClient): every resource, the Mage-compatible
endpoints, idempotency, auth, path safety, size limits. Run creation and the Mage
endpoints also run against the real PostgreSQL server."""
from __future__ import annotations

import json
import os
import uuid
import warnings

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

with warnings.catch_warnings():  # starlette's note about httpx2
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient  # noqa: E402

from blockyard.api import run_pipeline  # noqa: E402
from blockyard.session import reset_sessions  # noqa: E402
from blockyard.server.app import create_app  # noqa: E402
from blockyard.server.config import ServerConfig  # noqa: E402
from test_server_support import make_workspace  # noqa: E402

TOKEN = "s3cret-token-for-tests"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith("BLOCKYARD_"):
            monkeypatch.delenv(key)
    yield
    reset_sessions()


@pytest.fixture
def space(tmp_path):
    return make_workspace(tmp_path)


@pytest.fixture
def client(space):
    with TestClient(create_app(space.root)) as c:
        yield c


@pytest.fixture(params=["sqlite", "postgres"])
def db_client(request, tmp_path, monkeypatch):
    """A client on SQLite, then on the real PostgreSQL server."""
    if request.param == "postgres":
        monkeypatch.setenv("BLOCKYARD_DATABASE_URL", request.getfixturevalue("pg_url"))
    space = make_workspace(tmp_path)
    with TestClient(create_app(space.root)) as c:
        c.space = space
        yield c


def completed_run(space, **variables):
    """A finished run of `pipe`, executed in this process."""
    return run_pipeline(space.ref, workspace=space.root, variables=variables)


# ---------------------------------------------------------------------- status
def test_status_and_index(client):
    status = client.get("/api/status")
    assert status.status_code == 200
    body = status.json()
    assert body["status"] == "ok"
    assert body["database"] == {"dialect": "sqlite", "reachable": True, "error": None}
    assert body["version"]
    assert body["runs"] == {"queued": 0, "running": 0}
    assert body["scheduler_heartbeat_age"] is None and body["workers"] == 0
    index = client.get("/")
    assert index.status_code == 200 and "<html" in index.text.lower()  # the web UI
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert "/api/pipeline_schedules/{schedule_id}/pipeline_runs/{token}" in schema["paths"]


# -------------------------------------------------------- projects, pipelines
def test_projects_and_pipelines(client, space):
    projects = client.get("/api/projects").json()
    assert projects == [{"name": space.project, "path": space.project, "pipelines": ["echo", "pipe", "slow"]}]
    listed = client.get(f"/api/projects/{space.project}/pipelines").json()
    assert [p["uuid"] for p in listed] == ["echo", "pipe", "slow"]
    assert {p["uuid"] for p in client.get("/api/pipelines").json()} == {"echo", "pipe", "slow"}

    pipe = client.get(space.pipeline_url()).json()
    assert pipe["variables"] == {"n": 2}
    blocks = {b["uuid"]: b for b in pipe["blocks"]}
    assert blocks["load"]["type"] == "data_loader"
    assert blocks["load"]["downstream_blocks"] == ["square", "frame"]
    assert blocks["square"]["upstream_blocks"] == ["load"]
    assert blocks["square"]["dynamic"] is False
    assert blocks["square"]["file_path"] == f"{space.project}/transformers/square.py"

    missing = client.get(f"/api/projects/{space.project}/pipelines/nope")
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]
    assert client.get("/api/projects/nope/pipelines").status_code == 404


def test_update_variables(client, space):
    r = client.put(space.pipeline_url() + "/variables", json={"variables": {"n": 7, "target": "duration"}})
    assert r.status_code == 200, r.text
    assert r.json()["variables"] == {"n": 7, "target": "duration"}
    assert client.get(space.pipeline_url()).json()["variables"] == {"n": 7, "target": "duration"}
    meta = (space.root / space.project / "pipelines" / "pipe" / "metadata.yaml").read_text()
    assert "target: duration" in meta
    bad = client.put(space.pipeline_url() + "/variables", json={"variables": [1, 2]})
    assert bad.status_code == 422


# ------------------------------------------------------------------------ code
def test_block_code_read_write(client, space):
    url = space.pipeline_url() + "/code/square"
    got = client.get(url).json()
    assert got["path"] == f"{space.project}/transformers/square.py" and "def square" in got["code"]
    new = "@transformer\ndef square(x, **kwargs):\n    return x * x * 1\n"
    put = client.put(url, json={"code": new})
    assert put.status_code == 200, put.text
    assert (space.root / space.project / "transformers" / "square.py").read_text() == new


def test_code_with_syntax_error_is_422_and_file_unchanged(client, space):
    path = space.root / space.project / "transformers" / "square.py"
    before = path.read_text()
    r = client.put(space.pipeline_url() + "/code/square", json={"code": "def broken(:\n    pass\n"})
    assert r.status_code == 422
    body = r.json()
    assert "syntax error" in body["detail"]
    assert body["error"]["file"] == f"{space.project}/transformers/square.py"
    assert body["error"]["line"] == 1
    assert path.read_text() == before


# ---------------------------------------------------------------------- blocks
def test_blocks_add_rename_connect_remove(client, space):
    base = space.pipeline_url()
    added = client.post(base + "/blocks", json={"uuid": "export", "type": "data_exporter", "upstream_blocks": ["square"]})
    assert added.status_code == 201, added.text
    assert added.json()["upstream_blocks"] == ["square"]
    assert (space.root / space.project / "data_exporters" / "export.py").is_file()
    assert client.post(base + "/blocks", json={"uuid": "export", "type": "data_exporter"}).status_code == 409
    assert client.post(base + "/blocks", json={"uuid": "x", "type": "nonsense"}).status_code == 422

    renamed = client.patch(base + "/blocks/export", json={"uuid": "save"})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["uuid"] == "save"
    assert (space.root / space.project / "data_exporters" / "save.py").is_file()
    assert not (space.root / space.project / "data_exporters" / "export.py").exists()

    edge = client.post(base + "/edges", json={"upstream": "frame", "downstream": "save"})
    assert edge.status_code == 200
    save = {b["uuid"]: b for b in edge.json()["blocks"]}["save"]
    assert save["upstream_blocks"] == ["square", "frame"]
    cycle = client.patch(base + "/blocks/load", json={"upstream_blocks": ["save"]})
    assert cycle.status_code == 422 and "cycle" in cycle.json()["detail"]
    unknown = client.patch(base + "/blocks/save", json={"upstream_blocks": ["ghost"]})
    assert unknown.status_code == 422
    cut = client.delete(base + "/edges", params={"upstream": "square", "downstream": "save"})
    assert {b["uuid"]: b for b in cut.json()["blocks"]}["save"]["upstream_blocks"] == ["frame"]
    assert client.get(base + "/blocks/save").json()["upstream_blocks"] == ["frame"]

    removed = client.delete(base + "/blocks/save", params={"delete_file": "true"})
    assert removed.status_code == 200
    assert "save" not in [b["uuid"] for b in removed.json()["blocks"]]
    assert not (space.root / space.project / "data_exporters" / "save.py").exists()
    assert client.get(base + "/blocks/save").status_code == 404
    assert client.delete(base + "/blocks/save").status_code == 404


def test_block_with_code_and_subfolder(client, space):
    base = space.pipeline_url()
    code = "@custom\ndef tune(*args, **kwargs):\n    return 1\n"
    r = client.post(base + "/blocks", json={"uuid": "tuning/sk", "type": "custom", "code": code})
    assert r.status_code == 201, r.text
    assert client.get(base + "/code/tuning/sk").json()["code"] == code
    bad = client.post(base + "/blocks", json={"uuid": "oops", "type": "custom", "code": "def (:"})
    assert bad.status_code == 422
    assert not (space.root / space.project / "custom" / "oops.py").exists()


# --------------------------------------------------------------- path safety
@pytest.mark.parametrize("block", ["..%2F..%2Fsettings.yaml", "%2E%2E/%2E%2E/etc/passwd", "a/%2E%2E/%2E%2E/b", "a/../../b"])
def test_path_traversal_in_block_is_refused(client, space, block):
    for url in (space.pipeline_url() + "/code/" + block, space.pipeline_url() + "/blocks/" + block):
        r = client.get(url)
        assert r.status_code in (400, 403, 404), (url, r.status_code)
        assert "projects:" not in r.text and "root:" not in r.text
    r = client.put(space.pipeline_url() + "/code/" + block, json={"code": "x = 1\n"})
    assert 400 <= r.status_code < 500


def test_path_traversal_in_names_and_bodies(client, space):
    assert client.get("/api/projects/%2E%2E/pipelines").status_code == 400
    assert client.get(f"/api/projects/{space.project}/pipelines/%2E%2E").status_code == 400
    r = client.post(space.pipeline_url() + "/blocks", json={"uuid": "../../evil", "type": "custom", "code": "x = 1\n"})
    assert r.status_code == 400 and "no '..'" in r.json()["detail"]
    r = client.post(space.pipeline_url() + "/blocks", json={"uuid": "/tmp/evil", "type": "custom"})
    assert r.status_code == 400
    assert not (space.root.parent / "evil.py").exists()
    r = client.post("/api/pipelines/..%2F..%2Fx/runs", json={})
    assert r.status_code in (400, 404)
    assert client.get("/api/runs/1/logs", params={"block": "../../../etc/passwd"}).status_code in (400, 404)


def test_symlink_outside_workspace_is_refused(client, space, tmp_path):
    outside = tmp_path / "outside.py"
    outside.write_text("SECRET = 'do not show'\n")
    path = space.root / space.project / "transformers" / "square.py"
    path.unlink()
    path.symlink_to(outside)
    r = client.get(space.pipeline_url() + "/code/square")
    assert r.status_code == 403 and "outside the workspace" in r.json()["detail"]
    assert "do not show" not in r.text
    w = client.put(space.pipeline_url() + "/code/square", json={"code": "x = 2\n"})
    assert w.status_code == 403
    assert outside.read_text() == "SECRET = 'do not show'\n"


def test_request_too_large_is_413(space):
    with TestClient(create_app(space.root, ServerConfig(max_body_bytes=1000))) as c:
        r = c.put(space.pipeline_url() + "/code/square", json={"code": "x = 1\n" * 1000})
        assert r.status_code == 413 and "too large" in r.json()["detail"]

        def chunks():  # no Content-Length: counted while it streams
            for _ in range(100):
                yield b" " * 100

        r = c.put(space.pipeline_url() + "/code/square", content=chunks(),
                  headers={"content-type": "application/json"})
        assert r.status_code == 413
    with TestClient(create_app(space.root)) as c:  # default limit: 5 MB
        big = {"code": "#" * (6 * 1024 * 1024)}
        assert c.put(space.pipeline_url() + "/code/square", json=big).status_code == 413


def test_bad_requests_are_4xx_with_a_message(client, space):
    r = client.post(f"/api/pipelines/{space.ref}/runs", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "invalid request" in r.json()["detail"]
    r = client.post(f"/api/pipelines/{space.ref}/runs", json={"variables": "nope"})
    assert r.status_code == 422
    assert client.get("/api/runs/abc").status_code == 422
    assert client.get("/api/runs/999999").status_code == 404
    assert client.get("/api/runs", params={"status": "bogus"}).status_code == 400
    assert client.get("/api/runs", params={"limit": 0}).status_code == 422
    assert client.get("/api/nowhere").status_code == 404


# ------------------------------------------------------------------------ runs
def test_create_run_queues_it_with_variables(db_client):
    space = db_client.space
    r = db_client.post(f"/api/pipelines/{space.ref}/runs", json={"variables": {"n": 3, "key": "value"}})
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["status"] == "queued" and run["variables"] == {"n": 3, "key": "value"}
    assert run["project"] == space.project and run["pipeline_uuid"] == "pipe"
    got = db_client.get(f"/api/runs/{run['id']}").json()
    assert got["id"] == run["id"] and got["status"] == "queued"
    # Mage's trigger_pipeline client: bare uuid, schedule_name, GET by pipeline.
    bare = db_client.post("/api/pipelines/echo/runs", json={"variables": {}, "schedule_name": "x"})
    assert bare.status_code == 201
    again = db_client.get(f"/api/pipelines/echo/runs/{bare.json()['id']}")
    assert again.status_code == 200 and again.json()["status"] == "queued"
    assert db_client.get(f"/api/pipelines/pipe/runs/{bare.json()['id']}").status_code == 404
    assert db_client.post("/api/pipelines/nope/runs", json={}).status_code == 404


def test_idempotency_key_returns_the_same_run(db_client):
    space = db_client.space
    key = str(uuid.uuid4())
    url = f"/api/pipelines/{space.ref}/runs"
    first = db_client.post(url, json={"variables": {"n": 1}}, headers={"Idempotency-Key": key}).json()
    second = db_client.post(url, json={"variables": {"n": 1}}, headers={"Idempotency-Key": key}).json()
    other = db_client.post(url, json={"variables": {"n": 1}}, headers={"Idempotency-Key": key + "-2"}).json()
    plain = [db_client.post(url, json={}).json()["id"] for _ in range(2)]
    assert first["id"] == second["id"]
    assert other["id"] != first["id"] and len(set(plain)) == 2
    listed = db_client.get("/api/runs", params={"pipeline": space.ref}).json()
    assert listed["total"] == 4
    assert db_client.post(url, json={}, headers={"Idempotency-Key": " "}).status_code == 400


def test_list_runs_filters_and_pagination(client, space):
    ids = [client.post(f"/api/pipelines/{space.ref}/runs", json={"variables": {"i": i}}).json()["id"] for i in range(5)]
    client.post(f"/api/pipelines/{space.project}/echo/runs", json={})
    done = completed_run(space)
    page = client.get("/api/runs", params={"pipeline": space.ref, "limit": 2, "offset": 1}).json()
    assert page["total"] == 6 and page["limit"] == 2 and page["offset"] == 1
    assert [r["id"] for r in page["runs"]] == [ids[4], ids[3]]
    assert client.get("/api/runs", params={"pipeline": "pipe", "status": "queued"}).json()["total"] == 5
    assert client.get("/api/runs", params={"status": "completed"}).json()["runs"][0]["id"] == done.run_id
    assert client.get("/api/runs", params={"status": "queued,completed"}).json()["total"] == 7
    assert client.get("/api/runs", params={"project": space.project}).json()["total"] == 7
    assert client.get("/api/runs", params={"trigger_id": 42}).json()["total"] == 0
    assert client.get("/api/runs", params={"since": "2999-01-01T00:00:00Z"}).json()["total"] == 0
    assert client.get("/api/runs", params={"until": "2999-01-01T00:00:00Z"}).json()["total"] == 7
    assert client.get("/api/runs", params={"since": "2000-01-01"}).json()["total"] == 7
    per_pipeline = client.get(f"/api/pipelines/{space.ref}/runs", params={"limit": 1}).json()
    assert per_pipeline["total"] == 6 and len(per_pipeline["runs"]) == 1


def test_cancel_and_retry(client, space):
    queued = client.post(f"/api/pipelines/{space.ref}/runs", json={}).json()
    cancelled = client.post(f"/api/runs/{queued['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = client.post(f"/api/runs/{queued['id']}/cancel")
    assert again.status_code == 409 and "already finished" in again.json()["detail"]
    assert client.post("/api/runs/999999/cancel").status_code == 404

    failed = completed_run(space, fail=True)
    assert failed.status == "failed"
    retry = client.post(f"/api/runs/{failed.run_id}/retry")
    assert retry.status_code == 201, retry.text
    new = retry.json()
    assert new["status"] == "queued" and new["retry_of"] == failed.run_id and new["variables"]["fail"] is True
    ok = completed_run(space)
    assert client.post(f"/api/runs/{ok.run_id}/retry").status_code == 409
    assert client.post(f"/api/runs/{new['id']}/retry").status_code == 409


def test_block_runs_logs_and_outputs(client, space):
    run = completed_run(space, n=4)
    assert run.ok
    block_runs = client.get(f"/api/runs/{run.run_id}/block_runs").json()
    by_uuid = {b["block_uuid"]: b for b in block_runs}
    assert set(by_uuid) == {"load", "square", "frame"}
    assert by_uuid["load"]["status"] == "completed" and by_uuid["load"]["has_log"] is True
    assert by_uuid["square"]["has_log"] is False

    text = client.get(f"/api/runs/{run.run_id}/logs", params={"block": "load"})
    assert text.status_code == 200 and text.headers["content-type"].startswith("text/plain")
    assert "loading 4" in text.text
    everything = client.get(f"/api/runs/{run.run_id}/logs").text
    assert "==> load [completed]" in everything and "loading 4" in everything
    assert client.get(f"/api/runs/{run.run_id}/logs", params={"block": "nope"}).status_code == 404

    out = client.get(f"/api/runs/{run.run_id}/outputs", params={"block": "frame"})
    assert out.status_code == 200, out.text
    entry = out.json()["outputs"][0]
    assert entry["summary"]["shape"] == [2, 2] and entry["summary"]["columns"] == ["a", "b"]
    assert entry["sample"] == [{"a": 4, "b": "u"}, {"a": 5, "b": "v"}]
    sq = client.get(f"/api/runs/{run.run_id}/outputs", params={"block": "square"}).json()
    assert sq["outputs"][0]["sample"] == 16
    queued = client.post(f"/api/pipelines/{space.ref}/runs", json={}).json()
    assert client.get(f"/api/runs/{queued['id']}/outputs", params={"block": "load"}).status_code == 404


def test_sse_stream_of_a_finished_run(client, space):
    run = completed_run(space, n=3)
    with client.stream("GET", f"/api/runs/{run.run_id}/logs/stream") as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        body = "".join(r.iter_text())
    events = [line[7:] for line in body.splitlines() if line.startswith("event: ")]
    assert events[-1] == "end" and "run" in events and "status" in events
    assert '"line": "loading 3"' in body
    assert client.get("/api/runs/999999/logs/stream").status_code == 404


# ---------------------------------------------------------------- triggers
def test_triggers_crud(client, space):
    payload = {
        "name": "nightly", "project": space.project, "pipeline_uuid": "pipe",
        "schedule_type": "time", "schedule_interval": "@daily", "start_time": "2024-01-01T00:00:00Z",
        "variables": {"n": 5}, "status": "inactive",
    }
    created = client.post("/api/triggers", json=payload)
    assert created.status_code == 201, created.text
    trig = created.json()
    assert trig["schedule_interval"] == "@daily" and trig["variables"] == {"n": 5}
    assert "nightly" in (space.root / space.project / "pipelines" / "pipe" / "triggers.yaml").read_text()
    dup = client.post("/api/triggers", json=payload)
    assert dup.status_code == 409 and "nightly" in dup.json()["detail"]
    invalid = client.post("/api/triggers", json={**payload, "name": "other", "schedule_interval": None})
    assert invalid.status_code == 422 and "schedule_interval" in invalid.json()["detail"]
    assert [t["id"] for t in client.get("/api/triggers", params={"pipeline": "pipe"}).json()] == [trig["id"]]
    assert client.get("/api/triggers", params={"pipeline": "echo"}).json() == []
    assert client.get(f"/api/triggers/{trig['id']}").json()["name"] == "nightly"
    updated = client.put(f"/api/triggers/{trig['id']}", json={"schedule_interval": "@hourly"})
    assert updated.status_code == 200 and updated.json()["schedule_interval"] == "@hourly"
    assert client.post("/api/triggers", json={"name": "x"}).status_code == 422
    assert client.post("/api/triggers", json={"name": "x", "pipeline_uuid": "nope"}).status_code == 404
    assert client.delete(f"/api/triggers/{trig['id']}").status_code == 204
    assert client.get(f"/api/triggers/{trig['id']}").status_code == 404
    assert client.delete(f"/api/triggers/{trig['id']}").status_code == 404


# ---------------------------------------------------------------- backfills
def test_backfills(client, space):
    r = client.post("/api/backfills", json={
        "pipeline": space.ref, "start": "2024-01-01T00:00:00Z", "end": "2024-01-03T00:00:00Z",
        "interval": "day", "variables": {"n": 2},
    })
    assert r.status_code == 201, r.text
    bf = r.json()
    assert bf["total_runs"] == 3 and bf["status"] == "running"
    runs = client.get("/api/runs", params={"backfill_id": bf["id"]}).json()
    assert runs["total"] == 3
    assert {r["variables"]["interval_start_datetime"][:10] for r in runs["runs"]} == {"2024-01-01", "2024-01-02", "2024-01-03"}
    assert [b["id"] for b in client.get("/api/backfills").json()] == [bf["id"]]
    assert client.get(f"/api/backfills/{bf['id']}").json()["queued"] == 3
    cancelled = client.post(f"/api/backfills/{bf['id']}/cancel").json()
    assert cancelled["status"] == "cancelled" and cancelled["cancelled"] == 3
    assert client.get("/api/backfills/999").status_code == 404
    assert client.post("/api/backfills/999/cancel").status_code == 404
    bad = client.post("/api/backfills", json={"pipeline": space.ref, "start": "2024-01-02", "end": "2024-01-01", "interval": "day"})
    assert bad.status_code == 422
    odd = client.post("/api/backfills", json={"pipeline": space.ref, "start": "2024-01-01", "end": "2024-01-02", "interval": "fortnight"})
    assert odd.status_code == 400 and "interval" in odd.json()["detail"]


# ----------------------------------------------------------- Mage endpoints
def api_trigger(client, space, pipeline="echo", **extra):
    r = client.post("/api/triggers", json={
        "name": f"api_{uuid.uuid4().hex[:6]}", "project": space.project, "pipeline_uuid": pipeline,
        "schedule_type": "api", "variables": {"from_trigger": 1}, **extra,
    })
    assert r.status_code == 201, r.text
    return r.json()


def test_mage_api_trigger_with_the_seed_payload(db_client):
    space = db_client.space
    trig = api_trigger(db_client, space)
    # curl -X POST http://localhost:6789/api/pipeline_schedules/1/pipeline_runs/<token> \
    #   -H 'Content-Type: application/json' -d '{"pipeline_run": {"variables": {"key": "value"}}}'
    r = db_client.post(
        f"/api/pipeline_schedules/{trig['id']}/pipeline_runs/{trig['token']}",
        headers={"Content-Type": "application/json"},
        content='{"pipeline_run": {"variables": {"key": "value"}}}',
    )
    assert r.status_code == 200, r.text
    run = r.json()["pipeline_run"]
    assert run["status"] == "queued" and run["pipeline_schedule_id"] == trig["id"]
    assert run["variables"] == {"from_trigger": 1, "key": "value"}
    stored = db_client.get(f"/api/runs/{run['id']}").json()
    assert stored["trigger_id"] == trig["id"] and stored["pipeline_uuid"] == "echo"
    assert db_client.get("/api/runs", params={"trigger_id": trig["id"]}).json()["total"] == 1
    # No body at all is fine too (Mage's curl without -d).
    empty = db_client.post(f"/api/pipeline_schedules/{trig['id']}/pipeline_runs/{trig['token']}")
    assert empty.status_code == 200 and empty.json()["pipeline_run"]["variables"] == {"from_trigger": 1}


def test_mage_api_trigger_rejects_wrong_token_and_unknown_id(db_client):
    space = db_client.space
    trig = api_trigger(db_client, space)
    payload = {"pipeline_run": {"variables": {"key": "value"}}}
    wrong = db_client.post(f"/api/pipeline_schedules/{trig['id']}/pipeline_runs/not-the-token", json=payload)
    assert wrong.status_code == 401
    unknown = db_client.post(f"/api/pipeline_schedules/987654/pipeline_runs/{trig['token']}", json=payload)
    assert unknown.status_code == 404
    inactive = api_trigger(db_client, space, status="inactive")
    off = db_client.post(f"/api/pipeline_schedules/{inactive['id']}/pipeline_runs/{inactive['token']}", json=payload)
    assert off.status_code == 409
    timed = db_client.post("/api/triggers", json={
        "name": "t", "project": space.project, "pipeline_uuid": "echo", "schedule_type": "time",
        "schedule_interval": "@daily"}).json()
    assert db_client.post(f"/api/pipeline_schedules/{timed['id']}/pipeline_runs/x", json=payload).status_code == 401
    assert db_client.get("/api/runs", params={"pipeline": f"{space.project}/echo"}).json()["total"] == 0


def test_mage_api_trigger_idempotency(db_client):
    space = db_client.space
    trig = api_trigger(db_client, space)
    url = f"/api/pipeline_schedules/{trig['id']}/pipeline_runs/{trig['token']}"
    key = {"Idempotency-Key": str(uuid.uuid4())}
    a = db_client.post(url, json={"pipeline_run": {"variables": {"key": 1}}}, headers=key).json()
    b = db_client.post(url, json={"pipeline_run": {"variables": {"key": 1}}}, headers=key).json()
    assert a["pipeline_run"]["id"] == b["pipeline_run"]["id"]


def test_mage_block_run_returns_the_output(db_client):
    space = db_client.space
    # No stored upstream output yet: the whole pipeline runs and frame's output comes back.
    first = db_client.post("/api/runs", json={"run": {"pipeline_uuid": space.ref, "block_uuid": "frame", "variables": {"n": 5}}})
    assert first.status_code == 200, first.text
    run = first.json()["run"]
    assert run["mode"] == "pipeline" and run["status"] == "completed"
    assert run["output"] == [{"a": 5, "b": "u"}, {"a": 6, "b": "v"}]
    # Now load has stored output (5): square runs alone on it.
    second = db_client.post("/api/runs", json={"run": {"pipeline_uuid": "pipe", "block_uuid": "square", "variables": {"n": 9}}}).json()["run"]
    assert second["mode"] == "block" and second["output"] == 25 and second["status"] == "completed"
    block_runs = db_client.get(f"/api/runs/{second['pipeline_run_id']}/block_runs").json()
    assert [b["block_uuid"] for b in block_runs] == ["square"]
    # Variables reach the block's kwargs.
    echo = db_client.post("/api/runs", json={"run": {"pipeline_uuid": space.ref.replace("pipe", "echo"),
                                                     "block_uuid": "echo", "variables": {"key": "value"}}}).json()["run"]
    assert echo["output"] == {"key": "value", "n": None, "from_trigger": None}
    failed = db_client.post("/api/runs", json={"run": {"pipeline_uuid": space.ref, "block_uuid": "load", "variables": {"fail": True}}}).json()["run"]
    assert failed["status"] == "failed" and "asked to fail" in failed["error"] and failed["output"] is None
    missing = db_client.post("/api/runs", json={"run": {"pipeline_uuid": space.ref, "block_uuid": "nope"}})
    assert missing.status_code == 404
    assert db_client.post("/api/runs", json={"pipeline_uuid": "pipe"}).status_code == 422


# ---------------------------------------------------------------------- auth
def test_auth_with_a_server_token(space):
    with TestClient(create_app(space.root, ServerConfig(token=TOKEN))) as c:
        assert c.get("/api/status").status_code == 200
        assert c.get("/api/status").json()["auth"] is True
        assert c.get("/").status_code == 200
        missing = c.get("/api/projects")
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert c.get("/api/projects", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/api/projects", headers={"Authorization": TOKEN}).status_code == 401
        ok = {"Authorization": f"Bearer {TOKEN}"}
        assert c.get("/api/projects", headers=ok).status_code == 200
        assert c.post(f"/api/pipelines/{space.ref}/runs", json={}).status_code == 401
        assert c.put(space.pipeline_url() + "/code/square", json={"code": "x=1\n"}).status_code == 401
        assert c.post(f"/api/pipelines/{space.ref}/runs", json={}, headers=ok).status_code == 201

        # POST /api/runs: the server token or one of the pipeline's API trigger tokens.
        body = {"run": {"pipeline_uuid": space.ref.replace("pipe", "echo"), "block_uuid": "echo", "variables": {"key": "k"}}}
        assert c.post("/api/runs", json=body).status_code == 401
        assert c.post("/api/runs", json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
        ghost = {"run": {"pipeline_uuid": "ghost", "block_uuid": "x"}}
        assert c.post("/api/runs", json=ghost, headers={"Authorization": "Bearer nope"}).status_code == 401
        assert c.post("/api/runs", json=ghost, headers=ok).status_code == 404
        assert c.post("/api/runs", json=body, headers=ok).json()["run"]["output"]["key"] == "k"
        created = c.post("/api/triggers", headers=ok, json={
            "name": "inference", "project": space.project, "pipeline_uuid": "echo", "schedule_type": "api"}).json()
        with_trigger = c.post("/api/runs", json=body, headers={"Authorization": f"Bearer {created['token']}"})
        assert with_trigger.status_code == 200
        # The Mage trigger URL carries its own token: no server token needed.
        fired = c.post(f"/api/pipeline_schedules/{created['id']}/pipeline_runs/{created['token']}",
                       json={"pipeline_run": {"variables": {"key": "value"}}})
        assert fired.status_code == 200


def test_trigger_token_is_redacted_from_access_logs():
    import logging

    from blockyard.server.service import RedactTokens

    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "POST", "/api/pipeline_schedules/3/pipeline_runs/abcDEF123?x=1", "1.1", 200), None)
    RedactTokens().filter(record)
    line = record.getMessage()
    assert "abcDEF123" not in line and "/pipeline_runs/***" in line


def test_jsonify_outputs():
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp

    from blockyard.server.jsonify import to_jsonable

    frame = pd.DataFrame({"a": [1, None], "t": pd.to_datetime(["2024-01-01", None])})
    assert to_jsonable(frame) == [{"a": 1.0, "t": "2024-01-01T00:00:00"}, {"a": None, "t": None}]
    assert to_jsonable(np.array([[1.5, np.nan]])) == [[1.5, None]]
    assert to_jsonable((np.int64(3), np.float32(0.5), "x")) == [3, 0.5, "x"]
    assert to_jsonable(pd.Series([1, 2])) == [1, 2]
    assert to_jsonable(sp.csr_matrix(np.eye(2)))["data"] == [[1.0, 0.0], [0.0, 1.0]]
    assert to_jsonable(float("inf")) is None
    json.dumps(to_jsonable({"obj": object()}))


def test_cross_site_writes_are_refused(client):
    """CSRF: a browser page on another site cannot drive the API; curl-like clients can."""
    other = client.post("/api/pipelines/x/runs", json={}, headers={"Origin": "https://evil.example"})
    assert other.status_code == 403 and "cross-site" in other.json()["detail"]
    fetched = client.post("/api/pipelines/x/runs", json={}, headers={"Sec-Fetch-Site": "cross-site"})
    assert fetched.status_code == 403
    same = client.post("/api/pipelines/x/runs", json={}, headers={"Origin": "http://testserver"})
    assert same.status_code != 403
    plain = client.post("/api/pipelines/x/runs", json={})
    assert plain.status_code != 403
    assert client.get("/api/status", headers={"Origin": "https://evil.example"}).status_code == 200


# ------------------------------------------- create project/pipeline, charts, upstream
def test_create_project_and_pipeline(client, space):
    r = client.post("/api/projects", json={"name": "made_here"})
    assert r.status_code == 201, r.text
    assert r.json() == {"name": "made_here", "path": "made_here", "pipelines": []}
    assert (space.root / "made_here" / "metadata.yaml").is_file()
    assert "made_here" in {p["name"] for p in client.get("/api/projects").json()}
    assert client.post("/api/projects", json={"name": "made_here"}).status_code == 409
    assert client.post("/api/projects", json={"name": space.project}).status_code == 409
    for bad in ("bad name", "../up", "a/b", ""):
        bad_r = client.post("/api/projects", json={"name": bad})
        assert bad_r.status_code == 422, (bad, bad_r.text)
        assert bad_r.json()["detail"]
    assert not (space.root.parent / "up").exists()

    url = "/api/projects/made_here/pipelines"
    r = client.post(url, json={"uuid": "data_prep", "name": "Data preparation", "description": "d", "tags": ["t1"]})
    assert r.status_code == 201, r.text
    pipe = r.json()
    assert (pipe["project"], pipe["uuid"], pipe["name"], pipe["description"]) == ("made_here", "data_prep", "Data preparation", "d")
    assert pipe["tags"] == ["t1"] and pipe["blocks"] == []
    assert (space.root / "made_here" / "pipelines" / "data_prep" / "metadata.yaml").is_file()
    assert client.get("/api/projects/made_here/pipelines/data_prep").json()["tags"] == ["t1"]
    assert client.post(url, json={"uuid": "plain"}).json()["name"] == "plain"
    assert client.post(url, json={"uuid": "data_prep"}).status_code == 409
    assert client.post(url, json={"uuid": "bad/uuid"}).status_code == 422
    assert client.post("/api/projects/nope/pipelines", json={"uuid": "x"}).status_code == 404


def test_chart_data_from_stored_output(client, space):
    r = client.post(f"{space.pipeline_url()}/blocks",
                    json={"uuid": "frame_bar", "type": "chart", "upstream_blocks": ["frame"],
                          "configuration": {"chart_type": "bar chart", "x": "b", "y": "a"}})
    assert r.status_code == 201, r.text
    url = f"{space.pipeline_url()}/charts/frame_bar"
    missing = client.get(url)
    assert missing.status_code == 404 and "no stored output" in missing.json()["detail"]
    assert completed_run(space).ok
    chart = client.get(url)
    assert chart.status_code == 200, chart.text
    assert chart.json()["type"] == "bar chart" and chart.json()["data"]["x"] == ["u", "v"]
    assert client.get(f"{space.pipeline_url()}/charts/nope").status_code == 404
    assert client.get(f"/api/projects/{space.project}/pipelines/nope/charts/frame_bar").status_code == 404


def test_run_block_with_upstream_is_queued_and_runs_its_ancestors(client, space):
    from blockyard.orchestration.worker import Worker
    from blockyard.project import Workspace

    url = f"/api/pipelines/{space.ref}/runs"
    r = client.post(url, json={"block": "square", "with_upstream": True, "variables": {"n": 3}})
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["status"] == "queued" and run["block"] == "square" and run["with_upstream"] is True
    assert client.post(url, json={"block": "nope", "with_upstream": True}).status_code == 404
    assert client.post(url, json={"with_upstream": True}).status_code == 422
    assert client.post(url, json={"block": "../x"}).status_code == 400

    worker = Worker(Workspace.open(space.root), client.app.state.blockyard.db, concurrency=1)
    worker.run_once()
    assert worker.wait_idle(timeout=60)
    done = client.get(f"/api/runs/{run['id']}").json()
    assert done["status"] == "completed", done
    block_runs = client.get(f"/api/runs/{run['id']}/block_runs").json()
    assert sorted(b["block_uuid"] for b in block_runs) == ["load", "square"]  # not `frame`
    assert all(b["status"] == "completed" for b in block_runs)
    outputs = client.get(f"/api/runs/{run['id']}/outputs", params={"block": "square"})
    assert outputs.status_code == 200, outputs.text
    assert "9" in outputs.text


# ------------------------------------------------------------------------ pipeline edit / delete
def test_patch_pipeline_name_description_tags(client, space):
    url = space.pipeline_url()
    r = client.patch(url, json={"name": "Squares", "description": "Squares numbers", "tags": ["demo", " ml ", "demo", ""]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["name"], body["description"], body["tags"]) == ("Squares", "Squares numbers", ["demo", "ml"])
    meta = (space.root / space.project / "pipelines" / "pipe" / "metadata.yaml").read_text()
    assert "name: Squares" in meta and "description: Squares numbers" in meta and "- ml" in meta
    # only the fields sent change; the blocks and variables are untouched
    r = client.patch(url, json={"tags": []})
    assert r.status_code == 200 and r.json()["name"] == "Squares" and r.json()["tags"] == []
    assert r.json()["variables"] == {"n": 2} and len(r.json()["blocks"]) == len(client.get(url).json()["blocks"])
    r = client.patch(url, json={"description": ""})
    assert r.json()["description"] is None
    listed = {p["uuid"]: p for p in client.get(f"/api/projects/{space.project}/pipelines").json()}
    assert listed["pipe"]["name"] == "Squares"

    assert client.patch(url, json={"name": "  "}).status_code == 422
    assert client.patch(url, json={"tags": "demo"}).status_code == 422
    assert client.patch(f"/api/projects/{space.project}/pipelines/nope", json={"name": "x"}).status_code == 404
    assert client.patch(f"/api/projects/nope/pipelines/pipe", json={"name": "x"}).status_code == 404


def test_delete_pipeline_keeps_block_files(client, space):
    pipe_dir = space.root / space.project / "pipelines" / "pipe"
    files = [space.root / b["file_path"] for b in client.get(space.pipeline_url()).json()["blocks"] if b["file_path"]]
    assert files and all(f.is_file() for f in files)
    r = client.delete(space.pipeline_url())
    assert r.status_code == 204, r.text
    assert not pipe_dir.exists()
    assert all(f.is_file() for f in files)  # shared block code stays
    assert client.get(space.pipeline_url()).status_code == 404
    assert "pipe" not in [p["uuid"] for p in client.get(f"/api/projects/{space.project}/pipelines").json()]
    assert client.delete(space.pipeline_url()).status_code == 404
    assert client.delete(f"/api/projects/{space.project}/pipelines/..").status_code in (400, 404)
