"""blockyard.serving in process: scoring payloads, bad input, parity with batch scoring,
hot swap, the prediction log, and the Mage routes of a served pipeline (course unit 4).

One small XGBoost model is trained on the mirror's 2023-01 trips and registered in a
temp MLflow store (BLOCKYARD_HOME) as `nyc-taxi-duration@champion`.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("mlflow")
pytest.importorskip("xgboost")
from mirror import MIRROR  # noqa: E402
from test_serving_support import COURSE, ROW, TRANSFORM, month_frame, train_and_register  # noqa: E402

pytestmark = pytest.mark.skipif(
    not (MIRROR / "taxi/green/green_tripdata_2023-01.parquet").is_file(), reason="course data mirror not present")


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    from blockyard.session import reset_sessions
    from blockyard.serving.model import stop_all_holders

    path = tmp_path_factory.mktemp("serving_home")
    mp = pytest.MonkeyPatch()
    mp.setenv("BLOCKYARD_HOME", str(path))
    mp.setenv("BLOCKYARD_DATA_MIRROR", str(MIRROR))
    mp.setenv("BLOCKYARD_WORKSPACE", str(COURSE))
    for name in ("MLFLOW_TRACKING_URI", "BLOCKYARD_DATABASE_URL", "BLOCKYARD_STORE_URL", "BLOCKYARD_API_TOKEN"):
        mp.delenv(name, raising=False)
    reset_sessions()
    version = train_and_register(COURSE)
    assert version == "1"
    yield path
    stop_all_holders()
    reset_sessions()
    mp.undo()


@pytest.fixture(scope="module")
def serving(home):
    from fastapi.testclient import TestClient

    from blockyard.serving.app import ServingContext, create_serving_app
    from blockyard.serving.model import ModelHolder

    holder = ModelHolder(COURSE, poll_seconds=0)  # swaps are driven by the tests (holder.check())
    ctx = ServingContext(COURSE, holder)
    ctx.start()
    client = TestClient(create_serving_app(ctx))
    client.ctx = ctx
    yield client
    ctx.close()


def _predict(client, payload, path="/invocations"):
    r = client.post(path, json=payload)
    assert r.status_code == 200, r.text
    return r.json()["predictions"], r.headers["x-model-version"]


def test_the_payload_forms_of_mlflows_protocol_agree(serving):
    rows = [ROW, {"PULocationID": 236, "DOLocationID": 239, "trip_distance": 1.98}]
    expected, version = _predict(serving, {"dataframe_records": rows})
    assert version == "1" and len(expected) == 2 and expected[0] != expected[1]
    cols = list(ROW)
    assert _predict(serving, {"dataframe_split": {"columns": cols, "data": [[r[c] for c in cols] for r in rows]}})[0] == expected
    assert _predict(serving, {"inputs": rows})[0] == expected
    assert _predict(serving, {"instances": rows})[0] == expected
    assert _predict(serving, {"inputs": {c: [r[c] for r in rows] for c in cols}})[0] == expected
    csv = "PULocationID,DOLocationID,trip_distance\n74,75,2.5\n236,239,1.98\n"
    r = serving.post("/invocations", content=csv, headers={"content-type": "text/csv"})
    assert r.status_code == 200 and r.json()["predictions"] == expected
    # string IDs (as the course's cleaning makes them) give the same PU_DO
    assert _predict(serving, {"inputs": [{**ROW, "PULocationID": "74", "DOLocationID": "75"}]})[0] == expected[:1]
    assert serving.get("/ping").status_code == 200
    health = serving.get("/health").json()
    assert health["status"] == "ok" and health["version"] == "1"
    assert serving.get("/readyz").status_code == 200
    details = serving.get("/version").json()["details"]
    assert details["transform"] == TRANSFORM and details["flavor"] == "xgboost"
    assert set(details["features"]) == {"PU_DO", "trip_distance"}


BAD = [
    (b"", "application/json", 400, "empty body", None),
    (b"not json{", "application/json", 400, "not valid JSON", None),
    (b"[1, 2]", "application/json", 400, "JSON object", None),
    (b'{"rows": []}', "application/json", 422, "exactly one of", None),
    (b'{"inputs": []}', "application/json", 422, "empty list", "inputs"),
    (b'{"inputs": "74"}', "application/json", 422, "list of records", "inputs"),
    (b'{"inputs": [1]}', "application/json", 422, "must be an object", "inputs[0]"),
    (json.dumps({"inputs": [ROW, {"PULocationID": 1, "trip_distance": 3}]}).encode(), None, 422,
     "missing field 'DOLocationID'", "inputs[1].DOLocationID"),
    (json.dumps({"inputs": [{"PULocationID": 1, "DOLocationID": 2}]}).encode(), None, 422,
     "missing field 'trip_distance'", "inputs[0].trip_distance"),
    (json.dumps({"inputs": [{**ROW, "trip_distance": "far"}]}).encode(), None, 422,
     "expected a finite number", "inputs[0].trip_distance"),
    (json.dumps({"inputs": [{**ROW, "trip_distance": True}]}).encode(), None, 422,
     "expected a finite number", "inputs[0].trip_distance"),
    (json.dumps({"inputs": [{**ROW, "PULocationID": None}]}).encode(), None, 422,
     "got null", "inputs[0].PULocationID"),
    (json.dumps({"inputs": [{**ROW, "DOLocationID": [1]}]}).encode(), None, 422,
     "got a list", "inputs[0].DOLocationID"),
    (json.dumps({"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}}).encode(), None, 422,
     "list of 1 values", "dataframe_split.data[0]"),
    (b"a,b\n", "text/csv", 422, "no rows", "body"),
]


@pytest.mark.parametrize("body,ctype,status,message,field", BAD, ids=[b[3] for b in BAD])
def test_bad_input_is_a_4xx_naming_the_field(serving, body, ctype, status, message, field):
    r = serving.post("/invocations", content=body, headers={"content-type": ctype or "application/json"})
    assert r.status_code == status, r.text
    out = r.json()
    assert message in out["message"]
    assert out.get("field") == field


def test_a_10_mb_body_is_refused_with_413(serving):
    before = serving.get("/stats").json()["client_errors"]
    big = b'{"inputs": [' + b" " * (10 * 1024 * 1024) + b"]}"
    r = serving.post("/invocations", content=big)
    assert r.status_code == 413 and "limit" in r.json()["message"]
    # without a Content-Length (chunked), the stream is cut at the limit too
    r = serving.post("/invocations", content=iter([big[i:i + 65536] for i in range(0, len(big), 65536)]))
    assert r.status_code == 413
    assert serving.get("/stats").json()["client_errors"] == before + 2
    assert serving.post("/invocations", json={"inputs": [ROW]}).status_code == 200  # still serving


def test_online_predictions_equal_batch_scoring(serving):
    """The served path (inplace_predict on the DV's sparse rows) against the course's
    batch path (data frame -> combine_features -> DictVectorizer -> DMatrix)."""
    import mlflow.xgboost
    import xgboost as xgb
    from mlops.utils.data_preparation.feature_selector import select_features

    from blockyard.ml.tracking import load_dv

    df = month_frame("2023-02", 3000)
    records = df[["PULocationID", "DOLocationID", "trip_distance"]].to_dict("records")
    online, version = _predict(serving, {"dataframe_records": records}, "/invocations/batch")
    info = serving.get("/version").json()["details"]
    booster = mlflow.xgboost.load_model(f"models:/nyc-taxi-duration/{version}")
    dv = load_dv(info["run_id"], workspace=COURSE)
    batch = booster.predict(xgb.DMatrix(dv.transform(select_features(df).to_dict("records"))))
    assert len(online) == len(batch) == 3000
    assert max(abs(a - b) for a, b in zip(online, batch)) <= 1e-6
    one_by_one = [_predict(serving, {"inputs": [r]})[0][0] for r in records[:50]]
    assert max(abs(a - b) for a, b in zip(one_by_one, batch[:50])) <= 1e-6


def test_every_prediction_is_logged_to_parquet(serving, home):
    from blockyard.serving.predlog import read_predictions

    rows = [{**ROW, "trip_distance": d} for d in (0.5, 7.25, 12.0)]
    predictions, version = _predict(serving, {"inputs": rows})
    serving.ctx.predlog.flush()
    files = list((home / "predictions" / "nyc-taxi-duration").rglob("*.parquet"))
    assert files, "no Parquet file written"
    df = read_predictions(COURSE, "nyc-taxi-duration")
    mine = df[df["trip_distance"].isin([0.5, 7.25, 12.0]) & (df["source"] == "invocations")]
    mine = mine[mine["request_id"] == mine["request_id"].max()].sort_values("row")
    assert list(mine["prediction"]) == predictions
    assert set(mine["version"]) == {version}
    assert (mine["latency_ms"] > 0).all()
    assert list(mine["PULocationID"]) == [74, 74, 74]
    assert read_predictions(COURSE, "no-such-model").empty
    first = df["ts"].min()
    assert len(read_predictions(COURSE, since=first)) == len(df)
    assert read_predictions(COURSE, until=first).empty
    assert len(read_predictions(COURSE, since=first.tz_convert(None))) == len(df)  # naive = UTC
    assert read_predictions(COURSE, since="2100-01-01").empty


def test_hot_swap_loads_the_new_version_beside_the_old_one(serving, home):
    from blockyard.ml.tracking import setup_mlflow

    holder = serving.ctx.holder
    old = holder.current
    before, _ = _predict(serving, {"inputs": [ROW]})
    assert holder.check() is False  # the alias has not moved
    version = train_and_register(COURSE, kind="linear", rows=5000, rmse=0.5)  # "better": takes the alias
    assert holder.current is old  # not swapped until the poll sees it
    assert holder.check() is True
    after, answered_by = _predict(serving, {"inputs": [ROW]})
    assert answered_by == version != old.version
    assert after != before
    info = serving.get("/version").json()
    assert info["version"] == version and info["details"]["flavor"] == "sklearn"
    assert info["swaps"][-1]["from_version"] == old.version and info["swaps"][-1]["to_version"] == version
    # the old model object is untouched: a request that had read it still answers with it
    assert old.predict([ROW]) == before
    # back to v1 for the tests that follow
    setup_mlflow(COURSE).client.set_registered_model_alias("nyc-taxi-duration", "champion", old.version)
    assert holder.check() is True and holder.current.version == old.version


def test_no_model_yet_answers_503_and_waits(home, tmp_path):
    from fastapi.testclient import TestClient

    from blockyard.serving.app import ServingContext, create_serving_app
    from blockyard.serving.model import ModelHolder

    ctx = ServingContext(COURSE, ModelHolder(COURSE, "no-such-model", poll_seconds=0), log_predictions=False)
    ctx.start()
    client = TestClient(create_serving_app(ctx))
    assert client.get("/ping").status_code == 503
    assert client.get("/health").status_code == 503
    # the deployment probes: alive at once, ready only with a model
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 503
    r = client.post("/invocations", json={"inputs": [ROW]})
    assert r.status_code == 503 and "no-such-model@champion" in r.json()["message"]


# ------------------------------------------------------------------ course unit 4


@pytest.fixture(scope="module")
def web(home):
    from fastapi.testclient import TestClient

    from blockyard.server.app import create_app

    with TestClient(create_app(COURSE)) as client:
        yield client


def _predict_trigger(web):
    triggers = web.get("/api/triggers", params={"project": "unit_4_triggering", "pipeline": "predict"}).json()
    items = triggers["triggers"] if isinstance(triggers, dict) else triggers
    trig = next(t for t in items if t["name"] == "predict_api")
    return trig["id"], trig["token"]


def test_the_predict_api_trigger_answers_from_the_warm_model(web, serving):
    rows = [ROW, {"PULocationID": 236, "DOLocationID": 239, "trip_distance": 1.98}]
    expected, version = _predict(serving, {"inputs": rows})
    runs_before = web.get("/api/runs", params={"limit": 500}).json()
    trig_id, token = _predict_trigger(web)
    r = web.post(f"/api/pipeline_schedules/{trig_id}/pipeline_runs/{token}",
                 json={"pipeline_run": {"variables": {"inputs": rows}}})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["predictions"] == expected and out["version"] == version
    assert out["pipeline_run"]["status"] == "completed" and out["pipeline_run"]["output"] == expected
    assert out["pipeline_run"]["id"] is None  # nothing queued
    assert web.get("/api/runs", params={"limit": 500}).json() == runs_before
    # POST /api/runs for the served block: the same answer, mode "served"
    r = web.post("/api/runs", json={"run": {"pipeline_uuid": "unit_4_triggering/predict", "block_uuid": "inference",
                                            "variables": {"inputs": rows}}})
    assert r.status_code == 200, r.text
    run = r.json()["run"]
    assert run["mode"] == "served" and run["output"] == expected and run["status"] == "completed"
    # bad input through Mage's URL: a 4xx naming the field
    bad = web.post(f"/api/pipeline_schedules/{trig_id}/pipeline_runs/{token}",
                   json={"pipeline_run": {"variables": {"inputs": [{"PULocationID": 1, "trip_distance": 2}]}}})
    assert bad.status_code == 422 and "DOLocationID" in bad.json()["detail"]
    assert bad.json()["field"] == "variables.inputs[0].DOLocationID"
    missing = web.post(f"/api/pipeline_schedules/{trig_id}/pipeline_runs/{token}", json={"pipeline_run": {}})
    assert missing.status_code == 422 and "variables.inputs" in missing.json()["detail"]
    wrong = web.post(f"/api/pipeline_schedules/{trig_id}/pipeline_runs/nope", json={"pipeline_run": {}})
    assert wrong.status_code == 401


def test_served_config_defaults_and_checks():
    from types import SimpleNamespace

    from blockyard.serving.features import RequestError
    from blockyard.serving.mage_hook import served_config

    spec = lambda raw: SimpleNamespace(uuid="p", raw=raw)  # noqa: E731
    assert served_config(spec({})) is None
    assert served_config(spec({"serve": False})) is None
    assert served_config(spec({"serve": True}))["alias"] == "champion"
    assert served_config(spec({"serve": {"alias": "challenger"}}))["block"] == "inference"
    with pytest.raises(RequestError, match="unknown key"):
        served_config(spec({"serve": {"aliases": "x"}}))
    with pytest.raises(RequestError, match="serve.model"):
        served_config(spec({"serve": {"model": 3}}))


@pytest.mark.slow
def test_course_predict_pipeline_gives_what_the_served_block_gives(home, serving):
    """Running `predict` the Mage way (global data product -> inference block) and the
    served answer agree."""
    from blockyard import run_pipeline

    rows = [ROW, {"PULocationID": 65, "DOLocationID": 170, "trip_distance": 6.54}]
    result = run_pipeline("unit_4_triggering/predict", workspace=COURSE, variables={"inputs": rows})
    assert result.ok, result.error
    served, _ = _predict(serving, {"inputs": rows})
    assert max(abs(a - b) for a, b in zip(result.output("inference"), served)) <= 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_course_batch_predict_writes_parquet_and_a_table(home, serving, backend, request, tmp_path):
    import pandas as pd
    import sqlalchemy as sa

    from blockyard import run_pipeline

    # Emptied first: the assertions read the whole batch_predictions table of the
    # worker's shared database, which an earlier test may have written to.
    url = request.getfixturevalue("pg_clean_url") if backend == "postgres" else f"sqlite:///{tmp_path / 'preds.db'}"
    variables = {"month": "2023-03", "limit": 2000, "database_url": url, "output_dir": str(tmp_path / "out")}
    for _ in range(2):  # a re-run replaces the month's rows
        result = run_pipeline("unit_4_triggering/batch_predict", workspace=COURSE, variables=variables,
                              use_cache=False)
        assert result.ok, (result.error, {u: b.error for u, b in result.block_runs.items()})
    summary = result.output("predictions")
    assert summary["rows"] == 2000 and summary["model_version"] == "1"
    parquet = pd.read_parquet(tmp_path / "out" / "2023-03.parquet")
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        table = pd.read_sql("SELECT * FROM batch_predictions", conn)
    engine.dispose()
    assert len(table) == len(parquet) == 2000
    assert set(table["model_version"]) == {"1"} and set(table["month"]) == {"2023-03"}
    records = parquet[["PULocationID", "DOLocationID", "trip_distance"]].to_dict("records")
    online, _ = _predict(serving, {"dataframe_records": records}, "/invocations/batch")
    assert max(abs(a - b) for a, b in zip(online, parquet["predicted_duration"])) <= 1e-6
    assert max(abs(a - b) for a, b in zip(table["predicted_duration"], parquet["predicted_duration"])) <= 1e-6
