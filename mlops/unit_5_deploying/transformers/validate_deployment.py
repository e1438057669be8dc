from pathlib import Path

from unit_5_deploying.utils.deploying import validate

if 'transformer' not in globals():
    from mage_ai.data_preparation.decorators import transformer
if 'test' not in globals():
    from mage_ai.data_preparation.decorators import test


@transformer
def validate_deployment(rendered: dict, *args, **kwargs) -> dict:
    """Check the rendered files with `docker-compose config` and `kubernetes-validate`
    (no Docker engine or cluster needed); an invalid file fails the block, naming it."""
    report = validate(Path(rendered['dir']))
    for part, result in report.items():
        print(f'{part}: {result}')
    return {**rendered, 'validation': report}


@test
def test_nothing_invalid(checked, *args) -> None:
    for part, result in checked['validation'].items():
        assert result == 'valid' or result.startswith(('valid:', 'skipped:')), f'{part}: {result}'
