"""/ui-api for the Settings page: rename a project, and a project's notification settings
(`notification_config` in its metadata.yaml, Mage's format) as a form.

Renaming moves the history with the project: every database row recorded under the old
name (runs, triggers, backfills, secrets, monitoring…: each table with a `project`
column) is renamed in the same transaction as the folder and the settings.yaml entry, so
old runs and triggers stay reachable under the new name. It is refused while a run of
the project is unfinished.

The notification form edits only the fields it shows; other keys (message_templates,
rules, smtp_starttls, headers, …) are kept, and a value left as it was — a secret
templated as `{{ env_var('X') }}` or `{{ mage_secret_var('X') }}` — is written back
byte for byte."""
from __future__ import annotations

import shutil
from typing import Any, Optional

from fastapi import APIRouter, Request
from pydantic import BaseModel

from blockyard.ui.server import guarded, state

router = APIRouter(prefix="/ui-api", tags=["ui"], include_in_schema=False)

# notification_config key -> the fields the form shows (Mage's names)
FORM_FIELDS = {
    "email_config": ("smtp_host", "smtp_port", "smtp_user", "smtp_password", "smtp_mail_from", "to_emails"),
    "slack_config": ("webhook_url",),
    "teams_config": ("webhook_url",),
    "discord_config": ("webhook_url",),
    "webhook_config": ("url", "method"),
}


# ------------------------------------------------------------------ rename a project
class RenameIn(BaseModel):
    new_name: str


def _rename_in_settings(data: dict, old: str, new: str) -> None:
    """Rename the `projects:` entry (mapping or list form), keeping the order."""
    entries = data.get("projects")
    if isinstance(entries, dict):
        data["projects"] = {(new if k == old else k): v for k, v in entries.items()}
        return
    for i, item in enumerate(entries or []):
        if item == old:
            entries[i] = new
        elif isinstance(item, dict) and (item.get("name") == old or item.get("uuid") == old):
            item["name" if "name" in item else "uuid"] = new
        elif isinstance(item, dict) and list(item) == [old]:
            entries[i] = {new: item[old]}


@router.post("/projects/{name}/rename", dependencies=guarded())
def rename_project(name: str, body: RenameIn, request: Request):
    import sqlalchemy as sa

    from blockyard.db.columns import UNFINISHED_STATUSES
    from blockyard.db.schema import metadata as db_metadata
    from blockyard.db.schema import pipeline_runs
    from blockyard.project import Workspace
    from blockyard.project.yaml_io import read_mapping, write_yaml
    from blockyard.server.deps import check_name, get_project
    from blockyard.server.errors import Conflict, Unprocessable

    st = state(request)
    new = body.new_name.strip()
    check_name(new, "new project name")
    with st.edit_lock:
        ws = st.workspace
        project = get_project(st, name)
        if not ws.multi_project:
            raise Unprocessable(f"{ws.name!r} is a single-project workspace: its project cannot be renamed here")
        if new == name:
            raise Unprocessable("the new name is the current name")
        if new in ws.project_names():
            raise Conflict(f"a project named {new!r} already exists")
        # The folder follows the name when it is the project's default folder (<root>/<name>);
        # a project registered with another folder keeps its folder.
        move = project.path == ws.root / name
        target = ws.root / new if move else project.path
        if move and (target.exists() or target.is_symlink()):
            raise Conflict(f"the folder {new!r} already exists in the workspace")
        settings_doc = read_mapping(ws.settings_path, "workspace settings").data
        tables = [t for t in db_metadata.sorted_tables if "project" in t.c]
        with st.write_lock(), st.db.engine.begin() as conn:
            active = conn.execute(sa.select(sa.func.count()).select_from(pipeline_runs).where(
                pipeline_runs.c.project == name, pipeline_runs.c.status.in_(UNFINISHED_STATUSES))).scalar()
            if active:
                raise Conflict(f"project {name!r} has {active} unfinished run(s): wait for them or cancel them, then rename")
            renamed = {}
            try:
                for t in tables:
                    renamed[t.name] = conn.execute(t.update().where(t.c.project == name).values(project=new)).rowcount
            except sa.exc.IntegrityError as exc:
                raise Conflict(f"rows recorded under {new!r} already exist ({exc.orig}); cannot merge the histories") from None
            # files last, inside the transaction: if they fail the database rolls back
            if move:
                shutil.move(str(project.path), str(target))
            try:
                _rename_in_settings(settings_doc, name, new)
                write_yaml(ws.settings_path, settings_doc)
            except BaseException:
                if move:
                    shutil.move(str(target), str(project.path))
                raise
        st.holder.reload(Workspace.open(ws.root))
    return {"name": new, "old_name": name, "path": st.relative(target), "rows": renamed}


