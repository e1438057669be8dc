"""`BLOCKYARD_RUN_PRELOAD`: modules the run forkserver imports once, so that every run's
child process starts with them loaded (the course's monitoring backfill preloads
`blockyard.ml.preload`: scikit-learn, MLflow's SQL stores, Evidently)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

TESTS = Path(__file__).resolve().parent

CHILD = """
    import json
    from blockyard.orchestration import isolation

    ctx = isolation._context("forkserver")
    reader, writer = ctx.Pipe(duplex=False)
    from preload_probe import probe
    proc = ctx.Process(target=probe, args=(writer,))
    proc.start()
    print(json.dumps(reader.recv()))
    proc.join()
"""


def _child_modules(preload: str | None) -> str:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS.parent / "src"), str(TESTS)]))
    env.pop("BLOCKYARD_RUN_PRELOAD", None)
    if preload is not None:
        env["BLOCKYARD_RUN_PRELOAD"] = preload
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(CHILD)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def test_preload_list_from_the_environment(monkeypatch):
    from blockyard.orchestration import isolation

    monkeypatch.setenv("BLOCKYARD_RUN_PRELOAD", " blockyard.ml.preload, ,pandas")
    modules = isolation.preload_modules()
    assert modules[: len(isolation.PRELOAD)] == isolation.PRELOAD
    assert modules[len(isolation.PRELOAD):] == ["blockyard.ml.preload"]  # pandas is there already
    monkeypatch.delenv("BLOCKYARD_RUN_PRELOAD")
    assert isolation.preload_modules() == isolation.PRELOAD


def test_a_run_child_starts_with_the_preloaded_libraries():
    assert _child_modules(None) == "[]"
    assert _child_modules("blockyard.ml.preload") == (
        '["evidently", "mlflow.store.tracking.sqlalchemy_store", "sklearn.linear_model"]')
