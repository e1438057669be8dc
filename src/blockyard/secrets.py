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
"""
from __future__ import annotations

import base64
import contextlib
import contextvars
import json
import logging
import os
import secrets as _pysecrets
import stat
import threading
from pathlib import Path
from typing import Any, Iterable, Iterator

from blockyard import settings
from blockyard.compat.secrets import SecretNotFound, register_secret_provider
from blockyard.errors import BlockyardError

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
]

ENV_SECRET_KEY = "BLOCKYARD_SECRET_KEY"
KEY_FILE_NAME = "secret.key"
REDACTED = "[REDACTED]"
# Values shorter than this are not redacted from free text: replacing every "a" or
# "42" in a message would destroy it while hiding nothing worth hiding.
MIN_REDACT_LENGTH = 4

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


def redact(text: Any, values: Iterable[Any]) -> str:
    """`text` with every occurrence of each value in `values` replaced by [REDACTED].

    Longer values are replaced first (so a secret containing another is fully hidden);
    values shorter than MIN_REDACT_LENGTH characters are left alone.
    """
    if text is None:
        return ""
    out = str(text)
    candidates = sorted(
        {str(v) for v in values if v is not None and len(str(v)) >= MIN_REDACT_LENGTH},
        key=len,
        reverse=True,
    )
    for value in candidates:
        if value in out:
            out = out.replace(value, REDACTED)
    return out


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


class SecretStore:
    """Encrypted secrets in the `secrets` table of a `blockyard.db.Database`.

    `key`: a Fernet key (or several, comma-separated or a list; the first encrypts);
    default BLOCKYARD_SECRET_KEY, else the key file `<data_dir>/secret.key`.
    `data_dir`: where that key file lives; default the data dir of the workspace found
    through BLOCKYARD_WORKSPACE / the current directory (see `Workspace.data_dir`).
    """

    def __init__(
        self,
        db: Any,
        key: str | bytes | Iterable[str | bytes] | None = None,
        *,
        data_dir: str | os.PathLike | None = None,
    ) -> None:
        self.db = db
        self._key_arg = key
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self._keyring: _Keyring | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ keys
    def __repr__(self) -> str:
        return f"SecretStore(db={self.db!r}, key=<{self.key_source}>)"

    def __reduce__(self):  # never pickle the key along with the store
        raise TypeError("SecretStore cannot be pickled (it holds an encryption key)")

    @property
    def data_dir(self) -> Path | None:
        """The data dir given to the store (None: found through the environment)."""
        return self._data_dir

    @property
    def key_file(self) -> Path | None:
        """`<data_dir>/secret.key`, or None when no data dir is known."""
        data_dir = self._data_dir
        if data_dir is None:
            from blockyard.compat._context import workspace_root_or_none

            root = workspace_root_or_none()
            if root is None:
                return None
            data_dir = settings.data_dir_for(root)
        return Path(data_dir) / KEY_FILE_NAME

    @property
    def key_source(self) -> str:
        """Where the key comes from, e.g. 'environment variable BLOCKYARD_SECRET_KEY'."""
        if self._key_arg is not None:
            return "key given to SecretStore"
        if os.environ.get(ENV_SECRET_KEY):
            return f"environment variable {ENV_SECRET_KEY}"
        path = self.key_file
        return f"key file {path}" if path is not None else "no key configured"

    def _load_keyring(self, *, create: bool) -> _Keyring | None:
        if self._keyring is not None:
            return self._keyring
        with self._lock:
            if self._keyring is not None:
                return self._keyring
            if self._key_arg is not None:
                source = "key given to SecretStore"
                self._keyring = _Keyring(_parse_keys(self._key_arg, source), source)
                return self._keyring
            env = os.environ.get(ENV_SECRET_KEY)
            if env:
                source = f"environment variable {ENV_SECRET_KEY}"
                self._keyring = _Keyring(_parse_keys(env, source), source)
                return self._keyring
            path = self.key_file
            if path is None:
                raise SecretKeyError(
                    f"no secret key: {ENV_SECRET_KEY} is not set and no Blockyard workspace "
                    "was found to hold a key file",
                    hint=f"set {ENV_SECRET_KEY}, BLOCKYARD_WORKSPACE, or pass data_dir= to SecretStore",
                )
            if not path.exists():
                if not create:
                    return None
                _create_key_file(path)
            source = f"key file {path}"
            try:
                mode = path.stat().st_mode
                raw = path.read_text(encoding="ascii")
            except (OSError, UnicodeDecodeError) as exc:
                raise SecretKeyError(
                    f"cannot read the secret key file {path}: {type(exc).__name__}",
                    hint=f"fix its permissions or set {ENV_SECRET_KEY}",
                ) from None
            if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
                log.warning(
                    "secret key file %s is readable by other users (mode %o); run `chmod 600 %s`",
                    path,
                    stat.S_IMODE(mode),
                    path,
                )
            self._keyring = _Keyring(_parse_keys(raw, source), source)
            return self._keyring

    # ------------------------------------------------------------- crypto
    @staticmethod
    def _plaintext(name: str, project: str | None, value: str) -> bytes:
        # Name and scope travel inside the ciphertext, so a row copied onto another
        # name (by someone with write access to the database) is detected on read.
        return json.dumps({"n": name, "p": project, "v": value}, separators=(",", ":")).encode("utf-8")

    def _encrypt(self, name: str, project: str | None, value: str) -> str:
        keyring = self._load_keyring(create=True)
        assert keyring is not None
        return keyring.primary.encrypt(self._plaintext(name, project, value)).decode("ascii")

    def _decrypt(self, name: str, project: str | None, token: str) -> str:
        from cryptography.fernet import InvalidToken

        keyring = self._load_keyring(create=False)
        if keyring is None:
            raise SecretDecryptError(
                f"secret '{name}' ({_scope(project)}) cannot be decrypted: there is no key "
                f"({ENV_SECRET_KEY} is not set and the key file {self.key_file} does not exist)",
                hint=f"set {ENV_SECRET_KEY} to the key it was written with, or restore the key file",
            )
        try:
            data = keyring.fernet.decrypt(token.encode("ascii"))
        except (InvalidToken, ValueError, TypeError):
            raise SecretDecryptError(
                f"secret '{name}' cannot be decrypted with this key ({keyring.source}); "
                f"set {ENV_SECRET_KEY} to the key it was written with",
            ) from None
        try:
            payload = json.loads(data.decode("utf-8"))
            ok = payload.get("n") == name and payload.get("p") == project and isinstance(payload.get("v"), str)
        except (ValueError, AttributeError):
            ok = False
        if not ok:
            raise SecretDecryptError(
                f"secret '{name}' ({_scope(project)}): the stored value was written for a "
                "different secret; the row has been copied or altered in the database",
                hint="set the secret again",
            )
        return payload["v"]

    # ---------------------------------------------------------------- table
    @property
    def _table(self):
        from blockyard.db.schema import secrets

        return secrets

    @staticmethod
    def _scope_clause(table, project: str | None):
        return table.c.project.is_(None) if project is None else table.c.project == project

    def set(self, name: str, value: str, project: str | None = None) -> None:
        """Create or replace secret `name` in the project's scope (None: global)."""
        import sqlalchemy as sa

        from blockyard.db.schema import utcnow

        name = _check_name(name)
        project = _check_project(project)
        if not isinstance(value, str):
            raise TypeError(f"the value of secret '{name}' must be a str, not {type(value).__name__}")
        token = self._encrypt(name, project, value)
        table = self._table
        now = utcnow()
        where = sa.and_(table.c.name == name, self._scope_clause(table, project))
        for attempt in range(3):
            try:
                with self.db.engine.begin() as conn:
                    updated = conn.execute(
                        table.update().where(where).values(ciphertext=token, updated_at=now)
                    ).rowcount
                    if not updated:
                        conn.execute(
                            table.insert().values(
                                name=name, project=project, ciphertext=token, created_at=now, updated_at=now
                            )
                        )
                return
            except sa.exc.IntegrityError:
                # A concurrent writer inserted the same name first: update it instead.
                if attempt == 2:
                    raise SecretError(f"could not store secret '{name}' ({_scope(project)})") from None

    def _fetch(self, name: str, project: str | None):
        import sqlalchemy as sa

        table = self._table
        query = sa.select(table.c.ciphertext).where(table.c.name == name, self._scope_clause(table, project))
        with self.db.engine.connect() as conn:
            return conn.execute(query).scalar()

    def lookup(self, name: str, project: str | None = None) -> str | None:
        """Like `get`, but None when the secret does not exist (wrong key still raises)."""
        name = _check_name(name)
        project = _check_project(project)
        scopes = [project, None] if project is not None else [None]
        for scope in scopes:
            token = self._fetch(name, scope)
            if token is not None:
                return self._decrypt(name, scope, token)
        return None

    def get(self, name: str, project: str | None = None) -> str:
        """The value of `name`: the project's own secret if it has one, else the global one.
        Raises SecretNotFound (a KeyError) when neither exists."""
        value = self.lookup(name, project)
        if value is None:
            where = [f"database secrets of project '{project}'"] if project else []
            where.append("global database secrets")
            raise SecretNotFound(name, where)
        return value

    def exists(self, name: str, project: str | None = None) -> bool:
        """Whether `name` exists in exactly this scope (no fallback to global)."""
        return self._fetch(_check_name(name), _check_project(project)) is not None

    def delete(self, name: str, project: str | None = None) -> bool:
        """Delete `name` from exactly this scope. True if it existed."""
        import sqlalchemy as sa

        name = _check_name(name)
        project = _check_project(project)
        table = self._table
        with self.db.engine.begin() as conn:
            result = conn.execute(
                table.delete().where(sa.and_(table.c.name == name, self._scope_clause(table, project)))
            )
        return bool(result.rowcount)

    def list_names(self, project: str | None = None) -> list[str]:
        """Sorted names of the secrets in exactly this scope (None: global). Never values."""
        import sqlalchemy as sa

        project = _check_project(project)
        table = self._table
        query = sa.select(table.c.name).where(self._scope_clause(table, project)).order_by(table.c.name)
        with self.db.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    def entries(self, project: str | None = None, *, all_scopes: bool = False) -> list[dict]:
        """Metadata of the secrets in a scope (or every scope): name, project, created_at,
        updated_at. For listings and APIs; it never contains values or ciphertext."""
        import sqlalchemy as sa

        table = self._table
        query = sa.select(table.c.name, table.c.project, table.c.created_at, table.c.updated_at)
        if not all_scopes:
            query = query.where(self._scope_clause(table, _check_project(project)))
        query = query.order_by(table.c.project.is_not(None), table.c.project, table.c.name)
        with self.db.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def values_for_redaction(self, project: str | None = None) -> list[str]:
        """Every value visible from `project` (its own and the global ones), for `redact()`.
        Rows that cannot be decrypted are skipped."""
        import sqlalchemy as sa

        table = self._table
        scopes = [table.c.project.is_(None)]
        if project is not None:
            scopes.append(table.c.project == project)
        query = sa.select(table.c.name, table.c.project, table.c.ciphertext).where(sa.or_(*scopes))
        try:
            with self.db.engine.connect() as conn:
                rows = conn.execute(query).all()
        except sa.exc.DBAPIError:
            return []
        values = []
        for name, scope, token in rows:
            try:
                values.append(self._decrypt(name, scope, token))
            except SecretError:
                continue
        return values

    def rekey(self, new_key: str | bytes) -> int:
        """Re-encrypt every secret with `new_key` (decrypting with the current key).
        Returns how many rows were rewritten; afterwards this store uses `new_key`."""
        import sqlalchemy as sa

        from blockyard.db.schema import utcnow

        source = "new key given to rekey()"
        new_ring = _Keyring(_parse_keys(new_key, source)[:1], source)
        table = self._table
        with self.db.engine.begin() as conn:
            rows = conn.execute(sa.select(table.c.id, table.c.name, table.c.project, table.c.ciphertext)).all()
            plain = [(row_id, name, project, self._decrypt(name, project, token)) for row_id, name, project, token in rows]
            now = utcnow()
            for row_id, name, project, value in plain:
                token = new_ring.primary.encrypt(self._plaintext(name, project, value)).decode("ascii")
                conn.execute(table.update().where(table.c.id == row_id).values(ciphertext=token, updated_at=now))
        with self._lock:
            self._key_arg = new_key
            self._keyring = new_ring
        return len(plain)


