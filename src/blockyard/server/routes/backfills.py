"""Backfills: runs of a pipeline for each execution date in a past range."""
from __future__ import annotations

from fastapi import APIRouter, Request

from blockyard.server.deps import BackfillId, call, orchestration, resolve_ref, state
from blockyard.server.errors import NotFound, Unprocessable
from blockyard.server.models import BackfillCreate, BackfillOut

router = APIRouter(prefix="/api", tags=["backfills"])


def _get(st, backfill_id: int) -> dict:
    row = call(orchestration("backfills").get, st.db, backfill_id)
    if not row:
        raise NotFound(f"no backfill {backfill_id}")
    return row


@router.get("/backfills", response_model=list[BackfillOut], summary="List backfills")
def list_backfills(request: Request):
    st = state(request)
    return [BackfillOut(**b) for b in call(orchestration("backfills").list, st.db)]


@router.post("/backfills", response_model=BackfillOut, status_code=201,
             summary="Create a backfill: one queued run per execution date from start to end")
def create_backfill(body: BackfillCreate, request: Request):
    st = state(request)
    if body.end < body.start:
        raise Unprocessable("'end' must not be before 'start'")
    project, uuid = resolve_ref(st, body.pipeline)
    row = call(
        orchestration("backfills").create_backfill,
        st.db,
        st.workspace,
        project=project,
        pipeline_uuid=uuid,
        start=body.start,
        end=body.end,
        interval=body.interval,
        variables=body.variables,
        name=body.name,
        units=body.units,
    )
    return BackfillOut(**row)


@router.get("/backfills/{backfill_id}", response_model=BackfillOut, summary="Get a backfill")
def get_backfill(backfill_id: BackfillId, request: Request):
    return BackfillOut(**_get(state(request), backfill_id))


@router.post("/backfills/{backfill_id}/cancel", response_model=BackfillOut,
             summary="Cancel a backfill (its queued runs are cancelled)")
def cancel_backfill(backfill_id: BackfillId, request: Request):
    st = state(request)
    _get(st, backfill_id)
    row = call(orchestration("backfills").cancel, st.db, backfill_id)
    return BackfillOut(**(row or _get(st, backfill_id)))
