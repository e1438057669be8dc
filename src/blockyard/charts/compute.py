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
import datetime as _dt
import math
import traceback
from typing import Any

from blockyard.errors import BlockyardError

MAX_TABLE_ROWS = 1000
AGGREGATIONS = ("count", "count_distinct", "sum", "average", "avg", "mean", "min", "max", "median", "mode")
TIME_INTERVALS = ("original", "second", "minute", "hour", "day", "week", "month", "year")


class ChartError(BlockyardError):
    """A chart widget could not be computed: bad configuration, failing chart code,
    or a variable the configuration names is missing."""


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
    ctx = _Context(uuid, config, inputs, namespace, code_path)
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


class _Context:
    def __init__(self, uuid: str, config: dict, inputs: list, namespace: dict | None, code_path: str | None):
        self.uuid = uuid
        self.config = config
        self.inputs = inputs
        self.namespace = namespace
        self.code_path = code_path

    def error(self, message: str, hint: str | None = None) -> ChartError:
        return ChartError(message, block=self.uuid, file=self.code_path, hint=hint)

    def frame(self):
        """df_1 as a DataFrame (the first output of a multi-output block)."""
        import pandas as pd

        value = self.namespace.get("df_1") if self.namespace else (self.inputs[0] if self.inputs else None)
        if isinstance(value, list) and value and (
            isinstance(value[0], (pd.DataFrame, pd.Series)) or hasattr(value[0], "shape")
        ):
            value = value[0]  # the first output of a block with several outputs
        if hasattr(value, "toarray") and not isinstance(value, (pd.DataFrame, pd.Series)):
            from blockyard.compat.parsers import convert_matrix_to_dataframe

            value = convert_matrix_to_dataframe(value)
        if isinstance(value, pd.Series):
            value = value.to_frame()
        if isinstance(value, pd.DataFrame):
            return value
        if value is None:
            raise self.error("the chart has no upstream data (df_1 is empty)")
        try:
            return pd.DataFrame(value)
        except Exception:
            raise self.error(f"cannot make a table out of df_1 ({type(value).__name__})") from None

    def resolve(self, key: str, *, required: bool = True) -> Any:
        """The value behind config[key]: a variable of the chart code, else a column of df_1."""
        name = self.config.get(key)
        if name is None or name == "":
            if required:
                raise self.error(f"configuration.{key} is not set", hint=f"name the variable or column to use as {key}")
            return None
        if self.namespace is not None and isinstance(name, str) and name in self.namespace:
            return self.namespace[name]
        try:
            frame = self.frame()
        except ChartError:
            frame = None
        if frame is not None and name in frame.columns:
            return frame[name]
        where = "the chart code defines no variable" if self.namespace is not None else "df_1 has no column"
        raise self.error(
            f"configuration.{key} names {name!r} but {where} of that name",
            hint="define it in the chart code" if self.namespace is not None else "add chart code or fix the name",
        )


# ---------------------------------------------------------------------------------------
# Builders


def _values(value: Any) -> list:
    """A flat list from a Series, Index, ndarray, list or scalar."""
    import numpy as np

    if value is None:
        return []
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        out = value.tolist()
        return out if isinstance(out, list) else [out]
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, np.generic):
        return [value.item()]
    try:
        return list(value)
    except TypeError:
        return [value]


def _series_list(value: Any) -> list[list]:
    """y as a list of series: [1, 2] -> [[1, 2]]; [[1, 2], [3, 4]] stays."""
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        return [_values(value[c]) for c in value.columns]
    items = _values(value)
    if items and all(isinstance(i, (list, tuple)) or hasattr(i, "tolist") for i in items):
        return [_values(i) for i in items]
    return [items]


def _histogram(ctx: _Context) -> dict:
    import numpy as np
    import pandas as pd

    raw = ctx.resolve("x")
    values = pd.to_numeric(pd.Series(_values(raw)), errors="coerce").dropna()
    try:
        buckets = int(ctx.config.get("buckets") or 10)
    except (TypeError, ValueError):
        raise ctx.error(f"configuration.buckets must be a number, not {ctx.config.get('buckets')!r}") from None
    buckets = max(1, buckets)
    if values.empty:
        return {"edges": [], "counts": [], "x_label": _label(ctx, "x", raw), "total": 0}
    counts, edges = np.histogram(values.to_numpy(dtype="float64"), bins=buckets)
    return {
        "edges": [float(e) for e in edges],
        "counts": [int(c) for c in counts],
        "x_label": _label(ctx, "x", raw),
        "total": int(len(values)),
    }


def _label(ctx: _Context, key: str, value: Any) -> str:
    name = getattr(value, "name", None)
    if isinstance(name, str) and name:
        return name
    return str(ctx.config.get(f"{key}_label") or ctx.config.get(key) or key)


