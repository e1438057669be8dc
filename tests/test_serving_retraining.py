"""Course unit 4's automatic retraining on the mirror data: a champion trained on
2023-01/02 is served; 2023-03 lands in the watched folder (2023-01/02 already there); the
sensor fires, `retrain` trains a challenger through trigger_pipeline, `promote` keeps or
replaces the champion on 2023-03 with its reason, and the served model follows."""
from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip("mlflow")
pytest.importorskip("xgboost")
from mirror import MIRROR  # noqa: E402
from test_serving_support import COURSE, ROW, train_and_register  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (MIRROR / "taxi/green/green_tripdata_2023-03.parquet").is_file(),
                       reason="course data mirror not present"),
]


def _drop(watch, month):
    name = f"green_tripdata_{month}.parquet"
    (watch / name).symlink_to(MIRROR / "taxi" / "green" / name)


def _release_claim(watch):
    from mlops.unit_4_triggering.utils.retraining import load_state, save_state

    state = load_state(watch)
    state.pop("claimed"), state.pop("claimed_at")
    save_state(watch, state)


def test_new_month_retrains_and_the_served_champion_never_gets_worse(tmp_path, monkeypatch):
    from blockyard import run_pipeline
    from blockyard.session import reset_sessions
    from blockyard.ml.tracking import setup_mlflow
    from blockyard.serving.model import ModelHolder

    monkeypatch.setenv("BLOCKYARD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BLOCKYARD_WORKSPACE", str(COURSE))
    monkeypatch.setenv("BLOCKYARD_DATA_MIRROR", str(MIRROR))
    for name in ("MLFLOW_TRACKING_URI", "BLOCKYARD_DATABASE_URL", "BLOCKYARD_STORE_URL"):
        monkeypatch.delenv(name, raising=False)
    reset_sessions()
    from mlops.unit_4_triggering.utils.retraining import claim, new_month

    watch = tmp_path / "incoming"
    watch.mkdir()
    for month in ("2023-01", "2023-02"):
        _drop(watch, month)
    before = train_and_register(COURSE, month=["2023-01", "2023-02"], rounds=8)
    holder = ModelHolder(COURSE, poll_seconds=0.2)
    holder.load()
    holder.start()
    errors: list[str] = []
    served: list[str] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            model = holder.current
            try:
                assert model.predict([ROW])[0] > 0
                served.append(model.version)
            except Exception as exc:  # noqa: BLE001
                errors.append(repr(exc))
            time.sleep(0.002)

    thread = threading.Thread(target=client)
    thread.start()
    try:
        assert new_month(watch) is None  # the first look records the baseline (01, 02)
        assert new_month(watch) is None
        _drop(watch, "2023-03")
        assert new_month(watch) == "2023-03"
        assert claim(watch) == "2023-03" and claim(watch) is None  # one claim per month...
        assert new_month(watch) is None  # ...and the sensor stays quiet while it is held
        _release_claim(watch)
        result = run_pipeline("unit_4_triggering/automatic_retraining", workspace=COURSE, use_cache=False,
                              variables={"watch_dir": str(watch), "cooldown_seconds": 0, "num_boost_round": 30})
        assert result.ok, (result.error, {u: b.error for u, b in result.block_runs.items()})
        retraining = result.output("retrain")
        assert retraining["month"] == "2023-03" and retraining["train_months"] == ["2023-01", "2023-02"]
        decision = result.output("promote")
        client_ = setup_mlflow(COURSE).client
        tags = client_.get_model_version("nyc-taxi-duration", decision["challenger_version"]).tags
        assert tags["retraining_decision"] == ("promoted" if decision["promoted"] else "kept")
        assert tags["retraining_reason"] == decision["reason"] and "2023-03" in decision["reason"]
        assert decision["champion_version"] == before
        champion = client_.get_model_version_by_alias("nyc-taxi-duration", "champion")
        if decision["promoted"]:
            assert decision["challenger_rmse"] < decision["champion_rmse"]
            assert str(champion.version) == decision["challenger_version"]
        else:
            assert str(champion.version) == before
        deadline = time.monotonic() + 60
        while holder.current.version != str(champion.version) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert holder.current.version == str(champion.version)
        time.sleep(0.2)
        assert new_month(watch) is None  # 2023-03 is seen: no second retraining
        # Mage's sensor semantics: with nothing new the sensor keeps polling and nothing
        # downstream runs; with a short timeout the run fails at it and retrain never runs.
        from blockyard.project import Workspace

        spec = Workspace.open(COURSE).find_pipeline("unit_4_triggering/automatic_retraining")
        sensor = spec.block("new_data")
        sensor.timeout = 1.0
        sensor.configuration["poke_interval"] = 0.2
        again = run_pipeline(spec, workspace=COURSE, use_cache=False,
                             variables={"watch_dir": str(watch), "cooldown_seconds": 0})
        assert not again.ok
        assert again.block_runs["new_data"].status == "failed"
        assert again.block_runs["retrain"].status == "upstream_failed"
    finally:
        stop.set()
        thread.join(10)
        holder.stop()
        reset_sessions()
    assert not errors, errors[:3]
    assert served[0] == before and served[-1] == str(champion.version)


