"""Chart data from a widget's configuration, its optional code and its upstream outputs.

The result of `compute_chart` is a JSON-able dict::

    {"type": <chart type>, "title": str, "uuid": str, "options": {...}, "data": {...}}

`data` by chart type:

* histogram: ``{"edges": [e0..en], "counts": [c1..cn], "x_label": str, "total": n}``
* bar chart / line chart: ``{"x": [labels], "y": [[series values], ...], "y_labels": [names]}``
  (``options.chart_style`` is ``"vertical"`` or ``"horizontal"`` for bar charts)
* time series bar chart / time series line chart: like a line chart, with ``x`` as ISO
  datetimes and ``time_interval``
* pie chart: ``{"labels": [...], "values": [...]}``
* table: ``{"columns": [...], "rows": [[...], ...], "index": [...] | null}``

Configuration keys (Mage's): ``chart_type``; ``x``/``y``/``index`` name variables
defined by the chart code (or, without code, columns of ``df_1``); ``buckets`` for
histograms and pie charts; ``chart_style`` and ``y_sort_order`` for bar charts;
``group_by`` + ``metrics`` (``[{aggregation, column}]``) + ``time_interval`` to
aggregate ``df_1`` instead (the time series charts use these); ``limit`` for tables.
"""
from __future__ import annotations

import builtins
import traceback
from typing import Any

from blockyard.charts.builders import AGGREGATIONS, BUILDERS, MAX_TABLE_ROWS, TIME_INTERVALS
from blockyard.charts.values import jsonable as _jsonable
from blockyard.charts.context import ChartContext, ChartError  # noqa: F401  (re-exported)

__all__ = ["AGGREGATIONS", "MAX_TABLE_ROWS", "TIME_INTERVALS", "ChartContext", "ChartError", "compute_chart",
           "run_chart_code"]
_BUILDERS = BUILDERS


# ---------------------------------------------------------------------------------------
# Entry point


def compute_chart(
    widget: dict,
    code: str | None,
    upstream_outputs: list,
    *,
    code_path: str | None = None,
    variables: dict | None = None,
) -> dict:
    """Compute the chart of `widget` (a pipeline `widgets:` entry).

    `upstream_outputs[i]` is the output of the widget's i-th upstream block, bound to
    ``df_{i+1}``: a block with several outputs (a tuple) is passed as the list of them,
    as Mage does. `code` is the chart code (or None); `code_path` is only used in
    error messages; `variables` are extra names for the code (e.g. pipeline variables).
    """
    if not isinstance(widget, dict):
        raise ChartError(f"a chart widget must be a mapping, not {type(widget).__name__}")
    uuid = str(widget.get("uuid") or widget.get("name") or "chart")
    config = dict(widget.get("configuration") or {})
    chart_type = str(config.get("chart_type") or "").strip().lower()
    if chart_type not in _BUILDERS:
        raise ChartError(
            f"unknown chart_type {config.get('chart_type')!r}",
            block=uuid,
            file=code_path,
            hint="use one of: " + ", ".join(_BUILDERS),
        )
    inputs = [list(o) if isinstance(o, tuple) else o for o in (upstream_outputs or [])]
    namespace: dict[str, Any] | None = None
    if code is not None and code.strip():
        namespace = run_chart_code(code, inputs, uuid=uuid, code_path=code_path, variables=variables)
    ctx = ChartContext(uuid, config, inputs, namespace, code_path)
    data = _BUILDERS[chart_type](ctx)
    options = {
        k: v
        for k, v in config.items()
        if k in ("chart_style", "y_sort_order", "buckets", "height", "width", "time_interval", "x_label", "y_label")
    }
    return _jsonable(
        {
            "type": chart_type,
            "uuid": uuid,
            "title": str(widget.get("name") or uuid),
            "options": options,
            "data": data,
        }
    )


# ---------------------------------------------------------------------------------------
# Running chart code


def _install_mage_shim() -> None:
    try:
        from blockyard.compat.shim import install
    except ImportError:  # pragma: no cover - compat layer absent
        return
    install()


def run_chart_code(
    code: str,
    inputs: list,
    *,
    uuid: str = "chart",
    code_path: str | None = None,
    variables: dict | None = None,
) -> dict[str, Any]:
    """Execute chart code with df_1..df_n bound; return its namespace."""
    _install_mage_shim()
    filename = code_path or f"<chart {uuid}>"
    try:
        compiled = compile(code, filename, "exec")
    except SyntaxError as exc:
        raise ChartError(f"syntax error in chart code: {exc.msg}", file=code_path, line=exc.lineno, block=uuid) from None
    namespace: dict[str, Any] = {"__name__": f"blockyard_chart_{uuid}", "__builtins__": builtins}
    namespace.update(variables or {})
    for i, value in enumerate(inputs, start=1):
        namespace[f"df_{i}"] = value
    if not inputs:
        namespace["df_1"] = None
    try:
        exec(compiled, namespace)
    except Exception as exc:
        line = None
        for frame, lineno in traceback.walk_tb(exc.__traceback__):
            if frame.f_code.co_filename == filename:
                line = lineno
        raise ChartError(
            f"chart code failed: {type(exc).__name__}: {exc}", file=code_path, line=line, block=uuid
        ) from exc
    return namespace