# ------------------------------------------------------------ get_secret_value provider
# Block code calls Mage's `get_secret_value(name)`; blockyard.compat.secrets tries its
# providers in order: environment variable, `<data dir>/secrets/<name>` file, then this
# one (database secrets: the current project's scope first, then global).

_UNSET: Any = object()
_current_project: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "blockyard_secret_project", default=_UNSET
)
_current_store: contextvars.ContextVar["SecretStore | None"] = contextvars.ContextVar(
    "blockyard_secret_store", default=None
)
_default_dbs: dict[str, Any] = {}
_default_lock = threading.Lock()


@contextlib.contextmanager
def project_scope(project: str | None) -> Iterator[None]:
    """Within the block, `get_secret_value` looks in `project`'s secrets before the global
    ones (None: only the global ones). Outside any scope, the project is the workspace's
    only project, if it has exactly one."""
    token = _current_project.set(project)
    try:
        yield
    finally:
        _current_project.reset(token)


@contextlib.contextmanager
def store_scope(store: "SecretStore | None") -> Iterator[None]:
    """Within the block, `get_secret_value` reads database secrets from `store`
    (instead of the store of the workspace found through the environment)."""
    token = _current_store.set(store)
    try:
        yield
    finally:
        _current_store.reset(token)


def _default_store() -> SecretStore | None:
    """The store of the workspace found through the environment, if its database exists."""
    from blockyard.compat._context import workspace_root_or_none

    root = workspace_root_or_none()
    if root is None:
        return None
    data_dir = settings.data_dir_for(root)
    url = settings.database_url_for(data_dir)
    with _default_lock:
        db = _default_dbs.get(url)
        if db is None:
            from blockyard.db.database import Database, normalize_url

            parsed = normalize_url(url)
            if parsed.get_backend_name() == "sqlite":
                database = parsed.database
                if not database or database == ":memory:" or not Path(database).expanduser().exists():
                    return None  # no database yet, so no secrets; do not create one
            db = Database(url)
            _default_dbs[url] = db
    return SecretStore(db, data_dir=data_dir)


