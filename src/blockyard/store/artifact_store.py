"""ArtifactStore: block outputs on any fsspec filesystem.

Layout::

    <root>/runs/<run_id>/<quoted node uuid>/output_0.arrow
                                           /output_1.npz
                                           /manifest.json      (written last)
    <root>/runs/<run_id>/inline+manifests.jsonl

On the local filesystem a node whose outputs are all inline JSON (None, a number, a short
string or dict) has no folder: its manifest is a line appended to the run's log (`runlog`),
and a node's manifest is the newer of its folder's and its last line's (the folder's on a
tie). Other filesystems keep every node in a folder.

A node folder counts as saved only when its manifest exists. On the local filesystem every
output file and the manifest are written to a temp name and renamed into place, so a crash
never leaves a half-written manifest, and a frame still memory-mapped from an earlier save
of the same node keeps its (old, unlinked) file instead of seeing it overwritten.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any, Iterable
from urllib.parse import unquote

import blockyard.store.runlog as _runlog
from blockyard.errors import StoreError
from blockyard.store.codec_base import LocalFS, is_local_fs
from blockyard.store.fs_ops import StoreFiles
from blockyard.store.manifest import (  # noqa: F401  (re-exported)
    INLINE_MAX_BYTES,
    MANIFEST,
    MANIFEST_FORMAT,
    CorruptOutputError,
    OutputManifest,
    combined_digest,
    quote_name,
)
from blockyard.store.reader import OutputReader
from blockyard.store.writer import OutputWriter


_PATHS_MAX = 8192  # cached node folder paths per store


def _parse_run_id(name: str) -> Any:
    text = unquote(name)
    return int(text) if text.isdigit() else text


class ArtifactStore(StoreFiles, OutputWriter, OutputReader):
    """Block outputs for pipeline runs, over fsspec (local folder by default).

    ``ArtifactStore("/path/outputs")``, ``ArtifactStore("memory://outputs")``,
    ``ArtifactStore("s3://bucket/prefix", storage_options={...})``.
    ``fsync=True`` also flushes outputs and manifests to disk before the rename (local
    filesystem; survives power loss, costs an fsync per file).
    """

    def __init__(self, url_or_path: str | os.PathLike, *, storage_options: dict | None = None, fsync: bool = False):
        text = os.fspath(url_or_path)
        if "://" in text or "::" in text:
            import fsspec
            import fsspec.implementations.local  # noqa: F401  (codecs check LocalFileSystem)

            fs, root = fsspec.core.url_to_fs(text, **(storage_options or {}))
        else:
            fs = LocalFS()
            root = os.path.abspath(os.path.expanduser(text))
        self.url = text
        self.fs = fs
        self.local = is_local_fs(fs)
        self.root = root.rstrip("/") if root not in ("/", "") else root
        self.fsync = fsync
        self._run_dirs: set = set()
        self._sep = os.sep if self.local else "/"  # what _join puts between two names
        self._node_dirs: dict = {}  # (str(run_id), node_uuid) -> node_path()
        self._run_paths: dict = {}  # str(run_id) -> run_path()

    def __repr__(self) -> str:
        return f"ArtifactStore({self.url!r})"

    # --- paths -------------------------------------------------------------------------

    @property
    def runs_root(self) -> str:
        return self._join(self.root, "runs")

    def run_path(self, run_id: Any) -> str:
        return self._join(self.runs_root, quote_name(str(run_id)))

    def node_path(self, run_id: Any, node_uuid: str) -> str:
        key = (str(run_id), node_uuid)
        path = self._node_dirs.get(key)
        if path is None:
            run_dir = self._run_paths.get(key[0])
            if run_dir is None:
                run_dir = self._run_paths[key[0]] = self.run_path(run_id)
            # = _join(run_dir, quoted): a quoted name is never empty and holds no separator
            path = f"{run_dir}{self._sep}{quote_name(node_uuid)}"
            if len(self._node_dirs) >= _PATHS_MAX:  # a long-lived store: start over
                self._node_dirs.clear()
                self._run_paths.clear()
            self._node_dirs[key] = path
        return path

    def manifest_path(self, run_id: Any, node_uuid: str) -> str:
        """The node folder's manifest.json (see `manifest(...).source` for where the
        node's current manifest is: this file or the run's log)."""
        return f"{self.node_path(run_id, node_uuid)}{self._sep}{MANIFEST}"

    def log_path(self, run_id: Any) -> str:
        """The run's log of inline manifests (local stores)."""
        key = str(run_id)
        run_dir = self._run_paths.get(key)
        if run_dir is None:
            run_dir = self.run_path(run_id)
        return f"{run_dir}{self._sep}{_runlog.LOG}"

    def output_path(self, run_id: Any, node_uuid: str, index: int) -> str:
        m = self._require_manifest(run_id, node_uuid)
        entry = self._entry(m, index)
        if entry.get("file") is None:
            raise StoreError(
                f"{entry.get('name')} of block '{node_uuid}' in run {run_id} is stored inline "
                "in the manifest and has no file of its own",
                file=m.source or self.manifest_path(run_id, node_uuid),
                block=node_uuid,
            )
        return self._join(self.node_path(run_id, node_uuid), entry["file"])

    # --- listing and cleanup -----------------------------------------------------------------

    def run_ids(self) -> list:
        """Run ids with a folder in the store (ints where the folder name is all digits)."""
        names = [n for n in self._listdir(self.runs_root) if not n.startswith(".")]
        ids = [_parse_run_id(n) for n in names]
        return sorted(ids, key=lambda r: (isinstance(r, str), r if isinstance(r, int) else 0, str(r)))

    def node_uuids(self, run_id: Any) -> list[str]:
        """Node uuids with saved outputs (a manifest) in a run, sorted."""
        run_dir = self.run_path(run_id)
        out = set(_runlog.live_nodes(self.log_path(run_id))) if self.local else set()
        for name in self._listdir(run_dir):
            if name == _runlog.LOG:
                continue
            node_dir = self._join(run_dir, name)
            mpath = self._join(node_dir, MANIFEST)
            if not self._exists(mpath):
                continue
            text = unquote(name)
            if "~" in name:  # shortened name: the manifest has the real uuid
                m = self.manifest_from_path(mpath)
                text = m.node_uuid if m else text
            out.add(text)
        return sorted(out)

    def manifest_from_path(self, path: str) -> OutputManifest | None:
        try:
            raw = open(path, "rb").read() if self.local else self.fs.cat_file(path)
            return OutputManifest.from_dict(json.loads(raw))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def delete_run(self, run_id: Any) -> bool:
        """Remove all outputs of a run. True if there was something to remove."""
        path = self.run_path(run_id)
        try:
            if self.local:
                _runlog.forget(self.log_path(run_id))
                if not os.path.isdir(path):
                    return False
                shutil.rmtree(path)
            else:
                if not self.fs.exists(path):
                    return False
                self.fs.rm(path, recursive=True)
        except OSError as exc:
            raise StoreError(f"cannot delete the outputs of run {run_id}: {exc}", file=path) from exc
        return True

    def _run_newest_time(self, run_id: Any) -> float | None:
        """Newest manifest mtime in the run (the log's mtime: its last line); for node
        folders without a manifest (a block still writing, or a crash) the newest file in
        them, so in-flight runs look new."""
        run_dir = self.run_path(run_id)
        if not self._isdir(run_dir):
            return None
        times: list[float] = []
        for name in self._listdir(run_dir):
            node_dir = self._join(run_dir, name)
            if name == _runlog.LOG:
                t = self._mtime(node_dir)
                if t is not None:
                    times.append(t)
                continue
            t = self._mtime(self._join(node_dir, MANIFEST))
            if t is None:
                for f in self._listdir(node_dir):
                    ft = self._mtime(self._join(node_dir, f))
                    if ft is not None:
                        times.append(ft)
                t = self._mtime(node_dir) if self.local else None
            if t is not None:
                times.append(t)
        if not times and self.local:
            t = self._mtime(run_dir)
            if t is not None:
                times.append(t)
        return max(times) if times else 0.0

    def clean(self, older_than_seconds: float | None = None, run_ids: Iterable[Any] | None = None) -> int:
        """Remove run folders; return how many were removed.

        `clean(3600)` removes runs whose manifests are all older than an hour.
        `clean(run_ids=[1, 2])` removes those runs; with both, only those that are old.
        """
        if older_than_seconds is None and run_ids is None:
            raise ValueError("clean() needs older_than_seconds, run_ids, or both")
        candidates = list(run_ids) if run_ids is not None else self.run_ids()
        cutoff = time.time() - older_than_seconds if older_than_seconds is not None else None
        removed = 0
        for run_id in candidates:
            if cutoff is not None:
                newest = self._run_newest_time(run_id)
                if newest is None or newest > cutoff:
                    continue
            if self.delete_run(run_id):
                removed += 1
        return removed
