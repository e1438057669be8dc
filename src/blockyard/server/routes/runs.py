"""Pipeline runs: create (queued for a worker), list, get, cancel, retry; block runs,
logs (full text and a live SSE stream) and stored outputs."""
from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Any, Optional
from urllib.parse import quote, unquote

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, StreamingResponse

from blockyard.server import queries
from blockyard.server.deps import (
    Offset,
    OptionalId,
    RunId,
    call,
    check_name,
    get_pipeline,
    orchestration,
    resolve_ref,
    state,
)
from blockyard.server.errors import BadRequest, Conflict, NotFound, Unprocessable
from blockyard.server.models import (
    BlockRunOut,
    OutputEntry,
    OutputsOut,
    RunCreate,
    RunList,
    RunOut,
)

router = APIRouter(prefix="/api", tags=["runs"])

UNFINISHED = ("initial", "queued", "running")
_RUN_FIELDS = tuple(RunOut.model_fields)
_BLOCK_RUN_FIELDS = tuple(f for f in BlockRunOut.model_fields if f != "has_log")
MAX_LIMIT = 1000


def run_out(row: dict) -> RunOut:
    data = {k: row.get(k) for k in _RUN_FIELDS}
    if data["variables"] is None:
        data["variables"] = {}
    if data["block_count"] is None:
        data["block_count"] = 0
    settings = row.get("settings") if isinstance(row.get("settings"), dict) else {}
    data["block"] = settings.get("block") if isinstance(settings.get("block"), str) else None
    data["with_upstream"] = bool(data["block"] and settings.get("with_upstream"))
    data["cache"] = settings.get("cache") if isinstance(settings.get("cache"), bool) else None
    return RunOut(**data)


def get_run_row(st, run_id: int) -> dict:
    row = st.db.get_pipeline_run(run_id)
    if row is None:
        raise NotFound(f"no pipeline run {run_id}")
    return row


def check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > 255 or not key.isprintable():
        raise BadRequest("Idempotency-Key must be 1-255 printable characters")
    return key


def enqueue(st, *, project: str, pipeline_uuid: str, variables: dict, execution_date=None,
            trigger_id: int | None = None, idempotency_key: str | None = None,
            settings: dict | None = None) -> dict:
    runs = orchestration("runs")
    kwargs: dict[str, Any] = {
        "project": project,
        "pipeline_uuid": pipeline_uuid,
        "variables": variables,
        "idempotency_key": idempotency_key,
    }
    if execution_date is not None:
        kwargs["execution_date"] = execution_date
    if trigger_id is not None:
        kwargs["trigger_id"] = trigger_id
    if settings:
        kwargs["settings"] = settings
    with st.write_lock():
        row = call(runs.enqueue_run, st.db, **kwargs)
    return row


def _statuses(status: Optional[str]) -> list[str] | None:
    if not status:
        return None
    from blockyard.db.schema import STATUSES

    wanted = [s.strip() for s in status.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in STATUSES]
    if unknown:
        raise BadRequest(f"unknown status {', '.join(unknown)}; use some of: {', '.join(STATUSES)}")
    return wanted


def _list(st, *, ref: str | None, project: str | None, status, trigger_id, backfill_id,
          since, until, limit, offset) -> RunList:
    pipeline_uuid = None
    if ref:
        ref = ref.strip().strip("/")
        check_name(ref, "pipeline", allow_slash=True)
        if "/" in ref:
            project, pipeline_uuid = ref.split("/", 1)
        else:
            pipeline_uuid = ref
    if project is not None:
        check_name(project, "project name")
    rows, total = queries.list_runs(
        st.db,
        limit=limit,
        offset=offset,
        project=project,
        pipeline_uuid=pipeline_uuid,
        status=_statuses(status),
        trigger_id=trigger_id,
        backfill_id=backfill_id,
        since=since,
        until=until,
    )
    return RunList(runs=[run_out(r) for r in rows], total=total, limit=limit, offset=offset)


# ----------------------------------------------------------------- create / list
@router.post("/pipelines/{pipeline:path}/runs", response_model=RunOut, status_code=201,
             summary="Queue a run of a pipeline (also what Mage's trigger_pipeline calls)")
