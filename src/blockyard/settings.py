"""Environment settings, read when asked (never at import time)."""
from __future__ import annotations

import os
from pathlib import Path

ENV_WORKSPACE = "BLOCKYARD_WORKSPACE"
ENV_HOME = "BLOCKYARD_HOME"  # where .blockyard data lives; default <workspace>/.blockyard
ENV_DATABASE_URL = "BLOCKYARD_DATABASE_URL"
ENV_DATA_MIRROR = "BLOCKYARD_DATA_MIRROR"
ENV_STORE_URL = "BLOCKYARD_STORE_URL"


def data_dir_for(workspace_root: Path) -> Path:
    home = os.environ.get(ENV_HOME)
    return Path(home).expanduser().resolve() if home else workspace_root / ".blockyard"


def database_url_for(data_dir: Path) -> str:
    url = os.environ.get(ENV_DATABASE_URL)
    if url:
        return url
    return f"sqlite:///{data_dir / 'blockyard.db'}"


def store_url_for(data_dir: Path) -> str:
    return os.environ.get(ENV_STORE_URL) or str(data_dir / "outputs")


def data_mirror() -> Path | None:
    value = os.environ.get(ENV_DATA_MIRROR)
    return Path(value).expanduser() if value else None
