"""Send one notification: a generic webhook, a Slack-compatible incoming webhook, SMTP.

``$name`` in a service's url, header values, username, password and from is replaced by
the sealed secret ``name`` (``hub notify secret set NAME``) just before sending; an error
never carries a resolved value (``scrub``).
"""

from __future__ import annotations

import json
import re
import smtplib
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from functools import partial
from typing import Any

import aiohttp
import anyio

from generators.errors import GeneratorError
from generators.gotemplate import render
from generators.gotemplate.errors import FuncError
from hub.errors import HubError
from hub.notifications.config import NotificationConfig, Template

TIMEOUT_S = 15.0
_SECRET_REF = re.compile(r"\$([A-Za-z0-9_.-]+)")

SecretLookup = Callable[[str], str | None]


class DeliveryError(HubError):
    """One attempt failed; the dispatcher retries later (the message has no secret)."""


@dataclass(frozen=True)
class Message:
    """One outbox row, as the dispatcher hands it over."""

    event_key: str
    app: str
    trigger: str
    service: str
    recipient: str
    templates: tuple[str, ...]
    app_view: Mapping[str, Any]


class Secrets:
    """Resolves ``$name`` references and remembers the values to scrub from errors."""

    def __init__(self, lookup: SecretLookup) -> None:
        self.lookup = lookup
        self.used: set[str] = set()

    def resolve(self, text: str, where: str) -> str:
        def one(m: re.Match[str]) -> str:
            value = self.lookup(m.group(1))
            if value is None:
                raise DeliveryError(
                    f"{where}: secret ${m.group(1)} is not set; run "
                    f"`hub notify secret set {m.group(1)}` (the value is read from stdin)"
                )
            if value:
                self.used.add(value)
            return value

        return _SECRET_REF.sub(one, text)

    def scrub(self, text: str) -> str:
        for value in sorted(self.used, key=len, reverse=True):
            text = text.replace(value, "***")
        return text


def _render(source: str, data: Mapping[str, Any], where: str) -> str:
    try:
        return render(source, data, name=where)
    except (GeneratorError, FuncError) as exc:
        raise DeliveryError(f"{where}: {exc}") from None


def _templates(config: NotificationConfig, msg: Message) -> list[Template]:
    out = []
    for name in msg.templates:
        tpl = config.templates.get(name)
        if tpl is None:
            raise DeliveryError(f"template {name!r} is no longer defined in notifications.yaml")
        out.append(tpl)
    return out


def _data(config: NotificationConfig, msg: Message, service_type: str) -> dict[str, Any]:
    return {
        "app": msg.app_view,
        "context": dict(config.context),
        "serviceType": service_type,
        "recipient": msg.recipient,
    }


async def _post(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    body: str,
    headers: Mapping[str, str],
    secrets: Secrets,
    where: str,
) -> None:
    try:
        async with session.request(
            method, url, data=body.encode(), headers=dict(headers),
            timeout=aiohttp.ClientTimeout(total=TIMEOUT_S),
        ) as resp:  # fmt: skip
            if resp.status >= 300:
                text = (await resp.text(errors="replace"))[:200]
                raise DeliveryError(secrets.scrub(f"{where}: HTTP {resp.status}: {text}"))
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise DeliveryError(secrets.scrub(f"{where}: {type(exc).__name__}: {exc}")) from None


def _smtp_send(host: str, port: int, user: str, password: str, mail: EmailMessage) -> None:
    """One message over SMTP (blocking; run in a thread). Port 465 is implicit TLS;
    otherwise STARTTLS when the server offers it."""
    if port == 465:
        client: smtplib.SMTP = smtplib.SMTP_SSL(
            host, port, timeout=TIMEOUT_S, context=ssl.create_default_context()
        )
    else:
        client = smtplib.SMTP(host, port, timeout=TIMEOUT_S)
    with client:
        if port != 465 and client.has_extn("starttls"):
            client.starttls(context=ssl.create_default_context())
        if user:
            client.login(user, password)
        client.send_message(mail)


