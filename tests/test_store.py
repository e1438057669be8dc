"""ArtifactStore: codecs, manifests, digests, layout, cleanup, errors."""
from __future__ import annotations

import json
import mmap
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from blockyard.errors import StoreError
from blockyard.store import (
    ArtifactStore,
    CodecSkip,
    OutputManifest,
    get_codec,
    register_codec,
    unregister_codec,
)

from mirror import MIRROR

TAXI = MIRROR / "taxi/green/green_tripdata_2023-01.parquet"


@pytest.fixture
def store(tmp_path):
    return ArtifactStore(tmp_path / "outputs")


def roundtrip(store, obj, node="node"):
    m = store.save_outputs(1, node, [obj])
    return m, store.load_output(1, node, 0)


def rich_frame(n: int = 50) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "i": np.arange(n, dtype=np.int64),
            "i32": rng.integers(0, 100, n).astype(np.int32),
            "f": rng.random(n),
            "f_nan": np.where(np.arange(n) % 3 == 0, np.nan, 1.5),
            "b": np.arange(n) % 2 == 0,
            "when": pd.date_range("2023-01-01", periods=n, freq="37min"),
            "when_tz": pd.date_range("2023-01-01", periods=n, freq="h", tz="America/New_York"),
            "dur": pd.to_timedelta(np.arange(n), unit="s"),
            "cat": pd.Categorical(np.array(["a", "b", "c"])[np.arange(n) % 3], categories=["c", "b", "a"], ordered=True),
            "s": pd.array([f"zone {k}" if k % 7 else None for k in range(n)], dtype="str"),
            "nullable": pd.array([k if k % 5 else None for k in range(n)], dtype="Int64"),
        },
        index=pd.Index([f"row{k}" for k in range(n)], name="trip"),
    )
    df["obj"] = pd.Series([f"o{k}" if k % 4 else None for k in range(n)], index=df.index, dtype=object)
    df.attrs["source"] = "unit-test"
    return df


# --------------------------------------------------------------------------- import


