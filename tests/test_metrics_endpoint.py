"""GET /metrics of a real `blockyard start` process, parsed with prometheus_client's
parser, and the monitoring-check endpoints (/api/monitoring)."""
from __future__ import annotations

import signal

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from blockyard.db import Database  # noqa: E402
from blockyard.ml.monitoring import MonitoringResult  # noqa: E402
from blockyard.ml.monitoring_store import MonitoringStore  # noqa: E402
from test_server_support import ServerProcess, make_workspace, wait_for_run  # noqa: E402


def samples(text: str) -> dict:
    """{(sample name, frozenset(labels)): value} of a Prometheus text exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def check_result(model: str, period: str, drift_share: float, rmse: float) -> MonitoringResult:
    return MonitoringResult(
        model=model, period=period, rows=1000, drift_share=drift_share, drifted_features=1, dataset_drift=False,
        features={"trip_distance": {"score": 0.2, "method": "wasserstein", "threshold": 0.1, "drifted": True}},
        prediction_drift={"score": 0.05, "method": "wasserstein", "threshold": 0.1, "drifted": False},
        missing_share=0.0, missing={}, rmse=rmse, mae=1.0, baseline={"rmse": 5.0}, sampled={},
    )


def test_metrics_scraped_from_a_real_server(tmp_path):
    space = make_workspace(tmp_path)
    server = ServerProcess(space.root, "--workers", "1")
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=30) as c:
            ok = c.post(f"/api/pipelines/{space.project}/pipe/runs", json={}).json()["id"]
            bad = c.post(f"/api/pipelines/{space.project}/pipe/runs", json={"variables": {"fail": True}}).json()["id"]
            assert wait_for_run(c, ok)["status"] == "completed"
            assert wait_for_run(c, bad)["status"] == "failed"

            # two checks of one model (the newest is reported) and one of another
            db = Database(f"sqlite:///{space.root / '.blockyard' / 'blockyard.db'}")
            store = MonitoringStore(db)
            report = space.root / ".blockyard" / "monitoring" / "taxi" / "reports" / "2023-03.html"
            report.parent.mkdir(parents=True)
            report.write_text("<html>drift report</html>")
            store.save(check_result("taxi", "2023-02", 0.25, 5.5))
            newest = check_result("taxi", "2023-03", 0.75, 6.5)
            newest.report_path = str(report)
            store.save(newest)
            store.save(check_result("other", "2024-01", 0.0, 3.0))
            db.close()

            response = c.get("/metrics")
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/plain")
            got = samples(response.text)
            p = space.project
            assert got[("blockyard_pipeline_runs", frozenset({"project": p, "pipeline": "pipe", "status": "completed"}.items()))] == 1
            assert got[("blockyard_pipeline_runs", frozenset({"project": p, "pipeline": "pipe", "status": "failed"}.items()))] == 1
            labels = frozenset({"project": p, "pipeline": "pipe"}.items())
            # the completed run ran 3 blocks; the failed one at least its loader
            assert got[("blockyard_block_duration_seconds_count", labels)] >= 4
            inf = got[("blockyard_block_duration_seconds_bucket", labels | {("le", "+Inf")})]
            assert inf == got[("blockyard_block_duration_seconds_count", labels)]
            assert got[("blockyard_block_duration_seconds_bucket", labels | {("le", "0.01")})] <= inf
            assert got[("blockyard_queue_depth", frozenset())] == 0
            assert got[("blockyard_workers", frozenset())] == 1
            assert got[("blockyard_scheduler_lag_seconds", frozenset())] == 0
            def fig(model, metric):
                return got[("blockyard_monitoring", frozenset({"model": model, "metric": metric}.items()))]

            assert fig("taxi", "drift_share") == 0.75 and fig("taxi", "rmse") == 6.5
            assert fig("taxi", "baseline_rmse") == 5.0 and fig("other", "drift_share") == 0.0

            checks = c.get("/api/monitoring/checks", params={"model": "taxi"}).json()["checks"]
            assert [k["period"] for k in checks] == ["2023-03", "2023-02"]
            assert checks[0]["report_url"] == f"/api/monitoring/checks/{newest.check_id}/report"
            assert checks[1]["report_url"] is None and "report_path" not in checks[0]
            html = c.get(checks[0]["report_url"])
            assert html.status_code == 200 and html.text == "<html>drift report</html>"
            assert c.get(f"/api/monitoring/checks/{checks[1]['id']}/report").status_code == 404
            assert c.get("/api/monitoring/checks/999999/report").status_code == 404
            assert c.get("/api/monitoring/checks/abc/report").status_code == 422
            points = c.get("/api/monitoring/series", params={"model": "taxi", "metric": "drift_share"}).json()["points"]
            assert [(x["period"], x["value"]) for x in points] == [("2023-02", 0.25), ("2023-03", 0.75)]
    finally:
        code = server.stop(signal.SIGTERM)
    assert code == 0, server.output()


def test_metrics_need_the_token_when_the_server_has_one(tmp_path):
    space = make_workspace(tmp_path)
    server = ServerProcess(space.root, "--role", "web", env={"BLOCKYARD_API_TOKEN": "tok-456"})
    try:
        server.wait_ready()
        assert httpx.get(server.url + "/metrics").status_code == 401
        ok = httpx.get(server.url + "/metrics", headers={"Authorization": "Bearer tok-456"})
        assert ok.status_code == 200 and "blockyard_queue_depth 0.0" in ok.text
    finally:
        server.stop()
