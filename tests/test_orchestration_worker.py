"""Workers: claiming with leases, concurrency limits, cancel/timeout, crash recovery
with a real `kill -9`, the scheduler + worker loops, and the CLI commands."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from test_orchestration import T0, FakeClock, env, notify_calls  # noqa: F401 - fixtures
from wsbuilder import block, write_pipeline

UTC = timezone.utc


def wait_for(predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def waiting_block(uuid: str, mark: Path, release: Path, **kw) -> dict:
    """A block that records that it started, then waits until `release` exists."""
    return block(uuid, f"""
        import time
        from pathlib import Path
        @custom
        def {uuid.replace('-', '_')}(*args, **kwargs):
            Path({str(mark)!r}).write_text('started')
            deadline = time.time() + 60
            while not Path({str(release)!r}).exists() and time.time() < deadline:
                time.sleep(0.02)
            return 1
        """, **kw)


# ------------------------------------------------------------------ claiming
def test_workers_never_claim_the_same_run(env):
    env.pipeline("pipe")
    queued = {env.enqueue("pipe")["id"] for _ in range(120)}
    workers = [env.worker(concurrency=1000) for _ in range(4)]
    barrier = threading.Barrier(len(workers))
    claimed: dict[int, list[int]] = {i: [] for i in range(len(workers))}

    def go(i, w):
        barrier.wait()
        while True:
            rows = w.claim(limit=5)
            if not rows:
                return
            claimed[i].extend(r["id"] for r in rows)
            assert all(r["lease_owner"] == w.worker_id and r["status"] == "running" for r in rows)

    threads = [threading.Thread(target=go, args=(i, w)) for i, w in enumerate(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [rid for ids in claimed.values() for rid in ids]
    assert len(everything) == len(set(everything)) == 120
    assert set(everything) == queued
    rows = env.runs()
    assert all(r["status"] == "running" and r["lease_expires_at"] is not None for r in rows)


def _overlap(path: Path) -> int:
    """Most runs of the log's (start, end) pairs that were executing at the same time."""
    events = []
    for line in path.read_text().splitlines():
        start, end = map(float, line.split())
        events += [(start, 1), (end, -1)]
    current = peak = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):
        current += delta
        peak = max(peak, current)
    return peak


def _recording_block(uuid: str, log: Path) -> dict:
    return block(uuid, f"""
        import time
        @custom
        def {uuid}(**kwargs):
            start = time.time()
            time.sleep(0.25)
            with open({str(log)!r}, 'a') as f:
                f.write(f"{{start}} {{time.time()}}\\n")
            return 1
        """, config={"cache": False})


def test_concurrency_limits_are_respected(env, tmp_path):
    limited_log, free_log = tmp_path / "limited.log", tmp_path / "free.log"
    env.pipeline("limited", [_recording_block("work_limited", limited_log)], extra={"concurrency_config": {"pipeline_run_limit": 1}})
    env.pipeline("free", [_recording_block("work_free", free_log)])
    for _ in range(3):
        env.enqueue("limited")
    for _ in range(5):
        env.enqueue("free")
    worker = env.worker(concurrency=2, poll_interval=0.05)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run_forever, args=(stop,))
    thread.start()
    try:
        wait_for(lambda: all(r["status"] == "completed" for r in env.runs()), what="all runs completed")
    finally:
        stop.set()
        thread.join(30)
    assert _overlap(limited_log) == 1  # pipeline_run_limit: 1
    assert len(limited_log.read_text().splitlines()) == 3
    both = tmp_path / "both.log"
    both.write_text(limited_log.read_text() + free_log.read_text())
    assert _overlap(both) <= 2  # the worker's concurrency


def test_trigger_run_limit(env):
    env.pipeline("pipe")
    trig = env.store().create({"pipeline": f"{env.project}/pipe", "name": "hook", "schedule_type": "api",
                               "settings": {"pipeline_run_limit": 1}})
    for _ in range(3):
        env.enqueue("pipe", trigger_id=trig["id"])
    other = env.enqueue("pipe")
    worker = env.worker(concurrency=10)
    assert sorted(r["id"] for r in worker.claim()) == sorted([env.runs()[0]["id"], other["id"]])
    assert worker.claim() == []


