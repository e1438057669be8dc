import pandas as pd

df = df_1 if isinstance(df_1, pd.DataFrame) else pd.DataFrame(df_1)

number_of_rows, number_of_columns = df.shape
numeric = df.select_dtypes(include='number').columns
datetimes = df.select_dtypes(include=['datetime', 'datetimetz']).columns
categorical = [c for c in df.columns if c not in set(numeric) | set(datetimes)]
missing_cells = int(df.isna().sum().sum())
cells = number_of_rows * number_of_columns

headers = ['statistic', 'value']
rows = [
    ['rows', number_of_rows],
    ['columns', number_of_columns],
    ['duplicate rows', int(df.duplicated().sum())],
    ['missing cells', missing_cells],
    ['missing cells (%)', round(100 * missing_cells / cells, 2) if cells else 0.0],
    ['numeric columns', len(numeric)],
    ['datetime columns', len(datetimes)],
    ['categorical columns', len(categorical)],
    ['memory (MB)', round(df.memory_usage(deep=True).sum() / 2**20, 2)],
]
