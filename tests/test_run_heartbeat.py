"""A run started by `blockyard run` heartbeats; a worker fails it when its process is
gone from this host, or when its host stopped heartbeating for longer than the lease
(issue 10, item 5) — a real CLI process killed with -9, on SQLite and PostgreSQL."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from test_orchestration import env  # noqa: F401 - fixture
from test_orchestration_worker import wait_for
from wsbuilder import block

BIN = Path(sys.executable).parent / "blockyard"


def test_killed_cli_run_is_reaped_and_a_silent_host_times_out(env, tmp_path):
    from blockyard.db.columns import utcnow

    mark = tmp_path / "started"
    env.pipeline("slow", [block("wait", f"""
        import time
        from pathlib import Path
        @custom
        def wait(**kwargs):
            Path({str(mark)!r}).write_text('x')
            time.sleep(300)
        """)], extra={"concurrency_config": {"pipeline_run_limit": 1}})
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BLOCKYARD_")}
    environ.update(BLOCKYARD_DATABASE_URL=env.url, BLOCKYARD_RUN_HEARTBEAT_SECONDS="0.2")
    proc = subprocess.Popen([str(BIN), "-w", str(env.root), "run", f"{env.project}/slow"], env=environ,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(mark.exists, what="the CLI run to start its block")
        (run,) = env.runs(status="running")
        first = run["heartbeat_at"]
        assert first is not None and run["lease_owner"] is None and run["pid"] == proc.pid
        wait_for(lambda: env.db.get_pipeline_run(run["id"])["heartbeat_at"] > first, what="a heartbeat")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    # The server's worker (not only a new CLI process opening the database) reaps it.
    worker = env.worker(concurrency=1)
    assert worker.recover()["failed"] == [run["id"]]
    row = env.db.get_pipeline_run(run["id"])
    assert row["status"] == "failed" and f"pid {proc.pid}" in row["error"] and "gone" in row["error"]
    assert {b["status"] for b in env.db.get_block_runs(run["id"])} == {"failed"}

    # A run from another host that stopped heartbeating: failed once the lease timed out.
    from blockyard.orchestration import runs

    ghost = runs.enqueue_run(env.db, project=env.project, pipeline_uuid="slow")
    env.db.update_pipeline_run(ghost["id"], status="running", hostname="gone-host.example", pid=4242,
                               started_at=utcnow(), heartbeat_at=utcnow() - timedelta(seconds=30))
    patient = env.worker(concurrency=1, run_lease_seconds=60)
    assert patient.recover()["failed"] == []
    assert env.db.get_pipeline_run(ghost["id"])["status"] == "running"
    strict = env.worker(concurrency=1, run_lease_seconds=20)
    assert strict.recover()["failed"] == [ghost["id"]]
    row = env.db.get_pipeline_run(ghost["id"])
    assert row["status"] == "failed" and "stopped heartbeating" in row["error"] and "gone-host.example" in row["error"]
