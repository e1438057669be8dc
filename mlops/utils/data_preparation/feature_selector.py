"""The columns the model sees."""
from __future__ import annotations

from typing import Iterable

import pandas as pd

CATEGORICAL_FEATURES = ['PU_DO']
NUMERICAL_FEATURES = ['trip_distance']


def select_features(df: pd.DataFrame, features: Iterable[str] | None = None) -> pd.DataFrame:
    """Keep the categorical and numerical model features, plus any extra `features`
    (e.g. the split column and the target, which later steps still need)."""
    columns = CATEGORICAL_FEATURES + NUMERICAL_FEATURES
    for name in features or []:
        if name not in columns:
            columns.append(name)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise KeyError(
            f'select_features: columns {missing} are not in the data frame '
            f'(it has {list(df.columns)}); run clean() and combine_features() first'
        )
    return df[columns]
