"""Cost of running each worker run in a child process (issue 10, item 2).

    python bench/bench_isolation.py [--runs 40] [--burst 300] [--no-postgres]

- runs/s of a worker (concurrency 2) executing `--runs` queued runs of a two-block
  pipeline: in the worker's own threads (isolation="thread", the old behaviour) beside
  a child process per run started by forkserver (the default), fork and spawn;
- memory: a block holding 400 MB is cancelled; the worker's RSS afterwards, in-thread
  (the memory stays: the thread cannot be stopped) vs child process (freed);
- burst: `--burst` runs enqueued at once from 16 threads and executed in child
  processes: exactly that many completed runs, none twice.

SQLite file, then PostgreSQL (fresh database on 127.0.0.1:5432) unless --no-postgres.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from wsbuilder import block, write_pipeline  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def workspace(tmp: Path) -> Path:
    root = tmp / "ws"
    root.mkdir()
    write_pipeline(root, "bench", "two", [
        block("a", "@custom\ndef a(**kwargs):\n    return 1\n"),
        block("b", "@custom\ndef b(x, **kwargs):\n    return x + 1\n", upstream=["a"]),
    ])
    write_pipeline(root, "bench", "hog", [block("hog", """
        import time
        @custom
        def hog(**kwargs):
            data = bytearray(400 * 1024 * 1024)
            for i in range(0, len(data), 4096):
                data[i] = 1
            while True:
                time.sleep(0.05)
        """)])
    return root


def open_db(url: str):
    from blockyard.db import Database

    db = Database(url)
    db.migrate()
    return db


def drain(worker, db, ids: list[int], timeout: float = 600) -> float:
    stop = threading.Event()
    t0 = time.perf_counter()
    thread = threading.Thread(target=worker.run_forever, args=(stop,))
    thread.start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = [db.get_pipeline_run(i) for i in ids[-1:]] if ids else []
        if all(r["status"] in ("completed", "failed") for r in rows):
            if all(db.get_pipeline_run(i)["status"] in ("completed", "failed") for i in ids):
                break
        time.sleep(0.05)
    elapsed = time.perf_counter() - t0
    stop.set()
    thread.join(60)
    return elapsed


def throughput(url: str, root: Path, n: int, isolation: str, method: str | None) -> float:
    from blockyard.orchestration import runs
    from blockyard.orchestration.worker import Worker
    from blockyard.project import Workspace

    if method:
        os.environ["BLOCKYARD_RUN_START_METHOD"] = method
    db = open_db(url)
    ids = [runs.enqueue_run(db, project="bench", pipeline_uuid="two")["id"] for _ in range(n)]
    worker = Worker(Workspace.open(root), db, concurrency=2, isolation=isolation, poll_interval=0.02)
    elapsed = drain(worker, db, ids)
    done = sum(db.get_pipeline_run(i)["status"] == "completed" for i in ids)
    db.close()
    assert done == n, f"{done} of {n} runs completed"
    return n / elapsed


def memory(url: str, root: Path, isolation: str) -> tuple[float, float, float]:
    from blockyard.orchestration import runs
    from blockyard.orchestration.worker import Worker
    from blockyard.project import Workspace

    db = open_db(url)
    worker = Worker(Workspace.open(root), db, concurrency=1, isolation=isolation, kill_grace=2)
    before = rss_mb()
    run = runs.enqueue_run(db, project="bench", pipeline_uuid="hog")
    worker.run_once()
    time.sleep(4)  # the block allocates and touches 400 MB
    peak = rss_mb()
    runs.request_cancel(db, run["id"])
    worker.check_runs()
    deadline = time.monotonic() + 10
    while worker.active_run_ids and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1)
    after = rss_mb()
    db.close()
    return before, peak, after


def burst(url: str, root: Path, n: int) -> str:
    from blockyard.orchestration import runs
    from blockyard.orchestration.worker import Worker
    from blockyard.project import Workspace

    db = open_db(url)
    key = uuid.uuid4().hex[:8]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        rows = list(pool.map(
            lambda i: runs.enqueue_run(db, project="bench", pipeline_uuid="two", idempotency_key=f"{key}-{i}"),
            range(n),
        ))
    enqueue_s = time.perf_counter() - t0
    ids = sorted({r["id"] for r in rows})
    worker = Worker(Workspace.open(root), db, concurrency=4, poll_interval=0.02)
    elapsed = drain(worker, db, ids, timeout=1800)
    statuses = [db.get_pipeline_run(i)["status"] for i in ids]
    per_block = {}
    for i in ids:
        for b in db.get_block_runs(i):
            per_block[(i, b["block_uuid"])] = b["status"]
    db.close()
    return (
        f"{n} concurrent enqueues -> {len(ids)} distinct runs ({enqueue_s:.2f} s); executed in child processes: "
        f"{statuses.count('completed')} completed, {len(ids) - statuses.count('completed')} not, "
        f"{n / elapsed:.1f} runs/s, {sum(s == 'completed' for s in per_block.values())} completed block runs "
        f"of {2 * n} expected"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--burst", type=int, default=300)
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--memory", choices=["thread", "process"], help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory:  # one measurement in a fresh process (RSS is per process)
        before, peak, after = memory(args.url, Path(args.root), args.memory)
        print(f"  memory {args.memory:7}: worker RSS {before:.0f} MB before, {peak:.0f} MB while the 400 MB block ran, "
              f"{after:.0f} MB after its cancel", flush=True)
        os._exit(0)  # in-thread, the cancelled block's thread never ends: do not wait for it
    for key in [k for k in os.environ if k.startswith("BLOCKYARD_")]:
        if key != "BLOCKYARD_DATA_MIRROR":
            del os.environ[key]
    tmp = Path(tempfile.mkdtemp(prefix="bench-isolation-"))
    root = workspace(tmp)
    targets = [("sqlite", f"sqlite:///{tmp / 'bench.db'}")]
    if not args.no_postgres:
        import sqlalchemy as sa

        name = f"bench_isolation_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.exec_driver_sql(f'CREATE DATABASE "{name}"')
        targets.append(("postgresql", f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"))
    try:
        for label, url in targets:
            print(f"== {label}")
            for isolation, method in (("thread", None), ("process", "forkserver"), ("process", "fork"), ("process", "spawn")):
                rate = throughput(url, root, args.runs, isolation, method)
                print(f"  {isolation:7} {method or '-':10} {rate:6.1f} runs/s ({args.runs} runs of 2 blocks, worker concurrency 2)",
                      flush=True)
            os.environ.pop("BLOCKYARD_RUN_START_METHOD", None)
            if label == "sqlite":
                import subprocess

                for isolation in ("thread", "process"):
                    subprocess.run([sys.executable, __file__, "--memory", isolation, "--url", url, "--root", str(root)])
            if args.burst:
                print("  burst: " + burst(url, root, args.burst))
    finally:
        if not args.no_postgres:
            with admin.connect() as c:
                c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
