"""Server time of the UI's pages: a 200-block pipeline and the runs list over 100,000 runs.

    python bench/bench_ui.py [--blocks 200] [--runs 100000] [--repeat 30] [--no-write]

In-process (FastAPI TestClient over the app with the UI mounted, SQLite file), so the
figures are the server's time per request (routing, handlers, database, JSON), not the
network's or the browser's. For each page, the requests the page makes when it loads are
timed one after another and summed; median and p95 over `--repeat` loads.

- pipeline page: the HTML, GET /api/projects/{p}/pipelines/{x} (200 blocks),
  GET /ui-api/pipelines/{p}/{x}/state (the last block run of each of the 200 blocks, over
  a history of 20 runs x 200 block runs), and GET .../code/{block} for the first 12
  blocks (the editors a page opens at once; bigger pipelines open editors on demand);
- runs list: GET /api/runs?limit=50 over 100,000 runs inserted directly into SQLite
  (first page, a page at offset 50,000, filtered by pipeline and by status), plus the
  overview and the dashboard queries over the same history.

- Files page over a workspace of 2,000 files (besides the pipelines): the HTML and the
  root folder's listing, then expanding a folder of 1,000 files, then opening a file in
  the editor (the tree loads one folder per request).

Target: <= 200 ms per page. Figures are written to bench/RESULTS.md under '## UI (date)'.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from wsbuilder import block, write_pipeline  # noqa: E402

CODE = """
@transformer
def t(*args, **kwargs):
    return 1
