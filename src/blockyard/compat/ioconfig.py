"""`mage_ai.io.config`: `ConfigFileLoader` reads one profile of an io_config.yaml.

Only the flat form is supported: `profile: {KEY: value, ...}`. String values may use
`{{ env_var('NAME') }}` and `{{ mage_secret_var('NAME') }}`; a missing variable or
secret renders as an empty string, as an unset setting would.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from enum import Enum
from pathlib import Path
from typing import Any

__all__ = ["ConfigFileLoader", "ConfigKey", "EnvironmentVariableLoader", "ProfileNotFound"]

_TEMPLATE = re.compile(
    r"\{\{\s*(env_var|mage_secret_var)\(\s*['\"]([^'\"]+)['\"]\s*\)\s*\}\}"
)


class ConfigKey(str, Enum):
    """The io_config.yaml keys of the connectors Blockyard serves (Mage's names)."""

    POSTGRES_CONNECT_TIMEOUT = "POSTGRES_CONNECT_TIMEOUT"
    POSTGRES_CONNECTION_METHOD = "POSTGRES_CONNECTION_METHOD"
    POSTGRES_DBNAME = "POSTGRES_DBNAME"
    POSTGRES_HOST = "POSTGRES_HOST"
    POSTGRES_PASSWORD = "POSTGRES_PASSWORD"
    POSTGRES_PORT = "POSTGRES_PORT"
    POSTGRES_SCHEMA = "POSTGRES_SCHEMA"
    POSTGRES_USER = "POSTGRES_USER"


class ProfileNotFound(KeyError):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _lookup(match: re.Match) -> str:
    func, name = match.group(1), match.group(2)
    if func == "env_var":
        return os.environ.get(name, "")
    from blockyard.compat.secrets import SecretNotFound, get_secret_value

    try:
        return get_secret_value(name)
    except SecretNotFound:
        return ""


def _render(value: Any) -> Any:
    if isinstance(value, str):
        return _TEMPLATE.sub(_lookup, value)
    if isinstance(value, dict):
        return {k: _render(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v) for v in value]
    return value


def _key(key: Any) -> Any:
    return getattr(key, "value", key)  # Mage passes ConfigKey enum members


def _default_path() -> Path:
    from blockyard.compat._context import workspace_root_or_none

    root = workspace_root_or_none()
    if root is None:
        raise FileNotFoundError(
            "ConfigFileLoader: no io_config.yaml path given and no Blockyard workspace found "
            "(pass the path, or set BLOCKYARD_WORKSPACE)"
        )
    return root / "io_config.yaml"


class ConfigFileLoader(Mapping):
    """`ConfigFileLoader(path, profile)`; the profile's settings are in `.config`."""

    def __init__(
        self,
        filepath: str | os.PathLike | None = None,
        profile: str = "default",
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.profile = profile
        if config is not None:
            self.filepath = None
            self.config: dict[str, Any] = dict(config)
            return
        import yaml

        path = Path(filepath).expanduser() if filepath else _default_path()
        self.filepath = path
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise FileNotFoundError(f"io config file not found: {path}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of profiles at the top level")
        if profile not in data:
            names = ", ".join(str(p) for p in data) or "none"
            raise ProfileNotFound(f"{path}: no profile '{profile}' (profiles: {names})")
        section = data[profile] or {}
        if not isinstance(section, dict):
            raise ValueError(f"{path}: profile '{profile}' must be a mapping of settings")
        self.config = _render(section)

    def __getitem__(self, key: Any) -> Any:
        return self.config[_key(key)]

    def __contains__(self, key: object) -> bool:
        return _key(key) in self.config

    def get(self, key: Any, default: Any = None) -> Any:
        return self.config.get(_key(key), default)

    def __iter__(self) -> Iterator[str]:
        return iter(self.config)

    def __len__(self) -> int:
        return len(self.config)

    def __repr__(self) -> str:
        # Values are often credentials: show only the keys.
        return f"ConfigFileLoader(profile={self.profile!r}, keys={sorted(map(str, self.config))})"


class EnvironmentVariableLoader(Mapping):
    """Mage's loader that reads each setting from the environment variable of its name."""

    def __getitem__(self, key: Any) -> Any:
        return os.environ[_key(key)]

    def __contains__(self, key: object) -> bool:
        return _key(key) in os.environ

    def get(self, key: Any, default: Any = None) -> Any:
        return os.environ.get(_key(key), default)

    def __iter__(self) -> Iterator[str]:
        return iter(os.environ)

    def __len__(self) -> int:
        return len(os.environ)
