"""blockyard.ml: metrics, Optuna tuning, MLflow tracking into a real SQLite store, registry."""
from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("sklearn")
pytest.importorskip("mlflow")
pytest.importorskip("optuna")
pytest.importorskip("xgboost")


@pytest.fixture(autouse=True)
def _no_foreign_tracking(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("BLOCKYARD_HOME", raising=False)


@pytest.fixture(scope="module")
def data():
    """A small sparse regression problem shaped like the course's (one-hot + a number)."""
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    n, k = 1500, 40
    cats = rng.integers(0, k, size=n)
    dist = rng.exponential(3.0, size=n)
    effect = rng.normal(0, 3, size=k)
    y = 5 + 2.5 * dist + effect[cats] + rng.normal(0, 1.0, size=n)
    X = sp.hstack([sp.csr_matrix((np.ones(n), (np.arange(n), cats)), shape=(n, k)), sp.csr_matrix(dist[:, None])]).tocsr()
    parts = [X[:1000], X[1000:]]
    for part in parts:  # 64-bit indices, as DictVectorizer makes them
        part.indices = part.indices.astype(np.int64)
        part.indptr = part.indptr.astype(np.int64)
    return parts[0], y[:1000], parts[1], y[1000:]


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _logger(name: str) -> tuple[logging.Logger, _Collect]:
    logger = logging.getLogger(f"test_ml.{name}")
    logger.setLevel(logging.INFO)
    handler = _Collect()
    logger.addHandler(handler)
    return logger, handler


# ------------------------------------------------------------------------------ metrics


def test_metrics_match_sklearn():
    from sklearn import metrics as skm

    from blockyard.ml import metrics

    y = np.array([3.0, 5.0, 2.5, 7.0, 10.0])
    p = np.array([2.5, 5.0, 4.0, 8.0, 8.0])
    assert metrics.mse(y, p) == pytest.approx(skm.mean_squared_error(y, p))
    assert metrics.rmse(y, p) == pytest.approx(skm.mean_squared_error(y, p) ** 0.5)
    assert metrics.mae(y, p) == pytest.approx(skm.mean_absolute_error(y, p))
    assert metrics.r2(y, p) == pytest.approx(skm.r2_score(y, p))
    assert metrics.regression_metrics(y, p, prefix="val_")["val_rmse"] == pytest.approx(metrics.rmse(y, p))
    with pytest.raises(ValueError, match="5 values"):
        metrics.rmse(y, p[:3])


# ------------------------------------------------------------------------------- tuning


def test_model_names_resolve_and_unknown_ones_are_explained():
    from blockyard.ml import tuning

    assert tuning.parse_model_list(None) == ["linear_model.LinearRegression", "linear_model.Lasso"]
    assert tuning.parse_model_list(" svm.LinearSVR, ensemble.ExtraTreesRegressor ") == [
        "svm.LinearSVR",
        "ensemble.ExtraTreesRegressor",
    ]
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor

    assert tuning.load_model_class("ensemble.RandomForestRegressor") is RandomForestRegressor
    assert tuning.load_model_class("GradientBoostingRegressor") is GradientBoostingRegressor
    with pytest.raises(ValueError, match="linear_model.Lasso"):
        tuning.load_model_class("linear_model.NoSuchModel")
    with pytest.raises(ValueError, match="known"):
        tuning.parse_model_list("Nonsense")


def test_every_listed_model_has_a_search_space():
    import optuna

    from blockyard.ml import tuning

    for short in tuning.SKLEARN_MODELS:
        cls = tuning.load_model_class(short)
        trial = optuna.create_study().ask()
        params = tuning.sklearn_search_space(cls.__name__)(trial, 7)
        cls(**params)  # every sampled set is accepted by the class


def test_ensure_int32_indices(data):
    from blockyard.ml.tuning import ensure_int32_indices

    X = data[0]
    assert X.indices.dtype == np.int64
    Y = ensure_int32_indices(X)
    assert Y.indices.dtype == np.int32 and Y.indptr.dtype == np.int32
    assert (Y != X).nnz == 0
    assert ensure_int32_indices(Y) is Y


def test_tune_sklearn_lasso_is_seeded_and_logs_each_trial(data):
    from blockyard.ml.tuning import tune_sklearn

    X_train, y_train, X_val, y_val = data
    logger, seen = _logger("lasso")
    calls = []
    result = tune_sklearn(
        "linear_model.Lasso",
        X_train, y_train, X_val, y_val,
        max_evaluations=6,
        random_state=3,
        logger=logger,
        on_trial=lambda n, p, m: calls.append((n, p, m)),
        progress=False,
    )
    again = tune_sklearn("linear_model.Lasso", X_train, y_train, X_val, y_val, max_evaluations=6, random_state=3, progress=False)
    assert result.best_params == again.best_params
    assert result.model_class == "sklearn.linear_model.Lasso"
    assert result.n_trials == 6
    assert len(calls) == 6 and all("rmse" in m for _, _, m in calls)
    assert min(m["rmse"] for _, _, m in calls) == pytest.approx(result.best_rmse)
    assert 1e-4 <= result.best_params["alpha"] <= 1.0
    trial_lines = [m for m in seen.messages if " trial " in m]
    assert len(trial_lines) == 6 and "Lasso trial 1/6" in trial_lines[0]
    assert any("best rmse" in m for m in seen.messages)
    # It really tuned: the best trial beats a badly regularised Lasso.
    from sklearn.linear_model import Lasso

    from blockyard.ml.metrics import rmse
    from blockyard.ml.tuning import ensure_int32_indices

    bad = Lasso(alpha=1.0).fit(ensure_int32_indices(X_train), y_train)
    assert result.best_rmse < rmse(y_val, bad.predict(ensure_int32_indices(X_val)))


def test_tune_sklearn_small_space_stops_repeating(data):
    from blockyard.ml.tuning import tune_sklearn

    X_train, y_train, X_val, y_val = data
    fits = []
    result = tune_sklearn(
        "linear_model.LinearRegression",
        X_train, y_train, X_val, y_val,
        max_evaluations=50,
        on_trial=lambda n, p, m: fits.append(p),
        progress=False,
    )
    assert len(fits) == 2  # two distinct points, each fitted once
    assert result.n_trials < 50
    assert result.best_params == {"fit_intercept": True}


def test_tune_xgboost_starts_from_known_good_params_and_prunes(data):
    from blockyard.ml.tuning import XGBOOST_START, tune_xgboost

    X_train, y_train, X_val, y_val = data
    hopeless = lambda trial: {  # noqa: E731 - learning so slowly it must fall behind
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 2e-4),
        "max_leaves": 7,
    }
    result = tune_xgboost(
        X_train, y_train, X_val, y_val,
        max_evaluations=3,
        num_boost_round=60,
        early_stopping_rounds=10,
        search_space=hopeless,
        prune_warmup_rounds=5,
        progress=False,
        nthread=1,
    )
    states = [t["state"] for t in result.trials]
    assert states[0] == "complete"
    assert result.trials[0]["params"] == XGBOOST_START
    assert states.count("pruned") == 2
    assert result.best_params == XGBOOST_START
    assert 0 < result.best_iteration <= 60
    assert result.best_rmse < float(np.std(y_val))  # far better than predicting the mean


