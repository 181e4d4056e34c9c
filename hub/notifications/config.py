"""``$HUB_HOME/notifications.yaml``: the ``data`` of an argocd-notifications-cm.

Keys as Argo CD Notifications writes them: ``trigger.<name>`` (a list of
``{when, send, oncePer}``), ``template.<name>`` (``message``, ``webhook.<service>``,
``email.subject``, ``slack.attachments``/``blocks``), ``service.webhook.<name>``
(``url``, ``headers``), ``service.slack`` (an incoming-webhook ``url``),
``service.email`` (``host``, ``port``, ``from``, ``username``, ``password``),
``defaultTriggers`` and ``context``. Each value may be YAML text (as in the ConfigMap)
or already a mapping/list. The catalog triggers and templates below are built in; the
file's entries of the same name replace them. Parsed once into frozen dataclasses; every
error names the file and the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generators.errors import GeneratorError
from generators.gotemplate import Template as GoTemplate
from generators.yamlio import load as load_yaml
from hub.errors import HubUsageError
from hub.notifications.expr import Expr, ExprError, parse

FILENAME = "notifications.yaml"


class NotificationConfigError(HubUsageError):
    """notifications.yaml is wrong; the message names the file and key."""


@dataclass(frozen=True)
class Condition:
    when: Expr
    send: tuple[str, ...]
    once_per: Expr | None = None


@dataclass(frozen=True)
class Trigger:
    name: str
    conditions: tuple[Condition, ...]


@dataclass(frozen=True)
class WebhookPart:
    method: str = "POST"
    path: str = ""
    body: str = ""


@dataclass(frozen=True)
class Template:
    name: str
    message: str = ""
    webhook: Mapping[str, WebhookPart] = field(default_factory=dict)
    email_subject: str = ""
    slack_attachments: str = ""
    slack_blocks: str = ""


@dataclass(frozen=True)
class WebhookService:
    name: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class SlackService:
    url: str


@dataclass(frozen=True)
class EmailService:
    host: str
    port: int
    sender: str
    username: str = ""
    password: str = ""


@dataclass(frozen=True)
class NotificationConfig:
    triggers: Mapping[str, Trigger]
    templates: Mapping[str, Template]
    webhooks: Mapping[str, WebhookService] = field(default_factory=dict)
    slack: SlackService | None = None
    email: EmailService | None = None
    default_triggers: tuple[str, ...] = ()
    context: Mapping[str, str] = field(default_factory=dict)

    def services(self) -> set[str]:
        names = set(self.webhooks)
        if self.slack is not None:
            names.add("slack")
        if self.email is not None:
            names.add("email")
        return names


# The catalog's triggers (the conditions Argo CD ships) and templates in our own words.
_OPERATION = "app.status.operationState != nil and app.status.operationState.phase"
_ROLLOUT = "app.status.rolloutEvent != nil and app.status.rolloutEvent.type"
CATALOG_TRIGGERS: dict[str, list[dict[str, Any]]] = {
    "on-sync-succeeded": [
        {"when": f"{_OPERATION} in ['Succeeded']", "send": ["app-sync-succeeded"]}
    ],
    "on-sync-failed": [
        {"when": f"{_OPERATION} in ['Error', 'Failed']", "send": ["app-sync-failed"]}
    ],
    "on-health-degraded": [
        {"when": "app.status.health.status == 'Degraded'", "send": ["app-health-degraded"]}
    ],
    "on-deployed": [
        {
            "when": f"{_OPERATION} in ['Succeeded'] and app.status.health.status == 'Healthy'",
            "oncePer": "app.status.operationState?.syncResult?.revision",
            "send": ["app-deployed"],
        }
    ],
    # Progressive sync: evaluated on an ApplicationSet's rollout moves (hub.rollout).
    "on-rollout-step-started": [
        {"when": f"{_ROLLOUT} == 'step-started'", "send": ["appset-rollout-step-started"]}
    ],
    "on-rollout-halted": [{"when": f"{_ROLLOUT} == 'halted'", "send": ["appset-rollout-halted"]}],
    "on-rollout-completed": [
        {"when": f"{_ROLLOUT} == 'completed'", "send": ["appset-rollout-completed"]}
    ],
}
CATALOG_TEMPLATES: dict[str, dict[str, Any]] = {
    "app-sync-succeeded": {
        "message": "Application {{.app.metadata.name}} has been successfully synced at "
        "{{.app.status.operationState.finishedAt}}.",
        "email": {"subject": "Application {{.app.metadata.name}} has been successfully synced."},
    },
    "app-sync-failed": {
        "message": "The sync operation of application {{.app.metadata.name}} has failed at "
        "{{.app.status.operationState.finishedAt}} with the following error: "
        "{{.app.status.operationState.message}}",
        "email": {"subject": "Failed to sync application {{.app.metadata.name}}."},
    },
    "app-health-degraded": {
        "message": "Application {{.app.metadata.name}} has degraded.",
        "email": {"subject": "Application {{.app.metadata.name}} has degraded."},
    },
    "app-deployed": {
        "message": "Application {{.app.metadata.name}} is now running new version "
        "{{.app.status.sync.revision}} of deployments manifests.",
        "email": {
            "subject": "New version of an application {{.app.metadata.name}} is up and running."
        },
    },
    "appset-rollout-step-started": {
        "message": "ApplicationSet {{.app.metadata.name}}: step {{.app.status.rolloutEvent.step}}"
        " of {{.app.status.rolloutEvent.steps}} started (revision "
        "{{.app.status.rolloutEvent.revision}}).",
        "email": {"subject": "Rollout of {{.app.metadata.name}}: step started."},
    },
    "appset-rollout-halted": {
        "message": "ApplicationSet {{.app.metadata.name}}: rollout halted at step "
        "{{.app.status.rolloutEvent.step}} by {{.app.status.rolloutEvent.haltedBy}}: "
        "{{.app.status.rolloutEvent.message}}",
        "email": {"subject": "Rollout of {{.app.metadata.name}} halted."},
    },
    "appset-rollout-completed": {
        "message": "ApplicationSet {{.app.metadata.name}}: every step of the rollout is done "
        "(revision {{.app.status.rolloutEvent.revision}}).",
        "email": {"subject": "Rollout of {{.app.metadata.name}} completed."},
    },
}


def load_config(home: Path) -> NotificationConfig | None:
    """The home's notification settings, or None when there is no file (notifications off)."""
    path = home / FILENAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise NotificationConfigError(f"{path}: cannot read: {exc}") from None
    return parse_config(text, str(path))


