"""Creating workspaces, projects, pipelines and blocks from the package templates."""
from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

from blockyard.errors import ProjectError
from blockyard.project.block import BlockSpec
from blockyard.project.names import BLOCK_TYPE_DIRS, check_block_type, check_block_uuid, check_flat_name, extension_for
from blockyard.project.pipeline import PipelineSpec
from blockyard.project.templating import read_template, render_template
from blockyard.project.workspace import METADATA_FILE, SETTINGS_FILE, Project, Workspace
from blockyard.project.yaml_io import dump_yaml, write_text_atomic

# Folders Mage creates in a new project (each a Python package).
_PACKAGE_DIRS = (
    "custom",
    "data_exporters",
    "data_loaders",
    "sensors",
    "transformers",
    "utils",
    "pipelines",
)

EXAMPLE_PIPELINE = "example"
_EXAMPLE_BLOCKS = (
    ("load_data", "data_loader", []),
    ("transform", "transformer", ["load_data"]),
    ("export", "data_exporter", ["transform"]),
)


def _write_new(path: Path, text: str) -> None:
    if path.exists():
        raise ProjectError("refusing to overwrite an existing file", file=path)
    write_text_atomic(path, text)


def _create_project_files(path: Path, name: str) -> None:
    if path.exists() and (path / METADATA_FILE).exists():
        raise ProjectError(f"project {name!r} already exists", file=path / METADATA_FILE)
    if path.exists() and any(path.iterdir()):
        raise ProjectError(f"folder for project {name!r} already exists and is not empty", file=path)
    path.mkdir(parents=True, exist_ok=True)
    _write_new(path / METADATA_FILE, render_template("project", "metadata.yaml", project_uuid=name))
    _write_new(path / "__init__.py", "")
    for folder in _PACKAGE_DIRS:
        (path / folder).mkdir(exist_ok=True)
        _write_new(path / folder / "__init__.py", "")


def init_workspace(path: str | os.PathLike, project_name: str = "default", *, example: bool = True) -> Workspace:
    """Create a multi-project workspace at `path` with one project and (by default) an
    `example` pipeline: data_loader -> transformer -> data_exporter in plain Python."""
    check_flat_name(project_name, "project name")
    root = Path(path).expanduser().resolve()
    for marker in (SETTINGS_FILE, METADATA_FILE):
        if (root / marker).exists():
            raise ProjectError("a workspace already exists here", file=root / marker)
    if (root / project_name).exists():
        raise ProjectError(f"folder for project {project_name!r} already exists", file=root / project_name)
    root.mkdir(parents=True, exist_ok=True)
    _create_project_files(root / project_name, project_name)
    _write_new(root / SETTINGS_FILE, dump_yaml({"projects": {project_name: {}}}))
    gitignore = root / ".gitignore"
    if not gitignore.exists():
        write_text_atomic(gitignore, ".blockyard/\n__pycache__/\n")
    ws = Workspace.open(root)
    if example:
        project = ws.project(project_name)
        spec = new_pipeline(project, EXAMPLE_PIPELINE, name="Example", description="Load, transform and export a few trips.")
        spec.set_variables({"min_distance_km": 1.0})
        for uuid, block_type, upstream in _EXAMPLE_BLOCKS:
            spec.add_block(uuid, block_type, upstream, code=read_template("example", f"{uuid}.py"))
    return ws


def new_project(ws: Workspace, name: str) -> Project:
    """Create a project folder (metadata.yaml, block folders) and register it in settings.yaml."""
    check_flat_name(name, "project name")
    if not ws.multi_project:
        ws.add_project(name)  # raises the single-project error
    if name in ws.project_names():
        raise ProjectError(f"project {name!r} already exists", file=ws.settings_path)
    path = ws.root / name
    if path.exists():
        raise ProjectError(f"folder for project {name!r} already exists", file=path)
    _create_project_files(path, name)
    return ws.add_project(name)


def new_pipeline(project: Project, uuid: str, name: str | None = None, *, description: str | None = None) -> PipelineSpec:
    """Create `pipelines/<uuid>/metadata.yaml` with the keys Mage writes."""
    check_flat_name(uuid, "pipeline uuid")
    folder = project.pipelines_dir / uuid
    if folder.exists():
        raise ProjectError(f"pipeline {uuid!r} already exists in project '{project.name}'", file=folder)
    raw = {
        "blocks": [],
        "cache_block_output_in_memory": False,
        "callbacks": [],
        "concurrency_config": {},
        "conditionals": [],
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(sep=" "),
        "data_integration": None,
        "description": description,
        "executor_config": {},
        "executor_count": 1,
        "executor_type": None,
        "extensions": {},
        "name": name if name is not None else uuid.replace("_", " "),
        "notification_config": {},
        "remote_variables_dir": None,
        "retry_config": {},
        "run_pipeline_in_one_process": False,
        "settings": {"triggers": None},
        "spark_config": {},
        "tags": [],
        "type": "python",
        "uuid": uuid,
        "variables": {},
        "widgets": [],
    }
    folder.mkdir(parents=True)
    init = project.pipelines_dir / "__init__.py"
    if not init.exists():
        write_text_atomic(init, "")
    write_text_atomic(folder / "__init__.py", "")
    write_text_atomic(folder / METADATA_FILE, dump_yaml(raw))
    return project.pipeline(uuid)


def new_block(
    pipeline: PipelineSpec,
    type: str,  # noqa: A002 - matches Mage's key
    uuid: str,
    upstream: list[str] | None = None,
    code: str | None = None,
    *,
    name: str | None = None,
    language: str = "python",
) -> BlockSpec:
    """Create a block file from the type's template (or `code`) and add the block to `pipeline`.

    Refuses if the pipeline already has the block or the file already exists
    (use `pipeline.add_block` to reuse an existing file).
    """
    check_block_uuid(uuid)
    check_block_type(type)
    if pipeline.get_block(uuid) is not None:
        raise ProjectError(f"block '{uuid}' already exists", file=pipeline.path, pipeline=pipeline.uuid, block=uuid)
    if pipeline.project is None:
        raise ProjectError("pipeline is not part of a project", pipeline=pipeline.uuid)
    path = pipeline.project.path / BLOCK_TYPE_DIRS[type] / (uuid + extension_for(type, language))
    if path.exists():
        raise ProjectError(
            f"block file already exists: {path}",
            file=path,
            block=uuid,
            hint="use pipeline.add_block() to add the existing block to this pipeline",
        )
    return pipeline.add_block(uuid, type, upstream, code, name=name, language=language)
