"""Train/validation splits."""
from __future__ import annotations

from typing import Tuple

import pandas as pd


def split_on_value(
    df: pd.DataFrame,
    feature: str,
    value,
    drop_feature: bool = False,
    return_indexes: bool = False,
) -> Tuple[pd.DataFrame, pd.DataFrame] | Tuple[pd.Index, pd.Index]:
    """Rows with `feature` < `value` are the training set, the rest the validation set.

    `value` is compared in the column's own type: a string like '2024-02-01' is
    parsed as a timestamp for a datetime column."""
    column = df[feature]
    if pd.api.types.is_datetime64_any_dtype(column) and not isinstance(value, pd.Timestamp):
        value = pd.Timestamp(value)
    mask = column < value
    if return_indexes:
        return df.index[mask], df.index[~mask]
    df_train = df[mask]
    df_val = df[~mask]
    if drop_feature:
        df_train = df_train.drop(columns=[feature])
        df_val = df_val.drop(columns=[feature])
    return df_train, df_val
