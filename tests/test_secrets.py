"""blockyard.secrets: encrypted secrets on SQLite and PostgreSQL, keys, get_secret_value, redaction."""
from __future__ import annotations

import os
import pickle
import stat

import pytest
import sqlalchemy as sa
import yaml
from cryptography.fernet import Fernet

from blockyard.compat.secrets import SecretNotFound, get_secret_value
from blockyard.db import Database
from blockyard.db.schema import secrets as secrets_table
from blockyard.secrets import (
    ENV_SECRET_KEY,
    REDACTED,
    SecretDecryptError,
    SecretKeyError,
    SecretStore,
    generate_key,
    project_scope,
    redact,
    resolve_secret,
)


def _reset_pg(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
    finally:
        engine.dispose()


@pytest.fixture(autouse=True)
def _no_key_env(monkeypatch):
    monkeypatch.delenv(ENV_SECRET_KEY, raising=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'blockyard.db'}"
    else:
        url = request.getfixturevalue("pg_url")
        _reset_pg(url)
    database = Database(url)
    database.migrate()
    yield database
    database.close()


@pytest.fixture
def sqlite_db(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'blockyard.db'}")
    database.migrate()
    yield database
    database.close()


def _raw_rows(db) -> list[dict]:
    with db.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(secrets_table))]


# ------------------------------------------------------------------ round trip
def test_migration_creates_secrets_table(db):
    inspector = sa.inspect(db.engine)
    assert "secrets" in inspector.get_table_names()
    columns = {c["name"] for c in inspector.get_columns("secrets")}
    assert columns == {"id", "name", "project", "ciphertext", "created_at", "updated_at"}


def test_round_trip_scopes_and_updates(db, tmp_path):
    store = SecretStore(db, key=generate_key())
    store.set("api_token", "global-value-123")
    store.set("api_token", "project-value-456", project="unit_1")
    store.set("only_global", "og-value-789")

    assert store.get("api_token") == "global-value-123"
    assert store.get("api_token", project="unit_1") == "project-value-456"  # project scope first
    assert store.get("api_token", project="unit_2") == "global-value-123"  # falls back to global
    assert store.get("only_global", project="unit_1") == "og-value-789"

    before = {(r["name"], r["project"]): r for r in _raw_rows(db)}
    store.set("api_token", "global-value-NEW")
    after = {(r["name"], r["project"]): r for r in _raw_rows(db)}
    assert store.get("api_token") == "global-value-NEW"
    assert len(after) == 3  # replaced, not added
    row_b, row_a = before[("api_token", None)], after[("api_token", None)]
    assert row_a["created_at"] == row_b["created_at"]
    assert row_a["updated_at"] > row_b["updated_at"]

    assert store.exists("api_token", project="unit_1")
    assert store.delete("api_token", project="unit_1") is True
    assert store.delete("api_token", project="unit_1") is False
    assert not store.exists("api_token", project="unit_1")
    assert store.get("api_token", project="unit_1") == "global-value-NEW"
    assert store.delete("api_token") is True
    with pytest.raises(SecretNotFound) as info:
        store.get("api_token", project="unit_1")
    assert isinstance(info.value, KeyError)
    assert "api_token" in str(info.value) and "unit_1" in str(info.value)


def test_database_holds_ciphertext_only(db):
    key = generate_key()
    store = SecretStore(db, key=key)
    store.set("db_password", "s3cr3t-pa55word")
    (row,) = _raw_rows(db)
    assert "s3cr3t-pa55word" not in str(row)
    assert "s3cr3t" not in row["ciphertext"]
    # It is a real Fernet token under that key.
    assert b"s3cr3t-pa55word" in Fernet(key.encode()).decrypt(row["ciphertext"].encode())


def test_names_are_unique_per_scope_in_the_database(db):
    store = SecretStore(db, key=generate_key())
    store.set("dup", "a-value")
    store.set("dup", "b-value", project="p")
    now = "2024-01-01 00:00:00"
    for project in (None, "p"):
        with pytest.raises(sa.exc.IntegrityError):
            with db.engine.begin() as conn:
                conn.execute(
                    secrets_table.insert().values(
                        name="dup", project=project, ciphertext="x", created_at=now, updated_at=now
                    )
                )


