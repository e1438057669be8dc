"""Triggers: Mage's `pipelines/<uuid>/triggers.yaml`, mirrored in `pipeline_schedules`.

The YAML files are the source of truth for a trigger's configuration; the table adds
what only the database knows (id, token when not in the file, the scheduler's cursor
`next_run_at`, `last_execution_date`, errors). `TriggerStore.sync()` brings the table
in line with the files (the scheduler calls it every few seconds and it only re-reads
files whose size/mtime/inode changed); `create`/`update`/`delete` edit the file (keeping
keys Blockyard does not know, and their order) and then sync it.

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

import builtins
import contextlib
import copy
import hashlib
import hmac
import json
import os
import secrets as _secrets
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from blockyard.errors import BlockyardError
from blockyard.orchestration._util import (
    as_clock,
    log,
    notify_schedules_changed,
    parse_datetime,
)
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


# -------------------------------------------------------------- file access
_file_locks: dict[str, threading.RLock] = {}
_file_locks_guard = threading.Lock()
_signatures: dict[tuple[str, str], tuple] = {}
_signatures_guard = threading.Lock()


def _signature(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


@contextlib.contextmanager
def _locked(path: Path, lock_dir: Path) -> Iterator[None]:
    """Serialize read-modify-write of one triggers.yaml (threads, and processes via flock)."""
    key = str(path)
    with _file_locks_guard:
        tlock = _file_locks.setdefault(key, threading.RLock())
    with tlock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            yield
            return
        lock_dir.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha1(key.encode()).hexdigest()[:16] + ".lock"
        with open(lock_dir / name, "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _read_file(path: Path) -> dict:
    from blockyard.errors import ProjectError
    from blockyard.project.yaml_io import read_mapping

    doc = read_mapping(path, "triggers file", missing_ok=True)
    data = doc.data
    triggers = data.get("triggers")
    if triggers is None:
        triggers = []
    if not isinstance(triggers, list) or not all(isinstance(t, dict) for t in triggers):
        raise ProjectError("'triggers' must be a list of mappings", file=path, line=doc.line_of("triggers"))
    data["triggers"] = triggers
    return data


def _write_file(path: Path, data: dict) -> None:
    from blockyard.project.yaml_io import write_yaml

    write_yaml(path, data)  # temp file + os.replace: readers see the old or the new file


@contextlib.contextmanager
def _restored_on_error(path: Path) -> Iterator[None]:
    """A trigger's file and its row change together or not at all: when the table
    refuses the change made inside this block, the file is put back as it was."""
    try:
        old: bytes | None = path.read_bytes()
    except FileNotFoundError:
        old = None
    try:
        yield
    except BaseException:
        if old is None:
            path.unlink(missing_ok=True)
        else:
            tmp = path.with_name(f".{path.name}.{_secrets.token_hex(5)}.restore")
            tmp.write_bytes(old)
            os.replace(tmp, path)
        raise


# ------------------------------------------------------------------- store
class TriggerStore:
    """Triggers of one workspace: triggers.yaml files + the pipeline_schedules table."""

    def __init__(self, workspace: Any, db: Any, *, clock: Any = None) -> None:
        self.workspace = workspace
        self.db = db
        self.clock = as_clock(clock)
        from blockyard.project import Workspace

        self._ws_cls = Workspace
        self.lock_dir = Path(workspace.data_dir) / "locks"

    # -- helpers ------------------------------------------------------------------
    def _fresh_workspace(self):
        try:
            return self._ws_cls.open(self.workspace.root)
        except BlockyardError:
            return self.workspace

    def project_names(self) -> list[str]:
        return self._fresh_workspace().project_names()

    def _pipeline_dir(self, project: str, pipeline_uuid: str) -> Path:
        ws = self._fresh_workspace()
        proj = ws.project(project)
        return proj.pipelines_dir / pipeline_uuid

    def _resolve(self, data: dict) -> tuple[str, str]:
        project = data.get("project")
        uuid = data.get("pipeline_uuid")
        ref = data.get("pipeline")
        if uuid is None and ref:
            if "/" in ref:
                project, uuid = ref.split("/", 1)
            else:
                uuid = ref
        if not uuid:
            raise TriggerError("a trigger needs its pipeline: 'project' and 'pipeline_uuid' (or 'pipeline')")
        ws = self._fresh_workspace()
        spec = ws.find_pipeline(f"{project}/{uuid}" if project else uuid)
        return spec.project.name, spec.uuid

    def _rows(self, where: list, conn=None) -> list[dict]:
        import sqlalchemy as sa

        from blockyard.db.schema import pipeline_schedules as ps

        query = sa.select(ps).where(*where).order_by(ps.c.project, ps.c.pipeline_uuid, ps.c.id)
        if conn is not None:
            return [dict(r._mapping) for r in conn.execute(query)]
        with self.db.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(query)]

    def _row(self, trigger_id: int) -> dict | None:
        from blockyard.db.schema import pipeline_schedules as ps

        rows = self._rows([ps.c.id == int(trigger_id)])
        return rows[0] if rows else None

    # -- reading ------------------------------------------------------------------
    def list(self, project: str | None = None, pipeline: str | None = None, *, sync: bool = True) -> builtins.list[dict]:
        """Triggers (optionally of one project and/or pipeline); syncs the files first."""
        from blockyard.db.schema import pipeline_schedules as ps

        if pipeline and "/" in pipeline:
            project, pipeline = pipeline.split("/", 1)
        if sync:
            self.sync()
        names = self.project_names()
        where = [ps.c.project.in_(names)]
        if project is not None:
            where.append(ps.c.project == project)
        if pipeline is not None:
            where.append(ps.c.pipeline_uuid == pipeline)
        return [public(r) for r in self._rows(where)]

    def get(self, trigger_id: int) -> dict | None:
        row = self._row(trigger_id)
        return public(row) if row else None

    def find(self, project: str, pipeline_uuid: str, name: str) -> dict | None:
        from blockyard.db.schema import pipeline_schedules as ps

        rows = self._rows([ps.c.project == project, ps.c.pipeline_uuid == pipeline_uuid, ps.c.name == name])
        return public(rows[0]) if rows else None

    # -- editing ------------------------------------------------------------------
    def create(self, data: dict) -> dict:
        """Add a trigger to the pipeline's triggers.yaml (and the table); returns it.

        `data`: project + pipeline_uuid (or pipeline 'project/uuid'), name, and any
        entry keys. status defaults to active here (a YAML entry without one is inactive,
        as in Mage); an api trigger without a token gets a random one, kept in the
        database only.
        """
        if not isinstance(data, dict):
            raise TriggerError("a trigger must be a mapping")
        project, uuid = self._resolve(data)
        entry = {k: copy.deepcopy(v) for k, v in data.items() if k not in ("project", "pipeline_uuid", "pipeline", "id")}
        entry.setdefault("schedule_type", "time")
        entry.setdefault("status", "active")
        if entry.get("status") == "active" and not entry.get("last_enabled_at"):
            entry["last_enabled_at"] = self.clock()
        fields = normalize_entry(entry, strict=True)
        entry["name"] = fields["name"]
        path = self._pipeline_dir(project, uuid) / TRIGGERS_FILE
        with _locked(path, self.lock_dir):
            doc = _read_file(path)
            if any(t.get("name") == fields["name"] for t in doc["triggers"]):
                raise TriggerError(
                    f"pipeline '{project}/{uuid}' already has a trigger named '{fields['name']}'",
                    file=path,
                )
            doc["triggers"].append(_ordered_entry(entry))
            with _restored_on_error(path):
                _write_file(path, doc)
                self._sync_pipeline(project, uuid, path, force=True)
        row = self.find(project, uuid, fields["name"])
        assert row is not None
        notify_schedules_changed()
        return row

    def update(self, trigger_id: int, data: dict) -> dict:
        """Change some keys of a trigger (in its YAML entry and the table); returns it.
        `status: active` on an inactive trigger stamps last_enabled_at."""
        import sqlalchemy as sa

        from blockyard.db.schema import pipeline_schedules as ps

        row = self._row(trigger_id)
        if row is None:
            raise TriggerNotFound(f"no trigger with id {trigger_id}")
        changes = {k: copy.deepcopy(v) for k, v in data.items() if k not in ("id", "project", "pipeline_uuid", "pipeline")}
        path = self._pipeline_dir(row["project"], row["pipeline_uuid"]) / TRIGGERS_FILE
        with _locked(path, self.lock_dir):
            doc = _read_file(path)
            entry = next((t for t in doc["triggers"] if t.get("name") == row["name"]), None)
            if entry is None:  # the file lost it: rebuild it from the table
                entry = _entry_from_row(row)
                doc["triggers"].append(entry)
            new_name = changes.get("name", row["name"])
            if new_name != row["name"] and any(t.get("name") == new_name for t in doc["triggers"]):
                raise TriggerError(f"pipeline '{row['project']}/{row['pipeline_uuid']}' already has a trigger named '{new_name}'")
            if changes.get("status") == "active" and row["status"] != "active" and "last_enabled_at" not in changes:
                changes["last_enabled_at"] = self.clock()
            candidate = dict(entry)
            for key, value in changes.items():
                candidate[key] = value
            if "settings" in changes and isinstance(changes["settings"], dict) and isinstance(entry.get("settings"), dict):
                merged = dict(entry["settings"])
                merged.update(changes["settings"])
                candidate["settings"] = merged
            normalize_entry(candidate, strict=True)
            entry.clear()
            entry.update(_ordered_entry(candidate, like=list(candidate)))
            renamed = False
            with _restored_on_error(path):
                try:
                    if new_name != row["name"]:  # keep the id across a rename
                        with self.db.engine.begin() as conn:
                            conn.execute(sa.update(ps).where(ps.c.id == row["id"]).values(name=new_name))
                        renamed = True
                    _write_file(path, doc)
                    self._sync_pipeline(row["project"], row["pipeline_uuid"], path, force=True)
                except BaseException:
                    if renamed:
                        with self.db.engine.begin() as conn:
                            conn.execute(sa.update(ps).where(ps.c.id == row["id"]).values(name=row["name"]))
                    raise
        result = self.get(row["id"])
        if result is None:  # pragma: no cover - someone deleted it meanwhile
            raise TriggerNotFound(f"trigger {trigger_id} disappeared while it was updated")
        notify_schedules_changed()
        return result

    def enable(self, trigger_id: int) -> dict:
        return self.update(trigger_id, {"status": "active"})

    def disable(self, trigger_id: int) -> dict:
        return self.update(trigger_id, {"status": "inactive"})

    def delete(self, trigger_id: int) -> dict:
        """Remove a trigger from its triggers.yaml and the table; returns what it was."""
        import sqlalchemy as sa

        from blockyard.db.schema import pipeline_schedules as ps

        row = self._row(trigger_id)
        if row is None:
            raise TriggerNotFound(f"no trigger with id {trigger_id}")
        try:
            path = self._pipeline_dir(row["project"], row["pipeline_uuid"]) / TRIGGERS_FILE
        except BlockyardError:
            path = None
        if path is not None:
            with _locked(path, self.lock_dir):
                doc = _read_file(path)
                kept = [t for t in doc["triggers"] if t.get("name") != row["name"]]
                with _restored_on_error(path):
                    if len(kept) != len(doc["triggers"]):
                        doc["triggers"] = kept
                        _write_file(path, doc)
                    with self.db.engine.begin() as conn:
                        conn.execute(sa.delete(ps).where(ps.c.id == row["id"]))
                _remember_signature(self.db, path)
        else:
            with self.db.engine.begin() as conn:
                conn.execute(sa.delete(ps).where(ps.c.id == row["id"]))
        notify_schedules_changed()
        return public(row)

    # -- syncing ------------------------------------------------------------------
    def sync(self, project: str | None = None, pipeline: str | None = None, *, force: bool = False) -> dict:
        """Bring the table in line with the triggers.yaml files (only files that changed
        since this process last read them, unless `force`). Returns counts and errors."""
        import sqlalchemy as sa

        from blockyard.db.schema import pipeline_schedules as ps

        result = {"created": 0, "updated": 0, "deleted": 0, "errors": []}
        ws = self._fresh_workspace()
        pipelines: list[tuple[str, str, Path]] = []
        for proj in ws.projects():
            if project is not None and proj.name != project:
                continue
            for uuid in proj.pipeline_uuids():
                if pipeline is not None and uuid != pipeline:
                    continue
                pipelines.append((proj.name, uuid, proj.pipelines_dir / uuid / TRIGGERS_FILE))
        for proj_name, uuid, path in pipelines:
            counts = self._sync_pipeline(proj_name, uuid, path, force=force)
            for key in ("created", "updated", "deleted"):
                result[key] += counts[key]
            result["errors"].extend(counts["errors"])
        if pipeline is None:
            # Rows of pipelines that no longer exist in this workspace's projects.
            known: dict[str, set[str]] = {}
            for proj in ws.projects():
                if project is None or proj.name == project:
                    known[proj.name] = set(proj.pipeline_uuids())
            with self.db.engine.connect() as conn:
                stale = [
                    int(r.id)
                    for r in conn.execute(
                        sa.select(ps.c.id, ps.c.project, ps.c.pipeline_uuid).where(ps.c.project.in_(list(known)))
                    )
                    if r.pipeline_uuid not in known[r.project]
                ]
            if stale:
                with self.db.engine.begin() as conn:
                    conn.execute(sa.delete(ps).where(ps.c.id.in_(stale)))
                result["deleted"] += len(stale)
        if result["created"] or result["updated"] or result["deleted"]:
            notify_schedules_changed()
        return result

    def _sync_pipeline(self, project: str, uuid: str, path: Path, *, force: bool) -> dict:
        import sqlalchemy as sa

        from blockyard.db.schema import pipeline_schedules as ps

        counts = {"created": 0, "updated": 0, "deleted": 0, "errors": []}
        sig = _signature(path)
        key = (self.db.url.render_as_string(hide_password=True), str(path))
        if not force:
            # Unchanged size/mtime/inode means unchanged content, except for a file written
            # in the last 2 s (coarse mtimes; an in-place edit keeping the size): re-read.
            recent = sig is not None and time.time() - sig[0] / 1e9 < 2.0
            with _signatures_guard:
                if key in _signatures and _signatures[key] == sig and not recent:
                    return counts
        try:
            entries = _read_file(path)["triggers"] if sig is not None else []
        except BlockyardError as exc:
            # A broken file must not delete its triggers: keep the table as it is.
            counts["errors"].append(str(exc))
            log.warning("triggers not synced: %s", exc)
            with _signatures_guard:
                _signatures[key] = sig
            return counts
        now = self.clock()
        wanted: dict[str, dict] = {}
        unreadable: set[str] = set()  # named entries that cannot be used: their rows stay as they are
        for i, entry in enumerate(entries):
            try:
                fields = normalize_entry(entry)
            except TriggerError as exc:
                counts["errors"].append(f"{path}: entry {i + 1}: {exc}")
                if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                    unreadable.add(entry["name"].strip())
                continue
            if fields["name"] in wanted:
                counts["errors"].append(f"{path}: trigger name '{fields['name']}' is used twice; the first one counts")
                continue
            wanted[fields["name"]] = fields
        existing = {
            r["name"]: r for r in self._rows([ps.c.project == project, ps.c.pipeline_uuid == uuid])
            if r["name"] not in unreadable
        }
        for name, fields in wanted.items():
            h = config_hash(fields)
            row = existing.pop(name, None)
            if row is None:
                if self._insert(project, uuid, fields, h, now):
                    counts["created"] += 1
            elif row["config_hash"] != h:
                if self._update(row, fields, h, now):
                    counts["updated"] += 1
        if existing:
            with self.db.engine.begin() as conn:
                conn.execute(sa.delete(ps).where(ps.c.id.in_([r["id"] for r in existing.values()])))
            counts["deleted"] += len(existing)
        for msg in counts["errors"]:
            log.warning("%s", msg)
        with _signatures_guard:
            _signatures[key] = sig
        return counts

    def _insert(self, project: str, uuid: str, fields: dict, h: str, now: datetime) -> bool:
        import sqlalchemy as sa

        from blockyard.db.schema import pipeline_schedules as ps

        values = {k: v for k, v in fields.items()}
        values.update(project=project, pipeline_uuid=uuid, config_hash=h, created_at=now, updated_at=now)
        if values["status"] == "active" and values["last_enabled_at"] is None:
            values["last_enabled_at"] = now
        if values["schedule_type"] == "api" and not values["token"]:
            values["token"] = new_token()
        values["last_execution_date"] = None
        # First sight: the cursor starts now (catchup: at start_time).
        values["next_run_at"] = initial_cursor(values, now, first_activation=True)
        try:
            with self.db.engine.begin() as conn:
                conn.execute(sa.insert(ps).values(values))
        except sa.exc.IntegrityError:
            if self._rows([ps.c.project == project, ps.c.pipeline_uuid == uuid, ps.c.name == fields["name"]]):
                return False  # another process inserted it first
            raise
        return True

    def _update(self, row: dict, fields: dict, h: str, now: datetime) -> bool:
        import sqlalchemy as sa

        from blockyard.db.schema import pipeline_schedules as ps

        values = {k: v for k, v in fields.items()}
        values.update(config_hash=h, updated_at=now)
        if not values["token"]:
            values["token"] = row["token"] or (new_token() if values["schedule_type"] == "api" else None)
        was_active = row["status"] == "active" and not row["error"]
        is_active = values["status"] == "active" and not values["error"]
        merged = dict(row)
        merged.update(values)
        if is_active and not was_active:
            first = row["last_enabled_at"] is None
            enabled = values["last_enabled_at"]
            if enabled is None or (row["last_enabled_at"] is not None and enabled <= row["last_enabled_at"]):
                enabled = now
            values["last_enabled_at"] = merged["last_enabled_at"] = enabled
            values["next_run_at"] = initial_cursor(merged, now, first_activation=first)
        elif not is_active:
            values["next_run_at"] = None
            if values["last_enabled_at"] is None:
                values["last_enabled_at"] = row["last_enabled_at"]
        else:
            if values["last_enabled_at"] is None:
                values["last_enabled_at"] = row["last_enabled_at"]
                merged["last_enabled_at"] = row["last_enabled_at"]
            old_s, new_s = row.get("settings") or {}, values.get("settings") or {}
            changed = any(row.get(k) != values.get(k) for k in _SCHEDULE_FIELDS) or any(
                old_s.get(k) != new_s.get(k) for k in _SCHEDULE_SETTINGS
            )
            if changed or row["next_run_at"] is None and row["schedule_type"] != "api":
                values["next_run_at"] = initial_cursor(merged, now, first_activation=False)
        with self.db.engine.begin() as conn:
            result = conn.execute(
                sa.update(ps)
                .where(ps.c.id == row["id"], _eq_or_null(ps.c.config_hash, row["config_hash"]))
                .values(values)
            )
        return bool(result.rowcount)


def _eq_or_null(column, value):
    return column.is_(None) if value is None else column == value


def _remember_signature(db: Any, path: Path) -> None:
    key = (db.url.render_as_string(hide_password=True), str(path))
    with _signatures_guard:
        _signatures.pop(key, None)


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


def get_trigger_row(db: Any, trigger_id: int) -> dict | None:
    """A trigger row straight from the table (no workspace needed)."""
    import sqlalchemy as sa

    from blockyard.db.schema import pipeline_schedules as ps

    with db.engine.connect() as conn:
        row = conn.execute(sa.select(ps).where(ps.c.id == int(trigger_id))).first()
    return dict(row._mapping) if row is not None else None


__all__ = [
    "TriggerStore",
    "TriggerError",
    "TriggerNotFound",
    "verify_token",
    "normalize_entry",
    "initial_cursor",
    "schedule_for",
    "SCHEDULE_TYPES",
    "TRIGGERS_FILE",
]
