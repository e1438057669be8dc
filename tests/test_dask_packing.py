"""Small block runs travel to Dask packed into chunks; long ones never do.

Against a real `dask scheduler` and two `dask worker` processes (tests/dask_cluster.py)."""
from __future__ import annotations

import pytest

pytest.importorskip("distributed")

import blockyard
from dask_cluster import DaskCluster
from wsbuilder import block, write_pipeline


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = DaskCluster(tmp_path_factory.mktemp("dask"), n_workers=2).start()
    yield c
    from blockyard.engine.dask_executor import close_clients

    close_clients()
    c.stop()


@pytest.fixture
def ws(tmp_path, monkeypatch, cluster):
    root = tmp_path / "ws"
    root.mkdir()
    for name in ("BLOCKYARD_HOME", "BLOCKYARD_DATABASE_URL", "BLOCKYARD_STORE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BLOCKYARD_DASK_ADDRESS", cluster.address)
    return root


def test_many_tiny_dynamic_children_are_packed_and_each_keeps_its_own_run(ws):
    from distributed import get_task_stream

    from blockyard.engine.dask_executor import get_client

    n = 600
    write_pipeline(ws, "p", "dyn", [
        block("items", f"""
            @custom
            def items():
                return list(range({n}))
            """, config={"dynamic": True}),
        block("child", """
            @custom
            def child(i):
                return i * 2
            """, upstream=["items"], config={"reduce_output": True}),
        block("total", """
            @custom
            def total(values):
                return sum(values)
            """, upstream=["child"]),
    ])
    client = get_client()
    with get_task_stream(client) as ts:
        result = blockyard.run_pipeline("p/dyn", workspace=ws, use_cache=False, executor="dask")
    assert result.ok, result.error
    assert result.output("total") == sum(i * 2 for i in range(n))
    children = result.children("child")
    assert len(children) == n and all(c.status == "completed" for c in children)
    keys = {t["key"] for t in ts.data if "blockyard-" in str(t["key"])}
    packed = [k for k in keys if "+" in str(k)]
    assert packed, "no chunk was sent: every tiny child cost a Dask task of its own"
    assert len(keys) < n / 2  # fewer Dask tasks than block runs, by a wide margin


def test_blocks_that_take_seconds_are_never_packed(cluster, monkeypatch):
    from concurrent.futures import Future

    from blockyard.engine.dask_executor import DaskExecutor, get_client

    ex = DaskExecutor(client=get_client(cluster.address))
    try:
        batch = [(f"k{i}", b"", Future(), f"b{i}") for i in range(200)]
        assert ex._chunks(batch) == [[b] for b in batch]  # nothing measured yet
        ex._mean_s = 2.0  # model training
        assert ex._chunks(batch) == [[b] for b in batch]
        ex._mean_s = 0.001  # no-op blocks
        chunks = ex._chunks(batch)
        assert [b for c in chunks for b in c] == batch  # every block once, in order
        assert 1 < max(len(c) for c in chunks) <= 64
        assert len(chunks) >= 2  # at least one chunk per worker thread
        assert ex._chunks(batch[:1]) == [batch[:1]]
    finally:
        ex.shutdown()
