"""Schemathesis over the OpenAPI schema: generated requests (valid, invalid, and valid
ones carrying values no database can store: NUL, lone surrogates, NaN, Infinity) to every
operation never get a 5xx, on SQLite and on the real PostgreSQL server. Bounded: a few
examples per operation and mode (BLOCKYARD_TEST_FUZZ_EXAMPLES); with
BLOCKYARD_TEST_FUZZ_REPORT=<file> each item appends its request and 5xx counts there
(bench/RESULTS.md, "Issue 10 — security").

The operations are parametrized by hand (one pytest item per operation and generation
mode) rather than with `schema.parametrize()`: under `pytest -n 2 --dist loadfile` (what
scripts/test.sh runs) that collapses into a single item that checks nothing, and
schemathesis' `from_fixture` does not work with pytest 9. The app is built at import time."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import uuid
import warnings
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("fastapi")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from test_server_support import make_workspace  # noqa: E402

EXAMPLES = int(os.environ.get("BLOCKYARD_TEST_FUZZ_EXAMPLES", "8"))
# PostgreSQL runs the same code paths but the database: fewer examples by default keep
# the suite fast; setting BLOCKYARD_TEST_FUZZ_EXAMPLES sets both.
PG_EXAMPLES = int(os.environ.get("BLOCKYARD_TEST_FUZZ_EXAMPLES", "3"))


def _app(database_url: str | None = None):
    from blockyard.server.app import create_app
    from blockyard.server.config import ServerConfig

    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("BLOCKYARD_")}
    if database_url:
        os.environ["BLOCKYARD_DATABASE_URL"] = database_url
    try:
        folder = Path(tempfile.mkdtemp(prefix="blockyard-fuzz-"))
        space = make_workspace(folder, project=f"fz{uuid.uuid4().hex[:6]}" if database_url else "fz")
        stop = threading.Event()
        stop.set()  # live log streams end at once instead of following queued runs forever
        return folder, create_app(space.root, ServerConfig(), stop_event=stop)
    finally:
        os.environ.pop("BLOCKYARD_DATABASE_URL", None)
        os.environ.update(saved)


def _operations(app):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        return {op.label: op for op in (r.ok() for r in schema.get_all_operations())}


_FOLDER, _APP = _app()
OPERATIONS = _operations(_APP)
_PG: dict[str, object] = {}  # url, folder, operations: built on first use (needs the pg_url fixture)

# Values no database can store, put into otherwise valid requests ("unstorable" mode).
NASTY = ["\x00", "a\x00b", "\ud800", "x\udfff", float("nan"), float("inf"), float("-inf")]


@pytest.fixture(scope="module", autouse=True)
def _cleanup():
    yield
    from blockyard.session import reset_sessions

    reset_sessions()
    shutil.rmtree(_FOLDER, ignore_errors=True)
    if "folder" in _PG:
        shutil.rmtree(_PG["folder"], ignore_errors=True)


@pytest.fixture(autouse=True)
def _same_env(monkeypatch):
    report = os.environ.get("BLOCKYARD_TEST_FUZZ_REPORT")
    for key in list(os.environ):
        if key.startswith("BLOCKYARD_"):
            monkeypatch.delenv(key)
    return report


def _operation(request, db: str, label: str, monkeypatch):
    if db == "sqlite":
        return OPERATIONS[label]
    url = request.getfixturevalue("pg_url")
    if _PG.get("url") != url:
        folder, app = _app(url)
        _PG.update(url=url, folder=folder, operations=_operations(app))
    # The workspace is re-opened when its settings change (a project created by the
    # fuzzer): its session must find the same database then.
    monkeypatch.setenv("BLOCKYARD_DATABASE_URL", url)
    return _PG["operations"][label]


_CLIENTS: dict[int, object] = {}


def _client(operation):
    """An in-process client of the operation's app (one per app)."""
    app = operation.app
    if id(app) not in _CLIENTS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from fastapi.testclient import TestClient

        _CLIENTS[id(app)] = TestClient(app, raise_server_exceptions=False)
    return _CLIENTS[id(app)]


def _containers(value, out):
    if isinstance(value, (dict, list)):
        out.append(value)
        for child in (value.values() if isinstance(value, dict) else value):
            _containers(child, out)
    return out


def _inject(case, data) -> None:
    """Put one NASTY value somewhere in the case: a body field (known or not, at any
    depth), else a string query or path parameter."""
    nasty = data.draw(st.sampled_from(NASTY), label="value")
    if isinstance(case.body, (dict, list)):
        target = data.draw(st.sampled_from(_containers(case.body, [])), label="container")
        if isinstance(target, dict):
            key = data.draw(st.sampled_from([*target, "x"]), label="key")
            target[key] = nasty
        else:
            target.append(nasty)
        return
    text = nasty if nasty in ("\x00", "a\x00b") else "a\x00b"  # (a URL cannot carry a surrogate)
    for params in (case.query, case.path_parameters):
        names = [k for k, v in (params or {}).items() if isinstance(v, str)]
        if names:
            params[data.draw(st.sampled_from(names), label="param")] = text
            return
    case.query = {**(case.query or {}), "x": text}


def test_every_operation_is_fuzzed():
    assert len(OPERATIONS) >= 30
    assert "POST /api/pipeline_schedules/{schedule_id}/pipeline_runs/{token}" in OPERATIONS


MODES = ["positive", "negative", "unstorable"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_no_server_errors(label, db, mode, request, monkeypatch, _same_env):
    if db == "postgresql" and mode == "negative" and not (len(OPERATIONS[label].query) or len(OPERATIONS[label].body)):
        # Invalid path parameters never reach the database: same code as on SQLite.
        pytest.skip("only path parameters: the SQLite run covers it")
    operation = _operation(request, db, label, monkeypatch)
    generation = GenerationMode.NEGATIVE if mode == "negative" else GenerationMode.POSITIVE
    counts = {"requests": 0, "errors": 0}

    @given(case=operation.as_strategy(generation_mode=generation), data=st.data())
    @settings(max_examples=EXAMPLES if db == "sqlite" else PG_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case, data):
        if mode == "unstorable":
            _inject(case, data)
            # Sent as bytes: the transports' JSON encoders refuse NaN (the server must not
            # count on clients that do).
            content = None if case.body is None or not isinstance(case.body, (dict, list, str, int, float)) \
                else json.dumps(case.body).encode()
            headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "content-length"}
            if content is not None:
                headers["content-type"] = "application/json"
            path = case.formatted_path.replace("\x00", "%00")
            response = _client(operation).request(case.method, path, params=case.query or None,
                                                  headers=headers, content=content)
            counts["requests"] += 1
            counts["errors"] += response.status_code >= 500
            assert response.status_code < 500, (case.method, case.formatted_path, response.text)
            return
        response = case.call()
        counts["requests"] += 1
        if response.status_code >= 500:
            counts["errors"] += 1
        case.validate_response(response, checks=[not_a_server_error])

    try:
        check()
    except Unsatisfiable:
        if generation is GenerationMode.POSITIVE:
            raise
        pytest.skip("no invalid request exists for this operation (no body, only string parameters)")
    finally:
        if _same_env:
            with open(_same_env, "a") as fh:
                fh.write(f"{db}\t{mode}\t{label}\t{counts['requests']}\t{counts['errors']}\n")
