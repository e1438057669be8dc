"""The `blockyard` command, run as a real process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wsbuilder import block, write_pipeline

BIN = Path(sys.executable).parent / "blockyard"


def cli(*args, cwd=None, env=None, check=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("BLOCKYARD_")}
    e.update(env or {})
    e["COLUMNS"] = "200"
    proc = subprocess.run(
        [str(BIN), *args], cwd=cwd, env=e, capture_output=True, text=True, timeout=120
    )
    if check is not None:
        assert proc.returncode == check, proc.stdout + proc.stderr
    return proc


@pytest.fixture
def ws(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    write_pipeline(root, "p", "pipe", [
        block("load", """
            @data_loader
            def load(**kwargs):
                print('loading', kwargs.get('n', 2))
                return kwargs.get('n', 2)
            """, type="data_loader"),
        block("square", """
            @transformer
            def square(x, **kwargs):
                return x * x
            @test
            def test_positive(v, *args):
                assert v > 0, 'must be positive'
            @test
            def test_small(v, *args):
                assert v < 100, f'{v} is too big'
            """, type="transformer", upstream=["load"]),
    ])
    return root


def test_import_and_help_stay_light():
    code = (
        "import sys, blockyard, blockyard.cli\n"
        "heavy = [m for m in ('pandas', 'sklearn', 'mlflow', 'xgboost', 'sqlalchemy', 'pyarrow') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    helped = cli("--help", check=0)
    assert "run" in helped.stdout and "logs" in helped.stdout


def test_run_exit_codes_vars_and_cache(ws):
    ok = cli("run", "p/pipe", "--var", "n=3", cwd=ws, check=0)
    assert "completed" in ok.stdout
    rerun = cli("run", "pipe", "--vars-json", '{"n": 3}', cwd=ws, check=0)
    assert "cached" not in rerun.stdout  # every block runs on every run (Mage)
    again = cli("run", "pipe", "--vars-json", '{"n": 3}', "--cache", cwd=ws, check=0)
    assert "2 cached" in again.stdout and "cached, skipped" in again.stdout
    both = cli("run", "pipe", "--cache", "--no-cache", cwd=ws, check=1)
    assert "--cache" in both.stderr
    bad = cli("run", "p/pipe", "--var", "n=20", cwd=ws, check=1)
    assert "test_small" in bad.stderr and "400 is too big" in bad.stderr
    unknown = cli("run", "nope", cwd=ws, check=1)
    assert "nope" in unknown.stderr and "p/pipe" in unknown.stderr


def test_run_shows_a_waiting_sensor_with_its_poll_count(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    polls = tmp_path / "polls.txt"
    write_pipeline(root, "p", "sensed", [
        block("wait", f"""
            from pathlib import Path
            @sensor
            def wait(**kwargs):
                p = Path({str(polls)!r})
                n = int(p.read_text()) + 1 if p.exists() else 1
                p.write_text(str(n))
                return n >= 3
            """, type="sensor", config={"poke_interval": 0.1}),
        block("after", "@custom\ndef after(*args, **kwargs):\n    return 1\n", upstream=["wait"]),
    ])
    out = cli("run", "p/sensed", cwd=root, check=0)
    lines = out.stdout.splitlines()
    waiting = [ln for ln in lines if ln.startswith("wait  waiting")]
    assert [w.split("  ")[2].split(":")[0] for w in waiting] == ["poll 1", "poll 2"], out.stdout
    assert lines.index(waiting[-1]) < next(i for i, ln in enumerate(lines) if ln.startswith("after  completed"))


def test_single_block_and_from_block(ws):
    cli("run", "p/pipe", cwd=ws, check=0)
    only = cli("run", "p/pipe", "--block", "square", "--no-cache", "-q", cwd=ws, check=0)
    assert "1 block run" in only.stdout
    frm = cli("run", "p/pipe", "--from-block", "load", "--no-cache", "-q", cwd=ws, check=0)
    assert "2 block run" in frm.stdout


def test_test_command_reports_per_block(ws):
    out = cli("test", "p/pipe", cwd=ws, check=0)
    assert "square: 2/2 passed" in out.stdout
    failing = cli("test", "p/pipe", "--var", "n=-11", cwd=ws, check=1)
    assert "square: 1/2 passed" in failing.stdout
    assert "test_small" in failing.stdout


def test_runs_and_logs(ws):
    cli("run", "p/pipe", "--var", "n=4", "-q", cwd=ws, check=0)
    listing = cli("runs", cwd=ws, check=0)
    assert "p/pipe" in listing.stdout and "completed" in listing.stdout
    rows = [json.loads(line) for line in cli("runs", "--json", cwd=ws, check=0).stdout.splitlines()]
    assert rows[0]["pipeline_uuid"] == "pipe" and rows[0]["status"] == "completed"
    run_id = str(rows[0]["id"])
    logs = cli("logs", run_id, cwd=ws, check=0)
    assert "loading 4" in logs.stdout and "==> square" in logs.stdout
    only = cli("logs", run_id, "--block", "load", cwd=ws, check=0)
    assert "==> square" not in only.stdout
    missing = cli("logs", "999999", cwd=ws, check=1)
    assert "no pipeline run 999999" in missing.stderr


def test_clean_removes_old_runs(ws):
    cli("run", "p/pipe", "-q", cwd=ws, check=0)
    kept = cli("clean", "--older-than", "30d", cwd=ws, check=0)
    assert "removed 0 run(s)" in kept.stdout
    removed = cli("clean", "--older-than", "0s", cwd=ws, check=0)
    assert "removed 1 run(s)" in removed.stdout
    assert not any((ws / ".blockyard" / "outputs" / "runs").glob("*"))
    bad = cli("clean", "--older-than", "soon", cwd=ws, check=1)
    assert "30d" in bad.stderr


def test_init_new_and_run_scaffold(tmp_path):
    root = tmp_path / "fresh"
    cli("init", str(root), "--project", "demo", check=0)
    cli("run", "demo/example", "-q", cwd=root, check=0)
    cli("new", "pipeline", "demo/second", cwd=root, check=0)
    cli("new", "block", "demo/second", "data_loader", "source", cwd=root, check=0)
    cli("new", "block", "demo/second", "transformer", "step", "-u", "source", cwd=root, check=0)
    cli("new", "block", "demo/second", "data_exporter", "sink", "-u", "step", cwd=root, check=0)
    out = cli("run", "demo/second", "-q", cwd=root, check=0)
    assert "3 block run" in out.stdout
    dup = cli("new", "block", "demo/second", "transformer", "step", cwd=root, check=1)
    assert "step" in dup.stderr
    cli("new", "project", "other", cwd=root, check=0)
    listed = cli("pipelines", cwd=root, check=0)
    assert "demo/second" in listed.stdout and "other" in listed.stdout


def test_run_is_parsed_alone_with_the_same_options(ws, tmp_path):
    """`blockyard run` goes to its own light parser (start-up); options, help, the
    workspace flag in every form and bad input behave as the full app's would."""
    from blockyard.cli_entry import split_command

    assert split_command(["-w", "run", "runs"]) == ("run", "runs", [])  # "run" is the workspace there
    assert split_command(["--workspace", "x", "run", "p", "-q"]) == ("x", "run", ["p", "-q"])
    assert split_command(["--workspace=x", "run"]) == ("x", "run", [])
    assert split_command(["-wx", "run", "p"]) == ("x", "run", ["p"])
    assert split_command(["--help"]) == (None, None, []) and split_command(["-w"]) == (None, None, [])
    quiet = cli("-w", str(ws), "run", "p/pipe", "-q", cwd=tmp_path, check=0)
    assert quiet.stdout.startswith("run ") and "completed — p/pipe, 2 block run(s)" in quiet.stdout
    failed = cli("--workspace", str(ws), "run", "p/pipe", "-q", "--var", "n=20", cwd=tmp_path, check=1)
    assert "failed" in failed.stdout and "400 is too big" in failed.stderr
    helped = cli("run", "--help", cwd=ws, check=0)
    assert "--from-block" in helped.stdout and "--quiet" in helped.stdout
    bad = cli("run", "p/pipe", "--nope", cwd=ws, check=2)
    assert "--nope" in bad.stderr and "usage: blockyard run" in bad.stderr
    assert "runs" in cli("--help", cwd=ws, check=0).stdout  # the full app otherwise
    assert "Run a pipeline" in cli("--help", cwd=ws, check=0).stdout  # and it lists `run`


