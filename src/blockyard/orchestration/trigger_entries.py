"""A triggers.yaml entry: its keys, checks and the table fields it becomes.

Entry format (one item of the top-level `triggers:` list):

    - name: daily_training            # unique within the pipeline
      schedule_type: time             # time | api | event (alias: sensor)
      schedule_interval: '@daily'     # see blockyard.orchestration.schedules
      start_time: 2024-01-01 06:00:00 # naive = in settings.timezone (default UTC)
      status: active                  # active | inactive (Mage's default: inactive)
      variables: {target: duration}
      sla: 3600                       # seconds after the execution time
      settings:
        timezone: Europe/Amsterdam
        catchup: false
        skip_if_previous_running: true
        allow_blocks_to_fail: false
        create_initial_pipeline_run: false
        pipeline_run_limit: 1
        timeout: 1800
        timeout_status: failed
        sensor_block: wait_for_file   # event triggers
        poke_interval: 30             # event triggers, seconds
"""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets as _secrets
from datetime import datetime
from typing import Any

from blockyard.errors import BlockyardError
from blockyard.orchestration._util import parse_datetime
from blockyard.orchestration.schedules import ScheduleError, get_timezone, parse_schedule

SCHEDULE_TYPES = ("time", "api", "event", "sensor")
SENSOR_TYPES = ("event", "sensor")
TRIGGER_STATUSES = ("active", "inactive")
KNOWN_KEYS = (
    "name",
    "schedule_type",
    "schedule_interval",
    "start_time",
    "status",
    "variables",
    "settings",
    "sla",
    "last_enabled_at",
    "token",
)
# Entry fields whose change moves the scheduler's cursor.
_SCHEDULE_FIELDS = ("schedule_type", "schedule_interval", "start_time")
_SCHEDULE_SETTINGS = ("timezone", "catchup", "sensor_block", "poke_interval")
TRIGGERS_FILE = "triggers.yaml"
DEFAULT_POKE_INTERVAL = 60.0


# Column sizes of pipeline_schedules (PostgreSQL enforces them).
MAX_NAME_LENGTH = 255
MAX_SLA_SECONDS = 2_147_483_647


class TriggerError(BlockyardError, ValueError):
    """A trigger that cannot be created/updated as asked (a ValueError: bad input)."""


class TriggerNotFound(TriggerError, LookupError):
    pass


# ------------------------------------------------------------------ parsing
def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def normalize_entry(entry: dict, *, strict: bool = False) -> dict:
    """A triggers.yaml entry as table fields (+ `error`: why it cannot fire, or None).

    With `strict`, any problem raises TriggerError instead of being recorded.
    """
    if not isinstance(entry, dict):
        raise TriggerError(f"a trigger must be a mapping, not {type(entry).__name__}")
    from blockyard.storable import find_unstorable

    found = find_unstorable(entry)
    if found is not None:  # the table could not hold it: refuse the entry, even when not strict
        where, reason = found
        raise TriggerError(f"trigger {entry.get('name')!r}: {'.'.join(map(str, where))} {reason}")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise TriggerError("a trigger needs a 'name' (a non-empty string)")
    if len(name.strip()) > MAX_NAME_LENGTH:
        raise TriggerError(f"trigger name {name[:40]!r}...: too long ({len(name)} characters; at most {MAX_NAME_LENGTH})")
    problems: list[str] = []

    def problem(msg: str) -> None:
        if strict:
            raise TriggerError(f"trigger '{name}': {msg}")
        problems.append(msg)

    stype = entry.get("schedule_type") or "time"
    stype = str(stype).lower()
    if stype not in SCHEDULE_TYPES:
        problem(f"schedule_type must be one of {', '.join(SCHEDULE_TYPES)}, not {stype!r}")
    status = str(entry.get("status") or "inactive").lower()
    if status not in TRIGGER_STATUSES:
        problem(f"status must be active or inactive, not {status!r}")
        status = "inactive"
    variables = entry.get("variables")
    if variables is None:
        variables = {}
    if not isinstance(variables, dict):
        problem("variables must be a mapping")
        variables = {}
    settings = entry.get("settings")
    if settings is None:
        settings = {}
    if not isinstance(settings, dict):
        problem("settings must be a mapping")
        settings = {}
    settings = dict(settings)
    # Top-level aliases (documented under settings).
    for alias in ("timezone", "catchup"):
        if alias in entry and alias not in settings:
            settings[alias] = entry[alias]
    tz = None
    try:
        tz = get_timezone(settings.get("timezone"))
    except ScheduleError as exc:
        problem(str(exc))
    start_time = last_enabled_at = None
    try:
        start_time = parse_datetime(entry.get("start_time"), tz, what="start_time")
    except ValueError as exc:
        problem(str(exc))
    try:
        last_enabled_at = parse_datetime(entry.get("last_enabled_at"), None, what="last_enabled_at")
    except ValueError as exc:
        problem(str(exc))
    sla = entry.get("sla")
    if sla is not None:
        try:
            sla = int(sla)
            if sla <= 0 or sla > MAX_SLA_SECONDS:
                raise ValueError
        except (TypeError, ValueError):
            problem(f"sla must be a positive number of seconds, not {entry.get('sla')!r}")
            sla = None
    for key in ("timeout", "pipeline_run_limit", "poke_interval"):
        value = settings.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
            problem(f"settings.{key} must be a positive number, not {value!r}")
    if settings.get("timeout_status") not in (None, "failed", "cancelled"):
        problem("settings.timeout_status must be 'failed' or 'cancelled'")
    interval = entry.get("schedule_interval")
    if stype == "time":
        try:
            parse_schedule(interval, timezone_name=settings.get("timezone"))
        except ScheduleError as exc:
            problem(str(exc))
    token = entry.get("token")
    if token is not None and not isinstance(token, str):
        token = str(token)
    extra = {k: _jsonable(v) for k, v in entry.items() if k not in KNOWN_KEYS}
    return {
        "name": name.strip(),
        "schedule_type": stype,
        "schedule_interval": None if interval is None else str(interval),
        "start_time": start_time,
        "status": status,
        "variables": _jsonable(variables),
        "settings": _jsonable(settings),
        "sla": sla,
        "last_enabled_at": last_enabled_at,
        "token": token,
        "extra": extra,
        "error": "; ".join(problems) or None,
    }


