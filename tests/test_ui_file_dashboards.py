"""The file dashboards page (/dashboards/files/<name>) in real headless Chromium: the
course's monitoring dashboard drawn from stored monitoring figures."""
from __future__ import annotations

import pytest

from ui_support import REPO, UiServer, browser_page, copy_workspace, screenshot, skip_reason

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")


def test_monitoring_dashboard_page(tmp_path, monkeypatch):
    from blockyard.db import Database
    from blockyard.ml.monitoring import MonitoringResult
    from blockyard.ml.monitoring_store import MonitoringStore

    monkeypatch.delenv("BLOCKYARD_HOME", raising=False)
    monkeypatch.delenv("BLOCKYARD_DATABASE_URL", raising=False)
    root = copy_workspace(REPO / "mlops", tmp_path / "mlops")
    (root / ".blockyard").mkdir()
    db = Database(f"sqlite:///{root / '.blockyard' / 'blockyard.db'}")
    db.migrate()
    for period, share, rmse in [("2023-01", 0.0, 6.1), ("2023-02", 0.25, 6.4), ("2023-03", 0.5, 7.2)]:
        MonitoringStore(db).save(MonitoringResult(
            model="nyc-taxi-duration", period=period, rows=60_000, drift_share=share, drifted_features=int(share * 4),
            dataset_drift=share >= 0.5, prediction_drift=None, missing_share=0.0, missing={}, rmse=rmse, mae=4.0,
            features={"PULocationID": {"score": 0.05 + share / 4, "method": "jensenshannon", "threshold": 0.1,
                                       "drifted": share > 0}},
            baseline={"rmse": 6.0}, sampled={},
        ))
    db.close()
    srv = UiServer(root, worker=False).start()
    try:
        with browser_page() as page:
            page.goto(srv.url + "/dashboards/files")
            page.click("#file-dashboards a:text('monitoring')")
            page.wait_for_url("**/dashboards/files/monitoring")
            page.wait_for_selector('[data-uuid="feature_drift_by_month"] .main-svg')
            for uuid in ("drift_share_by_month", "rmse_vs_baseline", "feature_drift_by_month"):
                assert page.locator(f'[data-uuid="{uuid}"] .main-svg').count() >= 1, uuid
            text = page.inner_text("#file-dashboard")
            assert "Share of drifted features by month" in text and "RMSE by month" in text
            screenshot(page, "dashboard-monitoring")
            assert "2023-03" in page.inner_html('[data-uuid="drift_share_by_month"]')
            assert not page.js_errors, page.js_errors
            page.goto(srv.url + "/dashboards/files/nope")
            page.wait_for_selector("#file-dashboard .error, #file-dashboard [class*=error]")
            assert "no dashboard 'nope'" in page.inner_text("#file-dashboard")
    finally:
        srv.stop()


