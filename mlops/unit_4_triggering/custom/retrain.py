import time
from typing import Dict

from mlops.unit_4_triggering.utils.retraining import claim, skip_reason, training_months, watch_dir

if 'custom' not in globals():
    from mage_ai.data_preparation.decorators import custom


@custom
def retrain(*args, **kwargs) -> Dict:
    """Train a challenger on the newest months before the new one, through
    `trigger_pipeline('train_challenger', check_status=True, error_on_failure=True)`.

    Returns {'month', 'train_months', 'retraining_id'} ({'skipped': True, 'reason'} when
    there is nothing new — a run started by hand —, inside the cooldown, or when another
    retraining already claimed the month). The triggered run's status is polled every
    `poll_interval` seconds (variable, default 2; Mage's default of 60 would add up to a
    minute to every retraining)."""
    from mage_ai.orchestration.triggers.api import trigger_pipeline

    folder = watch_dir(kwargs)
    alert = kwargs.get('alert')  # set when a monitoring rule queued this run
    cooldown = float(kwargs.get('cooldown_seconds') or 0)
    month = claim(folder, cooldown, alert=bool(alert))  # one at a time
    if month is None:
        reason = skip_reason(folder, cooldown, alert=bool(alert))
        logger = kwargs.get('logger')
        if logger:
            logger.info('retraining skipped: %s', reason)
        return {'skipped': True, 'reason': reason,
                'trigger': f"alert: {alert.get('rule')}" if isinstance(alert, dict) else 'new data'}
    months = training_months(folder, month, int(kwargs.get('train_month_count') or 2))
    retraining_id = f'{month}-{int(time.time())}'
    trigger_pipeline(
        'unit_4_triggering/train_challenger',
        variables={
            'watch_dir': str(folder),
            'train_months': months,
            'retraining_id': retraining_id,
            'model_name': kwargs.get('model_name') or 'nyc-taxi-duration',
            'num_boost_round': kwargs.get('num_boost_round') or 60,
        },
        check_status=True,
        error_on_failure=True,
        poll_interval=float(kwargs.get('poll_interval') or 2),
        verbose=False,
    )
    return {'skipped': False, 'month': month, 'train_months': months, 'retraining_id': retraining_id,
            'trigger': f"alert: {alert.get('rule')}" if isinstance(alert, dict) else 'new data'}
