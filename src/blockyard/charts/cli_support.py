"""Chart widgets of a stored pipeline: find the widget, load its upstream blocks' latest
stored outputs, compute the chart and draw it (`blockyard chart ...`, the server)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from blockyard.errors import BlockyardError


def find_widget(spec: Any, chart_uuid: str) -> Any:
    for widget in spec.widgets or []:
        if widget.uuid == chart_uuid:
            return widget
    names = ", ".join(w.uuid for w in spec.widgets or []) or "none"
    raise BlockyardError(
        f"no chart widget '{chart_uuid}' in pipeline '{spec.uuid}'",
        file=spec.path,
        pipeline=spec.uuid,
        hint=f"widgets: {names}",
    )


def widget_code(widget: Any) -> tuple[str | None, Path | None]:
    """The chart code (None when the widget has none, e.g. a time series from group_by)."""
    path = widget.file_path
    if path is not None and Path(path).is_file():
        return Path(path).read_text(encoding="utf-8"), Path(path)
    return None, None


def stored_upstream_outputs(workspace: Any, spec: Any, widget: Any) -> list:
    """The latest stored output of each upstream block, one argument per block (a block
    with several outputs gives the list of them)."""
    from blockyard.session import session_for

    session = session_for(workspace)
    project = spec.project.name
    values = []
    for upstream in widget.upstream_blocks or []:
        row = session.db.latest_block_run(project, spec.uuid, upstream)
        if not row or not row.get("output_ref"):
            raise BlockyardError(
                f"block '{upstream}' has no stored output yet",
                pipeline=spec.uuid,
                block=upstream,
                hint=f"run the pipeline first: blockyard run {project}/{spec.uuid}",
            )
        run_id, node = row["output_ref"].split("/", 1)
        outputs = session.store.load_outputs(int(run_id), node)
        values.append(outputs[0] if len(outputs) == 1 else list(outputs))
    return values


def compute_chart_for_block(workspace: Any, pipeline: str, block: str | None, chart_uuid: str) -> dict:
    """Chart data of widget `chart_uuid` of `pipeline` (attached to `block`, if given)."""
    from blockyard.charts.compute import compute_chart

    spec = workspace.find_pipeline(pipeline)
    widget = find_widget(spec, chart_uuid)
    if block and block not in (widget.upstream_blocks or []):
        raise BlockyardError(
            f"chart '{chart_uuid}' is not attached to block '{block}'",
            file=spec.path,
            pipeline=spec.uuid,
            hint="it reads from: " + (", ".join(widget.upstream_blocks or []) or "no block"),
        )
    code, code_path = widget_code(widget)
    inputs = stored_upstream_outputs(workspace, spec, widget)
    raw = dict(widget.raw or {})
    raw.setdefault("uuid", widget.uuid)
    raw.setdefault("name", widget.name)
    raw.setdefault("configuration", widget.configuration or {})
    return compute_chart(
        raw,
        code,
        inputs,
        code_path=str(code_path) if code_path else None,
    )


def render_chart_for_block(workspace: Any, pipeline: str, block: str | None, chart_uuid: str, out: str | Path) -> Path:
    from blockyard.charts.render import render_png

    return render_png(compute_chart_for_block(workspace, pipeline, block, chart_uuid), out)
