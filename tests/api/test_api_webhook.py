"""POST /api/webhook/git: GitHub HMAC and GitLab token checks, repository URLs to the hub."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.api.conftest import WEBHOOK_SECRET
from tests.api.fleet import REPO, RecordingHub, run_client

Client = TestClient[Any, Any]

GITHUB_PUSH = {
    "ref": "refs/heads/main",
    "repository": {
        "clone_url": REPO,
        "ssh_url": "git@git.example.com:platform/fleet.git",
        "html_url": "https://git.example.com/platform/fleet",
    },
}
GITLAB_PUSH = {
    "object_kind": "push",
    "project": {
        "git_http_url": REPO,
        "git_ssh_url": "git@git.example.com:platform/fleet.git",
        "web_url": "https://git.example.com/platform/fleet",
    },
    "repository": {
        "url": "git@git.example.com:platform/fleet.git",
        "homepage": "https://git.example.com/platform/fleet",
    },
}
GITHUB_URLS = (
    REPO,
    "git@git.example.com:platform/fleet.git",
    "https://git.example.com/platform/fleet",
)


def signed(body: bytes, secret: str = WEBHOOK_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post(make_app: Any, headers: dict[str, str], body: bytes, **kw: Any) -> tuple[int, Any]:
    async def scenario(client: Client) -> tuple[int, Any]:
        response = await client.post(
            "/api/webhook/git", data=body, headers={"Content-Type": "application/json", **headers}
        )
        return response.status, await response.json()

    return run_client(make_app(**kw), scenario)


def test_a_signed_github_push_names_every_url_of_its_repository(
    make_app: Any, hub: RecordingHub
) -> None:
    body = json.dumps(GITHUB_PUSH).encode()
    status, doc = post(
        make_app, {"X-GitHub-Event": "push", "X-Hub-Signature-256": signed(body)}, body
    )
    assert status == 200, doc
    assert doc["matched"] == 1
    assert hub.calls == [("push", GITHUB_URLS)]


def test_a_gitlab_push_with_the_token_is_accepted(make_app: Any, hub: RecordingHub) -> None:
    body = json.dumps(GITLAB_PUSH).encode()
    status, doc = post(
        make_app, {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": WEBHOOK_SECRET}, body
    )
    assert status == 200, doc
    assert hub.calls == [
        (
            "push",
            (
                REPO,
                "git@git.example.com:platform/fleet.git",
                "https://git.example.com/platform/fleet",
            ),
        )
    ]


@pytest.mark.parametrize(
    "headers",
    [
        {"X-GitHub-Event": "push"},
        {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + "0" * 64},
        {"X-GitHub-Event": "push", "X-Hub-Signature-256": "SIGNED_WITH_OTHER_SECRET"},
        {"X-Gitlab-Event": "Push Hook"},
        {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "not-the-secret"},
    ],
)
def test_a_push_without_the_right_signature_or_token_is_refused(
    make_app: Any, hub: RecordingHub, headers: dict[str, str]
) -> None:
    body = json.dumps(GITHUB_PUSH).encode()
    if headers.get("X-Hub-Signature-256") == "SIGNED_WITH_OTHER_SECRET":
        headers = {**headers, "X-Hub-Signature-256": signed(body, "another-secret")}
    status, doc = post(make_app, headers, body)
    assert status == 401
    assert WEBHOOK_SECRET not in json.dumps(doc)
    assert hub.calls == []


def test_a_body_changed_after_signing_is_refused(make_app: Any, hub: RecordingHub) -> None:
    body = json.dumps(GITHUB_PUSH).encode()
    tampered = body.replace(b"main", b"evil")
    status, _ = post(
        make_app, {"X-GitHub-Event": "push", "X-Hub-Signature-256": signed(body)}, tampered
    )
    assert status == 401
    assert hub.calls == []


def test_without_a_secret_pushes_are_accepted_as_argo_cd_does(
    make_app: Any, hub: RecordingHub
) -> None:
    body = json.dumps(GITHUB_PUSH).encode()
    status, _ = post(make_app, {"X-GitHub-Event": "push"}, body, secret=None)
    assert status == 200
    assert hub.calls == [("push", GITHUB_URLS)]


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({}, b"{}", 400),  # neither provider
        ({"X-GitHub-Event": "push"}, b"[not json", 400),
        ({"X-GitHub-Event": "ping"}, b'{"zen": "hi"}', 200),  # acknowledged, nothing fetched
    ],
)
def test_other_requests(
    make_app: Any, hub: RecordingHub, headers: dict[str, str], body: bytes, status: int
) -> None:
    got, _ = post(
        make_app, {**headers, "X-Hub-Signature-256": signed(body)} if headers else headers, body
    )
    assert got == status
    assert hub.calls == []


def test_webhooks_are_counted(make_app: Any) -> None:
    body = json.dumps(GITHUB_PUSH).encode()

    async def scenario(client: Client) -> str:
        await client.post(
            "/api/webhook/git",
            data=body,
            headers={"X-GitHub-Event": "push", "X-Hub-Signature-256": signed(body)},
        )
        await client.post("/api/webhook/git", data=body, headers={"X-GitHub-Event": "push"})
        return await (await client.get("/metrics")).text()

    text = run_client(make_app(), scenario)
    assert 'hub_webhook_events_total{provider="github",result="accepted"} 1.0' in text
    assert 'hub_webhook_events_total{provider="github",result="rejected"} 1.0' in text
