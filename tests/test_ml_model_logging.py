"""Logging the course's sklearn models to a real MLflow store (SQLite tracking store and
artifact folder in tmp_path) and loading them back.

MLflow stores sklearn models as skops; RandomForest, ExtraTrees and GradientBoosting hold
`sklearn.tree._tree.Tree`, which skops does not trust by default, so logging them failed
in unit 2's exporter. (MLflow's plain file store is closed in this MLflow version:
SQLite is the store the workspace uses by default.)
"""
from __future__ import annotations

import numpy as np
import pytest
import yaml
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.feature_extraction import DictVectorizer

from blockyard.ml.tuning import SKLEARN_MODELS, ensure_int32_indices, load_model_class

# Small but real fits: trees need only a few estimators to hold Tree objects.
SMALL = {"n_estimators": 4, "random_state": 0}
PARAMS = {
    "ensemble.RandomForestRegressor": SMALL,
    "ensemble.ExtraTreesRegressor": SMALL,
    "ensemble.GradientBoostingRegressor": SMALL,
    "svm.LinearSVR": {"random_state": 0},
}


@pytest.fixture()
def store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("BLOCKYARD_HOME", str(tmp_path / "home"))
    return tmp_path


@pytest.fixture(scope="module")
def features():
    """Trips as the course vectorises them: a categorical PU_DO pair and a distance."""
    rng = np.random.default_rng(7)
    rows = [{"PU_DO": f"{rng.integers(8)}_{rng.integers(8)}", "trip_distance": float(rng.gamma(2.0, 2.0))}
            for _ in range(300)]
    dv = DictVectorizer()
    X = ensure_int32_indices(dv.fit_transform(rows))
    y = np.array([3.0 * r["trip_distance"] + int(r["PU_DO"][0]) for r in rows]) + rng.normal(0, 1, len(rows))
    return dv, X, y


def _mlmodel(final) -> dict:
    import mlflow

    local = mlflow.artifacts.download_artifacts(artifact_uri=final.model_uri)
    with open(f"{local}/MLmodel") as fh:
        return yaml.safe_load(fh)


# The models unit 2's sklearn pipeline fans out over (bench_dask's six + GradientBoosting).
@pytest.mark.parametrize("name", sorted(SKLEARN_MODELS))
def test_every_course_model_is_logged_and_loads_back_with_identical_predictions(store, features, name):
    import mlflow.pyfunc
    import mlflow.sklearn

    from blockyard.ml.tracking import load_dv, log_final_model

    dv, X, y = features
    model = load_model_class(name)(**PARAMS.get(name, {})).fit(X, y)
    final = log_final_model(model, dv, {"rmse": 1.0}, PARAMS.get(name, {}), sample=X[:5], workspace=store)

    flavor = _mlmodel(final)["flavors"]["sklearn"]
    assert flavor["serialization_format"] == "skops"  # never silently pickled
    back = mlflow.sklearn.load_model(final.model_uri)
    assert type(back) is type(model)
    np.testing.assert_array_equal(back.predict(X), model.predict(X))
    np.testing.assert_array_equal(mlflow.pyfunc.load_model(final.model_uri).predict(X[:20]), model.predict(X[:20]))
    assert load_dv(final.run_id, workspace=store).feature_names_ == dv.feature_names_
    assert (store / "home" / "mlartifacts").is_dir()


def test_tree_models_trust_only_the_named_sklearn_types(store, features):
    from blockyard.ml.tracking import SKOPS_TRUSTED_TYPES, log_final_model

    dv, X, y = features
    model = load_model_class("ensemble.RandomForestRegressor")(**SMALL).fit(X, y)
    final = log_final_model(model, dv, {"rmse": 1.0}, workspace=store)
    trusted = _mlmodel(final)["flavors"]["sklearn"]["skops_trusted_types"]
    assert "sklearn.tree._tree.Tree" in trusted
    assert set(trusted) == set(SKOPS_TRUSTED_TYPES)


class HandRolledRegressor(RegressorMixin, BaseEstimator):
    """A user-defined class: skops must keep refusing it unless it is named."""

    def fit(self, X, y):
        self.mean_ = float(np.mean(y))
        return self

    def predict(self, X):
        return np.full(X.shape[0], self.mean_)


def test_a_type_outside_the_list_is_still_refused_with_the_model_named(store, features):
    from blockyard.ml.tracking import log_final_model

    dv, X, y = features
    model = HandRolledRegressor().fit(X, y)
    with pytest.raises(ValueError) as info:
        log_final_model(model, dv, {"rmse": 1.0}, workspace=store)
    message = str(info.value)
    assert "HandRolledRegressor" in message and "skops_trusted_types" in message

    # Named explicitly by the caller, it is logged and loads back.
    import mlflow.sklearn

    dotted = f"{HandRolledRegressor.__module__}.HandRolledRegressor"
    final = log_final_model(model, dv, {"rmse": 1.0}, workspace=store, skops_trusted_types=[dotted])
    back = mlflow.sklearn.load_model(final.model_uri)
    np.testing.assert_array_equal(back.predict(X), model.predict(X))
