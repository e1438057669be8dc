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

from blockyard.store.codec_base import JSON_SCALARS, Codec, CodecSkip, LocalFS, is_local_fs, json_exact  # noqa: F401
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
    "json_first",
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


def _refresh() -> None:
    """Snapshot the registry after a change (call with `_LOCK` held): readers on the save
    path take the tuple without locking or copying."""
    global _ORDER, _FALLBACK_REGISTERED, _JSON_AHEAD
    _ORDER = tuple(_CODECS)
    _FALLBACK_REGISTERED = next((c for c in _ORDER if c.name == _FALLBACK.name), None) is _FALLBACK
    _JSON_AHEAD = _json_ahead(_ORDER)


def _json_ahead(order: tuple) -> tuple | None:
    """The codecs before the built-in JSON codec that must still be asked about a plain
    JSON value (those registered by users; the built-ins ahead of it never take one),
    or None when the JSON codec is not the built-in one, as registered."""
    ahead = []
    for codec in order:
        if type(codec) is JsonCodec and not _overridden(codec):
            return tuple(ahead)
        if codec.name == JsonCodec.name:  # replaced by another codec of that name
            return None
        if type(codec) not in _NOT_JSON or _overridden(codec):
            ahead.append(codec)
    return None


def _overridden(codec: Any) -> bool:
    """A method replaced on the instance: its answers are no longer the class's."""
    own = getattr(codec, "__dict__", {})
    return "can_encode" in own or "summarize" in own


# Built-in codecs whose can_encode is False for every json_exact value.
_NOT_JSON = (
    PandasFrameCodec,
    PandasSeriesCodec,
    PolarsFrameCodec,
    ScipySparseCodec,
    NumpyCodec,
    XGBoostBoosterCodec,
    SklearnCodec,
)
_JSON_TYPES = frozenset(JSON_SCALARS)
_ORDER: tuple = ()
_FALLBACK_REGISTERED = True
_JSON_AHEAD: tuple | None = None
with _LOCK:
    _refresh()


def json_first(obj: Any) -> bool:
    """True when `candidate_codecs(obj)` would start with the built-in JSON codec, found
    without asking every codec: `obj` is a plain JSON value (`json_exact`) and no codec
    registered ahead of JSON claims it (the store's fast path for small outputs)."""
    ahead = _JSON_AHEAD
    if ahead is None:
        return False
    t = type(obj)
    if t not in _JSON_TYPES and not ((t is dict or t is list) and json_exact(obj)):
        return False
    for codec in ahead:
        try:
            if codec.can_encode(obj):
                return False
        except Exception:  # as in candidate_codecs: a failing codec does not take it
            pass
    return True


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
        _refresh()


def unregister_codec(name: str) -> bool:
    with _LOCK:
        before = len(_CODECS)
        _CODECS[:] = [c for c in _CODECS if c.name != name]
        _refresh()
        return len(_CODECS) != before


def registered_codecs() -> list[Any]:
    return list(_ORDER)


def get_codec(name: str) -> Any | None:
    for codec in _ORDER:
        if codec.name == name:
            return codec
    return None


def candidate_codecs(obj: Any) -> list[Any]:
    """Codecs that say they can encode `obj`, in order; cloudpickle is always last."""
    out = []
    for codec in _ORDER:
        try:
            ok = codec.can_encode(obj)
        except Exception:
            ok = False
        if ok:
            out.append(codec)
    if _FALLBACK_REGISTERED and _FALLBACK not in out:
        out.append(_FALLBACK)
    return out