def test_list_names_and_entries_never_return_values(db):
    store = SecretStore(db, key=generate_key())
    store.set("b_secret", "value-of-b-000")
    store.set("a_secret", "value-of-a-111")
    store.set("p_secret", "value-of-p-222", project="proj")
    assert store.list_names() == ["a_secret", "b_secret"]
    assert store.list_names(project="proj") == ["p_secret"]
    entries = store.entries(all_scopes=True)
    assert [(e["name"], e["project"]) for e in entries] == [
        ("a_secret", None),
        ("b_secret", None),
        ("p_secret", "proj"),
    ]
    assert set(entries[0]) == {"name", "project", "created_at", "updated_at"}
    text = repr(entries) + repr(store.list_names()) + repr(store.list_names("proj"))
    for value in ("value-of-a-111", "value-of-b-000", "value-of-p-222"):
        assert value not in text


# ------------------------------------------------------------------------ keys
def test_wrong_key_error_is_clear_and_leaks_nothing(db):
    right, wrong = generate_key(), generate_key()
    SecretStore(db, key=right).set("smtp_password", "hunter2-very-secret")
    with pytest.raises(SecretDecryptError) as info:
        SecretStore(db, key=wrong).get("smtp_password")
    message = str(info.value)
    assert (
        "secret 'smtp_password' cannot be decrypted with this key" in message
        and "set BLOCKYARD_SECRET_KEY to the key it was written with" in message
    )
    assert "hunter2" not in message and wrong not in message and right not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_env_key_and_rotation(sqlite_db, monkeypatch):
    old, new = generate_key(), generate_key()
    monkeypatch.setenv(ENV_SECRET_KEY, old)
    store = SecretStore(sqlite_db)
    assert store.key_source == "environment variable BLOCKYARD_SECRET_KEY"
    store.set("token", "rotate-me-please")
    # New key first, old one still accepted for reading.
    monkeypatch.setenv(ENV_SECRET_KEY, f"{new},{old}")
    assert SecretStore(sqlite_db).get("token") == "rotate-me-please"
    assert SecretStore(sqlite_db).rekey(new) == 1
    monkeypatch.setenv(ENV_SECRET_KEY, new)
    assert SecretStore(sqlite_db).get("token") == "rotate-me-please"
    monkeypatch.setenv(ENV_SECRET_KEY, old)
    with pytest.raises(SecretDecryptError):
        SecretStore(sqlite_db).get("token")


def test_malformed_env_key(sqlite_db, monkeypatch):
    monkeypatch.setenv(ENV_SECRET_KEY, "not-a-key-but-a-password")
    with pytest.raises(SecretKeyError) as info:
        SecretStore(sqlite_db).set("x", "y")
    assert "BLOCKYARD_SECRET_KEY" in str(info.value) and "not a valid Fernet key" in str(info.value)
    assert "not-a-key-but-a-password" not in str(info.value)


def test_key_file_created_0600_on_first_write(sqlite_db, tmp_path):
    data_dir = tmp_path / "data"
    store = SecretStore(sqlite_db, data_dir=data_dir)
    key_file = data_dir / "secret.key"
    assert store.list_names() == [] and store.lookup("nope") is None
    assert not key_file.exists()  # reading never creates a key
    store.set("x", "first-value")
    assert key_file.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    Fernet(key_file.read_text().strip().encode())  # a valid key
    assert SecretStore(sqlite_db, data_dir=data_dir).get("x") == "first-value"
    # Losing the key file makes the secret unreadable, with a message saying why.
    key_file.unlink()
    with pytest.raises(SecretDecryptError) as info:
        SecretStore(sqlite_db, data_dir=data_dir).get("x")
    assert "no key" in str(info.value) and str(key_file) in str(info.value)


def test_row_copied_to_another_name_is_detected(sqlite_db):
    store = SecretStore(sqlite_db, key=generate_key())
    store.set("admin_password", "admin-pass-value")
    store.set("public_note", "harmless")
    with sqlite_db.engine.begin() as conn:
        token = conn.execute(
            sa.select(secrets_table.c.ciphertext).where(secrets_table.c.name == "admin_password")
        ).scalar()
        conn.execute(
            secrets_table.update().where(secrets_table.c.name == "public_note").values(ciphertext=token)
        )
    with pytest.raises(SecretDecryptError) as info:
        store.get("public_note")
    assert "different secret" in str(info.value) and "admin-pass-value" not in str(info.value)


def test_repr_and_pickle_do_not_expose_the_key(sqlite_db):
    key = generate_key()
    store = SecretStore(sqlite_db, key=key)
    store.set("x", "value-in-repr?")
    text = repr(store)
    assert key not in text and "value-in-repr?" not in text and "SecretStore" in text
    with pytest.raises(TypeError):
        pickle.dumps(store)