def test_import_is_light_and_can_encode_never_imports_heavy_libs():
    code = (
        "import sys, blockyard.store as s\n"
        "heavy = ['pandas', 'pyarrow', 'numpy', 'scipy', 'sklearn', 'xgboost', 'polars']\n"
        "assert not [m for m in heavy if m in sys.modules], [m for m in heavy if m in sys.modules]\n"
        "names = [c.name for c in s.candidate_codecs({'a': [1, 2.0]})]\n"
        "names += [c.name for c in s.candidate_codecs(lambda x: x)]\n"
        "print(names)\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    names_line, modules_line = out.strip().splitlines()
    assert names_line == "['json', 'cloudpickle', 'cloudpickle']"
    assert modules_line == "[]"


# --------------------------------------------------------------------------- pandas


def test_dataframe_roundtrip_keeps_dtypes_index_and_attrs(store):
    df = rich_frame()
    m, back = roundtrip(store, df)
    assert m.outputs[0]["codec"] == "pandas_arrow"
    assert m.outputs[0]["file"] == "output_0.arrow"
    assert type(back) is pd.DataFrame
    pd.testing.assert_frame_equal(back, df)
    assert back["when"].dtype == df["when"].dtype
    assert str(back["when_tz"].dtype.tz) == "America/New_York"
    assert isinstance(back["cat"].dtype, pd.CategoricalDtype) and back["cat"].cat.ordered
    assert list(back["cat"].cat.categories) == ["c", "b", "a"]
    assert back["obj"].dtype == object and back["obj"].iloc[0] is None  # not turned into str / NaN
    assert back["nullable"].dtype == pd.Int64Dtype()
    assert back.index.name == "trip" and back.index[3] == "row3"
    assert back.attrs == {"source": "unit-test"}


def test_dataframe_other_indexes_roundtrip(store):
    ranged = pd.DataFrame({"x": [1.0, 2.0, 3.0]}, index=pd.RangeIndex(10, 16, 2, name="r"))
    multi = pd.DataFrame(
        {"y": [1, 2, 3]}, index=pd.MultiIndex.from_tuples([(1, "a"), (1, "b"), (2, "a")], names=["k", "l"])
    )
    int_cols = pd.DataFrame({0: [1, 2], 1: [3, 4]})
    m = store.save_outputs(1, "idx", [ranged, multi, int_cols])
    assert [o["codec"] for o in m.outputs] == ["pandas_arrow"] * 3
    a, b, c = store.load_outputs(1, "idx")
    pd.testing.assert_frame_equal(a, ranged)
    assert isinstance(a.index, pd.RangeIndex) and a.index.step == 2
    pd.testing.assert_frame_equal(b, multi)
    pd.testing.assert_frame_equal(c, int_cols)
    assert list(c.columns) == [0, 1]


def test_object_column_missing_markers_are_kept(store):
    with_nan = pd.DataFrame({"o": pd.Series(["x", np.nan, "z"], dtype=object)})
    with_none = pd.DataFrame({"o": pd.Series(["x", None, "z"], dtype=object)})
    mixed = pd.DataFrame({"o": pd.Series([None, np.nan, "z"], dtype=object)})
    m = store.save_outputs(1, "nulls", [with_nan, with_none, mixed])
    assert [o["codec"] for o in m.outputs] == ["pandas_arrow", "pandas_arrow", "cloudpickle"]
    a, b, c = store.load_outputs(1, "nulls")
    assert isinstance(a["o"][1], float) and np.isnan(a["o"][1])
    assert b["o"][1] is None
    assert c["o"][0] is None and isinstance(c["o"][1], float)


def test_frames_arrow_cannot_hold_fall_back_to_pickle(store):
    mixed = pd.DataFrame({"m": pd.Series([1, "x", 2.5], dtype=object)})
    lists = pd.DataFrame({"l": [[1, 2], [3]]})
    dup = pd.DataFrame([[1, 2]], columns=["a", "a"])
    m = store.save_outputs(1, "odd", [mixed, lists, dup])
    assert [o["codec"] for o in m.outputs] == ["cloudpickle"] * 3
    assert all("pandas_arrow" in o["skipped"][0] for o in m.outputs)
    a, b, c = store.load_outputs(1, "odd")
    pd.testing.assert_frame_equal(a, mixed)
    assert b["l"][0] == [1, 2] and type(b["l"][0]) is list
    pd.testing.assert_frame_equal(c, dup)


def test_series_roundtrip_keeps_name_index_dtype(store):
    s = pd.Series([1.5, 2.5, np.nan], name="duration", index=pd.Index(["a", "b", "c"], name="key"))
    unnamed = pd.Series(pd.date_range("2024-01-01", periods=3, tz="UTC"))
    int_named = pd.Series(["x", "y"], name=0, dtype="category")
    m = store.save_outputs(1, "series", [s, unnamed, int_named])
    assert [o["codec"] for o in m.outputs] == ["pandas_series_arrow"] * 3
    a, b, c = store.load_outputs(1, "series")
    assert type(a) is pd.Series and a.name == "duration" and a.index.name == "key"
    pd.testing.assert_series_equal(a, s)
    assert b.name is None
    pd.testing.assert_series_equal(b, unnamed)
    assert c.name == 0 and c.dtype == "category"
    pd.testing.assert_series_equal(c, int_named)


def _owner(arr):
    base = arr
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    return base.obj if isinstance(base, memoryview) else base


def test_arrow_is_read_memory_mapped_and_loaded_frame_is_writable(store):
    n = 100_000
    df = pd.DataFrame(
        {
            "a": np.arange(n, dtype=np.int64),
            "f": np.linspace(0, 1, n),
            "t": pd.date_range("2024-01-01", periods=n, freq="s"),
            "c": pd.Categorical(np.array(["x", "y"])[np.arange(n) % 2]),
        }
    )
    m = store.save_outputs(1, "mm", [df])
    back = store.load_output(1, "mm", 0)
    # the numeric column is a view of a memory mapping of the file, not a copy
    owner = _owner(back["a"].array._ndarray)
    assert isinstance(owner, mmap.mmap)
    assert len(owner) == m.outputs[0]["bytes"]
    # ... and the frame behaves like any other: in-place edits work
    back.iloc[0, 0] = -1
    back.loc[back["a"] > n - 3, "f"] = 42.0
    back["a"] += 1
    back.loc[0, "c"] = "y"
    assert back["a"].iloc[0] == 0 and back["f"].iloc[-1] == 42.0 and back["c"].iloc[0] == "y"
    # ... without touching the stored file
    again = store.load_output(1, "mm", 0)
    pd.testing.assert_frame_equal(again, df)


def test_resave_replaces_files_and_keeps_earlier_loads_valid(store):
    first = pd.DataFrame({"a": np.arange(10_000)})
    store.save_outputs(1, "n", [first, 2, 3])
    loaded = store.load_output(1, "n", 0)
    store.save_outputs(1, "n", [pd.DataFrame({"a": np.arange(10_000) * 10})])
    assert loaded["a"].sum() == first["a"].sum()  # old mapping still sees the old data
    assert store.load_output(1, "n", 0)["a"].iloc[5] == 50
    assert len(store.load_outputs(1, "n")) == 1
    assert sorted(os.listdir(store.node_path(1, "n"))) == ["manifest.json", "output_0.arrow"]


def test_real_green_taxi_month_roundtrip(store):
    if not TAXI.exists():
        pytest.skip(f"{TAXI} is not available")
    df = pd.read_parquet(TAXI)
    m, back = roundtrip(store, df, "ingest/load_taxi")
    pd.testing.assert_frame_equal(back, df)
    assert back["lpep_pickup_datetime"].dtype == df["lpep_pickup_datetime"].dtype
    summary = m.outputs[0]["summary"]
    assert summary["shape"] == list(df.shape)
    assert summary["columns"] == list(df.columns)
    assert summary["dtypes"]["lpep_pickup_datetime"].startswith("datetime64")
    sample = m.outputs[0]["sample"]
    assert len(sample) == 10
    assert sample[0]["lpep_pickup_datetime"] == df["lpep_pickup_datetime"].iloc[0].isoformat()
    assert sample[0]["trip_distance"] == pytest.approx(float(df["trip_distance"].iloc[0]))
    json.dumps(sample, allow_nan=False)  # strictly JSON-safe


# --------------------------------------------------------------------------- polars


def test_polars_roundtrip(store):
    pl = pytest.importorskip("polars")
    df = pl.DataFrame(
        {
            "a": [1, 2, None],
            "s": ["x", "y", "z"],
            "t": [pd.Timestamp("2024-01-01").to_pydatetime()] * 3,
        }
    )
    m, back = roundtrip(store, df)
    assert m.outputs[0]["codec"] == "polars_arrow"
    assert isinstance(back, pl.DataFrame)
    assert back.equals(df) and back.schema == df.schema
    assert m.outputs[0]["summary"]["shape"] == [3, 3]
    assert m.outputs[0]["sample"][1] == {"a": 2, "s": "y", "t": "2024-01-01T00:00:00"}


# --------------------------------------------------------------------------- scipy / numpy


@pytest.mark.parametrize(
    "make",
    [
        lambda X: X.tocsr(),
        lambda X: X.tocsc(),
        lambda X: X.tocoo(),
        lambda X: sp.csr_array(X),
    ],
    ids=["csr_matrix", "csc_matrix", "coo_matrix", "csr_array"],
)
def test_sparse_roundtrip_keeps_format_and_class(store, make):
    X = make(sp.random(200, 70, density=0.03, format="csr", random_state=1, dtype=np.float64))
    m, back = roundtrip(store, X)
    assert m.outputs[0]["codec"] == "scipy_sparse_npz" and m.outputs[0]["file"].endswith(".npz")
    assert type(back) is type(X)
    assert back.format == X.format and back.shape == X.shape and back.dtype == X.dtype
    assert (abs(back - X)).max() == 0


def test_sparse_npz_is_uncompressed_and_readable_by_scipy(store):
    X = sp.random(100, 50, density=0.1, format="csr", random_state=2)
    m = store.save_outputs(1, "X", [X])
    path = Path(store.node_path(1, "X")) / m.outputs[0]["file"]
    import zipfile

    with zipfile.ZipFile(path) as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}
    assert (sp.load_npz(path) != X).nnz == 0


