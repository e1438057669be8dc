"""The course's unit 3 dashboards (Mage's block_layout.yaml format) on small data: the
overview from a tiny MLflow store, pipeline health from a run history with runs and a
trigger, and the XGBoost explainability (SHAP) from a small registered champion."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from blockyard.charts.dashboard import compute_dashboard, list_dashboards, load_dashboard, render_dashboard
from mirror import MIRROR

REPO = Path(__file__).resolve().parents[1]
WORKSPACE = REPO / "mlops"
BIN = Path(sys.executable).parent / "blockyard"


def _charts(board) -> dict:
    return {c["uuid"]: c for row in board.charts for c in row}


@pytest.fixture
def home(tmp_path, monkeypatch):
    from blockyard.session import reset_sessions

    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("BLOCKYARD_HOME", str(path))
    monkeypatch.setenv("BLOCKYARD_DATA_MIRROR", str(MIRROR))
    for name in ("MLFLOW_TRACKING_URI", "BLOCKYARD_DATABASE_URL", "BLOCKYARD_STORE_URL"):
        monkeypatch.delenv(name, raising=False)
    reset_sessions()
    yield path
    reset_sessions()


def _cli(args, env_extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BLOCKYARD_", "MLFLOW_"))}
    env.update(env_extra)
    return subprocess.run([str(BIN), *args], cwd=WORKSPACE, env=env, capture_output=True, text=True, timeout=600)


def test_course_ships_mages_unit_3_dashboards():
    names = list_dashboards(WORKSPACE)
    for name in ("overview", "explainability", "monitoring", "pipelines/sklearn_training",
                 "pipelines/xgboost_training", "pipelines/monitoring"):
        assert name in names, names
    assert len(load_dashboard(WORKSPACE, "overview").blocks) == 5


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="mlflow is not installed")
def test_overview_reads_the_mlflow_runs(home, tmp_path):
    from blockyard.ml.tracking import track_experiment

    runs = [("xgboost.Booster", 5.1), ("xgboost.Booster", 5.3), ("xgboost.Booster", 6.0),
            ("sklearn.linear_model.LinearRegression", 8.2), ("sklearn.linear_model.Lasso", 9.1),
            ("sklearn.linear_model.Lasso", 9.5)]
    for model_class, rmse in runs:
        track_experiment(metrics={"rmse": rmse, "mse": rmse ** 2}, model_class=model_class, workspace=WORKSPACE)
    track_experiment(metrics={"trials": 3}, model_class="xgboost.Booster", workspace=WORKSPACE)  # no rmse: left out

    board = compute_dashboard(WORKSPACE, load_dashboard(WORKSPACE, "overview"), {})
    charts = _charts(board)
    assert not [c for c in charts.values() if c.get("error")], [c.get("error") for c in charts.values()]
    pie = charts["runs_by_model__pie_chart_"]["data"]
    assert dict(zip(pie["labels"], pie["values"])) == {"Booster": 3, "Lasso": 2, "LinearRegression": 1}
    totals = charts["total_runs_by_model"]["data"]
    assert dict(zip(totals["x"], totals["y"][0])) == {"Booster": 3, "Lasso": 2, "LinearRegression": 1}
    assert charts["distribution_of_performance_metrics"]["data"]["total"] == 3  # the XGBoost runs
    rmse = charts["training_metrics__rmse_"]["data"]
    assert rmse["y_labels"] == ["average(rmse_Booster)", "average(rmse_LinearRegression)", "average(rmse_Lasso)"]
    booster = [v for v in rmse["y"][0] if v is not None]
    assert booster and all(5.1 <= v <= 6.0 for v in booster)  # per-minute averages of 5.1, 5.3, 6.0
    assert [v for v in rmse["y"][1] if v is not None] == [8.2]
    mse = charts["time_series__mse_"]["data"]
    assert len(mse["y"]) == 3 and any(v is not None for v in mse["y"][2])

    out = tmp_path / "overview.png"
    proc = _cli(["dashboard", "overview", "-o", str(out)], {"BLOCKYARD_HOME": str(home)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "(5 charts, 0 failed)" in proc.stdout and out.stat().st_size > 10_000


def test_pipeline_health_from_the_run_history(home, tmp_path):
    from blockyard.db import Database

    db = Database(f"sqlite:///{home / 'blockyard.db'}")
    db.migrate()
    day = datetime(2024, 3, 1, 9, tzinfo=timezone.utc)
    for offset, status in [(0, "completed"), (0, "failed"), (1, "completed"), (1, "completed"), (2, "failed")]:
        run = db.create_pipeline_run("unit_3_observability", "monitoring", execution_date=day + timedelta(days=offset))
        db.finish_pipeline_run(run, status)
    db.create_pipeline_run("unit_2_training", "sklearn_training")  # another pipeline: not counted
    db.close()

    board = compute_dashboard(WORKSPACE, load_dashboard(WORKSPACE, "pipelines/monitoring"), {})
    charts = _charts(board)
    assert not [c for c in charts.values() if c.get("error")], [c.get("error") for c in charts.values()]
    assert charts["pipeline_runs_daily"]["data"]["y"] == [[2, 2, 1]]
    assert [x[:10] for x in charts["pipeline_runs_daily"]["data"]["x"]] == ["2024-03-01", "2024-03-02", "2024-03-03"]
    assert charts["completed_pipeline_runs_daily"]["data"]["y"] == [[1, 2]]
    assert charts["failed_pipeline_runs_daily"]["data"]["y"] == [[1, 1]]
    status = charts["pipeline_run_status"]["data"]
    assert dict(zip(status["x"], status["y"][0])) == {"completed": 3, "failed": 2}
    assert charts["trigger_types"]["data"]["labels"] == []  # the course's monitoring has no trigger

    out = tmp_path / "health.html"
    render_dashboard(board, out)
    assert out.read_text().count("plotly-graph-div") == 7


def test_trigger_charts_read_triggers_yaml(tmp_path, monkeypatch):
    from wsbuilder import block, write_pipeline

    monkeypatch.delenv("BLOCKYARD_HOME", raising=False)
    monkeypatch.delenv("BLOCKYARD_DATABASE_URL", raising=False)
    root = tmp_path / "ws"
    write_pipeline(root, "proj", "etl", [block("load", "x = 1\n")])
    (root / "proj" / "pipelines" / "etl" / "triggers.yaml").write_text(yaml.safe_dump({"triggers": [
        {"name": "hourly", "schedule_type": "time", "schedule_interval": "@hourly", "status": "active"},
        {"name": "daily", "schedule_type": "time", "schedule_interval": "@daily", "status": "inactive"},
        {"name": "hook", "schedule_type": "api", "status": "active"},
    ]}))
    layout = yaml.safe_load((WORKSPACE / "presenters/pipelines/monitoring/dashboard/block_layout.yaml").read_text())
    for b in layout["blocks"].values():
        b["data_source"]["pipeline_uuid"] = "proj/etl"
    folder = root / "presenters" / "pipelines" / "etl" / "dashboard"
    folder.mkdir(parents=True)
    (folder / "block_layout.yaml").write_text(yaml.safe_dump(layout))
    charts = _charts(compute_dashboard(root, load_dashboard(root, "pipelines/etl"), {}))
    types = charts["trigger_types"]["data"]
    assert dict(zip(types["labels"], types["values"])) == {"time": 2, "api": 1}
    active = charts["trigger_active_status"]["data"]
    assert dict(zip(active["x"], active["y"][0])) == {"active": 2, "inactive": 1}
    freq = charts["trigger_frequency"]["data"]
    assert dict(zip(freq["x"], freq["y"][0])) == {"@hourly": 1, "@daily": 1, "none": 1}
    # a pipeline without runs: empty charts, not errors
    assert not [c for c in charts.values() if c.get("error")], [c.get("error") for c in charts.values()]


def test_custom_chart_errors_say_where(tmp_path):
    root = tmp_path / "ws"
    base = root / "presenters" / "pics"
    (base / "charts").mkdir(parents=True)
    (base / "dashboard").mkdir()
    (base / "dashboard" / "block_layout.yaml").write_text(yaml.safe_dump({"blocks": {
        "pic": {"type": "chart", "name": "A picture", "configuration": {"chart_type": "custom"}, "data_source": {"type": "chart_code"}},
        "nocode": {"type": "chart", "configuration": {"chart_type": "custom"}, "data_source": {"type": "chart_code"}},
        "odd": {"type": "chart", "configuration": {"chart_type": "bar chart"}, "data_source": {"type": "block"}},
    }}))
    (base / "charts" / "pic.py").write_text(textwrap.dedent("""
        @data_source
        def data(**kwargs):
            return [1, 3, 2]

        @render(render_type='png')
        def draw(values, **kwargs):
            from matplotlib.figure import Figure
            fig = Figure()
            fig.add_subplot().plot(values)
            return fig
    """))
    board = compute_dashboard(root, load_dashboard(root, "pics"), {})
    charts = _charts(board)
    assert charts["pic"]["type"] == "image" and charts["pic"]["data"]["mime"] == "image/png"
    assert "needs a @render function" in charts["nocode"]["error"]
    assert "data_source type block needs pipeline_uuid" in charts["odd"]["error"]
    out = tmp_path / "pics.html"
    render_dashboard(board, out)
    assert "data:image/png;base64," in out.read_text()
    png = tmp_path / "pics.png"
    render_dashboard(board, png)
    assert png.stat().st_size > 5_000


@pytest.mark.skipif(importlib.util.find_spec("shap") is None, reason="shap is not installed")
@pytest.mark.skipif(not (MIRROR / "taxi/green/green_tripdata_2023-01.parquet").is_file(), reason="no data mirror")
def test_explainability_shap_on_sampled_rows_of_the_xgboost_champion(home, tmp_path):
    import numpy as np
    import xgboost as xgb

    from blockyard.datasets import load_green_taxi
    from blockyard.ml.registry import promote_if_better
    from blockyard.ml.tracking import log_final_model
    from mlops.unit_3_observability.utils.explain import shap_sample
    from mlops.utils.data_preparation.cleaning import clean
    from mlops.utils.data_preparation.encoders import vectorize_features
    from mlops.utils.data_preparation.feature_engineering import combine_features
    from mlops.utils.data_preparation.feature_selector import select_features

    df = combine_features(clean(load_green_taxi(["2023-01"]))).sample(n=4_000, random_state=1)
    X, _, dv = vectorize_features(select_features(df))
    booster = xgb.train({"max_depth": 4, "eta": 0.3}, xgb.DMatrix(X, label=df["duration"].to_numpy()), 15)
    final = log_final_model(booster, dv, {"rmse": 6.5}, {}, workspace=WORKSPACE)
    assert promote_if_better(final.model_uri, 6.5, run_id=final.run_id, workspace=WORKSPACE)

    sample = shap_sample("2023-01", 1_000)
    assert sample["rows"] == 1_000 and sample["values"].shape == (1_000, 20)
    # exact: the SHAP values are XGBoost's own contributions (summed per shown feature)
    with pytest.raises(ValueError, match="at least 1000"):
        shap_sample("2023-01", 10)
    assert np.abs(sample["values"]).mean() > 0

    board = compute_dashboard(WORKSPACE, load_dashboard(WORKSPACE, "explainability"), {"month": "2023-01", "rows": "1000"})
    charts = _charts(board)
    assert [charts[u]["type"] for u in ("shap_values", "shap_values_bar")] == ["image", "image"], charts
    out = tmp_path / "explain.png"
    proc = _cli(["dashboard", "explainability", "-o", str(out), "--var", "month=2023-01", "--var", "rows=1000"],
                {"BLOCKYARD_HOME": str(home), "BLOCKYARD_DATA_MIRROR": str(MIRROR)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "(2 charts, 0 failed)" in proc.stdout and out.stat().st_size > 20_000
