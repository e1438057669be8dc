"""Where the compat functions find the workspace, its data directory, database and store."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from blockyard import settings
from blockyard.errors import BlockyardError


def discover_workspace() -> Any:
    """The current `blockyard.project.Workspace`: the one of the block being run, else
    BLOCKYARD_WORKSPACE, else found by walking up from cwd."""
    from blockyard import runtime
    from blockyard.project import Workspace

    ctx = runtime.get()
    if ctx is not None:
        return Workspace.open(Path(ctx.workspace_root))
    return Workspace.discover()


def workspace_root_or_none() -> Path | None:
    """The workspace root if one can be found, else None (never raises for a missing one).

    Falls back to BLOCKYARD_WORKSPACE as a plain folder when it names no valid workspace
    (or the project layer is unavailable): it still says where `.blockyard/` lives.
    """
    try:
        return Path(discover_workspace().root)
    except (ImportError, BlockyardError, OSError):
        pass
    env = os.environ.get(settings.ENV_WORKSPACE)
    return Path(env).expanduser().resolve() if env else None


def data_dir(workspace: Any) -> Path:
    """Where the workspace keeps its database, outputs and secrets (as the engine's Session)."""
    return settings.data_dir_for(Path(workspace.root))


def find_pipeline(pipeline_uuid: str, project: str | None = None) -> tuple[Any, Any]:
    """(workspace, PipelineSpec) for `pipeline_uuid` ("name" or "project/name"),
    looked up in `project` when given."""
    ws = discover_workspace()
    if project and "/" not in pipeline_uuid:
        try:
            return ws, ws.find_pipeline(f"{project}/{pipeline_uuid}")
        except BlockyardError:
            pass  # not in that project: look through the whole workspace
    return ws, ws.find_pipeline(pipeline_uuid)
