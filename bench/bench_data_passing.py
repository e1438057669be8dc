"""Data passing between blocks: Blockyard's ArtifactStore vs what Mage stores.

    python bench/bench_data_passing.py [--rows 10000000] [--reps 3] [--json-rows 1000]

(a) a synthetic 5-column frame (int64, float64, float64, datetime64[us], short str),
    ArtifactStore.save_outputs + load_outputs  vs  df.to_parquet + pd.read_parquet
    (pyarrow engine, default snappy: Mage's format for data frames).
(b) a 105,870 x 7,027 CSR matrix shaped like the course's DictVectorizer output
    (one-hot PU_DO + trip_distance = 2 non-zeros per row),
    ArtifactStore (.npz)  vs  an emulation of Mage's JSON: json.dump of
    matrix.toarray().tolist(), then json.load + np.array + csr_matrix to get it back.
    The dense list for all rows would need ~24 GB of Python floats, so JSON is timed on a
    row slice (median of 3) and extrapolated linearly to all rows (printed as such).

Every measured load is followed by a "touch" that reads every column / the whole matrix
(sum ints and floats, max of the datetime, count of one string value; X.sum() and a
mat-vec), so memory-mapping cannot hide the cost of reading. Files live in a temp folder
on the same disk for both sides and are read back while still in the page cache.
Before each timed save the page cache is flushed (os.sync) so writeback from the previous
step is not billed to the next. Reported numbers are medians over --reps repetitions.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from blockyard.store import ArtifactStore  # noqa: E402
from blockyard.store.hashing import hash_file  # noqa: E402


def make_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    start = np.datetime64("2024-01-01T00:00:00", "us")
    zones = np.array([f"Z{i:03d}" for i in range(265)], dtype=object)
    return pd.DataFrame(
        {
            "trip_id": np.arange(rows, dtype=np.int64),
            "trip_distance": rng.gamma(2.0, 1.5, rows),
            "fare_amount": rng.normal(15.0, 5.0, rows),
            "pickup_datetime": start + rng.integers(0, 31 * 86400 * 10**6, rows).astype("timedelta64[us]"),
            "zone": pd.array(zones[rng.integers(0, len(zones), rows)], dtype="str"),
        }
    )


def touch_frame(df: pd.DataFrame) -> float:
    """Read every column once."""
    total = float(df["trip_id"].sum())
    total += float(df["trip_distance"].sum()) + float(df["fare_amount"].sum())
    total += df["pickup_datetime"].max().value / 1e18
    total += float((df["zone"] == "Z042").sum())
    return total


def make_sparse(rows: int = 105_870, cols: int = 7_027, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    pu_do = rng.integers(0, cols - 1, rows)  # one-hot PU_DO in columns 0..cols-2
    dist = rng.gamma(2.0, 1.5, rows)  # trip_distance in the last column
    indices = np.empty(rows * 2, dtype=np.int32)
    indices[0::2] = pu_do
    indices[1::2] = cols - 1
    data = np.empty(rows * 2, dtype=np.float64)
    data[0::2] = 1.0
    data[1::2] = dist
    indptr = np.arange(0, rows * 2 + 1, 2, dtype=np.int32)
    return sp.csr_matrix((data, indices, indptr), shape=(rows, cols))


def touch_sparse(X) -> float:
    v = np.ones(X.shape[1])
    return float(X.sum()) + float((X @ v).sum())


def settle() -> None:
    """Before each timed step: collect garbage and flush dirty pages left by the previous
    step, so the kernel's writeback of one side is not billed to the other."""
    gc.collect()
    os.sync()


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def median(xs):
    return statistics.median(xs)


def fmt(s: float) -> str:
    return f"{s * 1000:,.0f} ms" if s < 10 else f"{s:,.1f} s"


