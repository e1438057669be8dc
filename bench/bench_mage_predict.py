"""Issue 12: Blockyard's warm serving vs REAL Mage running the predict pipeline per request.

    python bench/bench_mage_predict.py [--n 30] [--mage-python /tmp/magevenv/bin/python] [--no-write]

Run with the project's venv. It orchestrates both sides in one run:

1. In a temp BLOCKYARD_HOME a small XGBoost model (30 rounds, depth 5, 2023-01 of the mirror;
   the same helper as bench_serving.py) is registered as nyc-taxi-duration@champion; its
   booster and DictVectorizer are written to the temp dir (model.ubj, dv.pkl).
2. Mage part (a subprocess under mage-ai's own venv, never a project dependency): a fresh
   Mage project (mage's `init_repo`, its own SQLite database) with the course's shape — a
   `load_model` pipeline (data loader: the booster + DictVectorizer from the files) exposed
   as the `model_settings` global data product, and a `predict` pipeline (GDP block
   `model_settings` -> custom `inference` block predicting the rows in the runtime variable
   `inputs`) with an API trigger. Per request, what Mage's server does for
   `POST /api/pipeline_schedules/{id}/pipeline_runs/{token}` and its scheduler after it:
   `create_and_start_pipeline_run` (the PipelineRun row), `PipelineScheduler.start` (block
   run rows, status running), then each executable block run through `run_block` (Mage's
   block executor: the GDP block checks its pipeline's last run and hands its stored
   variables on; `inference` loads the model and DictVectorizer from Mage's variable store
   and predicts; outputs written back to the store), the run marked completed, and the
   answer read back from the store. All in one process: no HTTP, no scheduler tick (Mage's
   loop polls every few seconds), no process per block run (Mage's job manager spawns one)
   — each omission only makes Mage faster, so the ratio is conservative.
3. Blockyard part: `blockyard serve` (POST /invocations) and `blockyard start --role web`
   (POST /api/runs for block `inference` of the served `predict` pipeline), N sequential
   one-row requests each, same row, same model.

Prints medians/p90 and the ratios; written to bench/RESULTS.md under
'## Issue 12 — served vs Mage's pipeline per request (date)'.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROW = {"PULocationID": 74, "DOLocationID": 75, "trip_distance": 2.5}  # = test_serving_support.ROW

LOADER = '''import pickle

import xgboost as xgb

if 'data_loader' not in globals():
    from mage_ai.data_preparation.decorators import data_loader


@data_loader
def load_model(*args, **kwargs):
    """The champion's booster and DictVectorizer (as the course's load step hands them on)."""
    booster = xgb.Booster()
    booster.load_model(%(model)r)
    with open(%(dv)r, 'rb') as f:
        dv = pickle.load(f)
    return booster, dv
'''

INFERENCE = '''from typing import Dict, List

if 'custom' not in globals():
    from mage_ai.data_preparation.decorators import custom


def combine_features(rows: List[Dict]) -> List[Dict]:
    """The course's combine_features: PU_DO, location IDs as strings."""
    out = []
    for r in rows:
        pu, do = str(r['PULocationID']), str(r['DOLocationID'])
        out.append({'PU_DO': f'{pu}_{do}', 'PULocationID': pu, 'DOLocationID': do,
                    'trip_distance': float(r['trip_distance'])})
    return out


@custom
def inference(model_settings, *args, **kwargs) -> List[float]:
    model, dv = model_settings['load_model']
    X = dv.transform(combine_features(kwargs['inputs']))
    return [float(p) for p in model.inplace_predict(X)]
