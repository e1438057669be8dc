"""Triggers (Mage's pipeline schedules) through orchestration.triggers.TriggerStore:
pipelines/<uuid>/triggers.yaml and the pipeline_schedules table, kept in sync."""
from __future__ import annotations

from typing import Any, Optional

from fastapi import APIRouter, Query, Request, Response

from blockyard.server.deps import TriggerId, call, check_name, orchestration, resolve_ref, state
from blockyard.server.errors import NotFound
from blockyard.server.models import TriggerIn, TriggerOut

router = APIRouter(prefix="/api", tags=["triggers"])


def trigger_store(st) -> Any:
    return orchestration("triggers").TriggerStore(st.workspace, st.db)


def get_trigger(st, store: Any, trigger_id: int) -> dict:
    trigger = call(store.get, trigger_id)
    if not trigger:
        raise NotFound(f"no trigger {trigger_id}")
    return trigger


def trigger_out(trigger: dict) -> TriggerOut:
    return TriggerOut(**dict(trigger))


def _payload(st, body: TriggerIn, *, partial: bool) -> dict:
    data = body.model_dump(exclude_unset=True)
    if data.get("project") is not None:
        check_name(str(data["project"]), "project name")
    if data.get("pipeline_uuid") is not None:
        ref = str(data["pipeline_uuid"])
        if data.get("project"):
            ref = f"{data['project']}/{ref}"
        project, uuid = resolve_ref(st, ref)
        data["project"], data["pipeline_uuid"] = project, uuid
    elif not partial:
        from blockyard.server.errors import Unprocessable

        raise Unprocessable("a trigger needs 'pipeline_uuid' (and 'project' when the uuid is not unique)")
    data.pop("id", None)
    return data


@router.get("/triggers", response_model=list[TriggerOut], summary="List triggers")
def list_triggers(request: Request,
                  project: Optional[str] = Query(None),
                  pipeline: Optional[str] = Query(None, description="Pipeline uuid.")):
    st = state(request)
    if project is not None:
        check_name(project, "project name")
    if pipeline is not None:
        check_name(pipeline, "pipeline uuid")
    return [trigger_out(t) for t in call(trigger_store(st).list, project=project, pipeline=pipeline)]


@router.post("/triggers", response_model=TriggerOut, status_code=201,
             summary="Create a trigger (schedule_type time, event or api; an api trigger gets a token)")
def create_trigger(body: TriggerIn, request: Request):
    st = state(request)
    with st.edit_lock:
        created = call(trigger_store(st).create, _payload(st, body, partial=False))
    return trigger_out(created)


@router.get("/triggers/{trigger_id}", response_model=TriggerOut, summary="Get a trigger")
def read_trigger(trigger_id: TriggerId, request: Request):
    st = state(request)
    return trigger_out(get_trigger(st, trigger_store(st), trigger_id))


@router.put("/triggers/{trigger_id}", response_model=TriggerOut, summary="Update a trigger (given keys only)")
def update_trigger(trigger_id: TriggerId, body: TriggerIn, request: Request):
    st = state(request)
    with st.edit_lock:
        store = trigger_store(st)
        get_trigger(st, store, trigger_id)
        updated = call(store.update, trigger_id, _payload(st, body, partial=True))
    return trigger_out(updated)


@router.delete("/triggers/{trigger_id}", status_code=204, summary="Delete a trigger")
def delete_trigger(trigger_id: TriggerId, request: Request):
    st = state(request)
    with st.edit_lock:
        store = trigger_store(st)
        get_trigger(st, store, trigger_id)
        call(store.delete, trigger_id)
    return Response(status_code=204)
