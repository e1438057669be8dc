import pandas as pd

from blockyard.datasets import load_titanic

if 'data_loader' not in globals():
    from mage_ai.data_preparation.decorators import data_loader
if 'test' not in globals():
    from mage_ai.data_preparation.decorators import test


@data_loader
def load_data(*args, **kwargs) -> pd.DataFrame:
    """The Titanic passenger list (891 rows).

    Downloaded once from
    https://raw.githubusercontent.com/datasciencedojo/datasets/master/titanic.csv,
    checked against its sha256 and cached (or read from BLOCKYARD_DATA_MIRROR).
    """
    return load_titanic()


@test
def test_output(output, *args) -> None:
    assert output is not None, 'The output is undefined'
    assert len(output.index) == 891, f'Expected 891 passengers, got {len(output.index)}'
    assert 'Survived' in output.columns, 'The Survived column is missing'
