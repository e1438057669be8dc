import pandas as pd

from mlops.unit_3_observability.utils.champion import predict

if 'transformer' not in globals():
    from mage_ai.data_preparation.decorators import transformer
if 'test' not in globals():
    from mage_ai.data_preparation.decorators import test


@transformer
def score(df: pd.DataFrame, *args, **kwargs) -> pd.DataFrame:
    """Predicted durations from the registry's champion (`nyc-taxi-duration@champion`),
    in a new column `prediction`."""
    df = df.copy()
    df['prediction'] = predict(df)
    return df


@test
def test_predictions(df, *args) -> None:
    assert df['prediction'].notna().all(), 'The champion returned missing predictions'
