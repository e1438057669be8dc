"""Projects, pipelines, blocks and block code, edited through `blockyard.project`."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from blockyard.server.deps import check_name, get_pipeline, get_project, inside, state
from blockyard.server.errors import Forbidden, NotFound, Unprocessable
from blockyard.server.models import (
    BlockCreate,
    BlockOut,
    BlockPatch,
    CodeIn,
    CodeOut,
    EdgeIn,
    PipelineCreate,
    PipelineOut,
    PipelinePatch,
    PipelineSummary,
    ProjectCreate,
    ProjectOut,
    VariablesIn,
)

router = APIRouter(prefix="/api", tags=["projects and pipelines"])

PIPELINE = "/projects/{project}/pipelines/{pipeline}"


def block_out(st, block: Any, downstream: dict[str, list[str]] | None = None) -> BlockOut:
    data = block.to_dict(downstream=downstream)
    data["file_path"] = st.relative(block.file_path) if block.file_path is not None else None
    return BlockOut(**data)


def pipeline_out(st, spec: Any) -> PipelineOut:
    down = spec.downstream_map()  # once: each block's own lookup would be O(n^2)
    return PipelineOut(
        project=spec.project.name,
        uuid=spec.uuid,
        name=spec.name,
        description=spec.description,
        type=spec.type,
        tags=list(spec.tags),
        variables=dict(spec.variables or {}),
        retry_config=spec.retry_config,
        blocks=[block_out(st, b, down) for b in spec.blocks],
        callbacks=[block_out(st, b, down) for b in spec.callbacks],
        conditionals=[block_out(st, b, down) for b in spec.conditionals],
        widgets=[block_out(st, b, down) for b in spec.widgets],
    )


def summary(spec: Any) -> PipelineSummary:
    return PipelineSummary(
        project=spec.project.name,
        uuid=spec.uuid,
        name=spec.name,
        description=spec.description,
        type=spec.type,
        tags=list(spec.tags),
        blocks=len(spec.blocks),
    )


def _block(spec: Any, uuid: str) -> Any:
    check_name(uuid, "block uuid", allow_slash=True)
    block = spec.get_block(uuid)
    if block is None:
        raise NotFound(
            f"no block {uuid!r} in pipeline '{spec.project.name}/{spec.uuid}'; blocks: "
            + (", ".join(b.uuid for b in spec.all_blocks()) or "none")
        )
    return block


def _summaries(project: Any) -> list[PipelineSummary]:
    from blockyard.errors import ProjectError

    out = []
    for uuid in project.pipeline_uuids():
        try:
            out.append(summary(project.pipeline(uuid)))
        except ProjectError as exc:  # a broken metadata.yaml must not hide the others
            out.append(PipelineSummary(project=project.name, uuid=uuid, name=uuid,
                                       description=f"cannot be read: {exc.message}"))
    return out


@router.get("/projects", response_model=list[ProjectOut], summary="List projects")
def list_projects(request: Request):
    st = state(request)
    ws = st.workspace
    return [
        ProjectOut(name=p.name, path=st.relative(p.path) or ".", pipelines=p.pipeline_uuids())
        for p in ws.projects()
    ]


@router.post("/projects", response_model=ProjectOut, status_code=201,
             summary="Create a project (folder, metadata.yaml, registered in settings.yaml)")
def create_project(body: ProjectCreate, request: Request):
    """409 when the project (or its folder) exists, 422 for a bad name."""
    from blockyard.project.scaffold import new_project

    st = state(request)
    with st.edit_lock:
        project = new_project(st.workspace, body.name.strip())
    return ProjectOut(name=project.name, path=st.relative(project.path) or ".", pipelines=[])


@router.get("/pipelines", response_model=list[PipelineSummary], summary="List every pipeline")
def list_all_pipelines(request: Request):
    st = state(request)
    return [s for p in st.workspace.projects() for s in _summaries(p)]


@router.get("/projects/{project}/pipelines", response_model=list[PipelineSummary],
            summary="List a project's pipelines")
def list_pipelines(project: str, request: Request):
    return _summaries(get_project(state(request), project))


@router.post("/projects/{project}/pipelines", response_model=PipelineOut, status_code=201,
             summary="Create an empty pipeline in a project")
def create_pipeline(project: str, body: PipelineCreate, request: Request):
    """409 when the pipeline exists, 422 for a bad uuid, 404 for an unknown project."""
    from blockyard.project.scaffold import new_pipeline

    st = state(request)
    with st.edit_lock:
        spec = new_pipeline(get_project(st, project), body.uuid.strip(), body.name or None,
                            description=body.description)
        if body.tags:
            spec.raw["tags"] = list(body.tags)
            spec.tags = list(body.tags)
            spec.save()
        spec = spec.reload()
    return pipeline_out(st, spec)


@router.get(PIPELINE, response_model=PipelineOut, summary="Get a pipeline with its blocks")
def get_pipeline_route(project: str, pipeline: str, request: Request):
    st = state(request)
    return pipeline_out(st, get_pipeline(st, project, pipeline))


@router.patch(PIPELINE, response_model=PipelineOut, summary="Edit a pipeline's name, description and tags")
def patch_pipeline(project: str, pipeline: str, body: PipelinePatch, request: Request):
    """Only the fields sent change; 422 for an empty name, 404 for an unknown pipeline."""
    st = state(request)
    sent = body.model_fields_set
    with st.edit_lock:
        spec = get_pipeline(st, project, pipeline)
        if "name" in sent:
            name = (body.name or "").strip()
            if not name:
                raise Unprocessable("the pipeline name must not be empty")
            spec.name = name
        if "description" in sent:
            description = (body.description or "").strip()
            spec.description = description or None
        if "tags" in sent:
            tags = [t.strip() for t in (body.tags or []) if t and t.strip()]
            spec.tags = list(dict.fromkeys(tags))
        spec.save()
        spec = spec.reload()
    return pipeline_out(st, spec)


@router.delete(PIPELINE, status_code=204, summary="Delete a pipeline (its pipelines/<uuid>/ folder)")
def delete_pipeline(project: str, pipeline: str, request: Request):
    """Removes pipelines/<uuid>/ only: block code files stay (other pipelines may share
    them); runs and triggers in the database are kept. 404 for an unknown pipeline."""
    import shutil

    from fastapi import Response

    st = state(request)
    with st.edit_lock:
        spec = get_pipeline(st, project, pipeline)
        folder = spec.path.parent
        if folder.is_symlink():
            raise Forbidden(f"pipeline folder {st.relative(folder)} is a symlink; refusing to delete it")
        inside(st, folder, "pipeline folder")
        shutil.rmtree(folder)
    return Response(status_code=204)


@router.put(PIPELINE + "/variables", response_model=PipelineOut, summary="Replace a pipeline's variables")
def put_variables(project: str, pipeline: str, body: VariablesIn, request: Request):
    st = state(request)
    with st.edit_lock:
        spec = get_pipeline(st, project, pipeline)
        spec.set_variables(body.variables)
    return pipeline_out(st, spec)


# ------------------------------------------------------------------------ blocks
@router.post(PIPELINE + "/blocks", response_model=BlockOut, status_code=201, summary="Add a block")
def add_block(project: str, pipeline: str, body: BlockCreate, request: Request):
    st = state(request)
    check_name(body.uuid, "block uuid", allow_slash=True)
    for up in body.upstream_blocks:
        check_name(up, "upstream block uuid", allow_slash=True)
    with st.edit_lock:
        spec = get_pipeline(st, project, pipeline)
        block = spec.add_block(
            body.uuid,
            body.type,
            upstream=body.upstream_blocks,
            code=body.code,
            name=body.name,
            language=body.language,
            configuration=body.configuration,
            after=body.after,
        )
        spec = spec.reload()
    return block_out(st, spec.block(block.uuid))


@router.get(PIPELINE + "/blocks/{block:path}", response_model=BlockOut, summary="Get a block")
def get_block(project: str, pipeline: str, block: str, request: Request):
    st = state(request)
    return block_out(st, _block(get_pipeline(st, project, pipeline), block))


@router.patch(PIPELINE + "/blocks/{block:path}", response_model=BlockOut,
              summary="Rename a block and/or replace its upstream blocks")
def patch_block(project: str, pipeline: str, block: str, body: BlockPatch, request: Request):
    st = state(request)
    if body.uuid is None and body.upstream_blocks is None:
        raise Unprocessable("nothing to change: give 'uuid' (rename) and/or 'upstream_blocks'")
    with st.edit_lock:
        spec = get_pipeline(st, project, pipeline)
        current = _block(spec, block).uuid
        if body.upstream_blocks is not None:
            for up in body.upstream_blocks:
                check_name(up, "upstream block uuid", allow_slash=True)
            spec.set_upstream(current, body.upstream_blocks)
        if body.uuid is not None and body.uuid != current:
            check_name(body.uuid, "block uuid", allow_slash=True)
            if spec.get_block(current).file_path is not None:
                inside(st, spec.get_block(current).file_path, "the block's file")
            spec.rename_block(current, body.uuid)
            current = body.uuid
        spec = spec.reload()
    return block_out(st, spec.block(current))


@router.delete(PIPELINE + "/blocks/{block:path}", response_model=PipelineOut,
               summary="Remove a block (and, with delete_file=true, its file)")
def delete_block(project: str, pipeline: str, block: str, request: Request,
                 delete_file: bool = Query(False, description="Also delete the block's code file.")):
    st = state(request)
    with st.edit_lock:
        spec = get_pipeline(st, project, pipeline)
        target = _block(spec, block)
        if delete_file and target.file_path is not None:
            inside(st, target.file_path, "the block's file")
        spec.remove_block(target.uuid, delete_file=delete_file)
        spec = spec.reload()
    return pipeline_out(st, spec)


@router.post(PIPELINE + "/edges", response_model=PipelineOut, summary="Connect two blocks (upstream -> downstream)")
def connect(project: str, pipeline: str, body: EdgeIn, request: Request):
    st = state(request)
    with st.edit_lock:
        spec = get_pipeline(st, project, pipeline)
        down = _block(spec, body.downstream)
        _block(spec, body.upstream)
        if body.upstream not in down.upstream_blocks:
            spec.set_upstream(down.uuid, [*down.upstream_blocks, body.upstream])
        spec = spec.reload()
    return pipeline_out(st, spec)


@router.delete(PIPELINE + "/edges", response_model=PipelineOut, summary="Disconnect two blocks")
def disconnect(project: str, pipeline: str, request: Request,
               upstream: str = Query(...), downstream: str = Query(...)):
    st = state(request)
    with st.edit_lock:
        spec = get_pipeline(st, project, pipeline)
        down = _block(spec, downstream)
        _block(spec, upstream)
        if upstream not in down.upstream_blocks:
            raise NotFound(f"block {downstream!r} is not downstream of {upstream!r}")
        spec.set_upstream(down.uuid, [u for u in down.upstream_blocks if u != upstream])
        spec = spec.reload()
    return pipeline_out(st, spec)


# ------------------------------------------------------------------------ charts
@router.get(PIPELINE + "/charts/{chart:path}", summary="A chart widget's data (blockyard.charts.compute_chart JSON)",
            responses={404: {"description": "unknown chart, or its upstream block has no stored output yet"}})
def get_chart(project: str, pipeline: str, chart: str, request: Request) -> dict:
    """Computed from the latest stored output of each of the chart's upstream blocks:
    `{"type", "title", "data", "options", ...}`."""
    from blockyard.charts.cli_support import compute_chart_for_block

    st = state(request)
    check_name(chart, "chart uuid", allow_slash=True)
    spec = get_pipeline(st, project, pipeline)
    return compute_chart_for_block(st.workspace, f"{spec.project.name}/{spec.uuid}", None, chart)


# -------------------------------------------------------------------------- code
def _code_file(st, spec: Any, block: Any):
    path = block.file_path
    if path is None:
        raise NotFound(f"block {block.uuid!r} of type {block.type!r} has no code file")
    inside(st, path, f"the file of block {block.uuid!r}")
    return path


@router.get(PIPELINE + "/code/{block:path}", response_model=CodeOut, summary="Read a block's code")
def get_code(project: str, pipeline: str, block: str, request: Request):
    st = state(request)
    spec = get_pipeline(st, project, pipeline)
    target = _block(spec, block)
    path = _code_file(st, spec, target)
    code = spec.read_block_code(target.uuid)
    return CodeOut(block_uuid=target.uuid, path=st.relative(path), language=target.language, code=code)


@router.put(PIPELINE + "/code/{block:path}", response_model=CodeOut,
            summary="Write a block's code (Python is compiled first: a syntax error is a 422 and the file is untouched)")
def put_code(project: str, pipeline: str, block: str, body: CodeIn, request: Request):
    st = state(request)
    with st.edit_lock:
        spec = get_pipeline(st, project, pipeline)
        target = _block(spec, block)
        _code_file(st, spec, target)
        path = spec.write_block_code(target.uuid, body.code)
    return CodeOut(block_uuid=target.uuid, path=st.relative(path), language=target.language, code=body.code)