async def send(
    config: NotificationConfig,
    msg: Message,
    session: aiohttp.ClientSession,
    lookup: SecretLookup,
    smtp_limiter: anyio.CapacityLimiter,
) -> None:
    """Deliver ``msg`` once; ``DeliveryError`` when this attempt failed."""
    secrets = Secrets(lookup)
    headers = {"X-Hub-Notification-Id": msg.event_key}
    where = f"notification {msg.trigger} for {msg.app} via {msg.service}"
    if msg.service in config.webhooks:
        svc = config.webhooks[msg.service]
        data = _data(config, msg, "webhook")
        for tpl in _templates(config, msg):
            at = f"{where} (template {tpl.name})"
            part = tpl.webhook.get(msg.service)
            if part is None:  # no body for this service: the message, as JSON
                method, path = "POST", ""
                body = json.dumps(
                    {"app": msg.app, "trigger": msg.trigger,
                     "message": _render(tpl.message, data, f"{at}.message")}
                )  # fmt: skip
            else:
                method = part.method
                path = _render(part.path, data, f"{at}.webhook.path")
                body = _render(part.body, data, f"{at}.webhook.body")
            hdrs = {"Content-Type": "application/json", **headers}
            for name, value in svc.headers:
                hdrs[name] = secrets.resolve(value, f"{at}: header {name}")
            url = secrets.resolve(svc.url, f"{at}: url").rstrip("/") + path
            await _post(session, method, url, body, hdrs, secrets, at)
    elif msg.service == "slack" and config.slack is not None:
        data = _data(config, msg, "slack")
        for tpl in _templates(config, msg):
            at = f"{where} (template {tpl.name})"
            payload: dict[str, Any] = {"text": _render(tpl.message, data, f"{at}.message")}
            if msg.recipient:
                payload["channel"] = msg.recipient
            for field, source in (
                ("attachments", tpl.slack_attachments),
                ("blocks", tpl.slack_blocks),
            ):
                if source.strip():
                    try:
                        payload[field] = json.loads(_render(source, data, f"{at}.slack.{field}"))
                    except ValueError as exc:
                        raise DeliveryError(f"{at}.slack.{field}: not JSON: {exc}") from None
            url = secrets.resolve(config.slack.url, f"{at}: url")
            hdrs = {"Content-Type": "application/json", **headers}
            await _post(session, "POST", url, json.dumps(payload), hdrs, secrets, at)
    elif msg.service == "email" and config.email is not None:
        if not msg.recipient or any(c in msg.recipient for c in "\r\n<>"):
            raise DeliveryError(
                f"{where}: recipient {msg.recipient!r} is not an address (subscribe with "
                "the address as the annotation's value)"
            )
        data = _data(config, msg, "email")
        for tpl in _templates(config, msg):
            at = f"{where} (template {tpl.name})"
            mail = EmailMessage()
            mail["Subject"] = _render(tpl.email_subject, data, f"{at}.email.subject") or msg.trigger
            mail["From"] = secrets.resolve(config.email.sender, f"{at}: from")
            mail["To"] = msg.recipient
            mail["X-Hub-Notification-Id"] = msg.event_key
            mail.set_content(_render(tpl.message, data, f"{at}.message"))
            user = secrets.resolve(config.email.username, f"{at}: username")
            password = secrets.resolve(config.email.password, f"{at}: password")
            host, port = config.email.host, config.email.port
            try:
                await anyio.to_thread.run_sync(
                    partial(_smtp_send, host, port, user, password, mail), limiter=smtp_limiter
                )
            except (OSError, smtplib.SMTPException) as exc:
                raise DeliveryError(secrets.scrub(f"{at}: SMTP {host}:{port}: {exc}")) from None
    else:
        raise DeliveryError(
            f"{where}: service {msg.service!r} is not defined in notifications.yaml"
        )
