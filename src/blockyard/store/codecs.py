"""The codec registry: which codecs the store asks, in which order.

The store asks the registered codecs in order; the first whose `can_encode(obj)` is true
and whose `save` does not raise `CodecSkip` wins. The last codec (cloudpickle) takes
anything.

Import discipline: no heavy library is imported at import time, and a codec's
`can_encode` only looks at libraries that are already in `sys.modules` (an object cannot
be a pandas DataFrame if pandas was never imported), so asking "can you store this int?"
never imports pandas, scipy, xgboost or scikit-learn.

The codecs themselves live in `codec_base` (the interface and I/O helpers),
`codecs_frames` (pandas, polars) and `codecs_builtin` (the rest); they are re-exported
here.
"""
from __future__ import annotations

import threading
from typing import Any

from blockyard.store.codec_base import Codec, CodecSkip, LocalFS, is_local_fs, json_exact  # noqa: F401
from blockyard.store.codecs_builtin import (  # noqa: F401
    JsonCodec,
    NumpyCodec,
    PickleCodec,
    ScipySparseCodec,
    SklearnCodec,
    XGBoostBoosterCodec,
)
from blockyard.store.codecs_frames import PandasFrameCodec, PandasSeriesCodec, PolarsFrameCodec  # noqa: F401

__all__ = [
    "Codec",
    "CodecSkip",
    "register_codec",
    "unregister_codec",
    "get_codec",
    "registered_codecs",
    "candidate_codecs",
    "is_local_fs",
]


# --- registry -----------------------------------------------------------------------------

_LOCK = threading.Lock()
_FALLBACK = PickleCodec()
_CODECS: list[Any] = [
    PandasFrameCodec(),
    PandasSeriesCodec(),
    PolarsFrameCodec(),
    ScipySparseCodec(),
    NumpyCodec(),
    XGBoostBoosterCodec(),
    SklearnCodec(),
    JsonCodec(),
    _FALLBACK,
]


def register_codec(codec: Any, first: bool = True) -> None:
    """Add a codec. `first=True` puts it before the built-ins; `first=False` puts it just
    before the cloudpickle fallback. A codec with the same name is replaced (files saved
    with that name are then read by the new codec)."""
    for attr in ("name", "extension", "can_encode", "save", "load"):
        if not hasattr(codec, attr):
            raise TypeError(f"codec {codec!r} has no {attr!r}")
    if not codec.name:
        raise ValueError(f"codec {codec!r} needs a non-empty name")
    with _LOCK:
        _CODECS[:] = [c for c in _CODECS if c.name != codec.name]
        if first:
            _CODECS.insert(0, codec)
        else:
            pos = _CODECS.index(_FALLBACK) if _FALLBACK in _CODECS else len(_CODECS)
            _CODECS.insert(pos, codec)


def unregister_codec(name: str) -> bool:
    with _LOCK:
        before = len(_CODECS)
        _CODECS[:] = [c for c in _CODECS if c.name != name]
        return len(_CODECS) != before


def registered_codecs() -> list[Any]:
    with _LOCK:
        return list(_CODECS)


def get_codec(name: str) -> Any | None:
    with _LOCK:
        for codec in _CODECS:
            if codec.name == name:
                return codec
    return None


def candidate_codecs(obj: Any) -> list[Any]:
    """Codecs that say they can encode `obj`, in order; cloudpickle is always last."""
    out = []
    for codec in registered_codecs():
        try:
            ok = codec.can_encode(obj)
        except Exception:
            ok = False
        if ok:
            out.append(codec)
    if _FALLBACK not in out and get_codec(_FALLBACK.name) is _FALLBACK:
        out.append(_FALLBACK)
    return out
