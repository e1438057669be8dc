"""ArtifactStore: block outputs on any fsspec filesystem.

Layout::

    <root>/runs/<run_id>/<quoted node uuid>/output_0.arrow
                                           /output_1.npz
                                           /manifest.json      (written last)

A node folder counts as saved only when its manifest exists. On the local filesystem every
output file and the manifest are written to a temp name and renamed into place, so a crash
never leaves a half-written manifest, and a frame still memory-mapped from an earlier save
of the same node keeps its (old, unlinked) file instead of seeing it overwritten.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import posixpath
import shutil
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable
from urllib.parse import quote, unquote

from blockyard.errors import StoreError
from blockyard.store import codecs as _codecs
from blockyard.store import hashing as _hashing
from blockyard.store import summary as _summary

# JSON outputs up to this size are kept inside the manifest (no file of their own).
INLINE_MAX_BYTES = 16 * 1024
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
_TMP_PREFIX = ".tmp-"
_MAX_NAME = 200
# Files already checked against their digest in this process: (path, size, mtime, inode, digest).
_verified: set[tuple] = set()


class CorruptOutputError(StoreError):
    """A stored output's bytes do not match the digest recorded when it was written."""


@dataclass
class OutputManifest:
    run_id: Any
    node_uuid: str
    digest: str
    outputs: list[dict] = field(default_factory=list)
    created_at: float | None = None

    def to_dict(self) -> dict:
        # Not dataclasses.asdict: it deep-copies every entry (0.1 ms a block run).
        return {
            "format": MANIFEST_FORMAT,
            "run_id": self.run_id,
            "node_uuid": self.node_uuid,
            "digest": self.digest,
            "outputs": list(self.outputs),
            "created_at": self.created_at,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "OutputManifest":
        return cls(
            run_id=data["run_id"],
            node_uuid=data["node_uuid"],
            digest=data["digest"],
            outputs=list(data["outputs"]),
            created_at=data.get("created_at"),
        )


def quote_name(name: str) -> str:
    """Folder name for a node uuid / run id: urllib quote with no safe characters;
    '.'/'..' are escaped and very long names shortened with a hash suffix."""
    text = quote(str(name), safe="")
    if text in ("", ".", ".."):
        text = text.replace(".", "%2E") or "%00"
    if len(text) > _MAX_NAME:
        suffix = hashlib.blake2b(str(name).encode(), digest_size=8).hexdigest()
        text = f"{text[: _MAX_NAME - 20]}~{suffix}"
    return text


def combined_digest(entries: list[dict]) -> str:
    """The node's digest: BLAKE2b over, for each output in order, its codec name, its
    file size and its file's BLAKE2b (a hash list: equal files + codecs <=> equal digest)."""
    h = _hashing.new_hash()
    h.update(f"blockyard-outputs:{len(entries)}\0".encode())
    for e in entries:
        h.update(f"{e['codec']}\0".encode())
        h.update(int(e["bytes"]).to_bytes(8, "little"))
        h.update(bytes.fromhex(e["blake2b"]))
    return h.hexdigest()


_pool = None
_pool_pid = None
_pool_lock = threading.Lock()


def _save_pool():
    """Threads shared by all stores for writing a block's outputs in parallel (re-made
    after a fork)."""
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():
            from concurrent.futures import ThreadPoolExecutor

            _pool = ThreadPoolExecutor(
                max_workers=max(2, min(4, os.cpu_count() or 1)), thread_name_prefix="blockyard-save"
            )
            _pool_pid = os.getpid()
        return _pool


_tmp_counter = itertools.count()


def _tmp_tag() -> str:
    """A name unique among concurrent writers (process id + counter; no urandom call)."""
    return f"{os.getpid()}-{next(_tmp_counter)}"


def _parse_run_id(name: str) -> Any:
    text = unquote(name)
    return int(text) if text.isdigit() else text


class ArtifactStore:
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
            fs = _codecs.LocalFS()
            root = os.path.abspath(os.path.expanduser(text))
        self.url = text
        self.fs = fs
        self.local = _codecs.is_local_fs(fs)
        self.root = root.rstrip("/") if root not in ("/", "") else root
        self.fsync = fsync
        self._run_dirs: set = set()

    def __repr__(self) -> str:
        return f"ArtifactStore({self.url!r})"

    # --- paths -------------------------------------------------------------------------

    def _join(self, *parts: str) -> str:
        if self.local:
            return os.path.join(*parts)
        return posixpath.join(*parts)

    @property
    def runs_root(self) -> str:
        return self._join(self.root, "runs")

    def run_path(self, run_id: Any) -> str:
        return self._join(self.runs_root, quote_name(str(run_id)))

    def node_path(self, run_id: Any, node_uuid: str) -> str:
        return self._join(self.run_path(run_id), quote_name(node_uuid))

    def manifest_path(self, run_id: Any, node_uuid: str) -> str:
        return self._join(self.node_path(run_id, node_uuid), MANIFEST)

    def output_path(self, run_id: Any, node_uuid: str, index: int) -> str:
        m = self._require_manifest(run_id, node_uuid)
        entry = self._entry(m, index)
        if entry.get("file") is None:
            raise StoreError(
                f"{entry.get('name')} of block '{node_uuid}' in run {run_id} is stored inline "
                "in the manifest and has no file of its own",
                file=self.manifest_path(run_id, node_uuid),
                block=node_uuid,
            )
        return self._join(self.node_path(run_id, node_uuid), entry["file"])

    # --- small fs helpers (local fast path) ---------------------------------------------

    def _makedirs(self, path: str) -> None:
        if self.local:
            os.makedirs(path, exist_ok=True)
        else:
            self.fs.makedirs(path, exist_ok=True)

    def _exists(self, path: str) -> bool:
        return os.path.exists(path) if self.local else self.fs.exists(path)

    def _remove(self, path: str) -> None:
        try:
            if self.local:
                os.remove(path)
            else:
                self.fs.rm_file(path)
        except FileNotFoundError:
            pass

    def _listdir(self, path: str) -> list[str]:
        """Base names in a folder ([] if missing)."""
        if self.local:
            try:
                return os.listdir(path)
            except (FileNotFoundError, NotADirectoryError):
                return []
        try:
            entries = self.fs.ls(path, detail=False)
        except FileNotFoundError:
            return []
        return [posixpath.basename(e.rstrip("/")) for e in entries]

    def _isdir(self, path: str) -> bool:
        return os.path.isdir(path) if self.local else self.fs.isdir(path)

    def _mtime(self, path: str) -> float | None:
        if self.local:
            try:
                return os.stat(path).st_mtime
            except FileNotFoundError:
                return None
        try:
            return self.fs.modified(path).timestamp()
        except (FileNotFoundError, NotImplementedError, AttributeError):
            pass
        try:
            info = self.fs.info(path)
        except FileNotFoundError:
            return None
        for key in ("mtime", "LastModified", "last_modified", "updated", "created", "modified"):
            value = info.get(key)
            if value is None:
                continue
            if hasattr(value, "timestamp"):
                return value.timestamp()
            try:
                return float(value)
            except (TypeError, ValueError):
                continue
        return None

    def _fsync_file(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # --- save ----------------------------------------------------------------------------

    def save_outputs(self, run_id: Any, node_uuid: str, outputs: list) -> OutputManifest:
        """Write each output with the first codec that takes it, then the manifest.

        Replaces earlier outputs of the same node in the same run. Each entry records its
        file's BLAKE2b (tree mode, see `hashing`) and size; the manifest digest is BLAKE2b
        over, per output in order, codec name + size + file digest, so it is equal exactly
        when the files' bytes and codecs are equal, on any filesystem.
        """
        if not isinstance(outputs, (list, tuple)):
            raise StoreError(
                f"outputs of block '{node_uuid}' in run {run_id} must be a list, got {type(outputs).__name__}",
                block=node_uuid,
            )
        node_dir = self.node_path(run_id, node_uuid)
        manifest_path = self._join(node_dir, MANIFEST)
        try:
            fresh = self._make_node_dir(run_id, node_dir)
            if not fresh:
                self._remove(manifest_path)  # the node is "not saved" until the new manifest lands
        except OSError as exc:
            raise StoreError(
                f"cannot prepare the output folder of block '{node_uuid}' in run {run_id}: {exc}",
                file=node_dir,
                block=node_uuid,
            ) from exc
        entries = self._save_all(run_id, node_uuid, node_dir, list(outputs))
        manifest = OutputManifest(
            run_id=run_id,
            node_uuid=node_uuid,
            digest=combined_digest(entries),
            outputs=entries,
            created_at=time.time(),
        )
        self._write_manifest(manifest, manifest_path, node_uuid)
        if fresh:  # nothing stale can be in a folder this call created
            return manifest
        keep = {e["file"] for e in entries if e.get("file")} | {MANIFEST}
        for name in self._listdir(node_dir):
            if name not in keep:  # outputs of an earlier save with more outputs, stale temps
                self._remove(self._join(node_dir, name))
        return manifest

    def _save_all(self, run_id: Any, node_uuid: str, node_dir: str, outputs: list) -> list[dict]:
        """Several outputs of one block (the course's `build` returns seven) are written
        at the same time: Arrow, numpy and zip writes release the GIL."""
        if len(outputs) < 2:
            return [self._save_one(run_id, node_uuid, node_dir, i, o) for i, o in enumerate(outputs)]
        pool = _save_pool()
        futures = [
            pool.submit(self._save_one, run_id, node_uuid, node_dir, i, o)
            for i, o in enumerate(outputs)
        ]
        return [f.result() for f in futures]

    def _make_node_dir(self, run_id: Any, node_dir: str) -> bool:
        """Create the node's folder; True when this call created it (so it is empty).

        The run folder is made once per store object: thousands of block runs of one
        run then cost one mkdir each, not a makedirs walk."""
        if not self.local:
            self.fs.makedirs(node_dir, exist_ok=True)
            return False
        if run_id not in self._run_dirs:
            os.makedirs(self.run_path(run_id), exist_ok=True)
            self._run_dirs.add(run_id)
        try:
            os.mkdir(node_dir)
            return True
        except FileExistsError:
            return False
        except FileNotFoundError:  # the run folder was removed meanwhile (clean)
            os.makedirs(node_dir, exist_ok=True)
            return False

    def _save_inline(self, name: str, obj: Any) -> dict | None:
        """Small JSON values live in the manifest itself: no file, no extra open."""
        codecs = _codecs.candidate_codecs(obj)
        if not codecs or codecs[0].name != "json":
            return None
        try:
            data = json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
        except (ValueError, TypeError, RecursionError):
            return None
        if len(data) > INLINE_MAX_BYTES:
            return None
        summary, sample = self._summarize(codecs[0], obj)
        return {
            "name": name,
            "codec": "json",
            "file": None,
            "inline": data.decode(),
            "bytes": len(data),
            "blake2b": hashlib.blake2b(b"inline\0" + data).hexdigest(),
            "summary": summary,
            "sample": sample,
        }

    def _save_one(self, run_id: Any, node_uuid: str, node_dir: str, index: int, obj: Any) -> dict:
        name = f"output_{index}"
        inline = self._save_inline(name, obj)
        if inline is not None:
            return inline
        skipped: list[str] = []
        for codec in _codecs.candidate_codecs(obj):
            file = f"{name}{codec.extension}"
            final = self._join(node_dir, file)
            target = self._join(node_dir, f"{_TMP_PREFIX}{_tmp_tag()}-{file}") if self.local else final
            try:
                info = codec.save(obj, self.fs, target)
            except _codecs.CodecSkip as exc:
                self._remove(target)
                skipped.append(f"{codec.name}: {exc}")
                continue
            except Exception as exc:
                self._remove(target)
                raise StoreError(
                    f"cannot write {name} ({_summary.type_name(obj)}) of block '{node_uuid}' in run {run_id} "
                    f"with codec '{codec.name}': {type(exc).__name__}: {exc}",
                    file=final,
                    block=node_uuid,
                ) from exc
            try:
                if isinstance(info, dict) and info.get("blake2b") and "bytes" in info:
                    digest, size = str(info["blake2b"]), int(info["bytes"])
                else:
                    digest, size = _hashing.hash_file(self.fs, target, self.local)
                if self.local:
                    if self.fsync:
                        self._fsync_file(target)
                    os.replace(target, final)
            except OSError as exc:
                self._remove(target)
                raise StoreError(
                    f"cannot finish {name} of block '{node_uuid}' in run {run_id}: {exc}",
                    file=final,
                    block=node_uuid,
                ) from exc
            summary, sample = self._summarize(codec, obj)
            entry = {
                "name": name,
                "codec": codec.name,
                "file": file,
                "bytes": size,
                "blake2b": digest,
                "summary": summary,
                "sample": sample,
            }
            if skipped:
                entry["skipped"] = skipped
            return entry
        raise StoreError(
            f"no codec can store {name} ({_summary.type_name(obj)}) of block '{node_uuid}' in run {run_id}"
            + (f": {'; '.join(skipped)}" if skipped else ""),
            file=self._join(node_dir, name),
            block=node_uuid,
        )

    @staticmethod
    def _summarize(codec: Any, obj: Any) -> tuple[Any, Any]:
        fn = getattr(codec, "summarize", None)
        try:
            summary, sample = fn(obj) if fn is not None else _summary.generic(obj)
            summary, sample = _summary.strict(summary), _summary.strict(sample)
            json.dumps([summary, sample], allow_nan=False)
        except Exception as exc:  # a summary must never fail a save
            summary, sample = _summary.generic(obj)
            summary["summary_error"] = f"{type(exc).__name__}: {exc}"[:200]
        return summary, sample

    def _write_manifest(self, manifest: OutputManifest, path: str, node_uuid: str) -> None:
        data = json.dumps(manifest.to_dict(), separators=(",", ":"), default=str, allow_nan=False).encode()
        try:
            if self.local:
                tmp = f"{path}{_TMP_PREFIX}{_tmp_tag()}"
                with open(tmp, "wb") as f:
                    f.write(data)
                    if self.fsync:
                        f.flush()
                        os.fsync(f.fileno())
                os.replace(tmp, path)
                if self.fsync:
                    fd = os.open(os.path.dirname(path), os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
            else:
                self.fs.pipe_file(path, data)
        except OSError as exc:
            raise StoreError(
                f"cannot write the manifest of block '{node_uuid}' in run {manifest.run_id}: {exc}",
                file=path,
                block=node_uuid,
            ) from exc

    # --- read ----------------------------------------------------------------------------

    def manifest(self, run_id: Any, node_uuid: str) -> OutputManifest | None:
        path = self.manifest_path(run_id, node_uuid)
        try:
            if self.local:
                with open(path, "rb") as f:
                    raw = f.read()
            else:
                raw = self.fs.cat_file(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(
                f"cannot read the manifest of block '{node_uuid}' in run {run_id}: {exc}", file=path, block=node_uuid
            ) from exc
        try:
            return OutputManifest.from_dict(json.loads(raw))
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(
                f"the manifest of block '{node_uuid}' in run {run_id} is corrupt: {type(exc).__name__}: {exc}",
                file=path,
                block=node_uuid,
                hint="delete the run's outputs and run the block again",
            ) from exc

    def has_outputs(self, run_id: Any, node_uuid: str) -> bool:
        return self._exists(self.manifest_path(run_id, node_uuid))

    def _require_manifest(self, run_id: Any, node_uuid: str) -> OutputManifest:
        m = self.manifest(run_id, node_uuid)
        if m is None:
            raise StoreError(
                f"no saved outputs for block '{node_uuid}' in run {run_id}",
                file=self.manifest_path(run_id, node_uuid),
                block=node_uuid,
                hint="run the block first; the run's outputs may have been cleaned",
            )
        return m

    @staticmethod
    def _entry(m: OutputManifest, index: int) -> dict:
        n = len(m.outputs)
        if not -n <= index < n:
            raise StoreError(
                f"block '{m.node_uuid}' in run {m.run_id} has {n} output(s); there is no output_{index}",
                block=m.node_uuid,
            )
        return m.outputs[index]

    def _load_entry(self, m: OutputManifest, entry: dict) -> Any:
        if entry.get("inline") is not None and entry.get("codec") == "json":
            self._verify_inline(m, entry)
            return json.loads(entry["inline"])
        node_dir = self.node_path(m.run_id, m.node_uuid)
        path = self._join(node_dir, entry["file"] or MANIFEST)
        where = f"{entry.get('name', entry['file'])} of block '{m.node_uuid}' in run {m.run_id}"
        codec = _codecs.get_codec(entry["codec"])
        if codec is None:
            raise StoreError(
                f"cannot read {where}: no codec named '{entry['codec']}' is registered",
                file=path,
                block=m.node_uuid,
                hint="register_codec() the codec that wrote it before loading",
            )
        if entry.get("file"):
            self._verify_file(m, entry, path)
        try:
            return codec.load(self.fs, path)
        except FileNotFoundError as exc:
            raise StoreError(f"cannot read {where}: the file is missing", file=path, block=m.node_uuid) from exc
        except Exception as exc:
            raise StoreError(
                f"cannot read {where} with codec '{codec.name}': {type(exc).__name__}: {exc}",
                file=path,
                block=m.node_uuid,
            ) from exc

    # --- digest verification: a changed file is an error, never a silent wrong value ---

    def _verify_inline(self, m: OutputManifest, entry: dict) -> None:
        expected = entry.get("blake2b")
        if expected and hashlib.blake2b(b"inline\0" + entry["inline"].encode()).hexdigest() != expected:
            raise CorruptOutputError(
                f"output {entry.get('name')} of block '{m.node_uuid}' in run {m.run_id} does not match "
                "its stored digest (the manifest was changed after it was written)",
                file=self.manifest_path(m.run_id, m.node_uuid),
                block=m.node_uuid,
            )

    def _verify_file(self, m: OutputManifest, entry: dict, path: str) -> None:
        """Hash the file (XXH3 leaves: ~15 GB/s) and compare with the manifest. A file
        verified once is not hashed again while its size, mtime and inode are unchanged."""
        expected = entry.get("blake2b")
        if not expected:
            return
        stamp = None
        if self.local:
            try:
                st = os.stat(path)
            except FileNotFoundError:
                return  # the codec reports the missing file with its own message
            stamp = (path, st.st_size, st.st_mtime_ns, st.st_ino, expected)
            if stamp in _verified:
                return
        try:
            digest, size = _hashing.hash_file(self.fs, path, self.local)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StoreError(
                f"cannot read {entry.get('name')} of block '{m.node_uuid}' in run {m.run_id}: {exc}",
                file=path,
                block=m.node_uuid,
            ) from exc
        if digest != expected or ("bytes" in entry and int(entry["bytes"]) != size):
            raise CorruptOutputError(
                f"output file {entry.get('file')} of block '{m.node_uuid}' in run {m.run_id} is corrupt: "
                f"its content digest {digest[:16]}... does not match the stored {str(expected)[:16]}...",
                file=path,
                block=m.node_uuid,
                hint="the file was changed after the block wrote it; run the block again "
                "(a cached result that fails this check is recomputed)",
            )
        if stamp is not None:
            if len(_verified) > 4096:
                _verified.clear()
            _verified.add(stamp)

    def verify_outputs(self, run_id: Any, node_uuid: str) -> None:
        """Raise CorruptOutputError (or StoreError) unless every stored output of the node
        matches the digest in its manifest."""
        m = self._require_manifest(run_id, node_uuid)
        node_dir = self.node_path(m.run_id, m.node_uuid)
        for entry in m.outputs:
            if entry.get("inline") is not None and entry.get("codec") == "json":
                self._verify_inline(m, entry)
            elif entry.get("file"):
                path = self._join(node_dir, entry["file"])
                if not self._exists(path):
                    raise StoreError(
                        f"output file {entry['file']} of block '{m.node_uuid}' in run {m.run_id} is missing",
                        file=path,
                        block=m.node_uuid,
                    )
                self._verify_file(m, entry, path)

    def load_outputs(self, run_id: Any, node_uuid: str) -> list:
        m = self._require_manifest(run_id, node_uuid)
        return [self._load_entry(m, e) for e in m.outputs]

    def load_output(self, run_id: Any, node_uuid: str, index: int) -> Any:
        m = self._require_manifest(run_id, node_uuid)
        return self._load_entry(m, self._entry(m, index))

    # --- listing and cleanup -----------------------------------------------------------------

    def run_ids(self) -> list:
        """Run ids with a folder in the store (ints where the folder name is all digits)."""
        names = [n for n in self._listdir(self.runs_root) if not n.startswith(".")]
        ids = [_parse_run_id(n) for n in names]
        return sorted(ids, key=lambda r: (isinstance(r, str), r if isinstance(r, int) else 0, str(r)))

    def node_uuids(self, run_id: Any) -> list[str]:
        """Node uuids with saved outputs (a manifest) in a run."""
        run_dir = self.run_path(run_id)
        out = []
        for name in sorted(self._listdir(run_dir)):
            node_dir = self._join(run_dir, name)
            mpath = self._join(node_dir, MANIFEST)
            if not self._exists(mpath):
                continue
            text = unquote(name)
            if "~" in name:  # shortened name: the manifest has the real uuid
                m = self.manifest_from_path(mpath)
                text = m.node_uuid if m else text
            out.append(text)
        return out

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
        """Newest manifest mtime in the run; for node folders without a manifest (a block
        still writing, or a crash) the newest file in them, so in-flight runs look new."""
        run_dir = self.run_path(run_id)
        if not self._isdir(run_dir):
            return None
        times: list[float] = []
        for name in self._listdir(run_dir):
            node_dir = self._join(run_dir, name)
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