def create_run(
    pipeline: str,
    request: Request,
    body: Optional[RunCreate] = None,
    idempotency_key: Optional[str] = Header(
        None, alias="Idempotency-Key",
        description="Repeating a request with the same key returns the same run."),
):
    """`pipeline` is `project/pipeline` or a pipeline uuid unique in the workspace. The run
    is queued; a worker (`blockyard start`, role all or worker) runs it. With `block`, only
    that block runs (on the stored outputs of its upstream blocks); with `block` and
    `with_upstream: true`, the block and every block it depends on, in topological order
    (kept in the run's settings, which the engine reads when the worker executes it)."""
    st = state(request)
    body = body or RunCreate()
    project, uuid = resolve_ref(st, pipeline)
    settings = None
    if body.with_upstream and not body.block:
        raise Unprocessable("'with_upstream' needs 'block'")
    if body.block:
        check_name(body.block, "block uuid", allow_slash=True)
        spec = get_pipeline(st, project, uuid)
        if body.block not in {b.uuid for b in spec.blocks}:
            raise NotFound(f"no block {body.block!r} in pipeline '{project}/{uuid}'; blocks: "
                           + (", ".join(b.uuid for b in spec.blocks) or "none"))
        settings = {"block": body.block, "with_upstream": bool(body.with_upstream)}
    if body.cache is not None:
        settings = {**(settings or {}), "cache": body.cache}
    trigger_id = None
    if body.schedule_name and body.schedule_name.strip():
        # Mage's trigger_pipeline: the run is filed under the trigger of that name.
        from blockyard.compat.triggers import schedule_id_for_name

        orchestration("triggers")  # 503 when the orchestration layer is missing
        with st.edit_lock:
            trigger_id = call(schedule_id_for_name, st.workspace, st.db, project, uuid, body.schedule_name.strip())
    row = enqueue(st, project=project, pipeline_uuid=uuid, variables=body.variables,
                  execution_date=body.execution_date, trigger_id=trigger_id,
                  idempotency_key=check_idempotency_key(idempotency_key), settings=settings)
    return run_out(row)


@router.get("/pipelines/{pipeline:path}/runs/{run_id}", response_model=RunOut,
            summary="Get a run of a pipeline")
def get_pipeline_run(pipeline: str, run_id: RunId, request: Request):
    st = state(request)
    project, uuid = resolve_ref(st, pipeline)
    row = get_run_row(st, run_id)
    if row["pipeline_uuid"] != uuid or row["project"] != project:
        raise NotFound(f"run {run_id} is not a run of {project}/{uuid}")
    return run_out(row)


@router.get("/pipelines/{pipeline:path}/runs", response_model=RunList, summary="List a pipeline's runs")
def list_pipeline_runs(
    pipeline: str,
    request: Request,
    status: Optional[str] = Query(None, description="A status or several, comma-separated."),
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    offset: Offset = 0,
):
    st = state(request)
    project, uuid = resolve_ref(st, pipeline)
    return _list(st, ref=f"{project}/{uuid}", project=None, status=status, trigger_id=None,
                 backfill_id=None, since=None, until=None, limit=limit, offset=offset)


@router.get("/runs", response_model=RunList, summary="List runs (newest first) with filters and pagination")
def list_runs(
    request: Request,
    pipeline: Optional[str] = Query(None, description="project/pipeline or a pipeline uuid."),
    project: Optional[str] = Query(None),
    status: Optional[str] = Query(None, description="A status or several, comma-separated."),
    trigger_id: OptionalId = None,
    backfill_id: OptionalId = None,
    since: Optional[datetime] = Query(None, description="Created at or after (ISO 8601)."),
    until: Optional[datetime] = Query(None, description="Created before (ISO 8601)."),
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    offset: Offset = 0,
):
    st = state(request)
    return _list(st, ref=pipeline, project=project, status=status, trigger_id=trigger_id,
                 backfill_id=backfill_id, since=since, until=until, limit=limit, offset=offset)


@router.get("/runs/{run_id}", response_model=RunOut, summary="Get a run")
def get_run(run_id: RunId, request: Request):
    return run_out(get_run_row(state(request), run_id))


@router.post("/runs/{run_id}/cancel", response_model=RunOut,
             summary="Cancel a run (queued: at once; running: the worker stops it)")
