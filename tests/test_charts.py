"""Chart widgets on real data frames: the course's widgets of data_preparation, every
chart type, error messages, and PNG rendering."""
from __future__ import annotations

import json
import os
import struct
import sys
from pathlib import Path

import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

from blockyard.charts import ChartError, compute_chart, render_png  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WORKSPACE = REPO / "mlops"
PIPELINE = WORKSPACE / "unit_1_data_preparation/pipelines/data_preparation/metadata.yaml"
from mirror import MIRROR
HAVE_DATA = (MIRROR / "taxi/green/green_tripdata_2024-01.parquet").is_file()
needs_data = pytest.mark.skipif(not HAVE_DATA, reason="course data mirror not present")

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@pytest.fixture(scope="module")
def trips():
    from blockyard.datasets import load_green_taxi

    return load_green_taxi(["2024-01", "2024-02"], mirror=MIRROR)


@pytest.fixture(scope="module")
def prepared(trips):
    """The prepare block's outputs [df, df_train, df_val], as a chart receives them."""
    from blockyard.engine.loader import load_block

    block = load_block(WORKSPACE / "unit_1_data_preparation/transformers/prepare.py")
    return list(block.main(trips))


@pytest.fixture(scope="module")
def widgets():
    import yaml

    doc = yaml.safe_load(PIPELINE.read_text())
    return {w["uuid"]: w for w in doc["widgets"]}


def _code(widget: dict) -> str | None:
    path = (widget.get("configuration") or {}).get("file_source", {}).get("path")
    return (WORKSPACE / path).read_text() if path else None


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    return struct.unpack(">II", data[16:24])


# ------------------------------------------------------------------ the course widgets


@needs_data
def test_prepare_histogram_from_the_seed_code(widgets, prepared, tmp_path):
    widget = widgets["prepare_histogram_u9"]
    code = _code(widget)
    assert "convert_matrix_to_dataframe" in code  # the course's code, mage_ai import and all
    chart = compute_chart(widget, code, [prepared])
    assert chart["type"] == "histogram"
    data = chart["data"]
    df = prepared[0]
    expected = df[df["trip_distance"] <= 20]["trip_distance"]
    assert len(data["counts"]) == 20 and len(data["edges"]) == 21
    assert sum(data["counts"]) == data["total"] == len(expected)
    assert data["edges"][0] == pytest.approx(expected.min())
    assert data["edges"][-1] == pytest.approx(expected.max())
    assert data["x_label"] == "trip_distance"
    json.dumps(chart)
    out = render_png(chart, tmp_path / "hist.png")
    width, height = _png_size(out)
    assert (width, height) == (900, 500)


@needs_data
def test_trips_per_day_time_series(widgets, trips):
    chart = compute_chart(widgets["ingest_time_series_bar_chart_d1"], None, [trips])
    data = chart["data"]
    per_day = trips["lpep_pickup_datetime"].dt.floor("D").value_counts().sort_index()
    assert data["x"] == [ts.isoformat() for ts in per_day.index]
    assert data["y"] == [per_day.tolist()]
    assert sum(data["y"][0]) == 110128
    assert data["y_labels"] == ["count(lpep_pickup_datetime)"]
    assert data["time_interval"] == "day"


@needs_data
def test_missing_and_unique_values_bar_charts(widgets, trips):
    missing = compute_chart(widgets["missing_values_for_ingest"], _code(widgets["missing_values_for_ingest"]), [trips])
    assert missing["options"]["chart_style"] == "horizontal"
    data = missing["data"]
    assert data["x"][0] == "ehail_fee" and data["y"][0][0] == 100.0
    assert set(data["x"]) == {c for c in trips.columns if trips[c].isna().any()}
    assert data["y"][0] == sorted(data["y"][0], reverse=True)

    unique = compute_chart(widgets["unique_values_for_ingest"], _code(widgets["unique_values_for_ingest"]), [trips])
    counts = dict(zip(unique["data"]["x"], unique["data"]["y"][0]))
    assert counts["PULocationID"] == trips["PULocationID"].nunique()
    assert unique["data"]["y"][0] == sorted(unique["data"]["y"][0], reverse=True)


