"""blockyard.notify against a real SMTP server (aiosmtpd) and a real local HTTP server."""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from blockyard.db import Database
from blockyard.notify import (
    TemplateError,
    notify_run_finished,
    notify_sla_passed,
    render_template,
    send_test_alert,
)
from blockyard.project import Workspace
from blockyard.secrets import ENV_SECRET_KEY, REDACTED, SecretStore, generate_key

from wsbuilder import block, write_pipeline

aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller")
from aiosmtpd.smtp import AuthResult, LoginPassword  # noqa: E402

PROJECT = "proj"
PIPELINE = "train"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------- SMTP server
class MailSink:
    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.logins: list[tuple[str, str]] = []

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append(
            {
                "from": envelope.mail_from,
                "rcpt": list(envelope.rcpt_tos),
                "msg": msg,
                "raw": envelope.content.decode("utf-8", "replace"),
                "body": msg.get_content(),
            }
        )
        return "250 Message accepted for delivery"

    def authenticator(self, server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword):
            login, password = auth_data.login.decode(), auth_data.password.decode()
            self.logins.append((login, password))
            return AuthResult(success=(login, password) == ("alerts@example.com", "smtp-Pa55word-xyz"))
        return AuthResult(success=False, handled=False)


@pytest.fixture(scope="module")
def tls_cert(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 (its own CA file)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return {"ca_file": str(cert_file), "context": context}


def _smtp(**kwargs):
    sink = MailSink()
    port = free_port()
    controller = aiosmtpd_controller.Controller(
        sink, hostname="127.0.0.1", port=port, authenticator=sink.authenticator, **kwargs
    )
    controller.start()
    return sink, port, controller


@pytest.fixture
def smtp_plain():
    """SMTP with AUTH over an unencrypted connection (what `smtp_mode: plain` talks to)."""
    sink, port, controller = _smtp(auth_require_tls=False)
    sink.port = port
    yield sink
    controller.stop()


@pytest.fixture
def smtp_starttls(tls_cert):
    sink, port, controller = _smtp(tls_context=tls_cert["context"], require_starttls=True)
    sink.port = port
    yield sink
    controller.stop()


@pytest.fixture
def smtp_ssl(tls_cert):
    sink, port, controller = _smtp(ssl_context=tls_cert["context"])
    sink.port = port
    yield sink
    controller.stop()


# ----------------------------------------------------------------- HTTP server
class HookServer:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                sink.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": dict(self.headers),
                        "json": json.loads(body) if body else None,
                    }
                )
                code = 500 if self.path.startswith("/fail") else 200
                self.send_response(code)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_POST = do_PUT = do_PATCH = _handle

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def by_path(self, path: str) -> list[dict]:
        return [r for r in self.requests if r["path"] == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hooks():
    server = HookServer()
    yield server
    server.close()


# ------------------------------------------------------------ workspace + db
@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("BLOCKYARD_BASE_URL", "https://blockyard.example.com/")
    monkeypatch.setenv(ENV_SECRET_KEY, generate_key())
    monkeypatch.delenv("BLOCKYARD_HOME", raising=False)
    monkeypatch.delenv("BLOCKYARD_DATABASE_URL", raising=False)
    root = tmp_path / "ws"
    write_pipeline(root, PROJECT, PIPELINE, [block("load", "x = 1\n"), block("fit", "x = 2\n", upstream=["load"])])
    db = Database(f"sqlite:///{tmp_path / 'blockyard.db'}")
    db.migrate()
    yield type("Env", (), {"root": root, "db": db, "ws": Workspace.open(root)})
    db.close()


def set_config(root: Path, config: dict | None, *, pipeline: dict | None = None) -> None:
    meta_path = root / PROJECT / "metadata.yaml"
    meta = yaml.safe_load(meta_path.read_text()) or {}
    if config is None:
        meta.pop("notification_config", None)
    else:
        meta["notification_config"] = config
    meta_path.write_text(yaml.safe_dump(meta, sort_keys=False))
    pipe_path = root / PROJECT / "pipelines" / PIPELINE / "metadata.yaml"
    pmeta = yaml.safe_load(pipe_path.read_text())
    if pipeline is None:
        pmeta.pop("notification_config", None)
    else:
        pmeta["notification_config"] = pipeline
    pipe_path.write_text(yaml.safe_dump(pmeta, sort_keys=False))


def make_run(db, status: str, error: str | None = None, *, trigger_id=None) -> dict:
    run_id = db.create_pipeline_run(
        PROJECT,
        PIPELINE,
        {},
        dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc),
        ["load", "fit"],
        trigger_id=trigger_id,
    )
    if status != "running":
        if status == "failed":
            rec = db.recorder()
            rec.update_block_run(run_id, "fit", status="failed", error=error, traceback="Traceback: boom")
            rec.close()
        db.finish_pipeline_run(run_id, status, error=error)
    return db.get_pipeline_run(run_id)


