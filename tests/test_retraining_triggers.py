"""Monitoring rules that trigger a pipeline (`trigger:` in notification_config.rules):
the run is queued once per episode, never beside an unfinished one, and a worker runs it
with the alert as a variable. The course's retraining under a real scheduler and worker
is in test_serving_retraining.py."""
from __future__ import annotations

import pytest

from blockyard.errors import ProjectError
from blockyard.notify.rules import parse_rules
from test_alert_rules import PIPELINE, PROJECT, checked, env, result, set_config  # noqa: F401  (fixture)
from wsbuilder import block, write_pipeline

RETRAIN = "retrain"


def _runs(db):
    import sqlalchemy as sa

    from blockyard.db.schema import pipeline_runs as pr

    with db.engine.connect() as conn:
        rows = conn.execute(sa.select(pr).where(pr.c.project == PROJECT, pr.c.pipeline_uuid == RETRAIN).order_by(pr.c.id))
        return [dict(r._mapping) for r in rows]


def test_trigger_key_is_parsed_and_checked(tmp_path):
    (rule,) = parse_rules([{"metric": "rmse", "op": ">", "threshold": 6, "trigger": " unit_4_triggering/automatic_retraining "}])
    assert rule.trigger == "unit_4_triggering/automatic_retraining"
    with pytest.raises(ProjectError, match=r"rules\[0\]\.trigger must be a pipeline name"):
        parse_rules([{"metric": "rmse", "op": ">", "threshold": 6, "trigger": ["a"]}])


def test_a_firing_rule_queues_one_run_per_episode_and_never_beside_an_unfinished_one(env):  # noqa: F811
    from blockyard.orchestration.worker import Worker
    from blockyard.project import Workspace

    write_pipeline(env.root, PROJECT, RETRAIN, [block("retrain", """
        @custom
        def retrain(*args, **kwargs):
            return {'alert': kwargs.get('alert')}
        """, type="custom")])
    set_config(env.root, {"rules": [
        {"name": "rmse up", "metric": "rmse", "op": ">", "threshold": "1.1 * baseline_rmse", "trigger": f"{PROJECT}/{RETRAIN}"},
        {"name": "drift", "metric": "drift_share", "op": ">=", "threshold": 0.5},
    ]})
    ok = {d.rule: d for d in checked(env, result("taxi", "2023-02", drift_share=0.0, rmse=5.2))}
    assert ok["rmse up"].transition == "ok" and ok["rmse up"].triggered is None and _runs(env.db) == []

    bad = result("taxi", "2023-03", drift_share=0.75, rmse=6.0)
    fired = {d.rule: d for d in checked(env, bad)}
    assert fired["rmse up"].transition == "fired" and fired["drift"].triggered is None  # no trigger on that rule
    (run,) = _runs(env.db)
    assert fired["rmse up"].triggered == {"pipeline": f"{PROJECT}/{RETRAIN}", "run_id": run["id"]}
    alert = run["variables"]["alert"]
    assert run["status"] == "queued" and alert["rule"] == "rmse up" and alert["value"] == 6.0
    assert alert["threshold"] == pytest.approx(5.5) and alert["model"] == "taxi" and alert["period"] == "2023-03"

    # Still holding: no second run in the same episode.
    again = {d.rule: d for d in checked(env, result("taxi", "2023-04", drift_share=0.75, rmse=6.5))}
    assert again["rmse up"].transition == "firing" and again["rmse up"].triggered is None and len(_runs(env.db)) == 1
    # Recovered, then a new episode while the first run is still queued: one at a time.
    checked(env, result("taxi", "2023-05", drift_share=0.0, rmse=5.0))
    busy = {d.rule: d for d in checked(env, result("taxi", "2023-06", drift_share=0.0, rmse=7.0))}
    assert busy["rmse up"].transition == "fired"
    assert busy["rmse up"].triggered["skipped"] == f"run {run['id']} of {PROJECT}/{RETRAIN} is unfinished"
    assert len(_runs(env.db)) == 1

    # A real worker runs the queued run; the block sees the alert.
    worker = Worker(Workspace.open(env.root), env.db, concurrency=1, poll_interval=0.05)
    worker.run_once()
    assert worker.wait_idle(60)
    (done,) = _runs(env.db)
    assert done["status"] == "completed", done

    # The next episode queues again, now that nothing is unfinished.
    checked(env, result("taxi", "2023-07", drift_share=0.0, rmse=5.0))
    checked(env, result("taxi", "2023-08", drift_share=0.0, rmse=7.5))
    assert [r["variables"]["alert"]["period"] for r in _runs(env.db)] == ["2023-03", "2023-08"]


def test_a_trigger_naming_no_pipeline_fails_the_check_and_names_the_rule(env):  # noqa: F811
    set_config(env.root, {"rules": [{"name": "rmse up", "metric": "rmse", "op": ">", "threshold": 1, "trigger": "nope/none"}]})
    with pytest.raises(ProjectError, match=r"rules 'rmse up': trigger 'nope/none'") as info:
        checked(env, result("taxi", "2023-03", drift_share=0.0, rmse=6.0))
    assert "metadata.yaml" in str(info.value)


def test_one_retraining_at_a_time_per_watched_folder(tmp_path, monkeypatch):
    """The course's `claim` (unit 4): eight concurrent claimers of a new month (two
    schedulers' runs, a manual run, an alert), exactly one gets it; inside the cooldown
    after it nobody does, and `skip_reason` says why."""
    import sys
    import threading

    from test_serving_support import REPO

    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from mlops.unit_4_triggering.utils.retraining import claim, mark_seen, new_month, skip_reason

    monkeypatch.setenv("BLOCKYARD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BLOCKYARD_WORKSPACE", str(REPO / "mlops"))
    watch = tmp_path / "incoming"
    watch.mkdir()
    for month in ("2023-01", "2023-02"):
        (watch / f"green_tripdata_{month}.parquet").touch()
    assert new_month(watch) is None  # the baseline
    (watch / "green_tripdata_2023-03.parquet").touch()
    barrier = threading.Barrier(8)
    got: list = []

    def claimer(alert: bool) -> None:
        barrier.wait()
        got.append(claim(watch, 600, alert=alert))

    threads = [threading.Thread(target=claimer, args=(i % 2 == 1,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(got, key=str) == ["2023-03"] + [None] * 7
    assert skip_reason(watch, 600) == "2023-03 is being retrained by another run"
    mark_seen(watch, "2023-03")  # what `promote` does: the claim ends, the cooldown starts
    assert claim(watch, 600, alert=True) is None
    assert skip_reason(watch, 600, alert=True).startswith("cooldown: the last retraining was")
    assert claim(watch, 0) is None and skip_reason(watch, 0).startswith("no new monthly file")
    assert claim(watch, 0, alert=True) == "2023-03"  # an alert retrains the newest month, though seen
