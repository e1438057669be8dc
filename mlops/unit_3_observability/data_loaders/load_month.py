import pandas as pd

from blockyard.datasets import load_green_taxi, parse_months

if 'data_loader' not in globals():
    from mage_ai.data_preparation.decorators import data_loader
if 'test' not in globals():
    from mage_ai.data_preparation.decorators import test


def month_of(kwargs) -> str:
    """The `month` variable ('YYYY-MM'); in a backfill or scheduled run without it,
    the month of the execution date."""
    month = kwargs.get('month')
    if not month and kwargs.get('execution_date') is not None:
        month = kwargs['execution_date'].strftime('%Y-%m')
    if not month:
        raise ValueError("set the variable 'month' (YYYY-MM), e.g. --var month=2023-02")
    (year, number), = parse_months(str(month))
    return f'{year:04d}-{number:02d}'


@data_loader
def load_month(*args, **kwargs) -> pd.DataFrame:
    """The green-taxi trips of one month (the variable `month`, YYYY-MM)."""
    return load_green_taxi([month_of(kwargs)])


@test
def test_output(df, *args) -> None:
    assert len(df.index) > 0, 'No trips were loaded'
