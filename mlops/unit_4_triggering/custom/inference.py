from typing import Dict, List

import xgboost as xgb

from mlops.utils.data_preparation.feature_engineering import combine_features

if 'custom' not in globals():
    from mage_ai.data_preparation.decorators import custom
if 'test' not in globals():
    from mage_ai.data_preparation.decorators import test

DEFAULT_INPUTS = [
    {'DOLocationID': 239, 'PULocationID': 236, 'trip_distance': 1.98},
    {'DOLocationID': 170, 'PULocationID': 65, 'trip_distance': 6.54},
]


@custom
def inference(model_settings: Dict, **kwargs) -> List[float]:
    """Predicted trip durations (minutes) for the trips in the variable `inputs`
    (a list of {PULocationID, DOLocationID, trip_distance}).

    `model_settings` is the global data product: `model_settings['champion']` is
    [model, DictVectorizer, info] from the load_champion pipeline. When the pipeline
    is served (`serve:` in its metadata.yaml), its API trigger and POST /api/runs
    answer from the warm model instead of running this block, with the same result."""
    inputs: List[Dict] = kwargs.get('inputs') or DEFAULT_INPUTS
    model, dv, _info = model_settings['champion']
    X = dv.transform(combine_features(inputs))
    if isinstance(model, xgb.Booster):
        predictions = model.inplace_predict(X)
    else:
        predictions = model.predict(X)
    return [float(p) for p in predictions]


@test
def test_predictions(predictions, *args) -> None:
    assert predictions, 'No predictions'
    assert all(p > 0 for p in predictions), f'A non-positive duration: {predictions}'