@needs_data
def test_table_widgets(widgets, trips):
    frequent = compute_chart(widgets["most_frequent_values_for_ingest"], _code(widgets["most_frequent_values_for_ingest"]), [trips])
    rows = {r[0]: r for r in frequent["data"]["rows"]}
    assert len(rows) == trips.shape[1]
    top = trips["VendorID"].value_counts()
    assert rows["VendorID"][1:3] == [str(top.index[0]), int(top.iloc[0])]

    overview = compute_chart(widgets["summary_overview_for_ingest"], _code(widgets["summary_overview_for_ingest"]), [trips])
    stats = dict(overview["data"]["rows"])
    assert stats["rows"] == 110128 and stats["columns"] == 20
    assert stats["missing cells"] == int(trips.isna().sum().sum())

    profiles = compute_chart(widgets["feature_profiles_for_ingest"], _code(widgets["feature_profiles_for_ingest"]), [trips])
    data = profiles["data"]
    assert data["index"] == ["type", "missing", "unique", "min", "max", "mean", "median", "mode"]
    assert data["columns"] == list(trips.columns)
    col = data["columns"].index("trip_distance")
    by_stat = {stat: row[col] for stat, row in zip(data["index"], data["rows"])}
    assert by_stat["type"] == "number"
    assert by_stat["max"] == pytest.approx(trips["trip_distance"].max())
    assert by_stat["median"] == pytest.approx(trips["trip_distance"].median())
    assert by_stat["missing"] == 0
    json.dumps(profiles)


@needs_data
def test_every_course_widget_renders(widgets, trips, prepared, tmp_path):
    outputs = {"ingest": trips, "prepare": prepared}
    for uuid, widget in widgets.items():
        chart = compute_chart(widget, _code(widget), [outputs[u] for u in widget["upstream_blocks"]])
        width, height = _png_size(render_png(chart, tmp_path / f"{uuid}.png"))
        assert width >= 900 and height >= 200, uuid


# ----------------------------------------------------------- chart types without files


@pytest.fixture(scope="module")
def small():
    return pd.DataFrame(
        {
            "vendor": ["a", "b", "a", "c", "a", "b", None],
            "distance": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
            "when": pd.to_datetime(
                ["2024-01-01 10:00", "2024-01-01 12:00", "2024-01-02 09:00", "2024-01-09 00:00", "2024-02-01 00:00", "2024-02-03 00:00", "2024-02-03 00:00"]
            ),
        }
    )


def test_bar_chart_grouped_with_metrics(small, tmp_path):
    widget = {
        "uuid": "avg",
        "configuration": {
            "chart_type": "bar chart",
            "group_by": ["vendor"],
            "metrics": [{"aggregation": "average", "column": "distance"}, {"aggregation": "count", "column": "distance"}],
            "y_sort_order": "descending",
        },
    }
    chart = compute_chart(widget, None, [small])
    data = chart["data"]
    assert data["x"] == ["b", "c", "a"]  # by average distance, descending
    assert data["y"] == [[4.0, 4.0, 3.0], [2, 1, 3]]
    assert data["y_labels"] == ["average(distance)", "count(distance)"]
    _png_size(render_png(chart, tmp_path / "bar.png"))


def test_line_chart_from_code_variables(small, tmp_path):
    code = "x = list(range(len(df_1)))\ny = [df_1['distance'].cumsum().tolist()]\n"
    chart = compute_chart({"uuid": "cum", "configuration": {"chart_type": "line chart", "x": "x", "y": "y"}}, code, [small])
    assert chart["data"]["y"] == [[1.0, 3.0, 6.0, 10.0, 15.0, 21.0, 28.0]]
    _png_size(render_png(chart, tmp_path / "line.png"))


