"""Stat stamps for in-process caches of file contents.

Such a cache trusts that a write changes the file's stat. The filesystem's clock is
coarse, though: a file rewritten with the same size within the tick of its last change
keeps its stamp. So, like git's "racy clean" rule, an entry is kept only when the file
had last changed over a tick before it was read; a newer file is read again next time.
"""
from __future__ import annotations

import os
import time

# The coarsest timestamp tick in use: FAT's two seconds (ext3 and HFS+ have one second).
# Once that long has passed since the file's last change, the clock has moved on.
RACY_NS = 2_000_000_000

Stamp = tuple[int, int, int, int]


def stamp(st: os.stat_result) -> Stamp:
    """What a write changes: modification and change times, size and inode (a file
    replaced by a rename)."""
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)


def settled(st: os.stat_result) -> bool:
    """True when content read after this stat may be cached under its stamp: the file
    last changed long enough ago that a later write cannot share its clock tick."""
    return time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > RACY_NS
