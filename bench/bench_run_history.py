"""Does the sqlite3 fast path for a run's writes still pay? Measured side by side.

    python bench/bench_run_history.py [--reps 15] [--blocks 2]

Each sample is a fresh `python` process doing exactly what `blockyard run` does with
the run history on an already-migrated SQLite file: open, migrate check, orphan
recovery, create the run, record the blocks' start and end through the recorder,
finish the run. Samples alternate between the two write paths (fast: stdlib sqlite3;
core: `Database(url, sqlite3_writes=False)`, SQLAlchemy Core), so that machine load
hits both alike. Prints the median and minimum wall time of each, and whether the
process imported SQLAlchemy.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = str(Path(__file__).resolve().parent.parent / "src")

RUN = """
import sys, time
t0 = time.perf_counter()
from blockyard.db import Database
db = Database(sys.argv[1], sqlite3_writes=None if sys.argv[2] == "fast" else False)
db.migrate()
db.recover_orphans()
blocks = [f"b{i}" for i in range(int(sys.argv[3]))]
run_id = db.create_pipeline_run("bench", "two", {}, None, blocks, pid=1, hostname="h")
with db.recorder() as rec:
    for b in blocks:
        rec.update_block_run(run_id, b, status="running", attempts=1)
        rec.update_block_run(run_id, b, status="completed", output_ref="x", digest="d")
        rec.write_now()
db.finish_pipeline_run(run_id, "completed")
db.close()
print(time.perf_counter() - t0, "sqlalchemy" in sys.modules)
"""


def sample(url: str, mode: str, blocks: int) -> tuple[float, float, bool]:
    env = dict(os.environ, PYTHONPATH=SRC)
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", RUN, url, mode, str(blocks)], env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    return time.perf_counter() - t, float(out[0]), out[1] == "True"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--blocks", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/blockyard.db"
        sys.path.insert(0, SRC)
        from blockyard.db import Database

        Database(url).migrate()
        results: dict[str, list] = {"fast": [], "core": []}
        for mode in ("fast", "core"):  # warm-up: page cache, .pyc files
            sample(url, mode, args.blocks)
        for _ in range(args.reps):
            for mode in ("fast", "core"):
                results[mode].append(sample(url, mode, args.blocks))
        bare = statistics.median(
            (lambda t: (subprocess.run([sys.executable, "-c", "pass"], check=True), time.perf_counter() - t)[1])(
                time.perf_counter()
            )
            for _ in range(args.reps)
        )
        print(f"run-history work of a {args.blocks}-block run, fresh process each, {args.reps} alternating samples")
        print(f"bare `python -c pass`: median {bare:.3f} s")
        for mode, rows in results.items():
            walls = [r[0] for r in rows]
            inner = [r[1] for r in rows]
            print(f"{mode:5s}: whole process median {statistics.median(walls):.3f} s (min {min(walls):.3f}); "
                  f"import + database work median {statistics.median(inner):.3f} s (min {min(inner):.3f}); "
                  f"imported sqlalchemy: {sorted({r[2] for r in rows})}")


if __name__ == "__main__":
    main()
