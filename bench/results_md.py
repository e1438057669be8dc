"""Writing a benchmark's figures into bench/RESULTS.md: each script owns one section,
found by the start of its title, and replaces it when it runs again."""
from __future__ import annotations

import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def replace_section(title_start: str, section: str, path: Path = RESULTS) -> Path:
    """Put `section` (a '## ...' title and its text) in place of the first section whose
    title starts with `title_start`, or append it; returns the file written."""
    current = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile("^" + re.escape(title_start) + r".*?(?=^## |\Z)", re.S | re.M)
    # A function, not a string: the figures may hold backslashes re.sub would expand.
    updated, found = pattern.subn(lambda _m: section.rstrip("\n") + "\n\n", current, count=1)
    if not found:
        updated = current.rstrip("\n") + "\n\n" + section
    path.write_text(updated.rstrip("\n") + "\n")
    return path
