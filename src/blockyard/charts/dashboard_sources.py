"""What dashboard charts read besides chart code: Mage's data sources other than
`chart_code` — `block` (a block's stored outputs), and from the run history
`pipeline_runs`, `pipeline_schedules`, `block_runs` and `pipelines` — and `custom`
charts whose `@render` function returns an image (SHAP plots, any matplotlib figure).

A `block` source (`{type: block, pipeline_uuid: P, block_uuid: B, partitions: N}`) gives
the chart the list of B's stored outputs, as Mage's `input_args`: without `partitions`
(or 0) the outputs of B's latest completed run (Mage re-executes the block there;
Blockyard never runs a block to draw a chart); N > 0 the outputs of the N latest
completed pipeline runs (newest first), N < 0 the |N| earliest; a list: those run ids.
`pipeline_schedule_id` keeps only the runs of that trigger.

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
from pathlib import Path

from blockyard.charts.compute import ChartError

__all__ = ["block_outputs", "history_frame", "image_chart", "pipelines_frame"]

LIMIT = 10_000  # rows of a run-history frame, as Mage's DEFAULT_LIMIT


def _history_db(root: Path):
    """The workspace's run-history database (opened and migrated once per process)."""
    from blockyard import settings
    from blockyard.db import shared_database

    return shared_database(settings.database_url_for(settings.data_dir_for(Path(root))))


def _pipeline(root: Path, source: dict, where: dict, *, required: bool, kind: str):
    """(workspace, spec or None) for `data_source.pipeline_uuid`."""
    from blockyard.errors import BlockyardError
    from blockyard.project import Workspace

    ref = source.get("pipeline_uuid")
    if not ref and required:
        raise ChartError(f"data_source type {kind} needs pipeline_uuid", **where)
    try:
        ws = Workspace.open(root)
    except BlockyardError as exc:
        raise ChartError(f"data_source type {kind}: {exc}", **where) from None
    if not ref:
        return ws, None
    try:
        return ws, ws.find_pipeline(str(ref))
    except BlockyardError as exc:
        raise ChartError(f"data_source.pipeline_uuid: {exc}", **where) from None


def pipeline_variables(root: Path, source: dict, where: dict) -> dict:
    """The global variables of `data_source.pipeline_uuid` (its metadata.yaml `variables`)."""
    _, spec = _pipeline(root, source, where, required=True, kind=str(source.get("type") or "chart_code"))
    return dict(spec.variables or {})


def _frame(db, query, columns: list[str], dates: tuple = ()):
    import pandas as pd

    with db.engine.connect() as conn:
        frame = pd.DataFrame([dict(r._mapping) for r in conn.execute(query)], columns=columns)
    for col in dates:
        frame[col] = pd.to_datetime(frame[col], utc=True)
    return frame


def history_frame(root: Path, kind: str, source: dict, where: dict):
    """A run-history frame for the data source types pipeline_runs, block_runs and
    pipeline_schedules (of one pipeline; the first two of every pipeline without
    pipeline_uuid, as Mage lists them)."""
    import sqlalchemy as sa

    from blockyard.db.schema import block_runs as b
    from blockyard.db.schema import pipeline_runs as t

    ws, spec = _pipeline(root, source, where, required=kind == "pipeline_schedules", kind=kind)
    db = _history_db(root)
    scope = [] if spec is None else [t.c.project == spec.project.name, t.c.pipeline_uuid == spec.uuid]
    if source.get("pipeline_schedule_id") is not None:
        scope.append(t.c.trigger_id == _int(source["pipeline_schedule_id"], "pipeline_schedule_id", where))
    if kind == "pipeline_runs":
        cols = [t.c.id, t.c.project, t.c.pipeline_uuid, t.c.status, t.c.execution_date, t.c.created_at,
                t.c.started_at, t.c.completed_at, t.c.trigger_id.label("pipeline_schedule_id"), t.c.backfill_id]
        query = sa.select(*cols).where(*scope).order_by(t.c.id.desc()).limit(LIMIT)
        frame = _frame(db, query, [c.name for c in cols], ("execution_date", "created_at", "started_at", "completed_at"))
        frame = frame.iloc[::-1].reset_index(drop=True)  # the latest LIMIT runs, oldest first
        # Mage gives every run an execution date; manual runs here may have none.
        frame["execution_date"] = frame["execution_date"].fillna(frame["created_at"])
        return frame
    if kind == "block_runs":
        cols = [b.c.id, b.c.pipeline_run_id, t.c.project, t.c.pipeline_uuid, b.c.block_uuid, b.c.status,
                b.c.attempts, b.c.started_at, b.c.completed_at, t.c.execution_date,
                t.c.trigger_id.label("pipeline_schedule_id")]
        query = (sa.select(*cols).join(t, t.c.id == b.c.pipeline_run_id).where(*scope)
                 .order_by(b.c.id.desc()).limit(LIMIT))
        frame = _frame(db, query, [c.name for c in cols], ("started_at", "completed_at", "execution_date"))
        frame = frame.iloc[::-1].reset_index(drop=True)
        frame["duration"] = (frame["completed_at"] - frame["started_at"]).dt.total_seconds()
        return frame
    import pandas as pd

    rows = _triggers(ws, db, spec.project.name, spec.uuid)
    columns = ["id", "name", "project", "pipeline_uuid", "schedule_type", "schedule_interval", "status", "start_time"]
    frame = pd.DataFrame([{k: r.get(k) for k in columns} for r in rows], columns=columns)
    frame["schedule_interval"] = frame["schedule_interval"].fillna("none")
    return frame


