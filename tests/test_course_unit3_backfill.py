"""Unit 3 of the course end to end on the mirror data: the `monitoring` pipeline backfilled
over the 14 months 2023-01 … 2024-02, once with `blockyard backfill` (CLI) and once
through the UI in real headless Chromium (project selector, New backfill, the monitoring
dashboard's month timeline, a run's Evidently drift report), with screenshots under
test-artifacts/screenshots/.

The champion is unit 2's LinearRegression trained the cheapest faithful way: fitted on
January 2024 with unit 1's helpers, its validation RMSE on February 2024 logged to
MLflow and registered as `nyc-taxi-duration@champion`, as `sklearn_training` does."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mirror import MIRROR
from ui_support import REPO, SCREENSHOTS, UiServer, browser_page, copy_workspace, screenshot, skip_reason

BIN = Path(sys.executable).parent / "blockyard"
MODEL = "nyc-taxi-duration"
MONTHS = [f"2023-{m:02d}" for m in range(1, 13)] + ["2024-01", "2024-02"]
# Heavy libraries imported once in the run forkserver, not once per monthly run.
PRELOAD = "blockyard.ml.preload"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not all((MIRROR / f"taxi/green/green_tripdata_{m}.parquet").is_file() for m in MONTHS),
        reason="course data mirror (green taxi 2023-01 … 2024-02) not present",
    ),
    pytest.mark.skipif(importlib.util.find_spec("evidently") is None, reason="evidently is not installed"),
]


@pytest.fixture(scope="module")
def unit3(tmp_path_factory):
    """A copy of the course workspace with a champion in its MLflow registry."""
    from sklearn.linear_model import LinearRegression

    from blockyard.datasets import load_green_taxi
    from blockyard.session import reset_sessions
    from blockyard.ml.metrics import rmse
    from blockyard.ml.registry import promote_if_better
    from blockyard.ml.tracking import log_final_model
    from mlops.utils.data_preparation.cleaning import clean
    from mlops.utils.data_preparation.encoders import vectorize_features
    from mlops.utils.data_preparation.feature_engineering import combine_features
    from mlops.utils.data_preparation.feature_selector import select_features

    root = copy_workspace(REPO / "mlops", tmp_path_factory.mktemp("unit3") / "mlops")
    mp = pytest.MonkeyPatch()
    for name in ("BLOCKYARD_HOME", "BLOCKYARD_DATABASE_URL", "BLOCKYARD_STORE_URL", "MLFLOW_TRACKING_URI"):
        mp.delenv(name, raising=False)
    mp.setenv("BLOCKYARD_DATA_MIRROR", str(MIRROR))
    mp.setenv("BLOCKYARD_WORKSPACE", str(root))
    mp.setenv("BLOCKYARD_RUN_PRELOAD", PRELOAD)
    reset_sessions()
    train, val = (combine_features(clean(load_green_taxi([m]))) for m in ("2024-01", "2024-02"))
    X_train, X_val, dv = vectorize_features(select_features(train), select_features(val))
    model = LinearRegression().fit(X_train, train["duration"])
    score = rmse(val["duration"], model.predict(X_val))
    final = log_final_model(model, dv, {"rmse": score}, {}, workspace=root)
    assert promote_if_better(final.model_uri, score, run_id=final.run_id, workspace=root).promoted
    yield root, score, rmse(train["duration"], model.predict(X_train))  # + the model on its own month
    reset_sessions()
    mp.undo()


def _env(root: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BLOCKYARD_", "MLFLOW_"))}
    env.update(BLOCKYARD_WORKSPACE=str(root), BLOCKYARD_DATA_MIRROR=str(MIRROR), BLOCKYARD_RUN_PRELOAD=PRELOAD)
    return env


def _latest_by_month(root: Path) -> dict:
    from blockyard.ml.monitoring_store import MonitoringStore

    checks = MonitoringStore.for_workspace(root).checks(MODEL)
    out: dict = {}
    for check in sorted(checks, key=lambda c: c["id"]):
        out[check["period"]] = check["summary"]
    return out


def test_cli_backfill_of_the_14_months(unit3, tmp_path):
    root, champion_rmse, training_rmse = unit3
    assert champion_rmse == pytest.approx(5.995, abs=0.01)  # README: LinearRegression RMSE 5.995
    proc = subprocess.run(
        [str(BIN), "backfill", "unit_3_observability/monitoring", "--start", "2023-01-01", "--end", "2024-02-01",
         "--interval", "month"],
        cwd=root, env=_env(root), capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "14 run(s) of unit_3_observability/monitoring queued" in proc.stdout
    assert "completed — 14 completed, 0 failed" in proc.stdout

    figures = _latest_by_month(root)
    # kept for the README's table of expected figures (test-artifacts/ is not committed)
    table = {m: {"drift_share": f["drift_share"], "PULocationID": f["features"]["PULocationID"]["score"],
                 "prediction_drift": (f["prediction_drift"] or {}).get("score"), "rmse": f["rmse"],
                 "baseline_rmse": f["baseline"].get("rmse"), "missing_share": f["missing_share"],
                 "alerts": {a["rule"]: a["transition"] for a in f["alerts"]}} for m, f in figures.items()}
    (REPO / "test-artifacts").mkdir(exist_ok=True)
    (REPO / "test-artifacts" / "unit3-monitoring-figures.json").write_text(json.dumps(table, indent=1, sort_keys=True))
    assert sorted(figures) == MONTHS
    feb, jan = figures["2024-02"], figures["2024-01"]
    # The README's table: the validation month reproduces the baseline, the training
    # month is better, and September 2023 is the one month above 1.2 x baseline.
    assert feb["rmse"] == pytest.approx(champion_rmse, rel=1e-6) and feb["baseline"]["rmse"] == pytest.approx(champion_rmse)
    # the training month reproduces the model's RMSE on its training set (README: 4.85)
    assert jan["rmse"] == pytest.approx(training_rmse, rel=1e-6) and jan["drift_share"] == 0.0
    assert jan["rmse"] < feb["rmse"]
    above = [m for m in MONTHS if figures[m]["rmse"] > 1.2 * champion_rmse]
    assert above == ["2023-09"], {m: round(figures[m]["rmse"], 3) for m in MONTHS}
    drifted = [m for m in MONTHS if figures[m]["drift_share"] > 0]
    assert drifted == ["2023-07", "2023-08", "2023-09"], {m: figures[m]["drift_share"] for m in MONTHS}
    assert all(figures[m]["features"]["PULocationID"]["drifted"] for m in drifted)
    # `rmse above baseline` fires once (for 2023-09), whatever order the runs ended in: the
    # decisions are in check_drift's outputs, read as a dashboard's `block` data source does
    from blockyard.charts.dashboard_sources import block_outputs

    outputs = block_outputs(root, {"pipeline_uuid": "unit_3_observability/monitoring", "block_uuid": "check_drift",
                                   "partitions": 14}, {})
    assert sorted(o["period"] for o in outputs) == MONTHS
    fired = sorted((o["period"], a["rule"]) for o in outputs for a in o["alerts"] if a["transition"] == "fired")
    assert fired == [("2023-09", "rmse above baseline")], fired
    recovered = [(o["period"], a["rule"]) for o in outputs for a in o["alerts"] if a["transition"] == "recovered"]
    assert len(recovered) == 1 and recovered[0][1] == "rmse above baseline", recovered

    out = tmp_path / "monitoring.png"
    dash = subprocess.run([str(BIN), "dashboard", "monitoring", "-o", str(out)], cwd=root, env=_env(root),
                          capture_output=True, text=True, timeout=300)
    assert dash.returncode == 0 and "(3 charts, 0 failed)" in dash.stdout, dash.stdout + dash.stderr
    assert out.stat().st_size > 10_000


@pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")
def test_ui_backfill_dashboard_and_drift_report(unit3):
    import httpx

    root, champion_rmse, _ = unit3
    srv = UiServer(root, workers=2).start()
    try:
        before = {b["id"] for b in httpx.get(srv.url + "/api/backfills").json()}
        with browser_page(viewport=(1400, 900)) as page:
            page.goto(srv.url + "/")
            page.select_option("#project-select", "unit_3_observability")
            page.wait_for_url("**/projects/unit_3_observability")
            page.click("nav a[data-nav='/backfills']")
            page.click("#new-backfill")
            page.select_option(".modal select[name=pipeline]", "unit_3_observability/monitoring")
            page.fill(".modal input[name=start]", "2023-01-01")
            page.fill(".modal input[name=end]", "2024-02-01")
            page.select_option(".modal select[name=interval]", "month")
            page.click("#create-backfill")
            page.wait_for_selector("table.data .progress")
            [backfill] = [b for b in httpx.get(srv.url + "/api/backfills").json() if b["id"] not in before]
            assert backfill["total_runs"] == 14 and backfill["pipeline_uuid"] == "monitoring"
            # the page refreshes itself every 3 s; wait for the 14 runs to finish
            page.wait_for_function(
                """(id) => [...document.querySelectorAll('table.data tr')].some((tr) =>
                     tr.querySelector(`a[href="/runs?backfill_id=${id}"]`) && tr.innerText.includes('14/14 runs')
                     && tr.querySelector('[data-status="completed"]'))""",
                arg=backfill["id"], timeout=900_000, polling=1000)
            done = httpx.get(f"{srv.url}/api/backfills/{backfill['id']}").json()
            assert done["status"] == "completed" and done["completed"] == 14, done
            screenshot(page, "unit3-backfill-completed")

            # the monitoring dashboard: one point per month, drift share and RMSE vs baseline
            page.goto(srv.url + "/dashboards/files")
            page.click("#file-dashboards a:text('monitoring')")
            page.wait_for_url("**/dashboards/files/monitoring")
            page.wait_for_selector('[data-uuid="rmse_vs_baseline"] .main-svg')
            page.wait_for_selector('[data-uuid="feature_drift_by_month"] .main-svg')
            traces = page.evaluate("""() => Object.fromEntries(['drift_share_by_month', 'rmse_vs_baseline'].map((u) =>
                [u, document.querySelector(`[data-uuid="${u}"]`).data.map((t) => ({name: t.name, x: t.x, y: t.y}))]))""")
            [share] = traces["drift_share_by_month"]
            assert share["x"] == MONTHS and all(0 <= v <= 1 for v in share["y"])
            assert [share["y"][MONTHS.index(m)] > 0 for m in ("2023-06", "2023-07", "2023-09")] == [False, True, True]
            rmse, baseline = traces["rmse_vs_baseline"]
            assert rmse["x"] == MONTHS and len(rmse["y"]) == 14
            assert rmse["y"][MONTHS.index("2024-02")] == pytest.approx(champion_rmse, rel=1e-6)
            assert baseline["y"] == [pytest.approx(champion_rmse)] * 14
            screenshot(page, "unit3-monitoring-dashboard")
            assert not page.js_errors, page.js_errors

            # a run of the backfill, its monitoring figures and its Evidently drift report
            page.goto(f"{srv.url}/runs?backfill_id={backfill['id']}")
            page.wait_for_selector("table a[href^='/runs/']")
            runs = httpx.get(srv.url + "/api/runs", params={"backfill_id": backfill["id"], "limit": 50}).json()["runs"]
            september = next(r for r in runs if str(r["execution_date"]).startswith("2023-09"))
            page.click(f"a[href='/runs/{september['id']}']")
            link = page.wait_for_selector(".monitoring-checks a.drift-report")
            assert "2023-09" in page.inner_text(".monitoring-checks") and f"{MODEL} v1" in page.inner_text(".monitoring-checks")
            screenshot(page, "unit3-run-monitoring")
            with page.expect_popup() as popup:
                link.click()
            report = popup.value
            report.wait_for_load_state()
            assert "/api/monitoring/checks/" in report.url and "PULocationID" in report.content()
            report.screenshot(path=str(SCREENSHOTS / "unit3-drift-report.png"))
    finally:
        srv.stop()
