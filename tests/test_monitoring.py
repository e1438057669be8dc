"""blockyard.ml.monitoring: reference profile, Evidently drift and quality figures,
stored rows on SQLite and PostgreSQL, the HTML report."""
from __future__ import annotations

import importlib.util
import uuid

import numpy as np
import pandas as pd
import pytest

if importlib.util.find_spec("evidently") is None:  # the `monitoring` extra
    pytest.skip("evidently is not installed", allow_module_level=True)

from blockyard.db import Database  # noqa: E402
from blockyard.ml import monitoring  # noqa: E402
from blockyard.ml.monitoring_store import COLUMN_MISSING, FEATURE_DRIFT, MonitoringStore  # noqa: E402

FEATURES = dict(numerical=["trip_distance", "passenger_count"], categorical=["PULocationID", "DOLocationID"])


def trips(n: int, seed: int, *, distance_scale: float = 1.0, zones: int = 60, missing: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    distance = rng.gamma(2.0, 1.5, n) * distance_scale
    duration = 4 + 3.0 * distance + rng.normal(0, 2, n)
    passengers = rng.integers(1, 5, n).astype(float)
    if missing:
        passengers[rng.random(n) < missing] = np.nan
    return pd.DataFrame(
        {
            "PULocationID": rng.integers(1, zones, n).astype(str),
            "DOLocationID": rng.integers(1, zones, n),  # ints: the profile stores categories as text
            "trip_distance": distance,
            "passenger_count": passengers,
            "duration": duration,
            "prediction": 4 + 3.0 * distance,
        }
    )


@pytest.fixture
def ws(tmp_path, monkeypatch):
    monkeypatch.delenv("BLOCKYARD_HOME", raising=False)
    monkeypatch.delenv("BLOCKYARD_DATABASE_URL", raising=False)
    return tmp_path / "ws"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'history.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    database = Database(url)
    database.migrate()
    yield database
    database.close()


def test_reference_is_stored_once_and_reloaded(ws):
    train = trips(80_000, seed=1)
    ref = monitoring.build_reference(
        train, model="m", target="duration", prediction="prediction", baseline={"rmse": 2.1}, model_version=3, workspace=ws,
        **FEATURES,
    )
    assert ref.rows == 80_000 and ref.sample_rows == monitoring.REFERENCE_SAMPLE_ROWS
    again = monitoring.load_reference("m", workspace=ws)
    assert again.model_version == "3" and again.features == ref.features
    assert again.baseline["rmse"] == 2.1
    # the reference's own quality, from the (sampled) training rows
    assert again.baseline["reference_rmse"] == pytest.approx(2.0, abs=0.05)
    assert len(again.data) == monitoring.REFERENCE_SAMPLE_ROWS
    assert again.data["DOLocationID"].map(type).eq(str).all()
    assert (ws / ".blockyard" / "monitoring" / "m" / "reference.parquet").is_file()


def test_same_distribution_has_no_drift_and_shift_is_found(ws, db):
    model = f"taxi-{uuid.uuid4().hex[:6]}"
    monitoring.build_reference(trips(10_000, seed=1, zones=40), model=model, target="duration", prediction="prediction",
                               baseline={"rmse": 2.0}, workspace=ws, **FEATURES)
    same = monitoring.check(trips(10_000, seed=2, zones=40), model, period="2023-02", workspace=ws, db=db)
    assert same.drift_share == 0.0 and same.drifted_features == 0 and not same.dataset_drift
    assert all(f["score"] < 0.05 for f in same.features.values()), same.features
    assert same.prediction_drift["score"] < 0.05

    shifted_batch = trips(10_000, seed=3, distance_scale=2.0, zones=15, missing=0.2)
    shifted = monitoring.check(shifted_batch, model, period="2023-03", workspace=ws, db=db)
    drifted = {n for n, f in shifted.features.items() if f["drifted"]}
    assert drifted == {"trip_distance", "PULocationID", "DOLocationID"}, shifted.features
    assert shifted.drift_share == pytest.approx(0.75) and shifted.dataset_drift
    assert shifted.prediction_drift["drifted"]
    assert shifted.features["trip_distance"]["method"] == "wasserstein"
    assert shifted.features["PULocationID"]["method"] == "jensenshannon"
    # exact (unsampled) quality and missing values
    err = shifted_batch["duration"] - shifted_batch["prediction"]
    assert shifted.rmse == pytest.approx(float(np.sqrt((err**2).mean())))
    assert shifted.mae == pytest.approx(float(err.abs().mean()))
    share = shifted_batch["passenger_count"].isna().mean()
    assert shifted.missing["passenger_count"] == pytest.approx(share)
    assert shifted.missing_share == pytest.approx(share / 4)
    assert shifted.sampled["drift"] == {"rows": 10_000, "of": 10_000, "seed": 0}
    report = open(shifted.report_path, encoding="utf-8").read()
    assert report.lstrip().lower().startswith("<!doctype html") and len(report) > 100_000
    assert "trip_distance" in report and "PULocationID" in report

    store = MonitoringStore(db)
    series = store.series(model, "drift_share")
    assert [(r["period"], r["value"]) for r in series] == [("2023-02", 0.0), ("2023-03", pytest.approx(0.75))]
    assert [r["check_id"] for r in series] == [same.check_id, shifted.check_id]
    feature = store.series(model, FEATURE_DRIFT, "trip_distance")
    assert feature[-1]["value"] == pytest.approx(shifted.features["trip_distance"]["score"])
    assert store.series(model, COLUMN_MISSING, "passenger_count")[-1]["value"] == pytest.approx(share)
    latest = store.latest()[model]
    assert latest["period"] == "2023-03" and latest["figures"]["rmse"] == pytest.approx(shifted.rmse)
    assert latest["figures"]["baseline_rmse"] == 2.0
    row = store.get_check(shifted.check_id)
    assert row["report_path"] == shifted.report_path and row["summary"]["features"]["trip_distance"]["drifted"]


def test_large_batch_is_sampled_for_drift_only(ws):
    model = f"big-{uuid.uuid4().hex[:6]}"
    monitoring.build_reference(trips(5_000, seed=1), model=model, target="duration", prediction="prediction",
                               workspace=ws, **FEATURES)
    batch = trips(12_000, seed=4, missing=0.1)
    result = monitoring.check(batch, model, workspace=ws, report=False, sample_rows=4_000)
    assert result.sampled["drift"]["rows"] == 4_000
    assert result.sampled["drift"]["of"] == len(batch) == result.rows
    assert result.missing["passenger_count"] == pytest.approx(batch["passenger_count"].isna().mean())
    assert result.report_path is None


def test_without_labels_no_quality(ws):
    model = f"nolabel-{uuid.uuid4().hex[:6]}"
    monitoring.build_reference(trips(3_000, seed=1), model=model, target="duration", prediction="prediction",
                               workspace=ws, **FEATURES)
    result = monitoring.check(trips(3_000, seed=2).drop(columns=["duration"]), model, workspace=ws, report=False)
    assert result.rmse is None and result.mae is None
    # stored in the workspace's own run history when no database is given
    store = MonitoringStore.for_workspace(ws)
    assert store.latest()[model]["figures"]["rows"] == 3_000
    assert (ws / ".blockyard" / "blockyard.db").is_file()
    assert "rmse" not in result.figures() and "prediction_drift" in result.figures()


def test_bad_input_names_what_is_wrong(ws):
    with pytest.raises(monitoring.MonitoringError, match="no reference profile for model 'ghost'"):
        monitoring.check(trips(10, seed=1), "ghost", workspace=ws, store=False)
    with pytest.raises(monitoring.MonitoringError, match=r"lacks the column\(s\) \['fare'\]"):
        monitoring.build_reference(trips(10, seed=1), model="m", numerical=["fare"], workspace=ws)
    with pytest.raises(monitoring.MonitoringError, match="both target and prediction"):
        monitoring.build_reference(trips(10, seed=1), model="m", target="duration", workspace=ws, **FEATURES)
    monitoring.build_reference(trips(100, seed=1), model="m", workspace=ws, **FEATURES)
    with pytest.raises(monitoring.MonitoringError, match=r"the batch lacks the column\(s\) \['trip_distance'\]"):
        monitoring.check(trips(10, seed=1).drop(columns=["trip_distance"]), "m", workspace=ws, store=False)
    with pytest.raises(monitoring.MonitoringError, match="has no rows"):
        monitoring.check(trips(10, seed=1).iloc[:0], "m", period="2023-05", workspace=ws, store=False)
