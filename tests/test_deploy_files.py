"""deploy/: the compose file through Debian's `docker-compose config`, the Kubernetes
objects through `kubernetes-validate` (the API's JSON schemas), and the Dockerfile's
facts. No Docker engine or cluster runs here; these are the checks that can."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
K8S_VERSION = "1.30.0"
ROLES = {"web", "scheduler", "worker", "serve"}


# ------------------------------------------------------------------------ compose
def compose_config(deploy_dir: Path) -> dict:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip("docker-compose is not installed (Debian: apt-get install docker-compose; "
                    "scripts/test.sh installs it)")
    proc = subprocess.run([exe, "-f", str(deploy_dir / "compose.yaml"), "config"],
                          capture_output=True, text=True, timeout=120, cwd=deploy_dir)
    if proc.returncode != 0:
        raise AssertionError(proc.stderr)
    return yaml.safe_load(proc.stdout)


def _source(volume) -> str:
    """A service volume's source, in v1 ("name:/path:rw") or v2 ({source: name}) form."""
    return volume.get("source", "") if isinstance(volume, dict) else str(volume).split(":", 1)[0]


def _published(port) -> str:
    return str(port.get("target")) if isinstance(port, dict) else str(port).split("/")[0].split(":")[-1]


@pytest.fixture
def deploy_copy(tmp_path) -> Path:
    """deploy/ with its env files filled from the templates, as a user would."""
    target = tmp_path / "deploy"
    shutil.copytree(DEPLOY, target)
    for template in (target / "secrets").glob("*.env.example"):
        text = template.read_text()
        filled = re.sub(r"^([A-Z_]+)=$", r"\1=value-of-\1", text, flags=re.M)
        template.with_name(template.name.removesuffix(".example")).write_text(filled)
    return target


def test_compose_file_is_valid_and_has_the_production_layout(deploy_copy):
    config = compose_config(deploy_copy)
    services = config["services"]
    assert set(services) == {"postgres", "migrate", "web", "scheduler-1", "scheduler-2", "worker",
                             "serve", "dask-scheduler", "dask-worker"}
    assert "ports" not in services["postgres"]  # the database is not published
    assert set(config["volumes"]) == {"postgres-data", "blockyard-data"}
    assert [_source(v) for v in services["postgres"]["volumes"]] == ["postgres-data"]
    assert services["worker"]["deploy"]["replicas"] >= 2
    assert services["dask-worker"]["deploy"]["replicas"] >= 2
    blockyard = [n for n in services if n not in ("postgres",)]
    for name in blockyard:
        env = services[name]["environment"]
        # Secrets come from the env file (filled in by the user), not from compose.yaml.
        assert env["BLOCKYARD_DATABASE_URL"] == "value-of-BLOCKYARD_DATABASE_URL", name
        assert [_source(v) for v in services[name]["volumes"]] == ["blockyard-data"], name
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == "value-of-POSTGRES_PASSWORD"
    for name in ("web", "scheduler-1", "scheduler-2", "worker", "serve"):
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
        assert deps["postgres"]["condition"] == "service_healthy", name
    roles = {n: services[n]["command"] for n in ("web", "scheduler-1", "worker")}
    assert [c[c.index("--role") + 1] for c in roles.values()] == ["web", "scheduler", "worker"]
    assert [_published(p) for p in services["web"]["ports"]] == ["6789"]
    # No secret value is written in the repository's files.
    for path in [DEPLOY / "compose.yaml", *(DEPLOY / "secrets").glob("*.example")]:
        for line in path.read_text().splitlines():
            m = re.match(r"^\s*([A-Z_]*(PASSWORD|TOKEN|SECRET_KEY|DATABASE_URL))\s*[=:]\s*(\S*)", line)
            assert not (m and m.group(3)), f"{path.name}: {line!r}"


def test_compose_validation_catches_a_broken_file(deploy_copy):
    path = deploy_copy / "compose.yaml"
    path.write_text(path.read_text().replace("  postgres:\n    image:", "  postgres:\n    imagee:", 1))
    with pytest.raises(AssertionError, match="imagee|Unsupported config option|additional properties"):
        compose_config(deploy_copy)


def test_compose_without_the_env_files_names_the_missing_file(tmp_path):
    target = tmp_path / "deploy"
    shutil.copytree(DEPLOY, target)
    for leftover in (target / "secrets").glob("*.env"):
        leftover.unlink()
    with pytest.raises(AssertionError, match=r"blockyard\.env|postgres\.env"):
        compose_config(target)