def _xy(ctx: _Context) -> dict:
    if ctx.config.get("group_by"):
        return _grouped(ctx, time_series=False)
    x_raw = ctx.resolve("x")
    y_raw = ctx.resolve("y")
    x = _values(x_raw)
    ys = _series_list(y_raw)
    for series in ys:
        if len(series) != len(x):
            raise ctx.error(
                f"x has {len(x)} values but a y series has {len(series)}",
                hint="x and each series of y must have the same length",
            )
    labels = ctx.config.get("y_labels") or [_label(ctx, "y", y_raw)] * (1 if len(ys) == 1 else 0)
    if len(labels) != len(ys):
        labels = [f"{ctx.config.get('y') or 'y'} {i + 1}" for i in range(len(ys))]
    data = {"x": x, "y": ys, "y_labels": [str(lab) for lab in labels], "x_label": _label(ctx, "x", x_raw)}
    return _sorted(ctx, data)


def _sorted(ctx: _Context, data: dict) -> dict:
    order = str(ctx.config.get("y_sort_order") or "").lower()
    if order not in ("ascending", "descending") or not data["y"]:
        return data
    first = data["y"][0]
    keyed = sorted(
        range(len(first)),
        key=lambda i: (first[i] is None, first[i] if first[i] is not None else 0),
        reverse=order == "descending",
    )
    if order == "descending":  # keep missing values last
        keyed = [i for i in keyed if first[i] is not None] + [i for i in keyed if first[i] is None]
    data["x"] = [data["x"][i] for i in keyed]
    data["y"] = [[series[i] for i in keyed] for series in data["y"]]
    return data


def _bar(ctx: _Context) -> dict:
    return _xy(ctx)


def _line(ctx: _Context) -> dict:
    return _xy(ctx)


def _time_series(ctx: _Context) -> dict:
    if ctx.config.get("group_by"):
        return _grouped(ctx, time_series=True)
    data = _xy(ctx)
    import pandas as pd

    x = pd.to_datetime(pd.Series(data["x"]), errors="coerce")
    data["x"] = [None if pd.isna(v) else v.isoformat() for v in x]
    data["time_interval"] = ctx.config.get("time_interval", "original")
    return data


def _truncate(series, interval: str):
    import pandas as pd

    s = pd.to_datetime(series, errors="coerce")
    if interval in ("original", "", None):
        return s
    if interval == "second":
        return s.dt.floor("s")
    if interval == "minute":
        return s.dt.floor("min")
    if interval == "hour":
        return s.dt.floor("h")
    if interval == "day":
        return s.dt.floor("D")
    if interval == "week":
        return s.dt.to_period("W").dt.start_time
    if interval == "month":
        return s.dt.to_period("M").dt.start_time
    if interval == "year":
        return s.dt.to_period("Y").dt.start_time
    raise ValueError(interval)


def _aggregate(frame, keys, metric: dict, ctx: _Context):
    import pandas as pd

    column = metric.get("column")
    agg = str(metric.get("aggregation") or "count").lower()
    if agg not in AGGREGATIONS:
        raise ctx.error(f"unknown aggregation {agg!r}", hint="use one of: " + ", ".join(AGGREGATIONS))
    if column not in frame.columns:
        raise ctx.error(f"metric column {column!r} is not in df_1", hint="columns: " + ", ".join(map(str, frame.columns)))
    grouped = frame.groupby(keys, dropna=True, sort=True)[column]
    if agg == "count":
        out = grouped.count()
    elif agg == "count_distinct":
        out = grouped.nunique()
    elif agg == "sum":
        out = grouped.sum()
    elif agg in ("average", "avg", "mean"):
        out = grouped.mean()
    elif agg == "min":
        out = grouped.min()
    elif agg == "max":
        out = grouped.max()
    elif agg == "median":
        out = grouped.median()
    else:
        out = grouped.agg(lambda s: s.mode().iloc[0] if not s.mode().empty else None)
    return pd.Series(out), f"{agg}({column})"


