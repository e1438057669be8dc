from pathlib import Path

import pandas as pd

if 'data_exporter' not in globals():
    from mage_ai.data_preparation.decorators import data_exporter
if 'test' not in globals():
    from mage_ai.data_preparation.decorators import test


def _data_dir() -> Path:
    from blockyard.ml.tracking import data_dir

    return data_dir()


@data_exporter
def export_predictions(df: pd.DataFrame, *args, **kwargs) -> dict:
    """Write the month's predictions to Parquet and to a database table.

    - Parquet: `<output_dir>/<month>.parquet` (variable `output_dir`, default
      `.blockyard/batch_predictions/` in the workspace);
    - table `table_name` (default `batch_predictions`) at the SQLAlchemy URL in the
      variable `database_url` (default: SQLite `.blockyard/batch_predictions.db`). A
      re-run of a month replaces that month's rows."""
    import sqlalchemy as sa

    month = str(df['month'].iloc[0])
    folder = Path(kwargs.get('output_dir') or _data_dir() / 'batch_predictions')
    folder.mkdir(parents=True, exist_ok=True)
    parquet_path = folder / f'{month}.parquet'
    df.to_parquet(parquet_path, index=False)

    url = kwargs.get('database_url') or f"sqlite:///{_data_dir() / 'batch_predictions.db'}"
    table = kwargs.get('table_name') or 'batch_predictions'
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            if sa.inspect(conn).has_table(table):
                conn.execute(sa.text(f'DELETE FROM "{table}" WHERE month = :month'), {'month': month})
            df.to_sql(table, conn, if_exists='append', index=False, chunksize=10_000)
    finally:
        engine.dispose()
    return {
        'rows': len(df),
        'month': month,
        'model_version': str(df['model_version'].iloc[0]),
        'parquet': str(parquet_path),
        'table': table,
        'mean_predicted_duration': float(df['predicted_duration'].mean()),
    }


@test
def test_export(summary, *args) -> None:
    assert summary['rows'] > 0, 'Nothing exported'
    assert Path(summary['parquet']).is_file(), f"{summary['parquet']} was not written"
