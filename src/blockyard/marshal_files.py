"""Start-up caches kept as marshal files under the data folder (compiled block code,
parsed pipelines): a magic prefix names the format and the producing version, writes are
atomic and best effort, and anything torn or foreign reads as a miss."""
from __future__ import annotations

import hashlib
import marshal
import os
from pathlib import Path
from typing import Any

def cache_file(data_dir: Path, kind: str, source: Path) -> Path:
    """Where the start-up cache of `kind` ("code", "pipelines") for the file `source` lives:
    under the data folder, named by a hash of the source's path."""
    name = hashlib.blake2b(str(source).encode(), digest_size=10).hexdigest()
    return Path(data_dir) / "cache" / kind / f"{name}.marshal"


def read(path: Path, magic: bytes, default: Any = None) -> Any:
    """The value stored at `path` under `magic`, or `default` if missing or unusable."""
    try:
        data = path.read_bytes()
    except OSError:
        return default
    if not data.startswith(magic):
        return default
    try:
        return marshal.loads(data[len(magic):])
    except (EOFError, ValueError, TypeError):
        return default  # torn or foreign: the caller rebuilds and rewrites it


def write(path: Path, magic: bytes, value: Any) -> None:
    """Store `value` atomically; quietly nothing if marshal cannot hold it or the data
    folder is read-only (the caches only save work)."""
    try:
        payload = marshal.dumps(value)
    except ValueError:  # e.g. a YAML timestamp in a parsed pipeline
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(magic + payload)
        os.replace(tmp, path)
    except OSError:
        pass
