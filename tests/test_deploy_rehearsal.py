"""The production rehearsal: PostgreSQL, 1 web, 2 schedulers, 2 workers, a Dask
scheduler and 2 Dask workers as separate processes on this machine; a trigger fires
every 2 s; every ~10 s a random process is killed with SIGKILL and restarted (the web
process restarted under request load: its replacement starts first on the same port).
Afterwards no run is lost, duplicated (trigger, execution time) or stuck, and no request
failed but those in flight at a kill of the web process.

BLOCKYARD_REHEARSAL_SECONDS sets the chaos phase (default 60; bench/RESULTS.md has a
longer one)."""
from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("distributed")

from dask_cluster import DaskCluster  # noqa: E402
from test_server_support import BIN, clean_env, free_port  # noqa: E402
from wsbuilder import block, write_pipeline  # noqa: E402

pytestmark = pytest.mark.slow
SECONDS = float(os.environ.get("BLOCKYARD_REHEARSAL_SECONDS") or 60)


class Role:
    """One `blockyard start --role R` process that can be killed and started again."""

    def __init__(self, name: str, root: Path, args: list[str], env: dict, logs: Path) -> None:
        self.name, self.root, self.args, self.env, self.logs = name, root, args, env, logs
        self.proc = None
        self.starts = 0

    def start(self) -> None:
        import subprocess

        self.starts += 1
        log = open(self.logs / f"{self.name}-{self.starts}.log", "w")
        self.proc = subprocess.Popen([str(BIN), "start", str(self.root), *self.args],
                                     env=clean_env(self.env), stdout=log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> int | None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(60)
            except Exception:  # noqa: BLE001
                self.proc.kill()
        return self.proc.returncode if self.proc else None


def test_rehearsal_survives_random_kills(tmp_path, pg_url):
    project = f"r{os.getpid()}{random.randrange(10**6)}"
    root = tmp_path / "ws"
    root.mkdir()
    write_pipeline(root, project, "tick", [
        block("stamp", """
            @data_loader
            def stamp(**kwargs):
                return {"at": str(kwargs.get("execution_date"))}
            """, type="data_loader"),
        block("square_on_dask", """
            @custom
            def square_on_dask(stamp, **kwargs):
                import os, time
                time.sleep(0.5)
                return {"stamp": stamp, "pid": os.getpid()}
            """, upstream=["stamp"], executor_type="dask"),
    ])
    logs = tmp_path / "logs"
    logs.mkdir()
    cluster = DaskCluster(tmp_path / "dask", n_workers=2).start()
    env = {
        "BLOCKYARD_DATABASE_URL": pg_url,
        "BLOCKYARD_HOME": str(tmp_path / "home"),
        "BLOCKYARD_DASK_ADDRESS": cluster.address,
    }
    web_port = free_port()
    web = Role("web", root, ["--role", "web", "--port", str(web_port), "--reuse-port"], env, logs)
    roles = [web]
    roles += [Role(f"scheduler{i}", root, ["--role", "scheduler"], env, logs) for i in (1, 2)]
    roles += [Role(f"worker{i}", root, ["--role", "worker", "--workers", "2"], env, logs) for i in (1, 2)]
    url = f"http://127.0.0.1:{web_port}"
    requests = {"ok": 0, "failed": 0, "failed_at_web_kill": 0}
    stop_load = threading.Event()
    kills: list[str] = []
    replaced: list = []
    try:
        for r in roles:
            r.start()
        _wait(lambda: httpx.get(url + "/readyz", timeout=2).status_code == 200, 90)
        with httpx.Client(base_url=url, timeout=30) as c:
            trig = c.post("/api/triggers", json={
                "name": "every2s", "project": project, "pipeline_uuid": "tick",
                "schedule_type": "time", "schedule_interval": "every 2s", "status": "active",
            })
            assert trig.status_code in (200, 201), trig.text
            trigger_id = trig.json()["id"]

        web_down = threading.Event()

        def load() -> None:  # a client polling the API throughout
            with httpx.Client(base_url=url, timeout=5) as c:
                while not stop_load.is_set():
                    try:
                        c.get("/api/status").raise_for_status()
                        requests["ok"] += 1
                    except httpx.HTTPError:
                        requests["failed_at_web_kill" if web_down.is_set() else "failed"] += 1
                    time.sleep(0.05)

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        rng = random.Random(7)
        victims: list[str] = []
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(8, 12))
            if not victims:  # every process kind once per round, in a random order
                victims = ["web", "scheduler1", "scheduler2", "worker1", "worker2", "dask-worker"]
                rng.shuffle(victims)
            victim = victims.pop()
            kills.append(victim)
            if victim == "dask-worker":
                pids = cluster.worker_pids()
                os.kill(rng.choice(sorted(pids.values())), signal.SIGKILL)
                cluster.add_worker()
                continue
            role = next(r for r in roles if r.name == victim)
            if role is web:
                # Restart under load: the replacement binds the same port (SO_REUSEPORT)
                # and serves before the old process is killed; only requests in flight
                # on the old one at the kill may fail.
                old = web.proc
                replaced.append(old)  # killed below, or in the finally if this fails
                web.start()
                log = logs / f"web-{web.starts}.log"
                _wait(lambda: "Started server process" in log.read_text(), 90)
                web_down.set()
                old.send_signal(signal.SIGKILL)
                old.wait(30)
                time.sleep(0.5)
                web_down.clear()
                continue
            role.kill()
            role.start()
        stop_load.set()
        loader.join(10)
        with httpx.Client(base_url=url, timeout=30) as c:
            assert c.put(f"/api/triggers/{trigger_id}", json={"status": "inactive"}).status_code == 200
        # Let every run finish: a killed worker's runs come back when their lease expires.
        from blockyard.db import Database

        db = Database(pg_url)

        def settled() -> bool:
            rows = db.list_pipeline_runs(project=project, limit=10_000)
            return all(r["status"] not in ("queued", "running", "initial") for r in rows)

        _wait(settled, 180)
        rows = db.list_pipeline_runs(project=project, limit=10_000)
    finally:
        stop_load.set()
        for proc in replaced:
            if proc.poll() is None:
                proc.kill()
        codes = {r.name: r.stop() for r in roles}
        cluster.stop()
    by_time: dict = {}
    for r in rows:
        by_time.setdefault((r["trigger_id"], r["execution_date"]), []).append(r)
    duplicated = {k: len(v) for k, v in by_time.items() if len(v) > 1}
    stuck = [r for r in rows if r["status"] in ("queued", "running", "initial")]
    lost = [r for r in rows if r["status"] != "completed"]
    summary = (f"rehearsal: {SECONDS:.0f} s, kills {kills}, runs {len(rows)}, lost {len(lost)}, "
               f"duplicated {len(duplicated)}, stuck {len(stuck)}, requests ok {requests['ok']}, "
               f"failed {requests['failed']} (+{requests['failed_at_web_kill']} in flight at a web kill)")
    print(summary)
    (Path(os.environ.get("BLOCKYARD_REHEARSAL_REPORT") or tmp_path / "report.txt")).write_text(summary + "\n")
    assert len(rows) >= SECONDS / 4, summary
    assert not duplicated, (summary, duplicated)
    assert not stuck, summary
    assert not lost, (summary, [(r["id"], r["status"], r.get("error")) for r in lost][:5])
    assert requests["failed"] == 0, summary
    assert all(code == 0 for name, code in codes.items()), codes


def _wait(check, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # noqa: BLE001 - not up yet
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s (last error: {last})")
