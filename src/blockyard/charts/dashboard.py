"""Dashboards as files, Mage's format: `<workspace>/presenters/<name>/dashboard/block_layout.yaml`.

```yaml
blocks:
  drift_share_by_month:
    name: Drift share by month
    type: chart
    data_source: {type: chart_code}
    configuration: {chart_type: bar chart, x: x, y: y}
layout:
- - {block_uuid: drift_share_by_month, width: 1}
```
A `chart_code` block's code is `presenters/<name>/charts/<uuid>.py` (or a project's
`charts/<uuid>.py`, or `configuration.file_source.path`): either Mage's
`@data_source` function, whose result the configuration's `group_by`/`metrics`/`x`/`y`
read as `df_1`, or chart code defining the variables the configuration names.

    board = load_dashboard(workspace_root, "monitoring")
    render_dashboard(board, "monitoring.html")   # or .png
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

from blockyard.charts.compute import ChartError

# Mage's data sources read from the run history (besides chart_code and block).
HISTORY_SOURCES = ("pipeline_runs", "pipeline_schedules", "block_runs")
DATA_SOURCES = ("chart_code", "block", *HISTORY_SOURCES, "pipelines")

__all__ = ["Dashboard", "list_dashboards", "load_dashboard", "compute_dashboard", "render_dashboard"]


@dataclass
class Dashboard:
    name: str
    path: Path  # block_layout.yaml
    blocks: dict
    layout: list  # rows of {block_uuid, width, height}
    root: Path | None = None  # the workspace
    charts: list = field(default_factory=list)  # computed: rows of chart dicts


def _presenters(root: Path) -> Path:
    return Path(root) / "presenters"


def list_dashboards(root: str | Path) -> list[str]:
    """Names of the dashboards of the workspace at `root` (pipeline dashboards as
    `pipelines/<uuid>`)."""
    base = _presenters(Path(root))
    if not base.is_dir():
        return []
    return sorted(
        str(p.parent.parent.relative_to(base)) for p in base.glob("**/dashboard/block_layout.yaml")
    )


def load_dashboard(root: str | Path, name: str) -> Dashboard:
    from blockyard.project.yaml_io import read_mapping

    root = Path(root)
    base = _presenters(root)
    path = (base / name / "dashboard" / "block_layout.yaml").resolve()
    if not path.is_relative_to(base.resolve()) or not path.is_file():
        known = ", ".join(list_dashboards(root)) or "none"
        raise ChartError(f"no dashboard {name!r} (looked for {path})", hint=f"dashboards of this workspace: {known}")
    doc = read_mapping(path, "dashboard block layout").data
    blocks = doc.get("blocks") or {}
    layout = doc.get("layout") or [[{"block_uuid": uuid} for uuid in blocks]]
    if not isinstance(blocks, dict) or not isinstance(layout, list):
        raise ChartError("blocks must be a mapping and layout a list of rows", file=str(path))
    for i, row in enumerate(layout):
        for j, item in enumerate(row if isinstance(row, list) else [row]):
            uuid = item.get("block_uuid") if isinstance(item, dict) else None
            if uuid not in blocks:
                raise ChartError(f"layout[{i}][{j}] names block {uuid!r}, which is not under blocks:", file=str(path))
    return Dashboard(name=name, path=path, blocks=blocks, layout=layout, root=root)


def _code_for(root: Path, board: Dashboard, uuid: str, block: dict) -> Path | None:
    config = block.get("configuration") or {}
    candidates = []
    source = (config.get("file_source") or {}).get("path")
    if source:
        candidates.append(root / source)
    candidates.append(board.path.parent.parent / "charts" / f"{uuid}.py")
    candidates += sorted(root.glob(f"*/charts/{uuid}.py"))
    return next((p for p in candidates if p.is_file()), None)


def _call(fn, args: list, variables: dict):
    """Call a chart function Mage-style: the data source frame positionally (when it
    takes positional arguments) and the variables it accepts by name."""
    import inspect

    params = inspect.signature(fn).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        kwargs = dict(variables)
    else:
        names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        kwargs = {k: v for k, v in variables.items() if k in names}
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in kwargs]
    if not any(p.kind is p.VAR_POSITIONAL for p in params):
        args = args[: len(positional)]
    return fn(*args, **kwargs)


def _chart(root: Path, board: Dashboard, uuid: str, variables: dict) -> dict:
    from blockyard.charts.compute import compute_chart, run_chart_code

    block = dict(board.blocks[uuid] or {})
    block.setdefault("uuid", uuid)
    config = block.get("configuration") or {}
    path = _code_for(root, board, uuid, block)
    code = path.read_text() if path else None
    where = {"file": str(path) if path else str(board.path), "block": uuid}
    source = block.get("data_source") or {}
    if not isinstance(source, dict):
        raise ChartError(f"data_source must be a mapping, not {type(source).__name__}", **where)
    kind = str(source.get("type") or "chart_code")
    inputs: list = []
    if kind in HISTORY_SOURCES:
        from blockyard.charts.dashboard_sources import history_frame

        inputs = [history_frame(root, kind, source, where)]
    elif kind == "pipelines":
        from blockyard.charts.dashboard_sources import pipelines_frame

        inputs = [pipelines_frame(root, source, where)]
    elif kind == "block":
        from blockyard.charts.dashboard_sources import block_outputs

        # As Mage's input_args: one argument, the list of the block's outputs.
        inputs = [block_outputs(root, source, where)]
    elif kind != "chart_code":
        raise ChartError(f"data_source type {kind!r} is not supported", hint="use one of: " + ", ".join(DATA_SOURCES),
                         **where)
    if source.get("pipeline_uuid"):
        # Mage gives the chart the pipeline's global variables (the request's win).
        from blockyard.charts.dashboard_sources import pipeline_variables

        variables = {**pipeline_variables(root, source, where), **variables}
    sources: list = []
    renders: list = []
    if code and ("@data_source" in code or "@render" in code):

        def data_source(fn):
            sources.append(fn)
            return fn

        def render(render_type: str = "jpeg", **_options):
            def decorate(fn):
                renders.append((fn, render_type))
                return fn

            return decorate

        run_chart_code(code, [], uuid=uuid, code_path=str(path),
                       variables={"data_source": data_source, "render": render, **variables})
        code = None
    if sources:
        try:
            inputs = [_call(sources[-1], inputs, variables)]
        except Exception as exc:
            raise ChartError(f"the @data_source function failed: {type(exc).__name__}: {exc}", **where) from exc
    if str(config.get("chart_type") or "").strip().lower() == "custom":
        if not renders:
            raise ChartError("a custom chart needs a @render function in its chart code", **where)
        from blockyard.charts.dashboard_sources import image_chart

        return image_chart(block, renders[-1], inputs, variables, where)
    kind_of_chart = str(config.get("chart_type") or "").strip().lower()
    group_by = config.get("group_by")
    if kind_of_chart in ("histogram", "pie chart") and group_by and not config.get("x"):
        # Mage's histograms and pies name their column in group_by.
        block["configuration"] = {**config, "x": group_by[0] if isinstance(group_by, list) else group_by}
    return compute_chart(block, code, inputs, code_path=str(path) if path else None, variables=variables)


def compute_dashboard(root: str | Path, board: Dashboard, variables: dict | None = None) -> Dashboard:
    """Compute every chart of the layout; a failing chart is kept as {"error": ...}."""
    from blockyard.engine.loader import ensure_import_paths

    root = Path(root)
    # Chart code imports the workspace's helpers as blocks do (`from mlops.utils... import`).
    ensure_import_paths(root.resolve().parent)
    rows = []
    for row in board.layout:
        out = []
        for item in row if isinstance(row, list) else [row]:
            uuid = item["block_uuid"]
            try:
                # `workspace_root` lets chart code find the workspace's data (run history,
                # monitoring figures) whatever the process's working directory.
                chart = _chart(root, board, uuid, {"workspace_root": str(root), **(variables or {})})
            except ChartError as exc:
                chart = {"uuid": uuid, "title": (board.blocks[uuid] or {}).get("name") or uuid, "error": str(exc)}
            chart["width"] = float(item.get("width") or 1)
            out.append(chart)
        rows.append(out)
    board.charts = rows
    return board


def _figure(chart: dict):
    """A Plotly figure for one computed chart."""
    import plotly.graph_objects as go

    kind, data, title = chart.get("type"), chart.get("data") or {}, chart.get("title")
    fig = go.Figure()
    if kind == "histogram":
        edges = data.get("edges") or []
        mids = [(a + b) / 2 for a, b in zip(edges, edges[1:])]
        fig.add_bar(x=mids, y=data.get("counts"), name=data.get("x_label") or "count")
    elif kind in ("bar chart", "line chart", "time series bar chart", "time series line chart"):
        horizontal = (chart.get("options") or {}).get("chart_style") == "horizontal"
        for i, ys in enumerate(data.get("y") or []):
            label = (data.get("y_labels") or [None] * (i + 1))[i]
            if "bar" in kind:
                fig.add_bar(x=ys if horizontal else data.get("x"), y=data.get("x") if horizontal else ys,
                            name=label, orientation="h" if horizontal else "v")
            else:
                fig.add_scatter(x=data.get("x"), y=ys, name=label, mode="lines+markers")
    elif kind == "pie chart":
        fig.add_pie(labels=data.get("labels"), values=data.get("values"))
    elif kind == "table":
        columns = list(data.get("columns") or [])
        rows = data.get("rows") or []
        fig.add_table(header={"values": columns}, cells={"values": [list(c) for c in zip(*rows)] if rows else []})
    fig.update_layout(title=title, height=360, margin={"l": 40, "r": 20, "t": 50, "b": 40})
    return fig


def _html(board: Dashboard) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(board.name)} - Blockyard dashboard</title>",
        "<style>body{font-family:sans-serif;margin:16px}.row{display:flex;gap:12px;margin-bottom:12px}"
        ".cell{border:1px solid #ddd;border-radius:6px;padding:4px;min-width:0}"
        ".error{color:#b42318;white-space:pre-wrap;padding:12px}</style></head><body>",
        f"<h1>{html.escape(board.name)}</h1>",
    ]
    first = True
    for row in board.charts:
        parts.append("<div class='row'>")
        for chart in row:
            parts.append(f"<div class='cell' style='flex:{chart['width']}'>")
            if chart.get("error"):
                parts.append(f"<h3>{html.escape(str(chart['title']))}</h3><div class='error'>{html.escape(chart['error'])}</div>")
            elif chart.get("type") == "image":  # a custom chart's picture (SHAP plots)
                data = chart["data"]
                parts.append(f"<h3>{html.escape(str(chart['title']))}</h3>"
                             f"<img style='max-width:100%' alt='{html.escape(str(chart['title']))}' "
                             f"src='data:{data['mime']};base64,{data['base64']}'>")
            else:
                # plotly.js is inlined once, so the file works offline.
                parts.append(_figure(chart).to_html(full_html=False, include_plotlyjs=first))
                first = False
            parts.append("</div>")
        parts.append("</div>")
    parts.append("</body></html>")
    return "".join(parts)


def _png(board: Dashboard, out: Path) -> None:
    import tempfile

    import matplotlib.image as mpimg
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from blockyard.charts.render import render_png

    rows = board.charts
    fig = Figure(figsize=(14, 4.2 * max(1, len(rows))), dpi=100)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(max(1, len(rows)), 12)
    with tempfile.TemporaryDirectory() as tmp:
        for r, row in enumerate(rows):
            total, start = sum(c["width"] for c in row) or 1, 0
            for i, chart in enumerate(row):
                span = max(1, round(12 * chart["width"] / total)) if i < len(row) - 1 else 12 - start
                ax = fig.add_subplot(grid[r, start:start + span])
                start += span
                ax.axis("off")
                if chart.get("error"):
                    ax.set_title(str(chart["title"]))
                    ax.text(0, 0.5, chart["error"][:300], wrap=True, color="#b42318", fontsize=8)
                    continue
                if chart.get("type") == "image":
                    import base64
                    import io

                    ax.set_title(str(chart["title"]))
                    fmt = "png" if chart["data"]["mime"] == "image/png" else "jpeg"
                    ax.imshow(mpimg.imread(io.BytesIO(base64.b64decode(chart["data"]["base64"])), format=fmt))
                    continue
                path = render_png(chart, Path(tmp) / f"{r}-{i}.png", width=6, height=4)
                ax.imshow(mpimg.imread(path))
    fig.suptitle(board.name)
    fig.savefig(out, format="png")


def render_dashboard(board: Dashboard, out: str | Path, *, variables: dict | None = None) -> Path:
    """Write the dashboard as `.html` (Plotly, self-contained) or `.png`."""
    out = Path(out)
    if out.suffix.lower() not in (".html", ".png"):
        raise ChartError(f"cannot write a dashboard as {out.suffix or 'a file without extension'}",
                         hint="use -o NAME.html or -o NAME.png")
    if not board.charts:
        compute_dashboard(board.root or board.path.parents[3], board, variables)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".html":
        out.write_text(_html(board), encoding="utf-8")
    else:
        _png(board, out)
    return out
