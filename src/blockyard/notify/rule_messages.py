"""The alert and recovery messages of monitoring rules (see blockyard.notify.rules)."""
from __future__ import annotations

import logging
from typing import Any

from blockyard.notify.message import Message, base_url, run_url

log = logging.getLogger("blockyard.notify")

EVENT_ALERT = "monitoring_alert"
EVENT_RECOVERED = "monitoring_recovered"
# The figures every message lists (when the check has them), in this order.
SHOWN = ("drift_share", "drifted_features", "prediction_drift", "missing_share", "rmse", "mae", "baseline_rmse", "rows")


def report_url(check_id: Any) -> str:
    return f"{base_url()}/api/monitoring/checks/{check_id}/report"


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    value = float(value)
    return f"{value:,.0f}" if value.is_integer() and abs(value) >= 100 else f"{value:.4g}"


def build_rule_message(rule, decision, result, figures: dict, project: str, pipeline: str | None, run_id) -> Message:
    fired = decision.transition == "fired"
    period = f" for {result.period}" if result.period else ""
    condition = f"{rule.metric} {rule.op} {rule.describe_threshold()}"
    if fired:
        title = f"[{project}] {rule.name}: {rule.metric} {_fmt(decision.value)} {rule.op} {_fmt(decision.threshold)} ({result.model}{period})"
        summary = (
            f"Rule `{rule.name}` ({condition}) holds for model `{result.model}`{period}: "
            f"{rule.metric} is {_fmt(decision.value)}, threshold {_fmt(decision.threshold)}. "
            "No further alert is sent for this rule until it clears."
        )
    else:
        title = f"[{project}] recovered: {rule.name} ({result.model}{period})"
        summary = (
            f"Rule `{rule.name}` ({condition}) no longer holds for model `{result.model}`{period}: "
            f"{rule.metric} is {_fmt(decision.value)}, threshold {_fmt(decision.threshold)}."
        )
    lines = [f"{name}: {_fmt(figures[name])}" for name in SHOWN if name in figures]
    drifted = [f"{n} ({f['score']:.3f})" for n, f in result.features.items() if f.get("drifted")]
    if drifted:
        lines.append("drifted features: " + ", ".join(drifted))
    links = []
    if run_id is not None:
        links.append(f"run: {run_url(run_id)}")
    if result.check_id is not None:
        links.append(f"report: {report_url(result.check_id)}")
    details = "\n".join([summary, "", *lines, "", *links]).strip()
    facts = [
        ("rule", rule.name),
        ("condition", condition),
        ("value", _fmt(decision.value)),
        ("threshold", _fmt(decision.threshold)),
        ("model", result.model + (f" v{result.model_version}" if result.model_version else "")),
        ("period", result.period or "-"),
        ("project", project),
        ("pipeline", pipeline or "-"),
        ("run", str(run_id) if run_id is not None else "-"),
    ]
    if result.check_id is not None:
        facts.append(("report", report_url(result.check_id)))
    return Message(
        event=EVENT_ALERT if fired else EVENT_RECOVERED,
        title=title,
        summary=summary,
        details=details,
        url=run_url(run_id) if run_id is not None else (report_url(result.check_id) if result.check_id else base_url()),
        facts=facts,
        run={
            "id": run_id,
            "project": project,
            "pipeline_uuid": pipeline,
            "rule": rule.name,
            "transition": decision.transition,
            "model": result.model,
            "period": result.period,
            "check_id": result.check_id,
            "figures": {k: figures[k] for k in SHOWN if k in figures},
        },
    )


def send_rule_alerts(ws, db, config, pending, result, figures, project, pipeline, run_id) -> None:
    """Send one message per (rule, decision) to every channel; never raises."""
    from blockyard.notify.sender import dispatch
    from blockyard.secrets import SecretStore

    try:
        store = SecretStore(db, data_dir=ws.data_dir)
    except Exception:
        store = None
    for rule, decision in pending:
        try:
            message = build_rule_message(rule, decision, result, figures, project, pipeline, run_id)
            decision.results = [r.to_dict() for r in dispatch(config, message, store=store)]
        except Exception as exc:
            log.warning("rule %r alert for %s not sent: %s", rule.name, result.model, type(exc).__name__)
            decision.results = [{"channel": "notification_config", "ok": False, "error": type(exc).__name__}]


