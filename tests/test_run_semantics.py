"""Mage's run semantics: every block runs on every run (caching is opt-in, keyed by the
content of every file a block depends on), and sensors poll in workers until they
return True — on SQLite and PostgreSQL."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta

import pytest
import yaml

import blockyard
from blockyard.errors import BlockyardError
from test_orchestration import T0, FakeClock, env  # noqa: F401 - fixtures
from wsbuilder import block, write_pipeline


@pytest.fixture
def rs(env, monkeypatch):  # noqa: F811 - the fixture above
    """The orchestration env, with run_pipeline() recording into the same database."""
    from blockyard.session import reset_sessions

    monkeypatch.setenv("BLOCKYARD_DATABASE_URL", env.url)
    reset_sessions()
    yield env
    reset_sessions()


def run(env, name: str, **kw):
    return blockyard.run_pipeline(f"{env.project}/{name}", workspace=env.root, **kw)


def wait_for(predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _meta_path(env, name: str):
    return env.root / env.project / "pipelines" / name / "metadata.yaml"


def _set_pipeline_key(env, name: str, key: str, value) -> None:
    path = _meta_path(env, name)
    meta = yaml.safe_load(path.read_text())
    meta[key] = value
    path.write_text(yaml.safe_dump(meta, sort_keys=False))


# ------------------------------------------------------------- every run runs
def _counter_pipeline(env, tmp_path, **block_config):
    counter = tmp_path / "counter.txt"
    counter.write_text("1")
    env.pipeline("fetch", [
        block("load", f"""
            @data_loader
            def load(**kwargs):
                return int(open({str(counter)!r}).read())
            """, type="data_loader", config=block_config or None),
        block("double", """
            @transformer
            def double(n, **kwargs):
                return n * 2
            """, type="transformer", upstream=["load"]),
    ])
    return counter


def test_a_loader_sees_new_data_on_every_run_and_the_cache_is_opt_in(rs, tmp_path):
    counter = _counter_pipeline(rs, tmp_path)
    first = run(rs, "fetch")
    assert first.ok and first.output("double") == 2
    counter.write_text("2")
    second = run(rs, "fetch")  # the default: every block runs (Mage)
    assert second.output("load") == 2 and second.output("double") == 4
    assert not any(b.cache_hit for b in second.block_runs.values())
    counter.write_text("3")
    cached = run(rs, "fetch", use_cache=True)  # --cache: unchanged blocks are skipped
    assert cached.block_runs["load"].cache_hit and cached.block_runs["double"].cache_hit
    assert cached.output("double") == 4
    rows = {r["block_uuid"]: r for r in rs.db.get_block_runs(cached.run_id)}
    assert rows["load"]["cache_hit"] is True and rows["load"]["output_ref"] == f"{second.run_id}/load"
    # The run record carries the user's variables only (no hidden cache variables).
    assert rs.db.get_pipeline_run(cached.run_id)["variables"] == {}


def test_pipeline_and_block_cache_settings(rs, tmp_path):
    counter = _counter_pipeline(rs, tmp_path)
    run(rs, "fetch")
    _set_pipeline_key(rs, "fetch", "cache", True)
    counter.write_text("5")
    hit = run(rs, "fetch")
    assert hit.block_runs["load"].cache_hit and hit.output("load") == 1
    forced = run(rs, "fetch", use_cache=False)  # --no-cache beats the pipeline's cache: true
    assert not forced.block_runs["load"].cache_hit and forced.output("load") == 5
    # A block's own `cache: false` wins over the pipeline's `cache: true`.
    _counter_pipeline(rs, tmp_path, cache=False)
    _set_pipeline_key(rs, "fetch", "cache", True)
    counter.write_text("6")
    mixed = run(rs, "fetch")
    assert not mixed.block_runs["load"].cache_hit and mixed.output("load") == 6
    _set_pipeline_key(rs, "fetch", "cache", "yes")
    with pytest.raises(BlockyardError) as err:
        run(rs, "fetch", raise_on_failure=True)
    assert "'cache' must be true or false" in str(err.value) and "metadata.yaml" in str(err.value)


def test_editing_a_conditional_file_invalidates_the_cache(rs, tmp_path):
    ran = tmp_path / "ran.txt"
    gate = rs.root / rs.project / "conditionals" / "gate.py"
    write_pipeline(rs.root, rs.project, "gated", [
        block("a", "@custom\ndef a(**kwargs):\n    return 1\n"),
        block("b", f"""
            @custom
            def b(x, **kwargs):
                open({str(ran)!r}, 'a').write('ran\\n')
                return x + 1
            """, upstream=["a"]),
    ], conditionals=[block("gate", """
        @condition
        def gate(*args, **kwargs):
            return True
        """, type="conditional", upstream=["b"])])
    first = run(rs, "gated", use_cache=True)
    assert first.ok and first.block_runs["b"].status == "completed"
    again = run(rs, "gated", use_cache=True)
    assert again.block_runs["b"].cache_hit
    gate.write_text(gate.read_text().replace("return True", "return False"))
    edited = run(rs, "gated", use_cache=True)
    # The key covers the conditional file's content: no stale hit, the new condition holds.
    assert not edited.block_runs["b"].cache_hit
    assert edited.block_runs["b"].status == "condition_failed"
    assert ran.read_text().count("ran") == 1


def test_editing_an_imported_utils_module_invalidates_the_cache(rs, tmp_path):
    ran = tmp_path / "ran.txt"
    # The project's utils/ package (the project's name is unique: sys.modules is per process).
    mod = "helpers"
    pkg = f"{rs.project}.utils"
    utils = rs.root / rs.project / "utils"
    utils.mkdir(parents=True)
    (utils / "__init__.py").write_text("")
    (utils / f"{mod}.py").write_text(f"from .{mod}_deep import FACTOR\n")
    (utils / f"{mod}_deep.py").write_text("FACTOR = 2\n")
    (utils / "unrelated.py").write_text("X = 1\n")
    rs.pipeline("uses_utils", [block("calc", f"""
        from {pkg}.{mod} import FACTOR
        @custom
        def calc(**kwargs):
            open({str(ran)!r}, 'a').write('ran\\n')
            return FACTOR
        """)])
    assert run(rs, "uses_utils", use_cache=True).output("calc") == 2
    (utils / "unrelated.py").write_text("X = 2\n")  # not imported: the key stays
    assert run(rs, "uses_utils", use_cache=True).block_runs["calc"].cache_hit
    (utils / f"{mod}_deep.py").write_text("FACTOR = 3\n")  # imported through another module
    edited = run(rs, "uses_utils", use_cache=True)
    assert not edited.block_runs["calc"].cache_hit
    assert ran.read_text().count("ran") == 2


def test_cache_policies_compose(rs, tmp_path):
    rs.pipeline("policy", [
        block("src", "@custom\ndef src(**kwargs):\n    return 10\n"),
        block("inputs_only", """
            @custom
            def inputs_only(x, **kwargs):
                return x + 1
            """, upstream=["src"], config={"cache_policy": ["inputs"]}),
        block("default", """
            @custom
            def default(x, **kwargs):
                return x + 2
            """, upstream=["src"]),
    ])
    run(rs, "policy", use_cache=True)
    for name in ("inputs_only", "default"):
        path = rs.root / rs.project / "custom" / f"{name}.py"
        path.write_text(path.read_text() + "\n# edited\n")
    again = run(rs, "policy", use_cache=True)
    assert again.block_runs["inputs_only"].cache_hit  # its key: the inputs only
    assert not again.block_runs["default"].cache_hit  # source + inputs + ...
    again_vars = run(rs, "policy", use_cache=True, variables={"v": 1})
    assert again_vars.block_runs["inputs_only"].cache_hit  # variables are not in its key

    from blockyard.engine import cache

    assert cache.policy_from(["source", "inputs"]).name == (cache.INPUTS + cache.SOURCE).name
    assert (cache.SOURCE + cache.SOURCE).name == "source"
    rs.pipeline("bad_policy", [block("x", "@custom\ndef x(**kwargs):\n    return 1\n",
                                     config={"cache_policy": ["inputs", "moon_phase"]})])
    bad = run(rs, "bad_policy")
    assert bad.status == "failed" and "moon_phase" in bad.error and "x" in bad.error


def _client(env):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    from blockyard.server.app import create_app

    return TestClient(create_app(env.root))


def test_the_run_api_takes_a_cache_field(rs, tmp_path):
    counter = _counter_pipeline(rs, tmp_path)
    run(rs, "fetch")
    counter.write_text("7")
    with _client(rs) as client:
        plain = client.post(f"/api/pipelines/{rs.project}/fetch/runs", json={}).json()
        cached = client.post(f"/api/pipelines/{rs.project}/fetch/runs", json={"cache": True}).json()
        assert plain["cache"] is None and cached["cache"] is True
        bad = client.post(f"/api/pipelines/{rs.project}/fetch/runs", json={"cache": "sometimes"})
        assert bad.status_code == 422 and "cache" in bad.text
    worker = rs.worker(concurrency=1)
    for _ in range(2):
        worker.run_once()
        assert worker.wait_idle(60)
    outs = {}
    for r in (plain, cached):
        rows = {b["block_uuid"]: b for b in rs.db.get_block_runs(r["id"])}
        outs[r["id"]] = rows["load"]
    assert outs[plain["id"]]["cache_hit"] is False and outs[cached["id"]]["cache_hit"] is True


# -------------------------------------------------------------------- sensors
def _sensor_pipeline(env, tmp_path, name="sensed", *, true_on: int | None = 3, **block_kw):
    polls = tmp_path / f"{name}_polls.txt"
    after = tmp_path / f"{name}_after.txt"
    condition = f"n >= {true_on}" if true_on else "False"
    env.pipeline(name, [
        block("wait_for_data", f"""
            import os
            from pathlib import Path
            @sensor
            def wait_for_data(**kwargs):
                p = Path({str(polls)!r})
                n = len(p.read_text().splitlines()) + 1 if p.exists() else 1
                with p.open('a') as f:
                    f.write(str(os.getpid()) + '\\n')
                return {condition}
            """, type="sensor", **block_kw),
        block("after", f"""
            from pathlib import Path
            @custom
            def after(*args, **kwargs):
                n = len(Path({str(polls)!r}).read_text().splitlines())
                Path({str(after)!r}).write_text(str(n))
                return n
            """, upstream=["wait_for_data"]),
    ])
    return polls, after


def test_sensor_is_polled_until_true_and_only_then_downstream_runs(rs, tmp_path):
    polls, after = _sensor_pipeline(rs, tmp_path, config={"poke_interval": 0.2})
    events: list[dict] = []
    result = run(rs, "sensed", on_event=events.append)
    assert result.ok, result.error
    assert after.read_text() == "3"  # downstream ran after the third poll, never before
    assert result.block_runs["wait_for_data"].attempts == 3
    waiting = [e for e in events if e.get("type") == "sensor"]
    assert [e["polls"] for e in waiting] == [1, 2] and all(e["state"] == "waiting" for e in waiting)
    row = {r["block_uuid"]: r for r in rs.db.get_block_runs(result.run_id)}["wait_for_data"]
    assert row["metrics"]["sensor"] == {"state": "met", "polls": 3}
    # Sensors always poll: never a cache hit, even with the cache on.
    again = run(rs, "sensed", use_cache=True)
    assert not again.block_runs["wait_for_data"].cache_hit


def test_sensor_that_never_returns_true_fails_at_its_timeout(rs, tmp_path):
    polls, after = _sensor_pipeline(rs, tmp_path, true_on=None, config={"poke_interval": 0.2}, timeout=1)
    result = run(rs, "sensed")
    assert result.status == "failed"
    sensor = result.block_runs["wait_for_data"]
    assert sensor.status == "failed" and "did not return True within its timeout of 1 s" in sensor.error
    assert result.block_runs["after"].status == "upstream_failed"
    assert not after.exists() and len(polls.read_text().splitlines()) >= 2
    bad = _sensor_pipeline(rs, tmp_path, "bad", config={"poke_interval": "soon"})
    del bad
    failed = run(rs, "bad")
    assert failed.status == "failed" and "poke_interval" in failed.error and "wait_for_data" in failed.error


def test_cancel_stops_a_polling_sensor_and_the_api_shows_it_waiting(rs, tmp_path):
    from blockyard.orchestration import runs

    # A ten-minute poke interval: the run can only end soon after the cancel request if
    # cancel interrupts the sensor's wait.
    polls, after = _sensor_pipeline(rs, tmp_path, true_on=None, config={"poke_interval": 600})
    queued = rs.enqueue("sensed")
    worker = rs.worker(concurrency=1)
    worker.run_once()

    def sensor_row():
        return rs.db.get_block_run(queued["id"], "wait_for_data") or {}

    wait_for(lambda: ((sensor_row().get("metrics") or {}).get("sensor") or {}).get("polls", 0) >= 1,
             what="the sensor's first poll")
    row = sensor_row()
    assert row["status"] == "running" and row["metrics"]["sensor"]["state"] == "waiting"
    # The waiting state and the poll count reach the REST API's block-run rows.
    with _client(rs) as client:
        rows = {r["block_uuid"]: r for r in client.get(f"/api/runs/{queued['id']}/block_runs").json()}
    sensor = rows["wait_for_data"]["metrics"]["sensor"]
    assert rows["wait_for_data"]["status"] == "running"
    assert sensor == {"state": "waiting", "polls": 1, "poke_interval": 600}
    # A long poke interval: the run can only end quickly if cancel interrupts the wait.
    runs.request_cancel(rs.db, queued["id"])
    assert worker.check_runs()["cancelled"] == [queued["id"]]
    assert worker.wait_idle(30)
    final = rs.db.get_pipeline_run(queued["id"])
    assert final["status"] == "cancelled"
    blocks = {b["block_uuid"]: b for b in rs.db.get_block_runs(queued["id"])}
    assert blocks["wait_for_data"]["status"] == "cancelled"
    assert blocks["after"]["status"] == "cancelled" and not after.exists()
    n = len(polls.read_text().splitlines())
    time.sleep(0.5)
    assert len(polls.read_text().splitlines()) == n  # the sensor stopped polling


def test_a_sensor_trigger_runs_the_sensor_in_a_worker_process(rs, tmp_path):
    polls, after = _sensor_pipeline(rs, tmp_path, config={"poke_interval": 0.2})
    clock = FakeClock(T0)
    rs.store(clock).create({"pipeline": f"{rs.project}/sensed", "name": "when_ready",
                            "schedule_type": "event", "settings": {"poke_interval": 3600}})
    fired = rs.scheduler(clock).tick(T0)
    assert len(fired) == 1 and not polls.exists()  # queued; the scheduler ran no user code
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BLOCKYARD_")}
    environ["PYTHONPATH"] = os.pathsep.join(sys.path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "blockyard.orchestration", "worker", "-w", str(rs.root),
         "--database-url", rs.url, "--concurrency", "1"],
        env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: rs.db.get_pipeline_run(fired[0]["id"])["status"] in ("completed", "failed"),
                 what="the worker process to finish the run")
    finally:
        proc.terminate()
        proc.wait(30)
    row = rs.db.get_pipeline_run(fired[0]["id"])
    assert row["status"] == "completed", row["error"]
    pids = {int(p) for p in polls.read_text().split()}
    # Polled by the worker (in the child process it runs each run in, see
    # orchestration/isolation.py), never in this process, where the scheduler ticked.
    assert len(pids) == 1 and os.getpid() not in pids, pids
    assert after.read_text() == "3"
    assert rs.scheduler(clock).tick(T0 + timedelta(seconds=1)) == []  # next one: in an hour