def test_tuners_share_one_signature_for_the_shared_concepts():
    import inspect

    from blockyard.ml.tuning import tune_sklearn, tune_xgboost
    from blockyard.ml.tuning_study import COMMON_PARAMETERS

    shapes = []
    for tuner in (tune_sklearn, tune_xgboost):
        params = inspect.signature(tuner).parameters.values()
        keywords = [p for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
        assert [p.name for p in keywords[: len(COMMON_PARAMETERS)]] == list(COMMON_PARAMETERS), tuner.__name__
        # same defaults too, except the budget (an xgboost trial costs far more)
        shapes.append({p.name: p.default for p in keywords[1: len(COMMON_PARAMETERS)]})
    assert shapes[0] == shapes[1]


def _custom_spaces(seen: list) -> dict:
    """Custom search spaces for both tuners in both conventions; `seen` gets the
    random_state each two-parameter space is given."""

    def lasso_trial(trial):
        return {"alpha": trial.suggest_float("alpha", 1e-3, 1e-2, log=True)}

    def lasso_trial_random_state(trial, random_state):
        seen.append(random_state)
        return {**lasso_trial(trial), "random_state": random_state}

    def xgboost_trial(trial):
        return {"max_leaves": 15, "learning_rate": trial.suggest_float("learning_rate", 0.1, 0.3)}

    def xgboost_trial_random_state(trial, random_state):
        seen.append(random_state)
        return xgboost_trial(trial)

    return {
        ("sklearn", 1): lasso_trial, ("sklearn", 2): lasso_trial_random_state,
        ("xgboost", 1): xgboost_trial, ("xgboost", 2): xgboost_trial_random_state,
    }


def _tune(tuner: str, data, space, **kwargs):
    from blockyard.ml.tuning import tune_sklearn, tune_xgboost

    if tuner == "sklearn":
        return tune_sklearn("linear_model.Lasso", *data, search_space=space, progress=False, **kwargs)
    return tune_xgboost(*data, search_space=space, start_params=None, num_boost_round=15,
                        early_stopping_rounds=5, prune=False, progress=False, nthread=1, **kwargs)


@pytest.mark.parametrize("tuner", ["sklearn", "xgboost"])
@pytest.mark.parametrize("parameters", [1, 2], ids=["trial", "trial-random_state"])
def test_both_tuners_take_a_search_space_of_either_convention(data, tuner, parameters):
    seen: list = []
    space = _custom_spaces(seen)[tuner, parameters]
    result = _tune(tuner, data, space, max_evaluations=3, random_state=5)
    assert result.n_trials == 3 and len(result.trials) == 3
    if tuner == "sklearn":
        assert 1e-3 <= result.best_params["alpha"] <= 1e-2
    else:
        assert result.best_params["max_leaves"] == 15 and 0.1 <= result.best_params["learning_rate"] <= 0.3
    assert seen == ([5] * 3 if parameters == 2 else [])


def test_search_space_conventions_by_signature():
    import functools

    from blockyard.ml.tuning_study import space_sampler

    class Space:
        def __call__(self, trial, random_state=None):
            return {"got": (trial, random_state)}

    def three(trial, random_state, extra):
        return {}

    cases = [
        (lambda trial: {"got": trial}, {"got": "T"}),
        (lambda trial, random_state: {"got": (trial, random_state)}, {"got": ("T", 9)}),
        (lambda trial, random_state=None: {"got": (trial, random_state)}, {"got": ("T", 9)}),
        (lambda trial, *, scale=2: {"got": trial * scale}, {"got": "TT"}),
        (Space(), {"got": ("T", 9)}),
        (functools.partial(three, extra=1), {}),
    ]
    for space, expected in cases:
        assert space_sampler(space, 9)("T") == expected


@pytest.mark.parametrize("tuner", ["sklearn", "xgboost"])
def test_a_search_space_of_another_shape_is_a_clear_error(data, tuner):
    def my_space(trial, random_state, extra):
        return {}

    with pytest.raises(TypeError, match=r"search_space my_space\(trial, random_state, extra\).*\(trial\) or \(trial, random_state\)"):
        _tune(tuner, data, my_space, max_evaluations=2)
    with pytest.raises(TypeError, match=r"search_space must be a function.*not 3"):
        _tune(tuner, data, 3, max_evaluations=2)


def test_tune_xgboost_without_start_params(data):
    from blockyard.ml.tuning import tune_xgboost

    X_train, y_train, X_val, y_val = data
    result = tune_xgboost(
        X_train, y_train, X_val, y_val,
        max_evaluations=2, num_boost_round=20, early_stopping_rounds=5,
        start_params=None, prune=False, progress=True, random_state=1, nthread=1,
    )
    assert result.n_trials == 2
    assert set(result.best_params) >= {"max_leaves", "learning_rate", "min_child_weight"}


# ----------------------------------------------------------------------------- tracking


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return tmp_path_factory.mktemp("ws")


CTX = {"pipeline_uuid": "sklearn_training", "block_uuid": "hyperparameter_tuning/sklearn", "pipeline_run_id": 42,
       "project_uuid": "unit_2_training", "dynamic_block_uuid": "hyperparameter_tuning/sklearn:Lasso"}


def test_setup_mlflow_creates_the_store_in_the_workspace(workspace, monkeypatch):
    from blockyard.ml import tracking

    t = tracking.setup_mlflow(workspace)
    assert t.tracking_uri == f"sqlite:///{workspace.resolve() / '.blockyard' / 'mlflow.db'}"
    assert (workspace / ".blockyard" / "mlflow.db").is_file()
    assert t.experiment_name == "nyc-taxi-experiment"
    assert t.artifact_location == (workspace.resolve() / ".blockyard" / "mlartifacts").as_uri()
    # BLOCKYARD_WORKSPACE is the default workspace; BLOCKYARD_HOME moves .blockyard.
    monkeypatch.setenv("BLOCKYARD_WORKSPACE", str(workspace))
    assert tracking.default_tracking_uri() == t.tracking_uri
    monkeypatch.setenv("BLOCKYARD_HOME", str(workspace / "elsewhere"))
    assert tracking.default_tracking_uri().endswith("elsewhere/mlflow.db")


def test_tuning_run_logs_trials_as_child_runs(workspace, data):
    from blockyard.ml.tracking import tuning_run
    from blockyard.ml.tuning import tune_sklearn

    X_train, y_train, X_val, y_val = data
    with tuning_run("sklearn.linear_model.Lasso", context=CTX, workspace=workspace) as run:
        result = tune_sklearn("linear_model.Lasso", X_train, y_train, X_val, y_val, max_evaluations=3,
                              on_trial=run.on_trial, progress=False)
        run.finish(result.best_params, {"rmse": result.best_rmse})
    client = _client(workspace)
    parent = client.get_run(run.run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["rmse"] == pytest.approx(result.best_rmse)
    assert float(parent.data.params["alpha"]) == pytest.approx(result.best_params["alpha"])
    tags = parent.data.tags
    assert tags["model_class"] == "sklearn.linear_model.Lasso"
    assert tags["pipeline"] == "sklearn_training"
    assert tags["block"] == "hyperparameter_tuning/sklearn"
    assert tags["block_run"] == "hyperparameter_tuning/sklearn:Lasso"
    assert tags["blockyard_run_id"] == "42"
    assert tags["project"] == "unit_2_training"
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run.run_id}'"
    )
    assert len(children) == 3 == len(run.trial_run_ids)
    assert {c.data.tags["blockyard_kind"] for c in children} == {"trial"}
    assert all(c.data.tags["blockyard_run_id"] == "42" for c in children)
    assert min(c.data.metrics["rmse"] for c in children) == pytest.approx(result.best_rmse)