def config_hash(fields: dict) -> str:
    data = {k: _jsonable(fields.get(k)) for k in KNOWN_KEYS if k != "last_enabled_at"}
    data["extra"] = fields.get("extra")
    data["error"] = fields.get("error")
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def schedule_for(row: dict):
    """The parsed Schedule of a time trigger row (None for other types or invalid ones)."""
    if row.get("schedule_type") != "time" or row.get("error"):
        return None
    settings = row.get("settings") or {}
    anchor = row.get("start_time") or row.get("last_enabled_at") or row.get("created_at")
    try:
        return parse_schedule(row.get("schedule_interval"), timezone_name=settings.get("timezone"), anchor=anchor)
    except ScheduleError:
        return None


def poke_interval(row: dict, default: float = DEFAULT_POKE_INTERVAL) -> float:
    value = (row.get("settings") or {}).get("poke_interval")
    return float(value) if value else default


def initial_cursor(row: dict, now: datetime, *, first_activation: bool) -> datetime | None:
    """Where the scheduler starts for a trigger that just became active (or changed).

    Time triggers start at the first execution time >= max(start_time, now): periods
    before activation are not run, except that `catchup: true` on first activation
    starts from start_time (every interval since then fires) and
    `create_initial_pipeline_run: true` also fires the latest time <= now right away.
    @once fires at start_time (or now), at most once per trigger.
    """
    if row.get("status") != "active" or row.get("error"):
        return None
    stype = row.get("schedule_type")
    if stype in SENSOR_TYPES:
        return now
    if stype != "time":
        return None
    sched = schedule_for(row)
    if sched is None:
        return None
    settings = row.get("settings") or {}
    start = row.get("start_time")
    if sched.kind == "once":
        if row.get("last_execution_date") is not None:
            return None
        return start or now
    if first_activation and settings.get("catchup") and start is not None:
        base = start
    else:
        base = max(start, now) if start is not None else now
    if sched.kind == "interval" and start is None:
        cursor = sched.next_after(base)  # one interval after it was enabled
    else:
        cursor = sched.first_at_or_after(base)
    if settings.get("create_initial_pipeline_run"):
        latest = sched.latest_at_or_before(now)
        if latest is not None and (start is None or latest >= start) and (cursor is None or latest < cursor):
            cursor = latest
    return cursor


def verify_token(trigger: Any, token: str | None) -> bool:
    """True if `token` is the trigger's API token (constant-time comparison)."""
    expected = trigger.get("token") if isinstance(trigger, dict) else getattr(trigger, "token", None)
    given = token if isinstance(token, str) else ""
    if not expected:
        hmac.compare_digest(given.encode(), b"\0" * len(given.encode()))  # same work either way
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def new_token() -> str:
    return _secrets.token_urlsafe(24)


_ENTRY_ORDER = KNOWN_KEYS  # the order Mage writes a trigger's keys in


def _ordered_entry(entry: dict, like: list | None = None) -> dict:
    """A YAML entry with known keys in a readable order (or the order in `like`)."""
    order = like if like is not None else [k for k in _ENTRY_ORDER if k in entry] + [k for k in entry if k not in _ENTRY_ORDER]
    out = {}
    for k in order:
        if k in entry:
            out[k] = entry[k]
    for k in entry:
        if k not in out:
            out[k] = entry[k]
    return out


def _entry_from_row(row: dict) -> dict:
    entry = {
        "name": row["name"],
        "schedule_type": row["schedule_type"],
        "schedule_interval": row["schedule_interval"],
        "start_time": row["start_time"],
        "status": row["status"],
        "variables": row["variables"] or {},
        "settings": row["settings"] or {},
        "sla": row["sla"],
        "last_enabled_at": row["last_enabled_at"],
    }
    entry.update(row.get("extra") or {})
    return entry


def public(row: dict) -> dict:
    """A trigger as handed to callers (the server, the CLI)."""
    out = {k: v for k, v in row.items() if k != "config_hash"}
    out["pipeline"] = f"{row['project']}/{row['pipeline_uuid']}"
    out["variables"] = row.get("variables") or {}
    out["settings"] = row.get("settings") or {}
    out["extra"] = row.get("extra") or {}
    return out
