"""UI-only JSON endpoints under /ui-api: what the pages need in one request (overview,
block states of a pipeline, dashboards, MLflow metrics, settings). Creating projects and
pipelines, chart data and "execute with upstream" are in the REST API (/api). They share
the server token with /api, and state-changing ones also need the CSRF header (see
server.require_csrf)."""
from __future__ import annotations

import datetime as _dt
import time
from typing import Any, Optional

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from blockyard.ui.server import csrf_response, guarded, require_csrf, server_token, state

router = APIRouter(prefix="/ui-api", tags=["ui"], include_in_schema=False)


# ------------------------------------------------------------------ session/login
@router.get("/session")
def session(request: Request):
    """Public: whether the server needs a token; sets the CSRF cookie."""
    import blockyard

    st = state(request)
    return csrf_response(
        {"auth": bool(server_token(request)), "workspace": st.workspace.name, "version": blockyard.__version__},
        request,
    )


class LoginIn(BaseModel):
    token: str


@router.post("/login")
def login(body: LoginIn, request: Request):
    """Checks a token typed on the login page (the page then sends it as a bearer)."""
    from blockyard.server.errors import Unauthorized
    from blockyard.server.middleware import token_matches

    require_csrf(request)
    expected = server_token(request)
    if expected and not token_matches(body.token.strip(), expected):
        time.sleep(0.2)  # slows guessing a little; tokens are long anyway
        raise Unauthorized("wrong token")
    return {"ok": True}


# ---------------------------------------------------------------------- overview
def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, (_dt.datetime, _dt.date)) else value


def _run_brief(row: dict | None) -> dict | None:
    if not row:
        return None
    return {k: _iso(row.get(k)) for k in ("id", "project", "pipeline_uuid", "status", "created_at",
                                          "started_at", "completed_at", "error", "trigger_id")}


def _last_runs(db: Any, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], dict]:
    import sqlalchemy as sa

    from blockyard.db.schema import pipeline_runs as pr

    out = {}
    with db.engine.connect() as conn:
        for project, uuid in pairs:
            row = conn.execute(
                sa.select(pr.c.id, pr.c.project, pr.c.pipeline_uuid, pr.c.status, pr.c.created_at,
                          pr.c.started_at, pr.c.completed_at, pr.c.error, pr.c.trigger_id)
                .where(pr.c.pipeline_uuid == uuid, pr.c.project == project)
                .order_by(pr.c.created_at.desc(), pr.c.id.desc()).limit(1)
            ).first()
            if row is not None:
                out[(project, uuid)] = _run_brief(dict(row._mapping))
    return out


def _overview(st: Any, project: str | None) -> dict:
    import sqlalchemy as sa

    from blockyard.db.schema import pipeline_runs as pr
    from blockyard.db.schema import pipeline_schedules as ps
    from blockyard.errors import ProjectError

    ws = st.workspace
    projects = ws.projects()
    names = [p.name for p in projects]
    pipelines = []
    for p in projects:
        if project and p.name != project:
            continue
        for uuid in p.pipeline_uuids():
            try:
                spec = p.pipeline(uuid)
                pipelines.append({"project": p.name, "uuid": uuid, "name": spec.name, "description": spec.description,
                                  "tags": list(spec.tags or []), "blocks": len(spec.blocks), "error": None})
            except ProjectError as exc:
                pipelines.append({"project": p.name, "uuid": uuid, "name": uuid, "description": None, "tags": [],
                                  "blocks": 0, "error": exc.message})
    db = st.db
    last = _last_runs(db, [(x["project"], x["uuid"]) for x in pipelines])
    where = [pr.c.status == "failed"]
    if project:
        where.append(pr.c.project == project)
    with db.engine.connect() as conn:
        failures = [_run_brief(dict(r._mapping)) for r in conn.execute(
            sa.select(pr).where(*where).order_by(pr.c.id.desc()).limit(8))]
        tw = [ps.c.status == "active", ps.c.project.in_(names)]
        if project:
            tw.append(ps.c.project == project)
        triggers = [
            {k: _iso(v) for k, v in dict(r._mapping).items() if k != "token"}
            for r in conn.execute(sa.select(ps).where(*tw).order_by(ps.c.id))
        ]
        counts = {s: int(n) for s, n in conn.execute(
            sa.select(pr.c.status, sa.func.count()).where(pr.c.status.in_(("queued", "running"))).group_by(pr.c.status))}
    active: dict[tuple[str, str], int] = {}
    for t in triggers:
        key = (t.get("project"), t.get("pipeline_uuid"))
        active[key] = active.get(key, 0) + 1
    for x in pipelines:
        x["last_run"] = last.get((x["project"], x["uuid"]))
        x["active_triggers"] = active.get((x["project"], x["uuid"]), 0)
    return {
        "workspace": ws.name,
        "projects": [{"name": p.name, "pipelines": len(p.pipeline_uuids())} for p in projects],
        "pipelines": pipelines,
        "recent_failures": failures,
        "active_triggers": triggers[:50],
        "runs": {"queued": counts.get("queued", 0), "running": counts.get("running", 0)},
    }