def test_tuning_run_marks_failure(workspace):
    from blockyard.ml.tracking import tuning_run

    with pytest.raises(RuntimeError):
        with tuning_run("sklearn.linear_model.Lasso", context=CTX, workspace=workspace) as run:
            raise RuntimeError("boom")
    assert _client(workspace).get_run(run.run_id).info.status == "FAILED"


def _client(workspace):
    from blockyard.ml.tracking import setup_mlflow

    return setup_mlflow(workspace).client


def test_log_final_model_with_dv_signature_and_tags(workspace, data):
    import mlflow
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LinearRegression

    from blockyard.ml.metrics import regression_metrics
    from blockyard.ml.tracking import load_dv, log_final_model

    X_train, y_train, X_val, y_val = data
    dv = DictVectorizer().fit([{"PU_DO": "1_2", "trip_distance": 1.0}])
    model = LinearRegression().fit(X_train, y_train)
    metrics = regression_metrics(y_val, model.predict(X_val))
    final = log_final_model(model, dv, metrics, {"fit_intercept": True}, sample=X_val[:5],
                            context={**CTX, "block_uuid": "sklearn"}, workspace=workspace)
    run = _client(workspace).get_run(final.run_id)
    assert run.data.metrics["rmse"] == pytest.approx(metrics["rmse"])
    assert run.data.params["fit_intercept"] == "True"
    assert run.data.tags["model_class"] == "sklearn.linear_model.LinearRegression"
    assert run.data.tags["block"] == "sklearn"
    assert run.data.tags["blockyard_kind"] == "final"
    assert load_dv(final.run_id, workspace=workspace).feature_names_ == dv.feature_names_
    loaded = mlflow.sklearn.load_model(final.model_uri)
    assert np.allclose(loaded.predict(X_val[:10]), model.predict(X_val[:10]))
    info = mlflow.models.get_model_info(final.model_uri)
    assert info.signature is not None
    # artifacts live under the workspace's .blockyard/mlartifacts
    assert any((workspace / ".blockyard" / "mlartifacts").rglob("dv.pkl"))