# --------------------------------------------------------------------- kubernetes
def k8s_objects(folder: Path = DEPLOY / "k8s") -> list[tuple[str, dict]]:
    out = []
    for path in sorted(folder.glob("[0-9]*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out.append((path.name, doc))
    return out


def test_kubernetes_objects_validate_against_the_api_schemas():
    kv = pytest.importorskip("kubernetes_validate")
    objects = k8s_objects()
    for name, obj in objects:
        kv.validate(obj, K8S_VERSION, strict=True)
    kinds = {(o["kind"], o["metadata"]["name"]) for _, o in objects}
    for role in ROLES:
        assert ("Deployment", f"blockyard-{role}") in kinds
    assert ("Job", "blockyard-migrate") in kinds
    assert {("Deployment", "dask-scheduler"), ("Deployment", "dask-worker"), ("Service", "dask-scheduler")} <= kinds
    # The kustomization lists every manifest.
    listed = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in (DEPLOY / "k8s").glob("[0-9]*.yaml"))


def test_every_role_has_probes_limits_and_runs_unprivileged():
    for _name, obj in k8s_objects():
        if obj["kind"] not in ("Deployment", "Job"):
            continue
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, obj["metadata"]["name"]
        for c in pod["containers"]:
            limits = c["resources"]["limits"]
            assert limits.get("cpu") and limits.get("memory"), obj["metadata"]["name"]
            if obj["kind"] == "Deployment" and obj["metadata"]["name"].startswith("blockyard-"):
                assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
                assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
                port = c["readinessProbe"]["httpGet"]["port"]
                role = c["args"][c["args"].index("--role") + 1] if "--role" in c["args"] else c["args"][0]
                if role in ("scheduler", "worker"):
                    env = {e["name"]: e["value"] for e in c.get("env", [])}
                    assert env["BLOCKYARD_HEALTH_PORT"] == str(port)
                else:
                    assert str(port) == c["args"][c["args"].index("--port") + 1]


def test_kubernetes_validation_catches_a_broken_object():
    kv = pytest.importorskip("kubernetes_validate")
    _name, web = next((n, o) for n, o in k8s_objects() if o["metadata"]["name"] == "blockyard-web")
    web["spec"]["replicas"] = "two"
    with pytest.raises(kv.ValidationError):
        kv.validate(web, K8S_VERSION, strict=True)


# --------------------------------------------------------------------- Dockerfile
def dockerfile_stages(path: Path = DEPLOY / "Dockerfile") -> list[list[str]]:
    """Instructions per stage, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_dockerfile_is_multi_stage_slim_non_root_with_a_healthcheck():
    stages = dockerfile_stages()
    assert len(stages) >= 2
    final = stages[-1]
    assert re.match(r"FROM python:\$\{PYTHON_VERSION\}-slim\b", final[0])
    users = [i.split(None, 1)[1] for i in final if i.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    health = [i for i in final if i.upper().startswith("HEALTHCHECK ")]
    assert len(health) == 1 and "/healthz" in health[0]
    exposed = [i.split()[1] for i in final if i.upper().startswith("EXPOSE ")]
    assert exposed == ["6789"]
    cmd = next(i for i in final if i.upper().startswith("CMD "))
    assert '"--port", "6789"' in cmd and '"--host", "0.0.0.0"' in cmd
    # The builder installs the wheel with its extras; only the virtualenv reaches the image.
    build = " ".join(stages[0])
    assert "pip wheel" in build and "[${EXTRAS}]" in build and "ARG EXTRAS=all" in build
    assert any(i.startswith("COPY --from=build /opt/blockyard") for i in final)
    assert not any("pip install" in i for i in final)
    pyproject = (REPO / "pyproject.toml").read_text()
    all_extra = re.search(r"^all = \[(.*)\]", pyproject, re.M).group(1)
    assert "dask" in all_extra and "server" in all_extra and "postgres" in all_extra


def test_dockerfile_copies_only_what_exists():
    for stage in dockerfile_stages():
        for inst in stage:
            if inst.startswith("COPY ") and "--from" not in inst:
                sources = [s for s in inst.split()[1:-1] if not s.startswith("--")]
                for src in sources:
                    if "$" not in src:
                        assert (REPO / src).exists(), inst
