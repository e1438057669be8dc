"""Import this module to import the heavy ML libraries a monitoring or training run
uses — scikit-learn, MLflow (client and sklearn/xgboost flavours) and Evidently (with its
pandas shim) — once, ahead of the runs:

    BLOCKYARD_RUN_PRELOAD=blockyard.ml.preload blockyard backfill ...

makes the run forkserver import them, so each run's child process starts with them
loaded (see blockyard.orchestration.isolation). Missing libraries are skipped."""
from __future__ import annotations

import importlib

# MLflow imports its SQL stores (and alembic) lazily, at the first client call: most of
# a monitoring run's registry look-up is that import.
for _name in ("sklearn.linear_model", "sklearn.feature_extraction", "mlflow", "mlflow.tracking", "mlflow.sklearn",
              "mlflow.store.tracking.sqlalchemy_store", "mlflow.store.model_registry.sqlalchemy_store"):
    try:
        importlib.import_module(_name)
    except Exception:  # optional: its runs import it themselves
        pass
try:
    from sqlalchemy.orm import configure_mappers

    configure_mappers()  # MLflow's ORM models, configured once here rather than per run
except Exception:
    pass

try:
    from blockyard.ml.monitoring import _evidently

    _evidently()
except Exception:  # Evidently is optional (the `monitoring` extra)
    pass
