"""`mage_ai.data_preparation.shared.secrets`: `get_secret_value(name)`.

A secret is looked up through an ordered list of providers; the first that returns
a value (not None) wins. Built in: the environment variable of that name, then the
file `<data dir>/secrets/<name>` (data dir: BLOCKYARD_HOME, default
`<workspace>/.blockyard`). Other modules add sources with `register_secret_provider`.
Errors name the secret and where it was looked for, never a value.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable, Optional

__all__ = [
    "SecretNotFound",
    "get_secret_value",
    "register_secret_provider",
    "unregister_secret_provider",
    "secrets_dir",
]

# A provider takes a secret name and returns its value, or None if it has none.
SecretProvider = Callable[[str], Optional[str]]


class SecretNotFound(KeyError):
    """No provider has the secret. A KeyError, so `except KeyError` code keeps working."""

    def __init__(self, name: str, looked_in: list[str]) -> None:
        super().__init__(name)
        self.name = name
        self.looked_in = looked_in
        self.message = f"secret '{name}' not found; looked in: " + "; ".join(looked_in)

    def __str__(self) -> str:  # KeyError would repr() the argument
        return self.message


def secrets_dir() -> Path | None:
    """`<data dir>/secrets` of the current workspace, or None when there is no workspace."""
    from blockyard import settings
    from blockyard.compat._context import workspace_root_or_none

    root = workspace_root_or_none()
    return settings.data_dir_for(root) / "secrets" if root is not None else None


def _from_env(name: str) -> str | None:
    return os.environ.get(name)


_from_env.where = lambda name: f"environment variable {name}"  # type: ignore[attr-defined]


def _from_file(name: str) -> str | None:
    directory = secrets_dir()
    if directory is None:
        return None
    path = directory / name
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    return text.rstrip("\r\n")


def _file_where(name: str) -> str:
    directory = secrets_dir()
    if directory is None:
        return "secrets file (no Blockyard workspace found; set BLOCKYARD_WORKSPACE)"
    return f"file {directory / name}"


_from_file.where = _file_where  # type: ignore[attr-defined]

_lock = threading.Lock()
_providers: list[SecretProvider] = [_from_env, _from_file]


def register_secret_provider(provider: SecretProvider, *, first: bool = False) -> None:
    """Add a secret source, tried after the existing ones (before them if `first`).

    A provider may carry a `where(name) -> str` attribute describing where it looked;
    it is used in the not-found message.
    """
    with _lock:
        if provider in _providers:
            _providers.remove(provider)
        if first:
            _providers.insert(0, provider)
        else:
            _providers.append(provider)


def unregister_secret_provider(provider: SecretProvider) -> None:
    with _lock:
        if provider in _providers:
            _providers.remove(provider)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"secret name must be a non-empty string, got {name!r}")
    if "/" in name or "\\" in name or "\0" in name or name in (".", ".."):
        raise ValueError(f"secret name {name!r} must not contain path separators")


def get_secret_value(name: str) -> str:
    """The value of secret `name`; raises SecretNotFound (a KeyError) if no source has it."""
    _check_name(name)
    import blockyard.secrets  # noqa: F401  (registers the encrypted database provider)

    with _lock:
        providers = list(_providers)
    for provider in providers:
        value = provider(name)
        if value is not None:
            from blockyard import masking

            masking.remember(value)  # masked in logs, errors and tracebacks from now on
            return value
    looked_in = []
    for provider in providers:
        where = getattr(provider, "where", None)
        looked_in.append(where(name) if where else getattr(provider, "__name__", repr(provider)))
    raise SecretNotFound(name, looked_in)
