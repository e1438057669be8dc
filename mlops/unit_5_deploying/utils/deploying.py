"""Render, validate and explain a production deployment of a Blockyard workspace.

The reference files live in the repository's `deploy/` folder (Dockerfile, compose
file, Kubernetes manifests, env-file templates); this module writes a copy tailored
to one workspace (image name, workspace folder, replica counts) and checks it with
the same tools the test suite uses: `docker-compose config` and `kubernetes-validate`.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

K8S_VERSION = "1.30.0"


class _Dumper(yaml.SafeDumper):
    """Plain YAML: services that shared an anchor in the template get their own copy."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _dump(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False)


def _dump_all(docs: list) -> str:
    return yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False)


def templates_dir(workspace_root: Path) -> Path:
    """The repository's deploy/ folder (the workspace sits in the repository)."""
    for base in (workspace_root, *workspace_root.parents):
        candidate = base / "deploy"
        if (candidate / "Dockerfile").is_file() and (candidate / "compose.yaml").is_file():
            return candidate
    raise FileNotFoundError(
        f"no deploy/ folder with a Dockerfile and compose.yaml above {workspace_root}; "
        "the deployment templates ship with the Blockyard repository"
    )


def _set_image(obj: Any, image: str) -> None:
    spec = (obj.get("spec") or {}).get("template", {}).get("spec", {})
    for container in spec.get("containers", []):
        container["image"] = image


def render(workspace_root: Path, out_dir: Path, *, image: str, workers: int = 2,
           dask_workers: int = 2) -> dict:
    """Write the deployment of `workspace_root` into `out_dir` and return what was written."""
    src = templates_dir(workspace_root)
    repo_root = src.parent
    try:
        workspace_dir = workspace_root.relative_to(repo_root).as_posix()
    except ValueError as exc:
        raise ValueError(f"the workspace {workspace_root} must be inside {repo_root} "
                         "(the image build context)") from exc
    if out_dir.exists():
        shutil.rmtree(out_dir)
    (out_dir / "k8s").mkdir(parents=True)
    (out_dir / "secrets").mkdir()
    shutil.copy(src / "Dockerfile", out_dir / "Dockerfile")
    shutil.copy(src / "Dockerfile.dockerignore", out_dir / "Dockerfile.dockerignore")

    compose = yaml.safe_load((src / "compose.yaml").read_text())
    compose.pop("x-blockyard", None)  # anchors are resolved by the loader
    for name, service in compose["services"].items():
        if "build" in service:
            service["image"] = image
            service["build"] = {  # this machine's paths: the file is rendered per checkout
                "context": str(repo_root),
                "dockerfile": str(out_dir / "Dockerfile"),
                "args": {"WORKSPACE": workspace_dir},
            }
    compose["services"]["worker"]["deploy"]["replicas"] = int(workers)
    compose["services"]["dask-worker"]["deploy"]["replicas"] = int(dask_workers)
    (out_dir / "compose.yaml").write_text(
        f"# Rendered for workspace '{workspace_dir}' by unit_5_deploying/deploying_to_production.\n"
        + _dump(compose)
    )

    for path in sorted((src / "k8s").glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        for doc in docs:
            _set_image(doc, image)
            name = (doc.get("metadata") or {}).get("name")
            if doc.get("kind") == "Deployment" and name == "blockyard-worker":
                doc["spec"]["replicas"] = int(workers)
            if doc.get("kind") == "Deployment" and name == "dask-worker":
                doc["spec"]["replicas"] = int(dask_workers)
            if doc.get("kind") == "Kustomization":
                repo, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "latest")
                doc["images"] = [{"name": "blockyard", "newName": repo, "newTag": tag}]
        (out_dir / "k8s" / path.name).write_text(_dump_all(docs))

    for template in sorted((src / "secrets").glob("*.env.example")):
        names = re.findall(r"^([A-Z_][A-Z0-9_]*)=", template.read_text(), flags=re.M)
        (out_dir / "secrets" / template.name).write_text(
            "# Fill in and save without .example; never commit the filled file.\n"
            + "".join(f"{n}=\n" for n in names)
        )
    (out_dir / "secrets" / ".gitignore").write_text("*.env\n!*.env.example\n")
    files = sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if p.is_file())
    return {
        "dir": str(out_dir),
        "files": files,
        "image": image,
        "workspace_dir": workspace_dir,
        "build_context": str(repo_root),
        "workers": int(workers),
        "dask_workers": int(dask_workers),
    }