def cancel_run(run_id: RunId, request: Request):
    st = state(request)
    row = get_run_row(st, run_id)
    if row["status"] not in UNFINISHED:
        raise Conflict(f"run {run_id} already finished ({row['status']}); nothing to cancel")
    out = call(orchestration("runs").request_cancel, st.db, run_id)
    return run_out(out or get_run_row(st, run_id))


@router.post("/runs/{run_id}/retry", response_model=RunOut, status_code=201,
             summary="Queue a new run re-running the failed/unfinished blocks of a finished run")
def retry_run(run_id: RunId, request: Request):
    st = state(request)
    row = get_run_row(st, run_id)
    if row["status"] in UNFINISHED:
        raise Conflict(f"run {run_id} is still {row['status']}; retry it once it has finished")
    if row["status"] == "completed":
        raise Conflict(f"run {run_id} completed; there is nothing to retry")
    out = call(orchestration("runs").retry_incomplete, st.db, run_id)
    return run_out(out)


# -------------------------------------------------------------------- block runs
def log_file(st, run_id: int, block_uuid: str) -> Path:
    return st.session.logs_dir / str(run_id) / (quote(block_uuid, safe="") + ".log")


def block_run_out(st, run_id: int, row: dict) -> BlockRunOut:
    data = {k: row.get(k) for k in _BLOCK_RUN_FIELDS}
    data["attempts"] = data["attempts"] or 0
    data["cache_hit"] = bool(data["cache_hit"])
    data["has_log"] = log_file(st, run_id, row["block_uuid"]).is_file()
    return BlockRunOut(**data)


@router.get("/runs/{run_id}/block_runs", response_model=list[BlockRunOut], summary="A run's block runs")
def list_block_runs(run_id: RunId, request: Request):
    st = state(request)
    get_run_row(st, run_id)
    return [block_run_out(st, run_id, r) for r in st.db.get_block_runs(run_id)]


def _block_run(st, run_id: int, block: str) -> dict:
    check_name(block, "block uuid", allow_slash=True)
    row = st.db.get_block_run(run_id, block)
    if row is None:
        raise NotFound(f"run {run_id} has no block run {block!r}")
    return row


@router.get("/runs/{run_id}/logs", response_class=PlainTextResponse,
            responses={200: {"content": {"text/plain": {}}}},
            summary="Logs of a run's block runs as text (one block with ?block=)")
def get_logs(run_id: RunId, request: Request,
             block: Optional[str] = Query(None, description="Only this block run's log (its full text).")):
    st = state(request)
    run = get_run_row(st, run_id)
    if block is not None:
        row = _block_run(st, run_id, block)
        path = log_file(st, run_id, row["block_uuid"])
        text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
        if not text and row.get("error"):
            text = row["error"] + "\n"
        return PlainTextResponse(text)
    parts = []
    rows = st.db.get_block_runs(run_id)
    for row in rows:
        path = log_file(st, run_id, row["block_uuid"])
        parts.append(f"==> {row['block_uuid']} [{row['status']}]\n")
        if path.is_file():
            parts.append(path.read_text(encoding="utf-8", errors="replace"))
        elif row.get("cache_hit"):
            parts.append("(cached: skipped, no log)\n")
        elif row.get("error"):
            parts.append(row["error"] + "\n")
    if not rows and run.get("error"):
        parts.append(run["error"] + "\n")
    return PlainTextResponse("".join(parts))


@router.get("/runs/{run_id}/outputs", response_model=OutputsOut,
            summary="A block run's stored outputs: summary (shape, columns, dtypes) and a sample")
def get_outputs(run_id: RunId, request: Request, block: str = Query(..., description="Block (run) uuid.")):
    st = state(request)
    get_run_row(st, run_id)
    row = _block_run(st, run_id, block)
    ref = row.get("output_ref")
    if not ref:
        raise NotFound(f"block {block!r} of run {run_id} has no stored outputs (status {row['status']})")
    src_run, _, node = ref.partition("/")
    try:
        manifest = st.session.store.manifest(int(src_run), node)
    except ValueError:
        manifest = None
    if manifest is None:
        raise NotFound(f"the outputs of block {block!r} of run {run_id} are gone from the store ({ref})")
    entries = [
        OutputEntry(name=e.get("name", ""), codec=e.get("codec", ""), bytes=e.get("bytes"),
                    summary=e.get("summary"), sample=e.get("sample"))
        for e in manifest.outputs
    ]
    return OutputsOut(run_id=run_id, block_uuid=row["block_uuid"], source=ref, digest=manifest.digest,
                      outputs=entries)


