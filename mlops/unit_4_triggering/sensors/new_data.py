from mlops.unit_4_triggering.utils.retraining import new_month, watch_dir

if 'sensor' not in globals():
    from mage_ai.data_preparation.decorators import sensor


@sensor
def new_data(*args, **kwargs) -> bool:
    """True when a new monthly parquet file appeared in the watched folder (variable
    `watch_dir`, default `.blockyard/incoming/`) since the last retraining, and the
    cooldown (variable `cooldown_seconds`, default 600) has passed.

    A run queued by a monitoring rule (variable `alert`) is its own event: the sensor
    says True at once, and `retrain` applies the cooldown and the claim (it skips with
    the reason). Waiting here instead would hold a worker slot for the whole cooldown."""
    if kwargs.get('alert'):
        return True
    cooldown = float(kwargs.get('cooldown_seconds') or 0)
    return new_month(watch_dir(kwargs), cooldown) is not None
