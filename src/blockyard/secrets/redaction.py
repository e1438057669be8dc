"""Removing known secret values from text that leaves the process (alert messages)."""
from __future__ import annotations

from typing import Any, Iterable

REDACTED = "[REDACTED]"
# Values shorter than this are not redacted from free text: replacing every "a" or
# "42" in a message would destroy it while hiding nothing worth hiding.
MIN_REDACT_LENGTH = 4


def redact(text: Any, values: Iterable[Any]) -> str:
    """`text` with every occurrence of each value in `values` replaced by [REDACTED].

    Longer values are replaced first (so a secret containing another is fully hidden);
    values shorter than MIN_REDACT_LENGTH characters are left alone.
    """
    if text is None:
        return ""
    out = str(text)
    candidates = sorted(
        {str(v) for v in values if v is not None and len(str(v)) >= MIN_REDACT_LENGTH},
        key=len,
        reverse=True,
    )
    for value in candidates:
        if value in out:
            out = out.replace(value, REDACTED)
    return out
