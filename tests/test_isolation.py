"""Runs execute in child processes: cancel and timeouts end the block's code, a crash
fails only its run (issue 10, item 2) — with real worker children, on SQLite and
PostgreSQL."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from test_orchestration import env  # noqa: F401 - fixture
from test_orchestration_worker import wait_for
from wsbuilder import block


def _alive(pid: int) -> bool:
    from blockyard.db.common import pid_alive

    if not pid_alive(pid):
        return False
    try:  # a zombie (exited, not yet reaped) counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def burning_block(uuid: str, pid_file: Path, beat_file: Path, megabytes: int = 0) -> str:
    """A block that records its pid, holds memory and burns CPU forever, touching
    `beat_file` as it goes."""
    return f"""
        import os, time
        from pathlib import Path
        @custom
        def {uuid}(*args, **kwargs):
            hold = bytearray({megabytes} * 1024 * 1024)
            Path({str(pid_file)!r}).write_text(str(os.getpid()))
            n = 0
            while True:
                n += 1
                if n % 200000 == 0:
                    Path({str(beat_file)!r}).write_text(str(n))
        """


def _beats_stop(beat_file: Path) -> bool:
    before = beat_file.read_text() if beat_file.exists() else None
    time.sleep(0.5)
    after = beat_file.read_text() if beat_file.exists() else None
    return before == after


def _run_until_idle(worker, timeout=90):
    deadline = time.monotonic() + timeout
    while worker.active_run_ids and time.monotonic() < deadline:
        worker.check_runs()
        time.sleep(0.1)
    assert worker.wait_idle(30)


@pytest.mark.parametrize("how", ["cancel", "run_timeout", "block_timeout"])
def test_cancel_and_timeouts_end_the_blocks_process(env, tmp_path, how):
    from blockyard.orchestration import runs

    pid_file, beat = tmp_path / "pid", tmp_path / "beat"
    extra = {"timeout": 2} if how == "block_timeout" else {}
    env.pipeline("pipe", [
        block("burn", burning_block("burn", pid_file, beat, megabytes=200), **extra),
        block("after", "@custom\ndef after(*args, **kwargs):\n    return 2\n", upstream=["burn"]),
    ])
    kw = {}
    if how == "run_timeout":
        trig = env.store().create({"pipeline": f"{env.project}/pipe", "name": "t", "schedule_type": "api",
                                   "settings": {"timeout": 2}})
        kw["trigger_id"] = trig["id"]
    run = env.enqueue("pipe", **kw)
    worker = env.worker(concurrency=1, kill_grace=2)
    worker.run_once()
    pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), what="the block to start"))
    assert pid != os.getpid()  # the block's code does not run inside the worker
    if how == "cancel":
        runs.request_cancel(env.db, run["id"])
    _run_until_idle(worker)
    wait_for(lambda: not _alive(pid), timeout=10, what="the block's process to end")
    assert _beats_stop(beat)
    row = env.db.get_pipeline_run(run["id"])
    blocks = {b["block_uuid"]: b for b in env.db.get_block_runs(run["id"])}
    if how == "cancel":
        assert row["status"] == "cancelled"
        assert blocks["burn"]["status"] == "cancelled"
    elif how == "run_timeout":
        assert row["status"] == "failed" and "timed out" in row["error"]
        assert blocks["burn"]["status"] == "failed" and "timed out" in blocks["burn"]["error"]
    else:
        assert row["status"] == "failed" and "timed out after 2 s" in row["error"]
        assert blocks["burn"]["status"] == "failed"
    assert blocks["after"]["status"] in ("cancelled", "upstream_failed", "failed")
    assert row["lease_owner"] is None


CRASHES = {
    "segfault": ("import ctypes\n    ctypes.string_at(0)", "segmentation fault"),
    "os_exit": ("import os\n    os._exit(3)", "exited with code 3"),
    "oom_kill": ("import os, signal\n    os.kill(os.getpid(), signal.SIGKILL)", "SIGKILL"),
}


@pytest.mark.parametrize("crash", sorted(CRASHES))
def test_a_crashing_block_fails_only_its_run(env, crash):
    code, message = CRASHES[crash]
    env.pipeline("crash", [
        block("first", "@custom\ndef first(**kwargs):\n    return 1\n"),
        block("boom", f"@custom\ndef boom(*args, **kwargs):\n    {code}\n", upstream=["first"]),
    ])
    env.pipeline("fine", [block("ok", "@custom\ndef ok(**kwargs):\n    return 7\n")])
    bad = env.enqueue("crash")
    worker = env.worker(concurrency=1)
    worker.run_once()
    assert worker.wait_idle(60)
    row = env.db.get_pipeline_run(bad["id"])
    assert row["status"] == "failed" and message in row["error"] and "'boom'" in row["error"], row["error"]
    blocks = {b["block_uuid"]: b for b in env.db.get_block_runs(bad["id"])}
    assert blocks["first"]["status"] == "completed"
    assert blocks["boom"]["status"] == "failed" and message in blocks["boom"]["error"]
    # The worker (this process) is still here and runs the next run.
    good = env.enqueue("fine")
    worker.run_once()
    assert worker.wait_idle(60)
    assert env.db.get_pipeline_run(good["id"])["status"] == "completed"
