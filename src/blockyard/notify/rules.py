"""Alert rules on monitoring figures, declared in `notification_config.rules`.

```yaml
notification_config:
  email_config: {...}            # the channels are Mage's, as for run alerts
  rules:
  - name: dataset drift          # optional; default "<metric> <op> <threshold>"
    metric: drift_share          # a figure of the check (see below)
    op: '>='                     # >  >=  <  <=  ==  !=
    threshold: 0.5               # a number, or "<number> * <figure>" / "<figure>"
    model: nyc-taxi-duration     # optional: only checks of this model
    pipeline: monitoring         # optional: only checks made by this pipeline
  - metric: rmse
    op: '>'
    threshold: 1.1 * baseline_rmse
    trigger: unit_4_triggering/automatic_retraining   # optional: queue this pipeline when it fires
```
Figures: drift_share, drifted_features, dataset_drift (0/1), prediction_drift,
missing_share, rows, rmse, mae, baseline_<name> (e.g. baseline_rmse), reference_rmse,
reference_mae, and per feature `feature_drift.<feature>` / `missing.<column>`.

A rule alerts once per episode: when its condition starts to hold for a (project, rule,
model) it sends one alert; while it keeps holding nothing more is sent; when it stops
holding one recovery notice is sent. The state lives in the `alert_rule_states` table,
changed with a compare-and-set, so two checks at once cannot both send. Sending happens
on a background thread (the run is not held up by a slow or unreachable channel); the
results are logged ("blockyard.notify") and kept on the decision.
"""
from __future__ import annotations

import logging
import operator
import re
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from blockyard.errors import ProjectError

__all__ = ["AlertRule", "RuleDecision", "parse_rules", "evaluate_rules", "rule_figures", "rules_with_states"]

log = logging.getLogger("blockyard.notify")

OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne}
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_NAME = r"[A-Za-z_][A-Za-z0-9_.\-]*"
_THRESHOLD = re.compile(rf"^\s*(?:(?P<factor>{_NUMBER})\s*\*\s*)?(?P<name>{_NAME})\s*$")
_RULE_KEYS = {"name", "metric", "op", "threshold", "model", "pipeline", "trigger"}


@dataclass(frozen=True)
class AlertRule:
    name: str
    metric: str
    op: str
    threshold: float | None  # a constant threshold
    factor: float = 1.0  # ... or factor * figure `reference`
    reference: str | None = None
    model: str | None = None
    pipeline: str | None = None
    trigger: str | None = None  # a pipeline ("project/pipeline") queued when the rule fires

    def describe_threshold(self) -> str:
        if self.reference is None:
            return f"{self.threshold:g}"
        return self.reference if self.factor == 1.0 else f"{self.factor:g} * {self.reference}"

    def threshold_value(self, figures: dict) -> float | None:
        if self.reference is None:
            return self.threshold
        value = figures.get(self.reference)
        return None if value is None else self.factor * float(value)

    def applies(self, model: str | None, pipeline: str | None) -> bool:
        return (self.model is None or self.model == model) and (self.pipeline is None or self.pipeline == pipeline)


