"""Bringing the pipeline_schedules table in line with the triggers.yaml files."""
from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

from blockyard.errors import BlockyardError
from blockyard.orchestration._util import log, notify_schedules_changed
from blockyard.orchestration.trigger_entries import (
    _SCHEDULE_FIELDS,
    _SCHEDULE_SETTINGS,
    TRIGGERS_FILE,
    TriggerError,
    config_hash,
    initial_cursor,
    new_token,
    normalize_entry,
)
from blockyard.orchestration.trigger_files import _read_file, _signature, _signatures, _signatures_guard


class TriggerSync:
    """The syncing half of TriggerStore (which provides db, clock, _fresh_workspace, _rows)."""

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