EVENT_TEST = "monitoring_test"


def _newest_result(store, rule):
    """The newest stored check the rule applies to, as a MonitoringResult (None if none)."""
    from dataclasses import fields

    from blockyard.ml.monitoring import MonitoringResult

    for row in store.checks(rule.model, limit=50):
        if rule.pipeline is not None and row.get("pipeline_uuid") != rule.pipeline:
            continue
        known = {f.name for f in fields(MonitoringResult)}
        summary = {k: v for k, v in (row.get("summary") or {}).items() if k in known}
        summary.update(check_id=row["id"], model=row["model"], period=row.get("period"))
        try:
            return MonitoringResult(**summary), row.get("pipeline_run_id")
        except TypeError:  # a summary from another version: skip it
            continue
    return None, None


def send_rule_test(workspace: Any, project: str, rule_name: str, pipeline: str | None = None, *, db: Any = None) -> dict:
    """Send the alert of rule `rule_name` as a test to every channel of the project's
    (pipeline's) notification_config, with the figures of the newest check the rule
    applies to (or none). The rule's state is not changed. Raises ProjectError for an
    unknown rule or a malformed config; a channel's failure is in the results."""
    from dataclasses import replace

    from blockyard.errors import ProjectError
    from blockyard.ml.monitoring import MonitoringResult
    from blockyard.ml.monitoring_store import MonitoringStore
    from blockyard.notify.config import load_notification_config
    from blockyard.notify.rules import OPS, RuleDecision, rule_figures
    from blockyard.notify.sender import dispatch
    from blockyard.project import Workspace
    from blockyard.secrets import SecretStore

    ws = workspace if hasattr(workspace, "data_dir") else Workspace.open(workspace)
    config = load_notification_config(ws, project, pipeline)
    rules = {r.name: r for r in config.rules()}
    rule = rules.get(rule_name)
    if rule is None:
        where = f"pipeline {project}/{pipeline}" if pipeline else f"project {project}"
        raise ProjectError(f"no alert rule {rule_name!r} in the notification_config of {where}",
                           hint=f"its rules: {', '.join(rules) or 'none'}")
    store = MonitoringStore.for_workspace(ws.root, db=db)
    result, run_id = _newest_result(store, rule)
    if result is None:
        result = MonitoringResult(model=rule.model or "(no check yet)", period=None, rows=0, drift_share=0.0,
                                  drifted_features=0, dataset_drift=False, features={}, prediction_drift=None,
                                  missing_share=0.0, missing={}, rmse=None, mae=None, baseline={}, sampled={})
        figures: dict = {}
    else:
        figures = rule_figures(result)
    value, limit = figures.get(rule.metric), rule.threshold_value(figures)
    holds = None if value is None or limit is None else bool(OPS[rule.op](value, limit))
    decision = RuleDecision(rule.name, rule.metric, value, limit, holds, "fired", result.model, result.period)
    message = build_rule_message(rule, decision, result, figures, project, pipeline, run_id)
    state = {True: "holds", False: "does not hold", None: "cannot be evaluated"}[holds]
    note = (f"Test of alert rule `{rule.name}` sent from Blockyard: this is what its alert looks like "
            f"with the newest check's figures (where the condition {state}). The rule's state is unchanged.")
    message = replace(
        message, event=EVENT_TEST, title=f"[test] {message.title}", summary=note,
        details=f"{note}\n\n{message.details}", run={**message.run, "transition": "test"},
    )
    try:
        secrets = SecretStore(store.db, data_dir=ws.data_dir)
    except Exception:
        secrets = None
    results = [r.to_dict() for r in dispatch(config, message, store=secrets)]
    return {"rule": rule.name, "model": result.model, "period": result.period, "check_id": result.check_id,
            "value": value, "threshold": limit, "holds": holds, "title": message.title, "results": results}
