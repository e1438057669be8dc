"""The engine's pure run state (engine/state.py) and live outputs (engine/outputs.py),
tested directly: no database, no files, no threads."""
from __future__ import annotations

import json
from types import SimpleNamespace

from blockyard.engine.outputs import LiveOutputs
from blockyard.engine.plan import plan_pipeline
from blockyard.engine.state import Input, RunState, Status


def _spec(*blocks):
    """A minimal pipeline spec: (uuid, upstream, config) triples."""
    specs = [
        SimpleNamespace(
            uuid=u, type="custom", upstream_blocks=list(up), configuration=cfg,
            dynamic=bool(cfg.get("dynamic")), reduce_output=bool(cfg.get("reduce_output")),
        )
        for u, up, cfg in blocks
    ]
    return SimpleNamespace(blocks=specs, path=None, uuid="p")


def _state(*blocks, select=None, externals=None):
    plan = plan_pipeline(_spec(*blocks))
    selected = {u: pb for u, pb in plan.items() if select is None or u in select}
    return RunState(plan, selected, externals or {})


def _statuses(st):
    return {uuid: str(n.status) for uuid, n in st.by_uuid.items()}


def test_status_is_the_stored_string():
    assert Status.UPSTREAM_FAILED == "upstream_failed"
    assert f"{Status.COMPLETED}" == "completed" and str(Status.CANCELLED) == "cancelled"
    assert json.dumps({"s": Status.FAILED}) == '{"s": "failed"}'
    assert Status("condition_failed") is Status.CONDITION_FAILED
    assert Status.CONDITION_FAILED.good and not Status.UPSTREAM_FAILED.good
    assert Status.RUNNING.pending and not Status.COMPLETED.pending


def test_a_chain_becomes_ready_one_node_at_a_time():
    st = _state(("a", [], {}), ("b", ["a"], {}), ("c", ["b"], {}))
    created = st.create_nodes()
    assert [n.uuid for n in created] == ["a", "b", "c"]
    assert [n.uuid for n in st.ready] == ["a"]
    a = st.next_ready()
    st.start(a)
    assert st.next_ready() is None and st.by_uuid["b"].waiting == 1
    st.finish(a, Status.COMPLETED)
    assert [n.uuid for n in st.ready] == ["b"] and st.by_uuid["b"].status is Status.QUEUED
    assert st.take_settled() == []


def test_a_failure_settles_everything_downstream_without_running_it():
    st = _state(("a", [], {}), ("b", ["a"], {}), ("c", ["b"], {}), ("d", [], {}))
    st.create_nodes()
    a = st.by_uuid["a"]
    st.ready.remove(a)
    st.finish(a, Status.FAILED)
    settled = st.take_settled()
    assert [n.uuid for n in settled] == ["b", "c"]
    assert _statuses(st)["b"] == "upstream_failed" and _statuses(st)["c"] == "upstream_failed"
    assert [n.uuid for n in st.ready] == ["d"]  # an independent branch still runs
    st.finish(st.next_ready(), Status.COMPLETED)
    assert st.run_status() is Status.FAILED


def test_a_false_condition_skips_downstream_and_the_run_still_completes():
    st = _state(("a", [], {}), ("b", ["a"], {}))
    st.create_nodes()
    st.finish(st.next_ready(), Status.CONDITION_FAILED)
    assert _statuses(st) == {"a": "condition_failed", "b": "condition_failed"}
    assert st.run_status() is Status.COMPLETED


def test_cancel_settles_queued_nodes_then_the_rest_once_nothing_runs():
    st = _state(("a", [], {}), ("b", [], {}), ("c", ["b"], {}), ("d", ["a"], {}))
    st.create_nodes()
    running = st.by_uuid["b"]
    st.ready.remove(running)
    st.start(running)
    st.cancel()
    assert st.next_ready() is None
    # The queued node and what waits on it are cancelled; the running one is left alone.
    assert [n.uuid for n in st.take_settled()] == ["a", "d"]
    assert _statuses(st) == {"a": "cancelled", "b": "running", "c": "initial", "d": "cancelled"}
    st.finish(running, Status.COMPLETED)  # it finishes; its dependent never starts
    assert st.next_ready() is None and _statuses(st)["c"] == "cancelled"
    st.cancel_rest()
    assert _statuses(st) == {"a": "cancelled", "b": "completed", "c": "cancelled", "d": "cancelled"}
    assert st.run_status() is Status.CANCELLED