# ------------------------------------------------------ cancel and timeouts
def test_cancel_a_running_run(env, tmp_path):
    from blockyard.orchestration import runs

    mark, release = tmp_path / "started", tmp_path / "release"
    env.pipeline("pipe", [
        waiting_block("slow", mark, release),
        block("after", "@custom\ndef after(*args, **kwargs):\n    return 2\n", upstream=["slow"]),
    ])
    run = env.enqueue("pipe")
    worker = env.worker(concurrency=1)
    worker.run_once()
    wait_for(mark.exists, what="the block to start")
    runs.request_cancel(env.db, run["id"])
    assert worker.check_runs()["cancelled"] == [run["id"]]
    row = env.db.get_pipeline_run(run["id"])
    assert row["status"] == "cancelled" and row["lease_owner"] is None  # at once, not when the block returns
    release.write_text("go")
    assert worker.wait_idle(60)
    blocks = {b["block_uuid"]: b["status"] for b in env.db.get_block_runs(run["id"])}
    assert blocks["after"] == "cancelled"
    assert env.db.get_pipeline_run(run["id"])["status"] == "cancelled"


def test_run_timeout(env, tmp_path):
    mark, release = tmp_path / "started", tmp_path / "release"
    env.pipeline("pipe", [waiting_block("slow", mark, release)])
    trig = env.store().create({"pipeline": f"{env.project}/pipe", "name": "hook", "schedule_type": "api",
                               "settings": {"timeout": 5}})
    run = env.enqueue("pipe", trigger_id=trig["id"])
    clock = FakeClock(T0)
    worker = env.worker(concurrency=1, clock=clock)
    worker.run_once()
    wait_for(mark.exists, what="the block to start")
    assert worker.check_runs(T0 + timedelta(seconds=4))["timed_out"] == []
    assert worker.check_runs(T0 + timedelta(seconds=5))["timed_out"] == [run["id"]]
    row = env.db.get_pipeline_run(run["id"])
    assert row["status"] == "failed" and "timed out after 5 s" in row["error"]
    release.write_text("go")
    assert worker.wait_idle(60)
    assert env.db.get_pipeline_run(run["id"])["status"] == "failed"


@pytest.mark.parametrize("allow", [False, True])
def test_allow_blocks_to_fail(env, tmp_path, allow):
    failed_mark = tmp_path / "failed"
    env.pipeline("pipe", [
        block("boom", f"""
            from pathlib import Path
            @custom
            def boom(**kwargs):
                Path({str(failed_mark)!r}).write_text('x')
                raise ValueError('boom')
            """),
        block("slow", f"""
            import time
            from pathlib import Path
            @custom
            def slow(**kwargs):
                deadline = time.time() + 60
                while not Path({str(failed_mark)!r}).exists() and time.time() < deadline:
                    time.sleep(0.02)
                time.sleep(0.5)  # let the runner see the failure first
                return 1
            """),
        block("after_slow", "@custom\ndef after_slow(*args, **kwargs):\n    return 2\n", upstream=["slow"]),
    ])
    trig = env.store().create({"pipeline": f"{env.project}/pipe", "name": "hook", "schedule_type": "api",
                               "settings": {"allow_blocks_to_fail": allow}})
    run = env.enqueue("pipe", trigger_id=trig["id"])
    worker = env.worker(concurrency=1)
    worker.run_once()
    assert worker.wait_idle(60)
    row = env.db.get_pipeline_run(run["id"])
    blocks = {b["block_uuid"]: b["status"] for b in env.db.get_block_runs(run["id"])}
    assert row["status"] == "failed" and "boom" in row["error"]
    assert blocks["boom"] == "failed" and blocks["slow"] == "completed"
    assert blocks["after_slow"] == ("completed" if allow else "cancelled")


