"""Chart widgets: compute a chart's data from a block's output, and draw it as a PNG.

A chart widget is an entry of a pipeline's ``widgets:`` list (Mage's format)::

    uuid: prepare_histogram_u9
    type: chart
    upstream_blocks: [prepare]
    configuration: {chart_type: histogram, x: x, buckets: 20}

with optional chart code (``<project>/charts/<uuid>.py``) that runs with ``df_1``,
``df_2``... bound to the upstream blocks' outputs and defines the variables the
configuration names (``x: x`` -> the variable ``x``)::

    data = compute_chart(widget, code, [prepare_outputs])
    render_png(data, "histogram.png")

`compute_chart` returns a JSON-able dict ``{"type", "title", "uuid", "data", "options"}``;
see `blockyard.charts.compute` for the `data` of each chart type.
"""
from __future__ import annotations

from typing import Any

__all__ = ["CHART_TYPES", "ChartError", "compute_chart", "render_png"]

CHART_TYPES = (
    "histogram",
    "bar chart",
    "line chart",
    "time series bar chart",
    "time series line chart",
    "pie chart",
    "table",
)


def compute_chart(widget: dict, code: str | None, upstream_outputs: list, **kwargs: Any) -> dict:
    from blockyard.charts.compute import compute_chart as _compute

    return _compute(widget, code, upstream_outputs, **kwargs)


def render_png(chart_data: dict, out_path, **kwargs: Any):
    from blockyard.charts.render import render_png as _render

    return _render(chart_data, out_path, **kwargs)


def __getattr__(name: str):
    if name == "ChartError":
        from blockyard.charts.compute import ChartError

        return ChartError
    raise AttributeError(f"module 'blockyard.charts' has no attribute {name!r}")
