"""Draw chart data (from `compute_chart`) as a PNG with matplotlib's Agg canvas.

No pyplot and no global backend switch: each call builds its own Figure, so it is
safe from threads and leaves an interactive matplotlib session alone.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

MAX_BARS = 60
MAX_TABLE_ROWS = 40


def render_png(
    chart_data: dict,
    out_path: str | Path,
    *,
    width: float = 9.0,
    height: float | None = None,
    dpi: int = 100,
) -> Path:
    """Write `chart_data` as a PNG to `out_path` and return the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    chart_type = str(chart_data.get("type") or "")
    data = chart_data.get("data") or {}
    options = chart_data.get("options") or {}
    if chart_type == "table":
        data = _readable_table(data)
        width = max(width, min(2.0 + 1.4 * (len(data.get("columns") or []) + (1 if data.get("index") else 0)), 30.0))
    if height is None:
        height = _default_height(chart_type, data, options)
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    drawer = _DRAWERS.get(chart_type)
    if drawer is None:
        from blockyard.charts.compute import ChartError

        raise ChartError(f"cannot draw chart type {chart_type!r}", hint="known: " + ", ".join(_DRAWERS))
    drawer(ax, data, options)
    title = chart_data.get("title")
    if title:
        ax.set_title(str(title))
    if chart_type != "table":
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fig.tight_layout()
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


def _readable_table(data: dict) -> dict:
    """A wide table with row labels (e.g. feature profiles: stats x 20 columns) is drawn
    transposed, one row per column, so it fits on a page."""
    columns = list(data.get("columns") or [])
    rows = list(data.get("rows") or [])
    index = data.get("index")
    if index and len(columns) > 8 and len(columns) > len(rows):
        return {
            "columns": [str(i) for i in index],
            "rows": [[row[j] for row in rows] for j in range(len(columns))],
            "index": columns,
        }
    return data


def _default_height(chart_type: str, data: dict, options: dict) -> float:
    if chart_type == "table":
        return min(1.0 + 0.32 * (len((data.get("rows") or [])[:MAX_TABLE_ROWS]) + 1), 16.0)
    if chart_type == "bar chart" and options.get("chart_style") == "horizontal":
        return min(max(3.0, 0.3 * len((data.get("x") or [])[:MAX_BARS]) + 1.5), 20.0)
    return 5.0


def _num(values: list) -> list[float]:
    return [float("nan") if v is None else float(v) for v in values]


def _histogram(ax: Any, data: dict, options: dict) -> None:
    edges = data.get("edges") or []
    counts = data.get("counts") or []
    if counts:
        widths = [edges[i + 1] - edges[i] for i in range(len(counts))]
        ax.bar(edges[:-1], counts, width=widths, align="edge", edgecolor="white")
    ax.set_xlabel(str(data.get("x_label") or "value"))
    ax.set_ylabel("count")


def _bar(ax: Any, data: dict, options: dict) -> None:
    x = [str(v) for v in (data.get("x") or [])][:MAX_BARS]
    ys = [_num(s[:MAX_BARS]) for s in (data.get("y") or [])]
    labels = data.get("y_labels") or []
    horizontal = options.get("chart_style") == "horizontal"
    n = max(1, len(ys))
    step = 0.8 / n
    positions = list(range(len(x)))
    for i, series in enumerate(ys):
        offs = [p - 0.4 + step * (i + 0.5) for p in positions]
        label = labels[i] if i < len(labels) else None
        if horizontal:
            ax.barh(offs, series, height=step, label=label)
        else:
            ax.bar(offs, series, width=step, label=label)
    if horizontal:
        ax.set_yticks(positions)
        ax.set_yticklabels(x)
        ax.invert_yaxis()  # first item on top, as it reads in a list
        if labels:
            ax.set_xlabel(str(labels[0]) if len(labels) == 1 else "")
    else:
        ax.set_xticks(positions)
        ax.set_xticklabels(x, rotation=45 if len(x) > 8 else 0, ha="right" if len(x) > 8 else "center")
        if labels:
            ax.set_ylabel(str(labels[0]) if len(labels) == 1 else "")
    if len(ys) > 1:
        ax.legend()


def _line(ax: Any, data: dict, options: dict) -> None:
    x = data.get("x") or []
    labels = data.get("y_labels") or []
    numeric = all(isinstance(v, (int, float)) for v in x)
    xs = x if numeric else list(range(len(x)))
    for i, series in enumerate(data.get("y") or []):
        ax.plot(xs, _num(series), marker="o" if len(x) < 30 else None, label=labels[i] if i < len(labels) else None)
    if not numeric and x:
        step = max(1, len(x) // 12)
        ax.set_xticks(xs[::step])
        ax.set_xticklabels([str(v) for v in x[::step]], rotation=45, ha="right")
    ax.set_xlabel(str(data.get("x_label") or ""))
    if len(labels) > 1:
        ax.legend()


def _time_series(kind: str):
    def draw(ax: Any, data: dict, options: dict) -> None:
        import matplotlib.dates as mdates
        import pandas as pd

        x = pd.to_datetime(pd.Series(data.get("x") or []), errors="coerce")
        labels = data.get("y_labels") or []
        interval = data.get("time_interval") or "original"
        width = {"second": 1 / 86400, "minute": 1 / 1440, "hour": 1 / 24, "day": 0.8, "week": 5.6, "month": 24, "year": 300}.get(
            interval, 0.8
        )
        for i, series in enumerate(data.get("y") or []):
            label = labels[i] if i < len(labels) else None
            if kind == "bar":
                ax.bar(x, _num(series), width=width, label=label)
            else:
                ax.plot(x, _num(series), label=label)
        locator = mdates.AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        if len(labels) == 1:
            ax.set_ylabel(str(labels[0]))
        elif len(labels) > 1:
            ax.legend()
        ax.set_xlabel(f"{data.get('x_label') or ''} ({interval})".strip())

    return draw


def _pie(ax: Any, data: dict, options: dict) -> None:
    values = _num(data.get("values") or [])
    labels = [str(v) for v in (data.get("labels") or [])]
    if values:
        ax.pie(values, labels=labels, autopct="%1.1f%%", startangle=90, counterclock=False)
    ax.set_aspect("equal")


def _table(ax: Any, data: dict, options: dict) -> None:
    ax.axis("off")
    columns = [str(c) for c in (data.get("columns") or [])]
    rows = (data.get("rows") or [])[:MAX_TABLE_ROWS]
    if not rows or not columns:
        ax.text(0.5, 0.5, "(empty table)", ha="center", va="center")
        return
    cells = [[_cell(v) for v in row] for row in rows]
    index = data.get("index")
    table = ax.table(
        cellText=cells,
        colLabels=columns,
        rowLabels=[str(i) for i in index[:MAX_TABLE_ROWS]] if index else None,
        cellLoc="left",
        bbox=[0.12 if index else 0.0, 0.0, 0.88 if index else 1.0, 1.0],
    )
    table.auto_set_font_size(False)
    table.set_fontsize(8)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 28 else text[:25] + "..."


_DRAWERS = {
    "histogram": _histogram,
    "bar chart": _bar,
    "line chart": _line,
    "time series bar chart": _time_series("bar"),
    "time series line chart": _time_series("line"),
    "pie chart": _pie,
    "table": _table,
}