def _yaml(text: str, where: str) -> Any:
    try:
        return load_yaml(text)
    except GeneratorError as exc:
        raise NotificationConfigError(f"{where}: not valid YAML: {exc}") from None


def _value(raw: Any, where: str) -> Any:
    """A ConfigMap value is YAML text; a mapping written inline is taken as is."""
    return _yaml(raw, where) if isinstance(raw, str) else raw


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise NotificationConfigError(f"{where}: expected a mapping")
    return value


def _str(value: Any, where: str, *, default: str | None = None) -> str:
    if value is None and default is not None:
        return default
    if not isinstance(value, str):
        raise NotificationConfigError(f"{where}: expected a string")
    return value


def _gotemplate(text: str, where: str) -> str:
    if "{{" in text:
        try:
            GoTemplate.parse(text, name=where)
        except GeneratorError as exc:
            raise NotificationConfigError(f"{where}: bad template: {exc}") from None
    return text


def _expr(text: Any, where: str) -> Expr:
    try:
        return parse(_str(text, where))
    except ExprError as exc:
        raise NotificationConfigError(f"{where}: {exc}") from None


def _trigger(name: str, raw: Any, where: str) -> Trigger:
    items = _value(raw, where)
    if not isinstance(items, list) or not items:
        raise NotificationConfigError(f"{where}: expected a list of {{when, send, oncePer}}")
    conditions = []
    for i, item in enumerate(items):
        at = f"{where}[{i}]"
        item = _mapping(item, at)
        unknown = sorted(
            str(k) for k in item if k not in ("when", "send", "oncePer", "description")
        )
        if unknown:
            raise NotificationConfigError(f"{at}: unknown key(s) {', '.join(unknown)}")
        send = item.get("send")
        if not isinstance(send, list) or not all(isinstance(s, str) for s in send) or not send:
            raise NotificationConfigError(f"{at}.send: expected a list of template names")
        once = item.get("oncePer")
        conditions.append(
            Condition(
                when=_expr(item.get("when"), f"{at}.when"),
                send=tuple(send),
                once_per=None if once is None else _expr(once, f"{at}.oncePer"),
            )
        )
    return Trigger(name, tuple(conditions))


