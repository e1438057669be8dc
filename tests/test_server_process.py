"""`blockyard start` as a real process: uvicorn on a free loopback port, the scheduler and
a worker in the same process (or split across processes), SIGTERM, the bind rule."""
from __future__ import annotations

import signal
import subprocess
import threading

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from test_server_support import BIN, ServerProcess, clean_env, make_workspace, sse_events, wait_for_run  # noqa: E402


def test_runs_over_http_reach_the_worker_and_sigterm_exits_cleanly(tmp_path, monkeypatch):
    space = make_workspace(tmp_path)
    server = ServerProcess(space.root, "--workers", "2")
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=30) as c:
            status = c.get("/api/status").json()
            assert status["role"] == "all" and status["local_workers"] == 2
            r = c.post(f"/api/pipelines/{space.project}/echo/runs", json={"variables": {"key": "value", "n": 3}})
            assert r.status_code == 201, r.text
            run = wait_for_run(c, r.json()["id"])
            assert run["status"] == "completed", run
            out = c.get(f"/api/runs/{run['id']}/outputs", params={"block": "echo"}).json()
            assert out["outputs"][0]["sample"] == {"key": "value", "n": 3, "from_trigger": None}
            log = c.get(f"/api/runs/{run['id']}/logs", params={"block": "echo"}).text
            assert "'key': 'value'" in log

            # Mage's API trigger URL, seed-style payload: the run completes with the variables.
            trig = c.post("/api/triggers", json={"name": "api", "project": space.project, "pipeline_uuid": "echo",
                                                 "schedule_type": "api", "variables": {"from_trigger": 7}}).json()
            fired = c.post(f"/api/pipeline_schedules/{trig['id']}/pipeline_runs/{trig['token']}",
                           headers={"Content-Type": "application/json"},
                           content='{"pipeline_run": {"variables": {"key": "value"}}}')
            assert fired.status_code == 200, fired.text
            run = wait_for_run(c, fired.json()["pipeline_run"]["id"])
            assert run["status"] == "completed"
            out = c.get(f"/api/runs/{run['id']}/outputs", params={"block": "echo"}).json()
            assert out["outputs"][0]["sample"] == {"key": "value", "n": None, "from_trigger": 7}
            assert c.get("/api/status").json()["workers"] >= 1

        # Mage's trigger_pipeline (compat) against this server: POST + polling GET.
        from blockyard.compat.triggers import trigger_pipeline

        monkeypatch.setenv("BLOCKYARD_SERVER_URL", server.url)
        triggered = trigger_pipeline(f"{space.project}/echo", variables={"key": "compat"}, check_status=True,
                                     error_on_failure=True, poll_interval=0.05, poll_timeout=60, verbose=False)
        assert triggered.status == "completed" and triggered.id is not None
        assert triggered.result["variables"] == {"key": "compat"}
        assert trig["token"] not in server.output()  # access log redacts trigger tokens
    finally:
        code = server.stop(signal.SIGTERM)
    assert code == 0, server.output()


def test_sse_stream_delivers_a_line_a_running_block_prints(tmp_path):
    space = make_workspace(tmp_path)
    flag = tmp_path / "go"
    server = ServerProcess(space.root)
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=60) as c:
            run_id = c.post(f"/api/pipelines/{space.project}/slow/runs",
                            json={"variables": {"flag": str(flag)}}).json()["id"]
            seen = []
            with c.stream("GET", f"/api/runs/{run_id}/logs/stream") as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                for event, data in sse_events(stream.iter_lines()):
                    seen.append((event, data))
                    if event == "log" and data["line"] == "hello from a running block":
                        # Only now may the block go on: the line came while it was running.
                        assert c.get(f"/api/runs/{run_id}").json()["status"] == "running"
                        assert not flag.exists()
                        flag.write_text("go")
                    if event == "end":
                        break
            lines = [d["line"] for e, d in seen if e == "log"]
            assert lines.index("hello from a running block") < lines.index("flag seen")
            assert ("status", {"block_uuid": "wait", "status": "running"}) in seen
            assert ("status", {"block_uuid": "wait", "status": "completed"}) in seen
            assert seen[-1] == ("end", {"id": run_id, "status": "completed"})
    finally:
        assert server.stop() == 0, server.output()


