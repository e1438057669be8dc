"""What dashboard charts read besides chart code: Mage's `pipeline_runs` and
`pipeline_schedules` data sources (from the run history), and `custom` charts whose
`@render` function returns an image (SHAP plots, any matplotlib figure).

A `pipeline_runs` frame has Mage's columns: id, pipeline_uuid, status, execution_date
(the creation time for runs without one), created_at, started_at, completed_at,
pipeline_schedule_id, backfill_id, project. A `pipeline_schedules` frame: id, name,
pipeline_uuid, schedule_type, schedule_interval ("none" without one), status,
start_time, project. `data_source.pipeline_uuid` is `project/pipeline` or a pipeline
name that exists in one project.
"""
from __future__ import annotations

import base64
import io
import threading
from pathlib import Path
from typing import Any

from blockyard.charts.compute import ChartError

__all__ = ["history_frame", "image_chart"]

_dbs: dict[str, Any] = {}
_lock = threading.Lock()


def _history_db(root: Path):
    """The workspace's run-history database (opened and migrated once per process)."""
    from blockyard import settings
    from blockyard.db import open_database

    url = settings.database_url_for(settings.data_dir_for(Path(root)))
    with _lock:
        db = _dbs.get(url)
        if db is None:
            if url.startswith("sqlite:///"):
                Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
            db = open_database(url)
            db.migrate()
            _dbs[url] = db
    return db


def history_frame(root: Path, kind: str, source: dict, where: dict):
    import pandas as pd
    import sqlalchemy as sa

    from blockyard.errors import BlockyardError
    from blockyard.project import Workspace

    ref = source.get("pipeline_uuid")
    if not ref:
        raise ChartError(f"data_source type {kind} needs pipeline_uuid", **where)
    ws = Workspace.open(root)
    try:
        spec = ws.find_pipeline(str(ref))
    except BlockyardError as exc:
        raise ChartError(f"data_source.pipeline_uuid: {exc}", **where) from None
    project, uuid = spec.project.name, spec.uuid
    db = _history_db(root)
    if kind == "pipeline_runs":
        from blockyard.db.schema import pipeline_runs as t

        cols = [t.c.id, t.c.project, t.c.pipeline_uuid, t.c.status, t.c.execution_date, t.c.created_at,
                t.c.started_at, t.c.completed_at, t.c.trigger_id.label("pipeline_schedule_id"), t.c.backfill_id]
        query = sa.select(*cols).where(t.c.project == project, t.c.pipeline_uuid == uuid).order_by(t.c.id)
        with db.engine.connect() as conn:
            frame = pd.DataFrame([dict(r._mapping) for r in conn.execute(query)], columns=[c.name for c in cols])
        for col in ("execution_date", "created_at", "started_at", "completed_at"):
            frame[col] = pd.to_datetime(frame[col], utc=True)
        # Mage gives every run an execution date; manual runs here may have none.
        frame["execution_date"] = frame["execution_date"].fillna(frame["created_at"])
        return frame
    rows = _triggers(ws, db, project, uuid)
    columns = ["id", "name", "project", "pipeline_uuid", "schedule_type", "schedule_interval", "status", "start_time"]
    frame = pd.DataFrame([{k: r.get(k) for k in columns} for r in rows], columns=columns)
    frame["schedule_interval"] = frame["schedule_interval"].fillna("none")
    return frame


def _triggers(ws, db, project: str, uuid: str) -> list[dict]:
    """The pipeline's triggers, with triggers.yaml synced into the table first."""
    try:
        from blockyard.orchestration.triggers import TriggerStore

        return TriggerStore(ws, db).list(project, uuid, sync=True)
    except ImportError:  # pragma: no cover - orchestration layer absent: the table as is
        import sqlalchemy as sa

        from blockyard.db.schema import pipeline_schedules as t

        with db.engine.connect() as conn:
            query = sa.select(t).where(t.c.project == project, t.c.pipeline_uuid == uuid)
            return [dict(r._mapping) for r in conn.execute(query)]


_MIME = {"jpeg": "image/jpeg", "jpg": "image/jpeg", "png": "image/png"}


def image_chart(block: dict, render: tuple, inputs: list, variables: dict, where: dict) -> dict:
    """A `custom` chart: Mage's `@render(render_type='jpeg'|'png')` function gets the
    data source's output and returns the image as base64 text, bytes or a matplotlib
    figure."""
    from blockyard.charts.dashboard import _call

    fn, render_type = render
    mime = _MIME.get(str(render_type).lower())
    if mime is None:
        raise ChartError(f"@render(render_type={render_type!r}) is not supported", hint="use 'jpeg' or 'png'", **where)
    try:
        out = _call(fn, [inputs[0] if inputs else None], variables)
    except Exception as exc:
        raise ChartError(f"the @render function failed: {type(exc).__name__}: {exc}", **where) from exc
    if hasattr(out, "savefig"):  # a matplotlib figure
        buf = io.BytesIO()
        out.savefig(buf, format="png", bbox_inches="tight")
        out, mime = buf.getvalue(), "image/png"
    if isinstance(out, (bytes, bytearray)):
        out = base64.b64encode(bytes(out)).decode()
    if not isinstance(out, str) or not out:
        raise ChartError(f"the @render function returned {type(out).__name__}, not an image "
                         "(base64 text, bytes or a matplotlib figure)", **where)
    try:
        base64.b64decode(out, validate=True)
    except ValueError:
        raise ChartError("the @render function's text is not base64", **where) from None
    uuid = str(block.get("uuid"))
    return {"type": "image", "uuid": uuid, "title": str(block.get("name") or uuid), "options": {},
            "data": {"mime": mime, "base64": out}}
