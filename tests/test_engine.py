"""Block execution semantics, on real files, a real SQLite database and a real store."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

import blockyard
from blockyard.errors import BlockyardError
from wsbuilder import block, write_pipeline


@pytest.fixture
def ws(tmp_path, monkeypatch):
    root = tmp_path / "ws"
    root.mkdir()
    monkeypatch.delenv("BLOCKYARD_HOME", raising=False)
    monkeypatch.delenv("BLOCKYARD_DATABASE_URL", raising=False)
    return root


def run(root, name="p/pipe", **kw):
    return blockyard.run_pipeline(name, workspace=root, **kw)


def test_chain_positional_inputs_tuple_outputs_and_tests(ws):
    write_pipeline(
        ws,
        "p",
        "pipe",
        [
            block("load", """
                @data_loader
                def load(*args, **kwargs):
                    return [1, 2, 3], {"k": kwargs["target"]}
                """, type="data_loader"),
            block("other", """
                if 'data_loader' not in globals():
                    from mage_ai.data_preparation.decorators import data_loader
                @data_loader
                def other(**kwargs):
                    return 10
                """, type="data_loader"),
            block("combine", """
                @transformer
                def combine(data, other, *args, **kwargs):
                    items, meta = data
                    return sum(items) + other, meta["k"], kwargs["pipeline_uuid"]

                @test
                def test_values(total, k, pipe, *args):
                    assert total == 16, f"total is {total}"
                """, type="transformer", upstream=["load", "other"]),
        ],
        variables={"target": "pipeline"},
    )
    result = run(ws, variables={"target": "runtime"})
    assert result.ok, result.error
    assert result.output("combine") == [16, "runtime", "pipe"]
    assert result.block_runs["combine"].tests == [
        {"name": "test_values", "passed": True, "error": None}
    ]
    # pipeline variable applies when no runtime variable overrides it
    assert run(ws).output("combine")[1] == "pipeline"


def test_failed_test_fails_block_with_name_and_message(ws):
    write_pipeline(ws, "p", "pipe", [
        block("a", """
            @custom
            def a():
                return 5
            @test
            def test_is_six(value):
                assert value == 6, f'expected 6, got {value}'
            """),
    ])
    result = run(ws)
    assert result.status == "failed"
    assert "test_is_six" in result.error and "expected 6, got 5" in result.error
    assert "a.py" in result.error


def test_kwargs_only_when_accepted_and_context_keys(ws):
    write_pipeline(ws, "p", "pipe", [
        block("a", """
            @custom
            def a():
                return 'no kwargs'
            """),
        block("b", """
            @custom
            def b(x, *, pipeline_run_id, ds):
                return x, pipeline_run_id, ds
            """, upstream=["a"]),
        block("c", """
            @custom
            def c(x, **kwargs):
                return sorted(k for k in kwargs if k != 'context')
            """, upstream=["a"]),
    ])
    result = run(ws)
    assert result.ok, result.error
    x, run_id, ds = result.output("b")
    assert x == "no kwargs" and run_id == result.run_id and len(ds) == 10
    keys = result.output("c")
    for k in ("execution_date", "ds", "env", "pipeline_uuid", "block_uuid", "pipeline_run_id",
              "configuration", "logger", "dynamic_block_index"):
        assert k in keys


def test_opt_in_cache_skips_unchanged_and_reruns_on_change(ws):
    counter = ws / "count.txt"
    code = f"""
        @data_loader
        def load(**kwargs):
            p = {str(counter)!r}
            import os
            n = int(open(p).read()) if os.path.exists(p) else 0
            open(p, 'w').write(str(n + 1))
            return kwargs.get('size', 3)
        """
    write_pipeline(ws, "p", "pipe", [
        block("load", code, type="data_loader"),
        block("double", """
            @transformer
            def double(n):
                return n * 2
            """, type="transformer", upstream=["load"]),
    ])
    first = run(ws)
    assert first.ok and first.output("double") == 6
    second = run(ws, use_cache=True)
    assert second.block_runs["load"].cache_hit and second.block_runs["double"].cache_hit
    assert second.output("double") == 6
    assert counter.read_text() == "1"
    third = run(ws, variables={"size": 4}, use_cache=True)
    assert not third.block_runs["load"].cache_hit and third.output("double") == 8
    fourth = run(ws, use_cache=False)
    assert not fourth.block_runs["load"].cache_hit
    assert counter.read_text() == "3"
    # editing downstream code reruns only that block
    path = ws / "p" / "transformers" / "double.py"
    path.write_text(path.read_text().replace("n * 2", "n * 3"))
    fifth = run(ws, use_cache=True)
    assert fifth.block_runs["load"].cache_hit and not fifth.block_runs["double"].cache_hit
    assert fifth.output("double") == 9


def test_dynamic_fan_out_names_clones_and_reduces(ws):
    write_pipeline(ws, "p", "pipe", [
        block("models", """
            @custom
            def models(**kwargs):
                names = kwargs.get('models', 'a,b,c').split(',')
                return names, [dict(block_uuid=n.upper()) for n in names]
            """, config={"dynamic": True}),
        block("train", """
            @transformer
            def train(name, **kwargs):
                return name + str(kwargs['dynamic_block_index'])
            """, type="transformer", upstream=["models"]),
        block("score", """
            @transformer
            def score(trained):
                return trained + '!'
            """, type="transformer", upstream=["train"], config={"reduce_output": True}),
        block("report", """
            @data_exporter
            def report(scores):
                return sorted(scores)
            """, type="data_exporter", upstream=["score"]),
    ])
    result = run(ws)
    assert result.ok, result.error
    assert [c.uuid for c in result.children("train")] == ["train:A", "train:B", "train:C"]
    assert [c.uuid for c in result.children("score")] == ["score:A", "score:B", "score:C"]
    assert result.output("report") == ["a0!", "b1!", "c2!"]
    assert result.output("train:B") == "b1"
    # a cached dynamic parent still expands: clones and the reduce come from the cache
    again = run(ws, use_cache=True)
    assert again.ok and again.output("report") == ["a0!", "b1!", "c2!"]
    assert [c.cache_hit for c in again.children("train")] == [True, True, True]
    assert again.block_runs["report"].cache_hit
    # a different fan-out reruns what changed
    two = run(ws, variables={"models": "a,d"}, use_cache=True)
    assert two.output("report") == ["a0!", "d1!"]


def test_dynamic_ten_thousand_children(ws):
    write_pipeline(ws, "p", "pipe", [
        block("items", """
            @custom
            def items():
                return list(range(10000))
            """, config={"dynamic": True}),
        block("child", """
            @custom
            def child(i):
                return i * 2
            """, upstream=["items"], config={"reduce_output": True}),
        block("total", """
            @custom
            def total(values):
                return sum(values), len(values)
            """, upstream=["child"]),
    ])
    result = run(ws, use_cache=False)
    assert result.ok, result.error
    assert result.output("total") == [sum(range(10000)) * 2, 10000]
    assert len(result.children("child")) == 10000


def test_nested_dynamic(ws):
    write_pipeline(ws, "p", "pipe", [
        block("outer", """
            @custom
            def outer():
                return [[1, 2], [3]]
            """, config={"dynamic": True}),
        block("inner", """
            @custom
            def inner(group):
                return group
            """, upstream=["outer"], config={"dynamic": True}),
        block("leaf", """
            @custom
            def leaf(x):
                return x * 10
            """, upstream=["inner"], config={"reduce_output": True}),
        block("per_group", """
            @custom
            def per_group(values):
                return sum(values)
            """, upstream=["leaf"], config={"reduce_output": True}),
        block("final", """
            @custom
            def final(sums):
                return sums
            """, upstream=["per_group"]),
    ])
    result = run(ws)
    assert result.ok, result.error
    assert result.output("final") == [30, 30]
    assert len(result.children("leaf")) == 3


def test_condition_skips_block_and_downstream(ws):
    write_pipeline(ws, "p", "pipe", [
        block("a", """
            @custom
            def a():
                return 1
            """),
        block("b", """
            @custom
            def b(x):
                return x
            @condition
            def only_when(x, **kwargs):
                return kwargs.get('go', False)
            """, upstream=["a"]),
        block("c", """
            @custom
            def c(x):
                return x
            """, upstream=["b"]),
    ])
    skipped = run(ws)
    assert skipped.ok
    assert skipped.block_runs["b"].status == "condition_failed"
    assert skipped.block_runs["c"].status == "condition_failed"
    ran = run(ws, variables={"go": True})
    assert ran.block_runs["c"].status == "completed"


def test_callbacks_retries_and_timeout(ws):
    marker = ws / "marks.txt"
    attempts = ws / "attempts.txt"
    write_pipeline(ws, "p", "pipe", [
        block("flaky", f"""
            import os
            @custom
            def flaky():
                p = {str(attempts)!r}
                n = int(open(p).read()) if os.path.exists(p) else 0
                open(p, 'w').write(str(n + 1))
                if n < 2:
                    raise RuntimeError('not yet')
                return n
            @callback('success')
            def ok(data, **kwargs):
                open({str(marker)!r}, 'a').write(f'success:{{data}}\\n')
            """, retry_config={"retries": 2, "delay": 0.01, "exponential_backoff": True}),
        block("broken", f"""
            @custom
            def broken():
                raise ValueError('boom')
            @on_failure
            def failed(*args, **kwargs):
                open({str(marker)!r}, 'a').write('failure:' + kwargs['__error'].split(': ')[-1] + '\\n')
            """),
        block("slow", """
            import time
            @custom
            def slow():
                time.sleep(5)
            """, timeout=0.3),
    ])
    result = run(ws)
    assert result.status == "failed"
    assert result.block_runs["flaky"].status == "completed"
    assert result.block_runs["flaky"].attempts == 3
    assert result.block_runs["broken"].status == "failed"
    assert result.block_runs["slow"].status == "failed"
    assert "timed out after 0.3 s" in result.block_runs["slow"].error
    lines = marker.read_text().splitlines()
    assert "success:2" in lines and "failure:boom" in lines


def test_failure_marks_downstream_upstream_failed(ws):
    write_pipeline(ws, "p", "pipe", [
        block("a", """
            @custom
            def a():
                return 1 / 0
            """),
        block("b", """
            @custom
            def b(x):
                return x
            """, upstream=["a"]),
    ])
    result = run(ws)
    assert result.status == "failed"
    assert result.block_runs["b"].status == "upstream_failed"
    assert "ZeroDivisionError" in result.error and "a.py:3" in result.error


def test_print_and_logger_land_in_block_log(ws):
    write_pipeline(ws, "p", "pipe", [
        block("talk", """
            @custom
            def talk(**kwargs):
                print('hello from print')
                kwargs['logger'].info('hello from logger')
                return 1
            """),
    ])
    result = run(ws)
    from blockyard.session import session_for
    from blockyard.project import Workspace

    db = session_for(Workspace.open(ws)).db
    row = db.get_block_run(result.run_id, "talk")
    text = Path(row["log_path"]).read_text()
    assert "hello from print" in text and "hello from logger" in text


def test_single_block_and_from_block_use_stored_upstream(ws):
    write_pipeline(ws, "p", "pipe", [
        block("a", """
            @custom
            def a(**kwargs):
                return kwargs.get('base', 1)
            """),
        block("b", """
            @custom
            def b(x, **kwargs):
                return x + kwargs.get('add', 0)
            """, upstream=["a"]),
        block("c", """
            @custom
            def c(x):
                return x * 100
            """, upstream=["b"]),
    ])
    missing = run(ws, block="b")
    assert missing.status == "failed" and "no stored output" in missing.error
    assert run(ws).output("c") == 100
    only_b = run(ws, block="b", variables={"add": 5})
    assert list(only_b.block_runs) == ["b"] and only_b.output("b") == 6
    from_b = run(ws, from_block="b", variables={"add": 2})
    assert set(from_b.block_runs) == {"b", "c"} and from_b.output("c") == 300


def test_process_executor(ws):
    write_pipeline(ws, "p", "pipe", [
        block("a", """
            @custom
            def a():
                import os
                return os.getpid()
            """),
        block("b", """
            @custom
            def b(pid):
                import os
                return pid, os.getpid()
            """, upstream=["a"]),
    ])
    import os

    result = run(ws, executor="process", use_cache=False)
    assert result.ok, result.error
    pid_a, pid_b = result.output("b")
    assert pid_a != os.getpid() and pid_b != os.getpid()


def test_global_data_product_runs_producer_only_when_outdated(ws):
    write_pipeline(ws, "prod", "producer", [
        block("build", """
            import time
            @data_exporter
            def build():
                return 'X', time.time()
            """, type="data_exporter"),
    ])
    (ws / "cons").mkdir()
    (ws / "cons" / "global_data_products.yaml").write_text(
        "training_set:\n  object_type: pipeline\n  object_uuid: producer\n"
        "  project: prod\n  outdated_after:\n    seconds: 600\n"
    )
    write_pipeline(ws, "cons", "consumer", [
        {"uuid": "training_set", "type": "global_data_product", "upstream_blocks": [],
         "configuration": {"global_data_product": {"uuid": "training_set"}}},
        block("use", """
            @transformer
            def use(training_set):
                x, stamp = training_set['build']
                return x, stamp
            """, type="transformer", upstream=["training_set"]),
    ])
    first = run(ws, "cons/consumer", use_cache=False)
    assert first.ok, first.error
    second = run(ws, "cons/consumer", use_cache=False)
    assert second.output("use") == first.output("use")  # producer not rerun while fresh
    from blockyard.session import session_for
    from blockyard.project import Workspace

    db = session_for(Workspace.open(ws)).db
    assert len(db.list_pipeline_runs(pipeline_uuid="producer")) == 1
    gdp = ws / "cons" / "global_data_products.yaml"
    gdp.write_text(gdp.read_text().replace("seconds: 600", "seconds: 0"))
    third = run(ws, "cons/consumer", use_cache=False)
    assert third.output("use")[1] > first.output("use")[1]
    assert len(db.list_pipeline_runs(pipeline_uuid="producer")) == 2


def test_block_with_upstream_runs_only_its_ancestors(ws):
    write_pipeline(ws, "p", "pipe", [
        block("a", """
            @custom
            def a(**kwargs):
                return 1
            """),
        block("d", """
            @custom
            def d(**kwargs):
                return 'side'
            """),
        block("b", """
            @custom
            def b(x, **kwargs):
                return x + 10
            """, upstream=["a"]),
        block("c", """
            @custom
            def c(x):
                return x * 100
            """, upstream=["b"]),
    ])
    # nothing stored yet: with_upstream does not need stored outputs of a
    result = run(ws, block="b", with_upstream=True)
    assert result.ok, result.error
    assert list(result.block_runs) == ["a", "b"]
    assert result.output("b") == 11
    with pytest.raises(BlockyardError):
        run(ws, block="nope", with_upstream=True, raise_on_failure=True)


@pytest.mark.parametrize("executor", ["inline", "thread"])
def test_outputs_are_freed_once_their_last_reader_started(ws, executor, monkeypatch):
    """Peak memory stays near a plain script's: a block's live outputs are dropped (by
    reference counting, not a later garbage collection) once every reader has started,
    and nothing of a finished run keeps them."""
    import gc
    import sys
    import types

    probe = types.ModuleType("_release_probe")
    probe.refs = []
    monkeypatch.setitem(sys.modules, "_release_probe", probe)
    write_pipeline(ws, "p", "pipe", [
        block("a", """
            import weakref
            import numpy as np
            import _release_probe

            @custom
            def a():
                big = np.arange(1_000_000)
                _release_probe.refs.append(weakref.ref(big))
                return big
            """),
        block("b", """
            @custom
            def b(x):
                return int(x[-1])
            """, upstream=["a"]),
        block("c", """
            import _release_probe

            @custom
            def c(n):
                return [n, _release_probe.refs[0]() is None]
            """, upstream=["b"]),
    ])
    gc.disable()
    try:
        result = run(ws, executor=executor, use_cache=False)
        assert result.ok, result.error
        assert result.output("c") == [999_999, True]
        assert probe.refs[0]() is None
        assert list(result.output("a")[:3]) == [0, 1, 2]  # still readable: from the store
    finally:
        gc.enable()


BIG_FRAME = """
    import numpy as np
    import pandas as pd

    @data_loader
    def load(**kwargs):
        n = 200_000
        return pd.DataFrame({'x': np.arange(n, dtype='float64'), 'k': np.arange(n) % 7,
                             's': pd.Series(['a', 'b'] * (n // 2), dtype='str')})
    """


def _db(ws):
    from blockyard.session import session_for
    from blockyard.project import Workspace

    return session_for(Workspace.open(ws)).db


@pytest.mark.parametrize("executor", ["inline", "thread"])
def test_stored_output_is_what_the_block_returned(ws, executor):
    """Downstream blocks get the live objects; what they change in place never
    reaches the upstream block's stored output."""
    write_pipeline(ws, "p", "pipe", [
        block("load", BIG_FRAME, type="data_loader"),
        block("mutate", """
            @transformer
            def mutate(df):
                df['x'] *= -1
                df.loc[0, 'k'] = 99
                df['extra'] = 1
                del df['s']
                return float(df['x'].sum())
            """, type="transformer", upstream=["load"]),
    ])
    result = run(ws, executor=executor, use_cache=False)
    assert result.ok, result.error
    n = 200_000
    assert result.output("mutate") == -float(n * (n - 1) // 2)
    stored = result.output("load")  # released after `mutate` started: read from the store
    assert list(stored.columns) == ["x", "k", "s"]
    assert stored["x"].iloc[5] == 5.0 and stored["k"].iloc[0] == 0
    assert stored["s"].iloc[:3].tolist() == ["a", "b", "a"]
    row = _db(ws).get_block_run(result.run_id, "load")
    assert row["status"] == "completed" and row["digest"] and row["output_ref"]


def test_failed_write_fails_the_block_before_downstream_starts(ws, monkeypatch):
    """A write that fails (here: the disk refuses it) fails the block with the reason,
    its downstream blocks do not run, and the run fails."""
    from blockyard.store import ArtifactStore

    real = ArtifactStore.save_outputs

    def refuse_load(self, run_id, node_uuid, outputs):
        if node_uuid == "load":
            raise OSError(28, "No space left on device")
        return real(self, run_id, node_uuid, outputs)

    monkeypatch.setattr(ArtifactStore, "save_outputs", refuse_load)
    write_pipeline(ws, "p", "pipe", [
        block("load", BIG_FRAME, type="data_loader"),
        block("total", """
            @transformer
            def total(df):
                return float(df['x'].sum())
            """, type="transformer", upstream=["load"]),
    ])
    result = run(ws, use_cache=False)
    assert result.status == "failed"
    assert result.block_runs["load"].status == "failed"
    assert result.block_runs["total"].status == "upstream_failed"
    assert "No space left on device" in result.error and "'load'" in result.error
    row = _db(ws).get_block_run(result.run_id, "load")
    assert row["status"] == "failed" and "No space left" in row["error"] and row["output_ref"] is None


def test_a_run_executes_the_code_it_read_at_start(ws):
    """Block files are read (and the cache keyed) once, before anything runs: an edit
    during the run takes effect in the next run, never half-way through this one."""
    target = ws / "p" / "custom" / "b.py"
    write_pipeline(ws, "p", "pipe", [
        block("a", f"""
            @custom
            def a():
                path = {str(target)!r}
                text = open(path).read()
                open(path, 'w').write(text.replace("'old'", "'new'"))
                return 1
            """),
        block("b", """
            @custom
            def b(x):
                return 'old'
            """, upstream=["a"]),
    ])
    first = run(ws)
    assert first.ok, first.error
    assert first.output("b") == "old"
    second = run(ws)
    assert second.ok, second.error
    assert second.output("b") == "new" and not second.block_runs["b"].cache_hit


def test_blocks_wrapped_by_one_decorator_keep_their_own_signatures(ws):
    """A user decorator (functools.wraps) shares one wrapper function body between
    blocks: each block still gets its own arguments (signatures are not mixed up)."""
    deco = """
        import functools

        def traced(fn):
            @functools.wraps(fn)
            def wrapper(*args, **kwargs):
                return fn(*args, **kwargs)
            return wrapper
        """
    (ws / "p" / "utils").mkdir(parents=True)
    (ws / "p" / "utils" / "__init__.py").write_text("")
    (ws / "p" / "utils" / "tracing.py").write_text(textwrap.dedent(deco))
    write_pipeline(ws, "p", "pipe", [
        block("a", """
            from p.utils.tracing import traced

            @custom
            @traced
            def a():
                return 2
            """),
        block("b", """
            from p.utils.tracing import traced

            @custom
            @traced
            def b(x, *, pipeline_uuid):
                return [x * 10, pipeline_uuid]
            """, upstream=["a"]),
    ])
    result = run(ws, use_cache=False)
    assert result.ok, result.error
    assert result.output("b") == [20, "pipe"]


def test_a_finished_run_is_freed_with_its_result_without_the_cycle_collector(ws):
    # Nodes point at their upstream and dependents, the task factory served the runner:
    # a finished run drops the references back, so dropping its result frees it at once
    # (the process's full collections then walk fewer objects, and a process running many
    # runs holds no run it is done with).
    import gc
    import weakref

    write_pipeline(ws, "p", "pipe", [
        block("a", "@data_loader\ndef a():\n    return 1\n", type="data_loader"),
        block("b", "@transformer\ndef b(x):\n    return x + 1\n", type="transformer", upstream=["a"]),
        block("c", "@transformer\ndef c(x, *args, **kwargs):\n    return x * 10\n", type="transformer", upstream=["b"]),
    ])
    gc.collect()
    gc.disable()
    try:
        result = run(ws)
        assert result.ok and result.output("c") == 20
        runner = weakref.ref(result._runner)
        state = weakref.ref(result._runner.state)
        del result
        assert runner() is None and state() is None
    finally:
        gc.enable()
