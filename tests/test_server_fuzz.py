"""Schemathesis over the OpenAPI schema: generated requests (valid and invalid) to every
operation never get a 5xx. Bounded: a few examples per operation.

(The schema is loaded at import time: schemathesis' `from_fixture` does not work with
pytest 9.)"""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("fastapi")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from test_server_support import make_workspace  # noqa: E402


def _app():
    from blockyard.server.app import create_app
    from blockyard.server.config import ServerConfig

    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("BLOCKYARD_")}
    try:
        folder = Path(tempfile.mkdtemp(prefix="blockyard-fuzz-"))
        space = make_workspace(folder, project="fz")
        stop = threading.Event()
        stop.set()  # live log streams end at once instead of following queued runs forever
        return folder, create_app(space.root, ServerConfig(), stop_event=stop)
    finally:
        os.environ.update(saved)


_FOLDER, _APP = _app()
schema = schemathesis.openapi.from_asgi("/openapi.json", _APP)


@pytest.fixture(scope="module", autouse=True)
def _cleanup():
    yield
    from blockyard.engine.session import reset_sessions

    reset_sessions()
    shutil.rmtree(_FOLDER, ignore_errors=True)


@pytest.fixture(autouse=True)
def _same_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith("BLOCKYARD_"):
            monkeypatch.delenv(key)


@schema.parametrize()
@settings(max_examples=int(os.environ.get("BLOCKYARD_TEST_FUZZ_EXAMPLES", "8")), deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case):
    response = case.call()
    case.validate_response(response, checks=[not_a_server_error])
