"""The Dask executor against a real cluster: a `dask scheduler` and two `dask worker`
processes started here, as a deployment runs them."""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed")

import blockyard
from dask_cluster import DaskCluster
from mirror import MIRROR
from wsbuilder import block, write_pipeline

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = DaskCluster(tmp_path_factory.mktemp("dask"), n_workers=2,
                    env={"BLOCKYARD_DATA_MIRROR": str(MIRROR)}).start()
    yield c
    from blockyard.engine.dask_executor import close_clients

    close_clients()
    c.stop()


@pytest.fixture
def ws(tmp_path, monkeypatch, cluster):
    root = tmp_path / "ws"
    root.mkdir()
    monkeypatch.delenv("BLOCKYARD_HOME", raising=False)
    monkeypatch.delenv("BLOCKYARD_DATABASE_URL", raising=False)
    monkeypatch.delenv("BLOCKYARD_STORE_URL", raising=False)
    monkeypatch.setenv("BLOCKYARD_DASK_ADDRESS", cluster.address)
    return root


def _block_rows(root, run_id) -> dict:
    from blockyard.session import session_for
    from blockyard.project import Workspace

    rows = session_for(Workspace.open(root)).db.get_block_runs(run_id)
    return {r["block_uuid"]: r for r in rows}


def run(root, name="p/pipe", **kw):
    return blockyard.run_pipeline(name, workspace=root, use_cache=False, **kw)


def test_pipeline_executor_type_dask_runs_blocks_and_dynamic_children_on_workers(ws, cluster):
    write_pipeline(ws, "p", "pipe", [
        block("load", """
            @data_loader
            def load(*args, **kwargs):
                import os
                import pandas as pd
                print("loading on", os.getpid())
                return pd.DataFrame({"x": range(100)}), os.getpid()
            """, type="data_loader"),
        block("fan", """
            @custom
            def fan(loaded, **kwargs):
                return [[1, 2, 3], [dict(block_uuid=f"m{i}") for i in (1, 2, 3)]]
            """, upstream=["load"], configuration={"dynamic": True}),
        block("child", """
            @custom
            def child(loaded, item, **kwargs):
                import os
                df, _pid = loaded
                return int(df["x"].sum()) * item, os.getpid()

            @test
            def positive(total, pid, *args):
                assert total > 0
            """, upstream=["load", "fan"], configuration={"reduce_output": True}),
        block("gather", """
            @custom
            def gather(children, **kwargs):
                return sorted(c[0] for c in children)
            """, upstream=["child"]),
    ], extra={"executor_type": "dask"})
    result = run(ws)
    assert result.ok, result.error
    workers = set(cluster.worker_pids().values())
    df, load_pid = result.output("load")
    assert df["x"].sum() == 4950
    assert load_pid in workers and load_pid != os.getpid()
    children = result.children("child")
    assert [c.uuid for c in children] == ["child:m1", "child:m2", "child:m3"]
    assert all(c.status == "completed" and c.tests[0]["passed"] for c in children)
    assert {result.output(c.uuid)[1] for c in children} <= workers
    assert result.output("gather") == [4950, 9900, 14850]
    # Run history and logs as with any executor.
    db_rows = _block_rows(ws, result.run_id)
    assert db_rows["load"]["status"] == "completed" and db_rows["load"]["digest"]
    log = Path(db_rows["load"]["log_path"]).read_text()
    assert f"loading on {load_pid}" in log


def test_retries_and_timeouts_behave_as_with_threads(ws, tmp_path):
    counter = tmp_path / "attempts.txt"
    write_pipeline(ws, "p", "pipe", [
        block("flaky", f"""
            @custom
            def flaky(**kwargs):
                from pathlib import Path
                p = Path({str(counter)!r})
                n = len(p.read_text().splitlines()) if p.exists() else 0
                p.write_text("x\\n" * (n + 1))
                if n == 0:
                    raise RuntimeError("first attempt fails")
                return n
            """, retry_config={"retries": 2, "delay": 0}),
        block("slow", """
            @custom
            def slow(**kwargs):
                import time
                time.sleep(30)
            """, timeout=0.5),
    ], extra={"executor_type": "dask"})
    result = run(ws)
    assert result.block_runs["flaky"].status == "completed"
    assert result.block_runs["flaky"].attempts == 2 and result.output("flaky") == 1
    slow = result.block_runs["slow"]
    assert slow.status == "failed" and "timed out after 0.5 s" in slow.error
    assert result.status == "failed"


def test_a_block_executor_type_sends_only_that_block_to_dask(ws, cluster):
    write_pipeline(ws, "p", "pipe", [
        block("here", """
            @custom
            def here(**kwargs):
                import os
                return os.getpid()
            """),
        block("there", """
            @custom
            def there(pid, **kwargs):
                import os
                return pid, os.getpid()
            """, upstream=["here"], executor_type="dask"),
    ])
    result = run(ws)
    assert result.ok, result.error
    here_pid, there_pid = result.output("there")
    assert here_pid == os.getpid()
    assert there_pid in set(cluster.worker_pids().values())


def test_inputs_travel_as_store_references_not_objects(ws):
    from blockyard.engine.dask_executor import DaskExecutor
    from blockyard.engine.executors import InputRef

    seen = []

    class Recording(DaskExecutor):
        def submit(self, task):
            seen.append((task.node_uuid, list(task.inputs)))
            return super().submit(task)

    write_pipeline(ws, "p", "pipe", [
        block("big", """
            @data_loader
            def big(*args, **kwargs):
                import numpy as np
                return np.arange(2_000_000, dtype="float64")
            """, type="data_loader"),
        block("total", """
            @custom
            def total(arr, **kwargs):
                return float(arr.sum())
            """, upstream=["big"]),
    ])
    result = run(ws, executor=Recording())
    assert result.ok, result.error
    assert result.output("total") == float(sum(range(2_000_000)))
    inputs = dict(seen)["total"]
    assert inputs == [InputRef("whole", ref=f"{result.run_id}/big")]


