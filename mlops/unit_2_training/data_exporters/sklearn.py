from typing import Dict, List, Tuple

from sklearn.base import BaseEstimator

from blockyard.ml.metrics import regression_metrics, rmse
from blockyard.ml.registry import promote_if_better
from blockyard.ml.tracking import log_final_model
from blockyard.ml.tuning import ensure_int32_indices, load_model_class

if 'data_exporter' not in globals():
    from mage_ai.data_preparation.decorators import data_exporter
if 'test' not in globals():
    from mage_ai.data_preparation.decorators import test


@data_exporter
def train(settings: List, *args, **kwargs) -> Tuple[BaseEstimator, Dict]:
    """Fit the model with its best hyperparameters, score it on the validation set,
    log it to MLflow (with the DictVectorizer) and make it the registry's champion
    if it beats the current one."""
    hyperparameters, X_train, y_train, X_val, y_val, dv, model_info = settings
    logger = kwargs.get('logger')

    X_train = ensure_int32_indices(X_train)
    X_val = ensure_int32_indices(X_val)
    model = load_model_class(model_info['cls'])(**hyperparameters)
    model.fit(X_train, y_train)

    metrics = regression_metrics(y_val, model.predict(X_val))
    metrics['train_rmse'] = rmse(y_train, model.predict(X_train))

    final = log_final_model(
        model,
        dv,
        metrics,
        hyperparameters,
        tags={'tuning_run_id': model_info.get('tuning_run_id')},
        sample=X_val[:5],
        context=kwargs,
    )
    promotion = promote_if_better(
        final.model_uri,
        metrics['rmse'],
        run_id=final.run_id,
        tags={'model_class': final.model_class},
    )
    if logger:
        logger.info(
            '%s: validation rmse %.4f, MLflow run %s, %s',
            model_info['name'],
            metrics['rmse'],
            final.run_id,
            f'new champion v{promotion.version}' if promotion else 'not promoted',
        )
    summary = dict(
        model_class=final.model_class,
        rmse=metrics['rmse'],
        metrics=metrics,
        hyperparameters=hyperparameters,
        run_id=final.run_id,
        model_uri=final.model_uri,
        promoted=bool(promotion),
        version=promotion.version,
    )
    return model, summary


@test
def test_model_beats_the_mean(model, summary, *args) -> None:
    assert summary['metrics']['r2'] > 0, (
        f"{summary['model_class']} does worse than predicting the mean "
        f"(r2 {summary['metrics']['r2']:.3f})"
    )
