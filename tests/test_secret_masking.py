"""A block that prints, logs or raises a secret value leaves `***` in its log, the run's
errors and tracebacks and every API answer (issue 10, item 8) — the run executed by a
worker child process, on SQLite and PostgreSQL, read back through the HTTP API."""
from __future__ import annotations

import json

from test_orchestration import env  # noqa: F401 - fixture
from wsbuilder import block

SECRET = "tok-9f8e7d6c5b4a-very-secret"


def test_secret_values_are_masked_everywhere(env, monkeypatch):
    from fastapi.testclient import TestClient

    from blockyard.session import Session
    from blockyard.server.app import create_app

    env.pipeline("leaky", [
        block("leak", """
            from mage_ai.data_preparation.shared.secrets import get_secret_value
            @custom
            def leak(*args, **kwargs):
                token = get_secret_value('API_TOKEN')
                print('the token is', token)
                kwargs['logger'].info('logging %s', token)
                raise ValueError(f'server refused token {token!r}')
            """),
    ])
    secrets_dir = Session(env.ws()).data_dir / "secrets"
    secrets_dir.mkdir(parents=True)
    (secrets_dir / "API_TOKEN").write_text(SECRET + "\n")
    run = env.enqueue("leaky")
    worker = env.worker(concurrency=1)
    worker.run_once()
    assert worker.wait_idle(60)

    row = env.db.get_pipeline_run(run["id"])
    (block_run,) = env.db.get_block_runs(run["id"])
    assert row["status"] == "failed" and "***" in row["error"]
    assert "server refused token" in block_run["error"] and "***" in block_run["traceback"]
    stored = json.dumps([row, block_run], default=str)
    assert SECRET not in stored
    log_text = "".join(p.read_text() for p in Session(env.ws()).logs_dir.rglob("*.log"))
    assert "the token is ***" in log_text and "logging ***" in log_text and SECRET not in log_text

    monkeypatch.setenv("BLOCKYARD_DATABASE_URL", env.url)
    with TestClient(create_app(env.root)) as client:
        answers = [
            client.get(f"/api/runs/{run['id']}"),
            client.get(f"/api/runs/{run['id']}/block_runs"),
            client.get(f"/api/runs/{run['id']}/logs"),
            client.get("/api/runs", params={"pipeline": f"{env.project}/leaky"}),
        ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert SECRET not in answer.text
    assert "***" in answers[2].text
