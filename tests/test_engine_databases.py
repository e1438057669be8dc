"""The run history of real runs, on a SQLite file and on the real PostgreSQL server."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import blockyard
from wsbuilder import block, write_pipeline


@pytest.fixture(params=["sqlite", "postgres"])
def ws(request, tmp_path, monkeypatch):
    monkeypatch.delenv("BLOCKYARD_HOME", raising=False)
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
        monkeypatch.setenv("BLOCKYARD_DATABASE_URL", url)
    else:
        monkeypatch.delenv("BLOCKYARD_DATABASE_URL", raising=False)
    root = tmp_path / "ws"
    root.mkdir()
    write_pipeline(root, "p", "pipe", [
        block("fan", """
            @custom
            def fan(**kwargs):
                n = kwargs.get('n', 20)
                return list(range(n)), [dict(block_uuid=f'item{i}') for i in range(n)]
            """, config={"dynamic": True}),
        block("square", """
            @custom
            def square(i):
                return i * i
            """, upstream=["fan"], config={"reduce_output": True}),
        block("total", """
            @custom
            def total(values, **kwargs):
                if kwargs.get('fail'):
                    raise RuntimeError('asked to fail')
                return sum(values)
            """, upstream=["square"]),
    ])
    yield root
    from blockyard.session import reset_sessions

    reset_sessions()


def _db(root):
    from blockyard.session import session_for
    from blockyard.project import Workspace

    return session_for(Workspace.open(root)).db


def test_runs_block_runs_and_clones_are_rows(ws):
    result = blockyard.run_pipeline("p/pipe", workspace=ws)
    assert result.ok, result.error
    assert result.output("total") == sum(i * i for i in range(20))
    db = _db(ws)
    row = db.get_pipeline_run(result.run_id)
    assert row["status"] == "completed" and row["pipeline_uuid"] == "pipe"
    assert row["completed_at"] >= row["started_at"] or row["started_at"] is None
    rows = {r["block_uuid"]: r for r in db.get_block_runs(result.run_id)}
    assert rows["square:item7"]["status"] == "completed"
    assert rows["square:item7"]["dynamic_index"] == 7
    assert rows["square"]["status"] == "completed"  # the clones' aggregate
    assert len([u for u in rows if u.startswith("square:")]) == 20
    assert all(r["status"] == "completed" for r in rows.values())


def test_cache_hits_and_failures_are_recorded(ws):
    first = blockyard.run_pipeline("p/pipe", workspace=ws)
    rerun = blockyard.run_pipeline("p/pipe", workspace=ws)
    assert not any(b.cache_hit for b in rerun.block_runs.values())
    second = blockyard.run_pipeline("p/pipe", workspace=ws, use_cache=True)
    assert all(b.cache_hit for b in second.block_runs.values())
    db = _db(ws)
    rows = db.get_block_runs(second.run_id)
    assert rows and all(r["cache_hit"] for r in rows if r["block_uuid"] != "square")
    failed = blockyard.run_pipeline("p/pipe", workspace=ws, variables={"fail": True})
    assert failed.status == "failed"
    frow = db.get_pipeline_run(failed.run_id)
    assert frow["status"] == "failed" and "asked to fail" in frow["error"]
    total = db.get_block_run(failed.run_id, "total")
    assert total["status"] == "failed" and "RuntimeError" in total["traceback"]
    assert first.run_id < second.run_id < failed.run_id


def test_killed_run_is_marked_failed_on_next_start(ws, tmp_path):
    """A real process killed mid-run leaves no run stuck in `running`."""
    slow = ws / "p" / "custom" / "slow.py"
    write_pipeline(ws, "p", "slowpipe", [
        block("slow", """
            import os, signal
            @custom
            def slow():
                os.kill(os.getpid(), signal.SIGKILL)
            """),
    ])
    assert slow.exists()
    code = textwrap.dedent(f"""
        import blockyard
        blockyard.run_pipeline('p/slowpipe', workspace={str(ws)!r})
    """)
    proc = subprocess.run([sys.executable, "-c", code], env=dict(os.environ), timeout=120)
    assert proc.returncode == -9
    from blockyard.session import reset_sessions

    reset_sessions()
    db = _db(ws)  # opening the database again recovers orphans
    runs = db.list_pipeline_runs(pipeline_uuid="slowpipe")
    assert runs and runs[0]["status"] == "failed"
    assert "exited before it finished" in runs[0]["error"]
    assert db.get_block_run(runs[0]["id"], "slow")["status"] == "failed"


def test_a_queued_run_is_executed_in_place(ws):
    db = _db(ws)
    run_id = db.create_pipeline_run(
        project="p", pipeline_uuid="pipe", variables={"n": 3}, status="queued"
    )
    result = blockyard.run_pipeline("p/pipe", workspace=ws, run_id=run_id, variables={"n": 3})
    assert result.run_id == run_id and result.ok
    assert result.output("total") == 0 + 1 + 4
    row = db.get_pipeline_run(run_id)
    assert row["status"] == "completed" and row["started_at"] is not None
    assert {r["block_uuid"] for r in db.get_block_runs(run_id)} >= {"fan", "square", "total"}
