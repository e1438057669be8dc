# Chart code runs with the outputs of the upstream blocks available as
# df_1, df_2, ... The chart reads the variables named in the widget's
# configuration (for a histogram: x).
data = df_1 if 'df_1' in globals() else []

x = list(data)
