"""Values no database can store.

SQLite's JSON and PostgreSQL's text/jsonb refuse (or store and then fail to read back)
NUL characters, lone UTF-16 surrogates and non-finite numbers. JSON bodies carry them
as `\\u0000`, `\\ud800`, `NaN`, `Infinity` or `1e400`, and YAML as "\\0"; Python's json
and yaml modules accept all of them. The server's middleware rejects such a request
body with a 422 naming the field (before any route, file or row sees it), and a
triggers.yaml entry holding one is refused with a message. A leaf module (no imports
from the rest of blockyard) so every layer can use it.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any
from urllib.parse import parse_qsl

_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")


def _string_problem(text: str) -> str | None:
    m = _BAD_CHARS.search(text)
    if m is None:
        return None
    ch = m.group()
    if ch == "\x00":
        return "contains a NUL character (\\u0000), which cannot be stored"
    return f"contains a lone surrogate (\\u{ord(ch):04x}), which is not valid Unicode and cannot be stored"


def _number_problem(value: float) -> str | None:
    if math.isfinite(value):
        return None
    if math.isnan(value):
        return "is NaN, which is not valid JSON and cannot be stored"
    return "is an infinite or too large number (Infinity, 1e400), which cannot be stored"


def find_unstorable(value: Any, loc: tuple = ()) -> tuple[tuple, str] | None:
    """(location, reason) of the first value (or object key) that cannot be stored."""
    stack: list[tuple[Any, tuple]] = [(value, loc)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            problem = _string_problem(item)
            if problem:
                return where, problem
        elif isinstance(item, float):
            problem = _number_problem(item)
            if problem:
                return where, problem
        elif isinstance(item, dict):
            entries = list(item.items())
            for key, child in reversed(entries):
                problem = _string_problem(key) if isinstance(key, str) else None
                if problem:
                    return (*where, key), "the key " + problem
                stack.append((child, (*where, key)))
        elif isinstance(item, list):
            for i in range(len(item) - 1, -1, -1):
                stack.append((item[i], (*where, i)))
    return None


def check_json_body(body: bytes) -> tuple[str, str] | None:
    """(dotted location, reason) for a JSON body holding an unstorable value; None when
    it is fine or not JSON at all (the route's own parsing answers that)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    found = find_unstorable(data, ("body",))
    if found is None:
        return None
    where, reason = found
    return ".".join(str(p) for p in where), reason


def check_query(query_string: bytes) -> tuple[str, str] | None:
    """The same for query parameters (only NUL can get through URL decoding)."""
    if not query_string or b"%00" not in query_string.lower() and b"\x00" not in query_string:
        return None
    for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        for text, where in ((key, "the name of query parameter"), (value, "query parameter")):
            problem = _string_problem(text)
            if problem:
                name = key.replace("\x00", "\\u0000")
                return f"query.{name}", f"{where} {problem}"
    return None


def is_json_request(headers: list) -> bool:
    """What FastAPI parses as JSON: no Content-Type, or application/json / */*+json."""
    for k, v in headers:
        if k == b"content-type":
            media = v.decode("latin-1").split(";", 1)[0].strip().lower()
            return media == "application/json" or media.endswith("+json")
    return True
