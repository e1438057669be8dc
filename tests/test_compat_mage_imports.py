"""The `mage_ai` imports real Mage projects make, through real runs: get_repo_path from a
block, a sensor and a utils module; trigger_pipeline's check_status/error_on_failure in
process, from the CLI and through a real worker; the Postgres io class on the real
PostgreSQL server; unsupported imports named with file and line."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from blockyard.compat import shim
from blockyard.api import run_pipeline
from blockyard.session import reset_sessions
from wsbuilder import block, write_pipeline

NO_CACHE = {"cache": False}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith("BLOCKYARD_") and key != "BLOCKYARD_DATA_MIRROR":
            monkeypatch.delenv(key)
    shim.install()
    yield
    reset_sessions()


@pytest.fixture
def ws(tmp_path):
    """A multi-project workspace root and a project name of its own (modules under
    <project>/utils are imported by name, so each test needs a fresh one)."""
    root = tmp_path / "ws"
    root.mkdir()
    return root, f"proj{uuid.uuid4().hex[:8]}"


# ----------------------------------------------------------------- get_repo_path
def test_get_repo_path_from_block_sensor_and_utils_module(ws, tmp_path):
    root, project = ws
    seen = tmp_path / "seen"
    seen.mkdir()
    write_pipeline(root, project, "paths", [
        block("wait_for_data", f"""
            from mage_ai.settings.repo import get_repo_path

            @sensor
            def check(*args, **kwargs) -> bool:
                open({str(seen / 'sensor')!r}, 'w').write(get_repo_path())
                return True
            """, type="sensor", config=NO_CACHE),
        block("where", f"""
            from mage_ai.data_preparation.repo_manager import get_repo_path
            from {project}.utils.where import repo, repo_at_import

            @custom
            def where(*args, **kwargs):
                return {{'block': get_repo_path(), 'utils': repo(), 'utils_at_import': repo_at_import}}
            """, type="custom", upstream=["wait_for_data"], config=NO_CACHE),
    ])
    utils = root / project / "utils"
    utils.mkdir()
    (utils / "where.py").write_text(textwrap.dedent("""
        from mage_ai.settings.repo import get_repo_path

        repo_at_import = get_repo_path()

        def repo():
            return get_repo_path()
        """))
    (root / project / "io_config.yaml").write_text("default: {}\n")

    result = run_pipeline(f"{project}/paths", workspace=root)
    assert result.ok, result.error
    expected = str((root / project).resolve())
    assert result.output("where") == {"block": expected, "utils": expected, "utils_at_import": expected}
    assert (seen / "sensor").read_text() == expected
    # The project folder is where Mage templates look for io_config.yaml.
    assert os.path.isfile(os.path.join(result.output("where")["block"], "io_config.yaml"))

    # Outside a run: the project holding the calling file, and root_project=True.
    sys.path.insert(0, str(root))
    try:
        import importlib

        module = importlib.import_module(f"{project}.utils.where")
        assert module.repo() == expected
    finally:
        sys.path.remove(str(root))
    from mage_ai.settings.repo import get_repo_path

    os.environ["BLOCKYARD_WORKSPACE"] = str(root)
    try:
        assert get_repo_path(root_project=True) == str(root.resolve())
        assert get_repo_path(file_path=str(utils / "where.py")) == expected
    finally:
        del os.environ["BLOCKYARD_WORKSPACE"]


def test_repo_config_global_variables_and_render_decorator(ws):
    root, project = ws
    write_pipeline(root, project, "train", [
        block("load", """
            from mage_ai.data_preparation.repo_manager import get_repo_config
            from mage_ai.data_preparation.variable_manager import (
                get_global_variable, get_global_variables, set_global_variable)

            @data_loader
            def load(*args, **kwargs):
                set_global_variable('train', 'model', 'xgb')
                return {'uuid': get_repo_config().project_uuid,
                        'alpha': get_global_variable('train', 'alpha'),
                        'all': get_global_variables('train'),
                        'missing': get_global_variable('train', 'nope')}
            """, type="data_loader", config=NO_CACHE),
        block("plot", """
            if 'render' not in globals():
                from mage_ai.data_preparation.decorators import render

            @custom
            def plot(data, *args, **kwargs):
                return data['alpha'] * 2

            @render(render_type='jpeg')
            def picture(data, *args, **kwargs):
                return 'not called'
            """, type="custom", upstream=["load"], config=NO_CACHE),
    ], variables={"alpha": 0.5})
    result = run_pipeline(f"{project}/train", workspace=root)
    assert result.ok, result.error
    out = result.output("load")
    assert out["uuid"] == project and out["alpha"] == 0.5 and out["missing"] is None
    assert out["all"] == {"alpha": 0.5, "model": "xgb"}
    assert result.output("plot") == 1.0
    import yaml

    saved = yaml.safe_load((root / project / "pipelines" / "train" / "metadata.yaml").read_text())
    assert saved["variables"] == {"alpha": 0.5, "model": "xgb"}


# ----------------------------------------------------------------- trigger_pipeline
def _trigger_workspace(root: Path, project: str, *, check_status=True, error_on_failure=True) -> None:
    """`parent` triggers `child`; child fails when its variable `fail` is true."""
    write_pipeline(root, project, "child", [
        block("work", """
            @custom
            def work(*args, **kwargs):
                if kwargs.get('fail'):
                    raise RuntimeError('child was asked to fail')
                return kwargs.get('n')
            """, type="custom", config=NO_CACHE),
    ])
    write_pipeline(root, project, "parent", [
        block("kick", f"""
            from mage_ai.orchestration.triggers.api import trigger_pipeline

            @custom
            def kick(*args, **kwargs):
                run = trigger_pipeline(
                    'child',
                    variables={{'fail': kwargs.get('fail', False), 'n': 7}},
                    check_status={check_status},
                    error_on_failure={error_on_failure},
                    poll_interval=0.1,
                    poll_timeout=120,
                    schedule_name=kwargs.get('schedule_name'),
                    verbose=True,
                )
                return {{'id': run.id, 'status': run.status.value, 'variables': run.variables,
                         'schedule': run.pipeline_schedule_id, 'mode': run.mode}}
            """, type="custom", config=NO_CACHE),
    ])


def test_trigger_pipeline_in_process_waits_and_raises_on_failure(ws):
    root, project = ws
    _trigger_workspace(root, project)
    ok = run_pipeline(f"{project}/parent", workspace=root)
    assert ok.ok, ok.error
    out = ok.output("kick")
    assert out["status"] == "completed" and out["mode"] == "local" and out["variables"] == {"fail": False, "n": 7}
    from blockyard.db import open_database
    from blockyard import settings

    db = open_database(settings.database_url_for(settings.data_dir_for(root)))
    try:
        child = db.get_pipeline_run(out["id"])
    finally:
        db.close()
    assert (child["pipeline_uuid"], child["status"]) == ("child", "completed")

    failed = run_pipeline(f"{project}/parent", workspace=root, variables={"fail": True})
    assert failed.status == "failed"
    error = failed.block_runs["kick"].error
    assert "PipelineRunFailed" in error and "of 'child' ended failed" in error
    assert "child was asked to fail" in error


def test_trigger_pipeline_from_the_cli_raises_on_failure(ws):
    root, project = ws
    _trigger_workspace(root, project)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLOCKYARD_")}
    env["COLUMNS"] = "200"
    cli = Path(sys.executable).parent / "blockyard"
    proc = subprocess.run([str(cli), "run", f"{project}/parent", "--var", "fail=true", "-q"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "ended failed" in proc.stderr and "child was asked to fail" in proc.stderr
    ok = subprocess.run([str(cli), "run", f"{project}/parent", "-q"],
                        cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stdout + ok.stderr


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_trigger_pipeline_through_a_worker(ws, tmp_path, monkeypatch, request, backend):
    """A block run by a worker queues the triggered run for the worker, waits for it, and
    raises when it fails; schedule_name files it under an API trigger of that name."""
    from blockyard.db import Database
    from blockyard.orchestration import runs
    from blockyard.orchestration.worker import Worker
    from blockyard.project import Workspace

    root, project = ws
    url = request.getfixturevalue("pg_url") if backend == "postgres" else f"sqlite:///{tmp_path / 'runs.db'}"
    monkeypatch.setenv("BLOCKYARD_DATABASE_URL", url)
    _trigger_workspace(root, project)
    db = Database(url)
    db.migrate()
    worker = Worker(Workspace.open(root), db, concurrency=2, poll_interval=0.05)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run_forever, args=(stop,), daemon=True)
    thread.start()

    def finished(run_id: int) -> dict:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            row = runs.get_run(db, run_id)
            if row["status"] in ("completed", "failed", "cancelled"):
                return row
            time.sleep(0.05)
        raise AssertionError(f"run {run_id} did not finish")

    try:
        good = finished(runs.enqueue_run(db, project=project, pipeline_uuid="parent",
                                         variables={"schedule_name": "from code"})["id"])
        bad = finished(runs.enqueue_run(db, project=project, pipeline_uuid="parent",
                                        variables={"fail": True})["id"])
    finally:
        stop.set()
        thread.join(60)
    assert good["status"] == "completed", good.get("error")
    children = [r for r in db.list_pipeline_runs(project=project, limit=None) if r["pipeline_uuid"] == "child"]
    assert sorted(r["status"] for r in children) == ["completed", "failed"]
    kicked = next(r for r in children if r["status"] == "completed")
    # Ran by the worker (a lease was taken), filed under the named API trigger.
    from blockyard.orchestration.triggers import TriggerStore

    trigger = TriggerStore(Workspace.open(root), db).find(project, "child", "from code")
    assert trigger is not None and trigger["schedule_type"] == "api" and kicked["trigger_id"] == trigger["id"]
    assert bad["status"] == "failed"
    assert "ended failed" in (bad.get("error") or "") + str(db.get_block_runs(bad["id"]))
    db.close()


def test_trigger_pipeline_through_a_real_server(ws, monkeypatch):
    """A script with BLOCKYARD_SERVER_URL: the server queues the run, its worker runs it,
    check_status polls over HTTP (with the API token) and error_on_failure raises."""
    pytest.importorskip("uvicorn")
    from blockyard.compat.triggers import PipelineRunFailed
    from mage_ai.orchestration.triggers.api import trigger_pipeline
    from ui_support import UiServer

    root, project = ws
    _trigger_workspace(root, project)
    server = UiServer(root, token="script-token").start()
    try:
        monkeypatch.setenv("BLOCKYARD_SERVER_URL", server.url)
        monkeypatch.setenv("BLOCKYARD_API_TOKEN", "script-token")
        run = trigger_pipeline(f"{project}/child", variables={"n": 3}, check_status=True, error_on_failure=True,
                               poll_interval=0.05, poll_timeout=120, schedule_name="nightly", verbose=False)
        assert (run.status, run.mode, run.variables) == ("completed", "server", {"n": 3})
        from blockyard.orchestration.triggers import TriggerStore

        st = server.app.state.blockyard
        nightly = TriggerStore(st.workspace, st.db).find(project, "child", "nightly")
        assert nightly is not None and run.pipeline_schedule_id == nightly["id"]
        with pytest.raises(PipelineRunFailed, match=f"of '{project}/child' ended failed"):
            trigger_pipeline(f"{project}/child", variables={"fail": True}, check_status=True,
                             error_on_failure=True, poll_interval=0.05, poll_timeout=120, verbose=False)
        # Without check_status the call returns at once with the queued run.
        queued = trigger_pipeline(f"{project}/child", verbose=False)
        assert queued.id is not None and queued.status in ("queued", "running", "completed")
        monkeypatch.setenv("BLOCKYARD_API_TOKEN", "wrong")
        with pytest.raises(RuntimeError, match="HTTP 401"):
            trigger_pipeline(f"{project}/child", verbose=False)
    finally:
        server.stop()


# ----------------------------------------------------------------- mage_ai.io.postgres
def _io_config(path: Path, pg_url: str, monkeypatch) -> None:
    import sqlalchemy as sa

    url = sa.engine.make_url(pg_url)
    monkeypatch.setenv("TEST_PG_DB", url.database)
    path.write_text(textwrap.dedent(f"""
        version: 0.1.1
        default:
          POSTGRES_CONNECT_TIMEOUT: 10
          POSTGRES_DBNAME: "{{{{ env_var('TEST_PG_DB') }}}}"
          POSTGRES_SCHEMA: public
          POSTGRES_USER: {url.username}
          POSTGRES_PASSWORD: "{url.password or ''}"
          POSTGRES_HOST: {url.host}
          POSTGRES_PORT: {url.port or 5432}
        """))


def test_postgres_io_round_trips_a_dataframe(tmp_path, pg_url, monkeypatch):
    import pandas as pd

    from mage_ai.io.config import ConfigFileLoader, ConfigKey
    from mage_ai.io.postgres import Postgres

    config_path = tmp_path / "io_config.yaml"
    _io_config(config_path, pg_url, monkeypatch)
    schema, table = f"s{uuid.uuid4().hex[:6]}", "trips"
    df = pd.DataFrame({"id": [1, 2, 3], "city": ["a", "b", "c"], "fare": [1.5, 2.25, None],
                       "pickup": pd.to_datetime(["2024-01-01 10:00", "2024-01-02 11:30", "2024-01-03 12:45"])})
    loader_config = ConfigFileLoader(str(config_path), "default")
    assert loader_config[ConfigKey.POSTGRES_DBNAME] == sa_database(pg_url)
    with Postgres.with_config(loader_config, verbose=False) as loader:
        loader.export(df, schema, table, index=False, if_exists="replace")
        back = loader.load(f"SELECT * FROM {schema}.{table} ORDER BY id")
        pd.testing.assert_frame_equal(back, df, check_dtype=False)
        # '%' stays literal SQL, and limit caps the rows.
        assert list(loader.load(f"SELECT city FROM {schema}.{table} WHERE city LIKE '%b%'").city) == ["b"]
        assert len(loader.load(f"SELECT * FROM {schema}.{table}", limit=2)) == 2

        loader.export(df.head(1), schema, table, if_exists="append")
        assert loader.load(f"SELECT count(*) AS n FROM {schema}.{table}").n[0] == 4
        loader.export(df.head(2), schema, table, if_exists="replace")
        assert loader.load(f"SELECT count(*) AS n FROM {schema}.{table}").n[0] == 2
        with pytest.raises(ValueError, match="already exists"):
            loader.export(df, schema, table, if_exists="fail")

        # Upsert on a unique key: row 2 changes, row 4 is new.
        changed = pd.DataFrame({"id": [2, 4], "city": ["B", "d"], "fare": [9.0, 4.0],
                                "pickup": pd.to_datetime(["2024-02-01", "2024-02-02"])})
        loader.export(changed, schema, table, if_exists="append",
                      unique_conflict_method="UPDATE", unique_constraints=["id"])
        rows = loader.load(f"SELECT id, city FROM {schema}.{table} ORDER BY id")
        assert rows.values.tolist() == [[1, "a"], [2, "B"], [4, "d"]]
        assert loader.table_exists(schema, table) and not loader.table_exists(schema, "nope")


def sa_database(pg_url: str) -> str:
    import sqlalchemy as sa

    return sa.engine.make_url(pg_url).database


def test_postgres_io_in_mage_template_blocks(ws, pg_url, monkeypatch):
    root, project = ws
    table = f"t{uuid.uuid4().hex[:8]}"
    write_pipeline(root, project, "etl", [
        block("export_rows", f"""
            import pandas as pd
            from os import path
            from mage_ai.settings.repo import get_repo_path
            from mage_ai.io.config import ConfigFileLoader
            from mage_ai.io.postgres import Postgres

            @data_exporter
            def export_data_to_postgres(*args, **kwargs) -> None:
                df = pd.DataFrame({{'x': [1, 2, 3], 'y': ['u', 'v', 'w']}})
                config_path = path.join(get_repo_path(), 'io_config.yaml')
                with Postgres.with_config(ConfigFileLoader(config_path, 'default')) as loader:
                    loader.export(df, 'public', {table!r}, index=False, if_exists='replace')
            """, type="data_exporter", config=NO_CACHE),
        block("load_rows", f"""
            from os import path
            from mage_ai.settings.repo import get_repo_path
            from mage_ai.io.config import ConfigFileLoader
            from mage_ai.io.postgres import Postgres

            @data_loader
            def load_data_from_postgres(*args, **kwargs):
                config_path = path.join(get_repo_path(), 'io_config.yaml')
                with Postgres.with_config(ConfigFileLoader(config_path, 'default')) as loader:
                    return loader.load('SELECT * FROM public.{table} ORDER BY x')
            """, type="data_loader", upstream=["export_rows"], config=NO_CACHE),
    ])
    _io_config(root / project / "io_config.yaml", pg_url, monkeypatch)
    result = run_pipeline(f"{project}/etl", workspace=root)
    assert result.ok, result.error
    df = result.output("load_rows")
    assert df.x.tolist() == [1, 2, 3] and df.y.tolist() == ["u", "v", "w"]


# ----------------------------------------------------------------- unsupported imports
def test_unsupported_import_names_import_file_and_line(ws):
    root, project = ws
    write_pipeline(root, project, "load", [
        block("load", """
            import os
            from mage_ai.io.config import ConfigFileLoader
            from mage_ai.io.snowflake import Snowflake

            @data_loader
            def load(*args, **kwargs):
                return 1
            """, type="data_loader"),
        block("shared", f"""
            from {project}.utils.helpers import helper

            @custom
            def shared(*args, **kwargs):
                return helper()
            """, type="custom"),
    ])
    utils = root / project / "utils"
    utils.mkdir()
    (utils / "helpers.py").write_text("import json\n\nfrom mage_ai.io import bigquery\n\n\ndef helper():\n    return 1\n")
    result = run_pipeline(f"{project}/load", workspace=root)
    assert result.status == "failed"
    load = result.block_runs["load"]
    assert "mage_ai.io.snowflake is not supported by Blockyard" in load.error
    assert f"{project}/data_loaders/load.py:3" in load.error
    assert "ModuleNotFoundError" not in load.error and "Traceback" not in load.error
    assert load.error.count("not supported") == 1
    helper = result.block_runs["shared"]
    assert "mage_ai.io.bigquery is not supported by Blockyard" in helper.error
    assert f"{project}/utils/helpers.py:3" in helper.error

    env = {k: v for k, v in os.environ.items() if not k.startswith("BLOCKYARD_")}
    env["COLUMNS"] = "300"
    cli = Path(sys.executable).parent / "blockyard"
    proc = subprocess.run([str(cli), "run", f"{project}/load", "--block", "load", "-q"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "mage_ai.io.snowflake is not supported by Blockyard" in proc.stderr
    first = proc.stderr.splitlines()[0]
    assert first.startswith("error: ") and "load.py:3" in first and "mage_ai.io.snowflake" in first
    assert "ModuleNotFoundError" not in proc.stderr + proc.stdout
