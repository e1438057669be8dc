"""Runs and triggers in Mage's REST shapes (its PipelineRunPresenter and
PipelineSchedulePresenter field names), for the Mage-compatible read endpoints.

Blockyard's `queued` is Mage's `initial` (created, not started yet); every other
status has the same name in both.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import sqlalchemy as sa

from blockyard.db.schema import block_runs, pipeline_runs, to_utc

RUN_STATUS = {"queued": "initial"}


def iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return to_utc(value).isoformat()
    return value


def _run_status(status: str | None) -> str | None:
    return RUN_STATUS.get(status, status) if status else status


def blockyard_statuses(mage_status: str) -> list[str]:
    """Blockyard statuses behind one Mage run status (filtering by `status=initial`)."""
    back = [k for k, v in RUN_STATUS.items() if v == mage_status]
    return back + ([mage_status] if mage_status not in RUN_STATUS else [])


def _passed_sla(row: dict) -> bool:
    deadline = row.get("sla_deadline")
    if deadline is None:
        return False
    end = row.get("completed_at") or datetime.now(timezone.utc)
    return to_utc(end) > to_utc(deadline)


def block_run(row: dict, schedule: dict | None) -> dict:
    return {
        "id": row["id"],
        "block_uuid": row["block_uuid"],
        "pipeline_run_id": row["pipeline_run_id"],
        "status": row["status"],
        "created_at": iso(row.get("started_at")),
        "started_at": iso(row.get("started_at")),
        "completed_at": iso(row.get("completed_at")),
        "updated_at": iso(row.get("completed_at") or row.get("started_at")),
        "metrics": row.get("metrics"),
        "pipeline_schedule_id": schedule.get("id") if schedule else None,
        "pipeline_schedule_name": schedule.get("name") if schedule else None,
    }


def pipeline_run(row: dict, schedule: dict | None, blocks: list[dict] | None) -> dict:
    """A run row in Mage's fields, with the Blockyard extras `project` and `error`."""
    out = {
        "id": row["id"],
        "pipeline_uuid": row["pipeline_uuid"],
        "project": row["project"],
        "status": _run_status(row["status"]),
        "variables": row.get("variables") or {},
        "event_variables": None,
        "execution_date": iso(row.get("execution_date")),
        "executor_type": "local_python",
        "backfill_id": row.get("backfill_id"),
        "pipeline_schedule_id": row.get("trigger_id"),
        "created_at": iso(row.get("created_at")),
        "started_at": iso(row.get("started_at")),
        "completed_at": iso(row.get("completed_at")),
        "updated_at": iso(row.get("completed_at") or row.get("started_at") or row.get("created_at")),
        "metrics": row.get("metrics"),
        "passed_sla": _passed_sla(row),
        "error": row.get("error"),
        "pipeline_schedule_name": schedule.get("name") if schedule else None,
        "pipeline_schedule_token": schedule.get("token") if schedule else None,
        "pipeline_schedule_type": schedule.get("schedule_type") if schedule else None,
    }
    if blocks is not None:
        out["block_runs"] = [block_run(b, schedule) for b in blocks]
        out["block_runs_count"] = len(blocks)
        out["completed_block_runs_count"] = sum(1 for b in blocks if b["status"] == "completed")
    return out


def pipeline_schedule(trigger: dict, repo_path: Path | None, counts: dict | None = None) -> dict:
    """A trigger in Mage's PipelineSchedule fields (plus `project`)."""
    extra = trigger.get("extra") or {}
    out = {
        "id": trigger["id"],
        "name": trigger.get("name"),
        "pipeline_uuid": trigger.get("pipeline_uuid"),
        "project": trigger.get("project"),
        "repo_path": str(repo_path) if repo_path is not None else None,
        "schedule_type": trigger.get("schedule_type"),
        "schedule_interval": trigger.get("schedule_interval"),
        "start_time": iso(trigger.get("start_time")),
        "status": trigger.get("status"),
        "variables": trigger.get("variables") or {},
        "settings": trigger.get("settings") or {},
        "sla": trigger.get("sla"),
        "token": trigger.get("token"),
        "created_at": iso(trigger.get("created_at")),
        "updated_at": iso(trigger.get("updated_at")),
        "event_matchers": extra.get("event_matchers") or [],
    }
    if counts is not None:
        count, last = counts.get(trigger["id"], (0, None))
        out["pipeline_runs_count"] = count
        out["last_pipeline_run_status"] = _run_status(last)
    return out


# ----------------------------------------------------------------- queries
def schedule_run_counts(db: Any, trigger_ids: Iterable[int]) -> dict[int, tuple[int, str | None]]:
    """trigger id -> (number of runs, status of the newest run)."""
    ids = [int(i) for i in trigger_ids]
    if not ids:
        return {}
    c = pipeline_runs.c
    out: dict[int, tuple[int, str | None]] = {}
    with db.engine.connect() as conn:
        counts = conn.execute(
            sa.select(c.trigger_id, sa.func.count(), sa.func.max(c.id)).where(c.trigger_id.in_(ids)).group_by(c.trigger_id)
        ).all()
        newest = {row[2]: row[0] for row in counts}
        statuses = dict(conn.execute(sa.select(c.id, c.status).where(c.id.in_(list(newest)))).all()) if newest else {}
    for trigger_id, count, last_id in counts:
        out[int(trigger_id)] = (int(count), statuses.get(last_id))
    return out


def block_runs_of(db: Any, run_ids: Iterable[int]) -> dict[int, list[dict]]:
    ids = [int(i) for i in run_ids]
    out: dict[int, list[dict]] = {i: [] for i in ids}
    if not ids:
        return out
    query = sa.select(block_runs).where(block_runs.c.pipeline_run_id.in_(ids)).order_by(block_runs.c.id)
    with db.engine.connect() as conn:
        for row in conn.execute(query):
            data = dict(row._mapping)
            out[data["pipeline_run_id"]].append(data)
    return out
