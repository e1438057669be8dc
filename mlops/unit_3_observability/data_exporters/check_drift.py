from typing import Dict

import pandas as pd

from blockyard.datasets import load_green_taxi, parse_months
from blockyard.ml import monitoring
from mlops.unit_3_observability.utils.champion import MODEL_NAME, champion_info, predict
from mlops.utils.data_preparation.cleaning import clean
from mlops.utils.data_preparation.feature_engineering import combine_features

if 'data_exporter' not in globals():
    from mage_ai.data_preparation.decorators import data_exporter
if 'test' not in globals():
    from mage_ai.data_preparation.decorators import test

# The model's inputs as they arrive (PU_DO is derived from the two locations, and its
# thousands of categories would make the drift estimate noisy and slow).
MONITORED = dict(
    numerical=['trip_distance', 'passenger_count'],
    categorical=['PULocationID', 'DOLocationID'],
    target='duration',
    prediction='prediction',
)


def reference_for(info: Dict, months) -> monitoring.ReferenceProfile:
    """The champion's reference profile: built once per champion version from the
    training months, scored by the champion, with its validation RMSE as baseline."""
    try:
        ref = monitoring.load_reference(MODEL_NAME)
        if ref.model_version == info['version']:
            return ref
    except monitoring.MonitoringError:
        pass
    train = combine_features(clean(load_green_taxi(parse_months(months))))
    train['prediction'] = predict(train, info)
    baseline = {'rmse': info['rmse']} if info.get('rmse') is not None else {}
    return monitoring.build_reference(
        train, model=MODEL_NAME, baseline=baseline, model_version=info['version'], **MONITORED
    )


@data_exporter
def check_drift(df: pd.DataFrame, *args, **kwargs) -> Dict:
    """Drift per feature and for the dataset, prediction drift, missing values and
    RMSE/MAE of the month against the champion's training reference. The figures are
    stored in the run history (one time series per metric) and the Evidently report
    under .blockyard/monitoring/; check() evaluates the notification_config rules."""
    from mlops.unit_3_observability.data_loaders.load_month import month_of

    month = month_of(kwargs)
    info = champion_info()
    ref = reference_for(info, kwargs.get('reference_months') or '2024-01')
    result = monitoring.check(df, ref, period=month, model_version=info['version'])
    # check() also evaluated the project's alert rules; their decisions are in 'alerts'.
    figures = result.to_dict()
    logger = kwargs.get('logger')
    if logger:
        logger.info(
            '%s v%s, %s: drift share %.2f, prediction drift %.3f, rmse %.3f (baseline %s), report %s',
            MODEL_NAME, info['version'], month, result.drift_share,
            (result.prediction_drift or {}).get('score', float('nan')),
            result.rmse if result.rmse is not None else float('nan'),
            result.baseline.get('rmse'), result.report_path,
        )
    return figures


@test
def test_figures(figures: Dict, *args) -> None:
    assert 0.0 <= figures['drift_share'] <= 1.0, figures['drift_share']
    assert figures['check_id'] is not None, 'The figures were not stored'
