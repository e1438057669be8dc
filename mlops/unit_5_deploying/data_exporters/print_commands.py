import shutil
import subprocess

from unit_5_deploying.utils.deploying import commands

if 'data_exporter' not in globals():
    from mage_ai.data_preparation.decorators import data_exporter
if 'test' not in globals():
    from mage_ai.data_preparation.decorators import test


def _flag(value, default: bool) -> bool:
    if value is None or value == '':
        return default
    if isinstance(value, str):
        return value.strip().lower() in ('1', 'true', 'yes', 'on')
    return bool(value)


@data_exporter
def print_commands(checked: dict, *args, **kwargs) -> dict:
    """Print the commands that deploy the rendered files.

    `dry_run` (default true) only prints them. With dry_run false the image is built and
    the compose stack started, on a machine with a Docker engine. `destroy` (default
    false: never implied) first runs `docker compose down` (volumes are kept).
    """
    dry_run = _flag(kwargs.get('dry_run'), True)
    destroy = _flag(kwargs.get('destroy'), False)
    steps = commands(checked, destroy=destroy)
    print('dry run: nothing is executed' if dry_run else 'executing:')
    for step in steps:
        print('  ' + step)
    executed = []
    if not dry_run:
        if shutil.which('docker') is None:
            raise RuntimeError('dry_run is false but there is no `docker` command on this machine')
        for step in steps:
            if step.startswith('docker '):
                subprocess.run(step.split('#')[0], shell=True, check=True)
                executed.append(step)
    return {'dry_run': dry_run, 'destroy': destroy, 'commands': steps, 'executed': executed,
            'validation': checked['validation']}


@test
def test_safe_defaults(result, *args, **kwargs) -> None:
    if kwargs.get('dry_run') in (None, ''):
        assert result['dry_run'] is True and result['executed'] == [], 'dry_run must be the default'
    if kwargs.get('destroy') in (None, ''):
        assert not any(' down' in c for c in result['commands']), 'destroy must never be the default'