def _template(name: str, raw: Any, where: str) -> Template:
    doc = _mapping(_value(raw, where), where)
    webhooks: dict[str, WebhookPart] = {}
    for svc, part in _mapping(doc.get("webhook") or {}, f"{where}.webhook").items():
        at = f"{where}.webhook.{svc}"
        part = _mapping(part, at)
        webhooks[str(svc)] = WebhookPart(
            method=_str(part.get("method"), f"{at}.method", default="POST").upper(),
            path=_gotemplate(_str(part.get("path"), f"{at}.path", default=""), f"{at}.path"),
            body=_gotemplate(_str(part.get("body"), f"{at}.body", default=""), f"{at}.body"),
        )
    email = _mapping(doc.get("email") or {}, f"{where}.email")
    slack = _mapping(doc.get("slack") or {}, f"{where}.slack")
    return Template(
        name=name,
        message=_gotemplate(
            _str(doc.get("message"), f"{where}.message", default=""), f"{where}.message"
        ),
        webhook=webhooks,
        email_subject=_gotemplate(
            _str(email.get("subject"), f"{where}.email.subject", default=""),
            f"{where}.email.subject",
        ),
        slack_attachments=_gotemplate(
            _str(slack.get("attachments"), f"{where}.slack.attachments", default=""),
            f"{where}.slack.attachments",
        ),
        slack_blocks=_gotemplate(
            _str(slack.get("blocks"), f"{where}.slack.blocks", default=""), f"{where}.slack.blocks"
        ),
    )


def _webhook(name: str, raw: Any, where: str) -> WebhookService:
    doc = _mapping(_value(raw, where), where)
    headers: list[tuple[str, str]] = []
    raw_headers = doc.get("headers") or []
    if not isinstance(raw_headers, list):
        raise NotificationConfigError(f"{where}.headers: expected a list of {{name, value}}")
    for i, h in enumerate(raw_headers):
        h = _mapping(h, f"{where}.headers[{i}]")
        headers.append(
            (
                _str(h.get("name"), f"{where}.headers[{i}].name"),
                _str(h.get("value"), f"{where}.headers[{i}].value"),
            )
        )
    return WebhookService(name, _str(doc.get("url"), f"{where}.url"), tuple(headers))


def _email(raw: Any, where: str) -> EmailService:
    doc = _mapping(_value(raw, where), where)
    port = doc.get("port", 25)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise NotificationConfigError(f"{where}.port: expected a port number")
    return EmailService(
        host=_str(doc.get("host"), f"{where}.host"),
        port=port,
        sender=_str(doc.get("from"), f"{where}.from"),
        username=_str(doc.get("username"), f"{where}.username", default=""),
        password=_str(doc.get("password"), f"{where}.password", default=""),
    )


def parse_config(text: str, source: str = FILENAME) -> NotificationConfig:
    """Parse the file's text; ``NotificationConfigError`` names ``source`` and the key."""
    doc = _yaml(text, source)
    if doc is None:
        doc = {}
    doc = _mapping(doc, source)
    triggers = {
        n: _trigger(n, v, f"{source}: catalog trigger.{n}") for n, v in CATALOG_TRIGGERS.items()
    }
    templates = {
        n: _template(n, v, f"{source}: catalog template.{n}") for n, v in CATALOG_TEMPLATES.items()
    }
    webhooks: dict[str, WebhookService] = {}
    slack: SlackService | None = None
    email: EmailService | None = None
    defaults: tuple[str, ...] = ()
    context: dict[str, str] = {}
    for key, raw in doc.items():
        key = str(key)
        where = f"{source}: {key}"
        if key.startswith("trigger."):
            triggers[key[8:]] = _trigger(key[8:], raw, where)
        elif key.startswith("template."):
            templates[key[9:]] = _template(key[9:], raw, where)
        elif key.startswith("service.webhook."):
            webhooks[key[16:]] = _webhook(key[16:], raw, where)
        elif key == "service.slack":
            slack = SlackService(
                _str(_mapping(_value(raw, where), where).get("url"), f"{where}.url")
            )
        elif key == "service.email" or key.startswith("service.email."):
            email = _email(raw, where)
        elif key == "defaultTriggers":
            value = _value(raw, where)
            if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
                raise NotificationConfigError(f"{where}: expected a list of trigger names")
            defaults = tuple(value)
        elif key == "context":
            value = _mapping(_value(raw, where), where)
            context = {str(k): str(v) for k, v in value.items()}
        else:
            raise NotificationConfigError(
                f"{where}: unknown key; expected trigger.<name>, template.<name>, "
                "service.webhook.<name>, service.slack, service.email, defaultTriggers or context"
            )
    for t in triggers.values():
        for c in t.conditions:
            for name in c.send:
                if name not in templates:
                    raise NotificationConfigError(
                        f"{source}: trigger.{t.name}: sends template {name!r}, which is not defined"
                    )
    for name in defaults:
        if name not in triggers:
            raise NotificationConfigError(f"{source}: defaultTriggers: no trigger {name!r}")
    return NotificationConfig(
        triggers=triggers,
        templates=templates,
        webhooks=webhooks,
        slack=slack,
        email=email,
        default_triggers=defaults,
        context=context,
    )