@pytest.mark.parametrize(
    "interval, expected",
    [("week", [3, 1, 3]), ("month", [4, 3]), ("original", [1, 1, 1, 1, 1, 2])],
)
def test_time_series_intervals(small, interval, expected, tmp_path):
    widget = {
        "uuid": "ts",
        "configuration": {
            "chart_type": "time series line chart",
            "group_by": ["when"],
            "metrics": [{"aggregation": "count", "column": "distance"}],
            "time_interval": interval,
        },
    }
    chart = compute_chart(widget, None, [small])
    assert chart["data"]["y"] == [expected]
    assert chart["data"]["x"] == sorted(chart["data"]["x"])
    _png_size(render_png(chart, tmp_path / f"ts_{interval}.png"))


def test_pie_chart_buckets(small, tmp_path):
    widget = {"uuid": "pie", "configuration": {"chart_type": "pie chart", "x": "vendor", "buckets": 2}}
    chart = compute_chart(widget, None, [small])
    # a: 3; b: 2 and c: 1 fold into "other"; the missing vendor is left out
    assert chart["data"] == {"labels": ["a", "other"], "values": [3, 3]}
    _png_size(render_png(chart, tmp_path / "pie.png"))


def test_table_without_code_and_multi_output_upstream(small, tmp_path):
    widget = {"uuid": "t", "configuration": {"chart_type": "table", "limit": 3}}
    chart = compute_chart(widget, None, [(small, small.head(2))])  # a block with two outputs
    assert chart["data"]["columns"] == ["vendor", "distance", "when"]
    assert len(chart["data"]["rows"]) == 3 and chart["data"]["truncated"] is True
    assert chart["data"]["rows"][0][2] == "2024-01-01T10:00:00"
    _png_size(render_png(chart, tmp_path / "table.png"))


def test_sparse_matrix_upstream_via_convert_matrix_to_dataframe():
    import scipy.sparse as sp

    code = (
        "from mage_ai.shared.parsers import convert_matrix_to_dataframe\n"
        "frame = convert_matrix_to_dataframe(df_1[0])\n"
        "x = frame['1']\n"
    )
    matrix = sp.csr_matrix([[0.0, 1.0], [2.0, 3.0], [0.0, 5.0]])
    chart = compute_chart({"uuid": "h", "configuration": {"chart_type": "histogram", "x": "x", "buckets": 2}}, code, [[matrix]])
    assert chart["data"]["counts"] == [1, 2]


# ------------------------------------------------------------------------------ errors


def test_unknown_chart_type(small):
    with pytest.raises(ChartError, match="unknown chart_type") as info:
        compute_chart({"uuid": "w", "configuration": {"chart_type": "radar chart"}}, None, [small])
    assert "histogram" in str(info.value)


def test_failing_chart_code_names_the_line(small):
    code = "a = 1\nb = df_1['no_such_column']\n"
    with pytest.raises(ChartError) as info:
        compute_chart({"uuid": "w", "configuration": {"chart_type": "histogram", "x": "b"}}, code, [small],
                      code_path="charts/w.py")
    err = info.value
    assert err.line == 2 and err.block == "w" and err.file == "charts/w.py"
    assert "KeyError" in str(err)


def test_missing_variable_is_explained(small):
    with pytest.raises(ChartError, match="names 'y' but the chart code defines no variable"):
        compute_chart({"uuid": "w", "configuration": {"chart_type": "histogram", "x": "y"}}, "x = 1\n", [small])
    with pytest.raises(ChartError, match="df_1 has no column"):
        compute_chart({"uuid": "w", "configuration": {"chart_type": "histogram", "x": "nope"}}, None, [small])


def test_mismatched_lengths_are_explained(small):
    code = "x = [1, 2, 3]\ny = [1, 2]\n"
    with pytest.raises(ChartError, match="x has 3 values but a y series has 2"):
        compute_chart({"uuid": "w", "configuration": {"chart_type": "bar chart", "x": "x", "y": "y"}}, code, [small])
