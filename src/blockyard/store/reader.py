"""Reading a node's outputs back, each checked against the digest its manifest
recorded: a changed file is an error, never a silent wrong value."""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import blockyard.store.codecs as _codecs
import blockyard.store.hashing as _hashing
import blockyard.store.runlog as _runlog
from blockyard.errors import StoreError
from blockyard.store.manifest import CorruptOutputError, OutputManifest

# Files already checked against their digest in this process: (path, size, mtime, inode, digest).
_verified: set[tuple] = set()


class OutputReader:
    """Mixin of `ArtifactStore` (with `StoreFiles`): needs `fs`, `local` and the path
    methods."""

    def manifest(self, run_id: Any, node_uuid: str) -> OutputManifest | None:
        """The node's manifest: its folder's, or on the local filesystem its last line in
        the run's log when that is newer (`created_at`; the folder's on a tie)."""
        folder = self._folder_manifest(run_id, node_uuid)
        if not self.local:
            return folder
        log = self.log_path(run_id)
        found = _runlog.lookup(log, node_uuid)
        if found is None:
            return folder
        created_at, line = found
        if folder is not None and (created_at is None or (folder.created_at or 0.0) >= created_at):
            return folder
        m = OutputManifest.from_dict(json.loads(line))  # checked to be a manifest when indexed
        m.source = log
        return m

    def _folder_manifest(self, run_id: Any, node_uuid: str) -> OutputManifest | None:
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
            m = OutputManifest.from_dict(json.loads(raw))
            m.source = path
            return m
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(
                f"the manifest of block '{node_uuid}' in run {run_id} is corrupt: {type(exc).__name__}: {exc}",
                file=path,
                block=node_uuid,
                hint="delete the run's outputs and run the block again",
            ) from exc

    def has_outputs(self, run_id: Any, node_uuid: str) -> bool:
        if self._exists(self.manifest_path(run_id, node_uuid)):
            return True
        return self.local and _runlog.has_node(self.log_path(run_id), node_uuid)

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
        path = self._join(node_dir, entry["file"]) if entry.get("file") else self._manifest_file(m)
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
                file=self._manifest_file(m),
                block=m.node_uuid,
            )

    def _manifest_file(self, m: OutputManifest) -> str:
        """The file holding the manifest (and so its inline outputs)."""
        return m.source or self.manifest_path(m.run_id, m.node_uuid)

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
