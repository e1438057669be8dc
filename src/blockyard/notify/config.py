"""`notification_config` (Mage's format) from a pipeline's and its project's metadata.yaml.

As in Mage, the project's `notification_config` is the base and the pipeline's is merged
over it key by key (shallow): a pipeline can override `alert_on` or one channel and
inherit the rest.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blockyard.errors import ProjectError
from blockyard.notify.templating import TemplateError, render_template

__all__ = [
    "ALERT_ON",
    "DEFAULT_ALERT_ON",
    "CHANNEL_KEYS",
    "UNSUPPORTED_CHANNEL_KEYS",
    "NotificationConfig",
    "load_notification_config",
]

ALERT_ON = ("trigger_failure", "trigger_success", "trigger_passed_sla")
DEFAULT_ALERT_ON = ("trigger_failure", "trigger_passed_sla")  # Mage's default

# notification_config key -> channel kind
CHANNEL_KEYS = {
    "email_config": "email",
    "slack_config": "slack",
    "teams_config": "teams",
    "discord_config": "discord",
    "google_chat_config": "google_chat",
    "webhook_config": "webhook",
    "http_config": "webhook",
}
# Mage channels Blockyard does not send to (reported as a failed channel, not ignored).
UNSUPPORTED_CHANNEL_KEYS = ("telegram_config", "opsgenie_config", "ntfy_config")
MESSAGE_KINDS = ("failure", "success", "passed_sla")

# Keys whose values are credentials: whatever fills them (env var or secret) is
# redacted from every message and log line.
_SENSITIVE_KEY = re.compile(r"pass|secret|token|key|auth|cred|webhook|url|header", re.I)


def is_sensitive_key(path: tuple) -> bool:
    return any(isinstance(p, str) and _SENSITIVE_KEY.search(p) for p in path)


@dataclass
class ChannelSpec:
    """One configured channel, rendered (values substituted) or with the error that stopped it."""

    name: str  # "email", "slack", "webhook[1]", ...
    kind: str  # email | slack | teams | discord | google_chat | webhook | unsupported
    key: str  # notification_config key it came from
    settings: dict = field(default_factory=dict)
    error: str | None = None


@dataclass
class NotificationConfig:
    """The merged, unrendered config and which file each top-level key came from."""

    project: str
    pipeline: str | None
    raw: dict
    sources: dict[str, Path]

    @property
    def is_empty(self) -> bool:
        return not any(k in self.raw for k in (*CHANNEL_KEYS, *UNSUPPORTED_CHANNEL_KEYS))

    def where(self, key: str, *path: Any) -> str:
        source = self.sources.get(key)
        keys = ".".join(str(p) for p in ("notification_config", key, *path))
        return f"{source}, key {keys}" if source else f"key {keys}"

    # -------------------------------------------------------------- alert_on
    def alert_on(self, *, store: Any = None, resolved: list | None = None) -> list[str]:
        value = self.raw.get("alert_on")
        if value is None:
            return list(DEFAULT_ALERT_ON)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ProjectError(
                "notification_config.alert_on must be a list of "
                + ", ".join(ALERT_ON),
                file=self.sources.get("alert_on"),
            )
        out = []
        for i, item in enumerate(value):
            item = render_template(
                str(item), self.project, where=self.where("alert_on", i), store=store, resolved=resolved
            ).strip()
            out.append(item)
        return out

    # ---------------------------------------------------------------- rules
    def rules(self) -> list:
        """Blockyard's alert rules on monitoring figures (`rules:`), parsed; see
        blockyard.notify.rules. ProjectError names the file and the rule at fault."""
        from blockyard.notify.rules import parse_rules

        return parse_rules(self.raw.get("rules"), file=self.sources.get("rules"))

    # ---------------------------------------------------------- templates
    def message_template(self, kind: str, *, store: Any = None, resolved: list | None = None) -> dict:
        """`message_templates.<kind>` ({title, summary, details}, each may be missing), rendered."""
        templates = self.raw.get("message_templates")
        if not isinstance(templates, dict):
            return {}
        template = templates.get(kind)
        if not isinstance(template, dict):
            return {}
        out = {}
        for part in ("title", "summary", "details"):
            value = template.get(part)
            if value is None:
                continue
            out[part] = render_template(
                str(value),
                self.project,
                where=self.where("message_templates", kind, part),
                store=store,
                resolved=resolved,
            )
        return out

    # ------------------------------------------------------------- channels
    def channels(self, *, store: Any = None, sensitive: set | None = None) -> list[ChannelSpec]:
        """Every configured channel, in a stable order, with its settings rendered.
        A channel whose settings cannot be rendered carries the error instead."""
        specs: list[ChannelSpec] = []
        for key, kind in CHANNEL_KEYS.items():
            if key not in self.raw or self.raw[key] is None:
                continue
            value = self.raw[key]
            entries = value if isinstance(value, list) else [value]
            for i, entry in enumerate(entries):
                name = kind if len(entries) == 1 else f"{kind}[{i}]"
                if key == "http_config" and "webhook_config" in self.raw:
                    name = f"http{'' if len(entries) == 1 else f'[{i}]'}"
                path_prefix = (i,) if isinstance(value, list) else ()
                if not isinstance(entry, dict):
                    specs.append(
                        ChannelSpec(
                            name, kind, key,
                            error=f"{self.where(key, *path_prefix)} must be a mapping of settings",
                        )
                    )
                    continue
                try:
                    settings = self._render(key, entry, path_prefix, store, sensitive)
                except TemplateError as exc:
                    specs.append(ChannelSpec(name, kind, key, error=str(exc)))
                    continue
                specs.append(ChannelSpec(name, kind, key, settings=settings))
        for key in UNSUPPORTED_CHANNEL_KEYS:
            if self.raw.get(key):
                specs.append(
                    ChannelSpec(
                        key.removesuffix("_config"), "unsupported", key,
                        error=f"{key} is not supported by Blockyard (use webhook_config, "
                        "slack_config, teams_config, discord_config, google_chat_config or email_config)",
                    )
                )
        return specs

    def _render(self, key: str, value: Any, path: tuple, store: Any, sensitive: set | None) -> Any:
        if isinstance(value, dict):
            return {k: self._render(key, v, (*path, k), store, sensitive) for k, v in value.items()}
        if isinstance(value, list):
            return [self._render(key, v, (*path, i), store, sensitive) for i, v in enumerate(value)]
        if not isinstance(value, str):
            return value
        resolved: list = []
        out = render_template(value, self.project, where=self.where(key, *path), store=store, resolved=resolved)
        if sensitive is not None:
            for kind, _name, val in resolved:
                if kind == "secret" or is_sensitive_key(path):
                    sensitive.add(val)
            if is_sensitive_key(path) and out:
                sensitive.add(out)  # a literal credential in the YAML file
        return out


def _section(data: Any, path: Path | None, label: str) -> dict:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ProjectError(f"notification_config in {label} must be a mapping", file=path)
    return data


def load_notification_config(workspace: Any, project: str, pipeline: str | None = None) -> NotificationConfig:
    """The notification_config for `project` (and `pipeline`, merged over the project's).

    Raises ProjectError for an unknown project or a malformed file; a pipeline that no
    longer exists contributes nothing (its runs still alert with the project's config).
    """
    from blockyard.project.yaml_io import read_mapping

    proj = workspace.project(project)
    # Read the file each time (not the cached Project.metadata): a long-running
    # scheduler picks up edits to the alert settings without a restart.
    metadata = read_mapping(proj.metadata_path, "project metadata", missing_ok=True).data
    base = _section(metadata.get("notification_config"), proj.metadata_path, "the project metadata.yaml")
    raw: dict = dict(base)
    sources: dict[str, Path] = {k: proj.metadata_path for k in base}
    if pipeline:
        try:
            spec = proj.pipeline(pipeline)
        except ProjectError:
            spec = None
        if spec is not None:
            over = _section(spec.raw.get("notification_config"), spec.path, "the pipeline metadata.yaml")
            for k, v in over.items():
                raw[k] = v
                sources[k] = spec.path
    return NotificationConfig(project=project, pipeline=pipeline, raw=raw, sources=sources)
