import pandas as pd

df = df_1 if isinstance(df_1, pd.DataFrame) else pd.DataFrame(df_1)

number_of_rows = len(df.index)
missing = df.isna().sum()
missing = missing[missing > 0].sort_values(ascending=False)

columns_with_missing_values = [str(column) for column in missing.index]
percentage_of_missing_values = [
    round(100 * int(count) / number_of_rows, 2) if number_of_rows else 0.0
    for count in missing.values
]