# ------------------------------------------------------------------- live stream
def _sse(event: str, data: Any, event_id: int | None = None) -> bytes:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {event}")
    payload = json.dumps(data, default=str)
    lines.append(f"data: {payload}")
    return ("\n".join(lines) + "\n\n").encode("utf-8")


class _Tail:
    """New complete lines of the run's log files since the last call."""

    def __init__(self, folder: Path, only: str | None) -> None:
        self.folder = folder
        self.only = only
        self.offsets: dict[Path, int] = {}
        self.partial: dict[Path, bytes] = {}

    def read(self, final: bool = False) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        try:
            files = sorted(self.folder.glob("*.log"), key=lambda p: p.stat().st_mtime_ns)
        except OSError:
            return out
        for path in files:
            block = unquote(path.name[: -len(".log")])
            if self.only is not None and block != self.only and not block.startswith(self.only + ":"):
                continue
            start = self.offsets.get(path, 0)
            try:
                with open(path, "rb") as fh:
                    fh.seek(start)
                    chunk = fh.read(1 << 20)
            except OSError:
                continue
            if not chunk and not (final and self.partial.get(path)):
                continue
            self.offsets[path] = start + len(chunk)
            data = self.partial.pop(path, b"") + chunk
            lines = data.split(b"\n")
            rest = lines.pop()
            if rest:
                if final:
                    lines.append(rest)
                else:
                    self.partial[path] = rest
            for line in lines:
                out.append((block, line.decode("utf-8", errors="replace")))
        return out


@router.get(
    "/runs/{run_id}/logs/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}},
    summary="Follow a run live: Server-Sent Events of log lines and block/run status until it ends",
)
async def stream_logs(run_id: RunId, request: Request,
                      block: Optional[str] = Query(None, description="Only this block's lines.")):
    """Events: `status` {block_uuid, status} on each block-status change, `log`
    {block_uuid, line} per log line, `run` {id, status, error} on each run-status
    change, and a last `end` {id, status} when the run has finished."""
    st = state(request)
    await run_in_threadpool(get_run_row, st, run_id)  # 404 before the stream starts
    if block is not None:
        check_name(block, "block uuid", allow_slash=True)
    folder = st.session.logs_dir / str(run_id)
    interval = st.config.stream_interval

    async def events():
        tail = _Tail(folder, block)
        seen: dict[str, str] = {}
        run_status = None
        counter = 0
        idle = 0.0
        db = st.db
        while True:
            status = await run_in_threadpool(queries.run_status, db, run_id)
            blocks = await run_in_threadpool(queries.block_statuses, db, run_id)
            for uuid, bstatus in blocks:
                if block is not None and uuid != block and not uuid.startswith(block + ":"):
                    continue
                if seen.get(uuid) != bstatus:
                    seen[uuid] = bstatus
                    counter += 1
                    yield _sse("status", {"block_uuid": uuid, "status": bstatus}, counter)
            finished = status is None or status not in UNFINISHED
            for uuid, line in await run_in_threadpool(tail.read, finished):
                if uuid and seen.get(uuid) in (None, "initial", "queued"):
                    # A block that prints is running, even if the history's batched write
                    # of that (within ~20 ms) has not reached the database yet.
                    seen[uuid] = "running"
                    counter += 1
                    yield _sse("status", {"block_uuid": uuid, "status": "running"}, counter)
                counter += 1
                yield _sse("log", {"block_uuid": uuid, "line": line}, counter)
            if status != run_status:
                run_status = status
                fresh = await run_in_threadpool(db.get_pipeline_run, run_id)
                counter += 1
                yield _sse("run", {"id": run_id, "status": status,
                                   "error": (fresh or {}).get("error")}, counter)
            if finished:
                counter += 1
                yield _sse("end", {"id": run_id, "status": status}, counter)
                return
            if st.stop_event.is_set():
                yield _sse("end", {"id": run_id, "status": status, "reason": "server shutting down"})
                return
            await asyncio.sleep(interval)
            idle += interval
            if idle >= 15:
                idle = 0.0
                yield b": keep-alive\n\n"

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
