"""Tests for blockyard.project: reading, validating, editing and scaffolding Mage-format projects."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from blockyard.errors import PipelineNotFound, ProjectError
from blockyard.project import (
    BlockSpec,
    PipelineSpec,
    Workspace,
    find_cycle,
    init_workspace,
    new_block,
    new_pipeline,
    new_project,
)
from blockyard.project.templating import TEMPLATE_TYPES, block_template

CODE = "@transformer\ndef f(data, *args, **kwargs):\n    return data\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def mage_dump(data) -> str:
    """How Mage writes metadata.yaml (yaml.dump, sorted keys, block style)."""
    return yaml.safe_dump(data, default_flow_style=False)


def mage_block(uuid, type_, upstream=(), downstream=(), project="unit_2_training", path=None, **config):
    folder = {
        "data_loader": "data_loaders",
        "transformer": "transformers",
        "data_exporter": "data_exporters",
        "custom": "custom",
        "markdown": "markdowns",
        "global_data_product": "global_data_products",
    }[type_]
    ext = ".md" if type_ == "markdown" else ".py"
    configuration = dict(config)
    configuration["file_source"] = {"path": path or f"{project}/{folder}/{uuid}{ext}"}
    return {
        "all_upstream_blocks_executed": True,
        "color": None,
        "configuration": configuration,
        "downstream_blocks": list(downstream),
        "executor_config": None,
        "executor_type": "local_python",
        "has_callback": False,
        "language": "markdown" if type_ == "markdown" else "python",
        "name": uuid,
        "retry_config": None,
        "status": "executed",
        "timeout": None,
        "type": type_,
        "upstream_blocks": list(upstream),
        "uuid": uuid,
    }


SKLEARN_RAW = {
    "blocks": [
        mage_block("training_set", "global_data_product", downstream=["hyperparameter_tuning/sklearn"],
                   global_data_product={"uuid": "training_set"}),
        mage_block("dynamic_block_info", "markdown"),
        mage_block("load_models", "custom", downstream=["hyperparameter_tuning/sklearn"], dynamic=True),
        mage_block("hyperparameter_tuning/sklearn", "transformer", upstream=["training_set", "load_models"],
                   downstream=["sklearn"]),
        mage_block("sklearn", "data_exporter", upstream=["hyperparameter_tuning/sklearn"],
                   downstream=["prepare_histogram_u9"], reduce_output=True),
    ],
    "cache_block_output_in_memory": False,
    "callbacks": [],
    "concurrency_config": {},
    "conditionals": [],
    "created_at": "2024-05-15 01:11:30.960600+00:00",
    "data_integration": None,
    "description": "Train models from the sklearn library (e.g. ExtraTreesRegressor, GradientBoostingRegressor, "
    "Lasso, LinearRegression, LinearSVR, RandomForestRegressor).",
    "executor_config": {},
    "executor_count": 1,
    "executor_type": None,
    "extensions": {},
    "name": "sklearn training",
    "notification_config": {},
    "remote_variables_dir": None,
    "retry_config": {"retries": 2, "delay": 5},
    "run_pipeline_in_one_process": False,
    "settings": {"triggers": None},
    "spark_config": {},
    "tags": [],
    "type": "python",
    "uuid": "sklearn_training",
    "variables": {"max_evaluations": 50, "random_state": 7},
    "variables_dir": "/root/.mage_data/unit_2_training",
    "widgets": [
        {
            "configuration": {"chart_type": "histogram", "buckets": "20", "x": "x"},
            "type": "chart",
            "upstream_blocks": ["sklearn"],
            "downstream_blocks": [],
            "uuid": "prepare_histogram_u9",
        }
    ],
}


@pytest.fixture
def mlops(tmp_path, monkeypatch) -> Path:
    """A Mage multi-project workspace like mage-ai/mlops (root has settings.yaml AND metadata.yaml)."""
    monkeypatch.delenv("BLOCKYARD_WORKSPACE", raising=False)
    monkeypatch.delenv("BLOCKYARD_HOME", raising=False)
    root = tmp_path / "mlops"
    write(root / "settings.yaml", "projects:\n  unit_1_data_preparation: {}\n  unit_2_training: {}\n")
    write(root / "metadata.yaml", "project_type: standalone\nvariables_dir: ~/.mage_data\n")
    # unit_1
    p1 = root / "unit_1_data_preparation"
    write(p1 / "metadata.yaml", """
        project_type: standalone
        variables_dir: ~/.mage_data
        # comment
        notification_config:
          alert_on:
          - trigger_failure
        project_uuid: unit_1_data_preparation
        """)
    write(p1 / "data_loaders/ingest.py", "@data_loader\ndef load(*a, **k):\n    return 1\n")
    write(p1 / "transformers/prepare.py", CODE)
    write(p1 / "pipelines/data_preparation/metadata.yaml", mage_dump({
        "blocks": [
            mage_block("ingest", "data_loader", downstream=["prepare"], project="unit_1_data_preparation"),
            mage_block("prepare", "transformer", upstream=["ingest"], project="unit_1_data_preparation"),
        ],
        "name": "Data preparation",
        "type": "python",
        "uuid": "data_preparation",
        "variables": {"target": "duration"},
    }))
    write(p1 / "pipelines/shared_name/metadata.yaml", mage_dump({"blocks": [], "uuid": "shared_name"}))
    # unit_2
    p2 = root / "unit_2_training"
    write(p2 / "metadata.yaml", "project_uuid: unit_2_training\nvariables_dir: ~/.mage_data\n")
    write(p2 / "custom/load_models.py", "@custom\ndef models(*a, **k):\n    return []\n")
    write(p2 / "transformers/hyperparameter_tuning/sklearn.py", CODE)
    write(p2 / "data_exporters/sklearn.py", "@data_exporter\ndef export(*a, **k):\n    pass\n")
    write(p2 / "markdowns/dynamic_block_info.md", "# Info\n")
    write(p2 / "pipelines/sklearn_training/metadata.yaml", mage_dump(SKLEARN_RAW))
    write(p2 / "pipelines/sklearn_training/triggers.yaml", """
        triggers:
        - name: hourly
          schedule_interval: '@hourly'
          schedule_type: time
        """)
    write(p2 / "pipelines/shared_name/metadata.yaml", mage_dump({"blocks": [], "uuid": "shared_name"}))
    write(p2 / "global_data_products.yaml", """
        training_set:
          object_type: pipeline
          object_uuid: data_preparation
          outdated_after:
            seconds: 600
          project: unit_2_training
          settings:
            build:
              partitions: 1
        """)
    return root


def training(mlops: Path) -> PipelineSpec:
    return Workspace.open(mlops).find_pipeline("unit_2_training/sklearn_training")


# ---------------------------------------------------------------- workspaces


def test_multi_project_workspace(mlops):
    ws = Workspace.open(mlops)
    assert ws.multi_project is True  # settings.yaml wins over the root metadata.yaml
    assert ws.root == mlops.resolve() and ws.name == "mlops"
    assert ws.data_dir == mlops.resolve() / ".blockyard"
    assert ws.project_names() == ["unit_1_data_preparation", "unit_2_training"]
    p1 = ws.project("unit_1_data_preparation")
    assert p1.path == mlops.resolve() / "unit_1_data_preparation"
    assert p1.metadata["notification_config"] == {"alert_on": ["trigger_failure"]}
    assert p1.metadata["project_uuid"] == "unit_1_data_preparation"
    assert p1.pipeline_uuids() == ["data_preparation", "shared_name"]
    assert ws.pipeline_refs() == [
        "unit_1_data_preparation/data_preparation",
        "unit_1_data_preparation/shared_name",
        "unit_2_training/shared_name",
        "unit_2_training/sklearn_training",
    ]
    with pytest.raises(ProjectError, match="unit_1_data_preparation, unit_2_training"):
        ws.project("nope")


def test_settings_list_form_and_paths(tmp_path):
    write(tmp_path / "settings.yaml", "projects:\n- alpha\n- name: beta\n  path: nested/beta\n- gamma: {path: g}\n")
    write(tmp_path / "nested/beta/pipelines/p/metadata.yaml", "blocks: []\n")
    ws = Workspace.open(tmp_path)
    assert ws.project_names() == ["alpha", "beta", "gamma"]
    assert ws.project("beta").path == tmp_path.resolve() / "nested/beta"
    assert ws.project("gamma").path == tmp_path.resolve() / "g"
    assert ws.find_pipeline("p").project.name == "beta"
    assert ws.project("alpha").pipeline_uuids() == []  # listed but folder missing: no pipelines


def test_settings_project_path_outside_workspace_is_refused(tmp_path):
    write(tmp_path / "settings.yaml", "projects:\n  evil:\n    path: ../elsewhere\n")
    with pytest.raises(ProjectError) as err:
        Workspace.open(tmp_path)
    assert "settings.yaml:2" in str(err.value) and "inside the workspace" in str(err.value)


def test_single_project_workspace(tmp_path):
    root = tmp_path / "unit_2_training"
    write(root / "metadata.yaml", "project_uuid: x\n")
    write(root / "custom/load_models.py", "x = 1\n")
    raw = {"blocks": [mage_block("load_models", "custom")], "uuid": "train"}
    write(root / "pipelines/train/metadata.yaml", mage_dump(raw))
    ws = Workspace.open(root)
    assert ws.multi_project is False
    assert ws.project_names() == ["unit_2_training"]
    assert ws.project("unit_2_training").path == root.resolve()
    spec = ws.find_pipeline("train")
    assert spec is not None and ws.find_pipeline("unit_2_training/train").uuid == "train"
    # file_source 'unit_2_training/custom/load_models.py' resolves inside the project folder
    assert spec.block("load_models").file_path == root.resolve() / "custom/load_models.py"
    spec.validate()
    with pytest.raises(ProjectError, match="single-project"):
        ws.add_project("another")


def test_not_a_workspace(tmp_path):
    with pytest.raises(ProjectError, match="not a workspace"):
        Workspace.open(tmp_path)


def test_discover(mlops, monkeypatch, tmp_path):
    deep = mlops / "unit_2_training/transformers/hyperparameter_tuning"
    monkeypatch.chdir(deep)
    assert Workspace.discover().root == mlops.resolve()
    # from inside a project folder listed in the enclosing settings.yaml: the multi-project root
    monkeypatch.chdir(mlops / "unit_2_training")
    assert Workspace.discover().multi_project is True
    # a pipeline's metadata.yaml is not mistaken for a workspace
    monkeypatch.chdir(mlops / "unit_2_training/pipelines/sklearn_training")
    assert Workspace.discover().root == mlops.resolve()
    # a standalone project folder
    single = tmp_path / "solo"
    write(single / "metadata.yaml", "project_uuid: solo\n")
    (single / "data_loaders").mkdir()
    monkeypatch.chdir(single / "data_loaders")
    ws = Workspace.discover()
    assert ws.root == single.resolve() and not ws.multi_project
    # BLOCKYARD_WORKSPACE wins
    monkeypatch.setenv("BLOCKYARD_WORKSPACE", str(mlops))
    assert Workspace.discover().root == mlops.resolve()
    monkeypatch.delenv("BLOCKYARD_WORKSPACE")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ProjectError, match="no workspace found"):
        Workspace.discover(empty)


# ---------------------------------------------------------------- find_pipeline


def test_find_pipeline(mlops):
    ws = Workspace.open(mlops)
    assert ws.find_pipeline("sklearn_training").project.name == "unit_2_training"
    spec = ws.find_pipeline("unit_1_data_preparation/data_preparation")
    assert spec.uuid == "data_preparation" and spec.project.name == "unit_1_data_preparation"

    with pytest.raises(PipelineNotFound) as err:
        ws.find_pipeline("shared_name")
    msg = str(err.value)
    assert "ambiguous" in msg
    assert "unit_1_data_preparation/shared_name" in msg and "unit_2_training/shared_name" in msg

    with pytest.raises(PipelineNotFound) as err:
        ws.find_pipeline("nope")
    assert "unit_2_training/sklearn_training" in str(err.value)
    assert "unit_1_data_preparation/data_preparation" in str(err.value)

    with pytest.raises(PipelineNotFound) as err:
        ws.find_pipeline("unit_2_training/data_preparation")
    assert "unit_1_data_preparation/data_preparation" in str(err.value)

    with pytest.raises(PipelineNotFound, match="no project 'unit_9'"):
        ws.find_pipeline("unit_9/x")
    with pytest.raises(PipelineNotFound):
        ws.project("unit_2_training").pipeline("../unit_1_data_preparation/pipelines/data_preparation")


# ---------------------------------------------------------------- reading specs


def test_pipeline_and_block_fields(mlops):
    spec = training(mlops)
    assert spec.uuid == "sklearn_training" and spec.name == "sklearn training"
    assert spec.description.startswith("Train models") and spec.type == "python"
    assert spec.variables == {"max_evaluations": 50, "random_state": 7}
    assert spec.retry_config == {"retries": 2, "delay": 5}
    assert spec.path == mlops.resolve() / "unit_2_training/pipelines/sklearn_training/metadata.yaml"
    assert spec.block_uuids() == [
        "training_set", "dynamic_block_info", "load_models", "hyperparameter_tuning/sklearn", "sklearn"
    ]
    assert [w.uuid for w in spec.widgets] == ["prepare_histogram_u9"]
    assert spec.widgets[0].type == "chart" and spec.widgets[0].group == "widgets"
    assert spec.raw["variables_dir"] == "/root/.mage_data/unit_2_training"

    load_models = spec.block("load_models")
    assert load_models.dynamic is True and load_models.reduce_output is False
    assert spec.block("sklearn").reduce_output is True
    assert load_models.retry_config is None and load_models.timeout is None
    assert load_models.language == "python" and load_models.type == "custom"
    assert load_models.downstream_blocks == ["hyperparameter_tuning/sklearn"]

    project = mlops.resolve() / "unit_2_training"
    assert spec.block("hyperparameter_tuning/sklearn").file_path == project / "transformers/hyperparameter_tuning/sklearn.py"
    assert spec.block("hyperparameter_tuning/sklearn").upstream_blocks == ["training_set", "load_models"]
    assert spec.block("dynamic_block_info").file_path == project / "markdowns/dynamic_block_info.md"
    assert spec.block("training_set").file_path is None  # global data products have no code file
    assert spec.triggers()[0]["schedule_interval"] == "@hourly"
    spec.validate()


def test_global_data_products(mlops):
    gdp = Workspace.open(mlops).project("unit_2_training").global_data_products()
    assert gdp["training_set"]["object_uuid"] == "data_preparation"
    assert gdp["training_set"]["outdated_after"] == {"seconds": 600}
    assert gdp["training_set"]["settings"] == {"build": {"partitions": 1}}
    assert Workspace.open(mlops).project("unit_1_data_preparation").global_data_products() == {}


def _one_block_pipeline(mlops, block: dict) -> PipelineSpec:
    path = mlops / "unit_2_training/pipelines/one/metadata.yaml"
    write(path, mage_dump({"blocks": [block], "uuid": "one"}))
    return Workspace.open(mlops).find_pipeline("unit_2_training/one")


def test_file_source_resolution(mlops):
    project = mlops.resolve() / "unit_2_training"
    target = project / "custom/load_models.py"
    for source in [
        "unit_2_training/custom/load_models.py",  # relative to the workspace root (Mage)
        "custom/load_models.py",  # relative to the project folder
        "mlops/unit_2_training/custom/load_models.py",  # starting with the workspace folder name
        "/home/src/default_repo/mlops/unit_2_training/custom/load_models.py",  # absolute from another machine
    ]:
        spec = _one_block_pipeline(mlops, mage_block("load_models", "custom", path=source))
        assert spec.block("load_models").file_path == target, source

    # a file in another folder wins over the default location
    write(project / "utils/odd_place.py", "x = 1\n")
    spec = _one_block_pipeline(mlops, mage_block("load_models", "custom", path="unit_2_training/utils/odd_place.py"))
    assert spec.block("load_models").file_path == project / "utils/odd_place.py"

    # no file_source, or one that leaves the workspace: <project>/<type dir>/<uuid>.py
    raw = mage_block("load_models", "custom")
    del raw["configuration"]["file_source"]
    assert _one_block_pipeline(mlops, raw).block("load_models").file_path == target
    spec = _one_block_pipeline(mlops, mage_block("load_models", "custom", path="../../../etc/passwd"))
    assert spec.block("load_models").file_path == target

    # subfolder uuid without file_source
    raw = mage_block("hyperparameter_tuning/sklearn", "transformer")
    del raw["configuration"]["file_source"]
    spec = _one_block_pipeline(mlops, raw)
    assert spec.block("hyperparameter_tuning/sklearn").file_path == project / "transformers/hyperparameter_tuning/sklearn.py"


# ---------------------------------------------------------------- bad input


def _pipeline_error(mlops, text: str) -> ProjectError:
    path = write(mlops / "unit_2_training/pipelines/bad/metadata.yaml", text)
    with pytest.raises(ProjectError) as err:
        Workspace.open(mlops).find_pipeline("unit_2_training/bad")
    assert err.value.file == str(path.resolve())
    assert str(path.resolve()) in str(err.value)
    return err.value


def test_malformed_yaml_names_file_and_line(mlops):
    err = _pipeline_error(mlops, """
        blocks:
        - uuid: a
          type: custom
          upstream_blocks: [b
        name: x
        """)
    assert err.line == 5
    assert f"metadata.yaml:{err.line}" in str(err) and "invalid YAML" in str(err)


def test_metadata_not_a_mapping(mlops):
    err = _pipeline_error(mlops, "- just\n- a list\n")
    assert "must be a mapping" in str(err) and "list" in str(err) and err.line == 1


def test_empty_pipeline_metadata(mlops):
    err = _pipeline_error(mlops, "")
    assert "empty" in str(err)


def test_block_missing_uuid(mlops):
    err = _pipeline_error(mlops, """
        blocks:
        - uuid: a
          type: custom
        - name: Second block
          type: custom
        """)
    assert err.line == 4 and "has no 'uuid'" in str(err) and "entry 2 of 'blocks'" in str(err)
    assert "metadata.yaml:4" in str(err)


def test_upstream_blocks_not_a_list(mlops):
    err = _pipeline_error(mlops, """
        blocks:
        - uuid: a
          type: custom
        - uuid: b
          type: custom
          upstream_blocks: a
        """)
    assert err.block == "b" and err.line == 6
    assert "'upstream_blocks' must be a list" in str(err) and "block 'b'" in str(err)


def test_other_wrong_types(mlops):
    err = _pipeline_error(mlops, "blocks:\n- uuid: a\n  type: custom\n  timeout: soon\n")
    assert err.block == "a" and err.line == 4 and "timeout" in str(err)
    err = _pipeline_error(mlops, "blocks:\n- uuid: a\n  type: custom\n  configuration: [1]\n")
    assert err.line == 4 and "'configuration' must be a mapping" in str(err)
    err = _pipeline_error(mlops, "blocks:\n- uuid: a\n  type: custom\n  retry_config: 3\n")
    assert err.line == 4 and "retry_config" in str(err)
    err = _pipeline_error(mlops, "blocks:\n- uuid: a\n  type: custom\nvariables: [1, 2]\n")
    assert err.line == 4 and "'variables' must be a mapping" in str(err)
    err = _pipeline_error(mlops, "blocks:\n- just a string\n")
    assert err.line == 2 and "must be a mapping" in str(err)
    err = _pipeline_error(mlops, "blocks:\n- uuid: a\n")
    assert "no 'type'" in str(err) and err.block == "a"
    err = _pipeline_error(mlops, "blocks:\n- uuid: ../../evil\n  type: custom\n")
    assert "not a safe relative name" in str(err) and err.line == 2
    # numeric strings are fine for timeout
    path = write(mlops / "unit_2_training/pipelines/ok/metadata.yaml", "blocks:\n- uuid: a\n  type: custom\n  timeout: '30'\n")
    assert PipelineSpec.load(path).block("a").timeout == 30.0


def test_bad_settings_and_gdp_files(mlops):
    write(mlops / "settings.yaml", "projects:\n  a: 5\n")
    with pytest.raises(ProjectError) as err:
        Workspace.open(mlops)
    assert "settings.yaml:2" in str(err.value) and "must be a mapping" in str(err.value)
    write(mlops / "settings.yaml", "projects: [unit_2_training]\n")
    write(mlops / "unit_2_training/global_data_products.yaml", "training_set:\n  object_type: pipeline\nother: 3\n")
    with pytest.raises(ProjectError) as err:
        Workspace.open(mlops).project("unit_2_training").global_data_products()
    assert "global_data_products.yaml:3" in str(err.value) and "'other'" in str(err.value)
    write(mlops / "unit_2_training/metadata.yaml", "project_uuid: [unclosed\n")
    with pytest.raises(ProjectError) as err:
        Workspace.open(mlops).project("unit_2_training").metadata
    assert "unit_2_training/metadata.yaml:2" in str(err.value)


# ---------------------------------------------------------------- validation


def _spec_from(mlops, blocks: list[dict]) -> PipelineSpec:
    path = write(mlops / "unit_2_training/pipelines/v/metadata.yaml", mage_dump({"blocks": blocks, "uuid": "v"}))
    return PipelineSpec.load(path, Workspace.open(mlops).project("unit_2_training"))


def test_unknown_upstream(mlops):
    spec = _spec_from(mlops, [mage_block("load_models", "custom", upstream=["ghost"])])
    with pytest.raises(ProjectError) as err:
        spec.validate()
    msg = str(err.value)
    assert "'load_models'" in msg and "'ghost'" in msg and str(spec.path) in msg
    ghost_line = spec.path.read_text().splitlines().index("  - ghost") + 1
    assert err.value.line == ghost_line and f"metadata.yaml:{ghost_line}" in msg


def test_cycle_is_reported_in_order(mlops):
    write(mlops / "unit_2_training/custom/a.py", "x = 1\n")
    write(mlops / "unit_2_training/custom/b.py", "x = 1\n")
    write(mlops / "unit_2_training/custom/c.py", "x = 1\n")
    spec = _spec_from(mlops, [
        mage_block("a", "custom", upstream=["c"]),
        mage_block("b", "custom", upstream=["a"]),
        mage_block("c", "custom", upstream=["b"]),
    ])
    with pytest.raises(ProjectError) as err:
        spec.validate()
    assert "a -> b -> c -> a" in str(err.value) and str(spec.path) in str(err.value)
    assert find_cycle(["x", "y"], {"y": ["x"]}) is None
    assert find_cycle(["x"], {"x": ["x"]}) == ["x", "x"]


def test_missing_block_file_names_expected_path(mlops):
    spec = _spec_from(mlops, [mage_block("not_there", "transformer")])
    problems = spec.problems()
    assert len(problems) == 1
    expected = mlops.resolve() / "unit_2_training/transformers/not_there.py"
    assert str(expected) in str(problems[0]) and problems[0].block == "not_there"
    assert spec.problems(check_files=False) == []


def test_duplicate_uuid(mlops):
    spec = _spec_from(mlops, [mage_block("load_models", "custom"), mage_block("load_models", "custom")])
    with pytest.raises(ProjectError, match="duplicate block uuid 'load_models'") as err:
        spec.validate()
    entry_lines = [i for i, line in enumerate(spec.path.read_text().splitlines(), 1) if line.startswith("- ")]
    assert err.value.line == entry_lines[1]  # the second entry


def test_inconsistent_downstream_is_not_an_error(mlops):
    spec = _spec_from(mlops, [
        mage_block("load_models", "custom", downstream=["sklearn", "nonexistent"]),
        mage_block("hyperparameter_tuning/sklearn", "transformer", upstream=["load_models"], downstream=[]),
    ])
    assert spec.problems() == []
    assert spec.downstream_of("load_models") == ["hyperparameter_tuning/sklearn"]
    spec.save()  # downstream_blocks are rewritten from the upstream lists
    raw = yaml.safe_load(spec.path.read_text())
    assert raw["blocks"][0]["downstream_blocks"] == ["hyperparameter_tuning/sklearn"]


def test_multiple_problems_are_all_available(mlops):
    spec = _spec_from(mlops, [mage_block("x", "custom", upstream=["ghost"])])
    with pytest.raises(ProjectError) as err:
        spec.validate()
    assert len(err.value.problems) == 2 and "1 more problem" in str(err.value)


# ---------------------------------------------------------------- round trip


def test_load_save_round_trip_keeps_bytes_and_unknown_keys(mlops):
    spec = training(mlops)
    before = spec.path.read_bytes()
    assert spec.save() is False  # nothing changed: file untouched
    assert spec.path.read_bytes() == before
    # our dumper writes Mage-formatted files byte for byte
    from blockyard.project.yaml_io import dump_yaml
    assert dump_yaml(spec.sync_raw()).encode() == before

    spec.set_variables({"max_evaluations": 10, "random_state": 7})
    after = yaml.safe_load(spec.path.read_text())
    expected = yaml.safe_load(before)
    expected["variables"]["max_evaluations"] = 10
    assert after == expected  # every unknown key (created_at, spark_config, ...) survives
    assert list(after) == list(expected)  # key order kept
    assert spec.path.read_text() == mage_dump(expected)


def test_round_trip_of_hand_written_file(mlops):
    path = write(mlops / "unit_2_training/pipelines/hand/metadata.yaml", """
        uuid: hand
        zeta_unknown: {keep: [1, 2]}
        blocks:
        - uuid: load_models
          type: custom
          my_extra: 1
        name: Hand
        """)
    spec = PipelineSpec.load(path, Workspace.open(mlops).project("unit_2_training"))
    spec.block("load_models").timeout = 30
    spec.save()
    raw = yaml.safe_load(path.read_text())
    assert list(raw) == ["uuid", "zeta_unknown", "blocks", "name"]
    assert raw["zeta_unknown"] == {"keep": [1, 2]}
    assert raw["blocks"][0] == {"uuid": "load_models", "type": "custom", "my_extra": 1, "timeout": 30}


# ---------------------------------------------------------------- editing


def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*.tmp")]


def test_add_block_creates_file_and_links(mlops):
    spec = training(mlops)
    block = spec.add_block("evaluate", "transformer", upstream=["sklearn"])
    path = mlops.resolve() / "unit_2_training/transformers/evaluate.py"
    assert block.file_path == path and path.is_file()
    assert "if 'transformer' not in globals():" in path.read_text()
    compile(path.read_text(), str(path), "exec")
    reloaded = spec.reload()
    assert reloaded.block_uuids()[-1] == "evaluate"
    assert reloaded.block("evaluate").raw["configuration"]["file_source"]["path"] == "unit_2_training/transformers/evaluate.py"
    assert reloaded.block("sklearn").raw["downstream_blocks"] == ["evaluate", "prepare_histogram_u9"]
    reloaded.validate()
    assert _no_temp_files(mlops)

    with pytest.raises(ProjectError, match="already exists"):
        spec.add_block("evaluate", "transformer")
    with pytest.raises(ProjectError, match="unknown upstream block 'ghost'"):
        spec.add_block("other", "transformer", upstream=["ghost"])
    with pytest.raises(ProjectError, match="unknown block type"):
        spec.add_block("other", "bogus")
    assert not (mlops / "unit_2_training/transformers/other.py").exists()


def test_add_block_code_and_groups(mlops):
    spec = training(mlops)
    with pytest.raises(ProjectError) as err:
        spec.add_block("broken", "custom", code="def f(:\n    pass\n")
    assert err.value.line == 1 and "syntax error" in str(err.value)
    assert not (mlops / "unit_2_training/custom/broken.py").exists()
    assert spec.reload().get_block("broken") is None

    spec.add_block("check", "custom", code="x = 1\n")
    assert (mlops / "unit_2_training/custom/check.py").read_text() == "x = 1\n"
    spec.add_block("notify", "callback", upstream=["check"])
    spec.add_block("gate", "conditional")
    spec.add_block("notes", "markdown")
    reloaded = spec.reload()
    assert [b.uuid for b in reloaded.callbacks] == ["notify"]
    assert [b.uuid for b in reloaded.conditionals] == ["gate"]
    assert reloaded.block("notes").file_path.name == "notes.md"
    # adding an existing file with code would overwrite it: refused
    p2 = new_pipeline(reloaded.project, "p2")
    with pytest.raises(ProjectError, match="already exists"):
        p2.add_block("check", "custom", code="x = 2\n")
    assert (mlops / "unit_2_training/custom/check.py").read_text() == "x = 1\n"
    # without code the existing file is shared
    shared = p2.add_block("check", "custom")
    assert shared.file_path == mlops.resolve() / "unit_2_training/custom/check.py"


def test_remove_block(mlops):
    spec = training(mlops)
    file = spec.block("load_models").file_path
    spec.remove_block("load_models")
    reloaded = spec.reload()
    assert reloaded.get_block("load_models") is None
    assert reloaded.block("hyperparameter_tuning/sklearn").upstream_blocks == ["training_set"]
    assert file.is_file()
    reloaded.remove_block("sklearn", delete_file=True)
    assert not (mlops / "unit_2_training/data_exporters/sklearn.py").exists()
    final = spec.reload()
    assert final.widgets[0].upstream_blocks == []  # the chart pointed at 'sklearn'
    assert final.block("hyperparameter_tuning/sklearn").raw["downstream_blocks"] == []
    with pytest.raises(ProjectError, match="no block 'ghost'"):
        final.remove_block("ghost")


def test_rename_block_moves_file_and_fixes_references(mlops):
    project_dir = mlops.resolve() / "unit_2_training"
    other = new_pipeline(Workspace.open(mlops).project("unit_2_training"), "retrain")
    other.add_block("hyperparameter_tuning/sklearn", "transformer")  # shares the file
    other.add_block("after", "custom", upstream=["hyperparameter_tuning/sklearn"])

    spec = training(mlops)
    spec.rename_block("hyperparameter_tuning/sklearn", "tuning/sklearn_v2")
    new_file = project_dir / "transformers/tuning/sklearn_v2.py"
    assert new_file.read_text() == CODE
    assert not (project_dir / "transformers/hyperparameter_tuning/sklearn.py").exists()
    assert not (project_dir / "transformers/hyperparameter_tuning").exists()  # emptied folder removed
    reloaded = spec.reload()
    block = reloaded.block("tuning/sklearn_v2")
    assert block.file_path == new_file
    assert block.raw["configuration"]["file_source"]["path"] == "unit_2_training/transformers/tuning/sklearn_v2.py"
    assert reloaded.block("sklearn").upstream_blocks == ["tuning/sklearn_v2"]
    assert reloaded.block("load_models").raw["downstream_blocks"] == ["tuning/sklearn_v2"]
    reloaded.validate()
    other = other.reload()
    assert other.block("after").upstream_blocks == ["tuning/sklearn_v2"]
    other.validate()

    with pytest.raises(ProjectError, match="already exists"):
        reloaded.rename_block("sklearn", "load_models")
    with pytest.raises(ProjectError, match="invalid new block uuid"):
        reloaded.rename_block("sklearn", "../escape")


def test_set_upstream(mlops):
    spec = training(mlops)
    spec.set_upstream("sklearn", ["hyperparameter_tuning/sklearn", "load_models"])
    assert spec.reload().block("sklearn").upstream_blocks == ["hyperparameter_tuning/sklearn", "load_models"]
    before = spec.path.read_bytes()
    with pytest.raises(ProjectError) as err:
        spec.set_upstream("load_models", ["sklearn"])
    assert "load_models -> hyperparameter_tuning/sklearn -> sklearn -> load_models" in str(err.value)
    with pytest.raises(ProjectError, match="unknown upstream block"):
        spec.set_upstream("load_models", ["ghost"])
    with pytest.raises(ProjectError, match="cycle"):
        spec.set_upstream("load_models", ["load_models"])
    assert spec.path.read_bytes() == before
    assert spec.block("load_models").upstream_blocks == []


def test_set_variables(mlops):
    spec = training(mlops)
    spec.set_variables({"max_evaluations": 3, "new": "x"})
    assert spec.reload().variables == {"max_evaluations": 3, "new": "x"}
    with pytest.raises(ProjectError):
        spec.set_variables(["not", "a", "dict"])


def test_write_and_read_block_code(mlops):
    spec = training(mlops)
    new_code = CODE.replace("return data", "return [data]")
    path = spec.write_block_code("hyperparameter_tuning/sklearn", new_code)
    assert path.read_text() == new_code
    assert spec.read_block_code("hyperparameter_tuning/sklearn") == new_code
    with pytest.raises(ProjectError) as err:
        spec.write_block_code("hyperparameter_tuning/sklearn", "x = 1\ndef broken(:\n    pass\n")
    assert err.value.line == 2 and err.value.file == str(path)
    assert f"{path}:2" in str(err.value) and "syntax error" in str(err.value)
    assert path.read_text() == new_code  # untouched
    assert _no_temp_files(mlops)
    with pytest.raises(ProjectError, match="has no code file"):
        spec.write_block_code("training_set", "x = 1\n")
    spec.write_block_code("dynamic_block_info", "# not python: (\n")  # markdown is not compiled
    with pytest.raises(ProjectError, match="not found"):
        _spec_from(mlops, [mage_block("missing", "custom")]).read_block_code("missing")


def test_project_set_metadata_and_add_project(mlops):
    ws = Workspace.open(mlops)
    project = ws.project("unit_1_data_preparation")
    project.set_metadata({"variables_retention_period": "30d", "project_uuid": "u1"})
    data = yaml.safe_load(project.metadata_path.read_text())
    assert data["notification_config"] == {"alert_on": ["trigger_failure"]}
    assert data["project_uuid"] == "u1" and data["variables_retention_period"] == "30d"
    assert list(data)[:3] == ["project_type", "variables_dir", "notification_config"]
    assert Workspace.open(mlops).project("unit_1_data_preparation").metadata["project_uuid"] == "u1"

    ws.add_project("unit_3_observability")
    assert yaml.safe_load((mlops / "settings.yaml").read_text())["projects"]["unit_3_observability"] == {}
    assert "unit_3_observability" in Workspace.open(mlops).project_names()
    with pytest.raises(ProjectError, match="already registered"):
        ws.add_project("unit_3_observability")


# ---------------------------------------------------------------- scaffolding


def test_init_workspace_creates_loadable_files(tmp_path):
    ws = init_workspace(tmp_path / "ws")
    assert ws.multi_project and ws.project_names() == ["default"]
    project = ws.project("default")
    assert project.metadata["project_uuid"] == "default"
    spec = ws.find_pipeline("example")
    spec.validate()
    assert [(b.uuid, b.type, b.upstream_blocks) for b in spec.blocks] == [
        ("load_data", "data_loader", []),
        ("transform", "transformer", ["load_data"]),
        ("export", "data_exporter", ["transform"]),
    ]
    py_files = list((tmp_path / "ws").rglob("*.py"))
    assert len(py_files) >= 3
    for path in py_files:
        source = path.read_text()
        compile(source, str(path), "exec")
        assert "import pandas" not in source
    assert "if 'data_loader' not in globals():" in spec.read_block_code("load_data")
    with pytest.raises(ProjectError, match="already exists"):
        init_workspace(tmp_path / "ws")


def test_example_pipeline_runs_with_plain_python(tmp_path):
    from blockyard.engine import decorators

    spec = init_workspace(tmp_path / "ws").find_pipeline("default/example")
    out = None
    for block in spec.blocks:
        env = dict(decorators.INJECTED)
        with decorators.collecting() as found:
            exec(compile(spec.read_block_code(block.uuid), str(block.file_path), "exec"), env)
        fns = {kind: fn for kind, _, fn in found.items}
        main = fns[block.type]
        out = main(**spec.variables) if out is None else main(out, **spec.variables)
        if "test" in fns:
            fns["test"](out)
    assert out == {"trips": 4, "total_distance_km": 22.4}


def test_new_project_pipeline_block(tmp_path):
    ws = init_workspace(tmp_path / "ws", project_name="first", example=False)
    assert ws.project("first").pipeline_uuids() == []
    project = new_project(ws, "second")
    assert (tmp_path / "ws/second/metadata.yaml").is_file()
    assert Workspace.open(tmp_path / "ws").project_names() == ["first", "second"]
    with pytest.raises(ProjectError, match="already exists"):
        new_project(ws, "second")

    spec = new_pipeline(project, "train", name="Training")
    assert spec.name == "Training" and spec.blocks == []
    assert Workspace.open(tmp_path / "ws").find_pipeline("train").project.name == "second"
    with pytest.raises(ProjectError, match="already exists"):
        new_pipeline(project, "train")

    block = new_block(spec, "data_loader", "sub/load")
    assert block.file_path == (tmp_path / "ws/second/data_loaders/sub/load.py").resolve()
    new_block(spec, "transformer", "clean", upstream=["sub/load"])
    with pytest.raises(ProjectError, match="already exists"):
        new_block(spec, "transformer", "clean")
    other = new_pipeline(project, "other")
    with pytest.raises(ProjectError, match="block file already exists"):
        new_block(other, "transformer", "clean")
    spec.reload().validate()


@pytest.mark.parametrize("block_type", TEMPLATE_TYPES)
def test_templates(block_type):
    code = block_template(block_type)
    if block_type == "markdown":
        assert code.startswith("#")
        return
    compile(code, f"{block_type}.py", "exec")
    decorator = {"conditional": "condition"}.get(block_type, block_type)
    if block_type not in ("chart", "scratchpad"):
        assert f"if '{decorator}' not in globals():\n    from mage_ai.data_preparation.decorators import {decorator}" in code
        assert f"@{decorator}" in code
    has_test = block_type in ("data_loader", "transformer", "custom", "sensor")
    assert ("@test" in code) is has_test


@pytest.mark.parametrize("bad", ["", "../x", "/abs", "a:b", "a/../b", "a//b", "a/", "-lead", "sp ace", "dot.ted", "é"])
def test_invalid_block_names(tmp_path, bad):
    spec = init_workspace(tmp_path / "ws").find_pipeline("example")
    with pytest.raises(ProjectError) as err:
        new_block(spec, "custom", bad)
    assert "letters, digits" in str(err.value)
    assert [p.name for p in (tmp_path / "ws/default/custom").iterdir()] == ["__init__.py"]
    assert spec.reload().block_uuids() == ["load_data", "transform", "export"]


@pytest.mark.parametrize("bad", ["a/b", "..", "x y", ""])
def test_invalid_project_and_pipeline_names(tmp_path, bad):
    ws = init_workspace(tmp_path / "ws")
    with pytest.raises(ProjectError, match="letters, digits"):
        new_project(ws, bad)
    with pytest.raises(ProjectError, match="letters, digits"):
        new_pipeline(ws.project("default"), bad)


def test_valid_subfolder_names(tmp_path):
    spec = init_workspace(tmp_path / "ws").find_pipeline("example")
    block = spec.add_block("a-b/c_d/E9", "custom")
    assert block.file_path.is_file()


def test_block_spec_to_dict(mlops):
    data = training(mlops).block("load_models").to_dict()
    assert data["dynamic"] is True and data["downstream_blocks"] == ["hyperparameter_tuning/sklearn"]
    assert data["file_path"].endswith("unit_2_training/custom/load_models.py")
    assert isinstance(BlockSpec.new_raw("x", "custom")["upstream_blocks"], list)


def test_import_is_light():
    code = (
        "import sys, blockyard.project\n"
        "heavy = {'pandas', 'numpy', 'pyarrow', 'sqlalchemy', 'sklearn', 'mlflow'} & set(sys.modules)\n"
        "print(sorted(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
