"""Senders: e-mail (smtplib), Slack, Microsoft Teams, Discord, Google Chat, generic webhook.

Each `send_<kind>(settings, message)` raises ChannelError (or an OSError / smtplib
error) on failure and returns a short description of the target on success. URLs are
never put in messages or errors whole (webhook URLs carry tokens): only scheme, host
and port. HTTP redirects are not followed.
"""
from __future__ import annotations

import json
import smtplib
import ssl
import urllib.error
import urllib.request
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any
from urllib.parse import urlsplit

from blockyard.notify.message import Message

__all__ = [
    "ChannelError",
    "DEFAULT_TIMEOUT",
    "SENDERS",
    "describe_url",
    "send_email",
    "send_slack",
    "send_teams",
    "send_discord",
    "send_google_chat",
    "send_webhook",
]

DEFAULT_TIMEOUT = 10.0
USER_AGENT = "blockyard-alerts/1"
DISCORD_LIMIT = 2000
SLACK_LIMIT = 39000


class ChannelError(Exception):
    """A channel is misconfigured or the remote end refused the message."""


def _truthy(value: Any, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ChannelError(f"expected true or false, got {value!r}")


def _timeout(settings: dict) -> float:
    try:
        value = float(settings.get("timeout", DEFAULT_TIMEOUT))
    except (TypeError, ValueError):
        raise ChannelError("timeout must be a number of seconds") from None
    return value if value > 0 else DEFAULT_TIMEOUT


def describe_url(url: str) -> str:
    """scheme://host[:port] of `url`, never its path or query (which may hold tokens)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "an invalid URL"
    return f"{parts.scheme}://{host}{port}"


# ---------------------------------------------------------------------------- HTTP
class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D401
        return None  # a 3xx becomes an HTTPError


_opener = urllib.request.build_opener(_NoRedirect)


def _require_url(settings: dict, key: str = "webhook_url") -> str:
    url = settings.get(key)
    if not url or not isinstance(url, str):
        raise ChannelError(f"{key} is not set")
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise ChannelError(f"{key} must be an http(s) URL, not {scheme or 'a bare path'}")
    return url


def post_json(
    url: str,
    payload: Any,
    *,
    method: str = "POST",
    headers: dict | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> int:
    """Send `payload` as JSON; returns the HTTP status (2xx), else raises ChannelError."""
    body = json.dumps(payload, default=str).encode("utf-8")
    request = urllib.request.Request(url, data=body, method=method.upper())
    request.add_header("Content-Type", "application/json; charset=utf-8")
    request.add_header("User-Agent", USER_AGENT)
    for name, value in (headers or {}).items():
        request.add_header(str(name), "" if value is None else str(value))
    target = describe_url(url)
    try:
        with _opener.open(request, timeout=timeout) as response:
            status = response.status
            response.read(65536)
    except urllib.error.HTTPError as exc:
        raise ChannelError(f"{target} answered HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        text = type(reason).__name__ if isinstance(reason, BaseException) else str(reason)
        if isinstance(reason, OSError) and reason.strerror:
            text = reason.strerror
        raise ChannelError(f"cannot reach {target}: {text}") from None
    except TimeoutError:
        raise ChannelError(f"{target} did not answer within {timeout:g}s") from None
    except OSError as exc:
        raise ChannelError(f"cannot reach {target}: {exc.strerror or type(exc).__name__}") from None
    if not 200 <= status < 300:
        raise ChannelError(f"{target} answered HTTP {status}")
    return status


# ----------------------------------------------------------------------- webhooks
def send_slack(settings: dict, message: Message) -> str:
    """Slack incoming webhook: {"text": ...} (mrkdwn)."""
    url = _require_url(settings)
    text = f"*{message.title}*\n{message.details}"
    payload: dict[str, Any] = {"text": text[:SLACK_LIMIT]}
    for key in ("channel", "username", "icon_emoji"):
        if settings.get(key):
            payload[key] = settings[key]
    post_json(url, payload, timeout=_timeout(settings))
    return describe_url(url)


def _teams_card_type(settings: dict, url: str) -> str:
    card = str(settings.get("card") or settings.get("format") or "auto").lower().replace("-", "_")
    if card in ("adaptive", "adaptive_card", "adaptivecard"):
        return "adaptive"
    if card in ("message_card", "messagecard", "connector", "legacy"):
        return "message_card"
    if card != "auto":
        raise ChannelError(f"teams_config.card must be message_card, adaptive_card or auto, not {card!r}")
    host = (urlsplit(url).hostname or "").lower()
    # Power Automate / Teams Workflows webhooks only take Adaptive Cards.
    if "logic.azure.com" in host or "powerautomate" in host or "powerplatform" in host:
        return "adaptive"
    return "message_card"


def teams_payload(message: Message, card: str) -> dict:
    if card == "adaptive":
        body: list[dict] = [
            {"type": "TextBlock", "text": message.title, "weight": "Bolder", "size": "Medium", "wrap": True},
            {"type": "TextBlock", "text": message.summary, "wrap": True},
        ]
        if message.facts:
            body.append({"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in message.facts]})
        return {
            "type": "message",
            "attachments": [
                {
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "contentUrl": None,
                    "content": {
                        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                        "type": "AdaptiveCard",
                        "version": "1.4",
                        "body": body,
                        "actions": [{"type": "Action.OpenUrl", "title": "Open run", "url": message.url}],
                    },
                }
            ],
        }
    return {
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": message.title,
        "themeColor": message.color,
        "title": message.title,
        "text": message.summary,
        "sections": [{"facts": [{"name": k, "value": v} for k, v in message.facts]}],
        "potentialAction": [
            {"@type": "OpenUri", "name": "Open run", "targets": [{"os": "default", "uri": message.url}]}
        ],
    }


def send_teams(settings: dict, message: Message) -> str:
    """Microsoft Teams: an Office 365 connector MessageCard, or an Adaptive Card for
    Workflows (Power Automate) webhooks (`card: adaptive_card`; auto-detected)."""
    url = _require_url(settings)
    post_json(url, teams_payload(message, _teams_card_type(settings, url)), timeout=_timeout(settings))
    return describe_url(url)


def send_discord(settings: dict, message: Message) -> str:
    """Discord webhook: {"content": ...} (at most 2000 characters)."""
    url = _require_url(settings)
    text = f"**{message.title}**\n{message.details}"
    if len(text) > DISCORD_LIMIT:
        text = text[: DISCORD_LIMIT - 1] + "…"
    payload: dict[str, Any] = {"content": text}
    if settings.get("username"):
        payload["username"] = settings["username"]
    post_json(url, payload, timeout=_timeout(settings))
    return describe_url(url)


def send_google_chat(settings: dict, message: Message) -> str:
    """Google Chat webhook: {"text": ...}."""
    url = _require_url(settings)
    post_json(url, {"text": f"*{message.title}*\n{message.details}"}, timeout=_timeout(settings))
    return describe_url(url)


def webhook_payload(message: Message) -> dict:
    return {
        "event": message.event,
        "title": message.title,
        "summary": message.summary,
        "details": message.details,
        "url": message.url,
        "facts": {k: v for k, v in message.facts},
        "run": message.run,
    }


def send_webhook(settings: dict, message: Message) -> str:
    """Any HTTP endpoint: JSON {event, title, summary, details, url, facts, run}.
    Settings: url, method (POST), headers, timeout."""
    url = settings.get("url") or settings.get("webhook_url")
    url = _require_url({"url": url}, "url")
    method = str(settings.get("method") or "POST").upper()
    if method not in ("POST", "PUT", "PATCH"):
        raise ChannelError(f"method must be POST, PUT or PATCH, not {method}")
    headers = settings.get("headers") or {}
    if not isinstance(headers, dict):
        raise ChannelError("headers must be a mapping of header names to values")
    post_json(url, webhook_payload(message), method=method, headers=headers, timeout=_timeout(settings))
    return describe_url(url)


# -------------------------------------------------------------------------- e-mail
SMTP_MODES = ("starttls", "ssl", "plain")
_DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "plain": 25}


def email_settings(settings: dict) -> dict:
    """Mage's keys (smtp_mail_from, smtp_starttls, smtp_ssl) and Blockyard's (sender,
    smtp_mode) normalised: host, port, mode, user, password, sender, to, timeout, tls."""
    host = settings.get("smtp_host")
    if not host:
        raise ChannelError("smtp_host is not set")
    mode = settings.get("smtp_mode")
    if mode:
        mode = str(mode).strip().lower()
        if mode == "tls":
            mode = "ssl"
        if mode not in SMTP_MODES:
            raise ChannelError(f"smtp_mode must be one of {', '.join(SMTP_MODES)}, not {mode!r}")
    elif _truthy(settings.get("smtp_ssl"), False):
        mode = "ssl"
    elif not _truthy(settings.get("smtp_starttls"), True):
        mode = "plain"
    else:
        mode = "starttls"
    try:
        port = int(settings.get("smtp_port") or _DEFAULT_PORTS[mode])
    except (TypeError, ValueError):
        raise ChannelError("smtp_port must be a number") from None
    to = settings.get("to_emails") or settings.get("to")
    if isinstance(to, str):
        to = [t.strip() for t in to.replace(";", ",").split(",")]
    to = [str(t).strip() for t in (to or []) if t and str(t).strip()]
    if not to:
        raise ChannelError("to_emails is empty")
    user = settings.get("smtp_user") or None
    password = settings.get("smtp_password")
    sender = settings.get("smtp_mail_from") or settings.get("sender") or settings.get("from") or user
    if not sender:
        raise ChannelError("smtp_mail_from (the sender address) is not set")
    return {
        "host": str(host),
        "port": port,
        "mode": mode,
        "user": str(user) if user else None,
        "password": "" if password is None else str(password),
        "sender": str(sender),
        "to": to,
        "timeout": _timeout(settings),
        "verify": _truthy(settings.get("smtp_ssl_verify"), True),
        "ca_file": settings.get("smtp_ca_file") or None,
    }


def _tls_context(conf: dict) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=conf["ca_file"]) if conf["ca_file"] else ssl.create_default_context()
    if not conf["verify"]:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def email_message(conf: dict, message: Message) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = message.title
    msg["From"] = conf["sender"]
    msg["To"] = ", ".join(conf["to"])
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    domain = conf["sender"].rsplit("@", 1)[-1] if "@" in conf["sender"] else None
    msg["Message-ID"] = make_msgid("blockyard", domain=domain)
    if message.run.get("id") is not None:
        msg["X-Blockyard-Run-Id"] = str(message.run["id"])
    msg["X-Blockyard-Event"] = message.event
    msg.set_content(message.details)
    return msg


def send_email(settings: dict, message: Message) -> str:
    """E-mail through SMTP: STARTTLS (default, port 587), implicit TLS (`ssl`, 465) or
    `plain` (25; no encryption). STARTTLS is required in starttls mode: a server that
    does not offer it is an error, so a password is never sent in the clear by accident."""
    conf = email_settings(settings)
    msg = email_message(conf, message)
    target = f"smtp {conf['host']}:{conf['port']} ({conf['mode']}) to {len(conf['to'])} recipient(s)"
    server = f"SMTP server {conf['host']}:{conf['port']}"
    try:
        if conf["mode"] == "ssl":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                conf["host"], conf["port"], timeout=conf["timeout"], context=_tls_context(conf)
            )
        else:
            client = smtplib.SMTP(conf["host"], conf["port"], timeout=conf["timeout"])
    except ssl.SSLError as exc:
        raise ChannelError(f"TLS with {server} failed: {exc.reason or type(exc).__name__}") from None
    except TimeoutError:
        raise ChannelError(f"{server} did not answer within {conf['timeout']:g}s") from None
    except OSError as exc:
        raise ChannelError(f"cannot reach {server}: {exc.strerror or type(exc).__name__}") from None
    try:
        client.ehlo_or_helo_if_needed()
        if conf["mode"] == "starttls":
            if not client.has_extn("starttls"):
                raise ChannelError(
                    f"{conf['host']}:{conf['port']} does not offer STARTTLS; set smtp_mode: ssl or "
                    "smtp_mode: plain (unencrypted) in email_config"
                )
            client.starttls(context=_tls_context(conf))
            client.ehlo()
        if conf["user"]:
            try:
                client.login(conf["user"], conf["password"])
            except smtplib.SMTPAuthenticationError as exc:
                raise ChannelError(
                    f"{server} refused the login of user {conf['user']} ({exc.smtp_code})"
                ) from None
        refused = client.send_message(msg, from_addr=conf["sender"], to_addrs=conf["to"])
        if refused:
            raise ChannelError(f"the server refused {len(refused)} of {len(conf['to'])} recipient(s)")
    finally:
        try:
            client.quit()
        except Exception:
            client.close()
    return target


SENDERS = {
    "email": send_email,
    "slack": send_slack,
    "teams": send_teams,
    "discord": send_discord,
    "google_chat": send_google_chat,
    "webhook": send_webhook,
}
