from typing import Any, Dict, Tuple

from blockyard.serving.model import load_version

if 'data_loader' not in globals():
    from mage_ai.data_preparation.decorators import data_loader
if 'test' not in globals():
    from mage_ai.data_preparation.decorators import test


@data_loader
def load_champion(*args, **kwargs) -> Tuple[Any, Any, Dict]:
    """The registry's champion (variables `model_name`, default nyc-taxi-duration, and
    `alias`, default champion): the model, its DictVectorizer and what version it is.

    Loaded with the same code `blockyard serve` uses, so both score alike."""
    from blockyard.ml.tracking import workspace_root

    loaded = load_version(
        workspace_root(),
        kwargs.get('model_name') or 'nyc-taxi-duration',
        kwargs.get('alias') or 'champion',
    )
    info = {k: v for k, v in loaded.describe().items() if k != 'features'}
    return loaded.model, loaded.dv, info


@test
def test_champion(model, dv, info, *args) -> None:
    assert model is not None, 'No model loaded'
    assert dv.feature_names_, 'The DictVectorizer has no features'
    assert info['version'], 'No model version'
