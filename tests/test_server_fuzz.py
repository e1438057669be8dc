"""Schemathesis over the OpenAPI schema: generated requests (valid and invalid) to every
operation never get a 5xx. Bounded: a few examples per operation and mode.

The operations are parametrized by hand (one pytest item per operation and generation
mode) rather than with `schema.parametrize()`: under `pytest -n 2 --dist loadfile` (what
scripts/test.sh runs) that collapses into a single item that checks nothing, and
schemathesis' `from_fixture` does not work with pytest 9. The app is built at import time."""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
import warnings
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("fastapi")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from test_server_support import make_workspace  # noqa: E402

EXAMPLES = int(os.environ.get("BLOCKYARD_TEST_FUZZ_EXAMPLES", "8"))


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
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", _APP)
    OPERATIONS = {op.label: op for op in (r.ok() for r in SCHEMA.get_all_operations())}


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


def test_every_operation_is_fuzzed():
    assert len(OPERATIONS) >= 30
    assert "POST /api/pipeline_schedules/{schedule_id}/pipeline_runs/{token}" in OPERATIONS


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_no_server_errors(label, mode):
    operation = OPERATIONS[label]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def check(case):
        response = case.call()
        case.validate_response(response, checks=[not_a_server_error])

    try:
        check()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
        pytest.skip("no invalid request exists for this operation (no body, only string parameters)")
