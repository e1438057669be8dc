"""Soak: random kill -9 of worker and CLI processes (issue 10).

    python bench/soak_kill.py [--worker-kills 10] [--cli-kills 4] [--runs 10] [--no-postgres]

Per database (SQLite file, then a fresh PostgreSQL database):
- worker: `--runs` queued runs of a 4-block chain; a worker process is started and
  killed with -9 at a random moment once it executes blocks, `--worker-kills` times;
  then a last worker drains the queue;
- CLI: `blockyard run` of the chain killed with -9 at a random moment, `--cli-kills`
  times; the (in-process) worker's recovery must fail each killed run, then the run is
  repeated to completion.
Each block, as it starts, looks in the database for a *completed* run of itself for the
same job: finding one means a completed block was executed again (a violation). At
the end: runs lost (not completed), runs stuck (running/queued), violations, and
outputs checked against their digests.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from wsbuilder import block, write_pipeline  # noqa: E402

BLOCK = """
import random, time
import sqlalchemy as sa
from pathlib import Path
@custom
def {name}(*args, **kwargs):
    job = kwargs['job']
    url = Path({url_file!r}).read_text()
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        again = conn.execute(sa.text(
            "SELECT count(*) FROM block_runs b JOIN pipeline_runs p ON p.id = b.pipeline_run_id "
            "WHERE b.block_uuid = :b AND b.status = 'completed' AND p.project = 'soak' "
            "AND p.pipeline_uuid = 'chain' AND CAST(p.variables AS TEXT) LIKE :job"), {{"b": {name!r}, "job": '%"job": ' + str(job) + '}}%'}}).scalar()
    engine.dispose()
    marks = Path({marks!r})
    if again:
        with open(marks / "violations", "a") as f:
            f.write(f"{{job}} {name}\\n")
    with open(marks / "executions", "a") as f:
        f.write(f"{{job}} {name}\\n")
    time.sleep(random.uniform(0.1, 0.5))
    return sum(a for a in args if isinstance(a, int)) + 1
"""

WORKER = """
import sys
from blockyard.db import Database
from blockyard.orchestration.worker import Worker
from blockyard.project import Workspace
Worker(Workspace.open(sys.argv[2]), Database(sys.argv[1]), concurrency=2, lease_seconds=20,
       poll_interval=0.05, max_resumes=1000).run_forever()
"""


def build(root: Path, url_file: Path, marks: Path) -> None:
    names = ["b1", "b2", "b3", "b4"]
    blocks = [
        block(n, BLOCK.format(name=n, url_file=str(url_file), marks=str(marks)), upstream=[names[i - 1]] if i else [])
        for i, n in enumerate(names)
    ]
    write_pipeline(root, "soak", "chain", blocks)


def clean_env(url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLOCKYARD_")}
    env["BLOCKYARD_DATABASE_URL"] = url
    env["BLOCKYARD_RUN_HEARTBEAT_SECONDS"] = "1"
    return env


def executions(marks: Path) -> int:
    p = marks / "executions"
    return len(p.read_text().splitlines()) if p.exists() else 0


def soak(label: str, url: str, args, rng: random.Random) -> dict:
    from blockyard.db import Database
    from blockyard.session import Session
    from blockyard.orchestration import runs
    from blockyard.orchestration.worker import Worker
    from blockyard.project import Workspace

    tmp = Path(tempfile.mkdtemp(prefix=f"soak-{label}-"))
    root, marks = tmp / "ws", tmp / "marks"
    root.mkdir()
    marks.mkdir()
    url_file = tmp / "url"
    url_file.write_text(url)
    build(root, url_file, marks)
    db = Database(url)
    db.migrate()
    env = clean_env(url)
    ids = [runs.enqueue_run(db, project="soak", pipeline_uuid="chain", variables={"job": j})["id"] for j in range(args.runs)]
    kills = {"worker": 0, "cli": 0}
    for _ in range(args.worker_kills):
        proc = subprocess.Popen([sys.executable, "-c", WORKER, url, str(root)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seen = executions(marks)
        deadline = time.monotonic() + 60
        while executions(marks) == seen and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        kills["worker"] += 1
        if all(db.get_pipeline_run(i)["status"] == "completed" for i in ids):
            break
    # CLI runs: kill, let the worker's recovery fail them, run again to completion.
    worker = Worker(Workspace.open(root), db, concurrency=1, max_resumes=1000)  # as the killed workers
    cli_failed = 0
    for k in range(args.cli_kills):
        job = 1000 + k
        cmd = [str(Path(sys.executable).parent / "blockyard"), "-w", str(root), "run", "soak/chain", "--var", f"job={job}"]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seen = executions(marks)
        deadline = time.monotonic() + 60
        while executions(marks) == seen and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        kills["cli"] += 1
        cli_failed += len(worker.recover()["failed"])
        # A new run executes every block (Mage semantics); `--cache` reuses what the
        # killed run completed (its cache keys are recorded with each completed block).
        done = subprocess.run([*cmd, "--cache"], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    # Drain: a worker that is not killed finishes every queued run.
    proc = subprocess.Popen([sys.executable, "-c", WORKER, url, str(root)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if all(db.get_pipeline_run(i)["status"] in ("completed", "failed") for i in ids):
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    worker.recover()
    rows = db.list_pipeline_runs(project="soak", limit=None)
    stuck = [r["id"] for r in rows if r["status"] in ("running", "queued")]
    lost = [i for i in ids if db.get_pipeline_run(i)["status"] != "completed"]
    store = Session(Workspace.open(root)).store
    intact = bad = 0
    for r in rows:
        if r["status"] != "completed":
            continue
        for b in db.get_block_runs(r["id"]):
            if b["status"] == "completed" and b.get("output_ref"):
                run_id, node = b["output_ref"].split("/", 1)
                try:
                    store.verify_outputs(int(run_id), node)
                    intact += 1
                except Exception:
                    bad += 1
        if int(store.load_output(*_ref(db, r["id"], "b4"), 0)) != 4:
            bad += 1
    violations = (marks / "violations").read_text().splitlines() if (marks / "violations").exists() else []
    resumed = sum(int(db.get_pipeline_run(i)["resume_count"] or 0) for i in ids)
    db.close()
    return {
        "label": label, "kills": kills, "runs": len(ids), "lost": len(lost), "stuck": len(stuck),
        "violations": len(violations), "cli_runs_failed_by_recovery": cli_failed, "resumes": resumed,
        "outputs_checked": intact, "outputs_bad": bad, "executions": executions(marks),
    }


def _ref(db, run_id: int, block_uuid: str) -> tuple[int, str]:
    ref = db.get_block_run(run_id, block_uuid)["output_ref"]
    a, b = ref.split("/", 1)
    return int(a), b


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker-kills", type=int, default=10)
    ap.add_argument("--cli-kills", type=int, default=4)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=10)
    ap.add_argument("--no-postgres", action="store_true")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    targets = [("sqlite", f"sqlite:///{tempfile.mkdtemp(prefix='soak-db-')}/soak.db")]
    admin = name = None
    if not args.no_postgres:
        import sqlalchemy as sa

        name = f"soak_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.exec_driver_sql(f'CREATE DATABASE "{name}"')
        targets.append(("postgresql", f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"))
    try:
        for label, url in targets:
            print(soak(label, url, args, rng), flush=True)
    finally:
        if admin is not None:
            with admin.connect() as c:
                c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
