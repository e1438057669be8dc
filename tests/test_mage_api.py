"""Mage's REST read endpoints (pipeline_schedules, pipeline_runs) in Mage's envelopes and
field names, on SQLite and the real PostgreSQL server, token-protected like the rest."""
from __future__ import annotations

import os
import uuid
import warnings

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient  # noqa: E402

from blockyard.api import run_pipeline  # noqa: E402
from blockyard.session import reset_sessions  # noqa: E402
from blockyard.server.app import create_app  # noqa: E402
from blockyard.server.config import ServerConfig  # noqa: E402
from test_server_support import make_workspace  # noqa: E402

# Mage's PipelineRunPresenter / PipelineSchedulePresenter default attributes.
MAGE_RUN_FIELDS = {
    "backfill_id", "completed_at", "created_at", "event_variables", "execution_date", "executor_type",
    "id", "metrics", "passed_sla", "pipeline_schedule_id", "pipeline_uuid", "started_at", "status",
    "updated_at", "variables",
}
MAGE_SCHEDULE_FIELDS = {
    "created_at", "id", "name", "pipeline_uuid", "repo_path", "schedule_interval", "schedule_type",
    "settings", "sla", "start_time", "status", "token", "updated_at", "variables",
}


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith("BLOCKYARD_"):
            monkeypatch.delenv(key)
    yield
    reset_sessions()


@pytest.fixture(params=["sqlite", "postgres"])
def client(request, tmp_path, monkeypatch):
    if request.param == "postgres":
        monkeypatch.setenv("BLOCKYARD_DATABASE_URL", request.getfixturevalue("pg_url"))
    space = make_workspace(tmp_path)
    with TestClient(create_app(space.root)) as c:
        c.space = space
        yield c