def test_numpy_roundtrip_small_and_mapped(store):
    small = np.arange(12, dtype=np.int16).reshape(3, 4)
    big = np.random.default_rng(0).random((600, 500))  # > 1 MiB: memory-mapped on load
    dates = np.array(["2024-01-01", "NaT"], dtype="datetime64[s]")
    m = store.save_outputs(1, "arr", [small, big, dates])
    assert [o["codec"] for o in m.outputs] == ["numpy_npy"] * 3
    a, b, c = store.load_outputs(1, "arr")
    assert type(a) is np.ndarray and a.dtype == np.int16 and np.array_equal(a, small)
    assert type(b) is np.ndarray and np.array_equal(b, big)  # plain ndarray, not np.memmap
    assert b.flags.writeable
    b[0, 0] = -5.0  # copy-on-write: does not reach the file
    assert store.load_output(1, "arr", 1)[0, 0] == big[0, 0]
    assert np.array_equal(c, dates, equal_nan=True) and c.dtype == dates.dtype
    assert m.outputs[2]["sample"] == ["2024-01-01T00:00:00", "NaT"]


# --------------------------------------------------------------------------- models


def test_xgboost_booster_native_format(store):
    xgb = pytest.importorskip("xgboost")
    rng = np.random.default_rng(0)
    X, y = rng.random((200, 4)), rng.random(200)
    dtrain = xgb.DMatrix(X, label=y, feature_names=["a", "b", "c", "d"])
    booster = xgb.train({"max_depth": 3, "eta": 0.3}, dtrain, num_boost_round=5)
    booster.set_attr(best_iteration="4")
    m, back = roundtrip(store, booster)
    assert m.outputs[0]["codec"] == "xgboost_ubj" and m.outputs[0]["file"] == "output_0.ubj"
    assert isinstance(back, xgb.Booster)
    assert np.allclose(back.predict(dtrain), booster.predict(dtrain))
    assert back.feature_names == ["a", "b", "c", "d"]
    assert back.attr("best_iteration") == "4"
    assert m.outputs[0]["summary"]["num_boosted_rounds"] == 5
    assert m.outputs[0]["summary"]["class"] == "Booster"