# --------------------------------------------------------------- recovery
def test_expired_lease_is_resumed_then_given_up(env):
    from blockyard.orchestration import runs

    env.pipeline("pipe")
    run = env.enqueue("pipe")
    clock = FakeClock(T0)
    lost = env.worker(concurrency=1, clock=clock, lease_seconds=30, worker_id="lost-worker")
    other = env.worker(concurrency=1, clock=clock, lease_seconds=30, max_resumes=2)
    (claimed,) = lost.claim()
    assert claimed["lease_expires_at"] == T0 + timedelta(seconds=30)
    # The same host, but the lease is held by a live process (this one): not recovered early.
    assert other.recover(T0 + timedelta(seconds=29)) == {"requeued": [], "failed": []}
    assert env.db.recover_orphans() == 0  # leased runs are left to the lease logic
    assert other.recover(T0 + timedelta(seconds=31))["requeued"] == [run["id"]]
    row = env.db.get_pipeline_run(run["id"])
    assert row["status"] == "queued" and row["resume_count"] == 1 and row["lease_owner"] is None
    assert "stopped renewing the lease" in row["error"]
    # The worker that lost it notices at its next heartbeat and will not record a result.
    assert runs.finish_leased(env.db, run["id"], "lost-worker", "completed") is False
    for attempt in (2, 3):
        (again,) = lost.claim(now=T0 + timedelta(minutes=attempt))
        assert again["id"] == run["id"]
        result = other.recover(T0 + timedelta(minutes=attempt, seconds=31))
    assert result == {"requeued": [], "failed": [run["id"]]}
    row = env.db.get_pipeline_run(run["id"])
    assert row["status"] == "failed" and "giving up after 2 resumes" in row["error"]
    assert row["resume_count"] == 2


_WORKER_SCRIPT = """
import sys
from blockyard.db import Database
from blockyard.orchestration.worker import Worker
from blockyard.project import Workspace

db = Database(sys.argv[1])
Worker(Workspace.open(sys.argv[2]), db, concurrency=1, worker_id="victim", lease_seconds=300,
       poll_interval=0.05).run_forever()
"""


def test_crash_recovery_after_kill_9(env, tmp_path):
    first_attempt = tmp_path / "first_attempt"
    env.pipeline("pipe", [
        block("load", """
            @data_loader
            def load(**kwargs):
                return 41
            """, type="data_loader"),
        block("train", f"""
            import time
            from pathlib import Path
            @transformer
            def train(x, **kwargs):
                flag = Path({str(first_attempt)!r})
                if not flag.exists():  # the first attempt hangs until it is killed
                    flag.write_text('started')
                    time.sleep(120)
                return x + 1
            """, type="transformer", upstream=["load"]),
    ])
    run = env.enqueue("pipe")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BLOCKYARD_")}
    proc = subprocess.Popen(
        [sys.executable, "-c", _WORKER_SCRIPT, env.url, str(env.root)],
        env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        wait_for(first_attempt.exists, what="the block to start in the worker process")
        wait_for(lambda: (env.db.get_block_run(run["id"], "load") or {}).get("status") == "completed",
                 what="the first block to be recorded")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    row = env.db.get_pipeline_run(run["id"])
    assert row["status"] == "running" and row["lease_owner"] == "victim" and row["pid"] == proc.pid
    # Opening the database (what every blockyard process does) must not fail it ...
    env.db.recover_orphans()
    assert env.db.get_pipeline_run(run["id"])["status"] == "running"
    # ... a new worker finds it at once (its process is gone) and resumes it.
    worker = env.worker(concurrency=1, lease_seconds=300)
    assert worker.recover()["requeued"] == [run["id"]]
    row = env.db.get_pipeline_run(run["id"])
    assert row["status"] == "queued" and f"pid {proc.pid}" in row["error"]
    (claimed,) = worker.run_once()
    assert claimed["id"] == run["id"]
    assert worker.wait_idle(60)
    row = env.db.get_pipeline_run(run["id"])
    assert row["status"] == "completed", row["error"]
    assert row["resume_count"] == 1 and row["lease_owner"] is None and row["error"] is None
    blocks = {b["block_uuid"]: b for b in env.db.get_block_runs(run["id"])}
    assert blocks["load"]["cache_hit"] is True  # completed before the crash: reused
    assert blocks["train"]["status"] == "completed" and blocks["train"]["cache_hit"] is False
    from blockyard.session import Session

    assert Session(env.ws()).store.load_output(run["id"], "train", 0) == 42


# --------------------------------------------------- the loops, real clock
def test_scheduler_and_worker_loops(env, notify_calls):
    from blockyard.orchestration import status
    from blockyard.orchestration.scheduler import Scheduler
    from blockyard.orchestration.worker import Worker

    env.pipeline("pipe", [block("tick", """
        @custom
        def tick(**kwargs):
            return kwargs['execution_date'].isoformat()
        """)])
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    env.store().create({"pipeline": f"{env.project}/pipe", "name": "every_second",
                        "schedule_interval": "every 1s", "start_time": start})
    ws = env.ws()
    scheduler = Scheduler(ws, env.db)
    worker = Worker(ws, env.db, concurrency=2)
    stop = threading.Event()
    threads = [threading.Thread(target=scheduler.run_forever, args=(stop,)),
               threading.Thread(target=worker.run_forever, args=(stop,))]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(env.runs(status="completed")) >= 3, timeout=60, what="three completed runs")
        assert status.scheduler_heartbeat_age(env.db) is not None
        assert status.worker_heartbeat_age(env.db) is not None
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not any(t.is_alive() for t in threads)
    done = env.runs(status="completed")
    execution = [r["execution_date"] for r in done]
    assert all(d.microsecond == 0 and d >= start for d in execution)
    assert len(set(execution)) == len(execution)
    assert {row["id"] for kind, row in notify_calls if kind == "finished"} >= {r["id"] for r in done}


