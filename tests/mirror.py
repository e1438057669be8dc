"""Where the offline data mirror is: BLOCKYARD_DATA_MIRROR, else ../shared/data beside the clone."""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MIRROR = Path(os.environ.get("BLOCKYARD_DATA_MIRROR") or REPO.parent / "shared" / "data")