def test_sklearn_estimators_round_trip_and_joblib_reads_them(store):
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline

    records = [{"PU_DO": "1_2", "trip_distance": 1.0}, {"PU_DO": "3_4", "trip_distance": 5.0}] * 10
    y = np.array([5.0, 20.0] * 10)
    dv = DictVectorizer().fit(records)
    lr = LinearRegression().fit(dv.transform(records), y)
    pipe = make_pipeline(DictVectorizer(), LinearRegression()).fit(records, y)
    m = store.save_outputs(1, "train:LinearRegression", [dv, lr, pipe])
    assert [o["codec"] for o in m.outputs] == ["sklearn_pickle"] * 3
    dv2, lr2, pipe2 = store.load_outputs(1, "train:LinearRegression")
    assert dv2.feature_names_ == dv.feature_names_
    assert (dv2.transform(records) != dv.transform(records)).nnz == 0
    assert np.allclose(lr2.predict(dv.transform(records)), lr.predict(dv.transform(records)))
    assert np.allclose(pipe2.predict(records), pipe.predict(records))
    import joblib  # the files stay readable with joblib, as Mage users expect

    path = Path(store.node_path(1, "train:LinearRegression")) / m.outputs[0]["file"]
    assert joblib.load(path).feature_names_ == dv.feature_names_
    s = m.outputs[1]["summary"]
    assert s["class"] == "LinearRegression" and s["params"]["fit_intercept"] == "True"
    assert s["n_features_in"] == 3
    assert m.outputs[2]["summary"]["steps"] == ["dictvectorizer: DictVectorizer", "linearregression: LinearRegression"]


def test_estimator_joblib_cannot_pickle_goes_to_cloudpickle(store):
    from sklearn.preprocessing import FunctionTransformer

    ft = FunctionTransformer(func=lambda X: X * 2)
    m, back = roundtrip(store, ft)
    assert m.outputs[0]["codec"] == "cloudpickle"
    assert back.fit_transform(np.array([[1.0, 2.0]])).tolist() == [[2.0, 4.0]]


# --------------------------------------------------------------------------- plain values


def test_json_values_roundtrip_exactly(store):
    values = [None, True, 3, 2.5, "text", [1, [2, "x"], {"k": None}], {"a": {"b": [1.0, False]}}, -0.0]
    m = store.save_outputs(1, "json", values)
    assert [o["codec"] for o in m.outputs] == ["json"] * len(values)
    back = store.load_outputs(1, "json")
    assert back == values
    assert [type(v) for v in back] == [type(v) for v in values]  # True stays bool, 3 stays int
    assert str(back[-1]) == "-0.0"


def test_values_json_would_change_go_to_pickle(store):
    values = [(1, 2), {1: "a", 2: "b"}, [1, (2, 3)], np.float64(1.5), {"k": {1, 2}}, {"t": (1,)}]
    m = store.save_outputs(1, "pkl", values)
    assert [o["codec"] for o in m.outputs] == ["cloudpickle"] * len(values)
    back = store.load_outputs(1, "pkl")
    assert back == values
    assert type(back[0]) is tuple and list(back[1]) == [1, 2] and type(back[2][1]) is tuple
    assert type(back[3]) is np.float64


def test_unknown_objects_fall_back_to_cloudpickle(store):
    offset = 10
    fn = lambda x: x + offset  # noqa: E731 - a closure cloudpickle must ship by value

    class Local:
        def __init__(self):
            self.value = 7

    m = store.save_outputs(1, "misc", [fn, Local()])
    assert [o["codec"] for o in m.outputs] == ["cloudpickle", "cloudpickle"]
    f2, obj = store.load_outputs(1, "misc")
    assert f2(5) == 15 and obj.value == 7
    assert m.outputs[0]["summary"]["type"] == "function"
    assert "lambda" in m.outputs[0]["summary"]["repr"]


# --------------------------------------------------------------------------- manifest / summary


