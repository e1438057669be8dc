"""Library calls made from inside a block find that block's workspace and project."""
from __future__ import annotations

import blockyard
from wsbuilder import block, write_pipeline


def test_block_reads_a_project_scoped_database_secret(tmp_path, monkeypatch):
    for var in ("BLOCKYARD_HOME", "BLOCKYARD_DATABASE_URL", "BLOCKYARD_WORKSPACE", "BLOCKYARD_SECRET_KEY"):
        monkeypatch.delenv(var, raising=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # neither cwd nor env point at the workspace
    root = tmp_path / "ws"
    root.mkdir()
    for project in ("alpha", "beta"):
        write_pipeline(root, project, "pipe", [
            block("read", """
                if 'custom' not in globals():
                    from mage_ai.data_preparation.decorators import custom
                from mage_ai.data_preparation.shared.secrets import get_secret_value

                @custom
                def read(**kwargs):
                    return get_secret_value('api_key')
                """),
        ])
    from blockyard.session import session_for
    from blockyard.project import Workspace
    from blockyard.secrets import SecretStore

    ws = Workspace.open(root)
    store = SecretStore(session_for(ws).db, data_dir=ws.data_dir)
    store.set("api_key", "global-value")
    store.set("api_key", "alpha-value", project="alpha")
    alpha = blockyard.run_pipeline("alpha/pipe", workspace=root, use_cache=False)
    beta = blockyard.run_pipeline("beta/pipe", workspace=root, use_cache=False)
    assert alpha.ok and beta.ok, (alpha.error, beta.error)
    assert alpha.output("read") == "alpha-value"
    assert beta.output("read") == "global-value"


def test_block_progress_reaches_run_events(tmp_path, monkeypatch):
    monkeypatch.delenv("BLOCKYARD_HOME", raising=False)
    monkeypatch.delenv("BLOCKYARD_DATABASE_URL", raising=False)
    root = tmp_path / "ws"
    root.mkdir()
    write_pipeline(root, "p", "pipe", [
        block("work", """
            from blockyard.runtime import report_progress

            @custom
            def work():
                for i in range(1, 4):
                    report_progress(i, 3, f'step {i}')
                return 'done'
            """),
    ])
    events = []
    result = blockyard.run_pipeline("p/pipe", workspace=root, on_event=events.append)
    assert result.ok
    progress = [(e["done"], e["total"], e["message"]) for e in events if e["type"] == "progress"]
    assert progress == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]
    # without a listener the call is a no-op and the block still runs
    assert blockyard.run_pipeline("p/pipe", workspace=root, use_cache=False).output("work") == "done"