@router.get("/overview", dependencies=guarded())
async def overview(request: Request, project: Optional[str] = Query(None)):
    return await run_in_threadpool(_overview, state(request), project)


# --------------------------------------------------------------- pipeline states
def _block_states(st: Any, project: str, pipeline: str) -> dict:
    """Per block uuid, its newest block run in this pipeline (any status): what the DAG
    and the block cards show as 'last status', with tests and where outputs live."""
    import sqlalchemy as sa

    from blockyard.db.schema import block_runs as br
    from blockyard.db.schema import pipeline_runs as pr

    db = st.db
    with db.engine.connect() as conn:
        runs = conn.execute(
            sa.select(pr.c.id, pr.c.status, pr.c.created_at, pr.c.completed_at, pr.c.error)
            .where(pr.c.pipeline_uuid == pipeline, pr.c.project == project)
            .order_by(pr.c.created_at.desc(), pr.c.id.desc()).limit(20)
        ).all()
        latest = (
            sa.select(sa.func.max(br.c.id).label("id"))
            .select_from(br.join(pr, pr.c.id == br.c.pipeline_run_id))
            .where(pr.c.pipeline_uuid == pipeline, pr.c.project == project, br.c.dynamic_index.is_(None))
            .group_by(br.c.block_uuid)
            .subquery()
        )
        rows = conn.execute(
            sa.select(br.c.id, br.c.pipeline_run_id, br.c.block_uuid, br.c.status, br.c.started_at,
                      br.c.completed_at, br.c.error, br.c.cache_hit, br.c.output_ref, br.c.tests, br.c.attempts)
            .where(br.c.id.in_(sa.select(latest.c.id)))
        ).all()
        # dynamic clones (block runs with a dynamic_index) per block, in the newest run
        clones = {}
        if runs:
            clones = {
                base: n for base, n in conn.execute(
                    sa.select(br.c.base_block_uuid, sa.func.count())
                    .where(br.c.pipeline_run_id == runs[0].id, br.c.dynamic_index.is_not(None))
                    .group_by(br.c.base_block_uuid)
                ).all() if base
            }
    blocks = {}
    for r in rows:
        d = dict(r._mapping)
        blocks[d["block_uuid"]] = {k: _iso(v) for k, v in d.items()}
    return {
        "blocks": blocks,
        "clones": clones,
        "clones_run": runs[0].id if runs else None,
        "runs": [{"id": r.id, "status": r.status, "created_at": _iso(r.created_at),
                  "completed_at": _iso(r.completed_at), "error": r.error} for r in runs],
    }


@router.get("/pipelines/{project}/{pipeline}/state", dependencies=guarded())
async def block_states(project: str, pipeline: str, request: Request):
    from blockyard.server.deps import check_name

    check_name(project, "project name")
    check_name(pipeline, "pipeline uuid")
    return await run_in_threadpool(_block_states, state(request), project, pipeline)