def test_manifest_content_and_summaries(store):
    df = rich_frame(30)
    X = sp.csr_matrix(np.array([[0, 1.5, 0], [2.0, 0, 0]]))
    arr = np.arange(40.0).reshape(20, 2)
    m = store.save_outputs(5, "prepare/features", [df, X, arr, {"rmse": 5.2}, (1, 2)])
    on_disk = store.manifest(5, "prepare/features")
    assert isinstance(on_disk, OutputManifest)
    assert on_disk == m
    assert on_disk.run_id == 5 and on_disk.node_uuid == "prepare/features"
    assert [o["name"] for o in m.outputs] == [f"output_{i}" for i in range(5)]
    for o in m.outputs:
        if o["file"] is None:  # small JSON values live in the manifest
            assert len(o["inline"].encode()) == o["bytes"]
        else:
            assert (Path(store.node_path(5, "prepare/features")) / o["file"]).stat().st_size == o["bytes"]
        assert set(o) >= {"name", "codec", "file", "summary", "sample"}
    assert m.outputs[3]["file"] is None and m.outputs[3]["inline"] == '{"rmse":5.2}'

    s0 = m.outputs[0]["summary"]
    assert s0["shape"] == [30, 12] and s0["columns"][:2] == ["i", "i32"]
    assert s0["dtypes"]["when"] == "datetime64[us]" and s0["dtypes"]["cat"] == "category"
    sample = m.outputs[0]["sample"]
    assert len(sample) == 10
    assert sample[0]["when"] == "2023-01-01T00:00:00"
    assert sample[0]["when_tz"] == "2023-01-01T00:00:00-05:00"
    assert sample[0]["f_nan"] is None and sample[1]["f_nan"] == 1.5  # NaN -> null
    assert sample[0]["nullable"] is None and sample[0]["s"] is None
    assert sample[0]["dur"] == "0 days 00:00:00"

    s1 = m.outputs[1]["summary"]
    assert s1["shape"] == [2, 3] and s1["nnz"] == 2 and s1["format"] == "csr"
    assert s1["density"] == pytest.approx(2 / 6)
    assert m.outputs[1]["sample"][:2] == [{"1": 1.5}, {"0": 2.0}]

    s2 = m.outputs[2]["summary"]
    assert s2["shape"] == [20, 2] and s2["dtype"] == "float64"
    assert m.outputs[2]["sample"] == arr[:10].tolist()

    assert m.outputs[3]["sample"] == {"rmse": 5.2}
    assert m.outputs[4]["summary"]["type"] == "tuple" and m.outputs[4]["summary"]["repr"] == "(1, 2)"
    # the manifest file is strict JSON
    raw = (Path(store.node_path(5, "prepare/features")) / "manifest.json").read_text()
    json.loads(raw, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))


def test_wide_frame_summary_is_capped(store):
    wide = pd.DataFrame(np.zeros((20, 1500)), columns=[f"c{i}" for i in range(1500)])
    m = store.save_outputs(1, "wide", [wide])
    s = m.outputs[0]["summary"]
    assert s["shape"] == [20, 1500]
    assert len(s["columns"]) == 1000 and s["columns_truncated"] is True
    assert len(m.outputs[0]["sample"]) == 10 and len(m.outputs[0]["sample"][0]) == 50


def test_manifest_is_strict_json_even_for_nan_values(store):
    m = store.save_outputs(1, "nan", [float("nan"), {"score": float("inf")}])
    assert [o["codec"] for o in m.outputs] == ["json", "json"]
    assert m.outputs[0]["sample"] is None and m.outputs[1]["sample"] == {"score": None}
    raw = Path(store.manifest_path(1, "nan")).read_text()
    json.loads(raw, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    a, b = store.load_outputs(1, "nan")
    assert np.isnan(a) and b == {"score": float("inf")}  # the value itself round-trips


def test_manifest_and_has_outputs_when_missing(store):
    assert store.manifest(9, "nothing") is None
    assert store.has_outputs(9, "nothing") is False
    store.save_outputs(9, "something", [])
    assert store.has_outputs(9, "something") is True
    assert store.load_outputs(9, "something") == []


# --------------------------------------------------------------------------- digest


def test_digest_equal_for_equal_data_and_different_otherwise(store, monkeypatch):
    def outputs(scale=1.0):
        df = pd.DataFrame({"a": np.arange(1000) * scale, "t": pd.date_range("2024", periods=1000, freq="min")})
        X = sp.random(50, 20, density=0.1, format="csr", random_state=3) * scale
        return [df, X, np.arange(5) * scale, {"k": [1, 2]}]

    d1 = store.save_outputs(1, "n", outputs()).digest
    # a different clock must not change file bytes (zip member timestamps are fixed)
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 86400 * 30)
    d2 = store.save_outputs(2, "n", outputs()).digest
    monkeypatch.undo()
    d3 = store.save_outputs(3, "n", outputs(scale=2.0)).digest
    assert len(d1) == 64 and int(d1, 16) >= 0
    assert d1 == d2
    assert d3 != d1
    # same bytes but a different codec (list -> json, tuple -> pickle) or order -> different digest
    assert store.save_outputs(4, "n", [[1, 2]]).digest != store.save_outputs(4, "m", [(1, 2)]).digest
    assert store.save_outputs(5, "n", [1, 2]).digest != store.save_outputs(5, "m", [2, 1]).digest