def by_channel(results) -> dict:
    return {r.channel: r for r in results}


# ------------------------------------------------------------------------ e-mail
def test_failure_email_plain_with_auth_password_from_env(env, smtp_plain, monkeypatch):
    password = "smtp-Pa55word-xyz"
    monkeypatch.setenv("SMTP_EMAIL", "alerts@example.com")
    monkeypatch.setenv("SMTP_PASSWORD", password)
    set_config(
        env.root,
        {
            "alert_on": ["trigger_failure"],
            "email_config": {
                "smtp_host": "127.0.0.1",
                "smtp_port": smtp_plain.port,
                "smtp_mode": "plain",
                "smtp_user": "{{ env_var('SMTP_EMAIL') }}",
                "smtp_password": "{{ env_var('SMTP_PASSWORD') }}",
                "smtp_mail_from": "{{ env_var('SMTP_EMAIL') }}",
                "to_emails": ["ops@example.com", "ml@example.com"],
                "timeout": 5,
            },
        },
    )
    # A block that printed the password into its error: it must not travel in the alert.
    run = make_run(env.db, "failed", error=f"ValueError: login failed for {password}")
    results = notify_run_finished(env.ws, env.db, run)

    assert [(r.channel, r.ok, r.error) for r in results] == [("email", True, None)]
    assert smtp_plain.logins == [("alerts@example.com", password)]  # AUTH used the real password
    (mail,) = smtp_plain.messages
    assert mail["from"] == "alerts@example.com"
    assert mail["rcpt"] == ["ops@example.com", "ml@example.com"]
    msg = mail["msg"]
    assert msg["Subject"] == f"Pipeline {PIPELINE} failed (run {run['id']})"
    assert msg["To"] == "ops@example.com, ml@example.com"
    assert msg["X-Blockyard-Run-Id"] == str(run["id"])
    body = mail["body"]
    assert f"https://blockyard.example.com/runs/{run['id']}" in body
    assert "Project: proj" in body and "Status: failed" in body and "Trigger: manual run" in body
    assert "Failed blocks: fit" in body
    assert f"ValueError: login failed for {REDACTED}" in body
    assert password not in mail["raw"]


def test_email_starttls_with_password_from_database_secret(env, smtp_starttls, tls_cert):
    password = "smtp-Pa55word-xyz"
    SecretStore(env.db, data_dir=env.ws.data_dir).set("smtp_password", password, project=PROJECT)
    set_config(
        env.root,
        {
            "alert_on": ["trigger_success"],
            "email_config": {
                "smtp_host": "127.0.0.1",
                "smtp_port": smtp_starttls.port,
                "smtp_user": "alerts@example.com",
                "smtp_password": "{{ mage_secret_var('smtp_password') }}",
                "smtp_mail_from": "alerts@example.com",
                "smtp_ca_file": tls_cert["ca_file"],
                "to_emails": "ops@example.com",
            },
            "message_templates": {
                "success": {"details": "done; password would be {{ secret_var('smtp_password') }}"}
            },
        },
    )
    run = make_run(env.db, "completed")
    results = notify_run_finished(env.ws, env.db, run)
    assert [(r.channel, r.ok, r.error) for r in results] == [("email", True, None)]
    assert "(starttls)" in results[0].target
    assert smtp_starttls.logins == [("alerts@example.com", password)]
    (mail,) = smtp_starttls.messages
    assert mail["msg"]["Subject"] == f"Pipeline {PIPELINE} succeeded (run {run['id']})"
    assert mail["body"].strip() == f"done; password would be {REDACTED}"
    assert password not in mail["raw"]