'''


# ---------------------------------------------------------------- Mage side (mage venv)


def mage_child(workdir: Path, n: int, row: dict) -> dict:
    """Runs under /tmp/magevenv: build the Mage project and time N pipeline runs."""
    repo = workdir / "mage_project"
    os.environ["MAGE_DATA_DIR"] = str(workdir / "mage_data")
    os.environ["MAGE_DATABASE_CONNECTION_URL"] = f"sqlite:///{workdir / 'mage-ai.db'}"
    os.environ["MAGE_REPO_PATH"] = str(repo)
    os.environ.setdefault("DEFAULT_EXECUTOR_TYPE", "local_python")
    import logging

    logging.disable(logging.WARNING)
    from mage_ai.data_preparation.repo_manager import init_repo
    from mage_ai.settings.repo import set_repo_path

    init_repo(str(repo))
    meta = repo / "metadata.yaml"  # no usage statistics: this machine has no network, each would time out
    meta.write_text(meta.read_text().replace("help_improve_mage: true", "help_improve_mage: false"))
    set_repo_path(str(repo))
    from mage_ai.orchestration.db import db_connection
    from mage_ai.orchestration.db.database_manager import database_manager

    db_connection.start_session()
    database_manager.run_migrations()

    from mage_ai.data_preparation.models.block import Block
    from mage_ai.data_preparation.models.global_data_product import GlobalDataProduct
    from mage_ai.data_preparation.models.pipeline import Pipeline
    from mage_ai.data_preparation.models.triggers import ScheduleStatus, ScheduleType
    from mage_ai.orchestration.db.models.schedules import BlockRun, PipelineRun, PipelineSchedule
    from mage_ai.orchestration.pipeline_scheduler_original import PipelineScheduler, run_block
    from mage_ai.orchestration.triggers.global_data_product import fetch_or_create_pipeline_schedule
    from mage_ai.orchestration.triggers.utils import create_and_start_pipeline_run

    load = Pipeline.create("load_model", repo_path=str(repo))
    loader = Block.create("load_model", "data_loader", str(repo), language="python", pipeline=load)
    Path(loader.file_path).write_text(LOADER % {"model": str(workdir / "model.ubj"), "dv": str(workdir / "dv.pkl")})
    gdp = GlobalDataProduct("model_settings", object_type="pipeline", object_uuid="load_model",
                            outdated_after={"seconds": 3600}, settings={"load_model": {}}, repo_path=str(repo))
    gdp.save()
    predict = Pipeline.create("predict", repo_path=str(repo))
    Block.create("model_settings", "global_data_product", str(repo), language="python", pipeline=predict,
                 configuration={"global_data_product": {"uuid": "model_settings"}})
    inference = Block.create("inference", "custom", str(repo), language="python", pipeline=predict,
                             upstream_block_uuids=["model_settings"])
    Path(inference.file_path).write_text(INFERENCE)
    predict = Pipeline.get("predict", repo_path=str(repo))
    schedule = PipelineSchedule.create(name="predict_api", pipeline_uuid="predict", schedule_type=ScheduleType.API,
                                       status=ScheduleStatus.ACTIVE, token="benchtoken", repo_path=str(repo))

    def execute(pipeline, pipeline_schedule, variables: dict) -> PipelineRun:
        """The API trigger's row, then what the scheduler and its block-run jobs do, in process."""
        run = create_and_start_pipeline_run(pipeline, pipeline_schedule, {"variables": variables},
                                            should_schedule=False)
        scheduler = PipelineScheduler(run)
        assert scheduler.start(should_schedule=False), "PipelineScheduler.start failed"
        while True:
            run.refresh()
            todo = run.executable_block_runs()
            if not todo:
                break
            for b in todo:
                b.update(status=BlockRun.BlockRunStatus.QUEUED)
                run_block(run.id, b.id, run.get_variables(), scheduler.build_tags(block_run_id=b.id),
                          block_run_dicts=[dict(block_uuid=br.block_uuid, id=br.id, metrics=br.metrics,
                                                status=br.status) for br in run.block_runs])
        run.refresh()
        statuses = {b.block_uuid: b.status for b in run.block_runs}
        if run.all_blocks_completed() and not run.any_blocks_failed():
            run.complete()
        run.refresh()
        assert run.status == PipelineRun.PipelineRunStatus.COMPLETED, (run.status, statuses)
        return run

    # The GDP's own pipeline runs once (Mage's scheduler would run it when the GDP is outdated).
    execute(gdp.pipeline, fetch_or_create_pipeline_schedule(gdp), {})

    cpu: list[float] = []

    def once() -> tuple[float, float]:
        t, c = time.perf_counter(), time.process_time()
        run = execute(predict, schedule, {"inputs": [row]})
        answer = predict.get_block_variable("inference", "output_0", partition=run.execution_partition)
        took = (time.perf_counter() - t) * 1000
        cpu.append((time.process_time() - c) * 1000)  # what the run costs in CPU, whatever else runs
        return took, float(answer[0] if isinstance(answer, (list, tuple)) else answer)

    once()  # warm-up: imports, first loads
    del cpu[:]
    times, outputs = zip(*(once() for _ in range(n)))
    return {"times": list(times), "cpu": cpu, "output": outputs[0], "outputs_equal": len(set(outputs)) == 1,
            "runs": PipelineRun.query.filter(PipelineRun.pipeline_uuid == "predict").count(),
            "block_runs": BlockRun.query.count(), "mage_version": importlib.metadata.version("mage-ai")}


# ------------------------------------------------------------ Blockyard side (project venv)


def export_champion(workdir: Path) -> None:
    """The registered champion's booster and DictVectorizer as files for Mage's loader."""
    import pickle

    from blockyard.serving.model import load_version
    from test_serving_support import COURSE

    loaded = load_version(COURSE, "nyc-taxi-duration", "champion")
    loaded.model.save_model(str(workdir / "model.ubj"))
    with open(workdir / "dv.pkl", "wb") as f:
        pickle.dump(loaded.dv, f)


def run_mage(python: str, workdir: Path, n: int) -> dict:
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith(("BLOCKYARD_", "PYTHONPATH", "MLFLOW_"))}
    proc = subprocess.run([python, __file__, "--mage-child", str(workdir), str(n), json.dumps(ROW)],
                          env=env, cwd=workdir, capture_output=True, text=True, timeout=1800)
    for line in proc.stdout.splitlines():
        if line.startswith("MAGE_RESULT "):
            return json.loads(line[len("MAGE_RESULT "):])
    raise SystemExit(f"Mage part failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")


def blockyard_side(home: Path, tmp: Path, n: int) -> dict:
    import http.client
    import shutil

    from bench_serving import Proc, request
    from test_server_support import clean_env, free_port
    from test_serving_support import COURSE

    out = {}
    port = free_port()
    serve = Proc(["serve", str(COURSE), "--port", str(port)], clean_env({"BLOCKYARD_HOME": str(home)}),
                 tmp / "serve.log", "/ping", port)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for _ in range(50):  # warm-up
            request("POST", port, "/invocations", {"inputs": [ROW]}, conn)
        times, answers = [], []
        for _ in range(n):
            t = time.perf_counter()
            status, payload = request("POST", port, "/invocations", {"inputs": [ROW]}, conn)
            times.append((time.perf_counter() - t) * 1000)
            assert status == 200, payload[:300]
            answers.append(json.loads(payload)["predictions"][0])
        conn.close()
        out["invocations"] = {"times": times, "output": answers[0]}
    finally:
        serve.stop()
    ws = tmp / "mlops"
    shutil.copytree(COURSE, ws, ignore=shutil.ignore_patterns(".blockyard", "__pycache__"))
    port = free_port()
    env = clean_env({"BLOCKYARD_HOME": str(home), "BLOCKYARD_DATA_MIRROR": os.environ["BLOCKYARD_DATA_MIRROR"]})
    web = Proc(["start", str(ws), "--role", "web", "--port", str(port), "--log-level", "warning"], env,
               tmp / "web.log", "/api/status", port)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        body = {"run": {"pipeline_uuid": "unit_4_triggering/predict", "block_uuid": "inference",
                        "variables": {"inputs": [ROW]}}}
        times, answers, modes = [], [], set()
        for i in range(n + 5):  # 5 warm-up
            t = time.perf_counter()
            status, payload = request("POST", port, "/api/runs", body, conn)
            took = (time.perf_counter() - t) * 1000
            run = json.loads(payload)["run"]
            assert status == 200 and run["status"] == "completed", payload[:500]
            if i >= 5:
                times.append(took)
                answers.append(run["output"][0])
                modes.add(run["mode"])
        out["api_runs"] = {"times": times, "output": answers[0], "modes": sorted(modes)}
    finally:
        web.stop()
    return out


def main() -> None:
    import platform
    import tempfile

    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT / "src"))
    from bench_serving import pct, summary
    from test_serving_support import COURSE, train_and_register

    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--mage-python", default="/tmp/magevenv/bin/python")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("BLOCKYARD_DATA_MIRROR", str(ROOT.parent / "shared" / "data"))
    lines = [f"python {platform.python_version()}, {os.cpu_count()} CPUs, load average before: "
             f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}"]
    with tempfile.TemporaryDirectory(prefix="blockyard-bench-mage-") as tmp_name:
        tmp = Path(tmp_name)
        home = tmp / "home"
        home.mkdir()
        os.environ["BLOCKYARD_HOME"] = str(home)
        os.environ["BLOCKYARD_WORKSPACE"] = str(COURSE)
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        version = train_and_register(COURSE, rounds=30)
        export_champion(tmp)
        lines.append(f"model: XGBoost (30 rounds, depth 5) on 2023-01, nyc-taxi-duration v{version}; "
                     f"the same booster + DictVectorizer on both sides; one row {json.dumps(ROW)}")
        mage = run_mage(args.mage_python, tmp, args.n)
        by = blockyard_side(home, tmp, args.n)
        m = pct(mage["times"], 50)
        inv, api = pct(by["invocations"]["times"], 50), pct(by["api_runs"]["times"], 50)
        diff = max(abs(mage["output"] - by[k]["output"]) for k in ("invocations", "api_runs"))
        lines += [
            f"load average after: {', '.join(f'{v:.1f}' for v in os.getloadavg())}",
            "",
            f"{args.n} sequential one-row requests each:",
            f"  Mage {mage['mage_version']}, predict pipeline run per request (PipelineRun + block runs in "
            f"its SQLite, GDP -> inference, model from its variable store; in process, no HTTP/scheduler)",
            f"                                     {summary(mage['times'])}",
            f"    its CPU time per run (the process, all threads): p50 {pct(mage['cpu'], 50):.2f} ms",
            f"  Blockyard POST /invocations        {summary(by['invocations']['times'])}",
            f"  Blockyard POST /api/runs (mode {'/'.join(by['api_runs']['modes'])}) {summary(by['api_runs']['times'])}",
            f"  Mage rows written: {mage['runs']} predict runs, {mage['block_runs']} block runs (incl. warm-up and GDP)",
            f"  answers: Mage {mage['output']:.6f}, /invocations {by['invocations']['output']:.6f}, "
            f"/api/runs {by['api_runs']['output']:.6f}; max |diff| {diff:.2e} (<= 1e-6: {diff <= 1e-6})",
            f"  median ratio Mage / served: via /invocations {m / inv:.1f}x, via /api/runs {m / api:.1f}x "
            f"(target >= 20x)",
        ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_results(text)


def write_results(text: str) -> None:
    from results_md import replace_section

    import datetime as _dt

    title = f"## Issue 12 — served vs Mage's pipeline per request ({_dt.date.today().isoformat()})"
    section = (
        f"{title}\n\n"
        "`python bench/bench_mage_predict.py` (project venv; the Mage part runs under "
        "`/tmp/magevenv/bin/python`, mage-ai 0.9.80, not a project dependency). Real Mage runs the "
        "course-shaped `predict` pipeline once per request the way its API trigger and scheduler do "
        "(PipelineRun and BlockRun rows in Mage's database, the `model_settings` global data product "
        "handing on the load pipeline's stored booster + DictVectorizer, then `inference`), in one "
        "process with no HTTP, no scheduler tick and no process per block run, all of which would only "
        "slow Mage down. Blockyard answers the same row with the same model over real HTTP.\n\n"
        f"```\n{text}\n```\n\n"
        "Reading it: the Mage figure is a floor for Mage's real API-trigger latency (its server "
        "answers the trigger with the queued run; the scheduler picks it up on its next tick and runs "
        "each block run in a new process). Under cProfile most of a Mage run is its block executor and "
        "repeated project-config reads (`get_repo_config` re-parses metadata.yaml about 20 times per "
        "run), the GDP check, the run/block-run row updates, and loading the booster + DictVectorizer "
        "from the variable store; the prediction itself is well under a millisecond. bench_serving.py's "
        "ratio (11-12x) is against Blockyard's own, much cheaper, pipeline run per request.\n"
    )
    replace_section("## Issue 12 — served vs Mage's pipeline per request (", section)


if __name__ == "__main__":
    if "--mage-child" in sys.argv:
        result = mage_child(Path(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4]))
        print("MAGE_RESULT " + json.dumps(result))
    else:
        main()
