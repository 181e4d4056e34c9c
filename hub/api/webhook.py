"""Git push webhooks: check who sent them, and which repositories they name.

GitHub signs the body: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>``.
GitLab sends the secret itself in ``X-Gitlab-Token``. Both are compared in constant time.
When no secret is configured every push is accepted, as Argo CD does; set one whenever
the API is reachable from anywhere but this machine.

A push names its repository under several URLs (HTTPS clone, SSH, web); the hub is given
all of them, so an ApplicationSet written with any of these spellings is refreshed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from hub.errors import HubError

Provider = Literal["github", "gitlab"]

# (object key, field keys) where each provider puts a repository's URLs.
_URL_FIELDS: dict[Provider, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "github": (("repository", ("clone_url", "ssh_url", "html_url", "git_url", "url")),),
    "gitlab": (
        ("project", ("git_http_url", "git_ssh_url", "web_url", "http_url", "ssh_url")),
        ("repository", ("git_http_url", "git_ssh_url", "homepage", "url")),
    ),
}


class WebhookError(HubError):
    """A webhook that is refused; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, kw_only=True)
class Push:
    provider: Provider
    event: str
    repo_urls: tuple[str, ...]

    @property
    def is_push(self) -> bool:
        return self.event in ("push", "Push Hook", "Tag Push Hook")


def provider_of(headers: Mapping[str, str]) -> Provider:
    if "X-GitHub-Event" in headers:
        return "github"
    if "X-Gitlab-Event" in headers:
        return "gitlab"
    raise WebhookError(
        "not a GitHub or GitLab webhook (no X-GitHub-Event or X-Gitlab-Event header)", status=400
    )


def verify(provider: Provider, headers: Mapping[str, str], body: bytes, secret: str | None) -> None:
    """Raise ``WebhookError`` (401) unless the request carries ``secret``; None: accept."""
    if secret is None:
        return
    if provider == "github":
        signature = headers.get("X-Hub-Signature-256", "")
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            raise WebhookError("webhook signature (X-Hub-Signature-256) does not match", status=401)
    else:
        token = headers.get("X-Gitlab-Token", "")
        if not hmac.compare_digest(token.encode(), secret.encode()):
            raise WebhookError("webhook token (X-Gitlab-Token) does not match", status=401)


def parse_push(provider: Provider, headers: Mapping[str, str], body: bytes) -> Push:
    event = headers.get("X-GitHub-Event" if provider == "github" else "X-Gitlab-Event", "")
    try:
        payload: Any = json.loads(body or b"{}")
    except RecursionError:
        raise WebhookError("webhook body is JSON nested too deeply", status=400) from None
    except (ValueError, UnicodeDecodeError):
        raise WebhookError("webhook body is not JSON", status=400) from None
    if not isinstance(payload, dict):
        raise WebhookError("webhook body is not a JSON object", status=400)
    urls: list[str] = []
    for key, fields in _URL_FIELDS[provider]:
        section = payload.get(key)
        if not isinstance(section, dict):
            continue
        for f in fields:
            value = section.get(f)
            if isinstance(value, str) and value and value not in urls:
                urls.append(value)
    return Push(provider=provider, event=event, repo_urls=tuple(urls))
