"""/healthz and /readyz for every role, and SIGTERM draining, with real processes."""
from __future__ import annotations

import signal
import socket
import sqlite3
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from test_server_support import ServerProcess, free_port, make_workspace, wait_for_run  # noqa: E402


def _sqlite_file(root: Path) -> Path:
    from blockyard import settings

    url = settings.database_url_for(settings.data_dir_for(root))
    assert url.startswith("sqlite:///"), url
    return Path(url[len("sqlite:///"):])


def _wait_http(url: str, timeout: float = 60) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(url, timeout=2)
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_web_role_probes_need_no_token_and_readyz_checks_the_migrations(tmp_path, monkeypatch):
    monkeypatch.delenv("BLOCKYARD_HOME", raising=False)
    monkeypatch.delenv("BLOCKYARD_DATABASE_URL", raising=False)
    space = make_workspace(tmp_path)
    web = ServerProcess(space.root, "--role", "web", env={"BLOCKYARD_API_TOKEN": "s3cret-token"})
    try:
        web.wait_ready()
        assert httpx.get(web.url + "/api/runs").status_code == 401  # the API is closed ...
        live = httpx.get(web.url + "/healthz")
        assert live.status_code == 200 and live.json() == {"status": "ok", "role": "web"}
        ready = httpx.get(web.url + "/readyz")  # ... the probes are open
        assert ready.status_code == 200, ready.text
        body = ready.json()
        assert body["checks"]["database"] == "ok" and body["checks"]["migrations"] == "ok"
        assert body["checks"]["roles"] == {"web": "ready"}

        # A database behind the code's migrations is not ready (a new image before its
        # migration job ran): 503 naming both revisions.
        db_file = _sqlite_file(space.root)
        with sqlite3.connect(db_file) as conn:
            head = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
            conn.execute("UPDATE alembic_version SET version_num = '0001_initial'")
        behind = httpx.get(web.url + "/readyz")
        assert behind.status_code == 503
        assert behind.json()["checks"]["migrations"] == f"at 0001_initial, head is {head}"
        assert httpx.get(web.url + "/healthz").status_code == 200  # alive all the same
        with sqlite3.connect(db_file) as conn:
            conn.execute("UPDATE alembic_version SET version_num = ?", (head,))
        assert httpx.get(web.url + "/readyz").status_code == 200
    finally:
        code = web.stop()
    assert code == 0, web.output()


def test_web_sigterm_finishes_the_request_in_flight(tmp_path, monkeypatch):
    monkeypatch.delenv("BLOCKYARD_HOME", raising=False)
    monkeypatch.delenv("BLOCKYARD_DATABASE_URL", raising=False)
    space = make_workspace(tmp_path)
    web = ServerProcess(space.root, "--role", "web")
    try:
        web.wait_ready()
        body = b'{"variables": {"key": "in flight"}}'
        head = (f"POST /api/pipelines/{space.project}/echo/runs HTTP/1.1\r\n"
                f"Host: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        sock = socket.create_connection(("127.0.0.1", web.port), timeout=30)
        sock.sendall(head + body[:10])  # the request is in flight ...
        time.sleep(0.3)
        web.proc.send_signal(signal.SIGTERM)  # ... when the orchestrator stops the pod
        time.sleep(0.5)
        sock.sendall(body[10:])
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
        sock.close()
    except BaseException:
        web.kill()
        raise
    assert response.startswith(b"HTTP/1.1 201"), response[:300]
    assert b'"status":"queued"' in response.replace(b" ", b"")
    assert web.wait() == 0, web.output()
    with pytest.raises(httpx.HTTPError):  # and then it is gone
        httpx.get(web.url + "/healthz", timeout=2)


def test_scheduler_and_worker_answer_probes_and_a_worker_drains_its_run_on_sigterm(tmp_path, pg_url):
    space = make_workspace(tmp_path)
    env = {"BLOCKYARD_DATABASE_URL": pg_url}
    sched_port, worker_port = free_port(), free_port()
    web = ServerProcess(space.root, "--role", "web", env=env)
    scheduler = ServerProcess(space.root, "--role", "scheduler", "--health-port", str(sched_port),
                              env=env, log=tmp_path / "scheduler.log")
    worker = ServerProcess(space.root, "--role", "worker", env={**env, "BLOCKYARD_HEALTH_PORT": str(worker_port)},
                           log=tmp_path / "worker.log")
    flag = tmp_path / "go"
    try:
        web.wait_ready()
        for port, role in ((sched_port, "scheduler"), (worker_port, "worker")):
            live = _wait_http(f"http://127.0.0.1:{port}/healthz")
            assert live.status_code == 200 and live.json()["role"] == role
            deadline = time.monotonic() + 30
            ready = httpx.get(f"http://127.0.0.1:{port}/readyz")
            while ready.status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.1)
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"]["roles"][role] == "ready"
            assert ready.json()["checks"]["database"] == "ok"
            assert httpx.get(f"http://127.0.0.1:{port}/nothing").status_code == 404

        with httpx.Client(base_url=web.url, timeout=30) as c:
            run_id = c.post(f"/api/pipelines/{space.project}/slow/runs",
                            json={"variables": {"flag": str(flag)}}).json()["id"]
            wait_for_run(c, run_id, done=("running",))
            worker.proc.send_signal(signal.SIGTERM)
            # Draining: alive, not ready (a load balancer or a rollout stops counting it).
            deadline = time.monotonic() + 10
            draining = httpx.get(f"http://127.0.0.1:{worker_port}/readyz")
            while draining.status_code == 200 and time.monotonic() < deadline:
                time.sleep(0.05)
                draining = httpx.get(f"http://127.0.0.1:{worker_port}/readyz")
            assert draining.status_code == 503
            assert draining.json()["checks"]["roles"]["worker"] == "draining"
            assert worker.proc.poll() is None  # still finishing its run
            flag.write_text("go")
            assert worker.wait() == 0, worker.output()
            assert c.get(f"/api/runs/{run_id}").json()["status"] == "completed"
    finally:
        codes = [p.stop() for p in (web, scheduler, worker)]
    assert codes[:2] == [0, 0], (web.output(), scheduler.output())
