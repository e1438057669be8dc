import pandas as pd

df = df_1 if isinstance(df_1, pd.DataFrame) else pd.DataFrame(df_1)

stats = ['type', 'missing', 'unique', 'min', 'max', 'mean', 'median', 'mode']
columns = [str(column) for column in df.columns]


def _text(value):
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, float):
        return round(value, 4)
    if hasattr(value, 'item'):
        value = value.item()
    return value if isinstance(value, (int, float)) else str(value)


def _profile(series: pd.Series) -> list:
    numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
    datetime = pd.api.types.is_datetime64_any_dtype(series)
    ordered = numeric or datetime
    non_null = series.dropna()
    modes = non_null.mode()
    return [
        'number' if numeric else 'datetime' if datetime else 'category',
        int(series.isna().sum()),
        int(series.nunique(dropna=True)),
        _text(non_null.min()) if ordered and len(non_null) else None,
        _text(non_null.max()) if ordered and len(non_null) else None,
        _text(non_null.mean()) if numeric and len(non_null) else None,
        _text(non_null.median()) if ordered and len(non_null) else None,
        _text(modes.iloc[0]) if len(modes) else None,
    ]


profiles = [_profile(df[column]) for column in df.columns]
rows = [[profile[i] for profile in profiles] for i in range(len(stats))]
