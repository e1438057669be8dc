"""`mage_ai.io.postgres`: `Postgres`, Mage's PostgreSQL loader/exporter.

    with Postgres.with_config(ConfigFileLoader(path, "default")) as loader:
        df = loader.load("SELECT * FROM trips")
        loader.export(df, "public", "trips_copy", index=False, if_exists="replace")

Queries run on a plain psycopg cursor (no bind-parameter parsing, so `%` and `:`
in SQL stay literal); exports go through pandas `to_sql` on a SQLAlchemy engine, with
Mage's write policies (`fail`, `append`, `replace`; `drop_table_on_replace`) and
upserts (`unique_conflict_method` UPDATE or IGNORE on `unique_constraints`).
"""
from __future__ import annotations

import re
from typing import Any, Iterable

__all__ = ["Postgres", "ExportWritePolicy", "QUERY_ROW_LIMIT"]

QUERY_ROW_LIMIT = 10_000_000
_READS = re.compile(r"^\s*(select|with)\b", re.IGNORECASE)


class ExportWritePolicy:
    APPEND = "append"
    FAIL = "fail"
    REPLACE = "replace"


def _policy(value: Any) -> str:
    policy = str(getattr(value, "value", value) or ExportWritePolicy.REPLACE).lower()
    if policy not in (ExportWritePolicy.APPEND, ExportWritePolicy.FAIL, ExportWritePolicy.REPLACE):
        raise ValueError(f"Postgres.export: if_exists must be 'append', 'fail' or 'replace', not {value!r}")
    return policy


