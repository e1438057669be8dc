"""The UI side of Mage's run semantics, in real headless Chromium against a real server:
a polling sensor shows "waiting, poll N" on the run page, live; the run dialog's cache
toggle queues a run with `cache: true`."""
from __future__ import annotations

import json
import urllib.request

import pytest

from ui_support import UiServer, browser_page, skip_reason
from wsbuilder import block, write_pipeline

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")


def _api(server, path: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(
        server.url + path,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
        method="POST" if body is not None else "GET",
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def test_waiting_sensor_and_cache_toggle(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    release = tmp_path / "release"
    write_pipeline(root, "p", "sensed", [
        block("wait_for_file", f"""
            from pathlib import Path
            @sensor
            def wait_for_file(**kwargs):
                return Path({str(release)!r}).exists()
            """, type="sensor", config={"poke_interval": 0.3}),
        block("after", "@custom\ndef after(*args, **kwargs):\n    return 1\n", upstream=["wait_for_file"]),
    ])
    srv = UiServer(root, workers=1).start()
    try:
        with browser_page() as page:
            run = _api(srv, "/api/pipelines/p/sensed/runs", {})
            page.goto(f"{srv.url}/runs/{run['id']}")
            page.wait_for_selector("svg.gantt text:has-text('waiting, poll 1')")
            # The poll count follows the sensor live (no reload).
            page.wait_for_selector("svg.gantt text:has-text('waiting, poll 3')", timeout=60_000)
            release.write_text("go")
            page.wait_for_function(
                "() => [...document.querySelectorAll('svg.gantt rect.bar')].length === 2", timeout=60_000
            )
            assert _api(srv, f"/api/runs/{run['id']}")["status"] in ("running", "completed")

            page.goto(f"{srv.url}/pipelines/p/sensed")
            page.click("#run-with-variables")
            page.check("#run-use-cache")
            page.click("#run-with-variables-submit")
            page.wait_for_selector(".run-panel[data-finished]", timeout=120_000)
            runs = _api(srv, "/api/pipelines/p/sensed/runs")["runs"]
            newest = max(runs, key=lambda r: r["id"])
            assert newest["id"] != run["id"] and newest["cache"] is True
            assert not page.js_errors, page.js_errors
    finally:
        srv.stop()
