"""The course's unit 5 pipeline, deploying_to_production: renders this workspace's
deployment, validates it, prints the commands; dry run by default, never destroys
by default."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

import blockyard

REPO = Path(__file__).resolve().parents[1]
WORKSPACE = REPO / "mlops"
PIPELINE = "unit_5_deploying/deploying_to_production"


@pytest.fixture
def home(tmp_path, monkeypatch):
    from blockyard.session import reset_sessions

    monkeypatch.setenv("BLOCKYARD_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("BLOCKYARD_DATABASE_URL", raising=False)
    monkeypatch.delenv("BLOCKYARD_STORE_URL", raising=False)
    reset_sessions()
    yield tmp_path / "home"
    reset_sessions()


def run(**variables):
    return blockyard.run_pipeline(PIPELINE, workspace=WORKSPACE, variables=variables or None)


def test_renders_validates_and_prints_the_commands_as_a_dry_run(home):
    result = run(workers=3, dask_workers=4, image="registry.example/mlops:1.2")
    assert result.ok, result.error
    assert all(t["passed"] for b in result.block_runs.values() for t in b.tests)
    out = result.output("print_commands")
    assert out["dry_run"] is True and out["destroy"] is False and out["executed"] == []
    assert out["validation"]["kubernetes"].startswith("valid: ")
    if shutil.which("docker-compose"):
        assert out["validation"]["compose"] == "valid"
    deploy = home / "deploy"
    compose = yaml.safe_load((deploy / "compose.yaml").read_text())
    assert compose["services"]["worker"]["deploy"]["replicas"] == 3
    assert compose["services"]["dask-worker"]["deploy"]["replicas"] == 4
    assert compose["services"]["web"]["image"] == "registry.example/mlops:1.2"
    assert compose["services"]["web"]["build"]["args"] == {"WORKSPACE": "mlops"}
    assert "ports" not in compose["services"]["postgres"]
    workers = [d for d in yaml.safe_load_all((deploy / "k8s" / "22-worker.yaml").read_text()) if d]
    assert workers[0]["spec"]["replicas"] == 3
    assert workers[0]["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/mlops:1.2"
    kustomization = yaml.safe_load((deploy / "k8s" / "kustomization.yaml").read_text())
    assert kustomization["images"] == [{"name": "blockyard", "newName": "registry.example/mlops", "newTag": "1.2"}]
    env = (deploy / "secrets" / "blockyard.env.example").read_text().splitlines()
    names = [line.rstrip("=") for line in env if line and not line.startswith("#")]
    assert names == ["BLOCKYARD_DATABASE_URL", "BLOCKYARD_API_TOKEN", "BLOCKYARD_SECRET_KEY"]
    assert all(line.endswith("=") for line in env if line and not line.startswith("#"))
    commands = out["commands"]
    assert commands[0].startswith(f"docker build -f {deploy / 'Dockerfile'} --build-arg WORKSPACE=mlops "
                                  f"-t registry.example/mlops:1.2 {REPO}")
    assert any("up -d --scale worker=3 --scale dask-worker=4" in c for c in commands)
    assert not any(" down" in c for c in commands)
    from blockyard.session import session_for
    from blockyard.project import Workspace

    rows = {r["block_uuid"]: r for r in session_for(Workspace.open(WORKSPACE)).db.get_block_runs(result.run_id)}
    printed = Path(rows["print_commands"]["log_path"]).read_text()
    assert "dry run: nothing is executed" in printed and commands[0] in printed


def test_destroy_is_explicit_and_a_real_deploy_needs_docker(home, monkeypatch):
    destroying = run(destroy=True)
    assert destroying.ok, destroying.error
    assert destroying.output("print_commands")["commands"][0].endswith("down   # stops and removes the containers; the volumes are kept")
    monkeypatch.setenv("PATH", "/nonexistent")  # no docker command (there is none here anyway)
    real = run(dry_run=False)
    assert real.status == "failed"
    assert real.block_runs["print_commands"].status == "failed"
    assert "no `docker` command" in real.block_runs["print_commands"].error


def test_bad_variables_and_broken_files_fail_naming_what_is_wrong(home, tmp_path):
    bad = run(workers="many")
    assert bad.status == "failed"
    assert bad.block_runs["render_deployment"].status == "failed"
    assert "render_deployment" in bad.block_runs["render_deployment"].error
    assert "many" in bad.block_runs["render_deployment"].error

    import sys

    sys.path.insert(0, str(WORKSPACE))
    try:
        from unit_5_deploying.utils.deploying import render, validate
    finally:
        sys.path.remove(str(WORKSPACE))
    out = tmp_path / "rendered"
    render(WORKSPACE, out, image="x:1")
    web = out / "k8s" / "20-web.yaml"
    web.write_text(web.read_text().replace("replicas: 2", "replicas: two", 1))
    with pytest.raises(ValueError, match=r"20-web\.yaml: Deployment blockyard-web"):
        validate(out)