def bench_frame(tmp: Path, rows: int, reps: int, category: bool = False) -> dict:
    df = make_frame(rows)
    if category:
        df["zone"] = df["zone"].astype("category")
    expected = touch_frame(df)
    store = ArtifactStore(tmp / "store")
    res = {k: [] for k in ("store_save", "store_load", "store_touch", "pq_save", "pq_load", "pq_touch", "digest")}
    sizes = {}

    def run_store(rep: int) -> None:
        settle()
        run = 1000 + rep
        t, m = timed(lambda: store.save_outputs(run, "transform/frame", [df]))
        res["store_save"].append(t)
        t, (loaded,) = timed(lambda: store.load_outputs(run, "transform/frame"))
        res["store_load"].append(t)
        t, v = timed(lambda: touch_frame(loaded))
        res["store_touch"].append(t)
        assert abs(v - expected) < 1e-6 * abs(expected), "store round trip changed the data"
        path = os.path.join(store.node_path(run, "transform/frame"), m.outputs[0]["file"])
        sizes["arrow"] = os.path.getsize(path)
        # the digest alone, if it were computed after writing (the store overlaps it with
        # the write: BLAKE2b tree mode, 32 MiB leaves on the hashing threads)
        t0 = time.perf_counter()
        hash_file(None, path, True)
        res["digest"].append(time.perf_counter() - t0)
        del loaded
        store.delete_run(run)

    def run_parquet(rep: int) -> None:
        settle()
        pq = tmp / f"frame_{rep}.parquet"
        t, _ = timed(lambda: df.to_parquet(pq))
        res["pq_save"].append(t)
        t, loaded = timed(lambda: pd.read_parquet(pq))
        res["pq_load"].append(t)
        t, v = timed(lambda: touch_frame(loaded))
        res["pq_touch"].append(t)
        assert abs(v - expected) < 1e-6 * abs(expected), "parquet round trip changed the data"
        sizes["parquet"] = pq.stat().st_size
        del loaded
        pq.unlink()

    for rep in range(reps):  # alternate who goes first, so neither always gets the warmer machine
        first, second = (run_store, run_parquet) if rep % 2 == 0 else (run_parquet, run_store)
        first(rep)
        second(rep)
    out = {k: median(v) for k, v in res.items()}
    for side in ("store", "pq"):
        totals = [a + b + c for a, b, c in zip(res[f"{side}_save"], res[f"{side}_load"], res[f"{side}_touch"])]
        out[f"{side}_total"] = median(totals)
        out[f"{side}_best"] = min(totals)
    out["sizes"] = sizes
    out["rows"] = rows
    return out


