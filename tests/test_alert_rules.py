"""Alert rules on monitoring figures (blockyard.notify.rules): parsing, one alert per
episode, recovery notices, real SMTP (aiosmtpd) and real local HTTP servers, an
unreachable and a slow server."""
from __future__ import annotations

import json
import logging
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from blockyard.db import Database
from blockyard.errors import ProjectError
from blockyard.ml.monitoring import MonitoringResult
from blockyard.ml.monitoring_store import MonitoringStore
from blockyard.notify.rules import evaluate_rules, parse_rules

from test_notify import HookServer, free_port, smtp_plain  # noqa: F401  (fixture)
from wsbuilder import block, write_pipeline

PROJECT, PIPELINE = "proj", "monitoring"


def result(model: str, period: str, *, drift_share: float, rmse: float, baseline_rmse: float = 5.0) -> MonitoringResult:
    drifted = round(drift_share * 4)
    features = {
        name: {"score": 0.3 if i < drifted else 0.01, "method": "wasserstein", "threshold": 0.1, "drifted": i < drifted}
        for i, name in enumerate(["trip_distance", "passenger_count", "PULocationID", "DOLocationID"])
    }
    return MonitoringResult(
        model=model, period=period, rows=60_000, drift_share=drift_share, drifted_features=drifted,
        dataset_drift=drift_share >= 0.5, features=features,
        prediction_drift={"score": 0.02, "method": "wasserstein", "threshold": 0.1, "drifted": False},
        missing_share=0.01, missing={"passenger_count": 0.04}, rmse=rmse, mae=rmse * 0.7,
        baseline={"rmse": baseline_rmse}, sampled={}, model_version="2",
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def env(request, tmp_path, monkeypatch):
    monkeypatch.setenv("BLOCKYARD_BASE_URL", "https://blockyard.example.com")
    monkeypatch.delenv("BLOCKYARD_HOME", raising=False)
    root = tmp_path / "ws"
    write_pipeline(root, PROJECT, PIPELINE, [block("load", "x = 1\n")])
    url = f"sqlite:///{tmp_path / 'h.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_clean_url")
    db = Database(url)
    db.migrate()
    yield type("Env", (), {"root": root, "db": db, "store": MonitoringStore(db)})
    db.close()


def set_config(root, config: dict) -> None:
    path = root / PROJECT / "metadata.yaml"
    meta = yaml.safe_load(path.read_text()) or {}
    meta["notification_config"] = config
    path.write_text(yaml.safe_dump(meta, sort_keys=False))


def checked(env, res: MonitoringResult, **kwargs):
    env.store.save(res)
    return evaluate_rules(res, project=PROJECT, pipeline=PIPELINE, run_id=kwargs.pop("run_id", 41),
                          workspace=env.root, db=env.db, wait=kwargs.pop("wait", True))


def test_parse_rules_syntax_and_errors(tmp_path):
    rules = parse_rules([
        {"name": "drift", "metric": "drift_share", "op": ">", "threshold": 0.5, "model": "m"},
        {"metric": "rmse", "op": ">=", "threshold": "1.1 * baseline_rmse"},
        {"metric": "feature_drift.trip_distance", "op": ">", "threshold": "0.2"},
    ])
    assert [r.name for r in rules] == ["drift", "rmse >= 1.1 * baseline_rmse", "feature_drift.trip_distance > 0.2"]
    assert rules[1].threshold_value({"baseline_rmse": 5.0}) == pytest.approx(5.5)
    assert rules[1].threshold_value({}) is None
    assert rules[2].threshold == 0.2 and rules[0].applies("m", None) and not rules[0].applies("other", None)
    path = tmp_path / "metadata.yaml"
    cases = [
        ({"metric": "rmse", "op": "=>", "threshold": 1}, r"rules\[0\]\.op '=>' is not one of"),
        ({"metric": "rmse", "op": ">"}, r"rules\[0\] lacks 'threshold'"),
        ({"metric": "rmse", "op": ">", "threshold": "1.1 x baseline"}, r"rules\[0\]\.threshold '1.1 x baseline'"),
        ({"metric": "rmse", "op": ">", "threshold": 1, "severity": "hi"}, r"unknown key\(s\) \['severity'\]"),
    ]
    for rule, message in cases:
        with pytest.raises(ProjectError, match=message) as info:
            parse_rules([rule], file=path)
        assert str(path) in str(info.value)
    with pytest.raises(ProjectError, match="already named 'x'"):
        parse_rules([{"name": "x", "metric": "a", "op": ">", "threshold": 1}] * 2)


