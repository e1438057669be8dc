"""Automatic retraining: which monthly files are new, and whether the challenger wins.

New data is a new monthly file `green_tripdata_YYYY-MM.parquet` appearing in a watched
folder (variable `watch_dir`, default `<workspace>/.blockyard/incoming/`). The first
look at a folder records what is there (the baseline); a month newer than every month
seen before is new. A month counts as seen once a retraining evaluated it, so it fires
once. State: `<workspace>/.blockyard/retraining/state.json`.
"""
from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Dict, List, Optional

FILE = re.compile(r'green_tripdata_(\d{4}-\d{2})\.parquet$')


def data_dir() -> Path:
    """The workspace's .blockyard folder (of the running block when there is one)."""
    from blockyard import runtime
    from blockyard.ml.tracking import data_dir as ml_data_dir

    ctx = runtime.get()
    return ml_data_dir(ctx.workspace_root if ctx else None)


def watch_dir(kwargs: Dict) -> Path:
    return Path(kwargs.get('watch_dir') or data_dir() / 'incoming')


def months_in(folder: Path) -> Dict[str, Path]:
    """{'2023-03': path} of the monthly files in `folder`."""
    if not folder.is_dir():
        return {}
    out = {}
    for path in folder.iterdir():
        m = FILE.search(path.name)
        if m:
            out[m.group(1)] = path
    return dict(sorted(out.items()))


def _state_path() -> Path:
    return data_dir() / 'retraining' / 'state.json'


def _key(folder: Path) -> str:
    return hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:12]


def load_state(folder: Path) -> Optional[Dict]:
    path = _state_path()
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get(_key(folder))


def save_state(folder: Path, state: Dict) -> None:
    path = _state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    everything = json.loads(path.read_text()) if path.is_file() else {}
    everything[_key(folder)] = {**state, 'folder': str(folder)}
    tmp = path.with_suffix('.tmp')
    tmp.write_text(json.dumps(everything, indent=2))
    tmp.replace(path)


def new_month(folder: Path, cooldown_seconds: float = 0) -> Optional[str]:
    """The newest month in `folder` newer than all seen ones (None: nothing new, in
    cooldown, or no earlier month to train on). The first call records the baseline."""
    months = months_in(folder)
    state = load_state(folder)
    if state is None:
        save_state(folder, {'seen': list(months), 'last_retraining': None})
        return None
    seen = state.get('seen') or []
    last = state.get('last_retraining') or 0
    if cooldown_seconds and time.time() - last < float(cooldown_seconds):
        return None
    newer = [m for m in months if not seen or m > max(seen)]
    if not newer or len(months) < 2:
        return None
    return newer[-1]


def mark_seen(folder: Path, month: str) -> None:
    state = load_state(folder) or {'seen': []}
    seen = sorted(set(state.get('seen') or []) | {month})
    save_state(folder, {'seen': seen, 'last_retraining': time.time()})


def training_months(folder: Path, month: str, count: int = 2) -> List[str]:
    """The `count` newest months before `month` in the folder."""
    return [m for m in months_in(folder) if m < month][-count:]


def load_months(folder: Path, months: List[str]):
    """Cleaned trips with PU_DO of those months (the course's utils)."""
    import pandas as pd

    from mlops.utils.data_preparation.cleaning import clean
    from mlops.utils.data_preparation.feature_engineering import combine_features

    files = months_in(folder)
    missing = [m for m in months if m not in files]
    if missing:
        raise FileNotFoundError(f'no file for month(s) {missing} in {folder}')
    return combine_features(clean(pd.concat([pd.read_parquet(files[m]) for m in months], ignore_index=True)))