def test_drift_report_from_the_run_and_alert_rules_on_the_pipeline(tmp_path, monkeypatch):
    """A monitoring run's page links its Evidently report; the pipeline page lists the
    alert rules with their last state and test-sends one to a real local webhook."""
    import sqlalchemy as sa
    import yaml

    from blockyard.db import Database
    from blockyard.db.schema import monitoring_checks
    from blockyard.ml.monitoring import MonitoringResult
    from blockyard.ml.monitoring_store import MonitoringStore
    from blockyard.notify.rules import evaluate_rules
    from test_notify import HookServer

    monkeypatch.delenv("BLOCKYARD_HOME", raising=False)
    monkeypatch.delenv("BLOCKYARD_DATABASE_URL", raising=False)
    root = copy_workspace(REPO / "mlops", tmp_path / "mlops")
    hooks = HookServer()
    meta_path = root / "unit_3_observability" / "metadata.yaml"
    meta = yaml.safe_load(meta_path.read_text())
    meta["notification_config"]["webhook_config"] = {"url": f"{hooks.url}/hook"}
    meta_path.write_text(yaml.safe_dump(meta, sort_keys=False))
    reports = root / ".blockyard" / "monitoring" / "nyc-taxi-duration" / "reports"
    reports.mkdir(parents=True)
    report = reports / "2023-03-test.html"
    report.write_text("<!doctype html><html><body><h1>Data drift report 2023-03</h1></body></html>")
    db = Database(f"sqlite:///{root / '.blockyard' / 'blockyard.db'}")
    db.migrate()
    run_id = db.create_pipeline_run("unit_3_observability", "monitoring", variables={"month": "2023-03"})
    db.finish_pipeline_run(run_id, "completed")
    result = MonitoringResult(
        model="nyc-taxi-duration", period="2023-03", rows=60_000, drift_share=0.75, drifted_features=3,
        dataset_drift=True, prediction_drift=None, missing_share=0.0, missing={}, rmse=8.0, mae=5.0,
        features={"PULocationID": {"score": 0.3, "method": "jensenshannon", "threshold": 0.1, "drifted": True}},
        baseline={"rmse": 6.0}, sampled={}, model_version="3", report_path=str(report),
    )
    check_id = MonitoringStore(db).save(result)
    with db.engine.begin() as conn:  # as if the run's check_drift block had made it
        conn.execute(sa.update(monitoring_checks).where(monitoring_checks.c.id == check_id).values(
            project="unit_3_observability", pipeline_uuid="monitoring", pipeline_run_id=run_id))
    decisions = {d.rule: d.transition for d in evaluate_rules(
        result, project="unit_3_observability", pipeline="monitoring", run_id=run_id, workspace=root, db=db, wait=True)}
    assert decisions == {"dataset drift": "fired", "rmse above baseline": "fired", "missing values": "ok"}
    db.close()
    hooks.requests.clear()
    srv = UiServer(root, worker=False).start()
    try:
        with browser_page() as page:
            page.goto(f"{srv.url}/runs/{run_id}")
            link = page.wait_for_selector(".monitoring-checks a.drift-report")
            assert link.get_attribute("href") == f"/api/monitoring/checks/{check_id}/report"
            text = page.inner_text(".monitoring-checks")
            assert "nyc-taxi-duration v3" in text and "2023-03" in text and "0.75" in text and "8.000" in text
            screenshot(page, "run-monitoring-drift-report")
            with page.expect_popup() as popup:
                link.click()
            report_page = popup.value
            report_page.wait_for_selector("h1")
            assert report_page.inner_text("h1") == "Data drift report 2023-03"

            page.goto(f"{srv.url}/pipelines/unit_3_observability/monitoring")
            page.wait_for_selector(".alert-rules li.alert-rule")
            rows = {name: page.inner_text(f'li.alert-rule[data-rule="{name}"]')
                    for name in ("dataset drift", "rmse above baseline", "missing values")}
            assert "firing" in rows["dataset drift"] and "0.750" in rows["dataset drift"]
            assert "firing" in rows["rmse above baseline"] and "rmse > 1.2 * baseline_rmse" in rows["rmse above baseline"]
            assert "ok" in rows["missing values"]
            page.locator(".alert-rules-section").scroll_into_view_if_needed()
            screenshot(page, "pipeline-alert-rules")
            page.click('button[data-rule="rmse above baseline"]')
            page.wait_for_selector(".alert-rules-section [role=status] .ok")
            assert "sent" in page.inner_text(".alert-rules-section [role=status]")
            [sent] = hooks.by_path("/hook")
            assert sent["json"]["event"] == "monitoring_test" and "rmse above baseline" in sent["json"]["title"]
            assert not page.js_errors, page.js_errors
    finally:
        srv.stop()
        hooks.close()


def test_overview_and_a_custom_image_chart_in_the_ui(tmp_path, monkeypatch):
    """Mage's overview (five charts from the MLflow runs) and a `custom` chart's picture."""
    import textwrap

    import yaml

    from blockyard.ml.tracking import track_experiment

    monkeypatch.delenv("BLOCKYARD_HOME", raising=False)
    monkeypatch.delenv("BLOCKYARD_DATABASE_URL", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = copy_workspace(REPO / "mlops", tmp_path / "mlops")
    for model_class, rmse in [("xgboost.Booster", 5.2), ("xgboost.Booster", 5.6), ("sklearn.linear_model.Lasso", 9.0)]:
        track_experiment(metrics={"rmse": rmse, "mse": rmse ** 2}, model_class=model_class, workspace=root)
    pics = root / "presenters" / "pics"
    (pics / "charts").mkdir(parents=True)
    (pics / "dashboard").mkdir()
    (pics / "dashboard" / "block_layout.yaml").write_text(yaml.safe_dump({"blocks": {"picture": {
        "type": "chart", "name": "A picture", "configuration": {"chart_type": "custom"}, "data_source": {"type": "chart_code"}}}}))
    (pics / "charts" / "picture.py").write_text(textwrap.dedent("""
        @render(render_type='png')
        def draw(_, n='3', **kwargs):
            from matplotlib.figure import Figure
            fig = Figure(figsize=(3, 2))
            fig.add_subplot().bar(range(int(n)), range(int(n)))
            return fig
    """))
    srv = UiServer(root, worker=False).start()
    try:
        with browser_page() as page:
            page.goto(srv.url + "/dashboards/files/overview")
            page.wait_for_selector('[data-uuid="runs_by_model__pie_chart_"] .main-svg', timeout=90_000)  # MLflow starts up
            for uuid in ("training_metrics__rmse_", "time_series__mse_", "total_runs_by_model",
                         "distribution_of_performance_metrics", "runs_by_model__pie_chart_"):
                assert page.locator(f'[data-uuid="{uuid}"] .main-svg').count() >= 1, uuid
            assert "Booster" in page.inner_html('[data-uuid="runs_by_model__pie_chart_"]')
            screenshot(page, "dashboard-overview")
            page.goto(srv.url + "/dashboards/files/pics?n=5")
            img = page.wait_for_selector('[data-uuid="picture"] img.chart-image')
            assert img.get_attribute("src").startswith("data:image/png;base64,")
            assert page.evaluate("document.querySelector('img.chart-image').naturalWidth") > 100
            assert not page.js_errors, page.js_errors
    finally:
        srv.stop()
