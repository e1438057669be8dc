import pandas as pd

df = df_1 if isinstance(df_1, pd.DataFrame) else pd.DataFrame(df_1)

unique_counts = df.nunique(dropna=True).sort_values(ascending=False)

columns = [str(column) for column in unique_counts.index]
number_of_unique_values = [int(count) for count in unique_counts.values]
