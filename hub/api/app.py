"""The HTTP API of a running hub: JSON endpoints, dashboard, webhook, metrics.

``create_api_app`` builds the aiohttp application; ``hub serve`` runs it (127.0.0.1 by
default). Every JSON route is declared once in ``ROUTES``; the router and the OpenAPI
description (``GET /api/openapi.json``) are both made from that table, so they cannot
disagree. Who may do what is Argo CD's RBAC (``hub.auth``, docs/access.md): a request
carries ``Authorization: Bearer <token>`` (a user's or project role's token, or the
bootstrap admin token of ``hub.api.token``); reads without one act as the anonymous
subject (the policy's ``policy.default``) and are refused when the API listens beyond
loopback or ``require_auth`` is set; every action needs a token whose subject the policy
allows (else 401/403), lists show only what the subject may ``get``, and every action
is written to the audit trail.

Reads go to the store through ``hub.api.views.FleetView`` in worker threads (SQLite is
blocking); actions and live connection states go to the running hub through
``hub.handle.HubHandle``. Without a handle (``handle=None``) the API still serves reads,
answers ``/readyz`` with 503 and actions with 503.

Hardening, for a server that a browser on this machine can reach:

- every request's ``Host`` must be an allowed host name (``allowed_hosts``: by default
  localhost, 127.0.0.1, ::1 and the bound address; ``hub serve --allowed-host``), else
  421. A web page that re-binds its own DNS name to 127.0.0.1 (DNS rebinding) sends its
  own name as ``Host``, so it cannot read diffs or ConfigMap contents;
- a request body must arrive within ``body_timeout`` seconds (408), and JSON nested too
  deeply for the parser is a 400, not a 500;
- push webhooks trigger at most one Git fetch per repository per ``webhook_interval``
  seconds: the first is answered 200 and fetched now, later ones inside the interval are
  coalesced into one fetch at its end (202), and when too many repositories are waiting
  the answer is 429.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from aiohttp import web

from clusters.errors import ClusterError
from hub.api import openapi
from hub.api.token import token_matches
from hub.api.views import AppFilter, FleetView, NotFound, Scope, appset_project
from hub.api.webhook import WebhookError, parse_push, provider_of, verify
from hub.apps import AppRecord
from hub.auth import audit
from hub.auth.policy import Authorizer, Decision, PolicyCache
from hub.auth.tokens import (
    ADMIN_SUBJECT,
    ADMIN_TOKEN_ID,
    ANONYMOUS,
    Principal,
    TokenError,
    authenticate,
    is_hub_token,
)
from hub.errors import HubError, HubUsageError
from hub.handle import HubHandle
from hub.home import open_store
from hub.logs import scrub
from hub.metrics import Metrics
from hub.rollups import Connection

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
EVENTS_POLL_S = 2.0
EVENTS_PING_S = 15.0
MAX_BODY = 10 * 1024 * 1024  # GitHub push payloads can be several MiB
DEFAULT_BODY_TIMEOUT_S = 30.0
DEFAULT_WEBHOOK_INTERVAL_S = 10.0
MAX_WEBHOOK_PENDING = 256  # distinct repositories waiting for their deferred fetch
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class DiffView:
    """``GET /api/v1/applications/{name}/diff``: the live cluster against Git."""

    revision: str
    status: str  # Synced | OutOfSync
    diff: str  # unified diff, Secret values masked; empty when in sync
    warnings: tuple[str, ...] = ()
    # Live sync status per resource: {group, kind, namespace, name, sync, reason}
    resources: tuple[Mapping[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "status": self.status,
            "diff": self.diff,
            "warnings": list(self.warnings),
            "resources": [dict(r) for r in self.resources],
        }


Differ = Callable[[AppRecord], DiffView]
"""Computes an Application's diff; blocking (called in a worker thread)."""


@dataclass(kw_only=True)
class ApiState:
    home: Path
    handle: HubHandle | None
    token: str
    metrics: Metrics
    webhook_secret: str | None
    differ: Differ
    limiter: anyio.CapacityLimiter = field(default_factory=lambda: anyio.CapacityLimiter(8))
    # Set on shutdown so open event streams end at once instead of holding the server's
    # graceful-shutdown timeout (a dashboard left open must not delay SIGTERM).
    closing: asyncio.Event | None = None
    # The newest rollup for event streams per subject, shared: N open dashboards of one
    # subject cost one query. subject -> (monotonic time, digest, JSON text)
    snapshots: dict[str, tuple[float, str, str]] = field(default_factory=dict)
    # Reads need a token (the API listens beyond loopback, or --require-auth).
    require_auth: bool = False
    policy: PolicyCache | None = None
    allowed_hosts: frozenset[str] = frozenset(LOOPBACK_HOSTS)
    body_timeout: float = DEFAULT_BODY_TIMEOUT_S
    webhook_interval: float = DEFAULT_WEBHOOK_INTERVAL_S
    # repository URL (``_repo_key``) -> monotonic time of its last fetch / its deferred fetch
    webhook_fetched: dict[str, float] = field(default_factory=dict)
    webhook_pending: dict[str, asyncio.Task[None]] = field(default_factory=dict)


