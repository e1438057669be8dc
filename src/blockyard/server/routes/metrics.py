"""GET /metrics (Prometheus text format) and the monitoring checks under /api/monitoring.

/metrics is read from the run-history database at each scrape (so every web process
of a deployment reports the same figures):
- blockyard_pipeline_runs{project,pipeline,status}      runs in the history
- blockyard_block_duration_seconds{project,pipeline}    histogram of finished block runs
- blockyard_queue_depth                                  runs waiting for a worker
- blockyard_scheduler_lag_seconds                        how late the most overdue active trigger is
- blockyard_scheduler_heartbeat_age_seconds              since the scheduler's last heartbeat
- blockyard_workers / blockyard_worker_slots             live workers and their run slots
- blockyard_monitoring{model,metric}                     figures of each model's newest check
- blockyard_monitoring_check_timestamp_seconds{model}    when that check ran
When the server has an API token, /metrics asks for it too (`bearer_token` in Prometheus).
"""
from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Path as PathParam, Query, Request
from fastapi.responses import FileResponse, Response

from blockyard.server.deps import state

router = APIRouter(tags=["metrics"])
log = logging.getLogger("blockyard.server")

DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
MAX_BLOCK_ROWS = 200_000  # newest finished block runs read per scrape
LIVE_SECONDS = 15.0


def _collector(db: Any):
    from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

    class Collector:
        def collect(self):
            yield from _runs(db, GaugeMetricFamily)
            yield from _durations(db, HistogramMetricFamily)
            yield from _orchestration(db, GaugeMetricFamily)
            yield from _monitoring(db, GaugeMetricFamily)

    return Collector()


def _runs(db, Gauge):
    import sqlalchemy as sa

    from blockyard.db.schema import pipeline_runs as r

    runs = Gauge("blockyard_pipeline_runs", "Pipeline runs in the run history", labels=["project", "pipeline", "status"])
    queue = Gauge("blockyard_queue_depth", "Runs waiting for a worker (status queued)")
    depth = 0
    query = sa.select(r.c.project, r.c.pipeline_uuid, r.c.status, sa.func.count()).group_by(
        r.c.project, r.c.pipeline_uuid, r.c.status
    )
    with db.engine.connect() as conn:
        for project, pipeline, status, n in conn.execute(query):
            runs.add_metric([project, pipeline, status], int(n))
            if status == "queued":
                depth += int(n)
    queue.add_metric([], depth)
    yield runs
    yield queue


def _durations(db, Histogram):
    import bisect

    import sqlalchemy as sa

    from blockyard.db.schema import block_runs as b
    from blockyard.db.schema import pipeline_runs as r

    query = (
        sa.select(r.c.project, r.c.pipeline_uuid, b.c.started_at, b.c.completed_at)
        .join(r, r.c.id == b.c.pipeline_run_id)
        .where(b.c.started_at.is_not(None), b.c.completed_at.is_not(None))
        .order_by(b.c.id.desc())
        .limit(MAX_BLOCK_ROWS)
    )
    groups: dict[tuple, list] = {}
    with db.engine.connect() as conn:
        for project, pipeline, started, completed in conn.execute(query):
            seconds = max(0.0, (completed - started).total_seconds())
            entry = groups.setdefault((project, pipeline), [[0] * (len(DURATION_BUCKETS) + 1), 0.0])
            entry[0][bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
            entry[1] += seconds
    family = Histogram(
        "blockyard_block_duration_seconds", "Duration of finished block runs", labels=["project", "pipeline"]
    )
    for (project, pipeline), (counts, total) in sorted(groups.items()):
        cumulative, buckets = 0, []
        for le, n in zip([*map(str, DURATION_BUCKETS), "+Inf"], counts):
            cumulative += n
            buckets.append((le, cumulative))
        family.add_metric([project, pipeline], buckets, total)
    yield family


def _orchestration(db, Gauge):
    import sqlalchemy as sa

    from blockyard.db.columns import utcnow
    from blockyard.db.schema import pipeline_schedules as s

    now = utcnow()
    lag = Gauge("blockyard_scheduler_lag_seconds", "How late the most overdue active trigger is (0: none overdue)")
    with db.engine.connect() as conn:
        oldest = conn.execute(
            sa.select(sa.func.min(s.c.next_run_at)).where(s.c.status == "active", s.c.next_run_at <= now)
        ).scalar()
    lag.add_metric([], max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0)
    yield lag
    try:
        from blockyard.orchestration import status as orch
    except ImportError:  # pragma: no cover - orchestration is part of the package
        return
    age = orch.scheduler_heartbeat_age(db)
    if age is not None:
        yield Gauge("blockyard_scheduler_heartbeat_age_seconds", "Seconds since the scheduler's last heartbeat", value=age)
    live = [h for h in orch.heartbeats(db, role="worker") if h.get("age", 1e9) < LIVE_SECONDS]
    yield Gauge("blockyard_workers", "Workers with a heartbeat in the last 15 s", value=len(live))
    slots = sum(int((h.get("info") or {}).get("concurrency") or 0) for h in live)
    yield Gauge("blockyard_worker_slots", "Run slots of the live workers", value=slots)


def _monitoring(db, Gauge):
    from blockyard.ml.monitoring_store import MonitoringStore

    figures = Gauge("blockyard_monitoring", "Figures of each model's newest monitoring check", labels=["model", "metric"])
    stamps = Gauge("blockyard_monitoring_check_timestamp_seconds", "When each model's newest check ran", labels=["model"])
    for model, entry in sorted(MonitoringStore(db).latest().items()):
        for metric, value in sorted(entry["figures"].items()):
            if value is not None:
                figures.add_metric([model, metric], float(value))
        stamps.add_metric([model], entry["created_at"].timestamp())
    yield figures
    yield stamps


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request):
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    from blockyard.server.middleware import bearer_token, token_matches

    st = state(request)
    if st.config.token and not token_matches(bearer_token(request.headers), st.config.token):
        return Response("missing or wrong API token: send `Authorization: Bearer <token>`\n", status_code=401,
                        media_type="text/plain")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_collector(st.db))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


