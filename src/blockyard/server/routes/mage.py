"""Mage-compatible endpoints: API triggers and synchronous block runs.

- `POST /api/pipeline_schedules/{id}/pipeline_runs/{token}` queues a run of an API
  trigger's pipeline (the token in the URL is the trigger's).
- `POST /api/runs` runs ONE block now, in this process, and answers with its output.
- `GET /api/pipeline_schedules[/{id}]`, `GET /api/pipeline_runs[/{id}]` (and the
  per-pipeline / per-schedule lists) answer in Mage's envelopes for scripts that poll.
"""
from __future__ import annotations

from typing import Any, Optional

from fastapi import APIRouter, Header, Query, Request

from blockyard.server.deps import (
    OptionalId,
    RunId,
    TriggerId,
    call,
    check_name,
    get_pipeline,
    orchestration,
    resolve_ref,
    state,
)
from blockyard.server.errors import BadRequest, Conflict, NotFound, Unauthorized
from blockyard.server.jsonify import to_jsonable
from blockyard.server.middleware import bearer_token, token_matches
from blockyard.server.models import (
    MageBlockRunIn,
    MageBlockRunOut,
    MageBlockRunResult,
    MagePipelineRunOut,
    MageTriggerIn,
    MageTriggerOut,
)
from blockyard.server.routes.runs import check_idempotency_key, enqueue

router = APIRouter(prefix="/api", tags=["Mage compatibility"])


@router.post(
    "/pipeline_schedules/{schedule_id}/pipeline_runs/{token}",
    response_model=MageTriggerOut,
    summary="Fire an API trigger (Mage's URL): queue a run with the given variables",
    responses={401: {"description": "Wrong token"}, 404: {"description": "No such trigger"}},
)
def fire_api_trigger(
    schedule_id: TriggerId,
    token: str,
    request: Request,
    body: Optional[MageTriggerIn] = None,
    idempotency_key: Optional[str] = Header(None, alias="Idempotency-Key"),
):
    """Body (optional): `{"pipeline_run": {"variables": {...}}}`. The trigger's own
    variables are the defaults; the request's win. No server token is needed: the
    trigger's token in the URL is the credential (compared in constant time)."""
    st = state(request)
    triggers = orchestration("triggers")
    trigger = call(triggers.TriggerStore(st.workspace, st.db).get, schedule_id)
    if not trigger:
        raise NotFound(f"no trigger {schedule_id}")
    if not triggers.verify_token(trigger, token):
        raise Unauthorized(f"wrong token for trigger {schedule_id}")
    if (trigger.get("status") or "active") != "active":
        raise Conflict(f"trigger {schedule_id} is {trigger.get('status')}; set its status to active first")
    # enqueue_run puts the trigger's own variables under these (trigger_id given).
    variables = dict(body.pipeline_run.variables) if body is not None else {}
    project = trigger.get("project")
    ref = f"{project}/{trigger['pipeline_uuid']}" if project else trigger["pipeline_uuid"]
    project, uuid = resolve_ref(st, ref)
    served = _served(lambda hook: hook.answer_trigger(st.workspace, project, uuid, trigger, variables))
    if served is not None:  # a served pipeline (metadata.yaml `serve:`): the warm model answers
        return served
    row = enqueue(st, project=project, pipeline_uuid=uuid, variables=variables, trigger_id=schedule_id,
                  idempotency_key=check_idempotency_key(idempotency_key))
    return MageTriggerOut(pipeline_run=MagePipelineRunOut(
        id=row["id"],
        pipeline_uuid=row["pipeline_uuid"],
        project=row["project"],
        pipeline_schedule_id=row.get("trigger_id", schedule_id),
        status=row["status"],
        variables=row.get("variables") or {},
        execution_date=row.get("execution_date"),
        created_at=row.get("created_at"),
        started_at=row.get("started_at"),
        completed_at=row.get("completed_at"),
    ))


def _served(answer):
    """Served pipelines answer from blockyard.serving's warm model (None: run as usual).
    Returned as a plain JSON response: it adds `predictions`/`version` to Mage's shape."""
    from fastapi.responses import JSONResponse

    from blockyard.serving import mage_hook
    from blockyard.serving.features import RequestError

    try:
        body = answer(mage_hook)
    except RequestError as exc:
        from blockyard.server.errors import ApiError

        raise ApiError(exc.message, status_code=exc.status, extra={"field": exc.field}) from None
    return None if body is None else JSONResponse(body)