def parse_rules(raw: Any, where: str = "notification_config.rules", file: Any = None) -> list[AlertRule]:
    """The rules of `notification_config.rules`; ProjectError names the file, the rule and
    what is wrong."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ProjectError(f"{where} must be a list of rules", file=file)
    rules, names = [], set()
    for i, item in enumerate(raw):
        here = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise ProjectError(f"{here} must be a mapping with metric, op and threshold", file=file)
        unknown = set(item) - _RULE_KEYS
        if unknown:
            raise ProjectError(f"{here} has unknown key(s) {sorted(unknown)} (known: {sorted(_RULE_KEYS)})", file=file)
        for key in ("metric", "op", "threshold"):
            if item.get(key) is None:
                raise ProjectError(f"{here} lacks '{key}'", file=file)
        metric, op = str(item["metric"]).strip(), str(item["op"]).strip()
        if not re.fullmatch(_NAME, metric):
            raise ProjectError(f"{here}.metric {metric!r} is not a figure name", file=file)
        if op not in OPS:
            raise ProjectError(f"{here}.op {op!r} is not one of {' '.join(OPS)}", file=file)
        threshold, factor, reference = _threshold(item["threshold"], f"{here}.threshold", file)
        rule = AlertRule(
            name=str(item.get("name") or f"{metric} {op} {item['threshold']}").strip(),
            metric=metric, op=op, threshold=threshold, factor=factor, reference=reference,
            model=str(item["model"]) if item.get("model") is not None else None,
            pipeline=str(item["pipeline"]) if item.get("pipeline") is not None else None,
            trigger=_trigger(item.get("trigger"), f"{here}.trigger", file),
        )
        if rule.name in names:
            raise ProjectError(f"{here}: another rule is already named {rule.name!r}", file=file)
        names.add(rule.name)
        rules.append(rule)
    return rules


def _trigger(value: Any, where: str, file: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ProjectError(f"{where} must be a pipeline name such as 'unit_4_triggering/automatic_retraining', not {value!r}", file=file)
    return value.strip()


def _threshold(value: Any, where: str, file: Any) -> tuple[float | None, float, str | None]:
    if isinstance(value, bool):
        raise ProjectError(f"{where} must be a number or '<number> * <figure>', not {value!r}", file=file)
    if isinstance(value, (int, float)):
        return float(value), 1.0, None
    text = str(value)
    if re.fullmatch(rf"\s*{_NUMBER}\s*", text):
        return float(text), 1.0, None
    match = _THRESHOLD.match(text)
    if not match:
        raise ProjectError(
            f"{where} {text!r} is not a number, '<figure>' or '<number> * <figure>' (e.g. 1.1 * baseline_rmse)",
            file=file,
        )
    return None, float(match["factor"]) if match["factor"] else 1.0, match["name"]


def rule_figures(result) -> dict[str, float]:
    """Every figure a rule can name, from a MonitoringResult."""
    figures = dict(result.figures())
    for name, f in result.features.items():
        figures[f"feature_drift.{name}"] = float(f["score"])
    for name, share in result.missing.items():
        figures[f"missing.{name}"] = float(share)
    return figures


@dataclass
class RuleDecision:
    rule: str
    metric: str
    value: float | None
    threshold: float | None
    holds: bool | None  # None: the figure (or its threshold) is not known for this check
    transition: str  # fired | recovered | firing | ok | unknown
    model: str
    period: str | None
    results: list = field(default_factory=list)  # ChannelResult dicts, once sent (wait=True)
    triggered: dict | None = None  # the rule's `trigger`: {pipeline, run_id} or {pipeline, skipped}

    def to_dict(self) -> dict:
        return asdict(self)


def _set_state(db, project: str, rule: str, scope: str, holds: bool, value, check_id) -> bool:
    """Record the rule's state; True if it changed (this caller owns the transition)."""
    import sqlalchemy as sa

    from blockyard.db.columns import utcnow
    from blockyard.db.schema import alert_rule_states as t

    now = utcnow()
    key = (t.c.project == project) & (t.c.rule == rule) & (t.c.scope == scope)
    with db.engine.begin() as conn:
        changed = conn.execute(
            t.update()
            .where(key, t.c.firing == (not holds))
            .values(firing=holds, since=now, last_value=value, last_check_id=check_id, updated_at=now)
        ).rowcount
        if changed:
            return True
        exists = conn.execute(sa.select(t.c.id).where(key)).first()
        if exists is not None:
            conn.execute(t.update().where(key).values(last_value=value, last_check_id=check_id, updated_at=now))
            return False
    try:  # first evaluation of this rule and scope
        with db.engine.begin() as conn:
            conn.execute(t.insert().values(
                project=project, rule=rule, scope=scope, firing=holds, since=now,
                last_value=value, last_check_id=check_id, updated_at=now,
            ))
        return holds  # a first state that holds is an episode start; a first "ok" is not news
    except sa.exc.IntegrityError:  # another check inserted it meanwhile
        return _set_state(db, project, rule, scope, holds, value, check_id)