_VIEW = web.AppKey("view", FleetView)
_STATE = web.AppKey("state", ApiState)
_PRINCIPAL = web.RequestKey("principal", Principal)
_AUTHORIZER = web.RequestKey("authorizer", Authorizer)


def engine_differ(home: Path) -> Differ:
    """Diff through the sync engine, as ``hub app diff -f`` does (read-only on the cluster)."""

    def run(record: AppRecord) -> DiffView:
        from clusters.connect import connect
        from clusters.kube import KubeClient
        from hub.services import open_services
        from hub.sync.engine import diff_application_blocking
        from hub.sync.model import parse_application

        if record.cluster is None:
            raise HubError(
                f"application {record.name}: its destination is not a registered cluster"
            )
        application = parse_application(record.manifest(), source_file=f"app {record.name}")
        with open_services(home) as parts:
            kube = KubeClient(connect(parts.registry, record.cluster))
            result = diff_application_blocking(
                kube, application, sources=parts.repos, jq_runner=parts.jq, history=parts.history
            )
        return DiffView(
            revision=result.revision,
            status=result.comparison.status.value,
            diff=result.comparison.diff_text(),
            warnings=tuple(result.warnings),
            resources=tuple(
                {
                    "group": r.key.group,
                    "kind": r.key.kind,
                    "namespace": r.key.namespace,
                    "name": r.key.name,
                    "sync": r.status.value,
                    "reason": "" if r.reason is None else str(r.reason.value),
                }
                for r in result.comparison.resources
            ),
        )

    return run


# ---------------------------------------------------------------- helpers


def _state(request: web.Request) -> ApiState:
    return request.app[_STATE]


def _view(request: web.Request) -> FleetView:
    return request.app[_VIEW]


async def _in_thread(request: web.Request, fn: Callable[[], T]) -> T:
    return await anyio.to_thread.run_sync(fn, limiter=_state(request).limiter)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


def _error(status: int, message: str) -> web.Response:
    return _json({"error": {"status": status, "message": scrub(message)}}, status=status)


def _live(request: web.Request) -> dict[str, Connection] | None:
    handle = _state(request).handle
    if handle is None:
        return None
    return {
        name: Connection(state=c.state, message=c.message, since=c.since)
        for name, c in handle.cluster_connections().items()
    }