# ------------------------------------------------------------------- dashboards
def _dashboard(st: Any, project: str | None, pipeline: str | None, days: int) -> dict:
    import sqlalchemy as sa

    from blockyard.db.schema import pipeline_runs as pr

    now = _dt.datetime.now(_dt.timezone.utc)
    start = (now - _dt.timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    where = [pr.c.created_at >= start]
    if project:
        where.append(pr.c.project == project)
    if pipeline:
        where.append(pr.c.pipeline_uuid == pipeline)
    day = sa.func.substr(sa.cast(pr.c.created_at, sa.String), 1, 10) if st.db.dialect == "sqlite" \
        else sa.func.to_char(pr.c.created_at, "YYYY-MM-DD")
    with st.db.engine.connect() as conn:
        counts = conn.execute(
            sa.select(day.label("day"), pr.c.status, sa.func.count()).where(*where).group_by("day", pr.c.status)
        ).all()
        recent = conn.execute(
            sa.select(pr.c.id, pr.c.project, pr.c.pipeline_uuid, pr.c.status, pr.c.started_at, pr.c.completed_at)
            .where(*where, pr.c.started_at.is_not(None), pr.c.completed_at.is_not(None))
            .order_by(pr.c.id.desc()).limit(500)
        ).all()
    labels = [(start + _dt.timedelta(days=i)).date().isoformat() for i in range(days)]
    index = {d: i for i, d in enumerate(labels)}
    by_status: dict[str, list[int]] = {}
    for d, status, n in counts:
        d = str(d)[:10]
        if d in index:
            by_status.setdefault(status, [0] * days)[index[d]] += int(n)
    durations = []
    for r in reversed(recent):
        secs = (r.completed_at - r.started_at).total_seconds()
        durations.append({"id": r.id, "pipeline": f"{r.project}/{r.pipeline_uuid}", "status": r.status,
                          "started_at": _iso(r.started_at), "seconds": round(secs, 3)})
    return {"days": labels, "by_status": by_status, "durations": durations}


@router.get("/dashboard", dependencies=guarded())
async def dashboard(request: Request, project: Optional[str] = None, pipeline: Optional[str] = None,
                    days: int = Query(30, ge=1, le=366)):
    return await run_in_threadpool(_dashboard, state(request), project, pipeline, days)


def _mlflow(st: Any, limit: int) -> dict:
    """Training metrics from the workspace's MLflow tracking store (read with mlflow's client)."""
    import os
    from pathlib import Path

    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        db = Path(st.workspace.data_dir) / "mlflow.db"
        if not db.is_file():
            return {"available": False, "reason": f"no MLflow tracking store yet ({st.relative(db)}): "
                                                  "run a training pipeline first", "runs": []}
        uri = f"sqlite:///{db}"
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        return {"available": False, "reason": "mlflow is not installed (pip install 'blockyard[ml]')", "runs": []}
    client = MlflowClient(tracking_uri=uri)
    out = []
    experiments = client.search_experiments()
    for exp in experiments:
        for run in client.search_runs([exp.experiment_id], max_results=limit, order_by=["attributes.start_time DESC"]):
            tags = run.data.tags
            metrics = run.data.metrics
            out.append({
                "experiment": exp.name,
                "run_id": run.info.run_id,
                "start_time": _dt.datetime.fromtimestamp(run.info.start_time / 1000, _dt.timezone.utc).isoformat()
                if run.info.start_time else None,
                "status": run.info.status,
                "model": tags.get("model_class") or tags.get("mlflow.runName") or "unknown",
                "kind": tags.get("blockyard_kind"),
                "pipeline": tags.get("pipeline"),
                "rmse": metrics.get("rmse", metrics.get("rmse_val", metrics.get("val_rmse"))),
                "metrics": metrics,
            })
    return {"available": True, "tracking_uri": uri.split("///")[0] + "///…" if uri.startswith("sqlite") else uri,
            "runs": out}


@router.get("/mlflow", dependencies=guarded())
async def mlflow_metrics(request: Request, limit: int = Query(2000, ge=1, le=10000)):
    return await run_in_threadpool(_mlflow, state(request), limit)


# --------------------------------------------------------------------- settings
def _secret_store(st: Any):
    from blockyard.secrets import SecretStore

    return SecretStore(st.db, data_dir=st.workspace.data_dir)


@router.get("/secrets", dependencies=guarded())
def list_secrets(request: Request):
    st = state(request)
    try:
        entries = _secret_store(st).entries(all_scopes=True)
    except Exception as exc:  # noqa: BLE001 - e.g. cryptography missing
        return {"available": False, "reason": str(exc), "secrets": []}
    return {"available": True, "secrets": [{k: _iso(v) for k, v in e.items()} for e in entries]}


class SecretIn(BaseModel):
    name: str
    value: str
    project: Optional[str] = None


@router.post("/secrets", status_code=201, dependencies=guarded())
def set_secret(body: SecretIn, request: Request):
    st = state(request)
    _secret_store(st).set(body.name.strip(), body.value, project=body.project or None)
    return {"name": body.name.strip(), "project": body.project or None}


@router.delete("/secrets/{name}", dependencies=guarded())
def delete_secret(name: str, request: Request, project: Optional[str] = None):
    from blockyard.server.errors import NotFound

    st = state(request)
    if not _secret_store(st).delete(name, project=project or None):
        raise NotFound(f"no secret {name!r}")
    return {"deleted": name}


@router.get("/notifications", dependencies=guarded())
def notifications(request: Request, project: str, pipeline: Optional[str] = None):
    from blockyard.notify.config import CHANNEL_KEYS, load_notification_config
    from blockyard.server.deps import get_project

    st = state(request)
    get_project(st, project)
    conf = load_notification_config(st.workspace, project, pipeline)
    channels = [CHANNEL_KEYS[k] for k in conf.raw if k in CHANNEL_KEYS]
    alert_on = conf.raw.get("alert_on")
    return {"project": project, "pipeline": pipeline, "channels": channels, "alert_on": alert_on,
            "sources": {k: st.relative(v) for k, v in conf.sources.items()}}


class TestAlertIn(BaseModel):
    project: str
    pipeline: Optional[str] = None


@router.post("/notifications/test", dependencies=guarded())
async def test_alert(body: TestAlertIn, request: Request):
    from blockyard.notify import send_test_alert
    from blockyard.server.deps import get_project

    st = state(request)
    get_project(st, body.project)
    results = await run_in_threadpool(send_test_alert, st.workspace, body.project, body.pipeline, db=st.db)
    return {"results": [r.to_dict() for r in results]}


class TestRuleIn(BaseModel):
    project: str
    rule: str
    pipeline: Optional[str] = None


@router.post("/monitoring/rules/test", dependencies=guarded())
async def test_rule(body: TestRuleIn, request: Request):
    """Send an alert rule's message as a test (blockyard.notify.rule_messages.send_rule_test)."""
    from blockyard.notify.rule_messages import send_rule_test
    from blockyard.server.deps import get_project

    st = state(request)
    get_project(st, body.project)
    return await run_in_threadpool(send_rule_test, st.workspace, body.project, body.rule, body.pipeline, db=st.db)


# ------------------------------------------------------------ block templates (inline add buttons)
@router.get("/block-templates", dependencies=guarded())
def block_templates():
    """The template choices per block type (generic, file path, URL, SQL, API request)."""
    from blockyard.ui.block_templates import choices

    return choices()


class TemplateIn(BaseModel):
    type: str
    template: str = "generic"
    params: dict[str, str] = {}


@router.post("/block-templates/render", dependencies=guarded())
def render_block_template(body: TemplateIn):
    from blockyard.server.errors import BadRequest
    from blockyard.ui.block_templates import render

    try:
        return {"code": render(body.type, body.template, body.params)}
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


# ------------------------------------------------------------ triggers: last and next run
def _next_run(row: dict, now: _dt.datetime) -> Any:
    """The scheduler's next_run_at, else computed from the schedule (active time triggers)."""
    if row.get("status") != "active" or row.get("schedule_type") != "time":
        return None
    if row.get("next_run_at"):
        return _iso(row["next_run_at"])
    try:
        from blockyard.orchestration.schedules import parse_schedule

        settings = row.get("settings") or {}
        sched = parse_schedule(row.get("schedule_interval"), timezone_name=settings.get("timezone"),
                               anchor=row.get("start_time"))
        point = sched.first_at_or_after(max(now, row["start_time"]) if row.get("start_time") else now)
        return _iso(point)
    except Exception:  # a bad schedule shows no next run (the trigger page shows its error)
        return None


@router.get("/triggers", dependencies=guarded())
def triggers_info(request: Request, project: Optional[str] = Query(None, max_length=255)):
    """Per trigger: its last run (id, status, time), its run count and its next run."""
    import sqlalchemy as sa

    from blockyard.db.schema import pipeline_runs as pr
    from blockyard.db.schema import pipeline_schedules as ps

    st = state(request)
    now = _dt.datetime.now(_dt.timezone.utc)
    with st.db.engine.connect() as conn:
        q = sa.select(ps)
        if project:
            q = q.where(ps.c.project == project)
        rows = [dict(r._mapping) for r in conn.execute(q)]
        stats = {r.trigger_id: (r.last_id, r.n) for r in conn.execute(
            sa.select(pr.c.trigger_id, sa.func.max(pr.c.id).label("last_id"), sa.func.count().label("n"))
            .where(pr.c.trigger_id.isnot(None)).group_by(pr.c.trigger_id))}
        last_ids = [v[0] for v in stats.values()]
        last = {r.id: r for r in conn.execute(
            sa.select(pr.c.id, pr.c.status, pr.c.created_at).where(pr.c.id.in_(last_ids)))} if last_ids else {}
    out = {}
    for row in rows:
        last_id, n = stats.get(row["id"], (None, 0))
        lr = last.get(last_id)
        out[str(row["id"])] = {
            "next_run": _next_run(row, now), "runs": int(n),
            "last_run": {"id": lr.id, "status": lr.status, "created_at": _iso(lr.created_at)} if lr else None,
            "error": row.get("error"),
        }
    return out


# ------------------------------------------------------------ settings: register a project
class RegisterIn(BaseModel):
    name: str
    path: Optional[str] = None


@router.post("/projects/register", status_code=201, dependencies=guarded())
def register_project(body: RegisterIn, request: Request):
    """Register an existing folder of the workspace as a project (settings.yaml `projects:`)."""
    from blockyard.server.deps import check_name, inside
    from blockyard.server.errors import NotFound

    st = state(request)
    name = body.name.strip()
    check_name(name, "project name")
    rel = (body.path or name).strip().rstrip("/")
    check_name(rel, "project folder", allow_slash=True)
    folder = inside(st, st.root / rel, f"project folder {rel!r}")
    if not folder.is_dir():
        raise NotFound(f"no folder {rel!r} in the workspace: create it (Files) or use New project")
    with st.edit_lock:
        project = st.workspace.add_project(name, None if rel == name else rel)
    return {"name": project.name, "path": rel, "pipelines": project.pipeline_uuids()}
