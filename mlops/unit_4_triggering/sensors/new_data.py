from mlops.unit_4_triggering.utils.retraining import new_month, watch_dir

if 'sensor' not in globals():
    from mage_ai.data_preparation.decorators import sensor


@sensor
def new_data(*args, **kwargs) -> bool:
    """True when a new monthly parquet file appeared in the watched folder (variable
    `watch_dir`, default `.blockyard/incoming/`) since the last retraining, and the
    cooldown (variable `cooldown_seconds`, default 600) has passed. A run queued by a
    monitoring rule (variable `alert`) retrains for the newest month present."""
    cooldown = float(kwargs.get('cooldown_seconds') or 0)
    return new_month(watch_dir(kwargs), cooldown, alert=bool(kwargs.get('alert'))) is not None
