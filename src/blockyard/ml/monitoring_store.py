"""Monitoring figures in the run-history database (SQLite or PostgreSQL).

```python
store = MonitoringStore.for_workspace(workspace)        # or MonitoringStore(db)
store.series("nyc-taxi-duration", "drift_share")       # [{period, value, created_at, check_id}]
store.latest()                                          # {model: {metric: value, ...}}
store.checks(model="nyc-taxi-duration", limit=20)
```
Tables `monitoring_checks` and `monitoring_metrics` (migration 0005_monitoring): one
check row with the whole result as JSON, and one row per figure, so that a figure's
history is one indexed query.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from blockyard.db.columns import utcnow

__all__ = ["MonitoringStore", "FEATURE_DRIFT", "COLUMN_MISSING"]

FEATURE_DRIFT = "feature_drift"  # per-feature drift score (feature column set)
COLUMN_MISSING = "column_missing_share"  # per-column share of missing values

def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()  # numpy scalars
    return value


class MonitoringStore:
    def __init__(self, db: Any) -> None:
        self.db = db

    @classmethod
    def for_workspace(cls, workspace: str | Path | None = None, *, db: Any = None) -> "MonitoringStore":
        """The store on `db`, else on the workspace's run-history database (migrated,
        opened once per process)."""
        if db is not None:
            return cls(db)
        from blockyard import settings
        from blockyard.db import shared_database
        from blockyard.ml.monitoring import _workspace

        return cls(shared_database(settings.database_url_for(settings.data_dir_for(_workspace(workspace)))))

    # ------------------------------------------------------------------ write
    def save(self, result) -> int:
        """Store a MonitoringResult: its check row and one row per figure. Sets and
        returns `result.check_id`. Project, pipeline and run come from the running
        block when there is one."""
        from blockyard import runtime
        from blockyard.db.schema import monitoring_checks, monitoring_metrics

        ctx = runtime.get()
        now = utcnow()
        summary = _jsonable(result.to_dict())
        summary.pop("check_id", None)
        with self.db.engine.begin() as conn:
            check_id = conn.execute(
                monitoring_checks.insert().values(
                    model=result.model,
                    model_version=result.model_version,
                    project=ctx.project if ctx else None,
                    pipeline_uuid=ctx.pipeline if ctx else None,
                    pipeline_run_id=ctx.run_id if ctx else None,
                    period=result.period,
                    rows=int(result.rows),
                    report_path=result.report_path,
                    summary=summary,
                    created_at=now,
                )
            ).inserted_primary_key[0]
            base = {"check_id": check_id, "model": result.model, "period": result.period, "created_at": now}
            rows = [{**base, "metric": k, "feature": None, "value": float(v)} for k, v in result.figures().items()]
            rows += [
                {**base, "metric": FEATURE_DRIFT, "feature": name, "value": float(f["score"])}
                for name, f in result.features.items()
            ]
            rows += [
                {**base, "metric": COLUMN_MISSING, "feature": name, "value": float(v)}
                for name, v in result.missing.items()
            ]
            conn.execute(monitoring_metrics.insert(), rows)
        result.check_id = int(check_id)
        return result.check_id

    # ------------------------------------------------------------------- read
    def series(self, model: str, metric: str, feature: str | None = None, *, limit: int = 1000) -> list[dict]:
        """The history of one figure, oldest first."""
        import sqlalchemy as sa

        from blockyard.db.schema import monitoring_metrics as m

        query = (
            sa.select(m.c.check_id, m.c.period, m.c.value, m.c.created_at, m.c.feature)
            .where(m.c.model == model, m.c.metric == metric)
            .order_by(m.c.created_at.desc(), m.c.id.desc())
            .limit(limit)
        )
        query = query.where(m.c.feature.is_(None) if feature is None else m.c.feature == feature)
        with self.db.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        return rows[::-1]

    def checks(self, model: str | None = None, *, limit: int = 50, run_id: int | None = None) -> list[dict]:
        """Checks, newest first (with their full summary)."""
        import sqlalchemy as sa

        from blockyard.db.schema import monitoring_checks as c

        query = sa.select(c).order_by(c.c.created_at.desc(), c.c.id.desc()).limit(limit)
        if model is not None:
            query = query.where(c.c.model == model)
        if run_id is not None:
            query = query.where(c.c.pipeline_run_id == run_id)
        with self.db.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def get_check(self, check_id: int) -> dict | None:
        import sqlalchemy as sa

        from blockyard.db.schema import monitoring_checks as c

        with self.db.engine.connect() as conn:
            row = conn.execute(sa.select(c).where(c.c.id == int(check_id))).first()
        return dict(row._mapping) if row else None

    def latest(self) -> dict[str, dict]:
        """{model: {"check_id", "period", "created_at", "figures": {metric: value}}} from
        each model's newest check."""
        import sqlalchemy as sa

        from blockyard.db.schema import monitoring_checks as c
        from blockyard.db.schema import monitoring_metrics as m

        newest = sa.select(c.c.model, sa.func.max(c.c.id).label("id")).group_by(c.c.model).subquery()
        query = (
            sa.select(c.c.id, c.c.model, c.c.period, c.c.created_at, m.c.metric, m.c.value)
            .join(newest, newest.c.id == c.c.id)
            .join(m, m.c.check_id == c.c.id)
            .where(m.c.feature.is_(None))
        )
        out: dict[str, dict] = {}
        with self.db.engine.connect() as conn:
            for r in conn.execute(query):
                entry = out.setdefault(
                    r.model, {"check_id": r.id, "period": r.period, "created_at": r.created_at, "figures": {}}
                )
                entry["figures"][r.metric] = r.value
        return out