def test_run_start_up_skips_typer_and_yaml(ws):
    """A repeated `blockyard run` imports neither Typer nor PyYAML: the parse of every YAML
    file it reads is kept on disk; an edited settings.yaml is parsed again."""
    code = (
        "import sys\n"
        "sys.argv = ['blockyard', 'run', 'p/pipe', '-q']\n"
        "from blockyard.cli_entry import main\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
        "print(sorted(m for m in ('typer', 'yaml', 'rich', 'click') if m in sys.modules))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLOCKYARD_")}

    def imported():
        out = subprocess.run([sys.executable, "-c", code], cwd=ws, env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout.strip().splitlines()[-1]

    imported()  # first run: parses and keeps the parses
    assert imported() == "[]"
    (ws / "settings.yaml").write_text((ws / "settings.yaml").read_text() + "\n# edited\n")
    assert imported() == "['yaml']"
    assert imported() == "[]"


def test_run_through_the_typer_app_hands_over_its_arguments(ws, monkeypatch):
    """`run` in the full app (as CliRunner or `python -m blockyard.cli` reach it) is the same command."""
    from typer.testing import CliRunner

    from blockyard.cli import app

    monkeypatch.delenv("BLOCKYARD_WORKSPACE", raising=False)
    runner = CliRunner()
    ok = runner.invoke(app, ["-w", str(ws), "run", "p/pipe", "-q", "--var", "n=3"])
    assert ok.exit_code == 0, ok.output
    assert "completed — p/pipe, 2 block run(s)" in ok.output
    bad = runner.invoke(app, ["-w", str(ws), "run", "p/pipe", "--cache", "--no-cache"])
    assert bad.exit_code == 1
