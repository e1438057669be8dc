"""Run in a forkserver child by test_run_preload.py (no tests here)."""
import sys


def probe(conn) -> None:
    conn.send(sorted(name for name in ("evidently", "mlflow.store.tracking.sqlalchemy_store", "sklearn.linear_model")
                     if name in sys.modules))
