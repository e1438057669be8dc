"""`mage_ai.data_preparation.variable_manager`: global variables (`get_global_variable`,
`get_global_variables`, `set_global_variable`, `delete_global_variable`) and block
outputs (`get_variable`).

Global variables live in the pipeline's metadata.yaml (`variables:`), as in Mage.
Block outputs are read from the newest completed run of the block recorded in the
workspace database, through the artifact store.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

__all__ = [
    "get_global_variable",
    "get_global_variables",
    "set_global_variable",
    "delete_global_variable",
    "get_variable",
    "VariableNotFound",
]

_OUTPUT_NAME = re.compile(r"output_(\d+)")


class VariableNotFound(KeyError):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def set_global_variable(
    pipeline_uuid: str, key: str, value: Any, project: str | None = None
) -> None:
    """Set `key: value` in the pipeline's metadata.yaml `variables` and save the file."""
    from blockyard.compat._context import find_pipeline

    _, spec = find_pipeline(pipeline_uuid, project or _current_project())
    variables = dict(spec.variables or {})
    variables[key] = _plain(value)
    spec.set_variables(variables)
    spec.save()


def get_global_variables(pipeline_uuid: str, project: str | None = None, **_: Any) -> dict:
    """The pipeline's global variables (metadata.yaml `variables:`), as Mage returns them."""
    from blockyard.compat._context import find_pipeline

    _, spec = find_pipeline(pipeline_uuid, project or _current_project())
    return dict(spec.variables or {})


def get_global_variable(pipeline_uuid: str, key: str, project: str | None = None, **_: Any) -> Any:
    """One global variable of the pipeline; None when it is not set (as in Mage)."""
    return get_global_variables(pipeline_uuid, project).get(key)


def delete_global_variable(pipeline_uuid: str, key: str, project: str | None = None, **_: Any) -> None:
    from blockyard.compat._context import find_pipeline

    _, spec = find_pipeline(pipeline_uuid, project or _current_project())
    variables = dict(spec.variables or {})
    if key in variables:
        del variables[key]
        spec.set_variables(variables)
        spec.save()


def _current_project() -> str | None:
    """The running block's project: a bare pipeline uuid means one of its project first."""
    from blockyard import runtime

    ctx = runtime.get()
    return ctx.project if ctx is not None else None


def _plain(value: Any) -> Any:
    """numpy scalars/arrays as plain Python values, so the YAML stays readable."""
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        return value.tolist()
    return value


def _output_index(variable_name: str) -> int:
    match = _OUTPUT_NAME.fullmatch(str(variable_name))
    if match is None:
        raise VariableNotFound(
            f"variable '{variable_name}': Blockyard keeps block outputs only, named "
            "output_0, output_1, ... (one per returned value)"
        )
    return int(match.group(1))


def _sqlite_file(url: str) -> Path | None:
    if "://" not in url:
        return Path(url).expanduser()
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        return None if path in ("", ":memory:") else Path(path).expanduser()
    return None


def get_variable(
    pipeline_uuid: str,
    block_uuid: str,
    variable_name: str = "output_0",
    partition: str | None = None,
) -> Any:
    """Output `variable_name` (output_N) of the newest completed run of `block_uuid`."""
    from blockyard import settings
    from blockyard.compat._context import data_dir, find_pipeline

    if partition is not None:
        raise ValueError(
            "get_variable(partition=...) is not supported: Blockyard reads the newest "
            "completed run of the block"
        )
    index = _output_index(variable_name)
    ws, spec = find_pipeline(pipeline_uuid)
    project = spec.project.name
    where = f"block '{block_uuid}' of pipeline '{project}/{spec.uuid}'"
    base = data_dir(ws)
    url = settings.database_url_for(base)
    db_file = _sqlite_file(url)
    if db_file is not None and not db_file.exists():
        raise VariableNotFound(f"{where} has no completed run: no run database at {db_file}")

    from blockyard.db import open_database

    db = open_database(url)  # sqlite3 only for a SQLite file: no SQLAlchemy import in a block
    try:
        run = db.latest_block_run(project, spec.uuid, block_uuid)
    finally:
        db.close()
    ref = (run or {}).get("output_ref")
    if not ref:
        raise VariableNotFound(f"{where} has no completed run with stored outputs")
    run_id, _, node_uuid = str(ref).partition("/")

    from blockyard.store import ArtifactStore

    store = ArtifactStore(settings.store_url_for(base))
    manifest = store.manifest(int(run_id), node_uuid)
    count = len(manifest.outputs) if manifest is not None else None
    if count is not None and index >= count:
        raise VariableNotFound(
            f"{where}: run {run_id} stored {count} output(s), no '{variable_name}'"
        )
    return store.load_output(int(run_id), node_uuid, index)
