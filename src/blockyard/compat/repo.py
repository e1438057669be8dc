"""`mage_ai.settings.repo` and `mage_ai.data_preparation.repo_manager`.

Mage calls the project folder (the one holding the project's metadata.yaml,
io_config.yaml, data_loaders/, pipelines/ ...) the "repo". `get_repo_path()` answers
it for the code that asks:

1. inside a run (block, sensor, callback, or a utils module they call): the project
   of the running pipeline, from `blockyard.runtime`;
2. otherwise the project that holds the calling file (or `file_path`);
3. otherwise the discovered workspace (BLOCKYARD_WORKSPACE or the cwd): its only
   project, else its root.

`root_project=True` gives the workspace root (Mage's root project in a multi-project
setup: the folder with settings.yaml).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "get_repo_path",
    "get_repo_name",
    "get_repo_config",
    "get_project_uuid",
    "get_variables_dir",
    "get_data_dir",
    "RepoConfig",
]


def _workspace_of_context() -> Any:
    from blockyard import runtime

    ctx = runtime.get()
    if ctx is None:
        return None, None
    from blockyard.project import Workspace

    return Workspace.open(Path(ctx.workspace_root)), ctx.project


def _project_holding(ws: Any, file: Path) -> Path | None:
    for project in ws.projects():
        path = Path(project.path).resolve()
        if file == path or path in file.parents:
            return path
    return None


def _caller_file() -> Path | None:
    frame = sys._getframe(1)
    here = os.path.abspath(__file__)
    while frame is not None:
        name = frame.f_code.co_filename
        if not name.startswith("<") and os.path.abspath(name) != here:
            return Path(name).resolve()
        frame = frame.f_back
    return None


def _discover_from(file: Path | None) -> Any:
    """The workspace holding `file`, else the discovered one; None if there is none."""
    from blockyard.errors import BlockyardError
    from blockyard.project import Workspace

    for start in ([file.parent] if file is not None else []) + [None]:
        try:
            return Workspace.discover(start)
        except (BlockyardError, OSError):
            continue
    return None


def get_repo_path(file_path: str | os.PathLike | None = None, root_project: bool = False, **_: Any) -> str:
    """The project's folder (see the module docstring), as a string like Mage's."""
    ws, project = _workspace_of_context()
    if ws is not None:
        if root_project:
            return str(Path(ws.root))
        try:
            return str(Path(ws.project(project).path))
        except Exception:  # noqa: BLE001 - a context without a known project: use the file
            pass
    file = Path(file_path).resolve() if file_path else _caller_file()
    if ws is None:
        ws = _discover_from(file)
    if ws is None:
        raise FileNotFoundError(
            "get_repo_path(): no Blockyard project found (not in a run, the calling file is in "
            "no project, and no workspace at BLOCKYARD_WORKSPACE or above the current folder)"
        )
    if root_project:
        return str(Path(ws.root))
    if file is not None:
        held = _project_holding(ws, file)
        if held is not None:
            return str(held)
    projects = ws.projects()
    if len(projects) == 1:
        return str(Path(projects[0].path))
    return str(Path(ws.root))


def get_repo_name(repo_path: str | None = None, **kwargs: Any) -> str:
    return Path(repo_path or get_repo_path(**kwargs)).name


def get_variables_dir(repo_path: str | None = None, **_: Any) -> str:
    """Where Blockyard keeps run data (database, outputs) for the workspace: Mage's
    variables dir plays that role."""
    from blockyard import settings

    root = repo_path or get_repo_path(root_project=True)
    return str(settings.data_dir_for(Path(root)))


def get_data_dir() -> str:
    return get_variables_dir()


class RepoConfig:
    """The project's metadata.yaml, with Mage's RepoConfig attribute names.

    Known keys missing from the file read as None; `to_dict()` gives the whole file."""

    KNOWN = (
        "project_uuid",
        "project_type",
        "variables_dir",
        "remote_variables_dir",
        "notification_config",
        "features",
        "help_improve_mage",
        "logging_config",
        "queue_config",
        "retry_config",
        "ldap_config",
        "spark_config",
        "emr_config",
        "azure_container_instance_config",
        "gcp_cloud_run_config",
        "k8s_executor_config",
        "ecs_config",
        "pipelines",
        "variables_retention_period",
    )

    def __init__(self, repo_path: str | os.PathLike | None = None, config: dict | None = None) -> None:
        self.repo_path = str(repo_path or get_repo_path())
        if config is None:
            import yaml

            path = Path(self.repo_path) / "metadata.yaml"
            try:
                config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            except FileNotFoundError:
                config = {}
            if not isinstance(config, dict):
                raise ValueError(f"{path}: expected a mapping at the top level")
        self._config = dict(config)
        if not self._config.get("variables_dir"):
            self._config["variables_dir"] = get_variables_dir(self.repo_path)

    def __getattr__(self, name: str) -> Any:
        config = self.__dict__.get("_config", {})
        if name in config:
            return config[name]
        if name in RepoConfig.KNOWN:
            return None
        raise AttributeError(f"RepoConfig has no setting '{name}'")

    def get(self, key: str, default: Any = None) -> Any:
        return self._config.get(key, default)

    def to_dict(self, **_: Any) -> dict:
        return dict(self._config)

    def __repr__(self) -> str:
        return f"RepoConfig(repo_path={self.repo_path!r})"


def get_repo_config(repo_path: str | os.PathLike | None = None, **_: Any) -> RepoConfig:
    return RepoConfig(repo_path)


def get_project_uuid() -> str | None:
    return get_repo_config().project_uuid
