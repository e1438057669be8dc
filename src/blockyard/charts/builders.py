"""Chart data by chart type, from a `ChartContext` (the widget's configuration, its
chart code's namespace and its upstream outputs); see `blockyard.charts.compute` for the
shape of each type's `data`."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from blockyard.charts.values import scalar as _scalar
from blockyard.charts.values import series_list as _series_list
from blockyard.charts.values import values as _values

if TYPE_CHECKING:
    from blockyard.charts.context import ChartContext as _Context

MAX_TABLE_ROWS = 1000
AGGREGATIONS = ("count", "count_distinct", "sum", "average", "avg", "mean", "min", "max", "median", "mode")
TIME_INTERVALS = ("original", "second", "minute", "hour", "day", "week", "month", "year")


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


BUILDERS = {
    "histogram": _histogram,
    "bar chart": _bar,
    "line chart": _line,
    "time series bar chart": _time_series,
    "time series line chart": _time_series,
    "pie chart": _pie,
    "table": _table,
}