def test_dynamic_fan_out_creates_clones_keyed_by_path_and_a_reduce_gathers_them():
    st = _state(
        ("items", [], {"dynamic": True}),
        ("child", ["items"], {"reduce_output": True}),
        ("total", ["child"], {}),
    )
    assert [n.uuid for n in st.create_nodes()] == ["items"]  # the fan-out is not known yet
    items = st.next_ready()
    st.expand(items, ["x", "y"])
    st.finish(items, Status.COMPLETED)
    created = st.create_nodes()
    assert [n.uuid for n in created] == ["child:x", "child:y", "total"]
    assert st.nodes[("child", (1,))].uuid == "child:y" and st.by_uuid["child:y"].dynamic_index == 1
    total = st.by_uuid["total"]
    assert total.inputs[0].kind == "gather" and total.waiting == 2
    for clone in (st.by_uuid["child:x"], st.by_uuid["child:y"]):
        assert clone.inputs[0].kind == "item"
        st.finish(clone, Status.COMPLETED)
    assert total in st.ready
    st.finish(st.next_ready(), Status.COMPLETED)
    assert st.fanned_out_statuses() == {"child": Status.COMPLETED}
    assert st.run_status() is Status.COMPLETED


def test_a_failed_clone_fails_its_block_and_a_block_without_clones_is_accounted_for():
    st = _state(("items", [], {"dynamic": True}), ("child", ["items"], {}))
    st.create_nodes()
    items = st.next_ready()
    st.expand(items, ["0", "1"])
    st.finish(items, Status.COMPLETED)
    st.create_nodes()
    st.finish(st.by_uuid["child:0"], Status.FAILED)
    st.finish(st.by_uuid["child:1"], Status.COMPLETED)
    assert st.fanned_out_statuses() == {"child": Status.FAILED}
    # The dynamic block itself failed: its clones never exist.
    st2 = _state(("items", [], {"dynamic": True}), ("child", ["items"], {}))
    st2.create_nodes()
    st2.finish(st2.next_ready(), Status.FAILED)
    assert st2.create_nodes() == []
    assert st2.fanned_out_statuses() == {"child": Status.UPSTREAM_FAILED}
    assert st2.never_ran() == ([], [])


def test_selected_blocks_read_external_inputs_and_missing_nodes_are_reported():
    ext = Input("external", value=41, digest="d")
    st = _state(("a", [], {}), ("b", ["a"], {}), select={"b"}, externals={"a": ext})
    st.create_nodes()
    b = st.next_ready()
    assert b.uuid == "b" and b.inputs == [ext] and b.upstream == []
    stuck, missing = st.never_ran()
    assert [n.uuid for n in stuck] == ["b"] and missing == []


def test_outputs_are_released_when_the_last_reader_started():
    class Store:
        loads = 0

        def load_outputs(self, run_id, node_uuid):
            Store.loads += 1
            return [f"{run_id}/{node_uuid}"]

    st = _state(("a", [], {}), ("b", ["a"], {}), ("c", ["a"], {}))
    outputs = LiveOutputs(Store())
    for node in st.create_nodes():
        outputs.track(node)
    a, b, c = (st.by_uuid[u] for u in "abc")
    a.output_ref = "1/a"
    outputs.save(a, [{"big": True}])
    st.finish(a, Status.COMPLETED)
    outputs.save(a, None)
    assert outputs.held(a)  # two readers to go
    assert outputs.args(b) == [{"big": True}]
    outputs.release_inputs(b)
    assert outputs.held(a)
    assert outputs.args(c) == [{"big": True}]
    outputs.release_inputs(c)
    assert not outputs.held(a)  # released; still loadable from the store
    assert outputs.load(a) == ["1/a"] and Store.loads == 1
    assert LiveOutputs.digests(b) == [None]
