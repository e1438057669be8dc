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
    from blockyard.engine.session import Session
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
