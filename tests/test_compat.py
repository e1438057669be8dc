"""The `mage_ai.*` compatibility shim (blockyard.compat)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from blockyard.compat import shim

REPO_SRC = Path(__file__).resolve().parents[1] / "src"


def run_python(code: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter (clean sys.modules and sys.meta_path)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("BLOCKYARD_")}
    full_env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_SRC), *filter(None, [full_env.get("PYTHONPATH")])]
    )
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def check(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(autouse=True)
def _installed():
    shim.install()
    yield


# ------------------------------------------------------------------ the finder
def test_shim_import_and_install_stay_light(tmp_path):
    out = check(
        run_python(
            """
            import sys
            import blockyard.compat.shim as shim
            assert shim.install() is True
            import mage_ai.data_preparation.decorators
            import mage_ai.io.file, mage_ai.io.config, mage_ai.shared.parsers
            import mage_ai.data_preparation.shared.secrets
            import mage_ai.data_preparation.variable_manager
            import mage_ai.orchestration.triggers.api
            heavy = ("pandas", "scipy", "numpy", "pyarrow", "sqlalchemy", "yaml")
            print(sorted(m for m in heavy if m in sys.modules))
            """,
            tmp_path,
        )
    )
    assert out.strip() == "[]"


def test_globals_idiom_yields_the_blockyard_decorator(tmp_path):
    out = check(
        run_python(
            """
            import sys
            try:
                import mage_ai
            except ModuleNotFoundError:
                print("absent before install")
            from blockyard.compat.shim import install
            install()
            import blockyard.engine.decorators as d

            source = '''
            if 'data_loader' not in globals():
                from mage_ai.data_preparation.decorators import data_loader
            if 'test' not in globals():
                from mage_ai.data_preparation.decorators import test

            @data_loader
            def load(*args, **kwargs):
                return 1

            @test
            def check_output(output, *args):
                assert output == 1
            '''
            namespace = {}
            exec(compile(source, "block.py", "exec"), namespace)
            print(namespace["data_loader"] is d.data_loader, namespace["test"] is d.test)
            print(namespace["load"].__blockyard_kind__, namespace["check_output"].__blockyard_kind__)
            """,
            tmp_path,
        )
    )
    assert out.splitlines() == ["absent before install", "True True", "data_loader test"]


def test_install_is_idempotent(tmp_path):
    out = check(
        run_python(
            """
            import sys
            from blockyard.compat import shim
            results = [shim.install() for _ in range(3)]
            finders = [f for f in sys.meta_path if isinstance(f, shim.MageCompatFinder)]
            import mage_ai
            print(results, len(finders), mage_ai.__blockyard_compat__)
            shim.uninstall()
            print(shim.is_installed(), "mage_ai" in sys.modules)
            """,
            tmp_path,
        )
    )
    assert out.splitlines() == ["[True, True, True] 1 True", "False False"]


def test_real_mage_installation_is_left_alone(tmp_path):
    fake = tmp_path / "site" / "mage_ai"
    (fake / "data_preparation").mkdir(parents=True)
    (fake / "__init__.py").write_text("REAL = True\n")
    (fake / "data_preparation" / "__init__.py").write_text("")
    (fake / "data_preparation" / "decorators.py").write_text("def data_loader(f):\n    return 'real'\n")
    out = check(
        run_python(
            """
            import sys
            from blockyard.compat import shim
            print(shim.install(), shim.is_installed())
            from mage_ai.data_preparation.decorators import data_loader
            import mage_ai
            print(mage_ai.REAL, data_loader(None))
            """,
            tmp_path,
            env={"PYTHONPATH": os.pathsep.join([str(REPO_SRC), str(tmp_path / "site")])},
        )
    )
    assert out.splitlines() == ["False False", "True real"]


def test_imported_names_are_the_blockyard_objects():
    import blockyard.compat.fileio as fileio
    import blockyard.compat.ioconfig as ioconfig
    import blockyard.compat.parsers as parsers
    import blockyard.compat.secrets as secrets
    import blockyard.compat.triggers as triggers
    import blockyard.compat.variables as variables
    import blockyard.engine.decorators as decorators
    from mage_ai.data_preparation.decorators import (
        callback,
        custom,
        data_exporter,
        data_loader,
        test,
        transformer,
    )
    from mage_ai.data_preparation.shared.secrets import get_secret_value
    from mage_ai.data_preparation.variable_manager import get_variable, set_global_variable
    from mage_ai.io.config import ConfigFileLoader
    from mage_ai.io.file import FileIO
    from mage_ai.orchestration.triggers.api import trigger_pipeline
    from mage_ai.shared.parsers import convert_matrix_to_dataframe

    assert data_loader is decorators.data_loader
    assert transformer is decorators.transformer
    assert data_exporter is decorators.data_exporter
    assert custom is decorators.custom
    assert test is decorators.test
    assert callback is decorators.callback
    assert FileIO is fileio.FileIO
    assert ConfigFileLoader is ioconfig.ConfigFileLoader
    assert convert_matrix_to_dataframe is parsers.convert_matrix_to_dataframe
    assert get_secret_value is secrets.get_secret_value
    assert set_global_variable is variables.set_global_variable
    assert get_variable is variables.get_variable
    assert trigger_pipeline is triggers.trigger_pipeline

    import mage_ai.data_preparation.decorators as alias

    assert alias.__name__ == "mage_ai.data_preparation.decorators"
    assert "data_loader" in alias.__all__ and "threading" not in alias.__all__
    assert "data_loader" in dir(alias)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        alias.nope  # noqa: B018


@pytest.mark.parametrize(
    "statement, missing",
    [
        ("import mage_ai.data_preparation.models.pipeline", "mage_ai.data_preparation.models"),
        ("from mage_ai.io.snowflake import Snowflake", "mage_ai.io.snowflake"),
        ("import mage_ai.orchestration.db", "mage_ai.orchestration.db"),
    ],
)
def test_unknown_submodule_error_names_it_and_where(statement, missing):
    with pytest.raises(ModuleNotFoundError) as info:
        exec(compile(statement, "blocks/load.py", "exec"), {})
    message = str(info.value)
    assert info.value.name == missing
    assert message.startswith(f"{missing} is not supported by Blockyard (blocks/load.py, line 1): ")
    assert "docs/mage-compat.md" in message
    assert isinstance(info.value, ImportError)


# ------------------------------------------------------------------ FileIO
@pytest.mark.parametrize("ext", ["csv", "parquet", "json"])
def test_fileio_round_trip(tmp_path, ext):
    import pandas as pd
    from mage_ai.io.file import FileIO

    df = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"], "c": [0.5, 1.5, None]})
    path = tmp_path / "nested" / "deeper" / f"data.{ext}"
    FileIO().export(df, path)
    assert path.is_file()
    back = FileIO().load(path)
    pd.testing.assert_frame_equal(back, df, check_dtype=False)
    assert FileIO().load(str(path), limit=2)["a"].tolist() == [1, 2]


def test_fileio_format_argument_overrides_extension(tmp_path):
    import pandas as pd
    from mage_ai.io.file import FileIO

    df = pd.DataFrame({"k": ["p", "q"], "v": [10, 20]})
    path = tmp_path / "out" / "table.dat"
    FileIO().export(df, str(path), format="json")
    assert json.loads(path.read_text()) == [{"k": "p", "v": 10}, {"k": "q", "v": 20}]
    pd.testing.assert_frame_equal(FileIO().load(path, format="json"), df, check_dtype=False)
    with pytest.raises(ValueError, match="cannot tell the format of .*table.dat"):
        FileIO().load(path)
    with pytest.raises(ValueError, match="cannot handle format 'xlsx'"):
        FileIO().export(df, tmp_path / "t.xlsx", format="xlsx")


# ------------------------------------------------------------------ parsers
def test_convert_matrix_to_dataframe_csr_ndarray_list():
    import numpy as np
    import scipy.sparse as sp
    from mage_ai.shared.parsers import convert_matrix_to_dataframe

    dense = np.array([[1.0, 0.0, 2.0], [0.0, 3.0, 0.0]])
    for value in (sp.csr_matrix(dense), dense, dense.tolist()):
        df = convert_matrix_to_dataframe(value)
        assert list(df.columns) == ["0", "1", "2"]
        assert df.shape == (2, 3)
        np.testing.assert_array_equal(df.to_numpy(), dense)
    assert list(convert_matrix_to_dataframe([4, 5]).columns) == ["0"]


# ------------------------------------------------------------------ io config
def test_config_file_loader_reads_profile_and_env(tmp_path, monkeypatch):
    from mage_ai.io.config import ConfigFileLoader

    path = tmp_path / "io_config.yaml"
    path.write_text(
        textwrap.dedent(
            """
            version: 0.1.1
            default:
              POSTGRES_HOST: "{{ env_var('PGHOST_FOR_TEST') }}"
              POSTGRES_PORT: 5432
            dev:
              POSTGRES_HOST: dev.local
            """
        )
    )
    monkeypatch.setenv("PGHOST_FOR_TEST", "db.example")
    loader = ConfigFileLoader(str(path), "default")
    assert loader.config == {"POSTGRES_HOST": "db.example", "POSTGRES_PORT": 5432}
    assert loader["POSTGRES_HOST"] == "db.example"
    assert ConfigFileLoader(path, "dev").config == {"POSTGRES_HOST": "dev.local"}
    with pytest.raises(KeyError) as info:
        ConfigFileLoader(path, "prod")
    assert "no profile 'prod'" in str(info.value) and "dev" in str(info.value)


# ------------------------------------------------------------------ secrets
def _plain_folder(root: Path) -> Path:
    """BLOCKYARD_WORKSPACE may name a folder that is not (yet) a project."""
    root.mkdir(parents=True, exist_ok=True)
    return root


def test_secrets_from_env_then_file(tmp_path, monkeypatch):
    from mage_ai.data_preparation.shared.secrets import get_secret_value

    # A real workspace found by walking up from the block's working directory.
    root = _mage_workspace(tmp_path / "ws")
    monkeypatch.delenv("BLOCKYARD_WORKSPACE", raising=False)
    monkeypatch.delenv("BLOCKYARD_HOME", raising=False)
    monkeypatch.chdir(root / "pipelines" / "train")
    secrets_dir = root / ".blockyard" / "secrets"
    secrets_dir.mkdir(parents=True)
    (secrets_dir / "API_TOKEN_FOR_TEST").write_text("from-file-value\n")
    monkeypatch.delenv("API_TOKEN_FOR_TEST", raising=False)

    assert get_secret_value("API_TOKEN_FOR_TEST") == "from-file-value"
    monkeypatch.setenv("API_TOKEN_FOR_TEST", "from-env-value")
    assert get_secret_value("API_TOKEN_FOR_TEST") == "from-env-value"

    with pytest.raises(ValueError, match="path separators"):
        get_secret_value("../API_TOKEN_FOR_TEST")


def test_missing_secret_error_names_places_but_no_values(tmp_path, monkeypatch):
    from blockyard.compat.secrets import SecretNotFound
    from mage_ai.data_preparation.shared.secrets import get_secret_value

    root = _plain_folder(tmp_path / "ws")
    monkeypatch.setenv("BLOCKYARD_WORKSPACE", str(root))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BLOCKYARD_HOME", raising=False)
    secrets_dir = root / ".blockyard" / "secrets"
    secrets_dir.mkdir(parents=True)
    (secrets_dir / "DB_PASSWORD").write_text("hunter2-file")
    (secrets_dir / "DB_PASSWORD_OLD").write_text("hunter2-old")
    monkeypatch.setenv("DB_PASSWORD", "hunter2-env")
    monkeypatch.delenv("DB_PASSWORD_NEW", raising=False)

    with pytest.raises(KeyError) as info:
        get_secret_value("DB_PASSWORD_NEW")
    err = info.value
    assert isinstance(err, SecretNotFound)
    text = f"{err} {err!r} {err.args}"
    for value in ("hunter2",):
        assert value not in text
    assert "secret 'DB_PASSWORD_NEW' not found" in str(err)
    assert "environment variable DB_PASSWORD_NEW" in str(err)
    assert str(secrets_dir / "DB_PASSWORD_NEW") in str(err)


def test_registered_secret_provider_extends_lookup(monkeypatch):
    from blockyard.compat import secrets

    monkeypatch.delenv("VAULTED_FOR_TEST", raising=False)
    calls = []

    def vault(name):
        calls.append(name)
        return "vault-value" if name == "VAULTED_FOR_TEST" else None

    vault.where = lambda name: f"test vault entry {name}"
    secrets.register_secret_provider(vault)
    try:
        assert secrets.get_secret_value("VAULTED_FOR_TEST") == "vault-value"
        with pytest.raises(secrets.SecretNotFound, match="test vault entry OTHER_FOR_TEST"):
            secrets.get_secret_value("OTHER_FOR_TEST")
        monkeypatch.setenv("VAULTED_FOR_TEST", "env-wins")
        assert secrets.get_secret_value("VAULTED_FOR_TEST") == "env-wins"
    finally:
        secrets.unregister_secret_provider(vault)
    assert calls == ["VAULTED_FOR_TEST", "OTHER_FOR_TEST"]
    monkeypatch.delenv("VAULTED_FOR_TEST")
    with pytest.raises(secrets.SecretNotFound):
        secrets.get_secret_value("VAULTED_FOR_TEST")


# ------------------------------------------------------------------ trigger_pipeline
class _RecordingServer:
    """A real local HTTP server answering the run endpoints and recording requests."""

    def __init__(self, final_status: str = "completed", polls_before_final: int = 1):
        self.requests: list[dict] = []
        self.final_status = final_status
        self.polls_before_final = polls_before_final
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(200 if self.command == "GET" else 201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"null")
                outer.requests.append(
                    {"method": "POST", "path": self.path, "body": body,
                     "content_type": self.headers.get("Content-Type")}
                )
                self._reply({"id": 41, "status": "running"})

            def do_GET(self):
                outer.requests.append({"method": "GET", "path": self.path})
                polls = sum(1 for r in outer.requests if r["method"] == "GET")
                status = outer.final_status if polls > outer.polls_before_final else "running"
                self._reply({"id": 41, "status": status, "error": "boom" if status == "failed" else None})

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_trigger_pipeline_posts_to_server(monkeypatch):
    from mage_ai.orchestration.triggers.api import trigger_pipeline

    with _RecordingServer() as server:
        monkeypatch.setenv("BLOCKYARD_SERVER_URL", server.url + "/")
        run = trigger_pipeline(
            "sklearn_training",
            variables={"model": "Lasso", "alpha": 0.5},
            schedule_name="Automatic retraining",
            verbose=False,
        )
    assert server.requests == [
        {
            "method": "POST",
            "path": "/api/pipelines/sklearn_training/runs",
            "body": {"variables": {"model": "Lasso", "alpha": 0.5},
                     "schedule_name": "Automatic retraining"},
            "content_type": "application/json",
        }
    ]
    assert (run.id, run.status) == (41, "running")


def test_trigger_pipeline_server_check_status_polls_until_done(monkeypatch):
    from blockyard.compat.triggers import PipelineRunFailed
    from mage_ai.orchestration.triggers.api import trigger_pipeline

    with _RecordingServer(polls_before_final=2) as server:
        monkeypatch.setenv("BLOCKYARD_SERVER_URL", server.url)
        run = trigger_pipeline(
            "unit_2_training/xgboost_training", check_status=True, error_on_failure=True,
            poll_interval=0.01, verbose=False,
        )
    assert run.status == "completed" and run.id == 41
    base = "/api/pipelines/unit_2_training%2Fxgboost_training/runs"
    assert [r["path"] for r in server.requests] == [base, f"{base}/41", f"{base}/41", f"{base}/41"]
    assert server.requests[0]["body"] == {"variables": {}, "schedule_name": None}

    with _RecordingServer(final_status="failed", polls_before_final=0) as server:
        monkeypatch.setenv("BLOCKYARD_SERVER_URL", server.url)
        with pytest.raises(PipelineRunFailed, match="run 41 of 'p' ended failed: boom"):
            trigger_pipeline("p", check_status=True, error_on_failure=True,
                             poll_interval=0.01, verbose=False)
        # Without error_on_failure the failed run is returned.
        run = trigger_pipeline("p", check_status=True, poll_interval=0.01, verbose=False)
        assert run.status == "failed"


def test_trigger_pipeline_server_poll_timeout(monkeypatch):
    from mage_ai.orchestration.triggers.api import trigger_pipeline

    with _RecordingServer(polls_before_final=10**6) as server:
        monkeypatch.setenv("BLOCKYARD_SERVER_URL", server.url)
        with pytest.raises(TimeoutError, match="still running"):
            trigger_pipeline("p", check_status=True, poll_interval=0.01, poll_timeout=0.1,
                             verbose=False)


class _FakeResult:
    def __init__(self, run_id, status, error=None):
        self.run_id, self.status, self.error = run_id, status, error


def _fake_engine_api(monkeypatch, result=None, exc=None, gate=None):
    import types

    calls = []

    def run_pipeline(pipeline, *, variables=None, **kwargs):
        calls.append((pipeline, variables, threading.current_thread()))
        if gate is not None:
            gate.wait(5)
        if exc is not None:
            raise exc
        return result

    module = types.ModuleType("blockyard.api")
    module.run_pipeline = run_pipeline
    monkeypatch.setitem(sys.modules, "blockyard.api", module)
    monkeypatch.delenv("BLOCKYARD_SERVER_URL", raising=False)
    return calls


def test_trigger_pipeline_in_process_sync_and_failure(monkeypatch):
    from blockyard.compat.triggers import PipelineRunFailed
    from mage_ai.orchestration.triggers.api import trigger_pipeline

    calls = _fake_engine_api(monkeypatch, result=_FakeResult(5, "completed"))
    run = trigger_pipeline("p", variables={"x": 1}, check_status=True, verbose=False)
    assert (run.id, run.status) == (5, "completed")
    assert calls[0][:2] == ("p", {"x": 1}) and calls[0][2] is threading.current_thread()

    _fake_engine_api(monkeypatch, result=_FakeResult(6, "failed", "block 'b' failed"))
    with pytest.raises(PipelineRunFailed, match="run 6 of 'p' ended failed: block 'b' failed"):
        trigger_pipeline("p", check_status=True, error_on_failure=True, verbose=False)
    assert trigger_pipeline("p", check_status=True, verbose=False).status == "failed"

    _fake_engine_api(monkeypatch, exc=RuntimeError("executor died"))
    with pytest.raises(PipelineRunFailed, match="RuntimeError: executor died"):
        trigger_pipeline("p", check_status=True, error_on_failure=True, verbose=False)


def test_trigger_pipeline_in_process_background_thread(monkeypatch):
    from mage_ai.orchestration.triggers.api import trigger_pipeline

    gate = threading.Event()
    calls = _fake_engine_api(monkeypatch, result=_FakeResult(9, "completed"), gate=gate)
    run = trigger_pipeline("p", variables={"y": 2}, verbose=False)
    assert run.status == "running"  # returned before the run finished
    thread = run._thread
    assert thread is not None and not thread.daemon and thread.is_alive()
    gate.set()
    run.wait(5)
    assert (run.id, run.status) == (9, "completed")
    assert calls[0][:2] == ("p", {"y": 2}) and calls[0][2] is thread


# ------------------------------------------------------------------ variables (project layer)
def _project_layer():
    try:
        from blockyard.project import Workspace  # noqa: F401
    except ImportError:
        return False
    return True


needs_project = pytest.mark.skipif(
    not _project_layer(), reason="blockyard.project.Workspace is not available yet"
)


def _mage_workspace(root: Path) -> Path:
    """A single-project Mage workspace with one pipeline `train` (one block `load`)."""
    (root / "pipelines" / "train").mkdir(parents=True)
    (root / "data_loaders").mkdir()
    (root / "metadata.yaml").write_text("project_uuid: demo\nproject_type: standalone\n")
    (root / "data_loaders" / "load.py").write_text(
        "@data_loader\ndef load(*args, **kwargs):\n    return 1\n"
    )
    (root / "pipelines" / "train" / "metadata.yaml").write_text(
        textwrap.dedent(
            """
            blocks:
            - all_upstream_blocks_executed: true
              downstream_blocks: []
              executor_type: local_python
              language: python
              name: load
              type: data_loader
              upstream_blocks: []
              uuid: load
            description: keep me
            name: train
            type: python
            uuid: train
            variables:
              alpha: 0.1
            """
        ).lstrip()
    )
    return root


@needs_project
def test_set_global_variable_writes_metadata_yaml(tmp_path, monkeypatch):
    import yaml
    from mage_ai.data_preparation.variable_manager import set_global_variable

    root = _mage_workspace(tmp_path / "ws")
    monkeypatch.setenv("BLOCKYARD_WORKSPACE", str(root))
    monkeypatch.chdir(tmp_path)
    set_global_variable("train", "model", "Lasso")
    set_global_variable("train", "alpha", 0.5)
    data = yaml.safe_load((root / "pipelines" / "train" / "metadata.yaml").read_text())
    assert data["variables"] == {"alpha": 0.5, "model": "Lasso"}
    assert data["description"] == "keep me"
    assert [b["uuid"] for b in data["blocks"]] == ["load"]


def _store_layers():
    try:
        from blockyard.db import Database  # noqa: F401
        from blockyard.store import ArtifactStore  # noqa: F401
    except ImportError:
        return False
    return _project_layer()


@pytest.mark.skipif(not _store_layers(), reason="project/db/store layers are not available yet")
def test_get_variable_reads_latest_completed_output(tmp_path, monkeypatch):
    import pandas as pd

    from blockyard import settings
    from blockyard.compat.variables import VariableNotFound
    from blockyard.db import Database
    from blockyard.project import Workspace
    from blockyard.store import ArtifactStore
    from mage_ai.data_preparation.variable_manager import get_variable

    root = _mage_workspace(tmp_path / "ws")
    monkeypatch.setenv("BLOCKYARD_WORKSPACE", str(root))
    for name in ("BLOCKYARD_HOME", "BLOCKYARD_DATABASE_URL", "BLOCKYARD_STORE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)

    with pytest.raises(VariableNotFound, match="no completed run"):
        get_variable("train", "load")

    spec = Workspace.discover().find_pipeline("train")
    data_dir = settings.data_dir_for(root)
    db = Database(settings.database_url_for(data_dir))
    db.migrate()
    store = ArtifactStore(settings.store_url_for(data_dir))
    frames = {}
    for n, status in ((1, "completed"), (2, "completed"), (3, "failed")):
        run_id = db.create_pipeline_run(
            project=spec.project.name, pipeline_uuid=spec.uuid, block_uuids=["load"]
        )
        frames[run_id] = pd.DataFrame({"n": [n, n * 10]})
        store.save_outputs(run_id, "load", [frames[run_id], {"run": n}])
        rec = db.recorder()
        rec.update_block_run(run_id, "load", status=status, output_ref=f"{run_id}/load")
        rec.close()
    db.close()
    newest_completed = sorted(frames)[1]

    pd.testing.assert_frame_equal(get_variable("train", "load"), frames[newest_completed])
    assert get_variable("train", "load", "output_1") == {"run": 2}
    with pytest.raises(VariableNotFound, match="stored 2 output"):
        get_variable("train", "load", "output_2")
    with pytest.raises(VariableNotFound, match="output_0, output_1"):
        get_variable("train", "load", "df")


def _engine_layer():
    try:
        from blockyard.api import run_pipeline  # noqa: F401
    except ImportError:
        return False
    return _store_layers()


@pytest.mark.skipif(not _engine_layer(), reason="blockyard.api is not available yet")
def test_mage_block_runs_in_process_end_to_end(tmp_path, monkeypatch):
    """A Mage-style block using the shim, run through trigger_pipeline, read with get_variable."""
    import yaml

    from blockyard.session import reset_sessions
    from mage_ai.data_preparation.variable_manager import get_variable
    from mage_ai.orchestration.triggers.api import trigger_pipeline

    root = _mage_workspace(tmp_path / "ws")
    (root / "data_loaders" / "load.py").write_text(
        textwrap.dedent(
            """
            if 'data_loader' not in globals():
                from mage_ai.data_preparation.decorators import data_loader
            from mage_ai.data_preparation.variable_manager import set_global_variable

            @data_loader
            def load(*args, **kwargs):
                set_global_variable('train', 'seen', kwargs['alpha'])
                return kwargs['alpha'] * 2
            """
        )
    )
    monkeypatch.setenv("BLOCKYARD_WORKSPACE", str(root))
    for name in ("BLOCKYARD_HOME", "BLOCKYARD_DATABASE_URL", "BLOCKYARD_STORE_URL",
                 "BLOCKYARD_SERVER_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    try:
        run = trigger_pipeline("train", variables={"alpha": 3}, check_status=True,
                               error_on_failure=True, verbose=False)
        assert run.status == "completed" and isinstance(run.id, int)
        assert get_variable("train", "load") == 6
        meta = yaml.safe_load((root / "pipelines" / "train" / "metadata.yaml").read_text())
        assert meta["variables"] == {"alpha": 0.1, "seen": 3}

        background = trigger_pipeline("train", verbose=False).wait(60)
        assert background.status == "completed" and background.id != run.id
        assert get_variable("train", "load") == pytest.approx(0.2)
    finally:
        reset_sessions()


def test_trigger_pipeline_server_errors_are_clear_and_hide_credentials(monkeypatch):
    import socket

    from mage_ai.orchestration.triggers.api import trigger_pipeline

    with socket.socket() as sock:  # a port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("BLOCKYARD_SERVER_URL", f"http://admin:s3cr3t-pw@127.0.0.1:{port}")
    with pytest.raises(ConnectionError) as info:
        trigger_pipeline("p", verbose=False)
    assert f"POST http://127.0.0.1:{port}/api/pipelines/p/runs failed" in str(info.value)
    assert "s3cr3t-pw" not in str(info.value)
