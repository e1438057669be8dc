"""The one guard for files that block code, the server and the UI read or write.

A block's file comes from `configuration.file_source.path` or its type folder, and
either may be a symlink; a path is used only if, once symlinks are resolved, it is
inside the workspace and is none of Blockyard's own files: nothing under the data
folder (`.blockyard/` or BLOCKYARD_HOME: run history, outputs, the secret key), no key
files (`*.key`, `*.pem`) and no database files (`*.db`, `*.sqlite*`, with their
`-wal` / `-shm` / `-journal` companions), wherever they are.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from blockyard.errors import BlockyardError

DATA_FOLDER_NAME = ".blockyard"
_PRIVATE_NAME = re.compile(r".*\.(key|pem|p12|db|db3|sqlite|sqlite3)(-wal|-shm|-journal)?\Z", re.IGNORECASE)


class PathRefused(BlockyardError):
    """A file outside the workspace or one of Blockyard's private files (HTTP 403)."""


def _data_dir(root: Path, workspace: Any) -> Path:
    data_dir = getattr(workspace, "data_dir", None)
    if data_dir is None:
        from blockyard import settings

        data_dir = settings.data_dir_for(root)
    return Path(data_dir)


def _sqlite_file(data_dir: Path) -> Path | None:
    """The SQLite run history file (BLOCKYARD_DATABASE_URL may put it anywhere)."""
    from blockyard import settings

    url = settings.database_url_for(data_dir)
    if not url.startswith("sqlite:///"):
        return None
    name = url[len("sqlite:///"):].split("?", 1)[0]
    return Path(name) if name and name != ":memory:" else None


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def guard_path(path: str | os.PathLike, workspace: Any, *, what: str = "file") -> Path:
    """`path` resolved (symlinks followed) if it may be read or written, else PathRefused.

    `workspace`: a Workspace, or a folder (its root)."""
    root_obj = getattr(workspace, "root", workspace)
    try:
        root = Path(root_obj).resolve()
        resolved = Path(path).resolve()
    except (OSError, RuntimeError):
        raise PathRefused(f"{what} cannot be resolved (a symlink loop?)", file=str(path)) from None
    if not _within(resolved, root):
        raise PathRefused(
            f"{what} points outside the workspace (a symlink?); refusing to use it",
            hint="block files live in the workspace's project folders",
        )
    rel_parts = resolved.relative_to(root).parts
    data_dir = _data_dir(root, workspace if root_obj is not workspace else None)
    try:
        data_real = data_dir.resolve()
    except OSError:
        data_real = data_dir
    if DATA_FOLDER_NAME in rel_parts or _within(resolved, data_real):
        raise PathRefused(
            f"{what} is in Blockyard's data folder ({DATA_FOLDER_NAME}/: run history, outputs, secret key); "
            "refusing to use it"
        )
    if _PRIVATE_NAME.match(resolved.name):
        raise PathRefused(f"{what} is a key or database file ({resolved.name}); refusing to use it")
    db_file = _sqlite_file(data_dir)
    if db_file is not None:
        try:
            db_real = db_file.resolve()
        except OSError:
            db_real = db_file
        if resolved.parent == db_real.parent and resolved.name.startswith(db_real.name):
            raise PathRefused(f"{what} is the run history database; refusing to use it")
    return resolved