def evaluate_rules(
    result,
    *,
    project: str | None = None,
    pipeline: str | None = None,
    run_id: int | None = None,
    workspace: Any = None,
    db: Any = None,
    wait: bool = False,
) -> list[RuleDecision]:
    """Evaluate the rules of the project's (and pipeline's) notification_config against
    a stored MonitoringResult and send alerts / recovery notices for the transitions.
    Project, pipeline and run default to the running block's. `wait`: send before
    returning (and keep the channel results on the decisions); otherwise sending is on a
    background thread. A malformed rule raises ProjectError (the block fails and says where)."""
    from blockyard import runtime
    from blockyard.ml.monitoring import _workspace
    from blockyard.ml.monitoring_store import MonitoringStore
    from blockyard.notify.config import load_notification_config
    from blockyard.project import Workspace

    ctx = runtime.get()
    project = project or (ctx.project if ctx else None)
    pipeline = pipeline or (ctx.pipeline if ctx else None)
    run_id = run_id if run_id is not None else (ctx.run_id if ctx else None)
    if project is None:
        return []
    root = _workspace(workspace)
    ws = Workspace.open(root)
    config = load_notification_config(ws, project, pipeline)
    rules = config.rules()
    if not rules:
        return []
    db = MonitoringStore.for_workspace(root, db=db).db
    targets = {}  # checked before any state changes, so a bad trigger loses no episode
    if any(rule.trigger for rule in rules):
        from blockyard.notify.rule_triggers import resolve_trigger

        targets = {r.name: resolve_trigger(ws, r, config.sources.get("rules")) for r in rules if r.trigger}
    figures = rule_figures(result)
    decisions, to_send = [], []
    for rule in rules:
        if not rule.applies(result.model, pipeline):
            continue
        value, limit = figures.get(rule.metric), rule.threshold_value(figures)
        if value is None or limit is None:
            decisions.append(RuleDecision(rule.name, rule.metric, value, limit, None, "unknown", result.model, result.period))
            continue
        holds = bool(OPS[rule.op](value, limit))
        changed = _set_state(db, project, rule.name, result.model, holds, value, result.check_id)
        transition = ("fired" if holds else "recovered") if changed else ("firing" if holds else "ok")
        decision = RuleDecision(rule.name, rule.metric, value, limit, holds, transition, result.model, result.period)
        decisions.append(decision)
        if changed and holds and rule.name in targets:
            from blockyard.notify.rule_triggers import queue_rule_run

            decision.triggered = queue_rule_run(db, targets[rule.name], rule, decision, result.check_id)
        if changed:
            to_send.append((rule, decision))
    if to_send:
        from blockyard.notify.rule_messages import send_rule_alerts

        job = lambda: send_rule_alerts(ws, db, config, to_send, result, figures, project, pipeline, run_id)  # noqa: E731
        if wait:
            job()
        else:
            # Not a daemon: a short-lived worker process still delivers before it exits.
            threading.Thread(target=job, name="blockyard-rule-alerts").start()
    return decisions


def rules_with_states(workspace: Any, project: str, pipeline: str | None = None, *, db: Any = None) -> list[dict]:
    """The rules of the project's (pipeline's) notification_config with the last state of
    each per model: [{name, metric, op, threshold, model, pipeline, states: [{scope,
    firing, since, last_value, last_check_id, updated_at}]}]. ProjectError if malformed."""
    import sqlalchemy as sa

    from blockyard.db.schema import alert_rule_states as t
    from blockyard.notify.config import load_notification_config
    from blockyard.project import Workspace

    ws = workspace if hasattr(workspace, "data_dir") else Workspace.open(workspace)
    parsed = load_notification_config(ws, project, pipeline).rules()
    if not parsed:
        return []
    if db is None:
        from blockyard.ml.monitoring_store import MonitoringStore

        db = MonitoringStore.for_workspace(ws.root).db
    with db.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(t).where(t.c.project == project).order_by(t.c.scope))]
    return [
        {
            "name": rule.name, "metric": rule.metric, "op": rule.op, "threshold": rule.describe_threshold(),
            "model": rule.model, "pipeline": rule.pipeline,
            "states": [
                {k: r[k] for k in ("scope", "firing", "since", "last_value", "last_check_id", "updated_at")}
                for r in rows if r["rule"] == rule.name
            ],
        }
        for rule in parsed
    ]