def _authorize_block_run(st, request: Request, ref: str) -> tuple[str, str]:
    """(project, pipeline uuid) of `ref` if the caller may run its blocks.

    With a server token, the bearer must be it or the token of one of the pipeline's
    active API triggers (anything else, an unknown pipeline included, is a 401: no
    probing for names without a token). Without one (loopback only) the endpoint is open."""
    expected = st.config.token
    given = bearer_token(request.headers)
    if not expected or token_matches(given, expected):
        return resolve_ref(st, ref)
    if given:
        try:
            project, uuid = resolve_ref(st, ref)
            triggers = orchestration("triggers")
            candidates = triggers.TriggerStore(st.workspace, st.db).list(project=project, pipeline=uuid, sync=False)
        except Exception:  # noqa: BLE001 - unknown pipeline, no orchestration layer: a 401
            candidates = []
        for trigger in candidates:
            if (trigger.get("status") or "active") == "active" and triggers.verify_token(trigger, given):
                return project, uuid
    raise Unauthorized()


def _upstream_stored(st, spec: Any, block_uuid: str) -> bool:
    """True when each upstream block of `block_uuid` has stored outputs from an earlier run
    (what running the block alone needs); dynamic upstream blocks never count."""
    from blockyard.engine.plan import plan_pipeline

    try:
        plan = plan_pipeline(spec)
    except Exception:  # noqa: BLE001 - the run reports the problem
        return False
    node = plan.get(block_uuid)
    if node is None:
        return False
    db, store = st.db, st.session.store
    for u in node.upstream:
        up = plan[u]
        if up.lineage or up.dynamic:
            return False
        row = db.latest_block_run(spec.project.name, spec.uuid, u)
        if not row or not row.get("output_ref"):
            return False
        run_id, _, node_uuid = row["output_ref"].partition("/")
        try:
            if not store.has_outputs(int(run_id), node_uuid):
                return False
        except ValueError:
            return False
    return True


@router.post(
    "/runs",
    response_model=MageBlockRunOut,
    summary="Run one block now and return its output (Mage's POST /api/runs)",
    responses={401: {"description": "Missing or wrong token"}},
)
async def run_block(body: MageBlockRunIn, request: Request):
    """Body: `{"run": {"pipeline_uuid": ..., "block_uuid": ..., "variables": {...}}}` with
    `Authorization: Bearer <token>` (the server token or one of the pipeline's API
    trigger tokens; not needed when no server token is configured).

    The block runs in this process on the stored outputs of its upstream blocks (their
    latest completed run). When some upstream block has never stored an output (or is
    dynamic), the whole pipeline runs instead (`mode: pipeline`), with the same
    variables, and the block's output from that run is returned. Either way the run is
    recorded in the run history (`pipeline_run_id`). A block that fails gives
    `status: failed` and `error`; the HTTP status is still 200."""
    from fastapi.concurrency import run_in_threadpool

    st = state(request)
    if not st.config.token or token_matches(bearer_token(request.headers), st.config.token):
        # A served block whose model is already loaded answers on the event loop: no
        # thread hop (the prediction is well under a millisecond; see docs/serving.md).
        project, uuid = resolve_ref(st, body.run.pipeline_uuid)
        check_name(body.run.block_uuid, "block uuid", allow_slash=True)
        served = _served(lambda hook: hook.answer_block_run(st.workspace, project, uuid, body.run.block_uuid,
                                                            dict(body.run.variables), warm_only=True))
        if served is not None:
            return served
    return await run_in_threadpool(_run_block, st, body, request)


