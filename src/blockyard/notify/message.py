"""The alert message for a pipeline run: title, summary, details, facts and a link.

Message templates use `{placeholder}` names as Mage does (`{pipeline_uuid}`,
`{execution_time}`, `{error}`, `{stacktrace}`, `{pipeline_run_url}`,
`{pipeline_schedule_id}`, `{pipeline_schedule_name}`) plus Blockyard's own
(`{project}`, `{pipeline}`, `{run_id}`, `{status}`, `{started_at}`, `{completed_at}`,
`{duration}`, `{trigger}`, `{failed_blocks}`, `{event}`). `{{name}}` works too.
Unknown names are left as they are; substituted values are never re-interpreted.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable

from blockyard.secrets import redact

__all__ = [
    "ENV_BASE_URL",
    "DEFAULT_BASE_URL",
    "DEFAULT_MESSAGES",
    "Message",
    "base_url",
    "run_url",
    "build_message",
    "fill_placeholders",
]

ENV_BASE_URL = "BLOCKYARD_BASE_URL"
DEFAULT_BASE_URL = "http://127.0.0.1:6789"

EVENT_KIND = {
    "trigger_failure": "failure",
    "trigger_success": "success",
    "trigger_passed_sla": "passed_sla",
    "test": "test",
}

DEFAULT_MESSAGES = {
    "failure": {
        "title": "Pipeline {pipeline_uuid} failed (run {run_id})",
        "summary": (
            "Failed to run pipeline `{pipeline_uuid}` of project `{project}` ({trigger}) "
            "at execution time `{execution_time}`. Error: {error}"
        ),
    },
    "success": {
        "title": "Pipeline {pipeline_uuid} succeeded (run {run_id})",
        "summary": (
            "Successfully ran pipeline `{pipeline_uuid}` of project `{project}` ({trigger}) "
            "at execution time `{execution_time}` in {duration}."
        ),
    },
    "passed_sla": {
        "title": "SLA missed for pipeline {pipeline_uuid} (run {run_id})",
        "summary": (
            "Pipeline `{pipeline_uuid}` of project `{project}` ({trigger}) passed its SLA: "
            "run {run_id} at execution time `{execution_time}` is {status} after {duration}."
        ),
    },
    "test": {
        "title": "Test alert from Blockyard for {target}",
        "summary": "This is a test alert for {target}: its notification_config reaches this channel.",
    },
}

COLORS = {"failure": "D92D20", "success": "12B76A", "passed_sla": "F79009", "test": "2E90FA"}

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
MAX_ERROR_CHARS = 1500
MAX_STACKTRACE_CHARS = 4000


def base_url() -> str:
    return (os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL).rstrip("/")


def run_url(run_id: Any) -> str:
    """`{BLOCKYARD_BASE_URL or http://127.0.0.1:6789}/runs/{id}` (the base URL without an id)."""
    return f"{base_url()}/runs/{run_id}" if run_id is not None else base_url()


def fill_placeholders(text: str | None, values: dict[str, Any]) -> str:
    """Replace `{name}` / `{{name}}` for the names in `values`; others stay as written."""
    if not text:
        return text or ""

    def sub(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name in values:
            value = values[name]
            return "" if value is None else str(value)
        return match.group(0)

    return _PLACEHOLDER.sub(sub, text)


def _fmt_time(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value)


def _as_dt(value: Any) -> datetime | None:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return None


def duration_seconds(run: dict, now: datetime | None = None) -> float | None:
    start = _as_dt(run.get("started_at")) or _as_dt(run.get("created_at"))
    end = _as_dt(run.get("completed_at")) or now
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    total = int(round(seconds))
    h, rem = divmod(total, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s"


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class Message:
    event: str  # trigger_failure | trigger_success | trigger_passed_sla | test
    title: str
    summary: str
    details: str
    url: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    run: dict = field(default_factory=dict)  # JSON-safe run information

    @property
    def kind(self) -> str:
        return EVENT_KIND.get(self.event, self.event)

    @property
    def color(self) -> str:
        return COLORS.get(self.kind, "667085")

    def redacted(self, values: Iterable[str]) -> "Message":
        values = [v for v in values if v]
        if not values:
            return self

        def clean(obj: Any) -> Any:
            if isinstance(obj, str):
                return redact(obj, values)
            if isinstance(obj, dict):
                return {k: clean(v) for k, v in obj.items()}
            if isinstance(obj, (list, tuple)):
                return [clean(v) for v in obj]
            return obj

        return Message(
            event=self.event,
            title=clean(self.title),
            summary=clean(self.summary),
            details=clean(self.details),
            url=self.url,
            facts=[(k, clean(v)) for k, v in self.facts],
            run=clean(self.run),
        )

    def text(self) -> str:
        """Title and details as one plain-text block."""
        return f"{self.title}\n\n{self.details}"


def _block_line(block: dict) -> str:
    text = str(block.get("error") or block.get("status") or "").strip()
    first = text.splitlines()[0] if text else ""
    return f"{block.get('block_uuid')} ({_truncate(first, 200)})" if first else str(block.get("block_uuid"))


def _placeholder_values(
    run: dict,
    *,
    event: str,
    trigger_name: str | None,
    failed_blocks: list[dict],
    now: datetime,
    target: str | None,
) -> dict[str, Any]:
    run_id = run.get("id")
    trigger_id = run.get("trigger_id")
    if trigger_id is not None:
        trigger = f"trigger {trigger_id}" + (f" `{trigger_name}`" if trigger_name else "")
    elif event == "test":
        trigger = "test"
    else:
        trigger = "manual run"
    error = run.get("error") or ""
    if not error and failed_blocks:
        error = failed_blocks[0].get("error") or ""
    stacktrace = ""
    for block in failed_blocks:
        if block.get("traceback"):
            stacktrace = block["traceback"]
            break
    secs = duration_seconds(run, now if event in ("trigger_passed_sla", "test") else None)
    failed = ", ".join(_block_line(b) for b in failed_blocks)
    return {
        "event": event,
        "project": run.get("project") or "",
        "pipeline": run.get("pipeline_uuid") or "",
        "pipeline_uuid": run.get("pipeline_uuid") or "",
        "run_id": run_id if run_id is not None else "-",
        "status": run.get("status") or "",
        "error": _truncate(error, MAX_ERROR_CHARS) if error else "-",
        "stacktrace": _truncate(stacktrace, MAX_STACKTRACE_CHARS),
        "execution_time": _fmt_time(run.get("execution_date")),
        "execution_date": _fmt_time(run.get("execution_date")),
        "started_at": _fmt_time(run.get("started_at")),
        "completed_at": _fmt_time(run.get("completed_at")),
        "duration": fmt_duration(secs),
        "trigger": trigger,
        "trigger_id": trigger_id if trigger_id is not None else "",
        "trigger_name": trigger_name or "",
        "pipeline_schedule_id": trigger_id if trigger_id is not None else "",
        "pipeline_schedule_name": trigger_name or "",
        "pipeline_run_url": run_url(run_id),
        "run_url": run_url(run_id),
        "failed_blocks": failed or "-",
        "target": target or "",
    }


def build_message(
    run: dict,
    event: str,
    *,
    template: dict | None = None,
    trigger_name: str | None = None,
    failed_blocks: list[dict] | None = None,
    now: datetime | None = None,
    target: str | None = None,
) -> Message:
    """The message for `run` (a pipeline_runs row) and `event`; `template` is the custom
    {title, summary, details} from message_templates (any part may be missing)."""
    now = now or datetime.now(timezone.utc)
    failed_blocks = failed_blocks or []
    kind = EVENT_KIND.get(event, event)
    values = _placeholder_values(
        run, event=event, trigger_name=trigger_name, failed_blocks=failed_blocks, now=now, target=target
    )
    defaults = DEFAULT_MESSAGES.get(kind, DEFAULT_MESSAGES["test"])
    template = template or {}
    title = fill_placeholders(template.get("title") or defaults["title"], values)
    title = " ".join(title.split())  # a title is one line (it is the e-mail subject)
    summary = fill_placeholders(template.get("summary") or defaults["summary"], values)

    facts: list[tuple[str, str]] = []
    if kind == "test":
        facts.append(("Project", values["project"] or "-"))
        if values["pipeline"]:
            facts.append(("Pipeline", values["pipeline"]))
    else:
        facts += [
            ("Project", values["project"]),
            ("Pipeline", values["pipeline"]),
            ("Run", str(values["run_id"])),
            ("Status", values["status"]),
            ("Trigger", values["trigger"]),
            ("Execution date", values["execution_time"]),
            ("Started", values["started_at"]),
            ("Completed", values["completed_at"]),
            ("Duration", values["duration"]),
        ]
        if kind == "passed_sla" and run.get("sla_deadline") is not None:
            facts.append(("SLA deadline", _fmt_time(run.get("sla_deadline"))))
        if kind == "failure":
            facts.append(("Error", values["error"]))
            if failed_blocks:
                facts.append(("Failed blocks", values["failed_blocks"]))
    url = values["pipeline_run_url"]
    if template.get("details"):
        details = fill_placeholders(template["details"], values)
    else:
        lines = [summary, ""]
        lines += [f"{k}: {v}" for k, v in facts]
        if kind == "test":
            lines += ["", f"Blockyard: {url}"]
        else:
            lines += ["", f"Open {url} to check the pipeline run results and logs."]
        details = "\n".join(lines)
    secs = duration_seconds(run, now if event in ("trigger_passed_sla", "test") else None)
    run_info = {
        "id": run.get("id"),
        "project": run.get("project"),
        "pipeline_uuid": run.get("pipeline_uuid"),
        "status": run.get("status"),
        "error": run.get("error"),
        "execution_date": _iso(run.get("execution_date")),
        "created_at": _iso(run.get("created_at")),
        "started_at": _iso(run.get("started_at")),
        "completed_at": _iso(run.get("completed_at")),
        "duration_seconds": round(secs, 3) if secs is not None else None,
        "trigger_id": run.get("trigger_id"),
        "trigger_name": trigger_name,
        "backfill_id": run.get("backfill_id"),
        "failed_blocks": [
            {"block_uuid": b.get("block_uuid"), "status": b.get("status"), "error": b.get("error")}
            for b in failed_blocks
        ],
    }
    return Message(event=event, title=title, summary=summary, details=details, url=url, facts=facts, run=run_info)


def _iso(value: Any) -> str | None:
    dt = _as_dt(value)
    return dt.astimezone(timezone.utc).isoformat() if dt else (str(value) if value is not None else None)