def _grouped(ctx: _Context, *, time_series: bool) -> dict:
    import pandas as pd

    frame = ctx.frame()
    group_by = ctx.config.get("group_by")
    if isinstance(group_by, str):
        group_by = [group_by]
    group_col = group_by[0]
    if group_col not in frame.columns:
        raise ctx.error(
            f"group_by column {group_col!r} is not in df_1", hint="columns: " + ", ".join(map(str, frame.columns))
        )
    metrics = ctx.config.get("metrics") or [{"aggregation": "count", "column": group_col}]
    interval = str(ctx.config.get("time_interval") or "original").lower()
    if time_series and interval not in TIME_INTERVALS:
        raise ctx.error(f"unknown time_interval {interval!r}", hint="use one of: " + ", ".join(TIME_INTERVALS))
    key_name = "__blockyard_group__"
    work = frame.assign(**{key_name: _truncate(frame[group_col], interval) if time_series else frame[group_col]})
    series, labels = [], []
    index = None
    for metric in metrics:
        values, label = _aggregate(work, key_name, metric, ctx)
        index = values.index if index is None else index.union(values.index)
        series.append(values)
        labels.append(label)
    ys = [[_scalar(v) for v in s.reindex(index).tolist()] for s in series]
    if time_series:
        x = [pd.Timestamp(v).isoformat() for v in index]
    else:
        x = [_scalar(v) for v in index]
    data = {"x": x, "y": ys, "y_labels": labels, "x_label": str(group_col)}
    if time_series:
        data["time_interval"] = interval
        return data
    return _sorted(ctx, data)


def _pie(ctx: _Context) -> dict:
    import pandas as pd

    try:
        buckets = int(ctx.config.get("buckets") or 10)
    except (TypeError, ValueError):
        raise ctx.error(f"configuration.buckets must be a number, not {ctx.config.get('buckets')!r}") from None
    if ctx.config.get("y") and (ctx.namespace is not None):
        labels = _values(ctx.resolve("x"))
        values = _series_list(ctx.resolve("y"))[0]
        counts = pd.Series(values, index=[str(lab) for lab in labels], dtype="float64")
        counts = counts.groupby(level=0, sort=False).sum().sort_values(ascending=False)
    else:
        raw = ctx.resolve("x")
        if isinstance(raw, dict):
            counts = pd.Series(raw, dtype="float64").sort_values(ascending=False)
        else:
            counts = pd.Series(_values(raw)).astype(str).value_counts()
    if len(counts) > buckets:
        top = counts.iloc[: buckets - 1]
        other = counts.iloc[buckets - 1 :].sum()
        counts = pd.concat([top, pd.Series({"other": other})])
    return {"labels": [str(k) for k in counts.index], "values": [_scalar(v) for v in counts.tolist()]}


def _table(ctx: _Context) -> dict:
    import pandas as pd

    limit = int(ctx.config.get("limit") or MAX_TABLE_ROWS)
    if ctx.namespace is not None and ctx.config.get("y") in ctx.namespace:
        rows_raw = ctx.namespace[ctx.config["y"]]
        columns_raw = ctx.resolve("x", required=False) if ctx.config.get("x") else None
        index_raw = ctx.resolve("index", required=False) if ctx.config.get("index") else None
        if isinstance(rows_raw, pd.DataFrame):
            columns = _values(columns_raw) if columns_raw is not None else [str(c) for c in rows_raw.columns]
            rows = rows_raw.values.tolist()
        else:
            rows = [_values(r) for r in _values(rows_raw)]
            columns = _values(columns_raw) if columns_raw is not None else [str(i) for i in range(len(rows[0]) if rows else 0)]
        index = _values(index_raw) if index_raw is not None else None
    else:
        frame = ctx.frame()
        columns = [str(c) for c in frame.columns]
        head = frame.head(limit + 1)  # one more row tells whether the table is cut
        rows = head.values.tolist()
        index = None
        if ctx.config.get("index") and ctx.config["index"] in frame.columns:
            index = _values(head[ctx.config["index"]])
    for row in rows:
        if len(row) != len(columns):
            raise ctx.error(
                f"a table row has {len(row)} cells but there are {len(columns)} columns",
                hint="make every row as long as the list of columns",
            )
    if index is not None and len(index) != len(rows):
        raise ctx.error(f"the index has {len(index)} labels but the table has {len(rows)} rows")
    truncated = len(rows) > limit
    rows = rows[:limit]
    if index is not None:
        index = index[:limit]
    return {
        "columns": [str(c) for c in columns],
        "rows": [[_scalar(v) for v in r] for r in rows],
        "index": [str(i) for i in index] if index is not None else None,
        "truncated": truncated,
    }


_BUILDERS = {
    "histogram": _histogram,
    "bar chart": _bar,
    "line chart": _line,
    "time series bar chart": _time_series,
    "time series line chart": _time_series,
    "pie chart": _pie,
    "table": _table,
}


# ---------------------------------------------------------------------------------------
# JSON


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    try:
        import pandas as pd

        if value is pd.NaT or (not isinstance(value, (list, dict)) and pd.isna(value)):
            return None
        if isinstance(value, pd.Timestamp):
            return value.isoformat()
        if isinstance(value, pd.Timedelta):
            return str(value)
    except (ImportError, TypeError, ValueError):
        pass
    if hasattr(value, "item"):
        try:
            return _scalar(value.item())
        except (TypeError, ValueError):
            pass
    return str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return _scalar(value)
