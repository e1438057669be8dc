"""The engine's overhead, this checkout beside an earlier commit, in one run.

    python bench/bench_engine_versions.py --ref 8dcb755 [--rounds 5]

For each version (this checkout's src/ and `git archive REF src`, both byte-compiled),
in alternating fresh processes, round after round:
- in process: the 1,000-block chain and the 1,000-block fan-out of no-op blocks through
  `blockyard.run_pipeline` (history in SQLite, outputs persisted, `use_cache=False`),
  median of 3 runs after one warm-up, as ms per block;
- whole process: `blockyard run` of a two-block pipeline and of the 1,000-block chain
  from the shell (the slope between the two is the whole-process cost per block).
Each version has its own workspace (same pipelines) on the same disk. Medians over the
rounds are printed side by side with their ratio.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from bench_engine import chain, fan_out, two_blocks  # noqa: E402

IN_PROCESS = r"""
import os, statistics, sys, time
os.environ.pop("BLOCKYARD_DATABASE_URL", None)
import blockyard.api as api
from pathlib import Path
root = Path(sys.argv[1])
out = []
for name in ("bench/chain", "bench/fanout"):
    api.run_pipeline(name, workspace=root, use_cache=False)
    ts = []
    for _ in range(3):
        t = time.perf_counter()
        r = api.run_pipeline(name, workspace=root, use_cache=False)
        ts.append(time.perf_counter() - t)
        assert r.ok, r.error
    out.append(statistics.median(ts))
print(" ".join(f"{x:.6f}" for x in out))
"""


def export(ref: str, into: Path) -> Path:
    repo = HERE.parent
    archive = subprocess.run(["git", "-C", str(repo), "archive", ref, "src"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into / "src"


def compile_tree(src: Path) -> None:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(src)], env=env, check=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref", required=True, help="the earlier commit (e.g. 8dcb755)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    exe = Path(sys.executable).parent / "blockyard"
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        versions = {"this checkout": HERE.parent / "src", args.ref: export(args.ref, tmp_path)}
        spaces = {}
        for i, (label, src) in enumerate(versions.items()):
            compile_tree(src)
            root = tmp_path / f"ws{i}"
            root.mkdir()
            chain(root, 1000)
            fan_out(root, 1000)
            two_blocks(root)
            spaces[label] = root
        # Each version's own command-line entry: the installed `blockyard` script names the
        # newest one (cli_entry), which an older src/ may not have.
        entry = {
            label: [str(exe)] if (src / "blockyard" / "cli_entry.py").exists()
            else [sys.executable, "-c", "import sys; from blockyard.cli import main; sys.exit(main())"]
            for label, src in versions.items()
        }
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("BLOCKYARD_")}
        base_env.pop("PYTHONDONTWRITEBYTECODE", None)
        results: dict[str, dict[str, list[float]]] = {v: {} for v in versions}

        def record(label: str, what: str, value: float) -> None:
            results[label].setdefault(what, []).append(value)

        for rnd in range(args.rounds):
            for label, src in versions.items():
                env = dict(base_env, PYTHONPATH=str(src), BLOCKYARD_WORKSPACE=str(spaces[label]))
                done = subprocess.run([sys.executable, "-c", IN_PROCESS, str(spaces[label])], env=env,
                                      check=True, capture_output=True, text=True)
                chain_s, fan_s = (float(x) for x in done.stdout.split())
                record(label, "chain", chain_s)
                record(label, "fanout", fan_s)

                cli = entry[label]

                def wall(name: str) -> float:
                    t = time.perf_counter()
                    subprocess.run([*cli, "run", name, "-q", "--no-cache"], env=env, check=True,
                                   capture_output=True)
                    return time.perf_counter() - t

                if rnd == 0:
                    wall("bench/two")  # first run of the version: caches, page cache
                    wall("bench/chain")
                two = statistics.median(wall("bench/two") for _ in range(3))
                whole = wall("bench/chain")
                record(label, "two", two)
                record(label, "slope", (whole - two) / 998)
            print(f"round {rnd + 1}/{args.rounds} done", file=sys.stderr)
        rows = [
            # seconds for 1,000 blocks read as ms per block
            ("1,000-block chain, in process, ms per block", "chain", 1.0),
            ("1,000-block fan-out, in process, ms per block", "fanout", 1.0),
            ("`blockyard run` two blocks, whole process, s", "two", 1.0),
            ("whole-process chain slope, ms per block", "slope", 1e3),
        ]
        labels = list(versions)
        print(f"| what | {labels[0]} | {labels[1]} | ratio |")
        print("|---|---|---|---|")
        for title, key, scale in rows:
            a, b = (statistics.median(results[v][key]) for v in labels)
            print(f"| {title} | {a * scale:.3f} | {b * scale:.3f} | {a / b:.2f}x |")
        print(f"(medians of {args.rounds} rounds, versions alternating in fresh processes)")
        shutil.rmtree(tmp_path / "src", ignore_errors=True)


if __name__ == "__main__":
    main()
