"""Parsed YAML files (pipelines' metadata.yaml, the workspace's settings.yaml) kept on disk, for fresh processes.

Every `blockyard run` and every worker run starts a new process, which would parse a
pipeline's YAML again (~40 us per block even with libyaml). The last parse of each
pipeline is kept under the data folder as marshal data, found by the hash of the file's
exact text: an edited file (any byte) misses, and a parse that marshal cannot hold (YAML
timestamps, binary) is simply not kept. A torn or foreign file is ignored. The parse's
content is what `pipeline._Parsed` holds, so a hit is as trustworthy as the in-process
cache: the same text gave it, under this very version of Blockyard.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from blockyard import __version__, marshal_files, settings

_MAGIC = f"blockyard-parse-1 {__version__}\0".encode()


def _file(workspace_root: Path, path: Path) -> Path:
    return marshal_files.cache_file(settings.data_dir_for(Path(workspace_root)), "pipelines", path)


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=20).digest()


def load(workspace_root: Path, path: Path, text: str) -> tuple[Any, Any] | None:
    """(raw, lines) of the last parse of `path`, if it was of exactly `text`."""
    kept = marshal_files.read(_file(workspace_root, path), _MAGIC)
    if not (isinstance(kept, tuple) and len(kept) == 3):
        return None
    digest, raw, lines = kept
    if digest != _digest(text) or not isinstance(raw, dict) or not isinstance(lines, dict):
        return None
    return raw, lines


def save(workspace_root: Path, path: Path, text: str, raw: dict, lines: dict) -> None:
    """Keep this parse; best effort (not kept if marshal cannot hold a value in it)."""
    marshal_files.write(_file(workspace_root, path), _MAGIC, (_digest(text), raw, lines))
