"""Mage's dashboard data sources read as is (presenters/<name>/dashboard/block_layout.yaml):
`block` (a block's stored outputs, `partitions`), `block_runs`, `pipelines`, and
`chart_code` with a `pipeline_uuid` (the pipeline's variables) — computed, exported by
`blockyard dashboard NAME -o x.html`, and drawn in the UI by real headless Chromium."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from wsbuilder import block, write_pipeline

BIN = Path(sys.executable).parent / "blockyard"

MAKE = """
import pandas as pd

@data_loader
def make(*args, **kwargs):
    n = int(kwargs['n'])
    return pd.DataFrame({'label': ['a', 'b'], 'value': [n, 10 * n]})
"""

BLOCKS = {
    "latest": {"name": "Latest output", "type": "chart",
               "data_source": {"type": "block", "pipeline_uuid": "etl", "block_uuid": "make"},
               "configuration": {"chart_type": "bar chart", "x": "label", "y": "value"}},
    "last_two": {"name": "Last two runs", "type": "chart",
                 "data_source": {"type": "block", "pipeline_uuid": "proj/etl", "block_uuid": "make", "partitions": 2},
                 "configuration": {"chart_type": "line chart", "x": "x", "y": "y"}},
    "first": {"name": "First run", "type": "chart",
              "data_source": {"type": "block", "pipeline_uuid": "etl", "block_uuid": "make", "partitions": -1},
              "configuration": {"chart_type": "table"}},
    "block_runs": {"name": "Block runs", "type": "chart",
                   "data_source": {"type": "block_runs", "pipeline_uuid": "etl"},
                   "configuration": {"chart_type": "bar chart", "group_by": ["status"],
                                     "metrics": [{"aggregation": "count", "column": "id"}]}},
    "pipelines": {"name": "Pipelines", "type": "chart", "data_source": {"type": "pipelines"},
                  "configuration": {"chart_type": "table"}},
    "variables": {"name": "Pipeline variables", "type": "chart",
                  "data_source": {"type": "chart_code", "pipeline_uuid": "etl"},
                  "configuration": {"chart_type": "bar chart", "x": "x", "y": "y"}},
    "wrong_block": {"name": "Wrong block", "type": "chart",
                    "data_source": {"type": "block", "pipeline_uuid": "etl", "block_uuid": "nope"},
                    "configuration": {"chart_type": "table"}},
}
LAYOUT = [["latest", "last_two", "first"], ["block_runs", "pipelines"], ["variables", "wrong_block"]]
CHARTS = {
    # Mage hands the chart the list of outputs (newest run first) as its first argument:
    # df_1 for chart code, the first parameter of a @data_source function.
    "last_two": """
        x = ['newest', 'older']
        y = [[float(frame['value'].sum()) for frame in df_1]]
        """,
    "first": """
        @data_source
        def only(outputs, *args, **kwargs):
            assert len(outputs) == 1
            return outputs[0]
        """,
    "variables": "x = ['scale']\ny = [[float(scale) * 2]]\n",
}


def _workspace(root: Path) -> Path:
    write_pipeline(root, "proj", "etl", [block("make", MAKE, type="data_loader")], variables={"n": 1, "scale": 21})
    write_pipeline(root, "proj", "other", [block("noop", "@custom\ndef noop(*a, **k):\n    return 1\n")])
    board = root / "presenters" / "sources"
    (board / "dashboard").mkdir(parents=True)
    (board / "charts").mkdir()
    layout = {"blocks": BLOCKS, "layout": [[{"block_uuid": u} for u in row] for row in LAYOUT]}
    (board / "dashboard" / "block_layout.yaml").write_text(yaml.safe_dump(layout, sort_keys=False))
    for uuid, code in CHARTS.items():
        (board / "charts" / f"{uuid}.py").write_text(textwrap.dedent(code).lstrip())
    return root


@pytest.fixture
def ws(tmp_path, monkeypatch):
    """A workspace whose `etl` pipeline ran three times (n = 1, 2, 3)."""
    from blockyard import run_pipeline
    from blockyard.session import reset_sessions

    for name in ("BLOCKYARD_HOME", "BLOCKYARD_DATABASE_URL", "BLOCKYARD_STORE_URL", "BLOCKYARD_WORKSPACE"):
        monkeypatch.delenv(name, raising=False)
    root = _workspace(tmp_path / "ws")
    reset_sessions()
    for n in (1, 2, 3):
        result = run_pipeline("proj/etl", workspace=root, variables={"n": n})
        assert result.ok, result.error
    yield root
    reset_sessions()


def _check_charts(charts: dict) -> None:
    assert charts["latest"]["data"]["x"] == ["a", "b"] and charts["latest"]["data"]["y"] == [[3, 30]]
    assert charts["last_two"]["data"]["y"] == [[33.0, 22.0]]  # runs n=3 then n=2
    assert charts["first"]["data"]["rows"] == [["a", 1], ["b", 10]]
    assert charts["block_runs"]["data"]["x"] == ["completed"] and charts["block_runs"]["data"]["y"] == [[3]]
    table = charts["pipelines"]["data"]
    rows = {r[table["columns"].index("uuid")]: r for r in table["rows"]}
    assert set(rows) == {"etl", "other"} and rows["etl"][table["columns"].index("blocks")] == 1
    assert charts["variables"]["data"]["y"] == [[42.0]]  # the pipeline's variable scale: 21
    error = charts["wrong_block"]["error"]
    assert "block_uuid 'nope' is not a block of proj/etl" in error and "make" in error


def test_data_sources_computed(ws):
    from blockyard.charts.dashboard import compute_dashboard, load_dashboard

    board = compute_dashboard(ws, load_dashboard(ws, "sources"))
    _check_charts({c["uuid"]: c for row in board.charts for c in row})


def test_block_source_before_any_run_and_bad_keys(tmp_path, monkeypatch):
    from blockyard.charts.dashboard import compute_dashboard, load_dashboard

    for name in ("BLOCKYARD_HOME", "BLOCKYARD_DATABASE_URL", "BLOCKYARD_STORE_URL"):
        monkeypatch.delenv(name, raising=False)
    root = _workspace(tmp_path / "ws")
    path = root / "presenters" / "sources" / "dashboard" / "block_layout.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["blocks"]["first"]["data_source"]["partitions"] = "many"
    doc["blocks"]["pipelines"]["data_source"] = {"type": "system_metrics"}
    path.write_text(yaml.safe_dump(doc))
    board = compute_dashboard(root, load_dashboard(root, "sources"))
    errors = {c["uuid"]: c.get("error") or "" for row in board.charts for c in row}
    assert "has no stored output yet" in errors["latest"] and "blockyard run proj/etl" in errors["latest"]
    assert "data_source.partitions must be a number, not 'many'" in errors["first"]
    assert "data_source type 'system_metrics' is not supported" in errors["pipelines"]
    assert "block_runs" in errors["pipelines"]  # the hint lists the supported types


def test_cli_exports_the_data_sources(ws, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLOCKYARD_")}
    env["BLOCKYARD_WORKSPACE"] = str(ws)
    out = tmp_path / "sources.html"
    proc = subprocess.run([str(BIN), "dashboard", "sources", "-o", str(out)], cwd=ws, env=env,
                          capture_output=True, text=True, timeout=300)
    # wrong_block fails on purpose: the command says which chart and exits 1
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "(7 charts, 1 failed)" in proc.stdout and "chart wrong_block:" in proc.stderr
    text = out.read_text()
    for title in ("Latest output", "Last two runs", "First run", "Block runs", "Pipelines", "Pipeline variables"):
        assert title in text, title
    assert "Plotly.newPlot" in text and "block_uuid &#x27;nope&#x27;" in text


def test_ui_draws_the_data_sources(ws):
    from ui_support import UiServer, browser_page, screenshot, skip_reason

    if skip_reason():
        pytest.skip(skip_reason())
    srv = UiServer(ws, worker=False).start()
    try:
        with browser_page() as page:
            page.goto(srv.url + "/dashboards/files/sources")
            page.wait_for_selector('[data-uuid="variables"] .main-svg')
            for uuid in ("latest", "last_two", "first", "block_runs", "pipelines", "variables"):
                assert page.locator(f'[data-uuid="{uuid}"] .main-svg').count() >= 1, uuid
            assert "is not a block of proj/etl" in page.inner_text('[data-uuid="wrong_block"]')
            assert "newest" in page.inner_html('[data-uuid="last_two"]')
            screenshot(page, "dashboard-data-sources")
            assert not page.js_errors, page.js_errors
    finally:
        srv.stop()