def reference_tree_digest(data: bytes, leaf_size: int) -> str:
    """XXH3-128 leaves (seeded by index and last flag) under a BLAKE2b root, written out
    sequentially and independently of the store's parallel code."""
    import hashlib

    import xxhash

    params = dict(digest_size=32, fanout=0, depth=2, leaf_size=leaf_size, inner_size=32)
    n = max(1, -(-len(data) // leaf_size))
    leaves = [
        xxhash.xxh3_128(data[k * leaf_size : (k + 1) * leaf_size], seed=k * 2 + (k == n - 1)).digest()
        for k in range(n)
    ]
    return hashlib.blake2b(b"".join(leaves), node_offset=0, node_depth=1, last_node=True, **params).hexdigest()


@pytest.mark.parametrize("pages", [0, 1, 3, 7])
@pytest.mark.parametrize("extra", [0, 1, 100])
def test_file_digest_is_the_same_tree_hash_on_every_path(tmp_path, monkeypatch, pages, extra):
    import fsspec

    from blockyard.store import hashing

    leaf = mmap.ALLOCATIONGRANULARITY
    monkeypatch.setattr(hashing, "LEAF_SIZE", leaf)
    data = os.urandom(pages * leaf + extra)
    expected = reference_tree_digest(data, leaf)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert hashing.hash_file(None, str(path), True) == (expected, len(data))
    assert hashing.hash_buffer(data) == expected
    mem = fsspec.filesystem("memory")
    mem_path = f"/blockyard-hash-{uuid.uuid4().hex}"
    mem.pipe_file(mem_path, data)
    try:
        assert hashing.hash_file(mem, mem_path, False) == (expected, len(data))
    finally:
        mem.rm_file(mem_path)
    # hashing while the file is being appended to, in small pieces
    grown = tmp_path / "grown.bin"
    with open(grown, "wb") as f:
        hasher = hashing.FollowingHasher(str(grown))
        for i in range(0, len(data), 1000):
            f.write(data[i : i + 1000])
            f.flush()
            if i % 5000 == 0:
                time.sleep(0.003)
    assert hasher.finish() == (expected, len(data))
    if data:
        assert expected != reference_tree_digest(data[:-1] + bytes([data[-1] ^ 1]), leaf)


def test_large_output_digest_matches_tree_hash_of_file(store):
    df = pd.DataFrame({"a": np.arange(10_000_000, dtype=np.int64)})  # 80 MB: hashed while written
    m = store.save_outputs(1, "big", [df])
    path = Path(store.node_path(1, "big")) / m.outputs[0]["file"]
    from blockyard.store import hashing

    assert m.outputs[0]["bytes"] == path.stat().st_size > hashing.FOLLOW_MIN_BYTES
    assert m.outputs[0]["blake2b"] == reference_tree_digest(path.read_bytes(), hashing.LEAF_SIZE)


# --------------------------------------------------------------------------- layout


def test_layout_quotes_node_uuids(store, tmp_path):
    # (1,) is not JSON (a file of its own, so a node folder); 4 is inline (the run's log)
    store.save_outputs(3, "hyperparameter_tuning/sklearn", [(1,)])
    store.save_outputs(3, "train:LinearRegression", [(2,)])
    store.save_outputs(3, "..", [(3,)])
    store.save_outputs(3, "inline/node", [4])
    run_dir = tmp_path / "outputs" / "runs" / "3"
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "%2E%2E",
        "hyperparameter_tuning%2Fsklearn",
        "inline+manifests.jsonl",
        "train%3ALinearRegression",
    ]
    assert (run_dir / "hyperparameter_tuning%2Fsklearn" / "manifest.json").exists()
    assert store.node_uuids(3) == ["..", "hyperparameter_tuning/sklearn", "inline/node", "train:LinearRegression"]
    assert store.load_output(3, "..", 0) == (3,)
    assert store.load_output(3, "inline/node", 0) == 4
    assert store.run_ids() == [3]


def test_very_long_node_uuid_is_shortened(store):
    node = "x" * 400
    store.save_outputs(1, node, ["v"])
    assert len(Path(store.node_path(1, node)).name) <= 200
    assert store.node_uuids(1) == [node]
    assert store.load_output(1, node, 0) == "v"


def test_memory_filesystem_store(tmp_path):
    root = f"memory://blockyard-test-{uuid.uuid4().hex}"
    store = ArtifactStore(root)
    df = rich_frame(20)
    X = sp.random(30, 10, density=0.2, format="csr", random_state=0)
    big = np.arange(300_000.0)
    m = store.save_outputs(7, "hyperparameter_tuning/sklearn", [df, X, big, {"a": 1}, (1,)])
    assert not store.local
    assert store.fs.exists(f"{store.root}/runs/7/hyperparameter_tuning%2Fsklearn/manifest.json")
    assert store.has_outputs(7, "hyperparameter_tuning/sklearn")
    back = store.load_outputs(7, "hyperparameter_tuning/sklearn")
    pd.testing.assert_frame_equal(back[0], df)
    assert back[1].format == "csr" and (back[1] != X).nnz == 0
    assert np.array_equal(back[2], big) and back[3] == {"a": 1} and back[4] == (1,)
    local = ArtifactStore(tmp_path / "local")  # same data, same digest on any filesystem
    assert local.save_outputs(7, "n", [df, X, big, {"a": 1}, (1,)]).digest == m.digest
    assert store.run_ids() == [7]
    assert store.delete_run(7) is True
    assert store.run_ids() == [] and not store.has_outputs(7, "hyperparameter_tuning/sklearn")


def test_file_url_and_fsync_option(tmp_path, monkeypatch):
    calls = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real_fsync(fd))[1])
    store = ArtifactStore(f"file://{tmp_path}/outputs", fsync=True)
    assert store.local and store.root == f"{tmp_path}/outputs"
    store.save_outputs(1, "n", [pd.DataFrame({"a": [1]}), [1, 2]])
    assert len(calls) == 3  # the frame's file, the manifest (holding [1, 2] inline), its folder
    assert (tmp_path / "outputs" / "runs" / "1" / "n" / "manifest.json").exists()
    assert store.load_output(1, "n", 1) == [1, 2]


