import pandas as pd

df = df_1 if isinstance(df_1, pd.DataFrame) else pd.DataFrame(df_1)

number_of_rows = len(df.index)
columns = ['column', 'most frequent value', 'count', 'percentage']
rows = []
for column in df.columns:
    counts = df[column].value_counts(dropna=True)
    if counts.empty:
        rows.append([str(column), None, 0, 0.0])
        continue
    value, count = counts.index[0], int(counts.iloc[0])
    rows.append([
        str(column),
        str(value),
        count,
        round(100 * count / number_of_rows, 2) if number_of_rows else 0.0,
    ])
