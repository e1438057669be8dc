"""Helpers shared by the routers: state, name checks, pipeline lookup, orchestration."""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Optional

from typing import Annotated

from fastapi import Path as PathParam
from fastapi import Query, Request

from blockyard.errors import BlockyardError
from blockyard.server.errors import ApiError, BadRequest, Forbidden, NotFound, Unprocessable
from blockyard.server.state import AppState


# Database ids are 32-bit integers (PostgreSQL `integer`): bigger ones are a 422, not an
# overflow deep in the driver.
MAX_ID = 2_147_483_647
RunId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="Pipeline run id.")]
TriggerId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="Trigger (pipeline schedule) id.")]
BackfillId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="Backfill id.")]
OptionalId = Annotated[Optional[int], Query(ge=1, le=MAX_ID)]
Offset = Annotated[int, Query(ge=0, le=MAX_ID, description="Rows to skip.")]


def state(request: Request) -> AppState:
    return request.app.state.blockyard


def check_name(value: str, what: str, *, allow_slash: bool = False) -> str:
    """Refuse names that could leave their folder: '..', absolute paths, backslashes, NUL."""
    bad = (
        not value
        or value.startswith(("/", "\\", "~"))
        or "\\" in value
        or "\x00" in value
        or ":" in value
        or (not allow_slash and "/" in value)
        or any(part in ("", ".", "..") for part in value.split("/"))
    )
    if bad:
        raise BadRequest(
            f"invalid {what} {value[:60]!r}: it must be a relative name inside the workspace "
            "(no '..', no absolute path, no backslash)"
        )
    from blockyard.project.names import check_length

    try:
        check_length(value, what)
    except BlockyardError as exc:
        raise Unprocessable(exc.message) from None
    return value


def inside(st: AppState, path: Path, what: str) -> Path:
    """`path` resolved, if the file guard allows it (project/paths.py: inside the
    workspace once symlinks are resolved, not in the data folder, not a key or database
    file), else 403. Every route that touches a file goes through here."""
    from blockyard.project.paths import PathRefused, guard_path

    try:
        return guard_path(path, st.workspace, what=what)
    except PathRefused as exc:
        raise Forbidden(exc.message) from None


def get_project(st: AppState, name: str) -> Any:
    check_name(name, "project name")
    ws = st.workspace
    if name not in ws.project_names():
        raise NotFound(f"no project {name!r}; projects: {', '.join(ws.project_names()) or 'none'}")
    return ws.project(name)


def get_pipeline(st: AppState, project: str, pipeline: str) -> Any:
    check_name(pipeline, "pipeline uuid")
    return get_project(st, project).pipeline(pipeline)


def resolve_ref(st: AppState, ref: str) -> tuple[str, str]:
    """'project/pipeline' or a bare uuid unique in the workspace -> (project, uuid).

    Only checks that pipelines/<uuid>/metadata.yaml exists (no YAML parsing): this is
    the run-creation hot path."""
    ref = (ref or "").strip().strip("/")
    check_name(ref, "pipeline", allow_slash=True)
    ws = st.workspace
    if "/" in ref:
        project, uuid = ref.split("/", 1)
        if "/" in uuid:
            raise NotFound(f"no pipeline {ref!r}: use 'project/pipeline' or a pipeline uuid")
        if project not in ws.project_names():
            raise NotFound(f"no project {project!r} for pipeline {ref!r}")
        if not (ws.project(project).pipelines_dir / uuid / "metadata.yaml").is_file():
            raise NotFound(f"no pipeline {uuid!r} in project {project!r}")
        return project, uuid
    matches = [p.name for p in ws.projects() if (p.pipelines_dir / ref / "metadata.yaml").is_file()]
    if not matches:
        raise NotFound(f"no pipeline {ref!r} in the workspace")
    if len(matches) > 1:
        raise ApiError(
            f"pipeline name {ref!r} is ambiguous; use one of: "
            + ", ".join(f"{m}/{ref}" for m in matches),
            status_code=409,
        )
    return matches[0], ref


def orchestration(name: str) -> Any:
    """`blockyard.orchestration.<name>`; 503 with a message if that layer is missing."""
    module = f"blockyard.orchestration.{name}"
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            raise ApiError(
                f"the orchestration layer ({module}) is not installed in this build",
                status_code=503,
            ) from None
        raise


def call(fn, *args: Any, **kwargs: Any) -> Any:
    """Call into the orchestration layer: a ValueError there is the caller's bad input
    (400), a LookupError an unknown id (404)."""
    try:
        return fn(*args, **kwargs)
    except (ApiError, BlockyardError):
        raise  # their own handlers map them (see errors.status_for)
    except LookupError as exc:
        raise NotFound(_message(exc)) from None
    except ValueError as exc:
        raise BadRequest(_message(exc)) from None


def _message(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc) or type(exc).__name__