def test_an_output_that_cannot_be_stored_fails_once_naming_the_block(ws):
    write_pipeline(ws, "p", "pipe", [
        block("locky", """
            @custom
            def locky(**kwargs):
                import threading
                return threading.Lock()
            """),
        block("after", """
            @custom
            def after(lock, **kwargs):
                return 1
            """, upstream=["locky"]),
    ], extra={"executor_type": "dask"})
    result = run(ws)
    assert result.status == "failed"
    locky = result.block_runs["locky"]
    assert locky.status == "failed"
    assert "block 'locky'" in locky.error and "lock" in locky.error.lower()
    assert result.block_runs["after"].status == "upstream_failed"

    import threading

    unsendable = run(ws, variables={"guard": threading.Lock()})
    error = unsendable.block_runs["locky"].error
    assert unsendable.status == "failed"
    assert "block 'locky' cannot be sent to a Dask worker" in error and "pickle" in error


def test_an_unknown_executor_is_a_clear_failed_run(ws):
    write_pipeline(ws, "p", "pipe", [block("a", "@custom\ndef a(**kw):\n    return 1\n")])
    result = run(ws, executor="spark")
    assert result.status == "failed"
    assert "unknown executor 'spark'" in result.error and "dask" in result.error


def test_a_worker_killed_mid_run_is_survived(ws, cluster, tmp_path):
    marks = tmp_path / "pids.txt"
    write_pipeline(ws, "p", "pipe", [
        block("long", f"""
            @custom
            def long(**kwargs):
                import os, time
                from pathlib import Path
                p = Path({str(marks)!r})
                first = not p.exists()
                with p.open("a") as f:
                    f.write(f"{{os.getpid()}}\\n")
                if first:
                    time.sleep(60)  # killed meanwhile
                return os.getpid()
            """),
        block("next", """
            @custom
            def next(pid, **kwargs):
                return pid + 0
            """, upstream=["long"]),
    ], extra={"executor_type": "dask"})
    box = {}
    t = threading.Thread(target=lambda: box.update(result=run(ws)))
    t.start()
    deadline = time.time() + 60
    while not (marks.exists() and marks.read_text().strip()) and time.time() < deadline:
        time.sleep(0.05)
    victim = int(marks.read_text().split()[0])
    assert victim in set(cluster.worker_pids().values())
    os.kill(victim, signal.SIGKILL)
    t.join(120)
    cluster.add_worker()  # back to two workers for whoever comes next
    result = box["result"]
    assert result.ok, result.error
    pids = [int(x) for x in marks.read_text().split()]
    assert len(pids) == 2 and pids[0] == victim and pids[1] != victim
    assert result.output("long") == pids[1] == result.output("next")


@pytest.mark.slow
@pytest.mark.skipif(
    not (MIRROR / "taxi/green/green_tripdata_2024-01.parquet").is_file(),
    reason="course data mirror not present",
)
def test_course_pipelines_give_identical_digests_on_every_executor(cluster, tmp_path, monkeypatch):
    from blockyard.session import reset_sessions

    monkeypatch.setenv("BLOCKYARD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BLOCKYARD_DATA_MIRROR", str(MIRROR))
    monkeypatch.setenv("BLOCKYARD_DASK_ADDRESS", cluster.address)
    monkeypatch.delenv("BLOCKYARD_DATABASE_URL", raising=False)
    monkeypatch.delenv("BLOCKYARD_STORE_URL", raising=False)
    reset_sessions()
    workspace = REPO / "mlops"
    try:
        for pipeline in ("unit_0_setup/example_pipeline", "unit_1_data_preparation/data_preparation"):
            digests = {}
            for executor in ("inline", "thread", "process", "dask"):
                result = blockyard.run_pipeline(
                    pipeline, workspace=workspace, executor=executor, use_cache=False
                )
                assert result.ok, (executor, result.error)
                rows = _block_rows(workspace, result.run_id)
                digests[executor] = {u: r["digest"] for u, r in rows.items()}
            assert all(digests["inline"].values()), digests["inline"]
            for executor in ("thread", "process", "dask"):
                assert digests[executor] == digests["inline"], (pipeline, executor)
    finally:
        reset_sessions()


def test_cli_executor_dask_runs_on_the_cluster_and_rejects_unknown_kinds(ws, cluster):
    import subprocess
    import sys

    write_pipeline(ws, "p", "pipe", [block("pid", "@custom\ndef pid(**kw):\n    import os\n    return os.getpid()\n")])
    exe = Path(sys.executable).with_name("blockyard")
    env = {**os.environ, "BLOCKYARD_WORKSPACE": str(ws), "BLOCKYARD_DASK_ADDRESS": cluster.address}
    done = subprocess.run([str(exe), "run", "p/pipe", "--executor", "dask", "-q"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "completed" in done.stdout
    from blockyard.session import reset_sessions

    reset_sessions()
    rows = _block_rows(ws, 1)
    assert rows["pid"]["status"] == "completed"
    from blockyard.session import session_for
    from blockyard.project import Workspace

    pid = session_for(Workspace.open(ws)).store.load_output(1, "pid", 0)
    assert pid in set(cluster.worker_pids().values())
    bad = subprocess.run([str(exe), "run", "p/pipe", "--executor", "spark", "-q"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0
    assert "unknown executor 'spark'" in bad.stdout + bad.stderr
