from typing import Dict

from mlops.unit_4_triggering.utils.retraining import load_months, mark_seen, watch_dir

if 'custom' not in globals():
    from mage_ai.data_preparation.decorators import custom


@custom
def promote(retraining: Dict, *args, **kwargs) -> Dict:
    """Score the challenger and the champion on the new (newest labelled) month; move
    the alias to the challenger only when its RMSE there is lower. The decision and its
    reason are recorded either way as tags of the challenger's model version
    (`retraining_decision`, `retraining_reason`, `retraining_month`, `retraining_trigger`
    — new data or the alert's rule —, both RMSEs).
    A server following the alias swaps to a promoted challenger at its next poll."""
    if retraining.get('skipped'):
        return retraining
    from blockyard.ml.metrics import rmse
    from blockyard.ml.tracking import setup_mlflow, workspace_root
    from blockyard.serving.model import load_version

    name = kwargs.get('model_name') or 'nyc-taxi-duration'
    alias = kwargs.get('alias') or 'champion'
    folder = watch_dir(kwargs)
    month = retraining['month']
    client = setup_mlflow().client
    found = client.search_model_versions(f"name = '{name}' and tags.retraining_id = '{retraining['retraining_id']}'")
    if not found:
        raise RuntimeError(f"train_challenger registered no version with retraining_id {retraining['retraining_id']}")
    challenger_version = str(found[0].version)

    df = load_months(folder, [month])
    records = df[['PULocationID', 'DOLocationID', 'trip_distance']].to_dict('records')
    y = df['duration'].to_numpy()
    root = workspace_root()
    challenger = load_version(root, name, alias, version=challenger_version)
    challenger_rmse = rmse(y, challenger.predict(records, field='trips'))
    try:
        champion = load_version(root, name, alias)
        champion_rmse = rmse(y, champion.predict(records, field='trips'))
    except LookupError:
        champion, champion_rmse = None, None

    if champion is None:
        promoted, reason = True, f'no {alias} yet; challenger rmse {challenger_rmse:.4f} on {month}'
    elif challenger_rmse < champion_rmse:
        promoted, reason = True, (f'challenger v{challenger_version} rmse {challenger_rmse:.4f} < '
                                  f'{alias} v{champion.version} rmse {champion_rmse:.4f} on {month}')
    else:
        promoted, reason = False, (f'challenger v{challenger_version} rmse {challenger_rmse:.4f} >= '
                                   f'{alias} v{champion.version} rmse {champion_rmse:.4f} on {month}: kept')
    tags = {
        'retraining_decision': 'promoted' if promoted else 'kept',
        'retraining_reason': reason,
        'retraining_month': month,
        'retraining_trigger': retraining.get('trigger') or 'new data',
        'retraining_challenger_rmse': repr(challenger_rmse),
        'retraining_champion_rmse': repr(champion_rmse),
        'retraining_champion_version': champion.version if champion else '',
        'rmse': repr(challenger_rmse),  # what unit 2's promote_if_better compares against
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, challenger_version, key, value)
    if promoted:
        client.set_registered_model_alias(name, alias, challenger_version)
    mark_seen(folder, month)
    logger = kwargs.get('logger')
    if logger:
        logger.info('retraining on %s: %s', month, reason)
    return {'month': month, 'promoted': promoted, 'reason': reason, 'challenger_version': challenger_version,
            'champion_version': champion.version if champion else None,
            'challenger_rmse': challenger_rmse, 'champion_rmse': champion_rmse}