def test_concurrent_saves_from_threads(store):
    from concurrent.futures import ThreadPoolExecutor

    def outputs(k):
        return [pd.DataFrame({"a": np.arange(200_000) + k}), np.full(300_000, float(k)), {"k": k}]

    sequential = ArtifactStore(f"memory://blockyard-seq-{uuid.uuid4().hex}")
    expected = {k: sequential.save_outputs(k, "n", outputs(k)).digest for k in range(8)}
    assert sequential.clean(run_ids=range(8)) == 8
    assert len(set(expected.values())) == 8
    with ThreadPoolExecutor(8) as pool:
        digests = dict(zip(range(8), pool.map(lambda k: store.save_outputs(1, f"node/{k}", outputs(k)).digest, range(8))))
    assert digests == expected
    for k in range(8):
        df, arr, meta = store.load_outputs(1, f"node/{k}")
        assert df["a"].iloc[0] == k and arr[-1] == k and meta == {"k": k}


@pytest.mark.skipif(sys.platform == "win32", reason="fork")
def test_save_in_forked_child_after_parent_used_hash_threads(store, tmp_path):
    import multiprocessing as mp

    big = np.arange(9_000_000, dtype=np.int64)  # 72 MB: several leaves, hashed on the pool
    parent = store.save_outputs(1, "parent", [big]).digest
    ctx = mp.get_context("fork")
    proc = ctx.Process(target=_child_save, args=(str(tmp_path / "outputs"),))
    proc.start()
    proc.join(60)
    if proc.is_alive():
        proc.kill()
        pytest.fail("saving in a forked child hung (hash threads not re-created after fork)")
    assert proc.exitcode == 0
    assert store.manifest(2, "child").digest == parent


def _child_save(root):
    ArtifactStore(root).save_outputs(2, "child", [np.arange(9_000_000, dtype=np.int64)])


# --------------------------------------------------------------------------- cleanup


def test_clean_removes_old_runs_and_keeps_new(store):
    for run in (1, 2, 3):
        store.save_outputs(run, "a", [run])  # inline: a line of the run's log
        store.save_outputs(run, "b/c", [(run,)])  # a file: a node folder with manifest.json
    old = time.time() - 7200
    os.utime(store.log_path(1), (old, old))
    os.utime(store.manifest_path(1, "b/c"), (old, old))
    os.utime(store.log_path(2), (old, old))  # run 2 has one recent manifest left
    # a run still being written (no manifest yet, fresh files) must not be cleaned
    inflight = Path(store.node_path(4, "slow"))
    inflight.mkdir(parents=True)
    (inflight / "output_0.arrow").write_bytes(b"partial")
    assert store.clean(older_than_seconds=3600) == 1
    assert store.run_ids() == [2, 3, 4]
    assert store.load_output(2, "b/c", 0) == (2,) and store.load_output(2, "a", 0) == 2
    assert store.clean(run_ids=[3, 99]) == 1
    assert store.run_ids() == [2, 4]
    with pytest.raises(ValueError):
        store.clean()


def test_delete_run(store):
    store.save_outputs(11, "n", [1])
    assert store.delete_run(11) is True
    assert store.delete_run(11) is False
    assert not store.has_outputs(11, "n")


# --------------------------------------------------------------------------- failures


def test_failed_save_leaves_no_manifest_and_names_the_output(store):
    store.save_outputs(1, "n", ["previous"])

    def gen():
        yield 1

    with pytest.raises(StoreError) as info:
        store.save_outputs(1, "n", [1, gen()])
    err = info.value
    assert "output_1" in str(err) and "'n'" in str(err) and "run 1" in str(err)
    assert err.block == "n" and err.file.endswith("output_1.pkl")
    assert not store.has_outputs(1, "n")  # the old manifest is gone, no half state
    assert not [p for p in os.listdir(store.node_path(1, "n")) if p.startswith(".tmp-")]