def test_log_final_xgboost_booster(workspace, data):
    import mlflow
    import xgboost as xgb

    from blockyard.ml.tracking import log_final_model

    X_train, y_train, X_val, y_val = data
    booster = xgb.train({"max_depth": 3, "nthread": 1}, xgb.DMatrix(X_train, label=y_train), num_boost_round=5)
    final = log_final_model(booster, None, {"rmse": 1.0}, {"max_depth": 3}, sample=X_val[:5], workspace=workspace)
    assert final.model_class == "xgboost.Booster"
    loaded = mlflow.xgboost.load_model(final.model_uri)
    assert np.allclose(loaded.predict(xgb.DMatrix(X_val[:5])), booster.predict(xgb.DMatrix(X_val[:5])))


# ----------------------------------------------------------------------------- registry


def _logged(workspace, rmse_value: float) -> tuple[str, str]:
    from sklearn.dummy import DummyRegressor

    from blockyard.ml.tracking import log_final_model

    model = DummyRegressor().fit([[0.0], [1.0]], [0.0, 1.0])
    final = log_final_model(model, None, {"rmse": rmse_value}, {}, workspace=workspace)
    return final.model_uri, final.run_id


def test_registry_promotes_only_a_better_model(workspace):
    from blockyard.ml.registry import champion, promote_if_better

    name = "reg-test"
    assert champion(name, workspace=workspace) is None
    uri, run_id = _logged(workspace, 6.0)
    first = promote_if_better(uri, 6.0, run_id=run_id, name=name, workspace=workspace)
    assert first and first.version == "1" and first.previous_version is None

    uri, run_id = _logged(workspace, 6.5)
    worse = promote_if_better(uri, 6.5, run_id=run_id, name=name, workspace=workspace)
    assert not worse and worse.version is None and worse.previous_rmse == pytest.approx(6.0)

    tie = promote_if_better(uri, 6.0, run_id=run_id, name=name, workspace=workspace)
    assert not tie

    uri, run_id = _logged(workspace, 5.1)
    better = promote_if_better(uri, 5.1, run_id=run_id, name=name, workspace=workspace)
    assert better and better.version == "2" and better.previous_version == "1"
    current = champion(name, workspace=workspace)
    assert current["version"] == "2" and current["rmse"] == pytest.approx(5.1)
    assert current["run_id"] == run_id

    kept = promote_if_better(uri, 7.0, name=name, register_all=True, workspace=workspace)
    assert not kept and kept.version == "3"
    assert champion(name, workspace=workspace)["version"] == "2"


