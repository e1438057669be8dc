"""Unit 3 of the course: the `monitoring` pipeline of mlops/unit_3_observability on the
real green-taxi data, against a champion trained on 2023-01 and registered in MLflow."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from mirror import MIRROR

REPO = Path(__file__).resolve().parents[1]
WORKSPACE = REPO / "mlops"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (MIRROR / "taxi/green/green_tripdata_2023-12.parquet").is_file(),
        reason="course data mirror not present",
    ),
    pytest.mark.skipif(importlib.util.find_spec("evidently") is None, reason="evidently is not installed"),
]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    from blockyard.session import reset_sessions

    path = tmp_path_factory.mktemp("blockyard_home")
    mp = pytest.MonkeyPatch()
    mp.setenv("BLOCKYARD_HOME", str(path))
    mp.setenv("BLOCKYARD_DATA_MIRROR", str(MIRROR))
    mp.setenv("BLOCKYARD_WORKSPACE", str(WORKSPACE))
    for name in ("MLFLOW_TRACKING_URI", "BLOCKYARD_DATABASE_URL", "BLOCKYARD_STORE_URL"):
        mp.delenv(name, raising=False)
    reset_sessions()
    yield path
    reset_sessions()
    mp.undo()


@pytest.fixture(scope="module")
def champion(home):
    """A small champion: linear regression on unit 1's features of January 2023."""
    from sklearn.linear_model import LinearRegression

    from blockyard.datasets import load_green_taxi
    from blockyard.ml.metrics import rmse
    from blockyard.ml.registry import promote_if_better
    from blockyard.ml.tracking import log_final_model
    from mlops.utils.data_preparation.cleaning import clean
    from mlops.utils.data_preparation.encoders import vectorize_features
    from mlops.utils.data_preparation.feature_engineering import combine_features
    from mlops.utils.data_preparation.feature_selector import select_features

    df = combine_features(clean(load_green_taxi(["2023-01"])))
    X, _, dv = vectorize_features(select_features(df))
    model = LinearRegression().fit(X, df["duration"])
    score = rmse(df["duration"], model.predict(X))
    final = log_final_model(model, dv, {"rmse": score}, {}, workspace=WORKSPACE)
    assert promote_if_better(final.model_uri, score, run_id=final.run_id, workspace=WORKSPACE)
    return score


def _monitor(month: str) -> dict:
    from blockyard import run_pipeline

    result = run_pipeline("unit_3_observability/monitoring", workspace=WORKSPACE, variables={"month": month, "reference_months": "2023-01"})
    failed = {u: (b.status, b.error) for u, b in result.block_runs.items() if b.status != "completed"}
    assert result.ok and not failed, (result.error, failed)
    tests = [t for b in result.block_runs.values() for t in b.tests]
    assert tests and all(t["passed"] for t in tests), tests
    return result.output("check_drift")


def test_monitoring_months_against_the_training_reference(home, champion):
    from blockyard.ml.monitoring_store import FEATURE_DRIFT, MonitoringStore

    same = _monitor("2023-01")  # the training month against its own reference
    assert same["drift_share"] == 0.0
    assert all(f["score"] < 0.05 for f in same["features"].values()), same["features"]
    assert same["prediction_drift"]["score"] < 0.02
    assert same["rmse"] == pytest.approx(champion, rel=0.02)  # the champion's own training error
    assert same["baseline"]["rmse"] == pytest.approx(champion)
    assert same["sampled"]["drift"]["rows"] == 30_000 and same["sampled"]["drift"]["of"] > 60_000
    assert 0 < same["missing"]["passenger_count"] < 0.1 and same["missing"]["trip_distance"] == 0

    february, december = _monitor("2023-02"), _monitor("2023-12")
    for later in (february, december):
        assert later["rmse"] > 1.1 * champion  # the model is worse on months it never saw
        assert later["prediction_drift"]["score"] > same["prediction_drift"]["score"]
    # pick-up zones move further from January's as the year goes on
    zones = [m["features"]["PULocationID"]["score"] for m in (same, february, december)]
    assert zones == sorted(zones), zones
    assert Path(december["report_path"]).is_file()

    # stored as time series in the workspace's run history, linked to the runs
    store = MonitoringStore.for_workspace(WORKSPACE)
    series = store.series("nyc-taxi-duration", "drift_share")
    assert [r["period"] for r in series] == ["2023-01", "2023-02", "2023-12"]
    trend = store.series("nyc-taxi-duration", FEATURE_DRIFT, "PULocationID")
    assert [r["value"] for r in trend] == pytest.approx(zones)
    checks = store.checks("nyc-taxi-duration")
    assert {c["pipeline_uuid"] for c in checks} == {"monitoring"} and all(c["pipeline_run_id"] for c in checks)

    # the project's rule `rmse > 1.2 * baseline_rmse` fires once, then holds quietly
    rmse_rule = {m["period"]: next(a for a in m["alerts"] if a["rule"] == "rmse above baseline")
                 for m in (same, february, december)}
    transitions = [rmse_rule[p]["transition"] for p in ("2023-01", "2023-02", "2023-12")]
    expected = ["ok", *(
        ["fired", "firing"] if february["rmse"] > 1.2 * champion else
        ["ok", "fired" if december["rmse"] > 1.2 * champion else "ok"]
    )]
    assert transitions == expected, (transitions, february["rmse"], december["rmse"], champion)
