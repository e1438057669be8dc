import pandas as pd

from blockyard.datasets import load_green_taxi
from mlops.utils.data_preparation.cleaning import clean

if 'data_loader' not in globals():
    from mage_ai.data_preparation.decorators import data_loader
if 'test' not in globals():
    from mage_ai.data_preparation.decorators import test


@data_loader
def load_trips(*args, **kwargs) -> pd.DataFrame:
    """The trips of the month in the variable `month` ('YYYY-MM', default 2023-03; or
    'previous': the month before the run's execution date, what the monthly trigger
    uses), cleaned as for training
    (duration in minutes kept as the label, 1-60 minutes) and tagged with `month`.
    `limit`: score only the first N trips (0 = all)."""
    month = str(kwargs.get('month') or '2023-03')
    if month == 'previous':
        when = pd.Timestamp(kwargs.get('execution_date') or pd.Timestamp.now(tz='UTC'))
        month = (when.replace(day=1) - pd.Timedelta(days=1)).strftime('%Y-%m')
    df = clean(load_green_taxi([month]))
    df['month'] = month
    limit = int(kwargs.get('limit') or 0)
    if limit:
        df = df.head(limit)
    return df.reset_index(drop=True)


@test
def test_trips(df, *args) -> None:
    assert len(df) > 0, 'No trips to score'
    for column in ['PULocationID', 'DOLocationID', 'trip_distance', 'duration']:
        assert column in df.columns, f'Column {column} is missing'
