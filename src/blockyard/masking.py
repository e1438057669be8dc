"""Masking of secret values in what a run writes (as CI systems mask secrets).

Every value `get_secret_value` hands out is remembered for the life of the process;
block logs, block and run errors, tracebacks and error details pass through `mask()`
before they are written, so a block that prints, logs or raises a secret leaves `***`
in the run history, the log files and every API answer built from them. A run
executed by a worker has a process of its own, so what is remembered is what its run
touched. Values shorter than 4 characters are not masked (they would garble logs).
"""
from __future__ import annotations

import threading
from typing import Any

MASK = "***"
MIN_LENGTH = 4

_lock = threading.Lock()
_values: tuple[str, ...] = ()  # longest first: a secret containing another is fully hidden


def remember(value: Any) -> None:
    """Mask `value` (and each of its lines, for multi-line secrets) from now on."""
    global _values
    if not isinstance(value, str):
        return
    parts = {value, *(line.strip() for line in value.splitlines())}
    new = {p for p in parts if len(p) >= MIN_LENGTH}
    with _lock:
        if new <= set(_values):
            return
        _values = tuple(sorted(set(_values) | new, key=len, reverse=True))


def active() -> bool:
    return bool(_values)


def mask(text: Any) -> Any:
    """`text` with every remembered secret value replaced by `***` (strings; other
    values are returned as they are)."""
    values = _values
    if not values or not isinstance(text, str):
        return text
    for v in values:
        if v in text:
            text = text.replace(v, MASK)
    return text


def mask_data(obj: Any) -> Any:
    """`mask()` applied to every string inside dicts/lists (e.g. error details)."""
    if not _values:
        return obj
    if isinstance(obj, str):
        return mask(obj)
    if isinstance(obj, dict):
        return {mask_data(k): mask_data(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(mask_data(v) for v in obj)
    return obj


def forget_all() -> None:
    """Tests only."""
    global _values
    with _lock:
        _values = ()
