"""Automatic retraining: which monthly files are new, and whether the challenger wins.

New data is a new monthly file `green_tripdata_YYYY-MM.parquet` appearing in a watched
folder (variable `watch_dir`, default `<workspace>/.blockyard/incoming/`). The first
look at a folder records what is there (the baseline); a month newer than every month
seen before is new. A month counts as seen once a retraining evaluated it, so it fires
once, and `claim` takes a month under a file lock so two retrainings (two schedulers, a
manual run) never train for the same month. A monitoring alert (a rule with
`trigger: unit_4_triggering/automatic_retraining`, variable `alert`) retrains for the
newest month present even when it was seen, under the same cooldown and claim. State:
`<workspace>/.blockyard/retraining/state.json`.
"""
from __future__ import annotations

import hashlib
import json
import re
import time
from contextlib import contextmanager
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


CLAIM_SECONDS = 3600  # a claimed month whose retraining died is retried after this


@contextmanager
def _locked():
    """An exclusive lock on the state file (one retraining at a time per workspace)."""
    path = _state_path().with_suffix('.lock')
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'a+') as fh:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            yield
            return
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def claim(folder: Path, cooldown_seconds: float = 0, alert: bool = False) -> Optional[str]:
    """Atomically take the new month for retraining (None: nothing new, or another
    retraining holds it). The claim ends with `mark_seen`, or after CLAIM_SECONDS."""
    with _locked():
        month = new_month(folder, cooldown_seconds, alert=alert)
        if month is None:
            return None
        state = load_state(folder) or {}
        save_state(folder, {**state, 'claimed': month, 'claimed_at': time.time()})
        return month


def new_month(folder: Path, cooldown_seconds: float = 0, alert: bool = False) -> Optional[str]:
    """The newest month in `folder` newer than all seen ones (None: nothing new, in
    cooldown, or no earlier month to train on). The first call records the baseline.
    With `alert` (a monitoring rule fired), the newest month present, seen or not."""
    months = months_in(folder)
    state = load_state(folder)
    if state is None:
        save_state(folder, {'seen': list(months), 'last_retraining': None})
        state = load_state(folder)
        if not alert:
            return None
    seen = state.get('seen') or []
    last = state.get('last_retraining') or 0
    if cooldown_seconds and time.time() - last < float(cooldown_seconds):
        return None
    newer = list(months) if alert else [m for m in months if not seen or m > max(seen)]
    if not newer or len(months) < 2:
        return None
    if state.get('claimed') and (alert or state['claimed'] == newer[-1]) and time.time() - (state.get('claimed_at') or 0) < CLAIM_SECONDS:
        return None  # being retrained right now
    return newer[-1]


def skip_reason(folder: Path, cooldown_seconds: float = 0, alert: bool = False) -> str:
    """Why `claim` found nothing to retrain for (said by `retrain` when it skips)."""
    state = load_state(folder) or {}
    since = time.time() - (state.get('last_retraining') or 0)
    if cooldown_seconds and since < float(cooldown_seconds):
        return f'cooldown: the last retraining was {since:.0f} s ago (cooldown_seconds {float(cooldown_seconds):g})'
    if state.get('claimed') and time.time() - (state.get('claimed_at') or 0) < CLAIM_SECONDS:
        return f"{state['claimed']} is being retrained by another run"
    if len(months_in(folder)) < 2:
        return f'fewer than two monthly files in {folder}'
    return 'no new monthly file' + ('' if alert else f' in {folder}')


def mark_seen(folder: Path, month: str) -> None:
    with _locked():
        state = load_state(folder) or {'seen': []}
        seen = sorted(set(state.get('seen') or []) | {month})
        save_state(folder, {'seen': seen, 'last_retraining': time.time()})  # and the claim ends


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
