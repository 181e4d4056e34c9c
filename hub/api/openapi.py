"""The OpenAPI 3.1 description of the JSON API, made from ``hub.api.app.ROUTES``.

Paths and operations come from the route table (so every served route is described);
the schemas below are written by hand from the documents ``hub.api.views`` and
``hub.rollups`` produce, and the API tests check real responses against their required
keys.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from hub import __version__

if TYPE_CHECKING:
    from hub.api.app import Route


def _obj(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "required": sorted(required),
        "properties": {**required, **(optional or {})},
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _list(item: str) -> dict[str, Any]:
    return _obj({"items": {"type": "array", "items": _ref(item)}})


_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_INT = {"type": "integer"}
_COUNTS = {"type": "object", "additionalProperties": _INT}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": _obj(
        {"error": _obj({"status": _INT, "message": _STR})},
    ),
    "Probe": _obj({"status": _STR}),
    "Metrics": {"type": "string", "description": "Prometheus text exposition format"},
    "OpenAPI": {"type": "object"},
    "EventStream": {
        "type": "string",
        "description": "text/event-stream; `event: status` carries a FleetStatus as data",
    },
    "Connection": _obj(
        {
            "state": {"enum": ["Connected", "Unreachable", "Unauthorized", "Unknown"]},
            "message": _STR,
            "since": _STR,
        }
    ),
    "Counts": _obj(
        {"total": _INT, "sync": _COUNTS, "health": _COUNTS},
    ),
    "LastSync": {
        "oneOf": [
            {"type": "null"},
            _obj({"time": _STR, "revision": _STR, "app": _STR, "phase": _STR}),
        ]
    },
    "ClusterRow": _obj(
        {
            "name": _STR,
            "server": _STR,
            "connection": _ref("Connection"),
            "applications": _ref("Counts"),
            "lastSync": _ref("LastSync"),
        }
    ),
    "FleetStatus": _obj(
        {
            "schemaVersion": {"const": 1},
            "generatedAt": _STR,
            "filters": _obj({"appset": _NSTR, "cluster": _NSTR}),
            "clusters": {"type": "array", "items": _ref("ClusterRow")},
            "matrix": _obj(
                {
                    "clusters": {"type": "array", "items": _STR},
                    "rows": {
                        "type": "array",
                        "items": _obj(
                            {
                                "appset": _NSTR,
                                "cells": {
                                    "type": "array",
                                    "items": _obj(
                                        {
                                            "cluster": _STR,
                                            "applications": {"type": "array", "items": _STR},
                                            "sync": _STR,
                                            "health": _STR,
                                        }
                                    ),
                                },
                            }
                        ),
                    },
                }
            ),
            "totals": _obj({"clusters": _INT, "applications": _ref("Counts"), "unassigned": _INT}),
            "problems": {
                "type": "array",
                "items": _obj({"kind": _STR, "name": _STR, "message": _STR}),
            },
        }
    ),
    "Cluster": _obj(
        {
            "name": _STR,
            "server": _STR,
            "labels": {"type": "object"},
            "annotations": {"type": "object"},
            "namespaces": {"type": "array", "items": _STR},
            "clusterResources": {"type": "boolean"},
            "project": _NSTR,
            "serverVersion": _NSTR,
            "credentialKind": _STR,
            "lastCheck": {"type": ["object", "null"]},
            "connection": _ref("Connection"),
            "applications": _ref("Counts"),
            "lastSync": _ref("LastSync"),
        }
    ),
    "ClusterList": _list("Cluster"),
    "AppSet": _obj(
        {
            "name": _STR,
            "source": _STR,
            "file": _STR,
            "sha": _STR,
            "generated": {"type": ["integer", "null"]},
            "lastError": _NSTR,
            "conditions": {"type": "array", "items": {"type": "object"}},
            "status": {"type": "object"},
            "reconciledAt": _NSTR,
            "applications": {
                "type": "array",
                "items": _obj({"name": _STR, "cluster": _NSTR, "sync": _STR, "health": _STR}),
            },
            "counts": _ref("Counts"),
        },
        # GET of one set: its progressive sync (hub.rollout), null without RollingSync.
        {"rollout": {"type": ["object", "null"]}},
    ),
    "AppSetList": _list("AppSet"),
    "App": _obj(
        {
            "name": _STR,
            "appset": _NSTR,
            "source": _NSTR,
            "file": _STR,
            "cluster": _NSTR,
            "destination": _obj({"server": _STR, "name": _STR, "namespace": _STR}),
            "project": _STR,
            "generation": _INT,
            "finalizers": {"type": "array", "items": _STR},
            "desiredRevision": _STR,
            "desiredSha": _NSTR,
            "syncedSha": _NSTR,
            "sync": {"enum": ["Synced", "OutOfSync", "Unknown"]},
            "health": {
                "enum": ["Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"]
            },
            "conditions": {"type": "array", "items": {"type": "object"}},
            "operationState": {"type": ["object", "null"]},
            "reconciledAt": _NSTR,
            "deletion": _NSTR,
            "deletionReason": _NSTR,
        }
    ),
    "AppList": _list("App"),
    "Resource": _obj(
        {
            "group": _STR,
            "kind": _STR,
            "namespace": _STR,
            "name": _STR,
            "wave": _INT,
            "sync": _STR,
            "health": _NSTR,
            "message": _STR,
            "hook": {"type": "boolean"},
            "phase": _STR,
        }
    ),
    "ResourceList": _obj(
        {
            "items": {"type": "array", "items": _ref("Resource")},
            "from": {"enum": ["operationState", "operation", "history", "none"]},
        }
    ),
    "AppDetail": {
        "allOf": [
            _ref("App"),
            _obj(
                {
                    "resources": {"type": "array", "items": _ref("Resource")},
                    "resourcesFrom": {"enum": ["operationState", "operation", "history", "none"]},
                    "operation": {"type": ["object", "null"]},
                }
            ),
        ]
    },
    "HistoryEntry": _obj(
        {
            "id": _INT,
            "operationId": _STR,
            "cluster": _STR,
            "revision": _STR,
            "source": {"type": "object"},
            "initiatedBy": _STR,
            "trigger": {"enum": ["user", "automated", "self-heal", "rollback"]},
            "startedAt": _STR,
            "finishedAt": _STR,
            "phase": {"enum": ["Succeeded", "Failed", "Error"]},
            "message": _STR,
            "resources": {"type": "array", "items": _ref("Resource")},
            "canRollback": {"type": "boolean"},
        }
    ),
    "HistoryList": _list("HistoryEntry"),
    "Diff": _obj(
        {
            "revision": _STR,
            "status": {"enum": ["Synced", "OutOfSync"]},
            "diff": _STR,
            "warnings": {"type": "array", "items": _STR},
            "resources": {
                "type": "array",
                "items": _obj(
                    {
                        "group": _STR,
                        "kind": _STR,
                        "namespace": _STR,
                        "name": _STR,
                        "sync": _STR,
                        "reason": _STR,
                    }
                ),
            },
        }
    ),
    "SyncRequest": _obj({}, {"prune": {"type": "boolean"}, "revision": _NSTR}),
    "RollbackRequest": _obj({"id": _INT}),
    "Queued": _obj({"application": _NSTR, "queued": {"type": "boolean"}, "action": _STR}),
    "Session": _obj(
        {
            "subject": _NSTR,
            "tokenId": _NSTR,
            "anonymous": {"type": "boolean"},
            "applications": {
                "type": "object",
                "additionalProperties": {"type": "array", "items": _STR},
            },
            "refreshAll": {"type": "boolean"},
            "audit": {"type": "boolean"},
        }
    ),
    "AuditList": _list("AuditEntry"),
    "AuditEntry": _obj(
        {
            "seq": _INT,
            "at": _STR,
            "actor": _STR,
            "tokenId": _NSTR,
            "via": _STR,
            "remote": _STR,
            "action": _STR,
            "target": _STR,
            "result": {"enum": ["ok", "refused", "error"]},
            "detail": _STR,
        }
    ),
    "PushEvent": {"type": "object", "description": "a GitHub or GitLab push event payload"},
    "WebhookResult": _obj({"event": _STR, "matched": _INT}),
}


def document(routes: Iterable[Route]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        op: dict[str, Any] = {
            "summary": r.summary,
            "tags": [r.tag],
            "operationId": f"{r.method.lower()}_{r.path.strip('/').replace('/', '_')}".replace(
                "{", ""
            ).replace("}", ""),
            "responses": {
                str(r.status): {
                    "description": r.summary,
                    "content": {r.content_type: {"schema": _ref(r.response)}},
                },
                **{
                    str(code): {
                        "description": "error",
                        "content": {"application/json": {"schema": _ref("Error")}},
                    }
                    for code in r.errors
                },
            },
        }
        params: list[dict[str, Any]] = []
        if "{name}" in r.path:
            params.append({"name": "name", "in": "path", "required": True, "schema": _STR})
        params += [
            {"name": q, "in": "query", "required": False, "description": d, "schema": _STR}
            for q, d in r.query
        ]
        if params:
            op["parameters"] = params
        if r.body is not None:
            op["requestBody"] = {
                "required": r.body != "SyncRequest",
                "content": {"application/json": {"schema": _ref(r.body)}},
            }
        if r.auth:
            op["security"] = [{"bearer": []}]
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "gitops-hub API",
            "version": __version__,
            "description": "Status rollups and actions of a running gitops-hub "
            "(docs/status.md). Access is Argo CD's RBAC over bearer tokens (docs/access.md).",
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
