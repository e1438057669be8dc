"""Content-hash cache keys.

A block run is skipped when a completed block run exists with the same key:
the block's code, the code of the project's `utils/` (blocks import it), the
block's configuration, the run's user variables, and the content digests of
its inputs (the upstream outputs). Digests come from the store, which hashes
the bytes it writes, so an upstream that re-ran and produced the same data
still lets its downstream hit the cache.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

# Kwargs that change every run and must not break the cache.
VOLATILE_KEYS = {
    "execution_date",
    "ds",
    "pipeline_run_id",
    "logger",
    "dynamic_block_index",
    "block_uuid",
    "interval_start_datetime",
    "interval_end_datetime",
    "event",
}

_tree_hashes: dict[tuple, str] = {}


def tree_hash(folders: Iterable[Path]) -> str:
    """Hash of every .py file under the folders (by path, size, mtime; cheap)."""
    entries = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__pycache__")))
            for name in sorted(files):
                if name.endswith(".py"):
                    st = os.stat(os.path.join(root, name))
                    entries.append(f"{root}/{name}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.blake2b("\n".join(entries).encode(), digest_size=16).hexdigest()


def _stable(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=repr, separators=(",", ":"))


def cache_key(
    *,
    code_hash: str,
    utils_hash: str,
    block_type: str,
    configuration: dict | None,
    variables: dict,
    input_digests: list[Any],
    dynamic_index: int | None,
    extra_code_hashes: Iterable[str] = (),
) -> str:
    user_vars = {k: v for k, v in variables.items() if k not in VOLATILE_KEYS}
    h = hashlib.blake2b(digest_size=20)
    for part in (
        code_hash,
        utils_hash,
        block_type,
        _stable(configuration or {}),
        _stable(user_vars),
        _stable(input_digests),
        str(dynamic_index),
        ",".join(extra_code_hashes),
    ):
        h.update(part.encode())
        h.update(b"\x00")
    return h.hexdigest()


def cache_disabled(configuration: dict | None) -> bool:
    cfg = configuration or {}
    return cfg.get("cache") is False or cfg.get("disable_cache") is True