def test_email_implicit_tls(env, smtp_ssl, tls_cert):
    set_config(
        env.root,
        {
            "email_config": {
                "smtp_host": "127.0.0.1",
                "smtp_port": smtp_ssl.port,
                "smtp_ssl": True,  # Mage's key for implicit TLS
                "sender": "blockyard@example.com",
                "smtp_ca_file": tls_cert["ca_file"],
                "to_emails": ["a@example.com"],
            }
        },
    )
    results = notify_run_finished(env.ws, env.db, make_run(env.db, "failed", error="boom"))
    assert [(r.channel, r.ok) for r in results] == [("email", True)]
    assert "(ssl)" in results[0].target
    assert smtp_ssl.messages[0]["rcpt"] == ["a@example.com"]


def test_starttls_required_and_other_channels_still_sent(env, smtp_plain, hooks):
    set_config(
        env.root,
        {
            "email_config": {  # default mode is starttls; this server does not offer it
                "smtp_host": "127.0.0.1",
                "smtp_port": smtp_plain.port,
                "smtp_user": "alerts@example.com",
                "smtp_password": "smtp-Pa55word-xyz",
                "smtp_mail_from": "alerts@example.com",
                "to_emails": ["ops@example.com"],
            },
            "slack_config": {"webhook_url": f"{hooks.url}/slack"},
        },
    )
    results = by_channel(notify_run_finished(env.ws, env.db, make_run(env.db, "failed", error="x")))
    assert not results["email"].ok and "does not offer STARTTLS" in results["email"].error
    assert smtp_plain.logins == [] and smtp_plain.messages == []  # password never sent in clear
    assert results["slack"].ok and len(hooks.by_path("/slack")) == 1


