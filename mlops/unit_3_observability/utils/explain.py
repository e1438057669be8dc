"""SHAP values of the XGBoost champion on a seeded sample of a month's trips, for the
explainability dashboard (presenters/explainability).

Mage's unit 3 computes them on one row (`X[:1]`); here on `rows` sampled trips (2,000 by
default, at least 1,000), with shap's TreeExplainer — exact SHAP values for trees, the
same figures XGBoost's own `predict(..., pred_contribs=True)` gives."""
from __future__ import annotations

import base64
import io
from functools import lru_cache
from typing import Any, Dict

MIN_ROWS = 1_000
DEFAULT_ROWS = 2_000
DEFAULT_MONTH = '2024-01'  # a month unit 2 trains on


@lru_cache(maxsize=4)
def _explain(version: str, run_id: str, model_uri: str, month: str, rows: int, seed: int) -> Dict[str, Any]:
    import numpy as np
    import shap
    import xgboost as xgb

    from blockyard.datasets import load_green_taxi, parse_months
    from mlops.unit_3_observability.utils.champion import _load
    from mlops.utils.data_preparation.cleaning import clean
    from mlops.utils.data_preparation.feature_engineering import combine_features
    from mlops.utils.data_preparation.feature_selector import select_features

    model, dv = _load(version, run_id, model_uri)
    if not isinstance(model, xgb.Booster):
        raise RuntimeError(
            f'the champion (version {version}) is a {type(model).__name__}, not an XGBoost model: '
            'the explainability dashboard explains XGBoost (run unit_2_training/xgboost_training)'
        )
    trips = combine_features(clean(load_green_taxi(parse_months(month))))
    sample = trips.sample(n=min(rows, len(trips)), random_state=seed)
    X = dv.transform(select_features(sample).to_dict('records'))
    values = shap.TreeExplainer(model).shap_values(X)
    names = list(dv.get_feature_names_out())
    # Keep the features that matter (PU_DO has thousands of one-hot columns).
    top = np.argsort(-np.abs(values).mean(axis=0))[:20]
    dense = X[:, top].toarray() if hasattr(X, 'toarray') else np.asarray(X)[:, top]
    return {'values': values[:, top], 'features': dense, 'names': [names[i] for i in top],
            'rows': int(X.shape[0]), 'month': month, 'version': version}


def shap_sample(month: str | None = None, rows: int | str | None = None, seed: int = 0) -> Dict[str, Any]:
    """{values, features, names, rows, month, version} for the XGBoost champion."""
    from mlops.unit_3_observability.utils.champion import champion_info

    rows = int(rows or DEFAULT_ROWS)
    if rows < MIN_ROWS:
        raise ValueError(f'rows must be at least {MIN_ROWS} (got {rows})')
    info = champion_info()
    return _explain(info['version'], info['run_id'], info['model_uri'], str(month or DEFAULT_MONTH), rows, int(seed))


def plot(sample: Dict[str, Any], plot_type: str | None) -> str:
    """shap's summary plot (beeswarm) or bar plot as base64 PNG."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import shap

    plt.close('all')
    shap.summary_plot(sample['values'], sample['features'], feature_names=sample['names'],
                      plot_type=plot_type, show=False, max_display=15)
    fig = plt.gcf()
    fig.suptitle(f"XGBoost champion v{sample['version']}: {sample['rows']:,} trips of {sample['month']}", fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format='png', bbox_inches='tight', dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()
