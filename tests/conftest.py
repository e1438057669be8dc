"""Shared pytest fixtures."""
from __future__ import annotations

import os
import uuid

import pytest

# ---------------------------------------------------------------- PostgreSQL
# The server the PostgreSQL tests use; override with BLOCKYARD_TEST_PG_ADMIN_URL.
PG_ADMIN_URL = os.environ.get(
    "BLOCKYARD_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def pg_url():
    """URL of a fresh, empty PostgreSQL database for this test session (one per xdist
    worker), dropped afterwards. Skips when the server cannot be reached."""
    try:
        import sqlalchemy as sa
    except ImportError:  # pragma: no cover
        pytest.skip("sqlalchemy is not installed")
    try:
        import psycopg  # noqa: F401
    except ImportError:  # pragma: no cover
        pytest.skip("psycopg (PostgreSQL driver) is not installed")
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    name = f"blockyard_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        admin.dispose()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        pytest.skip(f"PostgreSQL server at {PG_ADMIN_URL} is unreachable: {reason}")
    url = sa.engine.make_url(PG_ADMIN_URL).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def pg_clean_url(pg_url):
    """`pg_url` with every table emptied first: the session database is shared by the
    tests of one xdist worker, and state one test leaves (an alert episode, a run)
    must not decide another's outcome."""
    import sqlalchemy as sa

    engine = sa.create_engine(pg_url)
    try:
        with engine.begin() as conn:
            names = [n for n in sa.inspect(conn).get_table_names() if n != "alembic_version"]
            if names:
                conn.exec_driver_sql("TRUNCATE " + ", ".join(f'"{n}"' for n in names) + " RESTART IDENTITY CASCADE")
    finally:
        engine.dispose()
    return pg_url
