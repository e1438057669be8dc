"""Shared pieces of the UI tests: a real server (the API app + the UI + a worker) on a free
loopback port in background threads, and headless Chromium through Playwright.
(No tests in this module.)"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("BLOCKYARD_TEST_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-quic", "--no-first-run", "--disable-sync", "--disable-dev-shm-usage",
]


def skip_reason() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium): the UI tests drive a real headless Chromium"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the Python Playwright client is missing (pip install playwright; the browser is Debian's chromium)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def copy_workspace(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".blockyard", "__pycache__", "titanic_clean.csv", "mlruns"))
    return dest


class UiServer:
    """create_app(workspace) + blockyard.ui.mount + a Worker, served by uvicorn in threads."""

    def __init__(self, root: Path, *, token: str | None = None, worker: bool = True, workers: int = 2) -> None:
        self.root = Path(root)
        self.token = token
        self.with_worker = worker
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.server = None

    def start(self) -> "UiServer":
        import uvicorn

        from blockyard.project import Workspace
        from blockyard.server.app import create_app
        from blockyard.server.config import ServerConfig
        from blockyard.ui import mount

        ws = Workspace.open(self.root)
        config = ServerConfig(port=self.port, token=self.token, workers=self.workers, log_level="warning")
        app = create_app(ws, config, stop_event=self.stop_event, local_workers=self.workers if self.with_worker else 0)
        mount(app)  # a no-op once the app factory mounts the UI itself
        self.app = app
        if self.with_worker:
            from blockyard.orchestration.worker import Worker

            worker = Worker(ws, app.state.blockyard.db, concurrency=self.workers)
            t = threading.Thread(target=worker.run_forever, args=(self.stop_event,), daemon=True, name="ui-test-worker")
            t.start()
            self.threads.append(t)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"))
        self.server.install_signal_handlers = lambda: None  # older uvicorn
        t = threading.Thread(target=self.server.run, daemon=True, name="ui-test-uvicorn")
        t.start()
        self.threads.append(t)
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not t.is_alive():
                raise AssertionError("the UI test server did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.stop_event.set()
        if self.server is not None:
            self.server.should_exit = True
        for t in self.threads:
            t.join(timeout=15)


@contextlib.contextmanager
def browser_page(viewport=(1280, 800)):
    """A fresh headless Chromium (own user-data-dir) and one page."""
    import tempfile

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="blockyard-chromium-") as profile, sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": viewport[0], "height": viewport[1]},
        )
        try:
            page = ctx.pages[0] if ctx.pages else ctx.new_page()
            page.set_default_timeout(30_000)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.js_errors = errors  # type: ignore[attr-defined]
            yield page
        finally:
            ctx.close()


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path


def set_code(page, block: str, code: str) -> None:
    """Replace the code in a block's CodeMirror editor (as typing would)."""
    page.wait_for_selector(f'[data-block-card="{block}"] .CodeMirror')
    page.evaluate(
        "([b, code]) => document.querySelector(`[data-block-card=\"${b}\"] .CodeMirror`).CodeMirror.setValue(code)",
        [block, code],
    )