# ------------------------------------------------------------------ notification settings
@router.get("/notification-config", dependencies=guarded())
def get_notification_config(project: str, request: Request):
    from blockyard.project.yaml_io import read_mapping
    from blockyard.server.deps import get_project

    st = state(request)
    proj = get_project(st, project)
    data = read_mapping(proj.metadata_path, "project metadata", missing_ok=True).data
    conf = data.get("notification_config") or {}
    if not isinstance(conf, dict):
        conf = {}
    return {"project": project, "file": st.relative(proj.metadata_path), "alert_on": conf.get("alert_on"),
            "channels": {k: conf.get(k) for k in FORM_FIELDS}, "fields": FORM_FIELDS,
            "other_keys": [k for k in conf if k != "alert_on" and k not in FORM_FIELDS]}


class NotificationForm(BaseModel):
    project: str
    alert_on: Optional[list[str]] = None
    channels: dict[str, dict[str, str]] = {}


def _shown(value: Any) -> str:
    """A YAML value as the form shows it (lists comma-separated)."""
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _parsed(field: str, text: str) -> Any:
    if "{{" in text:  # a template (env var, secret) stays a string
        return text
    if field == "smtp_port" and text.isdigit():
        return int(text)
    if field == "to_emails":
        return [p.strip() for p in text.split(",") if p.strip()]
    return text


@router.put("/notification-config", dependencies=guarded())
def put_notification_config(body: NotificationForm, request: Request):
    from blockyard.notify.config import ALERT_ON
    from blockyard.project.yaml_io import read_mapping
    from blockyard.server.deps import get_project
    from blockyard.server.errors import Unprocessable

    st = state(request)
    with st.edit_lock:
        proj = get_project(st, body.project)
        where = st.relative(proj.metadata_path)
        data = read_mapping(proj.metadata_path, "project metadata", missing_ok=True).data
        conf = data.get("notification_config")
        if conf is not None and not isinstance(conf, dict):
            raise Unprocessable(f"{where}: notification_config must be a mapping; fix the file first")
        conf = dict(conf or {})
        if body.alert_on is not None:
            bad = [a for a in body.alert_on if a not in ALERT_ON]
            if bad:
                raise Unprocessable(f"alert_on: unknown event(s) {bad}; choose from {', '.join(ALERT_ON)}")
            conf["alert_on"] = list(body.alert_on)
        for key, values in body.channels.items():
            if key not in FORM_FIELDS:
                raise Unprocessable(f"unknown channel {key!r}; the form edits {', '.join(FORM_FIELDS)}")
            unknown = [f for f in values if f not in FORM_FIELDS[key]]
            if unknown:
                raise Unprocessable(f"{key}: unknown field(s) {unknown}")
            old = conf.get(key)
            if isinstance(old, list):
                raise Unprocessable(f"{where}: {key} is a list of {len(old)} channels; edit it in the file")
            section = dict(old or {})
            for field, text in values.items():
                text = text.strip()
                if not text:
                    section.pop(field, None)
                elif text != _shown(section.get(field)):  # unchanged values (secrets) stay as written
                    section[field] = _parsed(field, text)
            if section:
                conf[key] = section
            else:
                conf.pop(key, None)
        proj.set_metadata({"notification_config": conf})
    return get_notification_config(body.project, request)
