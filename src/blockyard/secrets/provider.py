"""The `get_secret_value` provider for database secrets, and `resolve_secret`."""
from __future__ import annotations

import contextlib
import contextvars
import os
import threading
from pathlib import Path
from typing import Any, Iterator

from blockyard import settings
from blockyard.compat.secrets import SecretNotFound, register_secret_provider
from blockyard.secrets.keys import _check_name, log
from blockyard.secrets.store import SecretStore

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