# ---------------------------------------------------------------------- CLI
BIN = Path(sys.executable).parent / "blockyard"


def cli(*args, cwd=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("BLOCKYARD_")}
    e["COLUMNS"] = "200"
    return subprocess.run([str(BIN), *args], cwd=cwd, env=e, capture_output=True, text=True, timeout=120)


def test_cli_trigger_and_backfill(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    write_pipeline(root, "p", "pipe", [block("report", """
        @custom
        def report(**kwargs):
            return kwargs['interval_start_datetime']
        """)])
    w = ["-w", str(root)]
    out = cli(*w, "trigger", "create", "p/pipe", "nightly", "-s", "@daily", "--var", "a=1",
              "--setting", "timeout=60", "--timezone", "Europe/Amsterdam")
    assert out.returncode == 0, out.stderr
    triggers = json.loads(cli(*w, "trigger", "list", "--json").stdout)
    assert [(t["name"], t["status"], t["settings"]) for t in triggers] == [
        ("nightly", "active", {"timeout": 60, "timezone": "Europe/Amsterdam"})
    ]
    assert cli(*w, "trigger", "disable", "p/pipe", "nightly").returncode == 0
    entry = yaml.safe_load((root / "p/pipelines/pipe/triggers.yaml").read_text())["triggers"][0]
    assert entry["status"] == "inactive" and entry["variables"] == {"a": 1}
    out = cli(*w, "trigger", "enable", str(triggers[0]["id"]))
    assert out.returncode == 0 and "is active" in out.stdout
    out = cli(*w, "trigger", "create", "p/pipe", "hook", "--type", "api")
    assert out.returncode == 0 and "token:" in out.stdout
    bad = cli(*w, "trigger", "create", "p/pipe", "bad", "-s", "every fortnight")
    assert bad.returncode == 1 and "cannot read interval" in bad.stderr

    out = cli(*w, "backfill", "p/pipe", "--start", "2024-01-01", "--end", "2024-01-03", "--interval", "day")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 run(s)" in out.stdout and "completed — 3 completed" in out.stdout
    out = cli(*w, "backfill", "p/pipe", "--start", "2024-02-01", "--end", "2024-02-02", "--interval", "hour",
              "--no-wait", "--json")
    queued = json.loads(out.stdout)
    assert queued["total_runs"] == 25 and queued["status"] == "running"
    out = cli(*w, "backfill", "--cancel", str(queued["id"]))
    assert out.returncode == 0 and "cancelled" in out.stdout
    listed = json.loads(cli(*w, "backfill", "--list", "--json").stdout)
    assert [(b["status"], b["total_runs"]) for b in listed] == [("cancelled", 25), ("completed", 3)]


def test_module_entry_point_runs_roles_and_stops_on_sigterm(tmp_path):
    from blockyard.db import Database

    root = tmp_path / "ws"
    root.mkdir()
    write_pipeline(root, "p", "pipe", [block("a", "@custom\ndef a(**kwargs):\n    return 1\n")])
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    (root / "p/pipelines/pipe/triggers.yaml").write_text(yaml.safe_dump({"triggers": [
        {"name": "fast", "schedule_interval": "every 1s", "start_time": start.isoformat(), "status": "active"},
    ]}))
    url = f"sqlite:///{tmp_path / 'roles.db'}"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BLOCKYARD_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "blockyard.orchestration", "all", "-w", str(root), "--database-url", url],
        env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    db = Database(url)
    db.migrate()  # (the process migrates it too; whoever comes first)
    try:
        wait_for(lambda: proc.poll() is not None or db.count_pipeline_runs(status="completed") >= 2,
                 timeout=90, what="runs completed by the scheduler + worker process")
        assert proc.poll() is None, proc.stdout.read()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        db.close()
    assert code == 0
