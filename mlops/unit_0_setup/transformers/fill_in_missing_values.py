import pandas as pd

if 'transformer' not in globals():
    from mage_ai.data_preparation.decorators import transformer
if 'test' not in globals():
    from mage_ai.data_preparation.decorators import test

COLUMNS = ['Age', 'Fare', 'Parch', 'Pclass', 'SibSp', 'Survived']


def select_number_columns(df: pd.DataFrame) -> pd.DataFrame:
    return df[COLUMNS]


def fill_missing_values_with_median(df: pd.DataFrame) -> pd.DataFrame:
    return df.fillna({column: df[column].median() for column in df.columns})


@transformer
def transform_df(df: pd.DataFrame, *args, **kwargs) -> pd.DataFrame:
    """Keep the numeric columns and fill each column's gaps with its median."""
    return fill_missing_values_with_median(select_number_columns(df))


@test
def test_output(df, *args) -> None:
    assert len(df.index) == 891, f'Expected 891 rows, got {len(df.index)}'
    assert len(df.columns) == 6, f'Expected 6 columns, got {len(df.columns)}'
    missing = int(df.isna().sum().sum())
    assert missing == 0, f'There should be no missing value, found {missing}'
