import pandas as pd

from mlops.utils.data_preparation.cleaning import clean
from mlops.utils.data_preparation.feature_engineering import combine_features

if 'transformer' not in globals():
    from mage_ai.data_preparation.decorators import transformer


@transformer
def prepare(df: pd.DataFrame, *args, **kwargs) -> pd.DataFrame:
    """Unit 1's preparation: trip duration (minutes, 1-60), location ids as
    categories, and the PU_DO feature the model reads."""
    return combine_features(clean(df))
