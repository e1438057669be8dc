"""Model monitoring: a stored reference profile and checks of new batches against it.

```python
from blockyard.ml import monitoring
ref = monitoring.build_reference(train_df, model="nyc-taxi-duration",
                                 numerical=["trip_distance"], categorical=["PU_DO"],
                                 target="duration", prediction="prediction",
                                 baseline={"rmse": 5.9})           # once, after training
result = monitoring.check(batch_df, "nyc-taxi-duration", period="2023-02")
result.drift_share, result.features["trip_distance"], result.rmse, result.report_path
```

The statistics come from Evidently (drift per feature, share of drifted features,
prediction drift, and the HTML report). What is sampled, and why it may be:
- the reference is stored once as a seeded sample of at most `REFERENCE_SAMPLE_ROWS`
  rows (`<data dir>/monitoring/<model>/reference.parquet`), so it is never rescanned;
- drift is computed on a seeded sample of at most `CURRENT_SAMPLE_ROWS` rows of the
  batch: the drift scores are distances between distributions (Wasserstein for
  numbers, Jensen-Shannon for categories), which a sample of that size estimates to
  about a hundredth; the Evidently report is drawn from the same sample;
- missing values, RMSE and MAE are exact, computed on every row of the batch.
`MonitoringResult.sampled` records the sizes used.

Every check is stored as rows in the run-history database (`monitoring_checks`, and a
time series per model and metric in `monitoring_metrics`; see
`blockyard.ml.monitoring_store`) unless `store=False`.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

__all__ = [
    "REFERENCE_SAMPLE_ROWS",
    "CURRENT_SAMPLE_ROWS",
    "DRIFT_THRESHOLD",
    "MonitoringError",
    "ReferenceProfile",
    "MonitoringResult",
    "build_reference",
    "load_reference",
    "check",
    "reference_dir",
]

REFERENCE_SAMPLE_ROWS = 30_000
CURRENT_SAMPLE_ROWS = 30_000
# A feature has drifted when its distance to the reference reaches this value
# (Evidently's default for Wasserstein and Jensen-Shannon).
DRIFT_THRESHOLD = 0.1
DATASET_DRIFT_SHARE = 0.5  # the dataset has drifted when this share of features has
NUM_METHOD = "wasserstein"
CAT_METHOD = "jensenshannon"
PROFILE_FILE = "profile.json"
REFERENCE_FILE = "reference.parquet"

from blockyard.errors import BlockyardError  # noqa: E402


class MonitoringError(BlockyardError):
    """A reference profile or a batch cannot be used for monitoring."""


def _safe_name(model: str) -> str:
    if not isinstance(model, str) or not model.strip():
        raise MonitoringError(f"model must be a non-empty name, not {model!r}")
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", model.strip())


def _workspace(workspace: str | Path | None) -> Path:
    from blockyard import runtime
    from blockyard.ml.tracking import workspace_root

    if workspace is None:
        ctx = runtime.get()
        if ctx is not None:
            workspace = ctx.workspace_root
    return workspace_root(workspace)


def reference_dir(model: str, workspace: str | Path | None = None) -> Path:
    from blockyard.settings import data_dir_for

    return data_dir_for(_workspace(workspace)) / "monitoring" / _safe_name(model)


def _evidently():
    """Import Evidently (slow: ~1-3 s, so only when a check runs)."""
    import numpy as np
    import pandas.core.dtypes.common as pandas_common

    # Evidently 0.7 imports this pandas-private helper, which pandas 3 removed. It is only
    # used by a legacy column-type test that Blockyard never runs.
    if not hasattr(pandas_common, "infer_dtype_from_object"):
        pandas_common.infer_dtype_from_object = lambda dtype: np.dtype(dtype).type
    import evidently

    return evidently


# ------------------------------------------------------------------ reference
@dataclass
class ReferenceProfile:
    model: str
    numerical: list[str]
    categorical: list[str]
    target: str | None
    prediction: str | None
    rows: int  # rows of the training data the profile was built from
    sample_rows: int  # rows kept in reference.parquet
    baseline: dict = field(default_factory=dict)  # e.g. {"rmse": validation rmse}
    model_version: str | None = None  # the model version the reference was scored with
    created_at: str = ""
    path: Path | None = None
    _data: Any = field(default=None, repr=False)

    @property
    def features(self) -> list[str]:
        return [*self.numerical, *self.categorical]

    @property
    def columns(self) -> list[str]:
        extra = [c for c in (self.target, self.prediction) if c]
        return [*self.features, *extra]

    @property
    def data(self):
        if self._data is None:
            if self.path is None:
                raise MonitoringError(f"reference profile of {self.model!r} has no stored data")
            import pandas as pd

            self._data = pd.read_parquet(self.path / REFERENCE_FILE)
        return self._data

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("_data", None)
        out["path"] = str(self.path) if self.path else None
        return out


def _check_columns(df, columns: Iterable[str], what: str) -> None:
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise MonitoringError(f"{what} must be a pandas DataFrame, not {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise MonitoringError(
            f"{what} lacks the column(s) {missing} (it has {list(df.columns)[:20]})"
        )


def _normalize(df, numerical: list[str], categorical: list[str], extra: list[str]):
    """The monitored columns only: numbers as float64, categories as strings (missing
    values stay missing), so reference and batch always have the same types."""
    import pandas as pd

    out = pd.DataFrame(index=range(len(df)))
    for c in [*numerical, *extra]:
        out[c] = pd.to_numeric(df[c], errors="coerce").astype("float64").to_numpy()
    for c in categorical:
        col = df[c]
        out[c] = col.astype("string").astype(object).where(col.notna(), None).to_numpy()
    return out


def build_reference(
    data,
    *,
    model: str,
    numerical: Iterable[str] = (),
    categorical: Iterable[str] = (),
    target: str | None = None,
    prediction: str | None = None,
    baseline: Mapping[str, float] | None = None,
    model_version: str | None = None,
    sample_rows: int = REFERENCE_SAMPLE_ROWS,
    seed: int = 42,
    workspace: str | Path | None = None,
) -> ReferenceProfile:
    """Store the reference profile of `model` from its training data (`data`, a
    DataFrame with the feature columns, and the target/prediction columns if given).

    `baseline`: figures the batches are compared with, e.g. {"rmse": validation RMSE};
    when `target` and `prediction` are given, the reference's own rmse/mae are added
    as `reference_rmse`/`reference_mae`. Replaces a previous profile of the model."""
    from blockyard.ml.metrics import mae, rmse

    numerical, categorical = list(numerical), list(categorical)
    if not numerical and not categorical:
        raise MonitoringError("build_reference needs at least one numerical or categorical feature")
    if bool(target) != bool(prediction):
        raise MonitoringError("give both target and prediction (quality needs both), or neither")
    extra = [c for c in (target, prediction) if c]
    _check_columns(data, [*numerical, *categorical, *extra], "the reference data")
    if len(data) == 0:
        raise MonitoringError("the reference data has no rows")
    rows = len(data)
    if rows > sample_rows:
        data = data.sample(n=sample_rows, random_state=seed)
    frame = _normalize(data, numerical, categorical, extra)
    figures = {str(k): float(v) for k, v in (baseline or {}).items()}
    if target and prediction:
        ok = frame[[target, prediction]].dropna()
        if len(ok):
            figures["reference_rmse"] = rmse(ok[target], ok[prediction])
            figures["reference_mae"] = mae(ok[target], ok[prediction])
    folder = reference_dir(model, workspace)
    folder.mkdir(parents=True, exist_ok=True)
    profile = ReferenceProfile(
        model=model,
        numerical=numerical,
        categorical=categorical,
        target=target,
        prediction=prediction,
        rows=rows,
        sample_rows=len(frame),
        baseline=figures,
        model_version=str(model_version) if model_version is not None else None,
        created_at=datetime.now(timezone.utc).isoformat(),
        path=folder,
        _data=frame,
    )
    # Write the data first, the profile last: a profile file always has its data.
    tmp = folder / (REFERENCE_FILE + ".tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(folder / REFERENCE_FILE)
    meta = folder / (PROFILE_FILE + ".tmp")
    meta.write_text(json.dumps(profile.to_dict(), indent=2))
    meta.replace(folder / PROFILE_FILE)
    return profile


def load_reference(model: str, *, workspace: str | Path | None = None) -> ReferenceProfile:
    folder = reference_dir(model, workspace)
    path = folder / PROFILE_FILE
    if not path.exists():
        raise MonitoringError(
            f"no reference profile for model {model!r} (looked for {path}); "
            "call blockyard.ml.monitoring.build_reference(...) on its training data first"
        )
    try:
        raw = json.loads(path.read_text())
    except ValueError as exc:
        raise MonitoringError(f"{path} is not valid JSON: {exc}") from None
    raw.pop("path", None)
    return ReferenceProfile(**raw, path=folder)


# ----------------------------------------------------------------------- check
@dataclass
class MonitoringResult:
    model: str
    period: str | None
    rows: int
    drift_share: float  # share of features that drifted
    drifted_features: int
    dataset_drift: bool  # drift_share >= DATASET_DRIFT_SHARE
    features: dict  # name -> {score, method, drifted}
    prediction_drift: dict | None  # {score, method, drifted} when a prediction column is known
    missing_share: float  # share of missing cells in the monitored columns
    missing: dict  # column -> share of missing values
    rmse: float | None
    mae: float | None
    baseline: dict
    sampled: dict  # what was sampled: {"drift": {"rows": n, "of": N}, "reference": {...}}
    model_version: str | None = None
    report_path: str | None = None
    check_id: int | None = None
    seconds: float = 0.0
    alerts: list = field(default_factory=list)  # the rule decisions (RuleDecision dicts)

    def figures(self) -> dict[str, float]:
        """The dataset-level figures as numbers (what rules and the metric rows use)."""
        out = {
            "drift_share": self.drift_share,
            "drifted_features": float(self.drifted_features),
            "dataset_drift": 1.0 if self.dataset_drift else 0.0,
            "missing_share": self.missing_share,
            "rows": float(self.rows),
        }
        if self.prediction_drift is not None:
            out["prediction_drift"] = self.prediction_drift["score"]
        if self.rmse is not None:
            out["rmse"] = self.rmse
        if self.mae is not None:
            out["mae"] = self.mae
        for k, v in self.baseline.items():
            out[f"baseline_{k}" if not k.startswith(("baseline_", "reference_")) else k] = float(v)
        return out

    def to_dict(self) -> dict:
        return asdict(self)


def _drift_figures(snapshot, features: list[str], prediction: str | None, threshold: float):
    """Per-column drift scores out of Evidently's snapshot, and the drifted share."""
    per_column: dict[str, dict] = {}
    for m in snapshot.dict()["metrics"]:
        config, value = m.get("config") or {}, m.get("value")
        if str(config.get("type", "")).endswith(":ValueDrift"):
            limit = config.get("threshold")
            limit = threshold if limit is None else float(limit)
            score = float(value)
            per_column[config["column"]] = {
                "score": score, "method": config.get("method"), "threshold": limit, "drifted": score >= limit,
            }
    feature_drift = {c: per_column[c] for c in features if c in per_column}
    count = sum(1 for f in feature_drift.values() if f["drifted"])
    share = count / max(1, len(features))
    return feature_drift, (per_column.get(prediction) if prediction else None), share, count