def test_registry_concurrent_promotions_keep_the_best(workspace):
    from blockyard.ml.registry import champion, promote_if_better

    name = "reg-race"
    values = [6.3, 5.2, 5.9, 5.5, 6.1]
    logged = [_logged(workspace, v) for v in values]
    barrier = threading.Barrier(len(values))
    results = {}

    def promote(i: int) -> None:
        barrier.wait()
        uri, run_id = logged[i]
        results[i] = promote_if_better(uri, values[i], run_id=run_id, name=name, workspace=workspace)

    threads = [threading.Thread(target=promote, args=(i,)) for i in range(len(values))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert champion(name, workspace=workspace)["rmse"] == pytest.approx(5.2)
    assert results[1].promoted
    assert not results[0].promoted or results[0].previous_version is None


def test_tune_xgboost_time_budget_stops_the_running_trial(data):
    from blockyard.ml.tuning import tune_xgboost

    X_train, y_train, X_val, y_val = data
    result = tune_xgboost(
        X_train, y_train, X_val, y_val,
        max_evaluations=5, num_boost_round=500, early_stopping_rounds=500,
        timeout=1e-6, progress=False, nthread=1,
    )
    assert result.n_trials == 1  # no second trial starts after the deadline
    assert result.best_iteration == 1  # and the first one stopped after its first round
    assert result.best_rmse > 0