def _current_project_name() -> str | None:
    project = _current_project.get()
    if project is not _UNSET:
        return project
    from blockyard import runtime

    ctx = runtime.get()
    if ctx is not None:  # inside a block: its own project
        return ctx.project
    try:
        from blockyard.compat._context import discover_workspace

        ws = discover_workspace()
        names = ws.project_names()
        return names[0] if len(names) == 1 else None
    except Exception:
        return None


def _from_database(name: str) -> str | None:
    import sqlalchemy as sa

    store = _current_store.get()
    if store is None:
        try:
            store = _default_store()
        except Exception as exc:  # a broken workspace must not hide env/file secrets
            log.debug("database secrets unavailable: %s", type(exc).__name__)
            return None
    if store is None:
        return None
    try:
        return store.lookup(name, _current_project_name())
    except sa.exc.DBAPIError:
        # e.g. the database predates the secrets table (not migrated yet)
        return None


def _database_where(name: str) -> str:
    project = _current_project_name()
    scope = f"project '{project}', then global" if project else "global"
    return f"Blockyard database secrets ({scope})"


_from_database.where = _database_where  # type: ignore[attr-defined]


def install_provider() -> None:
    """Register database secrets with `get_secret_value` (after env var and file). Idempotent."""
    register_secret_provider(_from_database)