"""


def build(tmp: Path, n_blocks: int) -> Path:
    root = tmp / "ws"
    blocks = []
    for i in range(n_blocks):
        ups = [] if i == 0 else sorted({f"b{(i - 1) // 2:03d}", f"b{max(0, i - 3):03d}"})
        blocks.append(block(f"b{i:03d}", CODE, type="data_loader" if i == 0 else "transformer", upstream=ups if i else None))
    write_pipeline(root, "proj", "big", blocks)
    # 2,000 more files for the Files page: 1,000 in one folder, 1,000 over 20 folders
    (root / "data" / "flat").mkdir(parents=True)
    for i in range(1000):
        (root / "data" / "flat" / f"part_{i:04d}.csv").write_text("a,b\n1,2\n")
    for d in range(20):
        sub = root / "utils" / f"pkg_{d:02d}"
        sub.mkdir(parents=True)
        for i in range(50):
            (sub / f"mod_{i:02d}.py").write_text("def f():\n    return 1\n")
    for k in range(5):
        write_pipeline(root, "proj", f"small_{k}", [block("load", CODE, type="data_loader")])
    return root


def fill_history(db, n_runs: int, n_blocks: int) -> None:
    """n_runs pipeline runs spread over 60 days (20 of them with a block run per block)."""
    import sqlalchemy as sa

    from blockyard.db.schema import block_runs, pipeline_runs

    rnd = random.Random(7)
    now = _dt.datetime.now(_dt.timezone.utc)
    pipes = ["big"] + [f"small_{k}" for k in range(5)]
    statuses = ["completed"] * 8 + ["failed", "cancelled"]
    rows = []
    for i in range(n_runs):
        created = now - _dt.timedelta(seconds=(n_runs - i) * (60 * 86400 / n_runs))
        st = rnd.choice(statuses)
        rows.append({"project": "proj", "pipeline_uuid": rnd.choice(pipes), "status": st, "variables": {},
                     "created_at": created, "started_at": created, "completed_at": created + _dt.timedelta(seconds=rnd.random() * 30),
                     "block_count": 1, "error": "boom" if st == "failed" else None})
    with db.engine.begin() as conn:
        for k in range(0, len(rows), 5000):
            conn.execute(pipeline_runs.insert(), rows[k:k + 5000])
        for _ in range(20):
            created = now - _dt.timedelta(minutes=5)
            rid = conn.execute(pipeline_runs.insert().values(project="proj", pipeline_uuid="big", status="completed", variables={},
                                                             created_at=created, started_at=created, completed_at=created,
                                                             block_count=n_blocks)).inserted_primary_key[0]
            conn.execute(block_runs.insert(), [
                {"pipeline_run_id": rid, "block_uuid": f"b{i:03d}", "status": "completed", "attempts": 1,
                 "started_at": created, "completed_at": created, "cache_hit": False,
                 "output_ref": f"{rid}/b{i:03d}", "tests": [{"name": "t", "passed": True, "error": None}]}
                for i in range(n_blocks)])
    del sa


def timed(client, requests: list[str]) -> float:
    start = time.perf_counter()
    for url in requests:
        r = client.get(url)
        assert r.status_code == 200, (url, r.status_code, r.text[:300])
    return (time.perf_counter() - start) * 1000


def measure(client, name: str, requests: list[str], repeat: int) -> str:
    timed(client, requests)  # warm
    times = sorted(timed(client, requests) for _ in range(repeat))
    med = statistics.median(times)
    p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
    return f"{name:<58} {len(requests):>3} req  median {med:7.1f} ms  p95 {p95:7.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=200)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    from fastapi.testclient import TestClient

    from blockyard.server.app import create_app
    from blockyard.ui import mount

    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp:
        os.environ.pop("BLOCKYARD_DATABASE_URL", None)
        root = build(Path(tmp), args.blocks)
        app = mount(create_app(root))
        st = app.state.blockyard
        t0 = time.perf_counter()
        fill_history(st.db, args.runs, args.blocks)
        fill_s = time.perf_counter() - t0
        client = TestClient(app)
        code = [f"/api/projects/proj/pipelines/big/code/b{i:03d}" for i in range(12)]
        lines = [
            f"{args.blocks}-block pipeline, {args.runs:,} runs in SQLite (inserted in {fill_s:.1f} s); "
            f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, "
            f"load average {os.getloadavg()[0]:.1f} at the start",
            "",
            measure(client, f"pipeline page ({args.blocks} blocks): html + spec + states",
                    ["/pipelines/proj/big", "/api/projects/proj/pipelines/big", "/ui-api/pipelines/proj/big/state"], args.repeat),
            measure(client, "  + open one block's editor (GET .../code/b000)", [code[0]], args.repeat),
            measure(client, "  12 editors at once (what a page of <= 12 blocks opens)", code, args.repeat),
            measure(client, "  GET /api/projects/proj/pipelines/big", ["/api/projects/proj/pipelines/big"], args.repeat),
            measure(client, "  GET /ui-api/pipelines/proj/big/state", ["/ui-api/pipelines/proj/big/state"], args.repeat),
            measure(client, "Files page (2,000-file workspace): html + root folder", ["/files", "/ui-api/files/list"], args.repeat),
            measure(client, "  expand a folder of 1,000 files", ["/ui-api/files/list?path=data/flat"], args.repeat),
            measure(client, "  open a file in the editor", ["/ui-api/files/content?path=utils/pkg_07/mod_33.py"], args.repeat),
            measure(client, f"runs list, first page ({args.runs:,} runs)", ["/runs", "/api/runs?limit=50"], args.repeat),
            measure(client, "runs list, page at offset 50,000", [f"/api/runs?limit=50&offset={args.runs // 2}"], args.repeat),
            measure(client, "runs list filtered by pipeline", ["/api/runs?limit=50&pipeline=proj/small_3"], args.repeat),
            measure(client, "runs list filtered by status=failed", ["/api/runs?limit=50&status=failed"], args.repeat),
            measure(client, "overview (/ui-api/overview)", ["/ui-api/overview"], args.repeat),
            measure(client, "dashboard, 30 days (/ui-api/dashboard)", ["/ui-api/dashboard?days=30"], max(5, args.repeat // 3)),
        ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_results(text)
    return 0


def write_results(text: str) -> None:
    from results_md import replace_section

    today = _dt.date.today().isoformat()
    section = (
        f"## UI ({today})\n\n"
        "`python bench/bench_ui.py`: server time of the web UI's page loads, in process (FastAPI "
        "TestClient, SQLite file): the requests a page makes when it opens, one after another, "
        "summed. Target: 200 ms per page.\n\n"
        f"```\n{text}\n```\n"
    )
    replace_section("## UI (", section)


if __name__ == "__main__":
    sys.exit(main())
