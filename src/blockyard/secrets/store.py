"""SecretStore: encrypted secrets in the `secrets` table (see the package docstring)."""
from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path
from typing import Any, Iterable

from blockyard import settings
from blockyard.compat.secrets import SecretNotFound
from blockyard.secrets.keys import (
    ENV_SECRET_KEY,
    KEY_FILE_NAME,
    SecretDecryptError,
    SecretError,
    SecretKeyError,
    _check_name,
    _check_project,
    _create_key_file,
    _Keyring,
    _parse_keys,
    _scope,
    log,
)


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
