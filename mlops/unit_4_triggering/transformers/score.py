import pandas as pd

from blockyard.serving.model import load_version

if 'transformer' not in globals():
    from mage_ai.data_preparation.decorators import transformer
if 'test' not in globals():
    from mage_ai.data_preparation.decorators import test

COLUMNS = ['month', 'lpep_pickup_datetime', 'PULocationID', 'DOLocationID', 'trip_distance', 'duration']


@transformer
def score(df: pd.DataFrame, *args, **kwargs) -> pd.DataFrame:
    """Predict every trip with the registry's champion (variables `model_name`, `alias`),
    through the same loader, feature transform and validation as `blockyard serve`, so
    batch and online predictions of a trip agree (to 1e-6)."""
    from blockyard.ml.tracking import workspace_root

    model = load_version(
        workspace_root(),
        kwargs.get('model_name') or 'nyc-taxi-duration',
        kwargs.get('alias') or 'champion',
    )
    records = df[['PULocationID', 'DOLocationID', 'trip_distance']].to_dict('records')
    out = df[[c for c in COLUMNS if c in df.columns]].copy()
    out['predicted_duration'] = model.predict(records, field='trips')
    out['model_name'] = model.name
    out['model_version'] = model.version
    out['scored_at'] = pd.Timestamp.now(tz='UTC')
    return out


@test
def test_scores(df, *args) -> None:
    assert df['predicted_duration'].notna().all(), 'Some trips have no prediction'
    assert df['model_version'].nunique() == 1, 'Trips scored by more than one model version'
