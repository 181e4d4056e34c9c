"""`hub rollout` against the store: status of a RollingSync set, and clear errors for a set
that has none or does not exist (no cluster needed: nothing is synced here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hub.apps import AppStore, DesiredApp
from hub.home import open_store
from tests.clusters.cli_support import Hub

STEPS = [
    {"matchExpressions": [{"key": "env", "operator": "In", "values": ["dev"]}]},
    {"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}], "maxUpdate": 0},
]


def appset(name: str, strategy: dict[str, Any] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"generators": [{"list": {"elements": []}}], "template": {}}
    if strategy is not None:
        spec["strategy"] = strategy
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationSet",
            "metadata": {"name": name}, "spec": spec}  # fmt: skip


def app(name: str, env: str) -> DesiredApp:
    manifest = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "labels": {"env": env}},
        "spec": {
            "project": "default",
            "source": {"repoURL": "https://g/r.git", "targetRevision": "main", "path": "."},
            "destination": {"server": "https://x", "namespace": "n"},
        },
    }
    return DesiredApp.from_manifest(manifest, appset="rolling", source="root", file="s.yaml",
                                    cluster=env)  # fmt: skip


def seeded(tmp_path: Path) -> Hub:
    hub = Hub(tmp_path / "home")
    hub.ok("init")
    with open_store(hub.home) as store, AppStore(store).transaction() as txn:
        rolling = {"type": "RollingSync", "rollingSync": {"steps": STEPS}}
        txn.put_appset(name="rolling", source="root", file="s.yaml",
                       manifest=appset("rolling", rolling), sha="a" * 40)  # fmt: skip
        txn.put_appset(name="plain", source="root", file="p.yaml",
                       manifest=appset("plain", None), sha="a" * 40)  # fmt: skip
        txn.put_desired(app("rolling-dev", "dev"))
        txn.put_desired(app("rolling-prod", "prod"))
    return hub


def test_status_pause_resume_and_promote_through_the_store(tmp_path: Path) -> None:
    hub = seeded(tmp_path)
    doc = json.loads(hub.ok("rollout", "status", "rolling", "-o", "json").output)
    assert doc["currentStep"] == "1" and doc["steps"] == 2
    by_app = {a["application"]: a for a in doc["applicationStatus"]}
    assert by_app["rolling-dev"]["status"] == "Pending"
    assert by_app["rolling-prod"]["status"] == "Waiting"
    assert "waits for step 1" in by_app["rolling-prod"]["message"]
    text = hub.ok("rollout", "status", "rolling").output
    assert "Step:    1 of 2" in text and "rolling-prod" in text

    hub.ok("rollout", "pause", "rolling")
    paused = json.loads(hub.ok("rollout", "status", "rolling", "-o", "json").output)
    assert paused["paused"] and "paused at step 1" in paused["message"]
    hub.ok("rollout", "resume", "rolling")
    assert "released" in hub.ok("rollout", "promote", "rolling").output
    promoted = json.loads(hub.ok("rollout", "status", "rolling", "-o", "json").output)
    assert not promoted["paused"] and promoted["promotedStep"] == 1


def test_a_set_without_rolling_sync_or_an_unknown_set_is_a_clear_error(tmp_path: Path) -> None:
    hub = seeded(tmp_path)
    plain = hub("rollout", "status", "plain")
    assert plain.exit_code == 2
    assert "ApplicationSet 'plain' has no spec.strategy of type RollingSync" in plain.output
    missing = hub("rollout", "pause", "nope")
    assert missing.exit_code == 1
    assert "no ApplicationSet named 'nope'" in missing.output
    assert "Traceback" not in plain.output + missing.output
