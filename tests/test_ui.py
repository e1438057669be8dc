"""End-to-end tests of the web UI in real headless Chromium against a real server (the API
app + blockyard.ui + a worker on a free loopback port) over a copy of the course workspace.

Screenshots of the main pages go to test-artifacts/screenshots/."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from mirror import MIRROR
from ui_support import REPO, SCREENSHOTS, UiServer, browser_page, copy_workspace, screenshot, set_code, skip_reason

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not (MIRROR / "titanic.csv").exists():
        pytest.skip(f"the data mirror {MIRROR} has no titanic.csv")
    old = os.environ.get("BLOCKYARD_DATA_MIRROR")
    os.environ["BLOCKYARD_DATA_MIRROR"] = str(MIRROR)
    root = copy_workspace(REPO / "mlops", tmp_path_factory.mktemp("ui") / "mlops")
    srv = UiServer(root).start()
    try:
        yield srv
    finally:
        srv.stop()
        if old is None:
            os.environ.pop("BLOCKYARD_DATA_MIRROR", None)
        else:
            os.environ["BLOCKYARD_DATA_MIRROR"] = old


@pytest.fixture()
def page():
    with browser_page() as p:
        yield p
        assert not p.js_errors, f"JavaScript errors: {p.js_errors}"


def test_seed_walkthrough_run_example_pipeline(server, page):
    """The course's first steps: open the UI, choose unit_0_setup in the project selector,
    click example_pipeline, click Run @once, watch it finish, read the logs."""
    page.goto(server.url + "/")
    page.wait_for_selector("#project-select option[value=unit_0_setup]", state="attached")
    page.wait_for_selector(".project-card[data-project=unit_0_setup]")
    screenshot(page, "01-overview")

    page.select_option("#project-select", "unit_0_setup")
    page.wait_for_url("**/projects/unit_0_setup")
    page.click("a.pipeline-link:text-is('example_pipeline')")
    page.wait_for_url("**/pipelines/unit_0_setup/example_pipeline")
    page.wait_for_selector('[data-block-card="load_titanic"] .CodeMirror')
    # the DAG: three blocks, two edges, coloured by type
    assert page.locator("svg.dag .node").count() == 3
    assert page.locator("svg.dag .edge").count() == 2
    assert "load_titanic" in page.inner_text('[data-block-card="load_titanic"] .CodeMirror')
    screenshot(page, "02-pipeline")

    page.click("#run-once")
    page.wait_for_selector(".run-panel[data-finished]", timeout=120_000)
    assert page.get_attribute(".run-panel", "data-finished") == "completed"
    for block in ("load_titanic", "fill_in_missing_values", "export_titanic_clean"):
        assert page.get_attribute(f".run-block[data-block={block}] .badge", "data-status") == "completed"
        page.wait_for_selector(f'svg.dag .node[data-block="{block}"][data-status="completed"]')
    log = page.inner_text(".live-log")
    assert "export_titanic_clean: completed" in log
    assert re.search(r"run #\d+ completed", log)
    assert (server.root / "titanic_clean.csv").is_file()
    screenshot(page, "03-pipeline-run-finished")

    page.click("text=Open run details")
    page.wait_for_selector("svg.gantt rect.bar")
    assert page.locator("svg.gantt rect.bar").count() == 3
    page.select_option("#log-block", "load_titanic")
    page.wait_for_selector("text=1/1 tests passed")
    page.wait_for_selector('.output[data-output="output_0"] table')
    assert "Braund, Mr. Owen Harris" in page.inner_text('.output[data-output="output_0"]')
    screenshot(page, "04-run")

    page.click("nav a[data-nav='/runs']")
    page.wait_for_selector("table.runs tbody tr")
    assert "unit_0_setup/example_pipeline" in page.inner_text("table.runs")
    screenshot(page, "05-runs")


LOADER = '''import pandas as pd

if 'data_loader' not in globals():
    from mage_ai.data_preparation.decorators import data_loader
if 'test' not in globals():
    from mage_ai.data_preparation.decorators import test


@data_loader
def load_data(*args, **kwargs):
    n = int(kwargs.get('rows', 3))
    print(f'loading {n} rows')
    return pd.DataFrame({'trip_distance': [float(i) for i in range(n)], 'zone': ['a', 'b'] * (n // 2) + ['a'] * (n % 2)})


@test
def test_rows(output, *args) -> None:
    assert len(output.index) == 7, f'expected 7 rows, got {len(output.index)}'
'''

TRANSFORMER_BROKEN = '''@transformer
def transform(df, *args, **kwargs)
    return df
'''

TRANSFORMER = '''if 'transformer' not in globals():
    from mage_ai.data_preparation.decorators import transformer


@transformer
def transform(df, *args, **kwargs):
    df = df.copy()
    df['double'] = df['trip_distance'] * 2
    return df
'''


def test_pipeline_editing_flow(server, page):
    """Create a project and a pipeline, add blocks from templates, write code (a syntax
    error is shown with its line), set a global variable, execute blocks and see their
    output and test results, add a chart, rename a block."""
    page.goto(server.url + "/")
    page.wait_for_selector("#new-pipeline")
    page.click("text=New project")
    page.fill(".modal input[name=name]", "ui_demo")
    page.click(".modal button:text('Create project')")
    page.wait_for_url("**/projects/ui_demo")
    page.wait_for_selector("text=No pipelines in ui_demo")

    page.click("#new-pipeline")
    page.fill(".modal input[name=name]", "Data preparation")
    assert page.input_value(".modal input[name=uuid]") == "data_preparation"
    page.click("#create-pipeline")
    page.wait_for_url("**/pipelines/ui_demo/data_preparation")
    page.wait_for_selector("text=This pipeline has no blocks")

    def add_block(kind: str, uuid: str) -> None:
        page.click("#add-block")
        page.select_option(".modal select[name=type]", kind)
        page.fill(".modal input[name=uuid]", uuid)
        page.click("#add-block-submit")
        page.wait_for_selector(f'[data-block-card="{uuid}"] .CodeMirror')

    add_block("data_loader", "ingest")
    assert "@data_loader" in page.inner_text('[data-block-card="ingest"] .CodeMirror')  # the template
    add_block("transformer", "prepare")
    add_block("data_exporter", "build")
    assert page.locator("svg.dag .edge").count() == 2  # each new block hangs under the previous one

    # global variable rows=7
    page.click("#add-variable")
    page.fill(".var-row:last-child .var-key", "rows")
    page.fill(".var-row:last-child .var-value", "7")
    page.click("#save-variables")
    page.wait_for_selector("text=Saved: blocks get them in **kwargs")

    # a syntax error is refused with its line, the file is untouched
    set_code(page, "prepare", TRANSFORMER_BROKEN)
    page.click('[data-block-card="prepare"] [data-action=save]')
    err = page.wait_for_selector('[data-block-card="prepare"] [data-error-line]')
    assert err.get_attribute("data-error-line") == "2"
    assert "Line 2" in err.inner_text()
    page.wait_for_selector('[data-block-card="prepare"] .cm-error-line')
    set_code(page, "prepare", TRANSFORMER)
    page.click('[data-block-card="prepare"] [data-action=save]')
    page.wait_for_selector('[data-block-card="prepare"] .editor-message .ok')

    set_code(page, "ingest", LOADER)
    page.click('[data-block-card="ingest"] [data-action=execute]')  # saves first, then runs
    card = '[data-block-card="ingest"]'
    page.wait_for_selector(f'{card} .block-status .badge[data-status=completed]', timeout=60_000)
    # under the block, as in a notebook: printed lines, the output table, the tests
    page.wait_for_selector(f'{card} .nb-output table')
    assert "shape 7 × 2" in page.inner_text(f"{card} .output-head")
    assert page.locator(f"{card} .nb-output tbody tr").count() == 7
    assert page.locator(f"{card} [data-action=more-rows]").is_hidden()  # all 7 rows shown
    page.wait_for_selector(f"{card} >> text=1/1 tests passed")
    page.wait_for_selector(f'{card} pre.log:has-text("loading 7 rows")')
    log = page.inner_text(f"{card} pre.log")  # start and end lines with the duration, around what it printed
    assert re.search(r"start block ingest.*\n(.*\n)*loading 7 rows\n(.*\n)*.*end block ingest: completed in [\d.]+s", log), log
    screenshot(page, "06-block-executed")

    page.click('[data-block-card="prepare"] [data-action=execute]')
    card = '[data-block-card="prepare"]'
    page.wait_for_selector(f'{card} .block-status .badge[data-status=completed]', timeout=60_000)
    page.wait_for_selector(f'{card} .output th:has-text("double")')

    # a histogram of the transformer's output, drawn with Plotly
    page.click("#add-chart")
    page.select_option(".modal select[name=block]", "prepare")
    page.select_option(".modal select[name=chart_type]", "histogram")
    page.fill(".modal input[name=x]", "double")
    page.click("#add-chart-submit")
    page.wait_for_selector(".chart-box .js-plotly-plot .main-svg", timeout=60_000)
    page.locator(".charts-section").scroll_into_view_if_needed()
    screenshot(page, "07-chart")

    # rename the exporter; the DAG follows
    page.select_option('[data-block-card="build"] [data-action=menu]', "rename")
    page.fill(".modal input[name=uuid]", "export_features")
    page.click(".modal button:text('Rename')")
    page.wait_for_selector('svg.dag .node[data-block="export_features"]')
    assert (server.root / "ui_demo" / "data_exporters" / "export_features.py").is_file()
    pipeline_yaml = (server.root / "ui_demo" / "pipelines" / "data_preparation" / "metadata.yaml").read_text()
    assert "rows: 7" in pipeline_yaml and "export_features" in pipeline_yaml


def test_runs_list_filters_and_pagination(server, page):
    from blockyard.session import session_for
    from blockyard.project import Workspace

    db = session_for(Workspace.open(server.root)).db
    for i in range(60):
        db.create_pipeline_run(project="unit_2_training", pipeline_uuid="sklearn_training", variables={"i": i},
                               block_uuids=[], status="failed" if i % 3 == 0 else "completed")
    page.goto(server.url + "/runs?pipeline=unit_2_training/sklearn_training")
    page.wait_for_selector("table.runs tbody tr")
    assert "1–50 of 60" in page.inner_text(".pager")
    page.click(".pager a[rel=next]")
    page.wait_for_selector(".pager:has-text('51–60 of 60')")
    page.select_option("select[name=status]", "failed")
    page.wait_for_selector(".pager:has-text('of 20')")
    assert set(page.locator("table.runs tbody .badge").all_inner_texts()) == {"failed"}
    screenshot(page, "08-runs-filtered")


def test_triggers_backfills_dashboards_settings(server, page):
    page.goto(server.url + "/triggers")
    page.click("#new-trigger")
    page.select_option(".modal select[name=pipeline]", "unit_0_setup/example_pipeline")
    page.fill(".modal input[name=name]", "retrain_api")
    page.select_option(".modal select[name=schedule_type]", "api")
    page.click("#save-trigger")
    # an API trigger: its URL with the token and a ready curl command
    curl = page.wait_for_selector(".modal pre[aria-label='curl command']")
    text = curl.inner_text()
    assert re.search(r"curl -X POST http://127\.0\.0\.1:\d+/api/pipeline_schedules/\d+/pipeline_runs/\S{16,}", text)
    screenshot(page, "09-trigger-api")
    page.keyboard.press("Escape")
    row = page.wait_for_selector("table.triggers tr:has-text('retrain_api')")
    assert "active" in row.inner_text()
    row.query_selector("[data-action=toggle]").click()
    page.wait_for_selector("table.triggers tr:has-text('retrain_api') .badge[data-status=inactive]")

    page.click("nav a[data-nav='/backfills']")
    page.click("#new-backfill")
    page.select_option(".modal select[name=pipeline]", "unit_0_setup/example_pipeline")
    page.fill(".modal input[name=start]", "2024-01-01")
    page.fill(".modal input[name=end]", "2024-01-03")
    page.click("#create-backfill")
    page.wait_for_selector("table.data .progress")
    page.wait_for_selector("table.data >> text=/\\d+\\/[23] runs/")
    screenshot(page, "10-backfills")

    page.click("nav a[data-nav='/dashboards']")
    page.wait_for_selector("#runs-per-day .main-svg")
    screenshot(page, "11-dashboards")

    page.click("nav a[data-nav='/settings']")
    page.fill("input[name=secret_name]", "SMTP_PASSWORD")
    page.fill("input[name=secret_value]", "hunter2")
    page.click("#save-secret")
    page.wait_for_selector("table.data code:text('SMTP_PASSWORD')")
    assert "hunter2" not in page.content()
    page.click("#send-test-alert")
    page.wait_for_selector("text=Nothing to send: no channel is configured.")
    screenshot(page, "12-settings")


def test_login_with_server_token(tmp_path):
    root = copy_workspace(REPO / "mlops", tmp_path / "mlops")
    srv = UiServer(root, token="s3cret-token-for-tests", worker=False).start()
    try:
        with browser_page() as page:
            page.goto(srv.url + "/runs")
            page.wait_for_url("**/login?next=%2Fruns")
            page.fill("input[name=token]", "wrong")
            page.click("#login")
            page.wait_for_selector("text=Wrong token.")
            screenshot(page, "13-login")
            page.fill("input[name=token]", "s3cret-token-for-tests")
            page.click("#login")
            page.wait_for_url("**/runs")
            page.wait_for_selector("text=Runs appear here once a pipeline ran")
            assert not page.js_errors
    finally:
        srv.stop()


def test_run_once_with_runtime_variables(server, page):
    """Run @once → "With variables…": a dialog prefilled with the global variables (labelled
    inputs, Enter submits); the run is queued with the changed values and the run page shows them."""
    page.goto(server.url + "/pipelines/unit_0_setup/example_pipeline")
    page.wait_for_selector("#save-variables")
    page.click("#add-variable")
    page.fill(".var-row:last-child .var-key", "sample_size")
    page.fill(".var-row:last-child .var-value", "10")
    page.click("#save-variables")
    page.wait_for_selector("text=Saved: blocks get them in **kwargs")

    page.click("#run-with-variables")
    dialog = page.locator(".modal[aria-label='Run @once with variables']")
    field = dialog.get_by_label("sample_size")
    assert field.input_value() == "10"  # prefilled with the global variable
    assert field.evaluate("el => el === document.activeElement")  # keyboard: focus starts in the dialog
    field.fill("25")
    dialog.locator("#run-add-variable").click()
    page.keyboard.type("note")
    page.keyboard.press("Tab")
    page.keyboard.type("from the dialog")
    page.keyboard.press("Enter")  # submits the form
    page.wait_for_selector(".modal", state="detached")
    page.wait_for_selector(".run-panel[data-finished]", timeout=120_000)
    assert page.get_attribute(".run-panel", "data-finished") == "completed"

    page.click("text=Open run details")
    page.wait_for_selector("svg.gantt rect.bar")
    # the effective variables with their source: the run's values override the global one
    row = page.locator("table.vars-table tr[data-var=sample_size]")
    assert row.locator("td").all_inner_texts() == ["sample_size", "25", "runtime (this run)"]
    assert page.locator("table.vars-table tr[data-var=note] td").all_inner_texts() == ["note", '"from the dialog"', "runtime (this run)"]
    screenshot(page, "14-run-with-variables")

    # the plain click still runs with the global variables only
    page.go_back()
    page.wait_for_selector("#run-once")
    page.click("#run-once")
    page.wait_for_selector(".run-panel[data-finished]", timeout=120_000)
    page.click("text=Open run details")
    page.wait_for_selector("svg.gantt rect.bar")
    assert page.locator("table.vars-table tr[data-var=sample_size] td").all_inner_texts() == [
        "sample_size", "10", "pipeline (global variable)"]


def test_edit_and_delete_pipeline(server, page):
    """The pipeline page's Edit (name, description, tags) and Delete (after a confirmation)."""
    import json
    import urllib.request

    req = urllib.request.Request(server.url + "/api/projects/unit_0_setup/pipelines", method="POST",
                                 data=json.dumps({"uuid": "scratch_pipeline", "tags": ["old"]}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        assert r.status == 201
    folder = server.root / "unit_0_setup" / "pipelines" / "scratch_pipeline"
    page.goto(server.url + "/pipelines/unit_0_setup/scratch_pipeline")
    page.wait_for_selector("#edit-pipeline")
    page.click("#edit-pipeline")
    dialog = page.locator(".modal")
    assert dialog.get_by_label("Tags").input_value() == "old"
    dialog.get_by_label("Name").fill("Scratch work")
    dialog.get_by_label("Description").fill("A pipeline to throw away")
    dialog.get_by_label("Tags").fill("demo, ui")
    page.click("#save-pipeline")
    page.wait_for_selector(".page-head .subtitle:has-text('Scratch work')")
    assert "A pipeline to throw away" in page.inner_text(".page-head")
    assert page.locator(".page-head .tag").all_inner_texts() == ["demo", "ui"]
    meta = (folder / "metadata.yaml").read_text()
    assert "name: Scratch work" in meta and "- ui" in meta

    page.click("#delete-pipeline")
    page.wait_for_selector(".modal:has-text('Block code files stay')")
    page.keyboard.press("Escape")  # cancelled: nothing happens
    page.wait_for_selector(".modal", state="detached")
    assert folder.is_dir()
    page.click("#delete-pipeline")
    page.click("#confirm-delete-pipeline")
    page.wait_for_url("**/projects/unit_0_setup")
    assert not folder.exists()
    page.wait_for_selector("a.pipeline-link:text-is('example_pipeline')")
    assert page.locator("a.pipeline-link:text-is('scratch_pipeline')").count() == 0


FANOUT_MODELS = '''if 'data_loader' not in globals():
    from mage_ai.data_preparation.decorators import data_loader


@data_loader
def models(*args, **kwargs):
    names = [f'm{i}' for i in range(7)]
    return [names, [dict(block_uuid=n) for n in names]]
'''

FANOUT_TRAIN = '''if 'transformer' not in globals():
    from mage_ai.data_preparation.decorators import transformer


@transformer
def train(name, *args, **kwargs):
    return name.upper()
'''


def test_dynamic_clones_grouped_in_gantt_and_counted_in_graph(server, page):
    """A dynamic block's clones: one "train ×7" row in the run's Gantt (collapsed above 5
    clones, expanded with the keyboard) and "×7" on the child block in the pipeline graph."""
    import json
    import time
    import urllib.request

    def call(method, path, body=None):
        req = urllib.request.Request(server.url + path, method=method, headers={"Content-Type": "application/json"},
                                     data=json.dumps(body).encode() if body is not None else None)
        with urllib.request.urlopen(req) as r:
            return json.loads(r.read() or b"null")

    base = "/api/projects/unit_0_setup/pipelines/fanout"
    call("POST", "/api/projects/unit_0_setup/pipelines", {"uuid": "fanout"})
    call("POST", base + "/blocks", {"uuid": "fan_models", "type": "data_loader", "code": FANOUT_MODELS,
                                    "configuration": {"dynamic": True}})
    call("POST", base + "/blocks", {"uuid": "fan_train", "type": "transformer", "code": FANOUT_TRAIN,
                                    "upstream_blocks": ["fan_models"]})
    run = call("POST", "/api/pipelines/unit_0_setup/fanout/runs", {"variables": {}})
    deadline = time.time() + 120
    while run["status"] not in ("completed", "failed", "cancelled") and time.time() < deadline:
        time.sleep(0.3)
        run = call("GET", f"/api/runs/{run['id']}")
    assert run["status"] == "completed", run

    page.goto(f"{server.url}/runs/{run['id']}")
    group = page.wait_for_selector("svg.gantt [data-group=fan_train]")
    assert group.get_attribute("data-clones") == "7" and "×7" in group.text_content()
    assert group.get_attribute("aria-expanded") == "false"  # more than 5 clones: collapsed
    assert page.locator("svg.gantt .clone-label").count() == 0
    assert page.locator("svg.gantt [data-group-bar=fan_train]").count() == 1
    group.focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("svg.gantt [data-group=fan_train][aria-expanded=true]")
    assert page.locator("svg.gantt .clone-label").count() == 7
    assert "fan_train:m3" in page.locator("svg.gantt .clone-label").all_text_contents()
    screenshot(page, "15-run-dynamic-clones")

    page.goto(server.url + "/pipelines/unit_0_setup/fanout")
    node = page.wait_for_selector('svg.dag .node[data-block=fan_train][data-clones="7"]')
    assert "×7" in node.text_content()
    assert "7 dynamic clones in the last run" in node.get_attribute("aria-label")
    assert page.get_attribute("svg.dag .node[data-block=fan_models]", "data-clones") is None


def test_dashboards_show_mlflow_training_metrics(server, page, monkeypatch):
    """Training runs in the workspace's MLflow store (recorded like the course's training
    blocks do, with blockyard.ml.tracking) show on the Dashboards page: RMSE per model over
    time and runs per model, drawn with Plotly."""
    import json
    import time
    import urllib.request

    import mlflow

    from blockyard.ml import tracking

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    from mlflow.tracking._tracking_service import utils as mlflow_uri

    previous_uri = mlflow_uri._tracking_uri  # None unless set: get_tracking_uri() would resolve a default
    linreg, xgb = "sklearn.linear_model.LinearRegression", "xgboost.Booster"
    try:
        for model, rmse in ((linreg, 6.0), (linreg, 5.9), (xgb, 5.1)):
            tracking.track_experiment(
                run_name=model.rsplit(".", 1)[-1], model_class=model, kind="final",
                params={"fit_intercept": True}, metrics={"rmse": rmse},
                context={"pipeline_uuid": "sklearn_training", "block_uuid": "train", "project_uuid": "unit_2_training"},
                workspace=server.root, experiment_name=tracking.EXPERIMENT_NAME)
            time.sleep(0.05)  # runs at different times
    finally:
        # setup_mlflow sets MLflow's process-wide URI (and MLFLOW_TRACKING_URI, which the
        # server would then read): put both back
        mlflow.set_tracking_uri(previous_uri)
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    with urllib.request.urlopen(server.url + "/ui-api/mlflow") as r:
        m = json.loads(r.read())
    assert m["available"] is True, m
    runs = [r for r in m["runs"] if r["experiment"] == "nyc-taxi-experiment"]
    over_time: dict[str, list] = {}
    for r in sorted(runs, key=lambda r: r["start_time"]):
        over_time.setdefault(r["model"], []).append(r["rmse"])
    assert over_time == {linreg: [6.0, 5.9], xgb: [5.1]}  # RMSE per model over time
    assert {k: len(v) for k, v in over_time.items()} == {linreg: 2, xgb: 1}  # runs per model
    times = [r["start_time"] for r in runs]
    assert len(set(times)) == 3
    assert all(r["kind"] == "final" and r["pipeline"] == "sklearn_training" for r in runs)

    page.goto(server.url + "/dashboards")
    page.wait_for_selector("#mlflow-rmse.js-plotly-plot .main-svg")
    page.wait_for_selector("#mlflow-runs.js-plotly-plot .main-svg")
    rmse_traces = page.evaluate("() => document.getElementById('mlflow-rmse').data.map(t => [t.name, Array.from(t.y)])")
    assert sorted(rmse_traces) == [[linreg, [6.0, 5.9]], [xgb, [5.1]]]
    legend = page.locator("#mlflow-rmse .legend .legendtext").all_text_contents()
    assert sorted(legend) == [linreg, xgb]
    bars = page.evaluate("() => { const t = document.getElementById('mlflow-runs').data[0];"
                         " return Object.fromEntries(Array.from(t.y).map((n, i) => [n, t.x[i]])); }")
    assert bars == {linreg: 2, xgb: 1}
    # the legend is readable: not drawn over the x axis' (rotated) date labels
    legend_box = page.locator("#mlflow-rmse .legend").bounding_box()
    checked = 0
    for tick in page.locator("#mlflow-rmse .xtick text").all():
        box = tick.bounding_box()  # None for a tick Plotly left empty or hidden
        if box is None:
            continue
        checked += 1
        assert box["y"] >= legend_box["y"] + legend_box["height"] or box["y"] + box["height"] <= legend_box["y"]
    assert checked >= 1, "no visible x-axis label to check the legend against"
    labels = page.locator("#mlflow-runs .ytick text").all_text_contents()
    assert linreg in labels and xgb in labels
    assert page.locator("#mlflow-rmse .scatterlayer .trace").count() == 2
    page.locator("#mlflow-rmse").scroll_into_view_if_needed()
    screenshot(page, "17-dashboards-mlflow")


def test_course_chart_widgets_render_with_plotly(server, page):
    """After a run of unit_1_data_preparation/data_preparation, its chart widgets draw on the
    pipeline page: a histogram, a horizontal bar chart, a time series and a table."""
    import json
    import time
    import urllib.request

    def call(method, path, body=None):
        req = urllib.request.Request(server.url + path, method=method, headers={"Content-Type": "application/json"},
                                     data=json.dumps(body).encode() if body is not None else None)
        with urllib.request.urlopen(req) as r:
            return json.loads(r.read() or b"null")

    run = call("POST", "/api/pipelines/unit_1_data_preparation/data_preparation/runs", {"variables": {}})
    deadline = time.time() + 120
    while run["status"] not in ("completed", "failed", "cancelled") and time.time() < deadline:
        time.sleep(0.3)
        run = call("GET", f"/api/runs/{run['id']}")
    assert run["status"] == "completed", run

    page.goto(server.url + "/pipelines/unit_1_data_preparation/data_preparation")
    expected = {
        "prepare_histogram_u9": "histogram",
        "missing_values_for_ingest": "bar chart",
        "ingest_time_series_bar_chart_d1": "time series bar chart",
        "summary_overview_for_ingest": "table",
    }
    for uuid, kind in expected.items():
        plot = f'.chart-box[data-chart="{uuid}"] .chart-plot'
        page.wait_for_selector(f'{plot}.js-plotly-plot[data-chart-type="{kind}"] .main-svg', timeout=60_000)
        assert page.locator(f"{plot} .main-svg").first.is_visible()
    hist = '.chart-box[data-chart="prepare_histogram_u9"] .chart-plot'
    assert page.locator(f"{hist} .barlayer .point").count() > 1
    missing = '.chart-box[data-chart="missing_values_for_ingest"] .chart-plot'
    assert page.evaluate(f"() => document.querySelector('{missing}').data[0].orientation") == "h"
    assert page.locator(f"{missing} .barlayer .point").count() >= 1
    series = '.chart-box[data-chart="ingest_time_series_bar_chart_d1"] .chart-plot'
    assert page.locator(f"{series} .barlayer .point").count() > 1
    table = '.chart-box[data-chart="summary_overview_for_ingest"] .chart-plot'
    page.wait_for_selector(f"{table} .table .cell-text")
    assert page.locator(f"{table} .table .cell-text").count() > 2
    # the whole Charts section (all the widgets) in one picture
    page.set_viewport_size({"width": 1280, "height": 2400})
    page.wait_for_timeout(300)  # Plotly's responsive resize
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator(".charts-section").screenshot(path=str(SCREENSHOTS / "16-course-charts.png"))
