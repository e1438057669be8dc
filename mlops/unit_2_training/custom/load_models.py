from typing import Dict, List, Tuple

from blockyard.ml.tuning import parse_model_list

if 'custom' not in globals():
    from mage_ai.data_preparation.decorators import custom


@custom
def models(*args, **kwargs) -> Tuple[List[str], List[Dict[str, str]]]:
    """The scikit-learn models to train, one dynamic child each.

    Variable `models`: comma-separated 'module.Class' names, e.g.
    'linear_model.LinearRegression,linear_model.Lasso' (default). Also available:
    linear_model.Ridge, svm.LinearSVR, ensemble.RandomForestRegressor,
    ensemble.GradientBoostingRegressor, ensemble.ExtraTreesRegressor.

    Returns the items (model class names) and, for each, the metadata that names
    its child block (e.g. `hyperparameter_tuning/sklearn:LinearRegression`).
    """
    model_names: List[str] = parse_model_list(kwargs.get('models'))
    child_data: List[str] = model_names
    child_metadata: List[Dict] = [
        dict(block_uuid=model_name.split('.')[-1]) for model_name in model_names
    ]
    return child_data, child_metadata
