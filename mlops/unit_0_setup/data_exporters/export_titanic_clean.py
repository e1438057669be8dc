import os
from pathlib import Path

import pandas as pd

if 'data_exporter' not in globals():
    from mage_ai.data_preparation.decorators import data_exporter
if 'test' not in globals():
    from mage_ai.data_preparation.decorators import test


def workspace_folder() -> Path:
    """The course workspace (`mlops/`): two folders up from this block file."""
    try:
        return Path(__file__).resolve().parents[2]
    except NameError:  # executed without a file name
        return Path(os.environ.get('BLOCKYARD_WORKSPACE') or os.getcwd())


@data_exporter
def export_data_to_file(df: pd.DataFrame, *args, **kwargs) -> str:
    """Write the cleaned data to `titanic_clean.csv` in the workspace folder."""
    path = Path(kwargs.get('output_path') or workspace_folder() / 'titanic_clean.csv')
    df.to_csv(path, index=False)
    return str(path)


@test
def test_file_written(path, *args) -> None:
    written = pd.read_csv(path)
    assert written.shape == (891, 6), f'{path} has shape {written.shape}, expected (891, 6)'
