"""The MLflow runs of the course as one frame, for the overview dashboard
(presenters/overview): one row per run that has a model class and an rmse or mse."""
from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd

# The models of units 2 and 4; each gets its own rmse_<model> / mse_<model> column
# (empty when it was never trained) so the dashboard's metrics always exist.
MODELS = ('Booster', 'LinearRegression', 'Lasso')


def load_data(workspace_root=None, *args, **kwargs) -> pd.DataFrame:
    from blockyard.ml.tracking import TAG_MODEL_CLASS, setup_mlflow

    client = setup_mlflow(workspace_root).client
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs, token = [], None
    while experiments:
        page = client.search_runs(experiments, max_results=1000, page_token=token, order_by=['attributes.start_time ASC'])
        runs.extend(page)
        token = page.token
        if not token:
            break
    rows = []
    for run in runs:
        model = (run.data.tags.get(TAG_MODEL_CLASS) or '').rsplit('.', 1)[-1]
        rmse, mse = run.data.metrics.get('rmse'), run.data.metrics.get('mse')
        if mse is None and rmse is not None:
            mse = rmse ** 2
        if not model or rmse is None:
            continue
        start = datetime.fromtimestamp(run.info.start_time / 1000, tz=timezone.utc)
        row = dict(run_uuid=run.info.run_id, model=model, start_time=start, rmse=rmse, mse=mse,
                   start_time_format_day=start.strftime('%Y-%m-%d'),
                   start_time_format_hour=start.strftime('%Y-%m-%d %H:00'))
        row[f'rmse_{model}'], row[f'mse_{model}'] = rmse, mse
        rows.append(row)
    base = ['run_uuid', 'model', 'start_time', 'rmse', 'mse', 'start_time_format_day', 'start_time_format_hour']
    frame = pd.DataFrame(rows) if rows else pd.DataFrame(columns=base)
    for model in MODELS:
        for metric in ('rmse', 'mse'):
            if f'{metric}_{model}' not in frame.columns:
                frame[f'{metric}_{model}'] = float('nan')
    frame.insert(1, 'run_id', range(1, len(frame) + 1))
    return frame
