"""Rules evaluated by monitoring.check() itself, and the test-send of a rule's alert from
the CLI (`blockyard alerts test-rule`) and the UI API, against real local HTTP servers."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

if importlib.util.find_spec("evidently") is None:  # the `monitoring` extra
    pytest.skip("evidently is not installed", allow_module_level=True)

from blockyard.ml import monitoring  # noqa: E402

from test_alert_rules import PIPELINE, PROJECT, checked, env, result, set_config  # noqa: E402,F401
from test_monitoring import FEATURES, trips  # noqa: E402
from test_notify import HookServer  # noqa: E402

BIN = Path(sys.executable).parent / "blockyard"


def _wait_for(predicate, what: str, limit: float = 20.0):
    """Alerts are sent on a background thread: poll until they arrived."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_check_evaluates_the_projects_rules_itself(env, monkeypatch):  # noqa: F811
    monkeypatch.delenv("BLOCKYARD_HOME", raising=False)
    hooks = HookServer()
    try:
        model = f"taxi-{uuid.uuid4().hex[:6]}"
        set_config(env.root, {
            "webhook_config": {"url": f"{hooks.url}/hook"},
            "rules": [{"name": "drift", "metric": "drift_share", "op": ">=", "threshold": 0.5, "model": model}],
        })
        monitoring.build_reference(trips(3_000, seed=1, zones=30), model=model, target="duration",
                                   prediction="prediction", workspace=env.root, **FEATURES)
        kwargs = dict(workspace=env.root, db=env.db, project=PROJECT, pipeline=PIPELINE, report=False)
        calm = monitoring.check(trips(2_000, seed=2, zones=30), model, period="2023-01", **kwargs)
        assert [a["transition"] for a in calm.alerts] == ["ok"] and calm.drift_share < 0.5
        shifted = trips(2_000, seed=3, distance_scale=4.0, zones=8)
        first = monitoring.check(shifted, model, period="2023-02", **kwargs)
        assert first.drift_share >= 0.5 and [a["transition"] for a in first.alerts] == ["fired"]
        _wait_for(lambda: len(hooks.by_path("/hook")) == 1, "the drift alert")
        payload = hooks.by_path("/hook")[0]["json"]
        assert payload["event"] == "monitoring_alert" and payload["run"]["period"] == "2023-02"
        again = monitoring.check(shifted, model, period="2023-03", **kwargs)
        assert [a["transition"] for a in again.alerts] == ["firing"]
        silent = monitoring.check(shifted, model, period="2023-04", alerts=False, **kwargs)
        assert silent.alerts == []
        time.sleep(0.3)  # a wrongly sent repeat would have arrived by now
        assert len(hooks.by_path("/hook")) == 1
    finally:
        hooks.close()


def _cli(args, root, db_url):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BLOCKYARD_")}
    environ.update(BLOCKYARD_WORKSPACE=str(root), BLOCKYARD_DATABASE_URL=db_url)
    return subprocess.run([str(BIN), *args], cwd=root, env=environ, capture_output=True, text=True, timeout=300)


def test_rule_test_send_from_cli_and_ui_api(env, monkeypatch):  # noqa: F811
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from blockyard.server.app import create_app

    hooks = HookServer()
    try:
        model = f"taxi-{uuid.uuid4().hex[:6]}"
        set_config(env.root, {
            "webhook_config": {"url": f"{hooks.url}/hook"},
            "rules": [{"name": "rmse up", "metric": "rmse", "op": ">", "threshold": "1.1 * baseline_rmse", "model": model}],
        })
        checked(env, result(model, "2023-05", drift_share=0.0, rmse=6.0))  # fires once
        hooks.requests.clear()
        url = env.db.url.render_as_string(hide_password=False)

        proc = _cli(["alerts", "test-rule", PROJECT, "rmse up"], env.root, url)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "[test] [proj] rmse up: rmse 6 > 5.5" in proc.stdout and "webhook: sent" in proc.stdout
        [sent] = hooks.by_path("/hook")
        assert sent["json"]["event"] == "monitoring_test" and sent["json"]["run"]["period"] == "2023-05"
        assert "state is unchanged" in sent["json"]["details"]

        listed = _cli(["alerts", "rules", PROJECT], env.root, url)
        assert listed.returncode == 0 and "rmse up: rmse > 1.1 * baseline_rmse" in listed.stdout
        assert f"{model}: FIRING" in listed.stdout  # the test-send did not change the state

        unknown = _cli(["alerts", "test-rule", PROJECT, "nope"], env.root, url)
        assert unknown.returncode != 0 and "no alert rule 'nope'" in unknown.stdout + unknown.stderr
        assert "rmse up" in unknown.stdout + unknown.stderr

        monkeypatch.setenv("BLOCKYARD_DATABASE_URL", url)
        with TestClient(create_app(env.root)) as c:
            c.get("/ui-api/session")
            headers = {"X-Blockyard-CSRF": c.cookies.get("blockyard_csrf")}
            r = c.post("/ui-api/monitoring/rules/test", json={"project": PROJECT, "rule": "rmse up"}, headers=headers)
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["holds"] is True and body["value"] == 6.0 and body["results"][0]["ok"] is True
            assert len(hooks.by_path("/hook")) == 2
            bad = c.post("/ui-api/monitoring/rules/test", json={"project": PROJECT, "rule": "nope"}, headers=headers)
            assert 400 <= bad.status_code < 500 and "no alert rule 'nope'" in bad.text
        # a channel that cannot be reached is reported, not raised
        set_config(env.root, {"webhook_config": {"url": "http://127.0.0.1:9/hook", "timeout": 2},
                              "rules": [{"name": "rmse up", "metric": "rmse", "op": ">", "threshold": 5.0}]})
        down = _cli(["alerts", "test-rule", PROJECT, "rmse up"], env.root, url)
        assert down.returncode == 1 and "webhook: FAILED" in down.stdout
    finally:
        hooks.close()