def test_one_alert_per_episode_then_recovery_by_email_and_webhook(env, smtp_plain):  # noqa: F811
    hooks = HookServer()
    try:
        set_config(env.root, {
            "email_config": {"smtp_host": "127.0.0.1", "smtp_port": smtp_plain.port, "smtp_mode": "plain",
                             "sender": "alerts@example.com", "to_emails": ["ops@example.com"]},
            "webhook_config": {"url": f"{hooks.url}/hook"},
            "rules": [
                {"name": "dataset drift", "metric": "drift_share", "op": ">=", "threshold": 0.5, "model": "taxi"},
                {"name": "rmse up", "metric": "rmse", "op": ">", "threshold": "1.1 * baseline_rmse"},
                {"name": "other model", "metric": "drift_share", "op": ">", "threshold": 0, "model": "else"},
            ],
        })
        first = {d.rule: d for d in checked(env, result("taxi", "2023-02", drift_share=0.25, rmse=5.2))}
        assert {r: d.transition for r, d in first.items()} == {"dataset drift": "ok", "rmse up": "ok"}
        assert hooks.requests == [] and smtp_plain.messages == []

        bad = result("taxi", "2023-03", drift_share=0.75, rmse=6.0)
        second = {d.rule: d for d in checked(env, bad, run_id=42)}
        assert second["dataset drift"].transition == "fired" and second["rmse up"].transition == "fired"
        assert second["rmse up"].threshold == pytest.approx(5.5) and second["rmse up"].value == 6.0
        assert all(r["ok"] for r in second["dataset drift"].results), second["dataset drift"].results
        payloads = [r["json"] for r in hooks.by_path("/hook")]
        assert sorted(p["run"]["rule"] for p in payloads) == ["dataset drift", "rmse up"]
        drift = next(p for p in payloads if p["run"]["rule"] == "dataset drift")
        assert drift["event"] == "monitoring_alert"
        assert "drift_share 0.75 >= 0.5" in drift["title"] and "2023-03" in drift["title"]
        assert drift["url"] == "https://blockyard.example.com/runs/42"
        assert drift["facts"]["report"].endswith(f"/api/monitoring/checks/{bad.check_id}/report")
        assert "drifted features: trip_distance (0.300), passenger_count (0.300), PULocationID (0.300)" in drift["details"]
        assert drift["run"]["figures"]["rmse"] == 6.0 and drift["run"]["figures"]["baseline_rmse"] == 5.0
        assert len(smtp_plain.messages) == 2
        mail = next(m for m in smtp_plain.messages if "rmse up" in m["msg"]["Subject"])
        assert "rmse 6 > 5.5" in mail["msg"]["Subject"] and "1.1 * baseline_rmse" in mail["body"]
        assert f"/api/monitoring/checks/{bad.check_id}/report" in mail["body"]

        # still bad: no repeat
        third = {d.rule: d for d in checked(env, result("taxi", "2023-04", drift_share=1.0, rmse=7.0))}
        assert third["dataset drift"].transition == "firing" and third["dataset drift"].results == []
        assert len(hooks.requests) == 2 and len(smtp_plain.messages) == 2

        # drift clears, rmse stays high: one recovery notice
        fourth = {d.rule: d for d in checked(env, result("taxi", "2023-05", drift_share=0.0, rmse=7.0))}
        assert fourth["dataset drift"].transition == "recovered" and fourth["rmse up"].transition == "firing"
        recovered = hooks.requests[-1]["json"]
        assert len(hooks.requests) == 3 and recovered["event"] == "monitoring_recovered"
        assert recovered["title"].startswith("[proj] recovered: dataset drift")
        # a new episode alerts again
        fifth = {d.rule: d for d in checked(env, result("taxi", "2023-06", drift_share=0.5, rmse=7.0))}
        assert fifth["dataset drift"].transition == "fired" and len(hooks.requests) == 4
    finally:
        hooks.close()