def _versions(client):
    return {str(v.version): v.tags for v in client.search_model_versions("name = 'nyc-taxi-duration'")}


def _block_output(db, run_id, block):
    from blockyard import settings
    from blockyard.store import ArtifactStore

    (row,) = [b for b in db.get_block_runs(run_id) if b["block_uuid"] == block]
    ref_run, node = row["output_ref"].split("/", 1)
    return ArtifactStore(settings.store_url_for(settings.data_dir_for(COURSE))).load_output(int(ref_run), node, 0)


def _small_training(db) -> None:
    """Fewer boosting rounds for the trigger's runs (a variable of the trigger, as in
    Mage's UI; the course's triggers.yaml stays as it is): the test is about the loop."""
    import sqlalchemy as sa

    from blockyard.db.schema import pipeline_schedules as ps

    with db.engine.begin() as conn:
        n = conn.execute(sa.update(ps).where(ps.c.project == "unit_4_triggering", ps.c.name == "new_monthly_data")
                         .values(variables={"num_boost_round": 20})).rowcount
    assert n == 1


def test_scheduler_and_worker_retrain_on_new_data_and_on_an_alert(tmp_path, monkeypatch):
    """The real loop, served throughout: the Scheduler queues a run for the
    `new_monthly_data` sensor trigger (Mage's semantics: the scheduler runs no user code);
    a Worker runs automatic_retraining, whose sensor polls every 30 s (the trigger's
    poke_interval) until 2023-03 lands, then trigger_pipeline queues train_challenger for
    the same worker. A served model follows the alias and a client predicting through
    the scoring endpoint sees no failure. Then runs queued by a monitoring rule
    (variable `alert`): inside the cooldown nothing is trained (with the reason), with
    cooldown 0 the newest month is retrained."""
    from datetime import timedelta

    from fastapi.testclient import TestClient

    from blockyard import settings
    from blockyard.db import Database
    from blockyard.db.columns import utcnow
    from blockyard.session import reset_sessions
    from blockyard.ml.tracking import setup_mlflow
    from blockyard.orchestration.runs import enqueue_run, get_run
    from blockyard.orchestration.scheduler import Scheduler
    from blockyard.orchestration.worker import Worker
    from blockyard.project import Workspace
    from blockyard.serving.app import ServingContext, create_serving_app
    from blockyard.serving.model import ModelHolder
    from mlops.unit_4_triggering.utils.retraining import new_month

    home = tmp_path / "home"
    monkeypatch.setenv("BLOCKYARD_HOME", str(home))
    monkeypatch.setenv("BLOCKYARD_WORKSPACE", str(COURSE))
    monkeypatch.setenv("BLOCKYARD_DATA_MIRROR", str(MIRROR))
    for name in ("MLFLOW_TRACKING_URI", "BLOCKYARD_DATABASE_URL", "BLOCKYARD_STORE_URL", "BLOCKYARD_SERVER_URL",
                 "BLOCKYARD_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    reset_sessions()
    watch = home / "incoming"  # the pipeline's default watch_dir
    watch.mkdir(parents=True)
    for month in ("2023-01", "2023-02"):
        _drop(watch, month)
    before = train_and_register(COURSE, month=["2023-01", "2023-02"], rounds=8)

    ctx = ServingContext(COURSE, ModelHolder(COURSE, poll_seconds=0.2), log_predictions=False)
    ctx.start()
    errors: list[str] = []
    served: list[str] = []
    stop_client = threading.Event()

    def client() -> None:
        with TestClient(create_serving_app(ctx)) as http:
            while not stop_client.is_set():
                r = http.post("/invocations", json={"dataframe_records": [ROW]})
                if r.status_code != 200 or not r.json()["predictions"][0] > 0:
                    errors.append(f"{r.status_code} {r.text[:200]}")
                else:
                    served.append(r.headers["x-model-version"])
                time.sleep(0.005)

    db = Database(settings.database_url_for(settings.data_dir_for(COURSE)))
    db.migrate()
    ws = Workspace.open(COURSE)
    scheduler = Scheduler(ws, db)
    scheduler.sync(force=True)
    _small_training(db)
    # Two slots: a retraining waits in trigger_pipeline for train_challenger's run.
    worker = Worker(ws, db, concurrency=2, poll_interval=0.1)
    stop = threading.Event()
    threads = [threading.Thread(target=worker.run_forever, args=(stop,)), threading.Thread(target=client)]
    for t in threads:
        t.start()
    try:
        now = utcnow() + timedelta(minutes=1)
        (run,) = scheduler.poll_sensors(now)
        assert run["pipeline_uuid"] == "automatic_retraining" and run["trigger_id"] is not None
        assert run["settings"]["poke_interval"] == 30 and run["settings"]["skip_if_previous_running"] is True
        assert run["variables"] == {"num_boost_round": 20}

        def sensor_polls() -> int:
            for b in db.get_block_runs(run["id"]):
                if b["block_uuid"] == "new_data":
                    return int(((b.get("metrics") or {}).get("sensor") or {}).get("polls") or 0)
            return 0

        deadline = time.monotonic() + 400
        while sensor_polls() < 1 and time.monotonic() < deadline:
            time.sleep(0.2)  # the first look records the baseline (01, 02) and says False
        assert get_run(db, run["id"])["status"] == "running"
        # skip_if_previous_running: the trigger is due again, but its run is unfinished.
        assert scheduler.poll_sensors(now + timedelta(minutes=5)) == []
        _drop(watch, "2023-03")  # seen at the sensor's next poll, <= 30 s later
        while get_run(db, run["id"])["status"] not in ("completed", "failed") and time.monotonic() < deadline:
            time.sleep(0.5)
        assert get_run(db, run["id"])["status"] == "completed", get_run(db, run["id"])
        client_ = setup_mlflow(COURSE).client
        (first,) = [v for v, tags in _versions(client_).items() if tags.get("retraining_month") == "2023-03"]
        tags = _versions(client_)[first]
        assert tags["retraining_trigger"] == "new data" and tags["retraining_champion_version"] == before
        assert tags["retraining_decision"] in ("promoted", "kept") and "2023-03" in tags["retraining_reason"]
        champion = str(client_.get_model_version_by_alias("nyc-taxi-duration", "champion").version)
        assert champion == (first if tags["retraining_decision"] == "promoted" else before)
        # The served model follows the alias (ModelHolder polls every 0.2 s).
        swap_deadline = time.monotonic() + 30
        while (not served or served[-1] != champion) and time.monotonic() < swap_deadline:
            time.sleep(0.05)
        assert served and served[-1] == champion
        assert new_month(watch) is None  # 2023-03 is seen: the sensor says False from now on

        # An alert inside the cooldown (600 s by default): the run completes, nothing is trained.
        alert = {"rule": "rmse above baseline", "metric": "rmse", "value": 7.1, "threshold": 6.0}
        cooled = enqueue_run(db, project="unit_4_triggering", pipeline_uuid="automatic_retraining",
                             variables={"alert": alert})
        while get_run(db, cooled["id"])["status"] not in ("completed", "failed") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert get_run(db, cooled["id"])["status"] == "completed", get_run(db, cooled["id"])
        skipped = _block_output(db, cooled["id"], "retrain")
        assert skipped["skipped"] is True and skipped["reason"].startswith("cooldown"), skipped
        # ... and one after it (cooldown 0): retrains for the newest month, though seen.
        hot = enqueue_run(db, project="unit_4_triggering", pipeline_uuid="automatic_retraining",
                          variables={"alert": alert, "cooldown_seconds": 0, "num_boost_round": 20})
        while get_run(db, hot["id"])["status"] not in ("completed", "failed") and time.monotonic() < deadline:
            time.sleep(0.5)
        assert get_run(db, hot["id"])["status"] == "completed", get_run(db, hot["id"])
        retrained = {v: t for v, t in _versions(client_).items() if t.get("retraining_month") == "2023-03"}
        assert len(retrained) == 2  # the cooled-down alert trained nothing
        (second,) = set(retrained) - {first}
        assert retrained[second]["retraining_trigger"] == "alert: rmse above baseline"
        assert retrained[second]["retraining_decision"] in ("promoted", "kept")
        assert retrained[second]["retraining_champion_version"] == champion
    finally:
        stop.set()
        stop_client.set()
        for t in threads:
            t.join(60)
        ctx.close()
        db.close()
        reset_sessions()
    assert not errors, errors[:3]
    assert served[0] == before


def test_two_schedulers_on_postgresql_queue_one_retraining(pg_clean_url, tmp_path, monkeypatch):
    """Two schedulers on one PostgreSQL database poll the course's `new_monthly_data`
    trigger at the same instant: exactly one automatic_retraining run is queued, and
    while it is unfinished neither queues another (skip_if_previous_running)."""
    from datetime import timedelta

    from blockyard.db import Database
    from blockyard.db.columns import utcnow
    from blockyard.orchestration.runs import request_cancel
    from blockyard.orchestration.scheduler import Scheduler
    from blockyard.project import Workspace

    monkeypatch.setenv("BLOCKYARD_HOME", str(tmp_path / "home"))
    dbs = [Database(pg_clean_url) for _ in range(2)]
    dbs[0].migrate()
    schedulers = [Scheduler(Workspace.open(COURSE), db) for db in dbs]
    for s in schedulers:
        s.sync(force=True)
    try:
        fired: list[list[dict]] = []
        for minutes in (1, 2, 3):
            barrier = threading.Barrier(2)
            got: dict[int, list[dict]] = {}

            def poll(i: int, at=utcnow() + timedelta(minutes=minutes)) -> None:
                barrier.wait()
                got[i] = schedulers[i].poll_sensors(at)

            threads = [threading.Thread(target=poll, args=(i,)) for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            fired.append(got[0] + got[1])
        (first,), busy, still = fired
        assert first["pipeline_uuid"] == "automatic_retraining" and busy == [] and still == []
        runs = [r for r in dbs[0].list_pipeline_runs(project="unit_4_triggering", limit=None)
                if r["pipeline_uuid"] == "automatic_retraining"]
        assert [r["id"] for r in runs] == [first["id"]]
        # Once it is finished (here: cancelled), the next due time queues the next one, once.
        request_cancel(dbs[0], first["id"])
        later = utcnow() + timedelta(minutes=10)
        again = schedulers[0].poll_sensors(later) + schedulers[1].poll_sensors(later)
        assert len(again) == 1 and again[0]["id"] != first["id"]
    finally:
        for db in dbs:
            db.close()
