"""Triggers: Mage's `pipelines/<uuid>/triggers.yaml`, mirrored in `pipeline_schedules`.

The YAML files are the source of truth for a trigger's configuration; the table adds
what only the database knows (id, token when not in the file, the scheduler's cursor
`next_run_at`, `last_execution_date`, errors). `TriggerStore.sync()` brings the table
in line with the files (the scheduler calls it every few seconds and it only re-reads
files whose size/mtime/inode changed); `create`/`update`/`delete` edit the file (keeping
keys Blockyard does not know, and their order) and then sync it.

Here: TriggerStore (reading and editing). The entry format and its checks are in
trigger_entries, file access in trigger_files, syncing in trigger_sync.
"""
from __future__ import annotations

import builtins
import copy
from pathlib import Path
from typing import Any

from blockyard.errors import BlockyardError
from blockyard.orchestration._util import as_clock, notify_schedules_changed
from blockyard.orchestration.trigger_entries import (
    DEFAULT_POKE_INTERVAL,
    KNOWN_KEYS,
    MAX_NAME_LENGTH,
    MAX_SLA_SECONDS,
    SCHEDULE_TYPES,
    SENSOR_TYPES,
    TRIGGER_STATUSES,
    TRIGGERS_FILE,
    TriggerError,
    TriggerNotFound,
    _entry_from_row,
    _ordered_entry,
    config_hash,
    initial_cursor,
    new_token,
    normalize_entry,
    poke_interval,
    public,
    schedule_for,
    verify_token,
)
from blockyard.orchestration.trigger_files import _locked, _read_file, _remember_signature, _restored_on_error, _write_file
from blockyard.orchestration.trigger_sync import TriggerSync


# ------------------------------------------------------------------- store
class TriggerStore(TriggerSync):
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


def get_trigger_row(db: Any, trigger_id: int) -> dict | None:
    """A trigger row straight from the table (no workspace needed)."""
    import sqlalchemy as sa

    from blockyard.db.schema import pipeline_schedules as ps

    with db.engine.connect() as conn:
        row = conn.execute(sa.select(ps).where(ps.c.id == int(trigger_id))).first()
    return dict(row._mapping) if row is not None else None


__all__ = [
    "TriggerStore",
    "get_trigger_row",
    "public",
    "poke_interval",
    "config_hash",
    "new_token",
    "DEFAULT_POKE_INTERVAL",
    "KNOWN_KEYS",
    "MAX_NAME_LENGTH",
    "MAX_SLA_SECONDS",
    "SENSOR_TYPES",
    "TRIGGER_STATUSES",
    "TriggerError",
    "TriggerNotFound",
    "verify_token",
    "normalize_entry",
    "initial_cursor",
    "schedule_for",
    "SCHEDULE_TYPES",
    "TRIGGERS_FILE",
]
