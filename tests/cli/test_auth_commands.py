"""`hub user`, `hub token`, `hub rbac can` and `hub audit` through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.clusters.cli_support import Hub


@pytest.fixture
def hub(tmp_path: Path) -> Hub:
    h = Hub(tmp_path / "home")
    h.ok("init")
    return h


def test_a_token_is_printed_once_and_listed_without_its_secret(hub: Hub) -> None:
    hub.ok("user", "add", "alice")
    created = hub.ok("token", "create", "--user", "alice", "--expires-in", "24h",
                     "--description", "ci deploys")  # fmt: skip
    token = created.stdout.strip()
    assert token.startswith("hub_") and "\n" not in token
    token_id = token.split("_")[1]
    assert f"token {token_id} for alice" in created.stderr
    listed = hub.ok("token", "list")
    assert token_id in listed.stdout and "alice" in listed.stdout and "active" in listed.stdout
    docs = yaml.safe_load(hub.ok("token", "list", "-o", "yaml").stdout)
    assert docs[0]["expiresAt"] and docs[0]["description"] == "ci deploys"
    secret = token.split("_", 2)[2]
    assert secret not in listed.stdout + json.dumps(docs)

    assert "revoked" in hub.ok("token", "revoke", token_id).stdout
    assert docs[0]["id"] == token_id
    assert yaml.safe_load(hub.ok("token", "list", "-o", "yaml").stdout)[0]["state"] == "revoked"


def test_removing_a_user_revokes_its_tokens(hub: Hub) -> None:
    hub.ok("user", "add", "bob")
    hub.ok("token", "create", "--user", "bob")
    assert "1 token(s) revoked" in hub.ok("user", "rm", "bob").stdout
    assert "no users" in hub.ok("user", "list").stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("token", "create"), "give one of --user NAME or --project-role"),
        (("token", "create", "--user", "ghost"), "hub user add ghost"),
        (("token", "create", "--project-role", "nocolon"), "expected PROJECT:ROLE"),
        (("token", "create", "--project-role", "a:b", "--expires-in", "soon"), "--expires-in"),
        (("user", "add", "role:admin"), "user name 'role:admin'"),
        (("token", "revoke", "nope"), "no token with id 'nope'"),
    ],
)
def test_bad_input_is_a_clear_error_with_exit_2(hub: Hub, args: tuple[str, ...], says: str) -> None:
    run = hub(*args)
    assert run.exit_code == 2, run.output
    assert says in run.stderr
    assert "Traceback" not in run.output


def test_rbac_can_answers_yes_or_no_like_argocd(hub: Hub) -> None:
    (hub.home / "rbac.csv").write_text(
        "p, role:deployer, applications, sync, staging/*, allow\n"
        "p, carol, applications, sync, staging/db, deny\n"
        "g, carol, role:deployer\n"
    )
    yes = hub("rbac", "can", "carol", "sync", "applications", "staging/web")
    assert (yes.exit_code, yes.stdout) == (0, "Yes\n")
    denied = hub("rbac", "can", "carol", "sync", "applications", "staging/db", "--explain")
    assert (denied.exit_code, denied.stdout) == (1, "No\n")
    assert "p, carol, applications, sync, staging/db, deny" in denied.stderr
    # no rbac.yaml: the default role is role:readonly
    assert hub("rbac", "can", "anyone", "get", "applications", "x/y").exit_code == 0
    assert hub("rbac", "can", "role:admin", "get", "audit", "*").exit_code == 0


def test_a_bad_policy_line_is_named(hub: Hub) -> None:
    (hub.home / "rbac.csv").write_text("g, dave, role:admin\np, dave, applications, sync\n")
    run = hub("rbac", "can", "dave", "sync", "applications", "a/b")
    assert run.exit_code == 2
    assert f"{hub.home / 'rbac.csv'} line 2" in run.stderr and "6 fields" in run.stderr
    assert hub("rbac", "validate").exit_code == 2


def test_every_cli_write_is_in_the_audit_trail_with_its_result(hub: Hub) -> None:
    hub.ok("user", "add", "erin")
    hub.ok("token", "create", "--project-role", "team-a:deployer")
    assert hub("cluster", "label", "nowhere", "env=prod").exit_code != 0
    hub.ok("key", "rotate")
    trail = json.loads(hub.ok("audit", "-o", "json").stdout)
    got = [(e["via"], e["action"], e["target"], e["result"]) for e in trail]
    assert got == [
        ("cli", "user.add", "erin", "ok"),
        ("cli", "token.create", "team-a:deployer", "ok"),
        ("cli", "cluster.label", "nowhere", "error"),
        ("cli", "key.rotate", "", "ok"),
    ]
    assert all(e["actor"].startswith("cli") and e["remote"] for e in trail)
    assert trail[1]["detail"].startswith("token ") and "proj:team-a:deployer" in trail[1]["detail"]
    assert "nowhere" in trail[2]["detail"]
    table = hub.ok("audit", "--since", "1h").stdout
    assert "cluster.label" in table and "error" in table
    assert json.loads(hub.ok("audit", "--since", "1h", "-o", "json").stdout) == trail


def test_validate_reports_project_role_lines_it_ignores(hub: Hub) -> None:
    from hub.home import open_store

    project = {
        "spec": {
            "roles": [
                {
                    "name": "ci",
                    "policies": ["p, proj:team-a:ci, applications, sync, team-b/*, allow"],
                }
            ]
        }
    }
    with open_store(hub.home) as store, store.write() as db:
        db.execute(
            "INSERT INTO app_projects (name, source, file, manifest, sha) VALUES (?, ?, ?, ?, ?)",
            ("team-a", "root", "p.yaml", json.dumps(project), "1" * 40),
        )
    run = hub("rbac", "validate")
    assert run.exit_code == 1
    assert "AppProject team-a spec.roles[0].policies[0]: the object must be team-a/" in run.stderr
    assert hub("rbac", "can", "proj:team-a:ci", "sync", "applications", "team-b/x").exit_code == 1


def test_hub_serve_refuses_a_user_token_as_its_admin_token(hub: Hub) -> None:
    hub.ok("user", "add", "alice")
    token = hub.ok("token", "create", "--user", "alice").stdout.strip()
    run = hub("serve", "--port", "0", env={"HUB_API_TOKEN": token})
    assert run.exit_code == 2
    assert "HUB_API_TOKEN holds a user or project-role token" in run.stderr
    assert token not in run.output


def test_one_shot_writes_are_audited_too(hub: Hub, tmp_path: Path) -> None:
    # Writes that go straight to the store or a cluster, without a running hub.
    missing = tmp_path / "nowhere.yaml"
    missing.write_text("foo: bar\n")  # not an Application nor a cluster Secret
    assert hub("cluster", "import", "-f", str(missing)).exit_code != 0
    assert hub("app", "sync", "-f", str(missing)).exit_code != 0
    assert hub("app", "rollback", "-f", str(missing), "1").exit_code != 0
    hub.ok("appset", "reconcile")
    trail = json.loads(hub.ok("audit", "-o", "json").stdout)
    got = [(e["action"], e["target"], e["result"]) for e in trail]
    assert got == [
        ("cluster.import", str(missing), "error"),
        ("app.sync", str(missing), "error"),
        ("app.rollback", str(missing), "error"),
        ("appset.reconcile", "", "ok"),
    ]
