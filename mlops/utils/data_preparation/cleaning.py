"""Trip cleaning: compute the ride duration and drop implausible trips."""
from __future__ import annotations

import pandas as pd

CATEGORICAL_IDS = ['PULocationID', 'DOLocationID']


def add_duration(
    df: pd.DataFrame,
    pickup: str = 'lpep_pickup_datetime',
    dropoff: str = 'lpep_dropoff_datetime',
    target: str = 'duration',
) -> pd.DataFrame:
    """Ride duration in minutes, as a new column."""
    df = df.copy()
    df[target] = (df[dropoff] - df[pickup]).dt.total_seconds() / 60
    return df


def clean(
    df: pd.DataFrame,
    include_extreme_durations: bool = False,
    min_duration: float = 1,
    max_duration: float = 60,
    target: str = 'duration',
) -> pd.DataFrame:
    """Add `duration` (minutes), keep min_duration <= duration <= max_duration, and
    turn the pick-up/drop-off location ids into strings (they are categories)."""
    df = add_duration(df, target=target)
    if not include_extreme_durations:
        df = df[(df[target] >= min_duration) & (df[target] <= max_duration)]
    df = df.copy()
    df[CATEGORICAL_IDS] = df[CATEGORICAL_IDS].astype(str)
    return df