def make_trigger(client, pipeline, schedule_type="api", **extra):
    body = {"name": f"t_{uuid.uuid4().hex[:6]}", "project": client.space.project, "pipeline_uuid": pipeline,
            "schedule_type": schedule_type, **extra}
    r = client.post("/api/triggers", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def test_pipeline_schedules_in_mage_envelope_filtered_by_pipeline(client):
    space = client.space
    api = make_trigger(client, "echo", variables={"k": 1})
    daily = make_trigger(client, "pipe", schedule_type="time", schedule_interval="@daily")
    fired = client.post(f"/api/pipeline_schedules/{api['id']}/pipeline_runs/{api['token']}")
    assert fired.status_code == 200, fired.text

    everything = client.get("/api/pipeline_schedules").json()
    assert set(everything) == {"pipeline_schedules", "metadata"}
    assert everything["metadata"]["count"] == 2
    by_id = {s["id"]: s for s in everything["pipeline_schedules"]}
    assert set(by_id) == {api["id"], daily["id"]}
    echo = by_id[api["id"]]
    assert MAGE_SCHEDULE_FIELDS <= set(echo)
    assert (echo["pipeline_uuid"], echo["schedule_type"], echo["status"]) == ("echo", "api", "active")
    assert echo["variables"] == {"k": 1} and echo["token"] == api["token"]
    assert echo["repo_path"] == str(space.root / space.project)
    assert echo["pipeline_runs_count"] == 1 and echo["last_pipeline_run_status"] == "initial"
    assert by_id[daily["id"]]["schedule_interval"] == "@daily" and by_id[daily["id"]]["pipeline_runs_count"] == 0

    # Both of Mage's ways to filter by pipeline.
    nested = client.get("/api/pipelines/echo/pipeline_schedules").json()
    query = client.get("/api/pipeline_schedules", params={"pipeline_uuid": "echo"}).json()
    qualified = client.get("/api/pipeline_schedules", params={"pipeline_uuid": f"{space.project}/pipe"}).json()
    assert [s["id"] for s in nested["pipeline_schedules"]] == [api["id"]]
    assert [s["id"] for s in query["pipeline_schedules"]] == [api["id"]]
    assert [s["id"] for s in qualified["pipeline_schedules"]] == [daily["id"]]
    assert client.get("/api/pipeline_schedules", params={"pipeline_uuid": "nope"}).json()["pipeline_schedules"] == []
    assert client.get("/api/pipelines/nope/pipeline_schedules").status_code == 404

    one = client.get(f"/api/pipeline_schedules/{daily['id']}").json()
    assert set(one) == {"pipeline_schedule"}
    assert one["pipeline_schedule"]["name"] == daily["name"] and MAGE_SCHEDULE_FIELDS <= set(one["pipeline_schedule"])
    assert client.get("/api/pipeline_schedules/987654").status_code == 404
    assert client.get("/api/pipeline_schedules/0").status_code == 422


def test_pipeline_runs_in_mage_envelope(client):
    space = client.space
    done = run_pipeline(space.ref, workspace=space.root, variables={"n": 3})
    failed = run_pipeline(space.ref, workspace=space.root, variables={"fail": True})
    trig = make_trigger(client, "echo")
    queued = client.post(f"/api/pipeline_schedules/{trig['id']}/pipeline_runs/{trig['token']}",
                         json={"pipeline_run": {"variables": {"key": "v"}}}).json()["pipeline_run"]

    one = client.get(f"/api/pipeline_runs/{done.run_id}").json()
    assert set(one) == {"pipeline_run"}
    run = one["pipeline_run"]
    assert MAGE_RUN_FIELDS <= set(run)
    assert (run["id"], run["pipeline_uuid"], run["status"]) == (done.run_id, "pipe", "completed")
    assert run["variables"]["n"] == 3 and run["pipeline_schedule_id"] is None
    assert {b["block_uuid"]: b["status"] for b in run["block_runs"]} == {
        "load": "completed", "square": "completed", "frame": "completed"}
    assert all(b["pipeline_run_id"] == done.run_id for b in run["block_runs"])
    assert run["completed_block_runs_count"] == 3 and run["completed_at"] >= run["started_at"]

    bad = client.get(f"/api/pipeline_runs/{failed.run_id}").json()["pipeline_run"]
    assert bad["status"] == "failed" and "asked to fail" in bad["error"]
    assert {b["block_uuid"]: b["status"] for b in bad["block_runs"]}["load"] == "failed"

    fired = client.get(f"/api/pipeline_runs/{queued['id']}").json()["pipeline_run"]
    assert fired["status"] == "initial"  # Mage's name for a run not started yet
    assert fired["pipeline_schedule_id"] == trig["id"] and fired["pipeline_schedule_name"] == trig["name"]
    assert fired["pipeline_schedule_type"] == "api" and fired["variables"] == {"key": "v"}

    # PostgreSQL is shared by the session's tests: filter by this test's project.
    mine = {"project": space.project}
    listed = client.get("/api/pipeline_runs", params={"pipeline_uuid": "pipe", **mine}).json()
    assert set(listed) == {"pipeline_runs", "metadata"}
    assert [r["id"] for r in listed["pipeline_runs"]] == [failed.run_id, done.run_id]  # newest first
    assert listed["metadata"] == {"count": 2, "next": False}
    page = client.get("/api/pipeline_runs", params={"pipeline_uuid": f"{space.project}/pipe", "_limit": 1}).json()
    assert [r["id"] for r in page["pipeline_runs"]] == [failed.run_id] and page["metadata"] == {"count": 2, "next": True}
    only_failed = client.get("/api/pipeline_runs", params={"status": "failed", **mine}).json()["pipeline_runs"]
    assert [r["id"] for r in only_failed] == [failed.run_id]
    initial = client.get("/api/pipeline_runs", params={"status": "initial", **mine}).json()["pipeline_runs"]
    assert [r["id"] for r in initial] == [queued["id"]]
    nested = client.get("/api/pipelines/echo/pipeline_runs").json()["pipeline_runs"]
    assert [r["id"] for r in nested] == [queued["id"]]
    of_schedule = client.get(f"/api/pipeline_schedules/{trig['id']}/pipeline_runs").json()["pipeline_runs"]
    assert [r["id"] for r in of_schedule] == [queued["id"]]

    assert client.get("/api/pipeline_runs/987654").status_code == 404
    assert client.get("/api/pipeline_runs", params={"status": "sleeping"}).status_code == 400
    assert client.get("/api/pipeline_runs", params={"pipeline_uuid": "../x"}).status_code == 400
    assert client.get("/api/pipeline_runs", params={"_limit": 0}).status_code == 422


def test_mage_read_endpoints_need_the_token_when_one_is_set(tmp_path):
    space = make_workspace(tmp_path)
    token = "mage-read-token"
    with TestClient(create_app(space.root, ServerConfig(token=token))) as c:
        ok = {"Authorization": f"Bearer {token}"}
        trig = c.post("/api/triggers", headers=ok, json={
            "name": "t", "project": space.project, "pipeline_uuid": "echo", "schedule_type": "api"}).json()
        for path in ("/api/pipeline_schedules", f"/api/pipeline_schedules/{trig['id']}",
                     "/api/pipelines/echo/pipeline_schedules", "/api/pipeline_runs",
                     f"/api/pipeline_schedules/{trig['id']}/pipeline_runs"):
            assert c.get(path).status_code == 401, path
            assert c.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401, path
            assert c.get(path, headers=ok).status_code == 200, path
        # The API trigger's own token in the URL still fires it without the server token.
        fired = c.post(f"/api/pipeline_schedules/{trig['id']}/pipeline_runs/{trig['token']}")
        assert fired.status_code == 200
        run_id = fired.json()["pipeline_run"]["id"]
        assert c.get(f"/api/pipeline_runs/{run_id}").status_code == 401
        assert c.get(f"/api/pipeline_runs/{run_id}", headers=ok).json()["pipeline_run"]["id"] == run_id


def test_run_with_schedule_name_is_filed_under_that_api_trigger(client):
    """What Mage's trigger_pipeline(schedule_name=...) sends: the trigger is created once."""
    space = client.space
    first = client.post(f"/api/pipelines/{space.project}/echo/runs", json={"schedule_name": "from code"})
    second = client.post("/api/pipelines/echo/runs", json={"schedule_name": "from code", "variables": {"n": 1}})
    assert first.status_code == second.status_code == 201, first.text + second.text
    schedules = client.get("/api/pipelines/echo/pipeline_schedules").json()["pipeline_schedules"]
    assert [(s["name"], s["schedule_type"], s["status"]) for s in schedules] == [("from code", "api", "active")]
    assert first.json()["trigger_id"] == second.json()["trigger_id"] == schedules[0]["id"]
    assert schedules[0]["pipeline_runs_count"] == 2
    plain = client.post("/api/pipelines/echo/runs", json={"variables": {}})
    assert plain.json()["trigger_id"] is None