def _run_block(st, body: MageBlockRunIn, request: Request):
    from blockyard.api import run_pipeline

    spec_in = body.run
    project, uuid = _authorize_block_run(st, request, spec_in.pipeline_uuid)
    check_name(spec_in.block_uuid, "block uuid", allow_slash=True)
    served = _served(lambda hook: hook.answer_block_run(st.workspace, project, uuid, spec_in.block_uuid,
                                                        dict(spec_in.variables)))
    if served is not None:  # the served block of a served pipeline: the warm model answers
        return served
    spec = get_pipeline(st, project, uuid)
    if spec_in.block_uuid not in spec.block_uuids():
        raise NotFound(
            f"no block {spec_in.block_uuid!r} in pipeline {project}/{uuid}; blocks: "
            + (", ".join(spec.block_uuids()) or "none")
        )
    mode = "block" if _upstream_stored(st, spec, spec_in.block_uuid) else "pipeline"
    result = run_pipeline(
        spec,
        workspace=st.workspace,
        variables=dict(spec_in.variables),
        block=spec_in.block_uuid if mode == "block" else None,
    )
    block_result = result.block_runs.get(spec_in.block_uuid)
    status = block_result.status if block_result is not None else result.status
    output = None
    error = None
    if status == "completed":
        output = to_jsonable(result.output(spec_in.block_uuid))
    else:
        error = (block_result.error if block_result is not None else None) or result.error
    return MageBlockRunOut(run=MageBlockRunResult(
        pipeline_run_id=result.run_id,
        pipeline_uuid=uuid,
        project=project,
        block_uuid=spec_in.block_uuid,
        status=status,
        mode=mode,
        variables=dict(spec_in.variables),
        output=output,
        error=error,
    ))


# ------------------------------------------------------------------ Mage read endpoints
# What scripts written for Mage poll: schedules and runs in Mage's envelopes and field
# names (see server/mage_format.py). Token-protected like the rest of /api.
MAX_MAGE_LIMIT = 1000


def _mage_pipeline_filter(st, ref: Optional[str], project: Optional[str]) -> tuple[Optional[str], Optional[str]]:
    """(project, pipeline uuid) from `pipeline_uuid` (bare or 'project/uuid') and `project`."""
    if project is not None:
        check_name(project, "project name")
    if not ref:
        return project, None
    ref = ref.strip().strip("/")
    check_name(ref, "pipeline_uuid", allow_slash=True)
    if "/" in ref:
        project, ref = ref.split("/", 1)
        check_name(ref, "pipeline_uuid")
    return project, ref


def _repo_path(st, project: Optional[str]):
    try:
        return st.workspace.project(project).path if project else None
    except Exception:  # noqa: BLE001 - a trigger of a project no longer in the workspace
        return None


def _mage_schedules(st, project: Optional[str], pipeline: Optional[str], status: Optional[str],
                    schedule_type: Optional[str]) -> dict:
    from blockyard.server import mage_format

    triggers = orchestration("triggers")
    rows = call(triggers.TriggerStore(st.workspace, st.db).list, project=project, pipeline=pipeline)
    rows = [r for r in rows if (status is None or r.get("status") == status)
            and (schedule_type is None or r.get("schedule_type") == schedule_type)]
    counts = mage_format.schedule_run_counts(st.db, [r["id"] for r in rows])
    items = [mage_format.pipeline_schedule(r, _repo_path(st, r.get("project")), counts) for r in rows]
    return {"pipeline_schedules": items, "metadata": {"count": len(items), "next": False}}


@router.get("/pipeline_schedules", summary="Mage: list triggers as pipeline_schedules (filter by pipeline_uuid)")
def mage_list_pipeline_schedules(
    request: Request,
    pipeline_uuid: Optional[str] = Query(None, description="Bare uuid or project/uuid."),
    project: Optional[str] = Query(None),
    status: Optional[str] = Query(None, description="active or inactive"),
    schedule_type: Optional[str] = Query(None, description="time, event or api"),
):
    """`{"pipeline_schedules": [...], "metadata": {"count", "next"}}` with Mage's fields."""
    st = state(request)
    project, pipeline = _mage_pipeline_filter(st, pipeline_uuid, project)
    return _mage_schedules(st, project, pipeline, status, schedule_type)


@router.get("/pipelines/{pipeline:path}/pipeline_schedules", summary="Mage: a pipeline's triggers as pipeline_schedules")
def mage_pipeline_pipeline_schedules(pipeline: str, request: Request,
                                     status: Optional[str] = Query(None),
                                     schedule_type: Optional[str] = Query(None)):
    st = state(request)
    project, uuid = resolve_ref(st, pipeline)
    return _mage_schedules(st, project, uuid, status, schedule_type)


@router.get("/pipeline_schedules/{schedule_id}", summary="Mage: one trigger as {\"pipeline_schedule\": {...}}")
def mage_get_pipeline_schedule(schedule_id: TriggerId, request: Request):
    from blockyard.server import mage_format

    st = state(request)
    trigger = call(orchestration("triggers").TriggerStore(st.workspace, st.db).get, schedule_id)
    if not trigger:
        raise NotFound(f"no pipeline schedule (trigger) {schedule_id}")
    return {"pipeline_schedule": mage_format.pipeline_schedule(trigger, _repo_path(st, trigger.get("project")))}


