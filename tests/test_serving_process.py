"""`blockyard serve` and `blockyard start --role serve` as real processes: a client
sending requests without pause while the champion alias moves sees no failure, and
`/version` follows the swap."""
from __future__ import annotations

import signal
import subprocess
import threading
import time

import pytest

pytest.importorskip("mlflow")
pytest.importorskip("xgboost")
from mirror import MIRROR  # noqa: E402
from test_server_support import BIN, clean_env, free_port  # noqa: E402
from test_serving_support import COURSE, ROW, train_and_register  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (MIRROR / "taxi/green/green_tripdata_2023-01.parquet").is_file(),
                       reason="course data mirror not present"),
]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A temp BLOCKYARD_HOME whose registry has v1 (XGBoost) as the champion."""
    path = tmp_path_factory.mktemp("serving_process") / "home"
    path.mkdir()
    mp = pytest.MonkeyPatch()
    mp.setenv("BLOCKYARD_HOME", str(path))
    mp.setenv("BLOCKYARD_DATA_MIRROR", str(MIRROR))
    for name in ("MLFLOW_TRACKING_URI", "BLOCKYARD_DATABASE_URL", "BLOCKYARD_STORE_URL", "BLOCKYARD_API_TOKEN"):
        mp.delenv(name, raising=False)
    yield path
    mp.undo()


@pytest.fixture(scope="module")
def v1(home):
    return train_and_register(COURSE)


class Serving:
    def __init__(self, home, *args: str, command=("serve",)) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(home.parent / f"serve-{self.port}.log", "w")
        env = clean_env({"BLOCKYARD_HOME": str(home), "BLOCKYARD_DATA_MIRROR": str(MIRROR)})
        self.proc = subprocess.Popen([str(BIN), *command, str(COURSE), "--port", str(self.port), *args],
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return open(self.log.name).read()

    def wait_ready(self, timeout: float = 90) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "/ping", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"serve not ready:\n{self.output()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        finally:
            self.log.close()


def test_swap_under_load_fails_no_request(home, v1):
    import httpx

    from blockyard.serving.predlog import read_predictions

    server = Serving(home, "--poll", "0.5")
    try:
        server.wait_ready()
        results: list[tuple] = []  # (status, version or error)
        stop = threading.Event()

        def load() -> None:
            with httpx.Client(base_url=server.url, timeout=10) as client:
                while not stop.is_set():
                    try:
                        r = client.post("/invocations", json={"inputs": [ROW]})
                        results.append((r.status_code, r.headers.get("x-model-version") or r.text))
                    except httpx.HTTPError as exc:
                        results.append((0, repr(exc)))

        threads = [threading.Thread(target=load) for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        v2 = train_and_register(COURSE, kind="linear", rows=5000, rmse=0.25)  # better: takes the alias
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and httpx.get(server.url + "/version").json()["version"] != v2:
            time.sleep(0.1)
        served_by = len(results)
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join(30)
        failures = [r for r in results if r[0] != 200]
        assert not failures, failures[:5]
        versions = [v for _, v in results]
        assert set(versions) == {v1, v2}, set(versions)
        assert len(results) > served_by, "no request answered after the swap"
        assert all(v == v2 for v in versions[served_by:])
        info = httpx.get(server.url + "/version").json()
        assert info["version"] == v2 and info["swaps"][-1] == {**info["swaps"][-1], "from_version": v1, "to_version": v2}
        stats = httpx.get(server.url + "/stats").json()
        assert stats["server_errors"] == 0 and stats["requests"] == len(results)
    finally:
        code = server.stop()
    assert code == 0, server.output()
    logged = read_predictions(COURSE, "nyc-taxi-duration")  # flushed on shutdown
    assert len(logged) == len(results)
    assert set(logged["version"]) == {v1, v2}


def test_start_role_serve_answers_the_scoring_protocol(home, v1):
    import httpx

    from blockyard.ml.registry import champion

    version = champion(workspace=COURSE)["version"]
    server = Serving(home, "--role", "serve", command=("start",))
    try:
        server.wait_ready()
        r = httpx.post(server.url + "/invocations", json={"dataframe_records": [ROW]})
        assert r.status_code == 200 and r.headers["x-model-version"] == version
        assert httpx.get(server.url + "/version").json()["version"] == version
        bad = httpx.post(server.url + "/invocations", content=b"{")
        assert bad.status_code == 400
    finally:
        assert server.stop() == 0, server.output()


def test_serve_refuses_a_non_loopback_bind_without_a_token(home):
    proc = subprocess.run([str(BIN), "serve", str(COURSE), "--host", "0.0.0.0", "--port", str(free_port())],
                          env=clean_env({"BLOCKYARD_HOME": str(home)}), capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "without a token" in proc.stderr + proc.stdout


def test_serving_page_in_chromium(home, v1):
    """The serving page: model and version, traffic, the prediction form, swaps and the
    retraining history (a real `blockyard serve` and headless Chromium)."""
    import httpx
    from ui_support import browser_page, screenshot, skip_reason

    if skip_reason():
        pytest.skip(skip_reason())
    from blockyard.ml.tracking import setup_mlflow

    client = setup_mlflow(COURSE).client
    version = client.get_model_version_by_alias("nyc-taxi-duration", "champion").version
    client.set_model_version_tag("nyc-taxi-duration", version, "retraining_decision", "promoted")
    client.set_model_version_tag("nyc-taxi-duration", version, "retraining_reason", "challenger better on 2023-03")
    client.set_model_version_tag("nyc-taxi-duration", version, "retraining_month", "2023-03")
    server = Serving(home, "--poll", "0.5")
    try:
        server.wait_ready()
        for _ in range(5):
            httpx.post(server.url + "/invocations", json={"inputs": [ROW]})
        with browser_page() as page:
            page.goto(server.url + "/")
            page.wait_for_function(f"document.getElementById('version').textContent === '{version}'")
            page.wait_for_function("document.getElementById('requests').textContent !== '-'")
            assert int(page.inner_text("#requests")) >= 5
            page.wait_for_selector("#history tr")
            history = page.inner_text("#history")
            assert "challenger better on 2023-03" in history and "champion" in history
            page.click("#send")
            page.wait_for_function("document.getElementById('answer').textContent.startsWith('200')")
            answer = page.inner_text("#answer")
            assert f"version {version}" in answer and "predictions" in answer
            page.fill("#payload", '{"inputs": [{"PULocationID": 1}]}')
            page.click("#send")
            page.wait_for_function("document.getElementById('answer').textContent.startsWith('422')")
            assert "DOLocationID" in page.inner_text("#answer")
            screenshot(page, "serving-page")
            assert not page.js_errors, page.js_errors
    finally:
        assert server.stop() == 0, server.output()


def test_serving_page_in_the_main_ui(home, v1, tmp_path, monkeypatch):
    """The Serving entry of the main UI (:6789) reads a real `blockyard serve` through
    /ui-api/serving (same origin): version, traffic, the prediction form (a 4xx names the
    field), the retraining history with its trigger; an unreachable serve process is
    said so, never a 500."""
    import httpx
    from ui_support import UiServer, browser_page, screenshot, skip_reason

    if skip_reason():
        pytest.skip(skip_reason())
    from blockyard.ml.tracking import setup_mlflow

    client = setup_mlflow(COURSE).client
    version = client.get_model_version_by_alias("nyc-taxi-duration", "champion").version
    client.set_model_version_tag("nyc-taxi-duration", version, "retraining_reason", "challenger better on 2023-04")
    client.set_model_version_tag("nyc-taxi-duration", version, "retraining_trigger", "alert: rmse above baseline")
    server = Serving(home, "--poll", "0.5")
    monkeypatch.setenv("BLOCKYARD_SERVE_URL", server.url)
    ui = UiServer(COURSE, worker=False)
    try:
        server.wait_ready()
        ui.start()
        for _ in range(3):
            httpx.post(server.url + "/invocations", json={"inputs": [ROW]})
        with browser_page() as page:
            page.goto(ui.url + "/")
            page.click("nav a[data-nav='/serving']")
            page.wait_for_function(f"document.getElementById('serving-version')?.textContent === '{version}'")
            assert int(page.inner_text("#serving-requests")) >= 3
            history = page.inner_text("#serving-history")
            assert "challenger better on 2023-04" in history and "alert: rmse above baseline" in history
            page.click("#serving-send")
            page.wait_for_function("document.getElementById('serving-answer').textContent.startsWith('200')")
            assert f"version {version}" in page.inner_text("#serving-answer")
            page.fill("#serving-payload", '{"inputs": [{"PULocationID": 1}]}')
            page.click("#serving-send")
            page.wait_for_function("document.getElementById('serving-answer').textContent.startsWith('422')")
            assert "DOLocationID" in page.inner_text("#serving-answer")
            screenshot(page, "ui-serving-page")
            assert not page.js_errors, page.js_errors
        monkeypatch.setenv("BLOCKYARD_SERVE_URL", f"http://127.0.0.1:{free_port()}")  # nobody there
        down = httpx.get(ui.url + "/ui-api/serving").json()
        assert down["reachable"] is False and "not reachable" in down["error"]
    finally:
        ui.stop()
        assert server.stop() == 0, server.output()
