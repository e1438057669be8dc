"""The course workspace (mlops/) end to end through the engine, on the real data.

Run order matters and is part of what is tested: unit_2's training pipelines find
unit_1's data_preparation through the `training_set` global data product; the first
training run builds it, the second reuses it while it is fresh (600 s).
Tuning budgets are cut down through runtime variables to keep this under a minute or two.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WORKSPACE = REPO / "mlops"
from mirror import MIRROR

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (MIRROR / "taxi/green/green_tripdata_2024-01.parquet").is_file(),
        reason="course data mirror not present",
    ),
]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """BLOCKYARD_HOME (run history, outputs, MLflow store) in a temp folder."""
    from blockyard.session import reset_sessions

    path = tmp_path_factory.mktemp("blockyard_home")
    mp = pytest.MonkeyPatch()
    mp.setenv("BLOCKYARD_HOME", str(path))
    mp.setenv("BLOCKYARD_DATA_MIRROR", str(MIRROR))
    mp.setenv("BLOCKYARD_WORKSPACE", str(WORKSPACE))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    mp.delenv("BLOCKYARD_DATABASE_URL", raising=False)
    mp.delenv("BLOCKYARD_STORE_URL", raising=False)
    reset_sessions()
    yield path
    reset_sessions()
    mp.undo()


def _run(pipeline: str, use_cache: bool | None = None, **variables):
    from blockyard import run_pipeline

    result = run_pipeline(pipeline, workspace=WORKSPACE, variables=variables or None, use_cache=use_cache)
    failures = {
        uuid: (b.status, b.error, [t for t in b.tests if not t["passed"]])
        for uuid, b in result.block_runs.items()
        if b.status != "completed" or any(not t["passed"] for t in b.tests)
    }
    assert result.ok and not failures, (result.error, failures)
    return result


def _db():
    from blockyard.session import session_for
    from blockyard.project import Workspace

    return session_for(Workspace.open(WORKSPACE)).db


def _mlflow_runs(home: Path, filter_string: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("nyc-taxi-experiment")
    return client.search_runs([experiment.experiment_id], filter_string=filter_string, max_results=1000)


def test_unit_0_example_pipeline(home):
    result = _run("unit_0_setup/example_pipeline")
    df = result.output("fill_in_missing_values")
    assert df.shape == (891, 6)
    assert int(df.isna().sum().sum()) == 0
    path = Path(result.output("export_titanic_clean"))
    assert path == WORKSPACE / "titanic_clean.csv"
    assert path.read_text().splitlines()[0] == "Age,Fare,Parch,Pclass,SibSp,Survived"
    assert len(path.read_text().splitlines()) == 892
    assert [t["name"] for t in result.block_runs["fill_in_missing_values"].tests] == ["test_output"]


def test_unit_2_sklearn_training_builds_the_training_set_and_fans_out(home):
    db = _db()
    assert db.count_pipeline_runs("unit_1_data_preparation", "data_preparation") == 0
    result = _run("unit_2_training/sklearn_training", max_evaluations=3)
    # The global data product ran the producer pipeline once.
    assert db.count_pipeline_runs("unit_1_data_preparation", "data_preparation") == 1
    X, X_train, X_val, y, y_train, y_val, dv = result.output("training_set")["build"]
    assert X.shape == (105870, 7027)
    assert (X_train.shape, X_val.shape) == ((54378, 5094), (51492, 5094))

    tuning = [b.uuid for b in result.children("hyperparameter_tuning/sklearn")]
    assert tuning == ["hyperparameter_tuning/sklearn:LinearRegression", "hyperparameter_tuning/sklearn:Lasso"]
    exporters = [b.uuid for b in result.children("sklearn")]
    assert exporters == ["sklearn:LinearRegression", "sklearn:Lasso"]

    summaries = {uuid.split(":")[1]: result.output(uuid, 1) for uuid in exporters}
    assert summaries["LinearRegression"]["rmse"] == pytest.approx(5.995, abs=0.01)
    assert summaries["Lasso"]["rmse"] > summaries["LinearRegression"]["rmse"]
    assert summaries["LinearRegression"]["promoted"] is True
    assert summaries["Lasso"]["promoted"] is False

    runs = _mlflow_runs(home, f"tags.blockyard_run_id = '{result.run_id}'")
    by_kind: dict[str, list] = {}
    for r in runs:
        by_kind.setdefault(r.data.tags["blockyard_kind"], []).append(r)
    assert len(by_kind["tuning"]) == 2 and len(by_kind["final"]) == 2
    trials = by_kind["trial"]
    lasso = [r for r in trials if r.data.tags["model_class"].endswith("Lasso")]
    linear = [r for r in trials if r.data.tags["model_class"].endswith("LinearRegression")]
    assert len(lasso) == 3  # every evaluation of a continuous space is a trial run
    assert 1 <= len(linear) <= 2  # repeats of a two-point space are not refitted
    assert len(trials) == len(lasso) + len(linear)
    first = [r for r in linear if r.data.params["fit_intercept"] == "True"]
    assert first and first[0].data.metrics["rmse"] == pytest.approx(5.995, abs=0.01)
    parents = {r.info.run_id for r in by_kind["tuning"]}
    assert {r.data.tags["mlflow.parentRunId"] for r in trials} == parents
    for r in runs:
        assert r.data.tags["pipeline"] == "sklearn_training"
        assert r.data.tags["model_class"].startswith("sklearn.linear_model.")
        assert r.data.tags["block"] in ("hyperparameter_tuning/sklearn", "sklearn")
    finals = {r.data.tags["model_class"]: r for r in runs if r.data.tags["blockyard_kind"] == "final"}
    assert finals["sklearn.linear_model.LinearRegression"].data.metrics["rmse"] == pytest.approx(5.995, abs=0.01)

    from blockyard.ml.registry import champion

    best = champion(workspace=WORKSPACE)
    assert best["run_id"] == summaries["LinearRegression"]["run_id"]


def test_unit_2_xgboost_training_reuses_the_fresh_training_set_and_takes_the_crown(home):
    db = _db()
    before = db.count_pipeline_runs("unit_1_data_preparation", "data_preparation")
    # Two evaluations: the known-good start point and one sampled point.
    result = _run("unit_2_training/xgboost_training", max_evaluations=2)
    assert db.count_pipeline_runs("unit_1_data_preparation", "data_preparation") == before  # fresh: not rebuilt

    booster, summary = result.output("xgboost")
    assert summary["rmse"] <= 5.00  # the start configuration alone gives 4.9923
    assert summary["promoted"] is True  # beats LinearRegression's 5.995
    assert summary["feature_importance"][0][0] in ("trip_distance",) or summary["feature_importance"][0][0].startswith("PU_DO=")

    from blockyard.ml.registry import champion

    best = champion(workspace=WORKSPACE)
    assert best["run_id"] == summary["run_id"]
    assert best["rmse"] == pytest.approx(summary["rmse"])
    assert int(best["version"]) == 2

    runs = _mlflow_runs(home, f"tags.blockyard_run_id = '{result.run_id}'")
    assert {r.data.tags["model_class"] for r in runs} == {"xgboost.Booster"}
    final = [r for r in runs if r.data.tags["blockyard_kind"] == "final"]
    assert len(final) == 1 and final[0].data.metrics["rmse"] == pytest.approx(summary["rmse"])

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    artifacts = {a.path for a in client.list_artifacts(final[0].info.run_id)}
    assert {"preprocessor", "feature_importance.json", "feature_importance.png"} <= artifacts


def test_unit_1_data_preparation_reference_numbers(home):
    # Run once, then again with the cache: same code, data and variables, so every
    # block is a hit.
    _run("unit_1_data_preparation/data_preparation")
    cached = _run("unit_1_data_preparation/data_preparation", use_cache=True)
    assert all(b.cache_hit for b in cached.block_runs.values())
    result = _run("unit_1_data_preparation/data_preparation", use_cache=False)
    assert not any(b.cache_hit for b in result.block_runs.values())
    df, df_train, df_val = result.output("prepare")
    assert (len(df), len(df_train), len(df_val)) == (105870, 54378, 51492)
    assert [t["name"] for t in result.block_runs["build"].tests] == [
        "test_dataset",
        "test_training_set",
        "test_validation_set",
    ]
    X, X_train, X_val, y, y_train, y_val, dv = result.output("build")
    assert X.shape == (105870, 7027)
    assert len(dv.feature_names_) == 5094
    # The chart widgets compute on the stored outputs (what `blockyard chart` does).
    from blockyard.charts.cli_support import compute_chart_for_block, render_chart_for_block
    from blockyard.project import Workspace

    ws = Workspace.open(WORKSPACE)
    chart = compute_chart_for_block(ws, "data_preparation", "prepare", "prepare_histogram_u9")
    assert sum(chart["data"]["counts"]) == int((df["trip_distance"] <= 20).sum())
    per_day = compute_chart_for_block(ws, "data_preparation", "ingest", "ingest_time_series_bar_chart_d1")
    assert sum(per_day["data"]["y"][0]) == 110128
    png = render_chart_for_block(ws, "data_preparation", "ingest", "feature_profiles_for_ingest", home / "fp.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    from blockyard.errors import BlockyardError

    with pytest.raises(BlockyardError, match="not attached to block 'build'"):
        compute_chart_for_block(ws, "data_preparation", "build", "prepare_histogram_u9")
    with pytest.raises(BlockyardError, match="no chart widget 'nope'"):
        compute_chart_for_block(ws, "data_preparation", None, "nope")