def resolve_secret(name: str, project: str | None = None, store: SecretStore | None = None) -> str:
    """What `get_secret_value(name)` returns from within `project`, reading database secrets
    from `store` (default: the environment's workspace). Raises SecretNotFound.

    When `store` knows its data dir (`SecretStore(db, data_dir=...)`), the secrets file is
    looked for in that workspace (`<data_dir>/secrets/<name>`) rather than in the one found
    through BLOCKYARD_WORKSPACE / the current directory; the order stays environment
    variable, file, database, then any other registered provider.
    """
    from blockyard.compat.secrets import get_secret_value

    install_provider()
    data_dir = store.data_dir if store is not None else None
    with project_scope(project), store_scope(store):
        if data_dir is None:
            return get_secret_value(name)
        value = _resolve_in(data_dir, name)
        if value is not None:
            from blockyard import masking

            masking.remember(value)
            return value
        try:
            return get_secret_value(name)  # providers registered by others
        except SecretNotFound as exc:
            path = data_dir / "secrets" / name
            ours = ("environment variable", "file ", "secrets file", "Blockyard database secrets")
            others = [w for w in exc.looked_in if not w.startswith(ours)]
            raise SecretNotFound(
                name, [f"environment variable {name}", f"file {path}", _database_where(name), *others]
            ) from None


def _resolve_in(data_dir: Path, name: str) -> str | None:
    """Environment variable, then `<data_dir>/secrets/<name>`, then database secrets."""
    _check_name(name)
    value = os.environ.get(name)
    if value is not None:
        return value
    path = data_dir / "secrets" / name
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        pass
    return _from_database(name)


install_provider()
