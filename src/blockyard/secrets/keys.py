"""Secret keys: the Fernet keyring, parsing BLOCKYARD_SECRET_KEY, the key file; name checks and errors."""
from __future__ import annotations

import base64
import contextlib
import logging
import os
import secrets as _pysecrets
from pathlib import Path
from typing import Any, Iterable

from blockyard.errors import BlockyardError

ENV_SECRET_KEY = "BLOCKYARD_SECRET_KEY"
KEY_FILE_NAME = "secret.key"

log = logging.getLogger("blockyard.secrets")


class SecretError(BlockyardError):
    """A secret could not be stored or read."""


class SecretKeyError(SecretError):
    """No usable encryption key (missing, malformed or unreadable key)."""


class SecretDecryptError(SecretError):
    """A stored secret cannot be decrypted with the current key."""


def generate_key() -> str:
    """A new random Fernet key (url-safe base64 text), e.g. for BLOCKYARD_SECRET_KEY."""
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode("ascii")


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError("secret name must be a non-empty string")
    if len(name) > 255:
        raise ValueError(f"secret name is too long ({len(name)} characters; at most 255)")
    if any(c in name for c in "/\\\0") or name in (".", "..") or any(ord(c) < 32 for c in name):
        raise ValueError(f"secret name {name!r} must not contain path separators or control characters")
    return name


def _check_project(project: Any) -> str | None:
    if project is None:
        return None
    if not isinstance(project, str) or not project.strip():
        raise ValueError("project must be a non-empty string or None (global)")
    return project


def _scope(project: str | None) -> str:
    return f"project '{project}'" if project else "global scope"


class _Keyring:
    """The Fernet keys in use and where they came from (for messages; never the key)."""

    def __init__(self, keys: list[bytes], source: str) -> None:
        from cryptography.fernet import Fernet, MultiFernet

        self.source = source
        self.count = len(keys)
        fernets = [Fernet(k) for k in keys]
        self.primary = fernets[0]
        self.fernet = MultiFernet(fernets)

    def __repr__(self) -> str:
        return f"<keyring from {self.source}>"


def _parse_keys(raw: str | bytes | Iterable[str | bytes], source: str) -> list[bytes]:
    if isinstance(raw, (str, bytes)):
        text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else raw
        parts = [p.strip() for p in text.replace("\n", ",").split(",")]
    else:
        parts = [
            (p.decode("ascii", "replace") if isinstance(p, bytes) else str(p)).strip() for p in raw
        ]
    parts = [p for p in parts if p]
    if not parts:
        raise SecretKeyError(f"the secret key from {source} is empty", hint=_KEY_HINT)
    keys = []
    for i, part in enumerate(parts, 1):
        try:
            decoded = base64.urlsafe_b64decode(part.encode("ascii"))
        except Exception:
            decoded = b""
        if len(decoded) != 32:
            which = f"key {i} of {len(parts)}" if len(parts) > 1 else "the key"
            raise SecretKeyError(
                f"{which} from {source} is not a valid Fernet key (it must be 32 url-safe "
                "base64-encoded bytes, 44 characters)",
                hint=_KEY_HINT,
            )
        keys.append(part.encode("ascii"))
    return keys


_KEY_HINT = (
    "generate one with `python -c \"from cryptography.fernet import Fernet; "
    "print(Fernet.generate_key().decode())\"`"
)


def _create_key_file(path: Path) -> None:
    """Write a new key to `path` (mode 0600) atomically; a concurrent creator's key wins."""
    from cryptography.fernet import Fernet

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{_pysecrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(Fernet.generate_key() + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # fails if another process created the file first
            log.warning(
                "created a new secret key file %s (mode 0600); back it up: secrets stored "
                "with it cannot be read without it",
                path,
            )
        except FileExistsError:
            pass
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)

