"""Command-line value parsing shared by every command module (core, orchestration, server)."""
from __future__ import annotations

import json
from typing import Any, Callable


def parse_pairs(
    pairs: list[str] | None, vars_json: str | None, fail: Callable[[str], Any], what: str = "--var"
) -> dict:
    """`--vars-json '{...}'` then `--var key=value` pairs (values parse as JSON when they can:
    numbers, booleans, lists); `fail(message)` reports bad input and does not return."""
    out: dict[str, Any] = {}
    if vars_json:
        try:
            loaded = json.loads(vars_json)
        except json.JSONDecodeError as exc:
            fail(f"--vars-json is not valid JSON: {exc.msg} at column {exc.colno}")
        if not isinstance(loaded, dict):
            fail("--vars-json must be a JSON object, e.g. '{\"target\": \"duration\"}'")
        out.update(loaded)
    for pair in pairs or []:
        if "=" not in pair:
            fail(f"{what} {pair!r} must look like key=value")
        key, value = pair.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out
