"""The manifest of a node's saved outputs, and the names and digests it is built from.

Layout::

    <root>/runs/<run_id>/<quoted node uuid>/output_0.arrow
                                           /output_1.npz
                                           /manifest.json      (written last)
    <root>/runs/<run_id>/inline+manifests.jsonl   (local stores: one manifest a line for
                                                   nodes whose outputs are all inline)
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import quote

import blockyard.store.hashing as _hashing
from blockyard.errors import StoreError

# JSON outputs up to this size are kept inside the manifest (no file of their own).
INLINE_MAX_BYTES = 16 * 1024
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
_TMP_PREFIX = ".tmp-"
_MAX_NAME = 200


class CorruptOutputError(StoreError):
    """A stored output's bytes do not match the digest recorded when it was written."""


@dataclass
class OutputManifest:
    run_id: Any
    node_uuid: str
    digest: str
    outputs: list[dict] = field(default_factory=list)
    created_at: float | None = None
    # Where it was read from or written to: the node's manifest.json, or the run's log
    # for an all-inline save (local stores). Not part of the manifest's JSON.
    source: str | None = field(default=None, repr=False, compare=False)

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
    return _quote_text(str(name))


@lru_cache(maxsize=4096)  # called for every saved and loaded node; a pure function of the text
def _quote_text(name: str) -> str:
    text = quote(name, safe="")
    if text in ("", ".", ".."):
        text = text.replace(".", "%2E") or "%00"
    if len(text) > _MAX_NAME:
        suffix = hashlib.blake2b(name.encode(), digest_size=8).hexdigest()
        text = f"{text[: _MAX_NAME - 20]}~{suffix}"
    return text


def combined_digest(entries: list[dict]) -> str:
    """The node's digest: BLAKE2b over, for each output in order, its codec name, its
    file size and its file's BLAKE2b (a hash list: equal files + codecs <=> equal digest)."""
    parts = [f"blockyard-outputs:{len(entries)}\0".encode()]
    for e in entries:
        parts.append(f"{e['codec']}\0".encode())
        parts.append(int(e["bytes"]).to_bytes(8, "little"))
        parts.append(bytes.fromhex(e["blake2b"]))
    h = _hashing.new_hash()
    h.update(b"".join(parts))  # one update of the concatenation: the same digest as one per part
    return h.hexdigest()
