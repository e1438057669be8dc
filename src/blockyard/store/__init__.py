"""Block outputs: typed codecs + run/node path layout over fsspec.

    from blockyard.store import ArtifactStore, register_codec
    store = ArtifactStore(path_or_url)
    m = store.save_outputs(run_id, node_uuid, [df, X, model])
    df, X, model = store.load_outputs(run_id, node_uuid)

Importing this package does not import pandas, pyarrow, numpy, scipy or fsspec, nor
any of its own modules: the names below resolve on first use, so no submodule
importing a sibling (`blockyard.store.hashing`, ...) runs back into this file.

Modules: `artifact_store` (the store: paths, listing, cleanup) over `fs_ops` (file
operations), `writer` (saving), `reader` (loading, digest checks) and `manifest`;
`codecs` (the registry) over `codec_base`, `codecs_frames` and `codecs_builtin`;
`hashing` (content digests); `summary` (what the UI shows of an output).
"""
from __future__ import annotations

# public name -> the module that defines it
_EXPORTS = {
    "ArtifactStore": "artifact_store",
    "CorruptOutputError": "manifest",
    "OutputManifest": "manifest",
    "quote_name": "manifest",
    "Codec": "codec_base",
    "CodecSkip": "codec_base",
    "register_codec": "codecs",
    "unregister_codec": "codecs",
    "registered_codecs": "codecs",
    "get_codec": "codecs",
    "candidate_codecs": "codecs",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'blockyard.store' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"blockyard.store.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