class Postgres:
    """A connection to one PostgreSQL database (opened lazily, closed by `with`)."""

    def __init__(
        self,
        dbname: str,
        user: str,
        password: str | None = None,
        host: str | None = None,
        port: int | str | None = None,
        schema: str | None = None,
        connection_method: str = "direct",
        connect_timeout: int | str | None = None,
        verbose: bool = True,
        **_: Any,
    ) -> None:
        method = str(getattr(connection_method, "value", connection_method) or "direct").lower()
        if method != "direct":
            raise ValueError(
                f"Postgres: connection method {connection_method!r} is not supported by Blockyard "
                "(only 'direct'; open the SSH tunnel outside and connect to its local port)"
            )
        if not dbname:
            raise ValueError("Postgres: no database name (POSTGRES_DBNAME is empty)")
        self.dbname = str(dbname)
        self.user = str(user) if user else None
        self.password = str(password) if password else None
        self.host = str(host) if host else "localhost"
        self.port = int(port) if port not in (None, "") else 5432
        self.schema = str(schema) if schema else "public"
        self.connect_timeout = int(connect_timeout) if connect_timeout not in (None, "") else 10
        self.verbose = verbose
        self._engine: Any = None

    # ------------------------------------------------------------ construction
    @classmethod
    def with_config(cls, config: Any, **kwargs: Any) -> "Postgres":
        """From a `ConfigFileLoader` (or any mapping) with Mage's POSTGRES_* keys."""

        def get(key: str, default: Any = None) -> Any:
            value = config.get(key) if hasattr(config, "get") else None
            return default if value in (None, "") else value

        missing = [k for k in ("POSTGRES_DBNAME",) if get(k) is None]
        if missing:
            where = getattr(config, "filepath", None)
            profile = getattr(config, "profile", None)
            place = f" in {where} (profile '{profile}')" if where else ""
            raise ValueError(f"Postgres.with_config: {', '.join(missing)} is not set{place}")
        return cls(
            dbname=get("POSTGRES_DBNAME"),
            user=get("POSTGRES_USER"),
            password=get("POSTGRES_PASSWORD"),
            host=get("POSTGRES_HOST"),
            port=get("POSTGRES_PORT"),
            schema=get("POSTGRES_SCHEMA"),
            connection_method=get("POSTGRES_CONNECTION_METHOD", "direct"),
            connect_timeout=get("POSTGRES_CONNECT_TIMEOUT"),
            **kwargs,
        )

    def __enter__(self) -> "Postgres":
        self.open()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Postgres(dbname={self.dbname!r}, host={self.host!r}, port={self.port}, user={self.user!r})"

    # ------------------------------------------------------------ connection
    @property
    def engine(self) -> Any:
        if self._engine is None:
            import sqlalchemy as sa

            url = sa.engine.URL.create(
                "postgresql+psycopg",
                username=self.user,
                password=self.password,
                host=self.host,
                port=self.port,
                database=self.dbname,
            )
            self._engine = sa.create_engine(
                url, connect_args={"connect_timeout": self.connect_timeout}, pool_pre_ping=True
            )
        return self._engine

    def open(self) -> None:
        with self.engine.connect():
            pass  # fail early, at `with`, on a wrong host or database

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def _say(self, message: str, verbose: bool | None = None) -> None:
        if self.verbose if verbose is None else verbose:
            print(message)

    # ------------------------------------------------------------ reading
    def _cursor_run(self, sql: str, fetch: bool) -> tuple[list[str], list[tuple]]:
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute(sql)  # no parameters: the SQL text is sent as written
            columns = [d[0] for d in cursor.description] if cursor.description else []
            rows = cursor.fetchall() if fetch and cursor.description else []
            raw.commit()
            return columns, rows
        except BaseException:
            raw.rollback()
            raise
        finally:
            raw.close()

    def load(
        self,
        query_string: str,
        limit: int | None = QUERY_ROW_LIMIT,
        display_query: str | None = None,
        verbose: bool | None = None,
        **_: Any,
    ):
        """Run a query and return its rows as a DataFrame (at most `limit` rows)."""
        import pandas as pd

        sql = query_string.strip().rstrip(";")
        if limit is not None and _READS.match(sql):
            sql = f"SELECT * FROM ({sql}) AS blockyard_subquery LIMIT {int(limit)}"
        self._say(f"Loading data with query: {display_query or query_string}", verbose)
        columns, rows = self._cursor_run(sql, fetch=True)
        return pd.DataFrame.from_records(rows, columns=columns)

    def execute(self, query_string: str, **_: Any) -> None:
        """Run statements that return nothing (DDL, DELETE ...), committed."""
        self._cursor_run(query_string, fetch=False)

    def table_exists(self, schema_name: str | None, table_name: str) -> bool:
        import sqlalchemy as sa

        return sa.inspect(self.engine).has_table(table_name, schema=schema_name or self.schema)

    # ------------------------------------------------------------ writing
    def _quote(self, name: str) -> str:
        return self.engine.dialect.identifier_preparer.quote(name)

    def export(
        self,
        df: Any,
        schema_name: str | None = None,
        table_name: str | None = None,
        index: bool = False,
        if_exists: Any = ExportWritePolicy.REPLACE,
        drop_table_on_replace: bool = False,
        unique_conflict_method: str | None = None,
        unique_constraints: Iterable[str] | None = None,
        query_string: str | None = None,
        verbose: bool | None = None,
        **_: Any,
    ) -> None:
        """Write `df` (or the rows of `query_string`) to `schema_name.table_name`.

        if_exists: 'replace' (default) empties the table first (drops it with
        `drop_table_on_replace=True`), 'append' adds rows, 'fail' refuses an existing
        table. `unique_conflict_method` 'UPDATE' or 'IGNORE' upserts on
        `unique_constraints` (a unique index on those columns is created if missing)."""
        import pandas as pd
        import sqlalchemy as sa

        if not table_name:
            raise ValueError("Postgres.export: table_name is required")
        schema = schema_name or self.schema
        policy = _policy(if_exists)
        if query_string is not None:
            df = self.load(query_string, limit=None, verbose=False)
        if not isinstance(df, pd.DataFrame):
            df = pd.DataFrame(df)
        method = str(unique_conflict_method or "").upper() or None
        keys = list(unique_constraints or [])
        if method not in (None, "UPDATE", "IGNORE"):
            raise ValueError("Postgres.export: unique_conflict_method must be 'UPDATE' or 'IGNORE'")
        if method and not keys:
            raise ValueError("Postgres.export: unique_conflict_method needs unique_constraints (column names)")
        missing = [k for k in keys if k not in df.columns]
        if missing:
            raise ValueError(f"Postgres.export: unique_constraints {missing} are not columns of the data frame")
        full = f"{self._quote(schema)}.{self._quote(table_name)}"
        with self.engine.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {self._quote(schema)}"))
            exists = sa.inspect(conn).has_table(table_name, schema=schema)
            if exists and policy == ExportWritePolicy.FAIL:
                raise ValueError(f"Postgres.export: table {schema}.{table_name} already exists (if_exists='fail')")
            if exists and policy == ExportWritePolicy.REPLACE:
                if drop_table_on_replace:
                    conn.execute(sa.text(f"DROP TABLE {full}"))
                    exists = False
                else:
                    conn.execute(sa.text(f"DELETE FROM {full}"))
            if not exists:  # create the table from the frame's dtypes, empty
                df.head(0).to_sql(table_name, conn, schema=schema, index=index, if_exists="append")
            if keys:
                cols = ", ".join(self._quote(k) for k in keys)
                name = self._quote(f"{table_name}_{'_'.join(keys)}_unique"[:63])
                conn.execute(sa.text(f"CREATE UNIQUE INDEX IF NOT EXISTS {name} ON {full} ({cols})"))
            df.to_sql(
                table_name, conn, schema=schema, index=index, if_exists="append",
                method=_upsert(method, keys) if method else "multi", chunksize=10_000,
            )
        self._say(f"Exported {len(df)} rows to {schema}.{table_name}", verbose)


def _upsert(method: str, keys: list[str]):
    """A pandas `to_sql` method doing INSERT ... ON CONFLICT (keys) DO UPDATE/NOTHING."""

    def insert(table: Any, conn: Any, columns: list[str], rows: Iterable[tuple]) -> int:
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        values = [dict(zip(columns, row)) for row in rows]
        statement = pg_insert(table.table).values(values)
        if method == "IGNORE":
            statement = statement.on_conflict_do_nothing(index_elements=keys)
        else:
            updates = {c: statement.excluded[c] for c in columns if c not in keys}
            statement = (
                statement.on_conflict_do_update(index_elements=keys, set_=updates)
                if updates
                else statement.on_conflict_do_nothing(index_elements=keys)
            )
        return conn.execute(statement).rowcount

    return insert