# ------------------------------------------------------------- monitoring checks
@router.get("/api/monitoring/checks", summary="Monitoring checks, newest first")
def list_checks(
    request: Request,
    model: str | None = Query(None, max_length=255),
    run_id: int | None = Query(None, ge=1, le=2_147_483_647, description="only the checks made by this pipeline run"),
    limit: int = Query(50, ge=1, le=1000),
):
    from blockyard.ml.monitoring_store import MonitoringStore
    from blockyard.server.jsonify import to_jsonable as jsonable

    rows = MonitoringStore(state(request).db).checks(model, limit=limit, run_id=run_id)
    for row in rows:
        row["report_url"] = f"/api/monitoring/checks/{row['id']}/report" if row.get("report_path") else None
        row.pop("report_path", None)
    return jsonable({"checks": rows})


@router.get("/api/monitoring/series", summary="The history of one monitoring figure")
def series(
    request: Request,
    model: str = Query(..., max_length=255),
    metric: str = Query(..., max_length=128),
    feature: str | None = Query(None, max_length=255),
):
    from blockyard.ml.monitoring_store import MonitoringStore
    from blockyard.server.jsonify import to_jsonable as jsonable

    return jsonable({"model": model, "metric": metric, "feature": feature,
                     "points": MonitoringStore(state(request).db).series(model, metric, feature)})


@router.get("/api/monitoring/checks/{check_id}/report", summary="The Evidently HTML report of a check")
def report(request: Request, check_id: int = PathParam(..., ge=1, le=2_147_483_647)):  # ids fit the INTEGER column
    from pathlib import Path

    from blockyard.ml.monitoring_store import MonitoringStore

    st = state(request)
    row = MonitoringStore(st.db).get_check(check_id)
    if row is None:
        raise HTTPException(404, f"no monitoring check {check_id}")
    path = Path(row["report_path"] or "")
    folder = (Path(st.workspace.data_dir) / "monitoring").resolve()
    # Only files Blockyard wrote under the data dir's monitoring/ folder are served.
    if not row["report_path"] or not path.resolve().is_relative_to(folder) or not path.is_file():
        raise HTTPException(404, f"the report of monitoring check {check_id} is not available")
    return FileResponse(path, media_type="text/html")


# -------------------------------------------------------------- dashboards (files)
@router.get("/api/dashboards", summary="The workspace's dashboards (presenters/<name>/dashboard/block_layout.yaml)")
def dashboards(request: Request):
    from blockyard.charts.dashboard import list_dashboards

    return {"dashboards": list_dashboards(state(request).workspace.root)}


@router.get("/api/dashboards/{name:path}", summary="A dashboard's charts, computed (rows of chart data)")
def dashboard(request: Request, name: str):
    from blockyard.charts.compute import ChartError
    from blockyard.charts.dashboard import compute_dashboard, load_dashboard

    root = state(request).workspace.root
    try:
        board = load_dashboard(root, name)
    except ChartError as exc:
        raise HTTPException(404, str(exc)) from None
    # Query parameters are the chart code's variables (e.g. ?month=2023-02), as `--var` in the CLI.
    board = compute_dashboard(root, board, dict(request.query_params))
    return {"name": board.name, "rows": board.charts}


# ------------------------------------------------------------ alert rules and states
@router.get("/api/monitoring/rules", summary="A project's (pipeline's) alert rules with their last state")
def rules(
    request: Request,
    project: str = Query(..., max_length=255),
    pipeline: str | None = Query(None, max_length=255),
):
    from blockyard.notify.rules import rules_with_states
    from blockyard.server.deps import get_project
    from blockyard.server.jsonify import to_jsonable

    st = state(request)
    get_project(st, project)  # 404 for an unknown project
    # ProjectError (a 4xx naming the file and rule) when a rule is malformed.
    out = rules_with_states(st.workspace, project, pipeline, db=st.db)
    return to_jsonable({"project": project, "pipeline": pipeline, "rules": out})
