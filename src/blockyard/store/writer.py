"""Saving a node's outputs: each with the first codec that takes it (small JSON values
inline in the manifest), several at once, every file and the manifest written to a temp
name and renamed into place on the local filesystem. On the local filesystem a node whose
outputs are all inline gets no folder: its manifest is a line of the run's log (`runlog`)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
from typing import Any

import blockyard.store.codecs as _codecs
import blockyard.store.hashing as _hashing
import blockyard.store.runlog as _runlog
import blockyard.store.summary as _summary
from blockyard.errors import StoreError
from blockyard.store.codec_base import JSON_SCALARS
from blockyard.store.fs_ops import _tmp_tag
from blockyard.store.manifest import (
    INLINE_MAX_BYTES,
    MANIFEST,
    MANIFEST_FORMAT,
    _TMP_PREFIX,
    OutputManifest,
    combined_digest,
)

# The encoders json.dumps would build for these arguments on every call, built once (they
# keep no state between calls). Same options, so the same text.
_INLINE_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
_CHECK_JSON = json.JSONEncoder(allow_nan=False)
_MANIFEST_JSON = json.JSONEncoder(separators=(",", ":"), default=str, allow_nan=False)
_encode_str = json.encoder.encode_basestring_ascii  # JSONEncoder.encode(str) with ensure_ascii
_SCALARS = frozenset(JSON_SCALARS)
_INFINITIES = (float("inf"), float("-inf"))
_NAMES = tuple(f"output_{i}" for i in range(16))


def _output_name(index: int) -> str:
    return _NAMES[index] if index < len(_NAMES) else f"output_{index}"
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)

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

class _ScalarEntry(dict):
    """The inline entry of a short scalar output (None, a bool, a number, a short string),
    with its JSON text and the digest of a save of it alone: both are the same every time
    the same value is saved under the same name, so they are worked out once (`_scalar`)."""

    __slots__ = ("json", "alone")


_SCALAR_TEXT_MAX = 64  # longer scalars are not kept
_SCALARS_MAX = 1024  # distinct (name, value) kept; cleared when full
_scalars: dict[tuple, _ScalarEntry] = {}


def _scalar(name: str, t: type, text: str, make) -> _ScalarEntry:
    """A copy of the kept entry of this scalar, made with `make()` the first time."""
    key = (name, t, text)
    kept = _scalars.get(key)
    if kept is None:
        kept = _ScalarEntry(make())
        kept.json = _MANIFEST_JSON.encode(kept)
        kept.alone = combined_digest([kept])
        if len(_scalars) >= _SCALARS_MAX:
            _scalars.clear()
        _scalars[key] = kept
    entry = _ScalarEntry(kept)
    entry["summary"] = dict(kept["summary"])  # the one mutable part a caller might touch
    entry.json, entry.alone = kept.json, kept.alone
    return entry


def _logged_line(manifest: OutputManifest, entries: list) -> bytes:
    """The run-log line of an all-inline manifest: `_MANIFEST_JSON.encode(manifest.to_dict())`
    plus a newline, assembled from the kept JSON of scalar entries when all are (~5 us less)."""
    run_id = manifest.run_id
    t = type(run_id)
    if entries and (t is int or t is str) and all(type(e) is _ScalarEntry for e in entries):
        rid = int.__repr__(run_id) if t is int else _encode_str(run_id)
        outputs = ",".join([e.json for e in entries])
        return (
            f'{{"format":{MANIFEST_FORMAT},"run_id":{rid},"node_uuid":{_encode_str(manifest.node_uuid)},'
            f'"digest":{_encode_str(manifest.digest)},"outputs":[{outputs}],'
            f'"created_at":{float.__repr__(manifest.created_at)}}}\n'
        ).encode()
    return _MANIFEST_JSON.encode(manifest.to_dict()).encode() + b"\n"


def _new_manifest(run_id: Any, node_uuid: str, entries: list[dict], source: str) -> OutputManifest:
    """A save's manifest; `source` is where it is written (manifest.json or the run log)."""
    if len(entries) == 1 and type(entries[0]) is _ScalarEntry:
        digest = entries[0].alone
    else:
        digest = combined_digest(entries)
    return OutputManifest(
        run_id=run_id, node_uuid=node_uuid, digest=digest, outputs=entries,
        created_at=time.time(), source=source,
    )


