"""Block outputs: typed codecs + run/node path layout over fsspec.

    from blockyard.store import ArtifactStore, register_codec
    store = ArtifactStore(path_or_url)
    m = store.save_outputs(run_id, node_uuid, [df, X, model])
    df, X, model = store.load_outputs(run_id, node_uuid)

Importing this package does not import pandas, pyarrow, numpy, scipy or fsspec.
"""
from __future__ import annotations

from blockyard.store.artifact_store import ArtifactStore, CorruptOutputError, OutputManifest, quote_name
from blockyard.store.codecs import (
    Codec,
    CodecSkip,
    candidate_codecs,
    get_codec,
    register_codec,
    registered_codecs,
    unregister_codec,
)

__all__ = [
    "ArtifactStore",
    "CorruptOutputError",
    "OutputManifest",
    "Codec",
    "CodecSkip",
    "register_codec",
    "unregister_codec",
    "registered_codecs",
    "get_codec",
    "candidate_codecs",
    "quote_name",
]
