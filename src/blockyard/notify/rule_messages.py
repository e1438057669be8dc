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