def bench_sparse(tmp: Path, reps: int, json_rows: int) -> dict:
    X = make_sparse()
    expected = touch_sparse(X)
    store = ArtifactStore(tmp / "store")
    res = {k: [] for k in ("store_save", "store_load", "store_touch", "json_save", "json_load")}
    size = 0
    for rep in range(reps):
        gc.collect()
        run = 2000 + rep
        t, m = timed(lambda: store.save_outputs(run, "prepare/X", [X]))
        res["store_save"].append(t)
        t, (loaded,) = timed(lambda: store.load_outputs(run, "prepare/X"))
        res["store_load"].append(t)
        t, v = timed(lambda: touch_sparse(loaded))
        res["store_touch"].append(t)
        assert loaded.format == "csr" and abs(v - expected) < 1e-6 * abs(expected)
        size = m.outputs[0]["bytes"]
        store.delete_run(run)

    # JSON emulation on a row slice
    n = min(json_rows, X.shape[0])
    part = X[:n]
    json_size = 0
    for rep in range(min(reps, 3)):  # each takes seconds; three are plenty
        gc.collect()
        path = tmp / f"X_{rep}.json"

        def dump():
            with open(path, "w") as f:
                json.dump(part.toarray().tolist(), f)

        def load():
            with open(path) as f:
                back = sp.csr_matrix(np.array(json.load(f), dtype=np.float64))
            return back

        t, _ = timed(dump)
        res["json_save"].append(t)
        t, back = timed(load)
        res["json_load"].append(t)
        assert (back != part).nnz == 0
        json_size = path.stat().st_size
        del back
        path.unlink()
    out = {k: median(v) for k, v in res.items()}
    scale = X.shape[0] / n
    out.update(
        shape=X.shape,
        nnz=X.nnz,
        npz_bytes=size,
        json_rows=n,
        scale=scale,
        json_bytes_slice=json_size,
        json_bytes_full=json_size * scale,
        json_save_full=out["json_save"] * scale,
        json_load_full=out["json_load"] * scale,
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--json-rows", type=int, default=1_000)
    ap.add_argument("--tmp", default=None, help="folder for the files (default: a temp dir)")
    ap.add_argument("--no-category", action="store_true", help="skip the categorical variant of (a)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="blockyard-bench-", dir=args.tmp))
    try:
        import pyarrow
        import scipy

        print(
            f"python {platform.python_version()}, pandas {pd.__version__}, pyarrow {pyarrow.__version__}, "
            f"numpy {np.__version__}, scipy {scipy.__version__}; "
            f"{os.cpu_count()} CPUs; files in {tmp}"
        )
        print(
            f"medians of {args.reps} repetitions (total = median of per-repetition save+load+read; best = fastest "
            "repetition); each load is followed by a full read of the data\n"
        )

        variants = [("str", False)] + ([] if args.no_category else [("category", True)])
        for label, cat in variants:
            r = bench_frame(tmp, args.rows, args.reps, category=cat)
            st, pq = r["store_total"], r["pq_total"]
            print(f"(a) data frame {r['rows']:,} rows x 5 columns (int64, 2x float64, datetime64[us], zone as {label})")
            print(f"    {'':28}{'save':>10}{'load':>10}{'read':>10}{'total':>10}{'best':>10}{'file':>10}")
            print(
                f"    {'ArtifactStore (Arrow IPC)':28}{fmt(r['store_save']):>10}{fmt(r['store_load']):>10}"
                f"{fmt(r['store_touch']):>10}{fmt(st):>10}{fmt(r['store_best']):>10}{r['sizes']['arrow'] / 1e6:>7,.0f} MB"
            )
            print(
                f"    {'pandas parquet (Mage)':28}{fmt(r['pq_save']):>10}{fmt(r['pq_load']):>10}"
                f"{fmt(r['pq_touch']):>10}{fmt(pq):>10}{fmt(r['pq_best']):>10}{r['sizes']['parquet'] / 1e6:>7,.0f} MB"
            )
            print(
                f"    ratio parquet/store: save {r['pq_save'] / r['store_save']:.1f}x, "
                f"load {r['pq_load'] / r['store_load']:.0f}x, save+load+read {pq / st:.1f}x "
                f"(best vs best {r['pq_best'] / r['store_best']:.1f}x; target >= 3x)"
            )
            print(f"    digest alone, if computed after the write (the store overlaps it): {fmt(r['digest'])}\n")

        s = bench_sparse(tmp, args.reps, args.json_rows)
        st = s["store_save"] + s["store_load"] + s["store_touch"]
        js_full = s["json_save_full"] + s["json_load_full"]
        print(f"(b) CSR matrix {s['shape'][0]:,} x {s['shape'][1]:,}, nnz {s['nnz']:,} (2 per row)")
        print(
            f"    ArtifactStore (.npz): save {fmt(s['store_save'])}, load {fmt(s['store_load'])}, "
            f"read {fmt(s['store_touch'])}, total {fmt(st)}, file {s['npz_bytes'] / 1e6:,.1f} MB"
        )
        print(
            f"    Mage-style JSON (dense toarray().tolist()), measured on {s['json_rows']:,} rows: "
            f"save {fmt(s['json_save'])}, load {fmt(s['json_load'])}, file {s['json_bytes_slice'] / 1e6:,.0f} MB"
        )
        print(
            f"    EXTRAPOLATED linearly x{s['scale']:.1f} to all rows (the full dense list does not fit in "
            f"memory): save {fmt(s['json_save_full'])}, load {fmt(s['json_load_full'])}, "
            f"total {fmt(js_full)}, file {s['json_bytes_full'] / 1e9:,.1f} GB"
        )
        print(f"    ratio JSON/store (save+load): {js_full / (s['store_save'] + s['store_load']):,.0f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