def _inline_entry(name: str, text: str, summary: Any, sample: Any) -> dict:
    data = text.encode()
    return {
        "name": name,
        "codec": "json",
        "file": None,
        "inline": text,
        "bytes": len(data),
        "blake2b": hashlib.blake2b(b"inline\0" + data).hexdigest(),
        "summary": summary,
        "sample": sample,
    }


class OutputWriter:
    """Mixin of `ArtifactStore` (with `StoreFiles`): needs `fs`, `local`, `_sep`, `fsync`,
    `_run_dirs` and the path methods."""

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
        outputs = list(outputs)
        planned: list[tuple] = []  # (inline entry or None, codecs) of the first outputs
        if self.local:
            for i, obj in enumerate(outputs):
                planned.append(self._plan(i, obj))
                if planned[-1][0] is None:
                    break
            else:  # every output inline: one line of the run's log, no folder
                return self._save_logged(run_id, node_uuid, [p[0] for p in planned])
        node_dir = self.node_path(run_id, node_uuid)
        manifest_path = f"{node_dir}{self._sep}{MANIFEST}"  # _join(node_dir, MANIFEST)
        try:
            if self.local:
                self._hide_logged(run_id, node_uuid)
            fresh = self._make_node_dir(run_id, node_dir)
            if not fresh:
                self._remove(manifest_path)  # the node is "not saved" until the new manifest lands
        except OSError as exc:
            raise StoreError(
                f"cannot prepare the output folder of block '{node_uuid}' in run {run_id}: {exc}",
                file=node_dir,
                block=node_uuid,
            ) from exc
        entries = self._save_all(run_id, node_uuid, node_dir, outputs, planned)
        manifest = _new_manifest(run_id, node_uuid, entries, manifest_path)
        self._write_manifest(manifest, manifest_path, node_uuid)
        if fresh:  # nothing stale can be in a folder this call created
            return manifest
        keep = {e["file"] for e in entries if e.get("file")} | {MANIFEST}
        for name in self._listdir(node_dir):
            if name not in keep:  # outputs of an earlier save with more outputs, stale temps
                self._remove(self._join(node_dir, name))
        return manifest

    def _save_logged(self, run_id: Any, node_uuid: str, entries: list[dict]) -> OutputManifest:
        """Append the manifest of an all-inline save to the run's log."""
        manifest = _new_manifest(run_id, node_uuid, entries, self.log_path(run_id))
        line = _logged_line(manifest, entries)
        log = manifest.source
        node_dir = self.node_path(run_id, node_uuid)
        try:
            # A folder from an earlier save of the node stops counting first, so the line
            # is its only manifest even if the clock stepped back (readers take the newest).
            # In a run folder this process made, with no node folder since, there is none
            # (a lookup of a name not there costs ~10 us on ext4).
            if _runlog.fresh(log):
                had_folder = False
            else:
                os.unlink(f"{node_dir}{self._sep}{MANIFEST}")
                had_folder = True
        except (FileNotFoundError, NotADirectoryError):
            had_folder = False
        except OSError as exc:
            raise StoreError(
                f"cannot replace the manifest of block '{node_uuid}' in run {run_id}: {exc}",
                file=f"{node_dir}{self._sep}{MANIFEST}",
                block=node_uuid,
            ) from exc
        try:
            _runlog.append(log, line, self.fsync)
        except OSError as exc:
            raise StoreError(
                f"cannot write the manifest of block '{node_uuid}' in run {run_id}: {exc}",
                file=log,
                block=node_uuid,
            ) from exc
        if had_folder:  # its files are outputs of the earlier save
            shutil.rmtree(node_dir, ignore_errors=True)
        return manifest

    def _hide_logged(self, run_id: Any, node_uuid: str) -> None:
        """Before a folder save, a line of the node in the run's log stops counting (a
        tombstone), so a save that fails leaves the node unsaved, not its older outputs."""
        log = self.log_path(run_id)
        _runlog.folder_made(log)
        if _runlog.has_node(log, node_uuid):
            _runlog.append(log, _runlog.tombstone(run_id, node_uuid, time.time()), self.fsync)

    def _save_all(self, run_id: Any, node_uuid: str, node_dir: str, outputs: list, planned: list) -> list[dict]:
        """Several outputs of one block (the course's `build` returns seven) are written
        at the same time: Arrow, numpy and zip writes release the GIL. `planned` holds
        `_plan` of the first outputs (done already when looking for an all-inline save)."""
        if len(outputs) < 2:
            return [self._save_one(run_id, node_uuid, node_dir, 0, outputs[0], planned[0] if planned else None)] if outputs else []
        pool = _save_pool()
        futures = [
            pool.submit(self._save_one, run_id, node_uuid, node_dir, i, o, planned[i] if i < len(planned) else None)
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

    def _save_inline(self, name: str, obj: Any, codec: Any) -> dict | None:
        """Small JSON values live in the manifest itself: no file, no extra open.

        `codec` is the JSON codec that leads for `obj`, or None on the fast path
        (`_codecs.json_first(obj)`: it is the built-in one, and its summary is built
        directly)."""
        t = type(obj)
        try:
            if t is str:
                text = _encode_str(obj)
            elif obj is None:
                text = "null"
            elif t is bool:
                text = "true" if obj else "false"
            elif t is int:
                text = int.__repr__(obj)  # what the JSON encoder writes for an int
            elif t is float:
                if obj != obj or obj in _INFINITIES:
                    return None  # not strict JSON: a file of its own, as json.dumps refuses it
                text = float.__repr__(obj)
            else:
                text = _INLINE_JSON.encode(obj)
        except (ValueError, TypeError, RecursionError):
            return None
        if len(text) > INLINE_MAX_BYTES:  # ASCII (ensure_ascii): characters == bytes
            return None
        if codec is None and t in _SCALARS:
            if len(text) <= _SCALAR_TEXT_MAX:
                return _scalar(name, t, text, lambda: _inline_entry(name, text, *_summary.json_scalar(obj)))
            return _inline_entry(name, text, *_summary.json_scalar(obj))
        if codec is not None:
            summary, sample = self._summarize(codec, obj)
        else:
            # json_value of a json_exact value is already strict JSON: no strict()/dumps check
            try:
                summary, sample = _summary.json_value(obj)
            except Exception:  # not expected; the general path records it as summary_error
                summary, sample = self._summarize(_codecs.get_codec("json"), obj)
        return _inline_entry(name, text, summary, sample)

    def _plan(self, index: int, obj: Any) -> tuple[dict | None, list | None]:
        """(the inline entry, None) for a small JSON value, else (None, the codecs to try)."""
        name = _output_name(index)
        if _codecs.json_first(obj):
            inline = self._save_inline(name, obj, None)
            if inline is not None:
                return inline, None
            return None, _codecs.candidate_codecs(obj)
        codecs = _codecs.candidate_codecs(obj)
        if codecs and codecs[0].name == "json":
            inline = self._save_inline(name, obj, codecs[0])
            if inline is not None:
                return inline, None
        return None, codecs

    def _save_one(self, run_id: Any, node_uuid: str, node_dir: str, index: int, obj: Any, plan: tuple | None) -> dict:
        inline, codecs = plan if plan is not None else self._plan(index, obj)
        if inline is not None:
            return inline
        name = _output_name(index)
        skipped: list[str] = []
        for codec in codecs:
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
            _CHECK_JSON.encode([summary, sample])
        except Exception as exc:  # a summary must never fail a save
            summary, sample = _summary.generic(obj)
            summary["summary_error"] = f"{type(exc).__name__}: {exc}"[:200]
        return summary, sample

    def _write_manifest(self, manifest: OutputManifest, path: str, node_uuid: str) -> None:
        data = _MANIFEST_JSON.encode(manifest.to_dict()).encode()
        try:
            if self.local:
                tmp = f"{path}{_TMP_PREFIX}{_tmp_tag()}"
                _write_file(tmp, data, self.fsync)  # os calls: no buffered file object
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


def _write_file(path: str, data: bytes, fsync: bool) -> None:
    """What open(path, "wb").write(data) does (same mode, umask and O_CLOEXEC)."""
    fd = os.open(path, _WRITE_FLAGS, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