def test_invalid_names_and_values(sqlite_db):
    store = SecretStore(sqlite_db, key=generate_key())
    for bad in ("", "a/b", "..", "x\0y"):
        with pytest.raises(ValueError):
            store.set(bad, "v")
    with pytest.raises(TypeError):
        store.set("n", 123)


# ------------------------------------------------------------ get_secret_value
@pytest.fixture
def workspace(tmp_path, monkeypatch):
    root = tmp_path / "ws"
    (root / "proj_a").mkdir(parents=True)
    (root / "proj_b").mkdir()
    (root / "settings.yaml").write_text(yaml.safe_dump({"projects": {"proj_a": {}, "proj_b": {}}}))
    for p in ("proj_a", "proj_b"):
        (root / p / "metadata.yaml").write_text(yaml.safe_dump({"project_uuid": p}))
    monkeypatch.setenv("BLOCKYARD_WORKSPACE", str(root))
    monkeypatch.delenv("BLOCKYARD_HOME", raising=False)
    monkeypatch.delenv("BLOCKYARD_DATABASE_URL", raising=False)
    return root


def test_get_secret_value_finds_database_secrets(workspace, monkeypatch):
    data_dir = workspace / ".blockyard"
    db = Database(f"sqlite:///{data_dir / 'blockyard.db'}")
    db.migrate()
    try:
        store = SecretStore(db, data_dir=data_dir)  # key file in the data dir
        store.set("warehouse_password", "from-the-database")
        store.set("warehouse_password", "proj-b-password", project="proj_b")
        monkeypatch.delenv("warehouse_password", raising=False)

        assert get_secret_value("warehouse_password") == "from-the-database"
        with project_scope("proj_b"):
            assert get_secret_value("warehouse_password") == "proj-b-password"
        assert resolve_secret("warehouse_password", "proj_a") == "from-the-database"

        # The environment variable comes first (an operator can override).
        monkeypatch.setenv("warehouse_password", "from-the-env")
        assert get_secret_value("warehouse_password") == "from-the-env"
        monkeypatch.delenv("warehouse_password")
        # Then the <data dir>/secrets/<name> file.
        (data_dir / "secrets").mkdir()
        (data_dir / "secrets" / "warehouse_password").write_text("from-the-file\n")
        assert get_secret_value("warehouse_password") == "from-the-file"

        with pytest.raises(SecretNotFound) as info:
            get_secret_value("missing_one")
        message = str(info.value)
        assert "environment variable missing_one" in message
        assert "Blockyard database secrets" in message
        assert "from-the-database" not in message
    finally:
        db.close()


def test_get_secret_value_without_database_is_not_found(workspace):
    # No database file yet: the provider must not create one.
    with pytest.raises(SecretNotFound):
        get_secret_value("anything_at_all")
    assert not (workspace / ".blockyard" / "blockyard.db").exists()


# ----------------------------------------------------------------- redaction
def test_redact():
    text = "login hunter2-long with token abc-123-token-abc and short id 42"
    out = redact(text, ["hunter2-long", "abc-123-token-abc", "abc", "42", None])
    assert out == f"login {REDACTED} with token {REDACTED} and short id 42"
    # The longer value is replaced first, so no part of it survives.
    assert redact("pw=secretvalue-extended", ["secretvalue", "secretvalue-extended"]) == f"pw={REDACTED}"
    assert redact(None, ["x"]) == ""
    assert redact("nothing here", []) == "nothing here"


def test_redaction_values_skip_undecryptable_rows(sqlite_db):
    SecretStore(sqlite_db, key=generate_key()).set("other", "written-with-another-key")
    store = SecretStore(sqlite_db, key=generate_key())
    store.set("mine", "my-own-value")
    store.set("proj_only", "project-value", project="p")
    assert sorted(store.values_for_redaction()) == ["my-own-value"]
    assert sorted(store.values_for_redaction("p")) == ["my-own-value", "project-value"]


def test_key_file_permissions_warning(sqlite_db, tmp_path, caplog):
    data_dir = tmp_path / "d"
    data_dir.mkdir()
    key_file = data_dir / "secret.key"
    key_file.write_text(generate_key())
    os.chmod(key_file, 0o644)
    with caplog.at_level("WARNING", logger="blockyard.secrets"):
        SecretStore(sqlite_db, data_dir=data_dir).set("x", "y-value")
    assert any("readable by other users" in r.getMessage() for r in caplog.records)
