"""`{{ env_var('NAME') }}` and `{{ mage_secret_var('NAME') }}` in YAML values (Mage's syntax).

`render_template(text, project=None)` replaces each expression by the environment
variable or the secret. Secrets resolve as `get_secret_value` does (environment
variable, `<data dir>/secrets/<name>` file, then database secrets of the project and
the global ones); `secret_var` is an alias of `mage_secret_var`. Anything else between
`{{ }}` (e.g. Mage's `{{ pipeline_uuid }}` message placeholders) is left as it is.

A missing variable or secret raises TemplateError naming it and where it is
referenced (file and key); error messages never contain a value.
"""
from __future__ import annotations

import os
import re
from typing import Any

from blockyard.errors import BlockyardError

__all__ = ["TemplateError", "render_template", "render_value", "TEMPLATE_FUNCTIONS"]

TEMPLATE_FUNCTIONS = ("env_var", "mage_secret_var", "secret_var")

# {{ func('arg') }} / {{ func("arg") }}; a call of any other name is an error.
_CALL = re.compile(
    r"\{\{\s*(?P<func>[A-Za-z_][A-Za-z0-9_]*)\s*\(\s*(?:(?P<q>['\"])(?P<arg>.*?)(?P=q))?\s*\)\s*\}\}"
)


class TemplateError(BlockyardError):
    """A template expression could not be rendered (missing variable or secret, bad syntax)."""


def _where_text(where: str | None) -> str:
    return f" (referenced in {where})" if where else ""


def render_template(
    text: Any,
    project: str | None = None,
    *,
    where: str | None = None,
    store: Any = None,
    resolved: list | None = None,
) -> Any:
    """`text` with its `{{ env_var(...) }}` / `{{ mage_secret_var(...) }}` expressions replaced.

    `project`: secrets of this project are looked up before the global ones.
    `where`: a description of where `text` comes from ("<file>, key a.b.c"), for errors.
    `store`: the SecretStore for database secrets (default: the environment's workspace).
    `resolved`: if given, each substituted (kind, name, value) is appended to it, so the
    caller can redact these values from what it logs or sends.
    Non-string values are returned unchanged.
    """
    if not isinstance(text, str) or "{{" not in text:
        return text

    def substitute(match: re.Match) -> str:
        func, arg = match.group("func"), match.group("arg")
        if func not in TEMPLATE_FUNCTIONS:
            raise TemplateError(
                f"unknown template function {func}(){_where_text(where)}",
                hint="use " + ", ".join(f"{{{{ {f}('NAME') }}}}" for f in TEMPLATE_FUNCTIONS),
            )
        if not arg or not arg.strip():
            raise TemplateError(f"{func}() needs a name in quotes{_where_text(where)}")
        name = arg.strip()
        if func == "env_var":
            value = os.environ.get(name)
            if value is None:
                raise TemplateError(
                    f"environment variable {name} is not set{_where_text(where)}",
                    hint=f"export {name}=... in the environment of the Blockyard scheduler/server",
                )
            kind = "env"
        else:
            from blockyard.compat.secrets import SecretNotFound
            from blockyard.secrets import resolve_secret

            try:
                value = resolve_secret(name, project, store)
            except SecretNotFound as exc:
                raise TemplateError(
                    f"secret '{name}' not found{_where_text(where)}; looked in: " + "; ".join(exc.looked_in),
                    hint=f"add it to the Blockyard secrets (SecretStore.set) or set the environment variable {name}",
                ) from None
            except ValueError as exc:  # invalid secret name
                raise TemplateError(f"{exc}{_where_text(where)}") from None
            kind = "secret"
        if resolved is not None:
            resolved.append((kind, name, value))
        return value

    return _CALL.sub(substitute, text)


def render_value(
    value: Any,
    project: str | None = None,
    *,
    where: str | None = None,
    store: Any = None,
    resolved: list | None = None,
) -> Any:
    """`render_template` applied to every string in a nested dict/list (keys are kept).
    `where` is extended with the key path (`where.key.0.sub`) for error messages."""
    if isinstance(value, str):
        return render_template(value, project, where=where, store=store, resolved=resolved)
    if isinstance(value, dict):
        return {
            k: render_value(v, project, where=_join(where, k), store=store, resolved=resolved)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [
            render_value(v, project, where=_join(where, i), store=store, resolved=resolved)
            for i, v in enumerate(value)
        ]
    return value


def _join(where: str | None, key: Any) -> str:
    if not where:
        return f"key {key}"
    return f"{where}.{key}" if ", key " in where or where.startswith("key ") else f"{where}, key {key}"
