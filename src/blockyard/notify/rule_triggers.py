"""Rule actions: a monitoring rule that fires can queue a pipeline run.

```yaml
rules:
- name: rmse above baseline
  metric: rmse
  op: '>'
  threshold: 1.2 * baseline_rmse
  trigger: unit_4_triggering/automatic_retraining   # queued when the rule fires
```

The run is queued once per episode (on `fired`, not while the rule keeps holding), with
the variable `alert` = {rule, metric, value, threshold, model, period, check_id}; a
worker runs it like any other queued run. One at a time: nothing is queued while a run
of that pipeline is queued or running, and the check id is the idempotency key, so two
evaluations of one check queue one run. The pipeline's own guards (e.g. the retraining
cooldown) still decide whether it does anything.
"""
from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("blockyard.notify")

UNFINISHED = ("initial", "queued", "running")


def resolve_trigger(ws: Any, rule: Any, file: Any = None) -> tuple[str, str]:
    """(project, pipeline uuid) of the rule's `trigger`; ProjectError names the rule."""
    from blockyard.errors import BlockyardError, ProjectError

    try:
        spec = ws.find_pipeline(rule.trigger)
    except BlockyardError as exc:
        raise ProjectError(f"notification_config.rules {rule.name!r}: trigger {rule.trigger!r}: {exc}", file=file) from exc
    return spec.project.name, spec.uuid


def queue_rule_run(db: Any, target: tuple[str, str], rule: Any, decision: Any, check_id: Any) -> dict:
    """Queue the rule's pipeline for a decision that just fired. Returns what happened:
    {pipeline, run_id} or {pipeline, skipped: reason}."""
    import sqlalchemy as sa

    from blockyard.db.schema import pipeline_runs as pr
    from blockyard.orchestration.runs import enqueue_run

    project, uuid = target
    ref = f"{project}/{uuid}"
    with db.engine.connect() as conn:
        busy = conn.execute(
            sa.select(pr.c.id).where(pr.c.project == project, pr.c.pipeline_uuid == uuid, pr.c.status.in_(UNFINISHED)).limit(1)
        ).scalar()
    if busy is not None:
        log.info("rule %r fired: %s not queued, run %s is unfinished", rule.name, ref, busy)
        return {"pipeline": ref, "skipped": f"run {busy} of {ref} is unfinished"}
    alert = {
        "rule": rule.name, "metric": rule.metric, "value": decision.value, "threshold": decision.threshold,
        "model": decision.model, "period": decision.period, "check_id": check_id,
    }
    row = enqueue_run(
        db, project=project, pipeline_uuid=uuid, variables={"alert": alert},
        idempotency_key=f"rule:{project}:{rule.name}:{decision.model}:{check_id}",
    )
    log.info("rule %r fired: queued run %s of %s", rule.name, row["id"], ref)
    return {"pipeline": ref, "run_id": int(row["id"])}
