"""Speed of a monitoring check (blockyard.ml.monitoring.check).

    BLOCKYARD_DATA_MIRROR=/work/shared/data python bench/bench_monitoring.py [--rows 1000000] [--repeat 3]

1. One month of the course data: the reference profile is built from 2023-01 (cleaned as
   unit 1 does, a linear model's predictions), then 2023-02 (~60k trips) is checked
   against it: drift, prediction drift, missing values, RMSE/MAE, the Evidently HTML
   report written and the figures stored in a SQLite run history. Median of --repeat
   runs in a warm process (Evidently imported once before; its import is timed apart).
2. --rows synthetic trips with the same schema (drawn from 2023-02's trips with noise,
   so the batch drifts), checked in a child process whose peak RSS (ru_maxrss, the
   whole process: data generation included) is reported.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

MONITORED = dict(numerical=["trip_distance", "passenger_count"], categorical=["PULocationID", "DOLocationID"])


def month(name: str):
    from blockyard.datasets import load_green_taxi
    from mlops.utils.data_preparation.cleaning import clean

    return clean(load_green_taxi([name]))


def fit_model(df):
    from sklearn.linear_model import LinearRegression

    X = df[["trip_distance"]].to_numpy()
    return LinearRegression().fit(X, df["duration"])


def with_prediction(model, df):
    df = df.copy()
    df["prediction"] = model.predict(df[["trip_distance"]].to_numpy())
    return df


def synthetic(base, rows: int, seed: int = 1):
    """`rows` trips drawn from `base` with replacement, distances stretched by 20%."""
    import numpy as np

    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(base), rows)
    out = base.iloc[idx].reset_index(drop=True)
    out["trip_distance"] = out["trip_distance"].to_numpy() * rng.normal(1.2, 0.1, rows)
    return out


def child(rows: int, workspace: str) -> None:
    from blockyard.ml import monitoring

    model_df = with_prediction(fit_model(month("2023-01")), month("2023-02"))
    batch = synthetic(model_df, rows)
    del model_df
    monitoring._evidently()
    start = time.perf_counter()
    result = monitoring.check(batch, "bench-model", period="synthetic", workspace=workspace)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "drift_share": result.drift_share,
                      "rmse": result.rmse, "sampled": result.sampled}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workspace", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.rows, args.workspace)
        return
    from blockyard.ml import monitoring

    workspace = tempfile.mkdtemp(prefix="bench-monitoring-")
    train = month("2023-01")
    model = fit_model(train)
    monitoring.build_reference(with_prediction(model, train), model="bench-model", target="duration",
                               prediction="prediction", workspace=workspace, **MONITORED)
    batch = with_prediction(model, month("2023-02"))
    t = time.perf_counter()
    monitoring._evidently()
    import_s = time.perf_counter() - t
    times = []
    for _ in range(args.repeat):
        result = monitoring.check(batch, "bench-model", period="2023-02", workspace=workspace)
        times.append(result.seconds)
    print(f"import evidently: {import_s:.2f} s (once per process)")
    print(f"one month (2023-02, {len(batch):,} trips): median {statistics.median(times):.2f} s "
          f"of {[round(x, 2) for x in times]} (target <= 2 s); drift_share {result.drift_share:.2f}, "
          f"rmse {result.rmse:.2f}, sampled {result.sampled['drift']}")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, __file__, "--child", "--rows", str(args.rows), "--workspace", workspace],
        capture_output=True, text=True, env=env, check=True,
    )
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"{args.rows:,} synthetic trips: {out['seconds']:.2f} s (target <= 15 s), peak RSS of the "
          f"whole process {out['peak_mb']:.0f} MB (target <= 2048 MB); drift_share {out['drift_share']:.2f}, "
          f"rmse {out['rmse']:.2f}, sampled {out['sampled']['drift']}")


if __name__ == "__main__":
    main()
