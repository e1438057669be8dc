"""Send run alerts to every channel in `notification_config`; never raise into the caller."""
from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from blockyard.notify.channels import SENDERS, ChannelError
from blockyard.notify.config import NotificationConfig, load_notification_config
from blockyard.notify.message import EVENT_KIND, Message, build_message
from blockyard.secrets import redact

__all__ = [
    "ChannelResult",
    "notify_run_finished",
    "notify_sla_passed",
    "send_test_alert",
    "send_alert",
]

log = logging.getLogger("blockyard.notify")

STATUS_EVENTS = {"failed": "trigger_failure", "completed": "trigger_success"}
MAX_FAILED_BLOCKS = 10


@dataclass
class ChannelResult:
    """What happened to one channel. `error` and `target` never contain secrets or
    full webhook URLs."""

    channel: str  # "email", "slack", "webhook[1]", or "notification_config" for config errors
    ok: bool
    event: str
    target: str | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _workspace(workspace: Any):
    if isinstance(workspace, (str, os.PathLike)):
        from blockyard.project import Workspace

        return Workspace.open(workspace)
    return workspace


def _trigger_name(db: Any, run: dict) -> str | None:
    if run.get("trigger_name"):
        return str(run["trigger_name"])
    trigger_id = run.get("trigger_id")
    if db is None or trigger_id is None:
        return None
    try:  # the pipeline_schedules table belongs to orchestration (0002); tolerate its absence
        import sqlalchemy as sa

        with db.engine.connect() as conn:
            name = conn.execute(
                sa.text("SELECT name FROM pipeline_schedules WHERE id = :id"), {"id": int(trigger_id)}
            ).scalar()
        return str(name) if name is not None else None
    except Exception:
        return None


def _failed_blocks(db: Any, run: dict) -> list[dict]:
    if db is None or run.get("id") is None or run.get("status") != "failed":
        return []
    try:
        rows = db.get_block_runs(int(run["id"]))
    except Exception:
        return []
    failed = [r for r in rows if r.get("status") == "failed"]
    return failed[:MAX_FAILED_BLOCKS]


def _store(workspace: Any, db: Any):
    if db is None:
        return None
    from blockyard.secrets import SecretStore

    return SecretStore(db, data_dir=workspace.data_dir)


def _send_one(spec, message: Message, secrets: set[str]) -> ChannelResult:
    if spec.error:
        return ChannelResult(spec.name, False, message.event, error=redact(spec.error, secrets))
    sender = SENDERS[spec.kind]
    try:
        target = sender(spec.settings, message)
    except ChannelError as exc:
        return ChannelResult(spec.name, False, message.event, error=redact(str(exc), secrets))
    except Exception as exc:  # smtplib / ssl / socket errors
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return ChannelResult(spec.name, False, message.event, error=redact(text, secrets))
    return ChannelResult(spec.name, True, message.event, target=redact(target, secrets))


def dispatch(config: NotificationConfig, message: Message, *, store: Any = None, extra_secrets=()) -> list[ChannelResult]:
    """Render every channel of `config`, redact `message`, send to all channels in parallel."""
    secrets: set[str] = set(v for v in extra_secrets if v)
    specs = config.channels(store=store, sensitive=secrets)
    if store is not None:
        secrets.update(store.values_for_redaction(config.project))
    if not specs:
        return []
    clean = message.redacted(secrets)
    if len(specs) == 1:
        results = [_send_one(specs[0], clean, secrets)]
    else:
        with ThreadPoolExecutor(max_workers=min(8, len(specs)), thread_name_prefix="blockyard-alert") as pool:
            results = list(pool.map(lambda s: _send_one(s, clean, secrets), specs))
    for r in results:
        if r.ok:
            log.info("alert %s for run %s sent via %s (%s)", r.event, clean.run.get("id"), r.channel, r.target)
        else:
            log.warning("alert %s for run %s via %s failed: %s", r.event, clean.run.get("id"), r.channel, r.error)
    return results


def send_alert(
    workspace: Any,
    db: Any,
    run_row: dict,
    event: str,
    *,
    force: bool = False,
    now: datetime | None = None,
    target: str | None = None,
) -> list[ChannelResult]:
    """Send the `event` alert (trigger_failure | trigger_success | trigger_passed_sla | test)
    for `run_row` if the config's alert_on includes it (always with `force`). Never raises."""
    store = None
    secrets: set[str] = set()
    try:
        ws = _workspace(workspace)
        store = _store(ws, db)
        project = run_row.get("project")
        pipeline = run_row.get("pipeline_uuid") or None
        config = load_notification_config(ws, project, pipeline)
        if config.is_empty:
            return []
        resolved: list = []
        alert_on = config.alert_on(store=store, resolved=resolved)
        if not force and event not in alert_on:
            return []
        template = config.message_template(EVENT_KIND.get(event, event), store=store, resolved=resolved)
        secrets.update(v for kind, _n, v in resolved if kind == "secret")
        message = build_message(
            run_row,
            event,
            template=template,
            trigger_name=_trigger_name(db, run_row),
            failed_blocks=_failed_blocks(db, run_row),
            now=now,
            target=target,
        )
        return dispatch(config, message, store=store, extra_secrets=secrets)
    except Exception as exc:
        if store is not None:
            try:
                secrets.update(store.values_for_redaction(run_row.get("project")))
            except Exception:
                pass
        text = redact(str(exc) or type(exc).__name__, secrets)
        log.warning("alert %s for run %s not sent: %s", event, run_row.get("id"), text)
        return [ChannelResult("notification_config", False, event, error=text)]


def notify_run_finished(workspace: Any, db: Any, run_row: dict) -> list[ChannelResult]:
    """Alert for a finished run: status 'failed' -> trigger_failure, 'completed' ->
    trigger_success (if in alert_on). Other statuses (cancelled, ...) send nothing.
    Channels are sent to in parallel, each with its own timeout (default 10 s).
    Returns one ChannelResult per channel; never raises."""
    event = STATUS_EVENTS.get(run_row.get("status") or "")
    if event is None:
        return []
    return send_alert(workspace, db, run_row, event)


def notify_sla_passed(workspace: Any, db: Any, run_row: dict) -> list[ChannelResult]:
    """Alert that `run_row` passed its SLA (trigger_passed_sla in alert_on; it is in the
    default). The caller decides when the SLA is passed and calls this once per run."""
    return send_alert(workspace, db, run_row, "trigger_passed_sla")


def send_test_alert(
    workspace: Any, project: Any, pipeline: str | None = None, *, db: Any = None
) -> list[ChannelResult]:
    """Send a test message to every channel of the project's (or pipeline's) config,
    whatever alert_on says. `db` gives access to database secrets; without it, the
    workspace's database is opened when it exists. Never raises."""
    ws = _workspace(workspace)
    project_name = getattr(project, "name", project)
    own_db = None
    if db is None:
        try:
            from blockyard import settings
            from blockyard.db.database import Database, normalize_url

            url = settings.database_url_for(Path(ws.data_dir))
            parsed = normalize_url(url)
            if parsed.get_backend_name() != "sqlite" or (parsed.database and Path(parsed.database).exists()):
                db = own_db = Database(url)
        except Exception:
            db = None
    try:
        run = {
            "id": None,
            "project": project_name,
            "pipeline_uuid": pipeline or "",
            "status": "test",
            "created_at": datetime.now(timezone.utc),
        }
        target = f"pipeline {project_name}/{pipeline}" if pipeline else f"project {project_name}"
        return send_alert(ws, db, run, "test", force=True, target=target)
    finally:
        if own_db is not None:
            own_db.close()
