import json
import tempfile
from pathlib import Path
from typing import Dict, List, Tuple

import xgboost as xgb

from blockyard.charts import render_png
from blockyard.ml.metrics import regression_metrics, rmse
from blockyard.ml.registry import promote_if_better
from blockyard.ml.tracking import log_final_model
from blockyard.ml.tuning import to_dmatrix, xgboost_params

if 'data_exporter' not in globals():
    from mage_ai.data_preparation.decorators import data_exporter
if 'test' not in globals():
    from mage_ai.data_preparation.decorators import test


def feature_importance(booster: xgb.Booster, dv, top: int = 20) -> List[Tuple[str, float]]:
    """Total gain per feature, with the DictVectorizer's names ('PU_DO=74_75')."""
    names = list(dv.feature_names_)
    scores = booster.get_score(importance_type='total_gain')
    named = []
    for key, value in scores.items():
        index = int(key[1:]) if key.startswith('f') and key[1:].isdigit() else None
        named.append((names[index] if index is not None and index < len(names) else key, float(value)))
    named.sort(key=lambda item: item[1], reverse=True)
    return named[:top]


@data_exporter
def train(settings: List, *args, **kwargs) -> Tuple[xgb.Booster, Dict]:
    """Train the final booster with the best hyperparameters (early stopping on the
    validation set), log it with its feature importance and the DictVectorizer to
    MLflow, and make it the champion if it beats the current one."""
    hyperparameters, X_train, y_train, X_val, y_val, dv, model_info = settings
    logger = kwargs.get('logger')

    dtrain = to_dmatrix(X_train, y_train)
    dval = to_dmatrix(X_val, y_val)
    params = xgboost_params(hyperparameters, random_state=int(kwargs.get('random_state', 7)))
    booster = xgb.train(
        params,
        dtrain,
        num_boost_round=int(kwargs.get('num_boost_round', 300)),
        evals=[(dval, 'validation')],
        early_stopping_rounds=int(kwargs.get('early_stopping_rounds', 20)),
        verbose_eval=False,
    )
    booster = booster[: booster.best_iteration + 1]  # keep the best rounds only

    metrics = regression_metrics(y_val, booster.predict(dval))
    metrics['train_rmse'] = rmse(y_train, booster.predict(dtrain))
    metrics['num_boost_round'] = booster.num_boosted_rounds()

    importance = feature_importance(booster, dv)
    with tempfile.TemporaryDirectory() as tmp:
        json_path = Path(tmp) / 'feature_importance.json'
        json_path.write_text(json.dumps(importance, indent=2))
        png_path = Path(tmp) / 'feature_importance.png'
        render_png(
            {
                'type': 'bar chart',
                'title': 'XGBoost feature importance (total gain)',
                'data': {
                    'x': [name for name, _ in importance],
                    'y': [[value for _, value in importance]],
                    'y_labels': ['total gain'],
                },
                'options': {'chart_style': 'horizontal'},
            },
            png_path,
        )
        final = log_final_model(
            booster,
            dv,
            metrics,
            {**params, 'num_boost_round': booster.num_boosted_rounds()},
            tags={'tuning_run_id': model_info.get('tuning_run_id')},
            sample=X_val[:5],
            artifacts=[json_path, png_path],
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
            'XGBoost: validation rmse %.4f after %d rounds, MLflow run %s, %s',
            metrics['rmse'],
            booster.num_boosted_rounds(),
            final.run_id,
            f'new champion v{promotion.version}' if promotion else 'not promoted',
        )
    summary = dict(
        model_class=final.model_class,
        rmse=metrics['rmse'],
        metrics=metrics,
        hyperparameters=hyperparameters,
        feature_importance=importance,
        run_id=final.run_id,
        model_uri=final.model_uri,
        promoted=bool(promotion),
        version=promotion.version,
    )
    return booster, summary


@test
def test_model_beats_the_mean(booster, summary, *args) -> None:
    assert summary['metrics']['r2'] > 0, (
        f"XGBoost does worse than predicting the mean (r2 {summary['metrics']['r2']:.3f})"
    )
    assert summary['feature_importance'], 'No feature importance computed'
