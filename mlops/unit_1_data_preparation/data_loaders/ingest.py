from typing import List

import pandas as pd

from blockyard.datasets import load_green_taxi, parse_months

if 'data_loader' not in globals():
    from mage_ai.data_preparation.decorators import data_loader
if 'test' not in globals():
    from mage_ai.data_preparation.decorators import test

DEFAULT_MONTHS = ['2024-01', '2024-02']


@data_loader
def ingest_files(*args, **kwargs) -> pd.DataFrame:
    """NYC green taxi trips of the months in the variable `months`
    ('YYYY-MM' strings, a list or comma-separated; default January and February 2024).

    Each month is downloaded once from
    https://github.com/mage-ai/datasets/raw/master/taxi/green/YYYY/MM.parquet,
    verified against its sha256 and cached (or read from BLOCKYARD_DATA_MIRROR).
    """
    months: List = parse_months(kwargs.get('months') or DEFAULT_MONTHS)
    return load_green_taxi(months)


@test
def test_output(df, *args) -> None:
    assert df is not None, 'The output is undefined'
    assert len(df.index) > 0, 'No trips were loaded'
    for column in [
        'lpep_pickup_datetime',
        'lpep_dropoff_datetime',
        'PULocationID',
        'DOLocationID',
        'trip_distance',
    ]:
        assert column in df.columns, f'Column {column} is missing'