def test_manifest_written_atomically(store, monkeypatch):
    store.save_outputs(1, "n", [(1,)])
    real_replace = os.replace

    def failing_replace(src, dst):
        if str(dst).endswith("manifest.json"):
            raise OSError("disk gone")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(StoreError) as info:
        store.save_outputs(1, "n", [(2,)])
    assert info.value.file.endswith("manifest.json")
    monkeypatch.undo()
    assert store.manifest(1, "n") is None  # never a half-written manifest


def test_errors_name_the_file(store):
    big = list(range(5000))  # over the inline limit: a file of its own
    m = store.save_outputs(2, "train/model", [pd.DataFrame({"a": [1, 2]}), big])
    path = Path(store.node_path(2, "train/model")) / m.outputs[0]["file"]
    path.write_bytes(b"not arrow")
    with pytest.raises(StoreError) as info:
        store.load_outputs(2, "train/model")
    err = info.value
    assert err.file == str(path)
    assert "output_0" in err.message and "train/model" in err.message and "run 2" in err.message
    assert str(path) in str(err)

    (Path(store.node_path(2, "train/model")) / m.outputs[1]["file"]).unlink()
    with pytest.raises(StoreError, match="missing") as info:
        store.load_output(2, "train/model", 1)
    assert info.value.file.endswith("output_1.json")

    with pytest.raises(StoreError, match="has 2 output") as info:
        store.load_output(2, "train/model", 5)

    with pytest.raises(StoreError, match="no saved outputs") as info:
        store.load_outputs(2, "other")
    assert info.value.file.endswith("manifest.json")

    manifest = Path(store.manifest_path(2, "train/model"))
    manifest.write_text("{broken")
    with pytest.raises(StoreError, match="corrupt") as info:
        store.manifest(2, "train/model")
    assert info.value.file == str(manifest)


@pytest.mark.parametrize("value", [1, (1,)], ids=["inline-in-the-log", "file-in-a-folder"])
def test_unknown_codec_in_manifest(store, value):
    m = store.save_outputs(1, "n", [value])
    path = Path(m.source)
    assert path.name == ("manifest.json" if m.outputs[0]["file"] else "inline+manifests.jsonl")
    data = json.loads(path.read_text())
    data["outputs"][0]["codec"] = "from_the_future"
    path.write_text(json.dumps(data) + "\n")
    with pytest.raises(StoreError, match="from_the_future") as info:
        store.load_outputs(1, "n")
    assert "register_codec" in info.value.hint


# --------------------------------------------------------------------------- extension codecs


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y


class PointCodec:
    name = "test_point"
    extension = ".point"

    def can_encode(self, obj):
        return isinstance(obj, Point)

    def save(self, obj, fs, path):
        if obj.x < 0:
            raise CodecSkip("negative points are stored some other way")
        with fs.open(path, "w") as f:
            f.write(f"{obj.x},{obj.y}")

    def load(self, fs, path):
        with fs.open(path, "r") as f:
            x, y = f.read().split(",")
        return Point(int(x), int(y))


def test_register_codec_first_and_codec_skip(store):
    register_codec(PointCodec(), first=True)
    try:
        assert get_codec("test_point") is not None
        m = store.save_outputs(1, "p", [Point(1, 2), Point(-1, 0)])
        assert [o["codec"] for o in m.outputs] == ["test_point", "cloudpickle"]
        assert m.outputs[0]["file"] == "output_0.point"
        assert (Path(store.node_path(1, "p")) / "output_0.point").read_text() == "1,2"
        a, b = store.load_outputs(1, "p")
        assert (a.x, a.y, b.x) == (1, 2, -1)
        assert m.outputs[0]["summary"]["type"].endswith("Point")  # generic summary for duck-typed codecs
    finally:
        assert unregister_codec("test_point") is True
    assert get_codec("test_point") is None


def test_register_codec_last_goes_before_pickle(store):
    class AnyTuple(PointCodec):
        name = "test_tuple"
        extension = ".tuple"

        def can_encode(self, obj):
            return type(obj) is tuple

        def save(self, obj, fs, path):
            with fs.open(path, "w") as f:
                json.dump(list(obj), f)

        def load(self, fs, path):
            with fs.open(path, "r") as f:
                return tuple(json.load(f))

    register_codec(AnyTuple(), first=False)
    try:
        m = store.save_outputs(1, "t", [(1, 2), [1, 2]])
        assert [o["codec"] for o in m.outputs] == ["test_tuple", "json"]
        assert store.load_outputs(1, "t") == [(1, 2), [1, 2]]
    finally:
        unregister_codec("test_tuple")
    with pytest.raises(TypeError):
        register_codec(object())
