"""New features built from existing columns."""
from __future__ import annotations

import pandas as pd


def combine_features(df: pd.DataFrame | list[dict]) -> pd.DataFrame | list[dict]:
    """`PU_DO` = pick-up and drop-off location joined by '_' (e.g. '74_75').

    Works on a data frame or on a list of records (as an online-inference request
    would bring)."""
    if isinstance(df, pd.DataFrame):
        df = df.copy()
        df['PU_DO'] = df['PULocationID'].astype(str) + '_' + df['DOLocationID'].astype(str)
        return df
    return [
        {**row, 'PU_DO': f"{row['PULocationID']}_{row['DOLocationID']}"}
        for row in df
    ]