# ---------------------------------------------------------------------- webhooks
def test_webhook_channels_payloads(env, hooks, monkeypatch):
    monkeypatch.setenv("HOOK_TOKEN", "Bearer tok-0123456789")
    set_config(
        env.root,
        {
            "alert_on": ["trigger_failure", "trigger_success"],
            "slack_config": {"webhook_url": f"{hooks.url}/slack"},
            "teams_config": [
                {"webhook_url": f"{hooks.url}/teams"},
                {"webhook_url": f"{hooks.url}/teams-workflow", "card": "adaptive_card"},
            ],
            "discord_config": {"webhook_url": f"{hooks.url}/discord"},
            "google_chat_config": {"webhook_url": f"{hooks.url}/gchat"},
            "webhook_config": {
                "url": f"{hooks.url}/hook",
                "method": "PUT",
                "headers": {"Authorization": "{{ env_var('HOOK_TOKEN') }}", "X-Env": "test"},
            },
        },
    )
    run = make_run(env.db, "completed", trigger_id=None)
    results = notify_run_finished(env.ws, env.db, run)
    assert sorted((r.channel, r.ok) for r in results) == [
        ("discord", True),
        ("google_chat", True),
        ("slack", True),
        ("teams[0]", True),
        ("teams[1]", True),
        ("webhook", True),
    ]
    link = f"https://blockyard.example.com/runs/{run['id']}"
    title = f"Pipeline {PIPELINE} succeeded (run {run['id']})"

    (slack,) = hooks.by_path("/slack")
    assert slack["method"] == "POST" and slack["headers"]["Content-Type"].startswith("application/json")
    assert set(slack["json"]) == {"text"}
    assert slack["json"]["text"].startswith(f"*{title}*\n") and link in slack["json"]["text"]

    (teams,) = hooks.by_path("/teams")
    card = teams["json"]
    assert card["@type"] == "MessageCard" and card["title"] == title
    facts = {f["name"]: f["value"] for f in card["sections"][0]["facts"]}
    assert facts["Pipeline"] == PIPELINE and facts["Status"] == "completed" and facts["Run"] == str(run["id"])
    assert card["potentialAction"][0]["targets"][0]["uri"] == link

    (adaptive,) = hooks.by_path("/teams-workflow")
    content = adaptive["json"]["attachments"][0]["content"]
    assert adaptive["json"]["type"] == "message"
    assert adaptive["json"]["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert content["type"] == "AdaptiveCard" and content["body"][0]["text"] == title
    assert content["actions"][0]["url"] == link

    (discord,) = hooks.by_path("/discord")
    assert set(discord["json"]) == {"content"}
    assert discord["json"]["content"].startswith(f"**{title}**") and len(discord["json"]["content"]) <= 2000

    (gchat,) = hooks.by_path("/gchat")
    assert title in gchat["json"]["text"]

    (hook,) = hooks.by_path("/hook")
    assert hook["method"] == "PUT"
    assert hook["headers"]["Authorization"] == "Bearer tok-0123456789"
    assert hook["headers"]["X-Env"] == "test"
    body = hook["json"]
    assert body["event"] == "trigger_success" and body["url"] == link and body["title"] == title
    assert body["run"]["id"] == run["id"] and body["run"]["status"] == "completed"
    assert body["run"]["pipeline_uuid"] == PIPELINE and body["run"]["project"] == PROJECT
    assert body["run"]["duration_seconds"] is not None
    # The header credential never appears in any payload.
    assert all("tok-0123456789" not in json.dumps(r["json"]) for r in hooks.requests)


def test_trigger_name_from_pipeline_schedules(env, hooks):
    from blockyard.db.schema import metadata

    table = metadata.tables["pipeline_schedules"]  # orchestration's table (0002)
    now = dt.datetime.now(dt.timezone.utc)
    values = {}
    for column in table.columns:  # fill only what the table requires, whatever its shape
        if column.primary_key or column.nullable or column.server_default is not None:
            continue
        python_type = getattr(column.type, "impl", column.type).python_type
        values[column.name] = {str: "x", int: 1, dt.datetime: now}.get(python_type, {})
    values.update(project=PROJECT, pipeline_uuid=PIPELINE, name="nightly_retrain")
    with env.db.engine.begin() as conn:
        trigger_id = conn.execute(table.insert().values(values)).inserted_primary_key[0]
    set_config(env.root, {"webhook_config": {"url": f"{hooks.url}/hook"}})
    run = make_run(env.db, "failed", error="boom", trigger_id=trigger_id)
    notify_run_finished(env.ws, env.db, run)
    body = hooks.requests[0]["json"]
    assert f"(trigger {trigger_id} `nightly_retrain`)" in body["summary"]
    assert body["run"]["trigger_name"] == "nightly_retrain"


def test_alert_on_filtering(env, hooks):
    set_config(env.root, {"alert_on": ["trigger_failure"], "slack_config": {"webhook_url": f"{hooks.url}/slack"}})
    assert notify_run_finished(env.ws, env.db, make_run(env.db, "completed")) == []
    assert notify_run_finished(env.ws, env.db, make_run(env.db, "cancelled")) == []
    assert hooks.requests == []
    failed = make_run(env.db, "failed", error="boom")
    assert [r.ok for r in notify_run_finished(env.ws, env.db, failed)] == [True]
    assert len(hooks.requests) == 1 and "failed" in hooks.requests[0]["json"]["text"]

    # alert_on omitted: Mage's default, failure and SLA but not success.
    set_config(env.root, {"slack_config": {"webhook_url": f"{hooks.url}/slack"}})
    assert notify_run_finished(env.ws, env.db, make_run(env.db, "completed")) == []
    assert len(hooks.requests) == 1
    assert len(notify_run_finished(env.ws, env.db, make_run(env.db, "failed", error="e"))) == 1


def test_sla_alert(env, hooks):
    set_config(env.root, {"webhook_config": {"url": f"{hooks.url}/hook"}})
    run = make_run(env.db, "running")
    results = notify_sla_passed(env.ws, env.db, run)
    assert [(r.channel, r.ok, r.event) for r in results] == [("webhook", True, "trigger_passed_sla")]
    body = hooks.requests[0]["json"]
    assert body["event"] == "trigger_passed_sla"
    assert body["title"] == f"SLA missed for pipeline {PIPELINE} (run {run['id']})"
    assert "passed its SLA" in body["summary"] and "is running after" in body["summary"]
    assert body["facts"]["Status"] == "running" and body["facts"]["Completed"] == "-"

    set_config(env.root, {"alert_on": ["trigger_failure"], "webhook_config": {"url": f"{hooks.url}/hook"}})
    assert notify_sla_passed(env.ws, env.db, run) == []
    assert len(hooks.requests) == 1


def test_failing_channels_do_not_stop_the_others(env, hooks):
    closed = free_port()
    set_config(
        env.root,
        {
            "slack_config": {"webhook_url": f"http://127.0.0.1:{closed}/services/T0/B0/slack-token-987", "timeout": 2},
            "webhook_config": {"url": f"{hooks.url}/fail/hook-token-654"},
            "discord_config": {"webhook_url": f"{hooks.url}/discord"},
            "telegram_config": {"bot_token": "x", "chat_id": "y"},
        },
    )
    results = by_channel(notify_run_finished(env.ws, env.db, make_run(env.db, "failed", error="boom")))
    assert results["discord"].ok
    assert not results["slack"].ok and f"cannot reach http://127.0.0.1:{closed}" in results["slack"].error
    assert not results["webhook"].ok and "HTTP 500" in results["webhook"].error
    assert not results["telegram"].ok and "not supported" in results["telegram"].error
    for r in results.values():  # tokens in webhook paths never reach results
        assert "slack-token-987" not in str(r.to_dict()) and "hook-token-654" not in str(r.to_dict())
    assert len(hooks.by_path("/discord")) == 1


def test_custom_message_templates(env, hooks):
    set_config(
        env.root,
        {
            "webhook_config": {"url": f"{hooks.url}/hook"},
            "message_templates": {
                "failure": {
                    "title": "ALERT {pipeline_uuid} #{run_id}",
                    "summary": "{project}/{pipeline_uuid} broke ({trigger}): {error}",
                    "details": "status={{status}} url={pipeline_run_url} keep={unknown_name} braces={ not }",
                }
            },
        },
    )
    run = make_run(env.db, "failed", error="KeyError: 'x' {curly}")
    notify_run_finished(env.ws, env.db, run)
    body = hooks.requests[0]["json"]
    assert body["title"] == f"ALERT {PIPELINE} #{run['id']}"
    assert body["summary"] == f"{PROJECT}/{PIPELINE} broke (manual run): KeyError: 'x' {{curly}}"
    assert body["details"] == (
        f"status=failed url=https://blockyard.example.com/runs/{run['id']} keep={{unknown_name}} braces={{ not }}"
    )


def test_pipeline_config_merges_over_project(env, hooks):
    set_config(
        env.root,
        {"alert_on": ["trigger_failure"], "slack_config": {"webhook_url": f"{hooks.url}/slack"}},
        pipeline={"alert_on": ["trigger_success"]},
    )
    assert notify_run_finished(env.ws, env.db, make_run(env.db, "failed", error="x")) == []
    results = notify_run_finished(env.ws, env.db, make_run(env.db, "completed"))
    assert [(r.channel, r.ok) for r in results] == [("slack", True)]


def test_missing_variable_names_it_and_where(env, hooks, monkeypatch):
    SecretStore(env.db, data_dir=env.ws.data_dir).set("good_secret", "good-secret-value")
    monkeypatch.delenv("MISSING_SMTP_PASSWORD", raising=False)
    set_config(
        env.root,
        {
            "email_config": {
                "smtp_host": "127.0.0.1",
                "smtp_user": "{{ mage_secret_var('good_secret') }}",
                "smtp_password": "{{ env_var('MISSING_SMTP_PASSWORD') }}",
                "smtp_mail_from": "a@example.com",
                "to_emails": ["b@example.com"],
            },
            "slack_config": {"webhook_url": f"{hooks.url}/slack"},
        },
    )
    results = by_channel(notify_run_finished(env.ws, env.db, make_run(env.db, "failed", error="x")))
    error = results["email"].error
    assert "environment variable MISSING_SMTP_PASSWORD is not set" in error
    meta = str(env.root / PROJECT / "metadata.yaml")
    assert f"{meta}, key notification_config.email_config.smtp_password" in error
    assert "good-secret-value" not in error
    assert results["slack"].ok


def test_secret_file_of_the_given_workspace(env, hooks, monkeypatch, tmp_path):
    monkeypatch.delenv("BLOCKYARD_WORKSPACE", raising=False)
    monkeypatch.chdir(tmp_path)  # not inside the workspace: discovery would not find it
    monkeypatch.delenv("hook_token", raising=False)
    (env.ws.data_dir / "secrets").mkdir(parents=True)
    (env.ws.data_dir / "secrets" / "hook_token").write_text("file-token-4242\n")
    set_config(
        env.root,
        {
            "webhook_config": {
                "url": f"{hooks.url}/hook",
                "headers": {"X-Token": "{{ mage_secret_var('hook_token') }}"},
            },
            "slack_config": {"webhook_url": "{{ mage_secret_var('no_such_secret') }}"},
        },
    )
    results = by_channel(notify_run_finished(env.ws, env.db, make_run(env.db, "failed", error="x")))
    assert results["webhook"].ok
    assert hooks.by_path("/hook")[0]["headers"]["X-Token"] == "file-token-4242"
    error = results["slack"].error
    assert "secret 'no_such_secret' not found" in error
    assert str(env.ws.data_dir / "secrets" / "no_such_secret") in error
    assert "Blockyard database secrets (project 'proj', then global)" in error


def test_render_template():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SMTP_EMAIL", "me@example.com")
        mp.setenv("A_SECRET_ENV", "env-secret-val")
        resolved: list = []
        out = render_template(
            "{{ env_var('SMTP_EMAIL') }} / {{mage_secret_var(\"A_SECRET_ENV\")}} / {{ secret_var('A_SECRET_ENV') }} / {{ pipeline_uuid }}",
            resolved=resolved,
        )
        assert out == "me@example.com / env-secret-val / env-secret-val / {{ pipeline_uuid }}"
        assert [(k, n) for k, n, _ in resolved] == [
            ("env", "SMTP_EMAIL"),
            ("secret", "A_SECRET_ENV"),
            ("secret", "A_SECRET_ENV"),
        ]
        mp.delenv("NOPE_NOT_SET", raising=False)
        with pytest.raises(TemplateError) as info:
            render_template("{{ env_var('A_SECRET_ENV') }}{{ mage_secret_var('NOPE_NOT_SET') }}", where="f.yaml, key k")
        assert "secret 'NOPE_NOT_SET' not found (referenced in f.yaml, key k)" in str(info.value)
        assert "env-secret-val" not in str(info.value)
        with pytest.raises(TemplateError, match="unknown template function shell"):
            render_template("{{ shell('rm') }}")
    assert render_template(42) == 42


def test_send_test_alert_ignores_alert_on(env, hooks):
    set_config(env.root, {"alert_on": ["trigger_failure"], "webhook_config": {"url": f"{hooks.url}/hook"}})
    results = send_test_alert(env.ws, PROJECT, PIPELINE, db=env.db)
    assert [(r.channel, r.ok, r.event) for r in results] == [("webhook", True, "test")]
    body = hooks.requests[0]["json"]
    assert body["title"] == f"Test alert from Blockyard for pipeline {PROJECT}/{PIPELINE}"
    assert body["event"] == "test"
    # Without a db argument the workspace database is used when it exists (not here).
    assert [r.ok for r in send_test_alert(str(env.root), PROJECT)] == [True]


def test_database_secrets_redacted_from_messages(env, hooks):
    SecretStore(env.db, data_dir=env.ws.data_dir).set("warehouse_pw", "wh-pass-555-unused-in-config")
    set_config(env.root, {"webhook_config": {"url": f"{hooks.url}/hook"}})
    notify_run_finished(env.ws, env.db, make_run(env.db, "failed", error="could not log in with wh-pass-555-unused-in-config"))
    payload = json.dumps(hooks.requests[0]["json"])
    assert "wh-pass-555-unused-in-config" not in payload and REDACTED in payload


def test_no_config_and_broken_config_never_raise(env, hooks):
    set_config(env.root, None)
    assert notify_run_finished(env.ws, env.db, make_run(env.db, "failed", error="x")) == []
    (env.root / PROJECT / "metadata.yaml").write_text("notification_config: [unclosed\n")
    results = notify_run_finished(Workspace.open(env.root), env.db, make_run(env.db, "failed", error="x"))
    assert [(r.channel, r.ok) for r in results] == [("notification_config", False)]
    assert "metadata.yaml" in results[0].error