def _mage_runs(st, *, project, pipeline, status, trigger_id, backfill_id, limit, offset) -> dict:
    from blockyard.server import mage_format, queries

    statuses = None
    if status:
        from blockyard.db.schema import STATUSES

        statuses = mage_format.blockyard_statuses(status)
        if not any(s in STATUSES for s in statuses):
            raise BadRequest(f"unknown status {status!r}; use one of: initial, {', '.join(STATUSES)}")
    rows, total = queries.list_runs(st.db, limit=limit, offset=offset, project=project, pipeline_uuid=pipeline,
                                    status=statuses, trigger_id=trigger_id, backfill_id=backfill_id)
    blocks = mage_format.block_runs_of(st.db, [r["id"] for r in rows])
    get_trigger = orchestration("triggers").get_trigger_row
    schedules = {tid: get_trigger(st.db, tid) for tid in {r["trigger_id"] for r in rows if r.get("trigger_id")}}
    items = [mage_format.pipeline_run(r, schedules.get(r.get("trigger_id")), blocks[r["id"]]) for r in rows]
    return {"pipeline_runs": items, "metadata": {"count": total, "next": offset + len(items) < total}}


@router.get("/pipeline_runs", summary="Mage: list runs as pipeline_runs (filter by pipeline_uuid, status ...)")
def mage_list_pipeline_runs(
    request: Request,
    pipeline_uuid: Optional[str] = Query(None, description="Bare uuid or project/uuid."),
    project: Optional[str] = Query(None),
    status: Optional[str] = Query(None),
    pipeline_schedule_id: OptionalId = None,
    backfill_id: OptionalId = None,
    limit: int = Query(100, alias="_limit", ge=1, le=MAX_MAGE_LIMIT),
    offset: int = Query(0, alias="_offset", ge=0, le=2_147_483_647),
):
    """`{"pipeline_runs": [...], "metadata": {"count": total, "next": bool}}`, newest first,
    each with its block_runs; Mage's `_limit`/`_offset` paginate."""
    st = state(request)
    project, pipeline = _mage_pipeline_filter(st, pipeline_uuid, project)
    return _mage_runs(st, project=project, pipeline=pipeline, status=status, trigger_id=pipeline_schedule_id,
                      backfill_id=backfill_id, limit=limit, offset=offset)


@router.get("/pipelines/{pipeline:path}/pipeline_runs", summary="Mage: a pipeline's runs as pipeline_runs")
def mage_pipeline_pipeline_runs(pipeline: str, request: Request, status: Optional[str] = Query(None),
                                limit: int = Query(100, alias="_limit", ge=1, le=MAX_MAGE_LIMIT),
                                offset: int = Query(0, alias="_offset", ge=0, le=2_147_483_647)):
    st = state(request)
    project, uuid = resolve_ref(st, pipeline)
    return _mage_runs(st, project=project, pipeline=uuid, status=status, trigger_id=None, backfill_id=None,
                      limit=limit, offset=offset)


@router.get("/pipeline_schedules/{schedule_id}/pipeline_runs", summary="Mage: a trigger's runs as pipeline_runs")
def mage_schedule_pipeline_runs(schedule_id: TriggerId, request: Request, status: Optional[str] = Query(None),
                                limit: int = Query(100, alias="_limit", ge=1, le=MAX_MAGE_LIMIT),
                                offset: int = Query(0, alias="_offset", ge=0, le=2_147_483_647)):
    st = state(request)
    return _mage_runs(st, project=None, pipeline=None, status=status, trigger_id=schedule_id, backfill_id=None,
                      limit=limit, offset=offset)


@router.get("/pipeline_runs/{run_id}", summary="Mage: one run as {\"pipeline_run\": {...}} with its block_runs")
def mage_get_pipeline_run(run_id: RunId, request: Request):
    from blockyard.server import mage_format

    st = state(request)
    row = st.db.get_pipeline_run(run_id)
    if row is None:
        raise NotFound(f"no pipeline run {run_id}")
    schedule = orchestration("triggers").get_trigger_row(st.db, row["trigger_id"]) if row.get("trigger_id") else None
    blocks = mage_format.block_runs_of(st.db, [run_id])[run_id]
    return {"pipeline_run": mage_format.pipeline_run(row, schedule, blocks)}
