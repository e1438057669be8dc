"""Orchestration overhead, dynamic fan-out and start-up, measured side by side.

    python bench/bench_engine.py [--quick]

- 1,000-block chain and 1,000-block fan-out of no-op blocks through
  `blockyard.run_pipeline` (run history recorded in SQLite, every output
  persisted), beside the same functions called directly: overhead per block.
- A dynamic block fanning out to 10,000 children, reduced by one block.
- `blockyard run` of a two-block pipeline as a whole process from the shell,
  beside `python -c pass`, and of the 1,000-block chain (the slope between the two
  is the whole-process cost per block); then again with the page cache dropped before each run
  (when run as root), so every imported file is read from disk.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from wsbuilder import block, write_pipeline  # noqa: E402

NOOP = """
@custom
def f(*args, **kwargs):
    return None
"""


def chain(root: Path, n: int) -> None:
    blocks = [block(f"b{i:04d}", NOOP, upstream=[f"b{i-1:04d}"] if i else []) for i in range(n)]
    write_pipeline(root, "bench", "chain", blocks)


def fan_out(root: Path, n: int) -> None:
    blocks = [block("root", NOOP)] + [block(f"c{i:04d}", NOOP, upstream=["root"]) for i in range(n - 1)]
    write_pipeline(root, "bench", "fanout", blocks)


def dynamic(root: Path, n: int) -> None:
    write_pipeline(root, "bench", "dynamic", [
        block("items", f"""
            @custom
            def items():
                return list(range({n}))
            """, config={"dynamic": True}),
        block("child", """
            @custom
            def child(i):
                return i
            """, upstream=["items"], config={"reduce_output": True}),
        block("total", """
            @custom
            def total(values):
                return len(values)
            """, upstream=["child"]),
    ])


def two_blocks(root: Path) -> None:
    write_pipeline(root, "bench", "two", [
        block("a", "@data_loader\ndef a():\n    return 1\n", type="data_loader"),
        block("b", "@transformer\ndef b(x):\n    return x + 1\n", type="transformer", upstream=["a"]),
    ])


def direct_calls(n: int) -> float:
    ns: dict = {"custom": lambda f: f}
    exec(NOOP, ns)
    fn = ns["f"]
    t = time.perf_counter()
    out = None
    for _ in range(n):
        out = fn(out)
    return time.perf_counter() - t


def timed_run(root: Path, name: str) -> float:
    import blockyard

    t = time.perf_counter()
    result = blockyard.run_pipeline(name, workspace=root, use_cache=False)
    elapsed = time.perf_counter() - t
    assert result.ok, result.error
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--no-cold", action="store_true",
                    help="skip the runs with the page cache dropped (it slows everyone on a shared machine)")
    args = ap.parse_args()
    reps = 3 if args.quick else 5
    n = 1000
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ws"
        root.mkdir()
        os.environ.pop("BLOCKYARD_DATABASE_URL", None)
        os.environ.pop("BLOCKYARD_HOME", None)
        chain(root, n)
        fan_out(root, n)
        dynamic(root, 10_000)
        two_blocks(root)
        # block files changed within the last 2 s are re-read on every run (file_stamps.settled:
        # a coarse filesystem clock could hide a rewrite): measure files as a user's are, settled
        time.sleep(2.1)
        timed_run(root, "bench/chain")  # warm-up: imports, migrations, page cache
        direct = statistics.median(direct_calls(n) for _ in range(reps))
        chain_t = statistics.median(timed_run(root, "bench/chain") for _ in range(reps))
        fan_t = statistics.median(timed_run(root, "bench/fanout") for _ in range(reps))
        dyn_t = statistics.median(timed_run(root, "bench/dynamic") for _ in range(max(1, reps // 2)))
        print(f"direct calls of {n} no-op functions: {direct * 1e3:.2f} ms total")
        print(f"1,000-block chain:   {chain_t:.3f} s -> {(chain_t - direct) / n * 1e3:.3f} ms per block overhead (target <= 0.35 ms)")
        print(f"1,000-block fan-out: {fan_t:.3f} s -> {(fan_t - direct) / n * 1e3:.3f} ms per block overhead")
        print(f"dynamic fan-out to 10,000 children: {dyn_t:.3f} s (target <= 10 s)")

        exe = Path(sys.executable).parent / "blockyard"
        env = {k: v for k, v in os.environ.items() if not k.startswith("BLOCKYARD_")}
        env["BLOCKYARD_WORKSPACE"] = str(root)

        def wall(cmd: list[str]) -> float:
            t = time.perf_counter()
            subprocess.run(cmd, env=env, check=True, capture_output=True)
            return time.perf_counter() - t

        wall([str(exe), "run", "bench/two", "-q", "--no-cache"])
        startup = statistics.median(
            wall([str(exe), "run", "bench/two", "-q", "--no-cache"]) for _ in range(reps + 2)
        )
        python = statistics.median(wall([sys.executable, "-c", "pass"]) for _ in range(reps + 2))
        print(f"`blockyard run` two-block pipeline, whole process: {startup:.3f} s "
              f"(bare `python -c pass`: {python:.3f} s; target <= 0.2 s)")
        whole_chain = statistics.median(
            wall([str(exe), "run", "bench/chain", "-q", "--no-cache"]) for _ in range(reps)
        )
        print(f"`blockyard run` 1,000-block chain, whole process: {whole_chain:.3f} s -> slope over the "
              f"two-block run {(whole_chain - startup) / (n - 2) * 1e3:.3f} ms per block (target <= 0.6 ms)")
        cold = [] if args.no_cold else cold_startups(lambda: wall([str(exe), "run", "bench/two", "-q", "--no-cache"]), reps)
        if cold:
            print(f"`blockyard run` two-block pipeline with the page cache dropped before each run: "
                  f"median {statistics.median(cold):.3f} s, worst {max(cold):.3f} s (target <= 0.5 s)")
        else:
            print("(cold start-up not measured: dropping the page cache needs root)")


def cold_startups(run, n: int) -> list[float]:
    """Start-up with nothing in the page cache (every file read from disk), as after the
    VM's memory reclaim; needs root for /proc/sys/vm/drop_caches."""
    times = []
    for _ in range(n):
        os.sync()
        try:
            with open("/proc/sys/vm/drop_caches", "w") as fh:
                fh.write("3\n")
        except OSError:
            return []
        times.append(run())
    return times


if __name__ == "__main__":
    main()