def test_unknown_figure_is_not_a_transition(env):
    set_config(env.root, {"rules": [{"name": "mae", "metric": "mae", "op": ">", "threshold": "2 * baseline_mae"}]})
    [decision] = checked(env, result(f"m-{uuid.uuid4().hex[:6]}", "2023-02", drift_share=0, rmse=1.0))
    assert decision.transition == "unknown" and decision.value == pytest.approx(0.7) and decision.threshold is None


class SlowServer:
    """Holds every request until `release` is set."""

    def __init__(self) -> None:
        self.release, self.received = threading.Event(), threading.Event()
        self.bodies: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                outer.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                outer.received.set()
                outer.release.wait(30)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def test_slow_and_unreachable_channels_do_not_hold_up_the_check(env, caplog):
    slow = SlowServer()
    closed = free_port()
    try:
        set_config(env.root, {
            "webhook_config": [{"url": f"{slow.url}/slow", "timeout": 20}, {"url": f"http://127.0.0.1:{closed}/x", "timeout": 2}],
            "rules": [{"name": "drift", "metric": "drift_share", "op": ">", "threshold": 0.3}],
        })
        model = f"slow-{uuid.uuid4().hex[:6]}"
        with caplog.at_level(logging.WARNING, logger="blockyard.notify"):
            [decision] = checked(env, result(model, "2023-02", drift_share=0.75, rmse=1.0), wait=False)
            # evaluate_rules returned while the slow server still holds the request
            assert decision.transition == "fired"
            assert slow.received.wait(20), "the alert never reached the slow server"
            assert not slow.release.is_set()
            slow.release.set()
            sender = next(t for t in threading.enumerate() if t.name == "blockyard-rule-alerts")
            sender.join(30)
        assert slow.bodies[0]["run"]["rule"] == "drift"
        assert any(f"cannot reach http://127.0.0.1:{closed}" in r.getMessage() for r in caplog.records), caplog.text
    finally:
        slow.close()


def test_rules_and_their_state_over_http(env, monkeypatch):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from blockyard.server.app import create_app

    set_config(env.root, {"rules": [{"name": "drift", "metric": "drift_share", "op": ">", "threshold": 0.3},
                                    {"metric": "rmse", "op": ">", "threshold": "1.1 * baseline_rmse"}]})
    model = f"http-{uuid.uuid4().hex[:6]}"
    checked(env, result(model, "2023-02", drift_share=0.75, rmse=1.0))
    monkeypatch.setenv("BLOCKYARD_DATABASE_URL", env.db.url.render_as_string(hide_password=False))
    with TestClient(create_app(env.root)) as c:
        body = c.get("/api/monitoring/rules", params={"project": PROJECT}).json()
        rules = {r["name"]: r for r in body["rules"]}
        assert rules["rmse > 1.1 * baseline_rmse"]["threshold"] == "1.1 * baseline_rmse"
        [drift] = [s for s in rules["drift"]["states"] if s["scope"] == model]
        assert drift["firing"] is True and drift["last_value"] == 0.75
        assert c.get("/api/monitoring/rules", params={"project": "nope"}).status_code == 404
        set_config(env.root, {"rules": [{"metric": "rmse", "op": "=>", "threshold": 1}]})
        bad = c.get("/api/monitoring/rules", params={"project": PROJECT})
        assert 400 <= bad.status_code < 500 and "rules[0].op" in bad.text
