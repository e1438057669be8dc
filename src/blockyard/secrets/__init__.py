"""Encrypted secrets in the Blockyard database.

```python
from blockyard.secrets import SecretStore
store = SecretStore(db, data_dir=workspace.data_dir)   # or SecretStore(db, key=...)
store.set("smtp_password", "...", project=None)        # project=None: a global secret
store.get("smtp_password", project="unit_1")           # project scope first, then global
store.delete("smtp_password"); store.list_names(project=None)
```

Values are encrypted with Fernet (AES-128-CBC + HMAC-SHA256) before they reach the
database; the `secrets` table only ever holds ciphertext. The key is, in order:
the `key` argument, the environment variable BLOCKYARD_SECRET_KEY, or the key file
`<data dir>/secret.key`, created (mode 0600) the first time a secret is written.
Lose that key and the stored secrets cannot be read any more: back it up, or set
BLOCKYARD_SECRET_KEY from your own secret manager. BLOCKYARD_SECRET_KEY may hold
several comma-separated keys: the first encrypts, all of them are tried to decrypt
(key rotation; `SecretStore.rekey()` re-encrypts every row with the first key).

Importing this module registers a provider with `blockyard.compat.secrets`, so Mage's
`get_secret_value(name)` finds database secrets too, after the environment variable
and the `<data dir>/secrets/<name>` file.

Secret values never appear in reprs, log lines or error messages; `redact()` removes
known values from text that leaves the process (alert messages).

Modules: keys (keyring, key file, errors), store (SecretStore), provider
(`get_secret_value` and `resolve_secret`), redaction (`redact`).
"""
from __future__ import annotations

from blockyard.compat.secrets import SecretNotFound
from blockyard.secrets.keys import (
    ENV_SECRET_KEY,
    KEY_FILE_NAME,
    SecretDecryptError,
    SecretError,
    SecretKeyError,
    generate_key,
)
from blockyard.secrets.provider import install_provider, project_scope, resolve_secret, store_scope
from blockyard.secrets.redaction import MIN_REDACT_LENGTH, REDACTED, redact
from blockyard.secrets.store import SecretStore

__all__ = [
    "ENV_SECRET_KEY",
    "KEY_FILE_NAME",
    "SecretError",
    "SecretKeyError",
    "SecretDecryptError",
    "SecretNotFound",
    "SecretStore",
    "generate_key",
    "redact",
    "project_scope",
    "store_scope",
    "resolve_secret",
    "install_provider",
    "REDACTED",
    "MIN_REDACT_LENGTH",
]

install_provider()

