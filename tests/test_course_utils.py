"""The course's shared utils (mlops/utils/data_preparation) and the unit 1 block code,
on the real green-taxi files: they must reproduce the course's reference numbers."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WORKSPACE = REPO / "mlops"
from mirror import MIRROR

pytestmark = pytest.mark.skipif(
    not (MIRROR / "taxi/green/green_tripdata_2024-01.parquet").is_file(),
    reason="course data mirror not present",
)

# Blocks import `mlops.utils...`: the workspace's parent must be importable.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@pytest.fixture(scope="module")
def raw():
    from blockyard.datasets import load_green_taxi

    return load_green_taxi(["2024-01", "2024-02"], mirror=MIRROR)


@pytest.fixture(scope="module")
def prepared(raw):
    from mlops.utils.data_preparation.cleaning import clean
    from mlops.utils.data_preparation.feature_engineering import combine_features
    from mlops.utils.data_preparation.feature_selector import select_features

    return select_features(
        combine_features(clean(raw)), features=["lpep_pickup_datetime", "duration"]
    )


@pytest.fixture(scope="module")
def split(prepared):
    from mlops.utils.data_preparation.splitters import split_on_value

    return split_on_value(prepared, "lpep_pickup_datetime", "2024-02-01")


@pytest.fixture(scope="module")
def matrices(split):
    from mlops.utils.data_preparation.encoders import vectorize_features
    from mlops.utils.data_preparation.feature_selector import select_features

    df_train, df_val = split
    return vectorize_features(select_features(df_train), select_features(df_val))


def test_raw_rows(raw):
    assert len(raw) == 110128


def test_clean_keeps_trips_between_1_and_60_minutes(raw):
    from mlops.utils.data_preparation.cleaning import clean

    df = clean(raw)
    assert len(df) == 105870
    assert df["duration"].between(1, 60).all()
    expected = (raw["lpep_dropoff_datetime"] - raw["lpep_pickup_datetime"]).dt.total_seconds() / 60
    assert df["duration"].equals(expected.loc[df.index])
    assert df["PULocationID"].map(type).eq(str).all()
    assert len(raw) == 110128  # the input frame is left alone
    assert "duration" not in raw.columns
    assert len(clean(raw, include_extreme_durations=True)) == 110128


def test_combine_features_joins_locations(raw):
    from mlops.utils.data_preparation.cleaning import clean
    from mlops.utils.data_preparation.feature_engineering import combine_features

    df = combine_features(clean(raw.head(50)))
    first = df.iloc[0]
    assert first["PU_DO"] == f"{first['PULocationID']}_{first['DOLocationID']}"
    records = combine_features([{"PULocationID": 74, "DOLocationID": 75}])
    assert records == [{"PULocationID": 74, "DOLocationID": 75, "PU_DO": "74_75"}]


def test_select_features(prepared):
    from mlops.utils.data_preparation.feature_selector import select_features

    assert list(prepared.columns) == ["PU_DO", "trip_distance", "lpep_pickup_datetime", "duration"]
    assert list(select_features(prepared).columns) == ["PU_DO", "trip_distance"]
    with pytest.raises(KeyError, match="combine_features"):
        select_features(prepared[["trip_distance"]])


def test_split_on_value(split):
    import pandas as pd

    df_train, df_val = split
    assert len(df_train) == 54378
    assert len(df_val) == 51492
    cut = pd.Timestamp("2024-02-01")
    assert (df_train["lpep_pickup_datetime"] < cut).all()
    assert (df_val["lpep_pickup_datetime"] >= cut).all()


def test_split_can_drop_the_feature(prepared):
    from mlops.utils.data_preparation.splitters import split_on_value

    df_train, df_val = split_on_value(prepared, "lpep_pickup_datetime", "2024-02-01", drop_feature=True)
    assert "lpep_pickup_datetime" not in df_train.columns
    assert len(df_train) + len(df_val) == 105870


def test_vectorize_features_shapes(prepared, matrices):
    from mlops.utils.data_preparation.encoders import vectorize_features
    from mlops.utils.data_preparation.feature_selector import select_features

    X, X_none, dv_all = vectorize_features(select_features(prepared))
    assert X.shape == (105870, 7027)
    assert X_none is None
    X_train, X_val, dv = matrices
    assert X_train.shape == (54378, 5094)
    assert X_val.shape == (51492, 5094)
    names = set(dv.feature_names_)
    assert "trip_distance" in names
    assert not any(n.startswith(("duration", "lpep_pickup_datetime")) for n in names)


def test_linear_regression_reference_rmse(split, matrices):
    from sklearn.linear_model import LinearRegression

    from blockyard.ml.metrics import rmse

    df_train, df_val = split
    X_train, X_val, _ = matrices
    model = LinearRegression().fit(X_train, df_train["duration"])
    assert rmse(df_val["duration"], model.predict(X_val)) == pytest.approx(5.995, abs=0.01)


def test_alias_modules_named_in_the_course_text():
    from mlops.utils.data_preparation import encoder, encoders, splitter, splitters

    assert splitter.split_on_value is splitters.split_on_value
    assert encoder.vectorize_features is encoders.vectorize_features


def _load(relpath: str):
    from blockyard.engine.loader import load_block

    return load_block(WORKSPACE / relpath)


def _seed_code_blocks() -> list[str] | None:
    import re
    import textwrap

    seeds = sorted((REPO.parent / "shared/seeds").glob("003_*.txt"))
    if not seeds:
        return None
    text = seeds[0].read_text()
    return [textwrap.dedent(b) for b in re.findall(r"```python\n(.*?)```", text, re.S)]


def test_workspace_holds_the_course_code_exactly_as_printed():
    blocks = _seed_code_blocks()
    if blocks is None:
        pytest.skip("course text (shared/seeds) not present")
    prepare = next(b for b in blocks if "def transform(" in b)
    build = next(b for b in blocks if "def export_data(" in b)
    build_test = next(b for b in blocks if "def test_dataset(" in b)
    histogram = next(b for b in blocks if "convert_matrix_to_dataframe" in b)
    unit_1 = WORKSPACE / "unit_1_data_preparation"
    assert (unit_1 / "transformers/prepare.py").read_text() == prepare
    build_file = (unit_1 / "data_exporters/build.py").read_text()
    assert build_file.startswith(build)
    assert build_test in build_file
    assert (unit_1 / "charts/prepare_histogram_u9.py").read_text() == histogram


def test_seed_blocks_run_unchanged(raw):
    """prepare.py and build.py hold the course's code as printed; run it directly."""
    prepare = _load("unit_1_data_preparation/transformers/prepare.py")
    build = _load("unit_1_data_preparation/data_exporters/build.py")
    variables = {
        "split_on_feature": "lpep_pickup_datetime",
        "split_on_feature_value": "2024-02-01",
        "target": "duration",
    }
    df, df_train, df_val = prepare.main(raw, **variables)
    assert (len(df), len(df_train), len(df_val)) == (105870, 54378, 51492)
    outputs = build.main([df, df_train, df_val], **variables)
    X, X_train, X_val, y, y_train, y_val, dv = outputs
    assert X.shape == (105870, 7027)
    assert (X_train.shape, X_val.shape) == ((54378, 5094), (51492, 5094))
    assert len(y) == 105870
    assert [t.__name__ for t in build.tests] == ["test_dataset", "test_training_set", "test_validation_set"]
    for check in build.tests:
        check(*outputs)
    # The tests do fail on wrong data.
    with pytest.raises(AssertionError, match="105870"):
        build.tests[0](X[:10], X_train, X_val, y[:10], y_train, y_val, dv)