def test_sigterm_lets_a_running_block_finish(tmp_path):
    space = make_workspace(tmp_path)
    flag = tmp_path / "go"
    server = ServerProcess(space.root)
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=30) as c:
            run_id = c.post(f"/api/pipelines/{space.project}/slow/runs",
                            json={"variables": {"flag": str(flag)}}).json()["id"]
            wait_for_run(c, run_id, done=("running",))
    except BaseException:
        server.kill()
        raise
    server.proc.send_signal(signal.SIGTERM)
    flag.write_text("go")  # the block is still running; it may finish now
    assert server.wait() == 0, server.output()  # (a second SIGTERM would mean: exit now)
    from blockyard.session import session_for
    from blockyard.project import Workspace

    row = session_for(Workspace.open(space.root)).db.get_pipeline_run(run_id)
    assert row["status"] == "completed", row


def test_roles_split_across_processes_on_postgres(tmp_path, pg_url):
    """`--role web` and `--role worker` (+ scheduler) in separate processes sharing
    PostgreSQL: runs created over HTTP are executed by the other process."""
    space = make_workspace(tmp_path)
    env = {"BLOCKYARD_DATABASE_URL": pg_url}
    web = ServerProcess(space.root, "--role", "web", env=env)
    worker = ServerProcess(space.root, "--role", "worker", env=env, log=tmp_path / "worker.log")
    scheduler = ServerProcess(space.root, "--role", "scheduler", env=env, log=tmp_path / "scheduler.log")
    try:
        web.wait_ready()
        with httpx.Client(base_url=web.url, timeout=30) as c:
            status = c.get("/api/status").json()
            assert status["database"]["dialect"] == "postgresql" and status["local_workers"] == 0
            r = c.post(f"/api/pipelines/{space.project}/echo/runs", json={"variables": {"key": "pg"}},
                       headers={"Idempotency-Key": f"split-{space.project}"})
            run = wait_for_run(c, r.json()["id"])
            assert run["status"] == "completed", (run, worker.output())
            out = c.get(f"/api/runs/{run['id']}/outputs", params={"block": "echo"}).json()
            assert out["outputs"][0]["sample"]["key"] == "pg"

            trig = c.post("/api/triggers", json={"name": "api", "project": space.project, "pipeline_uuid": "echo",
                                                 "schedule_type": "api"}).json()
            fired = c.post(f"/api/pipeline_schedules/{trig['id']}/pipeline_runs/{trig['token']}",
                           json={"pipeline_run": {"variables": {"key": "value"}}})
            assert wait_for_run(c, fired.json()["pipeline_run"]["id"])["status"] == "completed"
            status = c.get("/api/status").json()
            assert status["workers"] >= 1
    finally:
        codes = [p.stop() for p in (web, worker, scheduler)]
    assert codes == [0, 0, 0], (web.output(), worker.output(), scheduler.output())


def test_refuses_a_non_loopback_bind_without_a_token(tmp_path):
    space = make_workspace(tmp_path)
    proc = subprocess.run([str(BIN), "start", str(space.root), "--host", "0.0.0.0", "--port", "1"],
                          env=clean_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "refusing to listen on 0.0.0.0" in proc.stderr and "BLOCKYARD_API_TOKEN" in proc.stderr
    bad_role = subprocess.run([str(BIN), "start", str(space.root), "--role", "chef"],
                              env=clean_env(), capture_output=True, text=True, timeout=60)
    assert bad_role.returncode != 0 and "--role" in bad_role.stderr


def test_token_protects_the_api_of_a_real_server(tmp_path):
    space = make_workspace(tmp_path)
    server = ServerProcess(space.root, "--role", "web", env={"BLOCKYARD_API_TOKEN": "tok-123"})
    try:
        server.wait_ready()
        assert httpx.get(server.url + "/api/projects").status_code == 401
        ok = httpx.get(server.url + "/api/projects", headers={"Authorization": "Bearer tok-123"})
        assert ok.status_code == 200
        # Concurrent requests from threads are fine (the API is thread-safe).
        results = []

        def post():
            r = httpx.post(f"{server.url}/api/pipelines/{space.ref}/runs", json={},
                           headers={"Authorization": "Bearer tok-123"})
            results.append(r.status_code)

        threads = [threading.Thread(target=post) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [201] * 8
    finally:
        assert server.stop() == 0, server.output()
