"""The Dask executor on a real local cluster (`dask scheduler` + 2 `dask worker`
processes, one thread each), side by side with the in-process executors.

    python bench/bench_dask.py [--quick] [--skip-sklearn] [--models a,b,...]

- per-task overhead: a 1,000-block fan-out of no-op blocks on Dask minus the same
  pipeline on the inline executor, per block (run history recorded, outputs persisted);
  and a 200-block chain on Dask (each block waits for the one before: latency per hop);
- a dynamic block fanning out to 10,000 children (reduced by one block) on Dask;
- the course's sklearn training fan-out over 6 models on the 2 workers vs the thread
  executor (the training set is built once beforehand; both sides reuse it).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from bench_engine import chain, dynamic, fan_out  # noqa: E402
from dask_cluster import DaskCluster  # noqa: E402

SIX_MODELS = ",".join([
    "linear_model.LinearRegression", "linear_model.Lasso", "linear_model.Ridge",
    "svm.LinearSVR", "ensemble.RandomForestRegressor", "ensemble.ExtraTreesRegressor",
])


def load() -> str:
    """The machine's load average, printed beside each figure (others share the cores)."""
    return "load %.2f %.2f %.2f" % os.getloadavg()


def timed(name: str, root: Path, executor: str, **kw) -> float:
    import blockyard

    t = time.perf_counter()
    result = blockyard.run_pipeline(name, workspace=root, use_cache=False, executor=executor, **kw)
    elapsed = time.perf_counter() - t
    if not result.ok:  # name the failing block runs with their tracebacks
        failed = {u: getattr(b, "traceback", None) or b.error
                  for u, b in result.block_runs.items() if b.status == "failed"}
        raise AssertionError(f"{name} on {executor}: {result.error}\n{failed}")
    return elapsed


def engine_figures(reps: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ws"
        root.mkdir()
        fan_out(root, 1000)
        chain(root, 200)
        dynamic(root, 10_000)
        timed("bench/fanout", root, "dask")  # warm-up: workers import blockyard
        inline = statistics.median(timed("bench/fanout", root, "inline") for _ in range(reps))
        fan = statistics.median(timed("bench/fanout", root, "dask") for _ in range(reps))
        ch = statistics.median(timed("bench/chain", root, "dask") for _ in range(reps))
        print(f"1,000-block fan-out: inline {inline:.2f} s, dask {fan:.2f} s -> "
              f"per-task overhead of Dask {(fan - inline) / 1000 * 1e3:.2f} ms (target <= 5 ms); "
              f"{fan / 1000 * 1e3:.2f} ms per block in all [{load()}]")
        print(f"200-block chain on dask: {ch:.2f} s -> {ch / 200 * 1e3:.2f} ms per hop [{load()}]")
        dyn = timed("bench/dynamic", root, "dask")
        dyn_thread = timed("bench/dynamic", root, "thread")
        print(f"dynamic fan-out to 10,000 children: dask {dyn:.1f} s, thread {dyn_thread:.1f} s [{load()}]")


def sklearn_figures(models: str, evaluations: int) -> None:
    import blockyard

    ws = REPO / "mlops"
    blockyard.run_pipeline("unit_1_data_preparation/data_preparation", workspace=ws)
    variables = {"models": models, "max_evaluations": evaluations}
    n = len(models.split(","))
    times = {}
    for executor in ("thread", "dask", "thread", "dask"):
        t = timed("unit_2_training/sklearn_training", ws, executor, variables=variables)
        times.setdefault(executor, []).append(t)
    thread, dask = min(times["thread"]), min(times["dask"])
    print(f"sklearn fan-out over {n} models ({evaluations} evaluations each): thread {thread:.1f} s, "
          f"dask on 2 workers {dask:.1f} s -> speed-up x{thread / dask:.2f} "
          f"(best of 2 each; runs: {times}) [{load()}]")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip-sklearn", action="store_true")
    ap.add_argument("--skip-engine", action="store_true")
    ap.add_argument("--models", default=SIX_MODELS)
    ap.add_argument("--evaluations", type=int, default=2)
    args = ap.parse_args()
    print(f"start [{load()}]", flush=True)
    sys.stdout.reconfigure(line_buffering=True)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        os.environ["BLOCKYARD_HOME"] = str(home)
        os.environ.pop("BLOCKYARD_DATABASE_URL", None)
        os.environ.pop("BLOCKYARD_STORE_URL", None)
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        os.environ.setdefault("BLOCKYARD_DATA_MIRROR", "/work/shared/data")
        cluster = DaskCluster(Path(tmp) / "dask", n_workers=2).start()
        os.environ["BLOCKYARD_DASK_ADDRESS"] = cluster.address
        try:
            if not args.skip_engine:
                engine_figures(2 if args.quick else 3)
            if not args.skip_sklearn:
                sklearn_figures(args.models, args.evaluations)
        finally:
            from blockyard.engine.dask_executor import close_clients

            close_clients()
            cluster.stop()


if __name__ == "__main__":
    main()