def secret_names(out_dir: Path) -> dict[str, list[str]]:
    return {
        p.name: re.findall(r"^([A-Z_][A-Z0-9_]*)=", p.read_text(), flags=re.M)
        for p in sorted((out_dir / "secrets").glob("*.env.example"))
    }


def validate(out_dir: Path) -> dict:
    """docker-compose config on the compose file (placeholder secrets), kubernetes-validate
    on every manifest. Raises ValueError naming the file when something is invalid."""
    report: dict[str, Any] = {}
    exe = shutil.which("docker-compose")
    if exe is None:
        report["compose"] = "skipped: docker-compose is not installed (apt-get install docker-compose)"
    else:
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / "deploy"
            shutil.copytree(out_dir, copy)
            for names_file, names in secret_names(copy).items():
                env = copy / "secrets" / names_file.removesuffix(".example")
                env.write_text("".join(f"{n}=placeholder\n" for n in names))
            proc = subprocess.run([exe, "-f", str(copy / "compose.yaml"), "config", "--quiet"],
                                  capture_output=True, text=True, timeout=120, cwd=copy)
        if proc.returncode != 0:
            raise ValueError(f"{out_dir / 'compose.yaml'}: docker-compose config: {proc.stderr.strip()}")
        report["compose"] = "valid"
    try:
        import kubernetes_validate
    except ImportError:
        report["kubernetes"] = "skipped: kubernetes-validate is not installed (pip install kubernetes-validate)"
        return report
    count = 0
    for path in sorted((out_dir / "k8s").glob("[0-9]*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            try:
                kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                raise ValueError(f"{path}: {doc.get('kind')} {doc['metadata'].get('name')}: {exc}") from exc
            count += 1
    report["kubernetes"] = f"valid: {count} objects against Kubernetes {K8S_VERSION}"
    return report


def commands(rendered: dict, *, destroy: bool = False) -> list[str]:
    """What a user runs, in order (nothing here is run by the pipeline in dry-run mode)."""
    out = Path(rendered["dir"])
    ctx = rendered["build_context"]
    image = rendered["image"]
    compose = f"docker compose -f {out / 'compose.yaml'}"
    steps = []
    if destroy:
        steps.append(f"{compose} down   # stops and removes the containers; the volumes are kept")
    steps += [
        f"docker build -f {out / 'Dockerfile'} --build-arg WORKSPACE={rendered['workspace_dir']} -t {image} {ctx}",
        *(f"cp {out / 'secrets' / n} {out / 'secrets' / n.removesuffix('.example')}   # then fill in the values"
          for n in secret_names(out)),
        f"{compose} up -d --scale worker={rendered['workers']} --scale dask-worker={rendered['dask_workers']}",
        f"{compose} ps   # every service healthy: web on http://localhost:6789 (/healthz, /readyz)",
        "# Kubernetes instead of compose:",
        f"kubectl create secret generic blockyard-secrets --from-env-file={out / 'secrets' / 'blockyard.env'}",
        f"kubectl apply -f {out / 'k8s' / '00-config.yaml'} -f {out / 'k8s' / '10-migrate-job.yaml'}",
        "kubectl wait --for=condition=complete job/blockyard-migrate --timeout=300s",
        f"kubectl apply -k {out / 'k8s'}",
    ]
    return steps