def _query(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    return value or None


def _unauthorized(message: str) -> web.Response:
    response = _error(401, message)
    response.headers["WWW-Authenticate"] = 'Bearer realm="gitops-hub"'
    return response


async def _resolve_principal(request: web.Request) -> Principal | web.Response:
    """Who the request acts as: anonymous without ``Authorization``, else the token's
    subject; 401 for a header that carries no valid token."""
    header = request.headers.get("Authorization")
    if header is None:
        return ANONYMOUS
    state = _state(request)
    if token_matches(state.token, header):
        return Principal(subject=ADMIN_SUBJECT, token_id=ADMIN_TOKEN_ID)
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and is_hub_token(value):
        store = _view(request).store
        try:
            return await _in_thread(request, lambda: authenticate(store, value))
        except TokenError as exc:
            return _unauthorized(f"{exc}; `hub token create` makes a new one")
    return _unauthorized("the token is not valid: expected Authorization: Bearer <token>")


def _principal(request: web.Request) -> Principal:
    """The principal the middleware resolved (always set on the JSON routes)."""
    return request[_PRINCIPAL]


async def _authorizer(request: web.Request) -> Authorizer:
    """The policy in force, looked up once per request."""
    if _AUTHORIZER in request:
        return request[_AUTHORIZER]
    policy = _state(request).policy
    assert policy is not None
    authorizer = await _in_thread(request, policy.current)
    request[_AUTHORIZER] = authorizer
    return authorizer


async def _scope(request: web.Request) -> Scope:
    """What the request's subject may ``get``."""
    subject = (_principal(request)).subject
    authz = await _authorizer(request)
    return Scope(
        app=lambda project, name: authz.can(subject, "applications", "get", f"{project}/{name}"),
        appset=lambda project, name: authz.can(
            subject, "applicationsets", "get", f"{project}/{name}"
        ),
        cluster=lambda name: authz.can(subject, "clusters", "get", name),
    )


def _remote(request: web.Request) -> str:
    return request.remote or ""


async def _audit(
    request: web.Request, action: str, target: str, result: str, detail: str = ""
) -> None:
    principal = _principal(request)
    store = _view(request).store
    await _in_thread(
        request,
        lambda: audit.record(
            store,
            actor=principal.subject,
            token_id=principal.token_id,
            via="api",
            remote=_remote(request),
            action=action,
            target=target,
            result=result,
            detail=detail,
        ),
    )


def _forbidden(decision: Decision) -> web.Response:
    who = decision.subject or "anonymous"
    body = {
        "error": {
            "status": 403,
            "message": scrub(f"permission denied: {decision.message()}"),
            "subject": who,
            "action": decision.action,
            "resource": decision.resource,
            "object": decision.object,
            "rule": decision.rule,
        }
    }
    return _json(body, status=403)


async def _authorize(
    request: web.Request, resource: str, action: str, obj: str, audit_action: str
) -> web.Response | None:
    """None when the request's subject may ``action`` ``resource`` ``obj``; else the 401
    or 403 to answer, recorded in the audit trail as refused."""
    principal = _principal(request)
    if principal.anonymous:
        await _audit(request, audit_action, obj, "refused", "no token")
        return _unauthorized("this action needs a token: Authorization: Bearer <token>")
    decision = (await _authorizer(request)).decide(principal.subject, resource, action, obj)
    if decision.allowed:
        return None
    await _audit(request, audit_action, obj, "refused", decision.message())
    return _forbidden(decision)


async def _may_get(request: web.Request, resource: str, obj: str) -> web.Response | None:
    subject = (_principal(request)).subject
    decision = (await _authorizer(request)).decide(subject, resource, "get", obj)
    return None if decision.allowed else _forbidden(decision)


def _require_handle(request: web.Request) -> HubHandle | web.Response:
    handle = _state(request).handle
    if handle is None:
        return _error(503, "no hub is running behind this API; start `hub serve`")
    if not handle.ready():
        # `hub serve` listens (and publishes serve.json) before its first Git cycle ends.
        response = _error(503, "the hub is starting (see /readyz); retry in a moment")
        response.headers["Retry-After"] = "1"
        return response
    return handle


class BodyTimeout(HubError):
    """The client stopped sending its request body."""


async def _read_body(request: web.Request) -> bytes:
    """The whole body, or ``BodyTimeout`` (408) when it does not arrive in time."""
    limit = _state(request).body_timeout
    try:
        async with asyncio.timeout(limit):
            return await request.read()
    except TimeoutError:
        raise BodyTimeout(
            f"the request body did not arrive within {limit:g} seconds (hub serve --body-timeout)"
        ) from None


def parse_json(raw: bytes) -> Any:
    """JSON text to data; ``HubUsageError`` for anything that is not (or nests too deep)."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise HubUsageError("request body is JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise HubUsageError("request body is not JSON") from None


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    raw = await _read_body(request)
    if not raw:
        return {}
    data = parse_json(raw)
    if not isinstance(data, dict):
        raise HubUsageError("request body must be a JSON object")
    return data


# ---------------------------------------------------------------- handlers: probes


async def healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    handle = _state(request).handle
    if handle is None or not handle.ready():
        return _json({"status": "not ready"}, status=503)
    return _json({"status": "ready"})


async def metrics_text(request: web.Request) -> web.Response:
    m = _state(request).metrics
    body = await _in_thread(request, m.render)
    response = web.Response(body=body)
    response.headers["Content-Type"] = m.content_type
    return response


async def openapi_json(request: web.Request) -> web.Response:
    return _json(openapi.document(ROUTES))


# ---------------------------------------------------------------- handlers: reads


async def get_status(request: web.Request) -> web.Response:
    live, scope = _live(request), await _scope(request)
    appset, cluster = _query(request, "appset"), _query(request, "cluster")
    status = await _in_thread(
        request,
        lambda: _view(request).status(live=live, appset=appset, cluster=cluster, scope=scope),
    )
    return _json(status.to_json())


async def list_clusters(request: web.Request) -> web.Response:
    live, scope = _live(request), await _scope(request)
    return _json({"items": await _in_thread(request, lambda: _view(request).clusters(live, scope))})


async def get_cluster(request: web.Request) -> web.Response:
    live, name = _live(request), request.match_info["name"]
    denied = await _may_get(request, "clusters", name)
    if denied is not None:
        return denied
    return _json(await _in_thread(request, lambda: _view(request).cluster(name, live)))


async def list_appsets(request: web.Request) -> web.Response:
    scope = await _scope(request)
    return _json({"items": await _in_thread(request, lambda: _view(request).appsets(scope))})


async def get_appset(request: web.Request) -> web.Response:
    name, scope = request.match_info["name"], await _scope(request)
    try:
        record = await _in_thread(request, lambda: _view(request).appset_record(name))
    except NotFound:
        denied = await _may_get(request, "applicationsets", f"*/{name}")
        if denied is not None:
            return denied
        raise
    denied = await _may_get(request, "applicationsets", f"{appset_project(record.manifest)}/{name}")
    if denied is not None:
        return denied
    return _json(await _in_thread(request, lambda: _view(request).appset(name, scope)))


async def _readable_app(request: web.Request) -> AppRecord | web.Response:
    """The Application named in the path, or the 403 (404) for it."""
    name = request.match_info["name"]
    try:
        record = await _in_thread(request, lambda: _view(request).record(name))
    except NotFound:
        # 404 only to whoever may see any project's `name`: no probing for names.
        denied = await _may_get(request, "applications", f"*/{name}")
        if denied is not None:
            return denied
        raise
    denied = await _may_get(request, "applications", f"{record.project}/{name}")
    return record if denied is None else denied


async def list_apps(request: web.Request) -> web.Response:
    flt = AppFilter(
        cluster=_query(request, "cluster"),
        appset=_query(request, "appset"),
        sync=_query(request, "sync"),
        health=_query(request, "health"),
    )
    scope = await _scope(request)
    return _json({"items": await _in_thread(request, lambda: _view(request).app_list(flt, scope))})


async def get_app(request: web.Request) -> web.Response:
    record = await _readable_app(request)
    if isinstance(record, web.Response):
        return record
    return _json(await _in_thread(request, lambda: _view(request).app(record.name)))


async def get_app_resources(request: web.Request) -> web.Response:
    record = await _readable_app(request)
    if isinstance(record, web.Response):
        return record

    def read() -> dict[str, Any]:
        origin, items = _view(request).resources(record)
        return {"items": items, "from": origin}

    return _json(await _in_thread(request, read))


async def get_app_history(request: web.Request) -> web.Response:
    record = await _readable_app(request)
    if isinstance(record, web.Response):
        return record
    name = record.name
    return _json({"items": await _in_thread(request, lambda: _view(request).app_history(name))})


async def get_app_diff(request: web.Request) -> web.Response:
    record = await _readable_app(request)
    if isinstance(record, web.Response):
        return record
    differ = _state(request).differ
    result = await _in_thread(request, lambda: differ(record))
    return _json(result.to_json())


# ---------------------------------------------------------------- handlers: actions


async def _action(
    request: web.Request,
    action: str,
    rbac_action: str,
    run: Callable[[HubHandle, str, str], Awaitable[dict[str, Any]]],
    detail: str = "",
) -> web.Response:
    """One action on the Application in the path: 404, 401/403 (audited), 503, or queued
    (audited ok, or error when the hub refused it). ``run`` gets (handle, name, who)."""
    name = request.match_info["name"]
    try:
        record = await _in_thread(request, lambda: _view(request).record(name))
    except NotFound:
        denied = await _authorize(
            request, "applications", rbac_action, f"*/{name}", f"app.{action}"
        )
        if denied is not None:
            return denied  # no probing for names
        raise
    obj = f"{record.project}/{name}"
    denied = await _authorize(request, "applications", rbac_action, obj, f"app.{action}")
    if denied is not None:
        return denied
    handle = _require_handle(request)
    if isinstance(handle, web.Response):
        return handle
    who = (_principal(request)).subject
    try:
        extra = await run(handle, name, who)
    except NotFound:
        raise
    except HubError as exc:
        await _audit(request, f"app.{action}", obj, "error", str(exc))
        return _error(409, str(exc))
    await _audit(request, f"app.{action}", obj, "ok", detail)
    return _json({"application": name, "queued": True, **extra}, status=202)


async def sync_app(request: web.Request) -> web.Response:
    body = await _body(request)
    prune = body.get("prune", False)
    revision = body.get("revision")
    if not isinstance(prune, bool) or not (revision is None or isinstance(revision, str)):
        raise HubUsageError('body: {"prune": bool, "revision": string|null}')

    async def run(handle: HubHandle, name: str, who: str) -> dict[str, Any]:
        await handle.request_sync(name, prune=prune, revision=revision or None, who=who)
        return {"action": "sync"}

    detail = f"prune={prune} revision={revision or 'target'}"
    return await _action(request, "sync", "sync", run, detail)


async def rollback_app(request: web.Request) -> web.Response:
    body = await _body(request)
    entry = body.get("id")
    if not isinstance(entry, int) or isinstance(entry, bool):
        raise HubUsageError('body: {"id": <history id, an integer>}')

    async def run(handle: HubHandle, name: str, who: str) -> dict[str, Any]:
        await handle.request_rollback(name, entry, who=who)
        return {"action": "rollback", "id": entry}

    # Argo CD: a rollback is a sync to an earlier revision.
    return await _action(request, "rollback", "sync", run, f"id={entry}")


async def refresh_app(request: web.Request) -> web.Response:
    async def run(handle: HubHandle, name: str, who: str) -> dict[str, Any]:
        await handle.request_refresh(name)
        return {"action": "refresh"}

    # Argo CD: refreshing needs `get` (it changes nothing but the comparison).
    return await _action(request, "refresh", "get", run)


async def refresh_all(request: web.Request) -> web.Response:
    denied = await _authorize(request, "applications", "get", "*/*", "app.refresh")
    if denied is not None:
        return denied
    handle = _require_handle(request)
    if isinstance(handle, web.Response):
        return handle
    await handle.request_refresh(None)
    await _audit(request, "app.refresh", "*/*", "ok")
    return _json({"application": None, "queued": True, "action": "refresh"}, status=202)


# ---------------------------------------------------------------- handlers: access


async def get_session(request: web.Request) -> web.Response:
    """Who the token is, and what it may do with each Application it can see (the
    dashboard shows write buttons from this)."""
    principal = _principal(request)
    authz = await _authorizer(request)
    subject = principal.subject
    scope = await _scope(request)
    apps = await _in_thread(request, lambda: _view(request).apps.list_apps())
    can: dict[str, list[str]] = {}
    for a in apps:
        if not scope.app(a.project, a.name):
            continue
        obj = f"{a.project}/{a.name}"
        actions = ["get"]
        if not principal.anonymous and authz.can(subject, "applications", "sync", obj):
            actions += ["sync", "rollback", "refresh"]
        elif not principal.anonymous:
            actions.append("refresh")
        can[a.name] = actions
    return _json(
        {
            "subject": subject or None,
            "tokenId": principal.token_id,
            "anonymous": principal.anonymous,
            "applications": can,
            "refreshAll": not principal.anonymous
            and authz.can(subject, "applications", "get", "*/*"),
            "audit": not principal.anonymous and authz.can(subject, "audit", "get", "*"),
        }
    )


async def get_audit(request: web.Request) -> web.Response:
    from datetime import UTC, datetime

    from hub.auth.tokens import parse_duration

    principal = _principal(request)
    if principal.anonymous:
        return _unauthorized("the audit trail needs a token: Authorization: Bearer <token>")
    decision = (await _authorizer(request)).decide(principal.subject, "audit", "get", "*")
    if not decision.allowed:
        return _forbidden(decision)
    since_text = _query(request, "since")
    since = None if since_text is None else datetime.now(UTC) - parse_duration(since_text, "since")
    store = _view(request).store
    rows = await _in_thread(request, lambda: audit.entries(store, since=since))
    return _json({"items": [e.to_json() for e in rows]})


async def git_webhook(request: web.Request) -> web.Response:
    state = _state(request)
    body = await _read_body(request)
    provider = "unknown"
    try:
        provider = provider_of(request.headers)
        verify(provider, request.headers, body, state.webhook_secret)
        push = parse_push(provider, request.headers, body)
    except WebhookError as exc:
        state.metrics.count_webhook(provider, "rejected")
        log.warning("webhook refused: %s", exc)
        return _error(exc.status, str(exc))
    if not push.is_push:  # e.g. GitHub's "ping" when the hook is created
        state.metrics.count_webhook(provider, "ignored")
        return _json({"event": push.event, "matched": 0, "ignored": True})
    handle = state.handle
    if handle is None:
        state.metrics.count_webhook(provider, "no-hub")
        return _error(503, "no hub is running behind this API")
    urls = list(push.repo_urls)
    # Keyed by each URL, so that adding other URLs to a push cannot dodge the limit.
    names = {_repo_key(u) for u in urls}
    doc: dict[str, Any] = {"event": push.event, "repositories": urls}
    now = time.monotonic()
    last = max(
        (state.webhook_fetched[n] for n in names if n in state.webhook_fetched), default=None
    )
    if last is None or now - last >= state.webhook_interval:
        for n in names:
            state.webhook_fetched[n] = now
        _forget_old_pushes(state, now)
        matched = await handle.notify_git_push(urls)
        state.metrics.count_webhook(provider, "accepted")
        log.info("%s push for %s matched %d repositories", provider, push.repo_urls, matched)
        return _json({**doc, "matched": matched})
    delay = last + state.webhook_interval - now
    if any(n in state.webhook_pending for n in names):
        state.metrics.count_webhook(provider, "coalesced")
        return _json({**doc, "queued": True, "coalesced": True, "fetchIn": delay}, status=202)
    if len(set(state.webhook_pending.values())) >= MAX_WEBHOOK_PENDING:
        state.metrics.count_webhook(provider, "throttled")
        response = _error(429, "too many repositories are waiting for a fetch; retry later")
        response.headers["Retry-After"] = str(max(1, round(state.webhook_interval)))
        return response

    async def fetch_later() -> None:
        try:
            await asyncio.sleep(delay)
            fetched_at = time.monotonic()
            for n in names:
                state.webhook_fetched[n] = fetched_at
            matched = await handle.notify_git_push(urls)
            log.info("deferred push for %s matched %d repositories", push.repo_urls, matched)
        finally:
            for n in names:
                if state.webhook_pending.get(n) is task:
                    del state.webhook_pending[n]

    task = asyncio.get_running_loop().create_task(fetch_later())
    for n in names:
        state.webhook_pending[n] = task
    state.metrics.count_webhook(provider, "deferred")
    return _json({**doc, "queued": True, "coalesced": False, "fetchIn": delay}, status=202)


def _repo_key(url: str) -> str:
    """One spelling per repository URL for the webhook rate limit."""
    key = url.strip().lower().rstrip("/")
    return key.removesuffix(".git")


def _forget_old_pushes(state: ApiState, now: float) -> None:
    """Keep the per-repository fetch times bounded (webhooks may name any URL)."""
    if len(state.webhook_fetched) > 4 * MAX_WEBHOOK_PENDING:
        for key, when in list(state.webhook_fetched.items()):
            if now - when >= state.webhook_interval:
                del state.webhook_fetched[key]


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: ``status`` with the fleet rollup whenever it changes."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    state = _state(request)
    closing = state.closing
    assert closing is not None
    last_digest = ""
    last_sent = time.monotonic()
    try:
        while not closing.is_set():
            digest, text = await _snapshot(request)
            if digest != last_digest:
                await response.write(f"event: status\ndata: {text}\n\n".encode())
                last_digest, last_sent = digest, time.monotonic()
            elif time.monotonic() - last_sent >= EVENTS_PING_S:
                await response.write(b": ping\n\n")
                last_sent = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closing.wait(), EVENTS_POLL_S)
    except ConnectionResetError:
        pass  # the page went away
    return response


async def _snapshot(request: web.Request) -> tuple[str, str]:
    """The current rollup (digest, JSON), computed at most once per half poll period."""
    state = _state(request)
    subject = (_principal(request)).subject
    now = time.monotonic()
    cached = state.snapshots.get(subject)
    if cached is not None and now - cached[0] < EVENTS_POLL_S / 2:
        return cached[1], cached[2]
    view, live, scope = _view(request), _live(request), await _scope(request)
    doc = (await _in_thread(request, partial(view.status, live=live, scope=scope))).to_json()
    # generatedAt changes every time; only a change of the counts is news.
    digest = hashlib.sha256(
        json.dumps({**doc, "generatedAt": ""}, sort_keys=True).encode()
    ).hexdigest()
    text = json.dumps(doc)
    if len(state.snapshots) > 256:  # one per subject with a stream open; keep it bounded
        state.snapshots.clear()
    state.snapshots[subject] = (now, digest, text)
    return digest, text


# ---------------------------------------------------------------- dashboard


_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


async def dashboard(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers=_SECURITY_HEADERS)


# ---------------------------------------------------------------- the route table


@dataclass(frozen=True, kw_only=True)
class Route:
    """One JSON endpoint: how it is served and how it is documented."""

    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    response: str  # a schema name in hub.api.openapi.SCHEMAS
    status: int = 200
    auth: bool = False
    query: tuple[tuple[str, str], ...] = ()  # (name, description)
    body: str | None = None  # a request schema name
    errors: tuple[int, ...] = ()
    content_type: str = "application/json"


ROUTES: tuple[Route, ...] = (
    Route(method="GET", path="/healthz", handler=healthz, summary="Liveness", tag="probes",
          response="Probe"),
    Route(method="GET", path="/readyz", handler=readyz, tag="probes", response="Probe",
          summary="Readiness: sources loaded and every cluster worker started", errors=(503,)),
    Route(method="GET", path="/metrics", handler=metrics_text, tag="probes", response="Metrics",
          summary="Prometheus metrics (text format)", content_type="text/plain"),
    Route(method="GET", path="/api/openapi.json", handler=openapi_json, tag="meta",
          response="OpenAPI", summary="This description"),
    Route(method="GET", path="/api/v1/status", handler=get_status, tag="rollups",
          response="FleetStatus", summary="Per-cluster rollups, appset x cluster matrix, totals",
          query=(("appset", "only this ApplicationSet"), ("cluster", "only this cluster")),
          errors=(400,)),
    Route(method="GET", path="/api/v1/clusters", handler=list_clusters, tag="clusters",
          response="ClusterList", summary="Registered clusters (never credentials)"),
    Route(method="GET", path="/api/v1/clusters/{name}", handler=get_cluster, tag="clusters",
          response="Cluster", summary="One cluster", errors=(404,)),
    Route(method="GET", path="/api/v1/applicationsets", handler=list_appsets,
          tag="applicationsets", response="AppSetList", summary="ApplicationSets"),
    Route(method="GET", path="/api/v1/applicationsets/{name}", handler=get_appset,
          tag="applicationsets", response="AppSet", errors=(404,),
          summary="One ApplicationSet with its generated Applications and conditions"),
    Route(method="GET", path="/api/v1/applications", handler=list_apps, tag="applications",
          response="AppList", summary="Applications",
          query=(("cluster", "only this cluster"), ("appset", "only this ApplicationSet"),
                 ("sync", "only this sync status"), ("health", "only this health status"))),
    Route(method="GET", path="/api/v1/applications/{name}", handler=get_app,
          tag="applications", response="AppDetail", errors=(404,),
          summary="One Application with resources, conditions and operation state"),
    Route(method="GET", path="/api/v1/applications/{name}/resources",
          handler=get_app_resources, tag="applications", response="ResourceList",
          errors=(404,), summary="The Application's resources"),
    Route(method="GET", path="/api/v1/applications/{name}/diff", handler=get_app_diff,
          tag="applications", response="Diff", errors=(404, 502),
          summary="Live cluster against Git (Secret values masked)"),
    Route(method="GET", path="/api/v1/applications/{name}/history", handler=get_app_history,
          tag="applications", response="HistoryList", errors=(404,),
          summary="Sync history, oldest first"),
    Route(method="POST", path="/api/v1/applications/{name}/sync", handler=sync_app,
          tag="actions", response="Queued", status=202, auth=True, body="SyncRequest",
          errors=(400, 401, 403, 404, 409, 503), summary="Queue a sync"),
    Route(method="POST", path="/api/v1/applications/{name}/rollback", handler=rollback_app,
          tag="actions", response="Queued", status=202, auth=True, body="RollbackRequest",
          errors=(400, 401, 403, 404, 409, 503), summary="Queue a rollback to a history id"),
    Route(method="POST", path="/api/v1/applications/{name}/refresh", handler=refresh_app,
          tag="actions", response="Queued", status=202, auth=True,
          errors=(401, 403, 404, 409, 503), summary="Re-read Git and re-compare one Application"),
    Route(method="POST", path="/api/v1/refresh", handler=refresh_all, tag="actions",
          response="Queued", status=202, auth=True, errors=(401, 403, 503),
          summary="Re-read Git and re-compare every Application"),
    Route(method="GET", path="/api/v1/session", handler=get_session, tag="access",
          response="Session",
          summary="Who the token is, and what it may do with each visible Application"),
    Route(method="GET", path="/api/v1/audit", handler=get_audit, tag="access",
          response="AuditList", auth=True, errors=(400, 401, 403),
          query=(("since", "only entries newer than this duration, e.g. 1h"),),
          summary="The audit trail (needs `audit, get`: role:admin)"),
    Route(method="POST", path="/api/webhook/git", handler=git_webhook, tag="webhook",
          response="WebhookResult", body="PushEvent", errors=(400, 401, 408, 429, 503),
          summary="GitHub/GitLab push: fetch the named repositories now"),
    Route(method="GET", path="/api/events", handler=events, tag="rollups",
          response="EventStream", content_type="text/event-stream",
          summary="Server-sent events: `status` (a FleetStatus) whenever the rollup changes"),
)  # fmt: skip


# ---------------------------------------------------------------- middleware and factory


def host_name(header: str) -> str:
    """The host part of a ``Host`` header, lowercase, without port, brackets or final dot."""
    text = header.strip().lower()
    if text.startswith("["):
        return text[1:].partition("]")[0]
    if text.count(":") == 1:
        text = text.partition(":")[0]
    return text.rstrip(".")


@web.middleware
async def _check_host(request: web.Request, handler: Handler) -> web.StreamResponse:
    header = request.headers.get("Host")
    if header is not None and host_name(header) not in _state(request).allowed_hosts:
        return _error(
            421,
            f"Host {header!r} is not a name of this hub; if you reach it by that name, "
            "start it with `hub serve --allowed-host NAME`",
        )
    return await handler(request)


def _needs_principal(path: str) -> bool:
    return path.startswith("/api/v1/") or path == "/api/events"


@web.middleware
async def _authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Resolve the request's principal for the JSON routes; reads without a token are
    refused when the API requires authentication."""
    if not _needs_principal(request.path):
        return await handler(request)
    principal = await _resolve_principal(request)
    if isinstance(principal, web.Response):
        if request.method != "GET":  # a write with a bad token: who tried is worth knowing
            request[_PRINCIPAL] = ANONYMOUS
            await _audit(request, f"{request.method} {request.path}", "", "refused", "bad token")
        return principal
    if principal.anonymous and _state(request).require_auth and request.method == "GET":
        return _unauthorized(
            "this hub requires a token for reads (it listens beyond loopback, or "
            "--require-auth): Authorization: Bearer <token>"
        )
    request[_PRINCIPAL] = principal
    return await handler(request)


@web.middleware
async def _errors_and_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    route = request.match_info.route.resource
    pattern = route.canonical if route is not None else "(unmatched)"
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except NotFound as exc:
        status = 404
        return _error(404, str(exc))
    except BodyTimeout as exc:
        status = 408
        response = _error(408, str(exc))
        response.force_close()  # the rest of the body may still come: do not read it
        return response
    except RecursionError:
        status = 400
        return _error(400, "request body is JSON nested too deeply")
    except HubUsageError as exc:
        status = 400
        return _error(400, str(exc))
    except HubError as exc:
        status = 502 if pattern.endswith("/diff") else 500
        return _error(status, str(exc))
    except ClusterError as exc:  # the diff reads the cluster: its errors are upstream's
        status = 502
        return _error(status, str(exc))
    finally:
        if pattern.startswith(("/api", "/healthz", "/readyz", "/metrics")) or pattern == "/":
            request.app[_STATE].metrics.count_http_request(pattern, request.method, status)


def create_api_app(
    *,
    home: Path,
    handle: HubHandle | None,
    token: str,
    metrics: Metrics,
    webhook_secret: str | None,
    differ: Differ | None = None,
    allowed_hosts: Iterable[str] = (),
    body_timeout: float = DEFAULT_BODY_TIMEOUT_S,
    webhook_interval: float = DEFAULT_WEBHOOK_INTERVAL_S,
    require_auth: bool = False,
) -> web.Application:
    """The hub's HTTP application. Opens ``home``'s store on startup, closes it on cleanup.

    ``allowed_hosts`` are host names accepted in ``Host`` besides localhost, 127.0.0.1
    and ::1 (``hub serve`` adds the address it is bound to). ``require_auth``: reads
    need a token too (``hub serve`` sets it when it listens beyond loopback).
    """
    app = web.Application(
        middlewares=[_errors_and_metrics, _check_host, _authenticate], client_max_size=MAX_BODY
    )
    app[_STATE] = ApiState(
        home=home,
        handle=handle,
        token=token,
        metrics=metrics,
        webhook_secret=webhook_secret,
        differ=differ or engine_differ(home),
        allowed_hosts=frozenset(
            {*LOOPBACK_HOSTS, *(host_name(h) for h in allowed_hosts if h.strip())}
        ),
        body_timeout=body_timeout,
        webhook_interval=webhook_interval,
        require_auth=require_auth,
    )

    async def store_ctx(app: web.Application) -> Any:
        store = open_store(home)
        app[_VIEW] = FleetView(store)
        policy = PolicyCache(home, store)
        try:
            policy.current()  # a broken policy stops the start, naming the line
        except BaseException:
            store.close()
            raise
        app[_STATE].policy = policy
        yield
        store.close()

    app.cleanup_ctx.append(store_ctx)

    async def open_events(app: web.Application) -> None:
        app[_STATE].closing = asyncio.Event()

    async def end_events(app: web.Application) -> None:
        closing = app[_STATE].closing
        if closing is not None:
            closing.set()
        for task in set(app[_STATE].webhook_pending.values()):
            task.cancel()

    app.on_startup.append(open_events)
    app.on_shutdown.append(end_events)
    for r in ROUTES:
        app.router.add_route(r.method, r.path, r.handler)
    app.router.add_get("/", dashboard)
    app.router.add_static("/static/", STATIC_DIR, append_version=False)

    async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
        for key, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)

    app.on_response_prepare.append(security_headers)
    return app
