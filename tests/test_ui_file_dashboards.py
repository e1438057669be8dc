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