def pipelines_frame(root: Path, source: dict, where: dict):
    """Mage's `pipelines` data source: one row per pipeline of the workspace."""
    import pandas as pd

    ws, _ = _pipeline(root, {}, where, required=False, kind="pipelines")
    rows = []
    for project in ws.projects():
        for spec in project.pipelines():
            rows.append({"uuid": spec.uuid, "name": spec.name, "project": project.name, "type": spec.type,
                         "description": spec.description, "tags": list(spec.tags), "blocks": len(spec.blocks)})
    return pd.DataFrame(rows, columns=["uuid", "name", "project", "type", "description", "tags", "blocks"])


def _int(value, key: str, where: dict) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ChartError(f"data_source.{key} must be a number, not {value!r}", **where) from None


def block_outputs(root: Path, source: dict, where: dict) -> list:
    """Mage's `block` data source: the block's stored outputs (see the module doc)."""
    import sqlalchemy as sa

    from blockyard.db.schema import block_runs as b
    from blockyard.db.schema import pipeline_runs as t
    from blockyard.session import session_for

    ws, spec = _pipeline(root, source, where, required=True, kind="block")
    block = source.get("block_uuid")
    known = [blk.uuid for blk in spec.blocks]
    if not block or block not in known:
        raise ChartError(f"data_source.block_uuid {block!r} is not a block of {spec.project.name}/{spec.uuid}",
                         hint="blocks: " + (", ".join(known) or "none"), **where)
    scope = [t.c.project == spec.project.name, t.c.pipeline_uuid == spec.uuid, b.c.block_uuid == block,
             b.c.status == "completed", b.c.output_ref.isnot(None)]
    if source.get("pipeline_schedule_id") is not None:
        scope.append(t.c.trigger_id == _int(source["pipeline_schedule_id"], "pipeline_schedule_id", where))
    partitions = source.get("partitions")
    query = sa.select(b.c.output_ref, t.c.id).join(t, t.c.id == b.c.pipeline_run_id).where(*scope)
    if isinstance(partitions, list):
        ids = [_int(p, "partitions[]", where) for p in partitions]
        query = query.where(t.c.id.in_(ids))
        order = {run_id: i for i, run_id in enumerate(ids)}
    else:
        n = _int(partitions or 0, "partitions", where)
        if n:  # Mage counts completed pipeline runs, by execution date
            when = sa.func.coalesce(t.c.execution_date, t.c.created_at)
            query = query.where(t.c.status == "completed").order_by(
                when.desc() if n > 0 else when.asc(), t.c.id.desc() if n > 0 else t.c.id.asc()).limit(abs(n))
        else:
            query = query.order_by(t.c.id.desc()).limit(1)
        order = None
    session = session_for(ws)
    with session.db.engine.connect() as conn:
        refs = [(r.output_ref, r.id) for r in conn.execute(query)]
    if order is not None:
        refs.sort(key=lambda r: order.get(r[1], len(order)))
    if not refs:
        raise ChartError(f"block '{block}' of {spec.project.name}/{spec.uuid} has no stored output yet",
                         hint=f"run the pipeline first: blockyard run {spec.project.name}/{spec.uuid}", **where)
    outputs: list = []
    for ref, _run in refs:
        run_id, node = ref.split("/", 1)
        outputs.extend(session.store.load_outputs(int(run_id), node))
    return outputs


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
