"""A completed block is in the database before its dependents start (issue 10, item 3),
and stored outputs are checked against their digests on load (item 4) — runs executed
by worker child processes, on SQLite and PostgreSQL."""
from __future__ import annotations

from pathlib import Path

import pytest

from test_orchestration import env  # noqa: F401 - fixture
from wsbuilder import block


def _status_probe(uuid: str, upstream: str, url: str, out: Path) -> dict:
    """A block that writes down the status its upstream has *in the database* when it starts."""
    return block(uuid, f"""
        import sqlalchemy as sa
        from pathlib import Path
        @custom
        def {uuid}(*args, **kwargs):
            engine = sa.create_engine({url!r})
            with engine.connect() as conn:
                status = conn.execute(
                    sa.text("SELECT status FROM block_runs WHERE pipeline_run_id = :r AND block_uuid = :b"),
                    {{"r": kwargs["pipeline_run_id"], "b": {upstream!r}}},
                ).scalar()
            engine.dispose()
            with open({str(out)!r}, "a") as f:
                f.write(f"{upstream}={{status}}\\n")
            return 1
        """, upstream=[upstream])


def test_completion_is_durable_before_dependents_start(env, tmp_path):
    out = tmp_path / "seen"
    chain = ["b0", "b1", "b2", "b3", "b4", "b5"]
    blocks = [block("b0", "@custom\ndef b0(**kwargs):\n    return 1\n")]
    blocks += [_status_probe(u, chain[i], env.url, out) for i, u in enumerate(chain[1:])]
    env.pipeline("chain", blocks)
    run = env.enqueue("chain")
    worker = env.worker(concurrency=1)
    worker.run_once()
    assert worker.wait_idle(90)
    assert env.db.get_pipeline_run(run["id"])["status"] == "completed"
    seen = out.read_text().split()
    assert seen == [f"{u}=completed" for u in chain[:-1]]


def test_corrupted_output_is_an_error_and_is_recomputed(env, tmp_path):
    from blockyard.session import Session
    from blockyard.store import CorruptOutputError

    counter = tmp_path / "load_executions"
    env.pipeline("pipe", [
        block("load", f"""
            import pandas as pd
            @data_loader
            def load(**kwargs):
                with open({str(counter)!r}, "a") as f:
                    f.write("x")
                return pd.DataFrame({{"v": range(20000)}})
            """, type="data_loader"),
        block("total", """
            @transformer
            def total(df, **kwargs):
                return int(df["v"].sum())
            """, type="transformer", upstream=["load"]),
    ])
    first = env.enqueue("pipe")
    worker = env.worker(concurrency=1)
    worker.run_once()
    assert worker.wait_idle(90)
    assert env.db.get_pipeline_run(first["id"])["status"] == "completed"
    store = Session(env.ws()).store
    assert store.load_output(first["id"], "total", 0) == sum(range(20000))
    # Overwrite values inside the stored frame (same size, same file).
    path = next(Session(env.ws()).data_dir.rglob(f"runs/{first['id']}/load/output_0*"))
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(64)
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptOutputError) as err:
        store.load_outputs(first["id"], "load")
    message = str(err.value)
    assert f"run {first['id']}" in message and "'load'" in message and path.name in message
    # A new run does not serve the corrupted output from the cache: it recomputes it.
    second = env.enqueue("pipe")
    worker.run_once()
    assert worker.wait_idle(90)
    assert env.db.get_pipeline_run(second["id"])["status"] == "completed"
    load_run = env.db.get_block_run(second["id"], "load")
    assert load_run["status"] == "completed" and load_run["cache_hit"] is False
    assert counter.read_text() == "xx"
    ref_run, ref_node = env.db.get_block_run(second["id"], "total")["output_ref"].split("/", 1)
    assert store.load_output(int(ref_run), ref_node, 0) == sum(range(20000))


_WORKER = """
import sys
from blockyard.db import Database
from blockyard.orchestration.worker import Worker
from blockyard.project import Workspace

Worker(Workspace.open(sys.argv[2]), Database(sys.argv[1]), concurrency=1, lease_seconds=300,
       poll_interval=0.05).run_forever()
"""


def test_recovery_never_executes_a_completed_block_again(env, tmp_path):
    """kill -9 of the worker right after a block completed: the resumed run reuses it,
    even though the block is not cached (`cache: false`)."""
    import os
    import signal
    import subprocess
    import sys

    from test_orchestration_worker import wait_for

    executions, hang = tmp_path / "load_executions", tmp_path / "hang"
    env.pipeline("pipe", [
        block("load", f"""
            @data_loader
            def load(**kwargs):
                with open({str(executions)!r}, "a") as f:
                    f.write("x")
                return 41
            """, type="data_loader", config={"cache": False}),
        block("train", f"""
            import os, time
            from pathlib import Path
            @transformer
            def train(x, **kwargs):
                flag = Path({str(hang)!r})
                if not flag.exists():  # the first attempt starts, then its worker is killed
                    flag.write_text(str(os.getpid()))
                    time.sleep(120)
                return x + 1
            """, type="transformer", upstream=["load"]),
    ])
    run = env.enqueue("pipe")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BLOCKYARD_")}
    proc = subprocess.Popen([sys.executable, "-c", _WORKER, env.url, str(env.root)], env=environ,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        child = int(wait_for(lambda: hang.exists() and hang.read_text(), what="the dependent block to start"))
        # Durable before the dependent started: no waiting for a write-behind flush.
        assert env.db.get_block_run(run["id"], "load")["status"] == "completed"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    from test_isolation import _alive

    # The run's child process does not outlive its worker (it would finish the run behind
    # the back of the worker that resumes it).
    wait_for(lambda: not _alive(child), timeout=15, what="the killed worker's run process to end")
    worker = env.worker(concurrency=1)
    assert worker.recover()["requeued"] == [run["id"]]
    worker.run_once()
    assert worker.wait_idle(60)
    row = env.db.get_pipeline_run(run["id"])
    assert row["status"] == "completed" and row["resume_count"] == 1, row["error"]
    assert executions.read_text() == "x"  # executed once, across the crash
    from blockyard.session import Session

    assert Session(env.ws()).store.load_output(run["id"], "train", 0) == 42
