"""Dashboards as files (Mage's presenters/<name>/dashboard/block_layout.yaml), rendered
to HTML and PNG by `blockyard dashboard`, including the course's monitoring dashboard."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from blockyard.charts.compute import ChartError
from blockyard.charts.dashboard import list_dashboards, load_dashboard, render_dashboard

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent / "blockyard"

LAYOUT = {
    "blocks": {
        "runs_by_model": {
            "name": "Runs by model", "type": "chart", "data_source": {"type": "chart_code"},
            "configuration": {"chart_type": "bar chart", "group_by": ["model"],
                              "metrics": [{"aggregation": "count", "column": "run"}]},
        },
        "rmse_values": {
            "name": "RMSE values", "type": "chart", "data_source": {"type": "chart_code"},
            "configuration": {"chart_type": "line chart", "x": "x", "y": "y", "y_labels": ["rmse"]},
        },
        "broken": {"name": "Broken", "type": "chart", "data_source": {"type": "chart_code"},
                   "configuration": {"chart_type": "pie chart", "x": "x"}},
    },
    "layout": [[{"block_uuid": "runs_by_model", "width": 1}, {"block_uuid": "rmse_values", "width": 2}],
               [{"block_uuid": "broken", "width": 1}]],
}
RUNS_BY_MODEL = """
    import pandas as pd

    if 'data_source' not in globals():
        from mage_ai.data_preparation.decorators import data_source


    @data_source
    def runs(*args, **kwargs):
        return pd.DataFrame({'model': ['Lasso', 'Lasso', 'XGBoost'], 'run': [1, 2, 3]})
    """


@pytest.fixture
def ws(tmp_path):
    root = tmp_path / "ws"
    (root / "proj").mkdir(parents=True)
    (root / "settings.yaml").write_text("projects:\n  proj: {}\n")
    (root / "proj" / "metadata.yaml").write_text("project_uuid: proj\n")
    board = root / "presenters" / "overview"
    (board / "dashboard").mkdir(parents=True)
    (board / "dashboard" / "block_layout.yaml").write_text(yaml.safe_dump(LAYOUT))
    (board / "charts").mkdir()
    (board / "charts" / "runs_by_model.py").write_text(textwrap.dedent(RUNS_BY_MODEL))
    # chart code in a project's charts/ folder is found too (Mage keeps it there)
    (root / "proj" / "charts").mkdir()
    (root / "proj" / "charts" / "rmse_values.py").write_text("x = ['a', 'b', 'c']\ny = [[5.1, 5.4, 6.0]]\n")
    (board / "charts" / "broken.py").write_text("x = 1 / 0\n")
    return root


def test_dashboard_computed_and_rendered(ws, tmp_path):
    assert list_dashboards(ws) == ["overview"]
    board = load_dashboard(ws, "overview")
    html_path = render_dashboard(board, tmp_path / "overview.html")
    [first, second], [third] = board.charts
    assert first["data"]["x"] == ["Lasso", "XGBoost"] and first["data"]["y"] == [[2, 1]]
    assert second["data"]["y"] == [[5.1, 5.4, 6.0]] and second["width"] == 2.0
    assert "ZeroDivisionError" in third["error"] and "broken.py" in third["error"]
    text = html_path.read_text()
    assert "Runs by model" in text and "RMSE values" in text and "ZeroDivisionError" in text
    assert text.count("plotly.js v") <= 1 and "Plotly.newPlot" in text  # plotly.js inlined once
    png = render_dashboard(board, tmp_path / "overview.png")
    import matplotlib.image as mpimg

    image = mpimg.imread(png)
    assert image.shape[0] > 400 and image.shape[1] > 1000


def test_bad_dashboards_say_what_is_wrong(ws, tmp_path):
    with pytest.raises(ChartError, match="no dashboard 'nope'") as info:
        load_dashboard(ws, "nope")
    assert "overview" in str(info.value)  # lists the known ones
    with pytest.raises(ChartError, match="no dashboard"):
        load_dashboard(ws, "../../etc")
    layout = dict(LAYOUT, layout=[[{"block_uuid": "missing"}]])
    (ws / "presenters" / "overview" / "dashboard" / "block_layout.yaml").write_text(yaml.safe_dump(layout))
    with pytest.raises(ChartError, match=r"layout\[0\]\[0\] names block 'missing'"):
        load_dashboard(ws, "overview")
    (ws / "presenters" / "overview" / "dashboard" / "block_layout.yaml").write_text(yaml.safe_dump(LAYOUT))
    with pytest.raises(ChartError, match="cannot write a dashboard as .svg"):
        render_dashboard(load_dashboard(ws, "overview"), tmp_path / "x.svg")


def _cli(args, cwd, env_extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLOCKYARD_")}
    env.update(env_extra)
    return subprocess.run([str(BIN), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_cli_lists_and_renders_and_fails_on_a_broken_chart(ws, tmp_path):
    env = {"BLOCKYARD_WORKSPACE": str(ws)}
    listed = _cli(["dashboard"], ws, env)
    assert listed.returncode == 0 and listed.stdout.split() == ["overview"]
    out = tmp_path / "o.html"
    proc = _cli(["dashboard", "overview", "-o", str(out)], ws, env)
    assert proc.returncode == 1 and out.is_file()
    assert "chart broken:" in proc.stderr and "(3 charts, 1 failed)" in proc.stdout
    missing = _cli(["dashboard", "nope", "-o", str(out)], ws, env)
    assert missing.returncode != 0 and "no dashboard 'nope'" in missing.stderr + missing.stdout


def test_course_monitoring_dashboard_reads_the_stored_figures(tmp_path, monkeypatch):
    from blockyard.db import Database
    from blockyard.ml.monitoring import MonitoringResult
    from blockyard.ml.monitoring_store import MonitoringStore

    home = tmp_path / "home"
    home.mkdir()
    db = Database(f"sqlite:///{home / 'blockyard.db'}")
    db.migrate()
    store = MonitoringStore(db)
    for period, share, rmse, pu in [("2023-02", 0.0, 6.2, 0.08), ("2023-01", 0.0, 6.1, 0.05), ("2023-03", 0.25, 7.4, 0.14)]:
        store.save(MonitoringResult(
            model="nyc-taxi-duration", period=period, rows=60_000, drift_share=share, drifted_features=int(share * 4),
            dataset_drift=False, prediction_drift=None, missing_share=0.0, missing={}, rmse=rmse, mae=4.0,
            features={f: {"score": pu if f == "PULocationID" else 0.01, "method": "m", "threshold": 0.1, "drifted": False}
                      for f in ("trip_distance", "passenger_count", "PULocationID", "DOLocationID")},
            baseline={"rmse": 6.0}, sampled={},
        ))
    db.close()
    out = tmp_path / "monitoring.png"
    proc = _cli(["dashboard", "monitoring", "-o", str(out)], REPO / "mlops", {"BLOCKYARD_HOME": str(home)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "(3 charts, 0 failed)" in proc.stdout and out.stat().st_size > 10_000

    from blockyard.charts.dashboard import compute_dashboard

    monkeypatch.setenv("BLOCKYARD_HOME", str(home))
    board = compute_dashboard(REPO / "mlops", load_dashboard(REPO / "mlops", "monitoring"), {})
    charts = {c["uuid"]: c for row in board.charts for c in row}
    assert charts["drift_share_by_month"]["data"]["x"] == ["2023-01", "2023-02", "2023-03"]
    assert charts["drift_share_by_month"]["data"]["y"] == [[0.0, 0.0, 0.25]]
    assert charts["rmse_vs_baseline"]["data"]["y"] == [[6.1, 6.2, 7.4], [6.0, 6.0, 6.0]]
    assert charts["feature_drift_by_month"]["data"]["y"][2] == [0.05, 0.08, 0.14]


def test_dashboards_over_http(ws, monkeypatch):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from blockyard.server.app import create_app

    monkeypatch.delenv("BLOCKYARD_HOME", raising=False)
    monkeypatch.delenv("BLOCKYARD_DATABASE_URL", raising=False)
    with TestClient(create_app(ws)) as c:
        assert c.get("/api/dashboards").json() == {"dashboards": ["overview"]}
        body = c.get("/api/dashboards/overview").json()
        assert body["name"] == "overview"
        [first, second], [third] = body["rows"]
        assert first["type"] == "bar chart" and first["data"]["y"] == [[2, 1]]
        assert second["title"] == "RMSE values" and "ZeroDivisionError" in third["error"]
        missing = c.get("/api/dashboards/nope")
        assert missing.status_code == 404 and "no dashboard 'nope'" in missing.text
        assert c.get("/api/dashboards/..%2F..%2Fetc").status_code == 404