def check(
    batch,
    reference: ReferenceProfile | str,
    *,
    period: str | None = None,
    model_version: str | None = None,
    store: bool = True,
    report: bool = True,
    sample_rows: int = CURRENT_SAMPLE_ROWS,
    threshold: float = DRIFT_THRESHOLD,
    seed: int = 0,
    workspace: str | Path | None = None,
    db: Any = None,
    alerts: bool = True,
    project: str | None = None,
    pipeline: str | None = None,
) -> MonitoringResult:
    """Compare `batch` (a DataFrame with the reference's columns; the target may be
    missing when labels are not known yet) with the reference profile of a model
    (a `ReferenceProfile` or the model name).

    Returns the figures; with `store`, saves them as rows in the run-history database
    (`db`, else the workspace's) and, with `report`, the Evidently HTML report under
    `<data dir>/monitoring/<model>/reports/`.

    With `store` and `alerts`, the alert rules of the project's (pipeline's)
    notification_config are evaluated on the stored check (one alert per episode,
    recovery notices; see blockyard.notify.rules) and their decisions kept in
    `result.alerts`. Project and pipeline default to the running block's; outside a
    block and without `project`, no rules are evaluated."""
    started = time.perf_counter()
    if isinstance(reference, str):
        reference = load_reference(reference, workspace=workspace)
    ref = reference
    has_target = bool(ref.target) and ref.target in getattr(batch, "columns", ())
    extra = [c for c in (ref.target if has_target else None, ref.prediction) if c]
    _check_columns(batch, [*ref.features, *([ref.prediction] if ref.prediction else [])], "the batch")
    if len(batch) == 0:
        raise MonitoringError(f"the batch for {ref.model!r} ({period or 'no period'}) has no rows")

    from blockyard.ml.metrics import mae, rmse

    rows = len(batch)
    full = _normalize(batch, ref.numerical, ref.categorical, extra)
    # Exact figures on every row: missing values and model quality.
    missing = {c: float(full[c].isna().mean()) for c in [*ref.features, *extra]}
    missing_share = float(full[ref.features].isna().to_numpy().mean())
    q_rmse = q_mae = None
    if has_target and ref.prediction:
        ok = full[[ref.target, ref.prediction]].dropna()
        if len(ok):
            q_rmse, q_mae = rmse(ok[ref.target], ok[ref.prediction]), mae(ok[ref.target], ok[ref.prediction])

    current = full.sample(n=sample_rows, random_state=seed) if rows > sample_rows else full
    reference_data = ref.data
    evidently = _evidently()
    from evidently.metrics import ValueDrift

    columns = [*ref.numerical, *ref.categorical, *([ref.prediction] if ref.prediction else [])]
    definition = evidently.DataDefinition(
        numerical_columns=[*ref.numerical, *([ref.prediction] if ref.prediction else [])],
        categorical_columns=list(ref.categorical),
    )
    # One ValueDrift per column (what Evidently's DataDriftPreset holds, without its
    # DriftedColumnsCount, which computes every column's drift a second time).
    metrics: list = [
        ValueDrift(column=c, method=NUM_METHOD if c in ref.numerical else CAT_METHOD, threshold=threshold)
        for c in ref.features
    ]
    if ref.prediction:
        metrics.append(ValueDrift(column=ref.prediction, method=NUM_METHOD, threshold=threshold))
    snapshot = evidently.Report(metrics).run(
        current_data=evidently.Dataset.from_pandas(current[columns].reset_index(drop=True), data_definition=definition),
        reference_data=evidently.Dataset.from_pandas(reference_data[columns], data_definition=definition),
    )
    features, prediction_drift, share, count = _drift_figures(snapshot, ref.features, ref.prediction, threshold)
    result = MonitoringResult(
        model=ref.model,
        period=period,
        rows=rows,
        drift_share=share,
        drifted_features=count,
        dataset_drift=share >= DATASET_DRIFT_SHARE,
        features=features,
        prediction_drift=prediction_drift,
        missing_share=missing_share,
        missing=missing,
        rmse=q_rmse,
        mae=q_mae,
        baseline=dict(ref.baseline),
        sampled={
            "drift": {"rows": len(current), "of": rows, "seed": seed},
            "reference": {"rows": ref.sample_rows, "of": ref.rows},
            "exact": ["missing", "rmse", "mae"],
        },
        model_version=model_version,
    )
    if report:
        result.report_path = str(_save_report(snapshot, ref, period))
    if store:
        from blockyard.ml.monitoring_store import MonitoringStore

        MonitoringStore.for_workspace(workspace, db=db).save(result)
        if alerts:
            from blockyard.notify.rules import evaluate_rules

            # A malformed rule raises ProjectError: the block fails naming the file and rule.
            decisions = evaluate_rules(result, project=project, pipeline=pipeline, workspace=workspace, db=db)
            result.alerts = [d.to_dict() for d in decisions]
    result.seconds = time.perf_counter() - started
    return result


def _save_report(snapshot, ref: ReferenceProfile, period: str | None) -> Path:
    folder = (ref.path or reference_dir(ref.model)) / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    label = re.sub(r"[^A-Za-z0-9_.-]+", "_", period) + "-" if period else ""
    path = folder / f"{label}{stamp}.html"
    snapshot.save_html(str(path))
    return path
