"""Build small Mage-format workspaces on disk for tests."""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import yaml

TYPE_DIRS = {
    "data_loader": "data_loaders",
    "transformer": "transformers",
    "data_exporter": "data_exporters",
    "custom": "custom",
    "sensor": "sensors",
    "callback": "callbacks",
    "conditional": "conditionals",
    "chart": "charts",
}


def block(
    uuid: str,
    code: str | None,
    *,
    type: str = "custom",
    upstream: list[str] | None = None,
    config: dict | None = None,
    **extra: Any,
) -> dict:
    return {
        "uuid": uuid,
        "type": type,
        "code": code,
        "upstream_blocks": upstream or [],
        "configuration": config or {},
        **extra,
    }


def write_pipeline(
    root: Path,
    project: str,
    pipeline: str,
    blocks: list[dict],
    *,
    variables: dict | None = None,
    callbacks: list[dict] | None = None,
    conditionals: list[dict] | None = None,
    extra: dict | None = None,
) -> Path:
    proj = root / project
    (proj / "pipelines" / pipeline).mkdir(parents=True, exist_ok=True)
    if not (proj / "metadata.yaml").exists():
        (proj / "metadata.yaml").write_text(yaml.safe_dump({"project_uuid": project}))
    settings = root / "settings.yaml"
    data = yaml.safe_load(settings.read_text()) if settings.exists() else {}
    data = data or {}
    data.setdefault("projects", {})
    data["projects"].setdefault(project, {})
    settings.write_text(yaml.safe_dump(data))

    def entry(b: dict) -> dict:
        e = {k: v for k, v in b.items() if k != "code"}
        if b.get("code") is not None:
            rel = Path(project) / TYPE_DIRS[b["type"]] / f"{b['uuid']}.py"
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(b["code"]).lstrip())
        return e

    meta = {
        "blocks": [entry(b) for b in blocks],
        "callbacks": [entry(b) for b in callbacks or []],
        "conditionals": [entry(b) for b in conditionals or []],
        "name": pipeline,
        "uuid": pipeline,
        "type": "python",
        "variables": variables or {},
        **(extra or {}),
    }
    path = proj / "pipelines" / pipeline / "metadata.yaml"
    path.write_text(yaml.safe_dump(meta, sort_keys=False))
    return path
