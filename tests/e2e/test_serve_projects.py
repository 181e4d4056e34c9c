"""`hub serve` end to end: two teams, two AppProjects, three sim clusters.

Each team's ApplicationSet and syncs stay inside its project; a set aimed at the other
team's namespace and a manifest with an object in kube-system are refused, naming the rule,
and nothing of them reaches a cluster (checked with kubectl)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from clusters.sim import SimServer
from hub.apps import AppSetRecord, AppStore
from hub.home import open_store
from tests.e2e.serve_support import Fleet, start_hub, stop_hub, wait_for
from tests.sync.e2e_helpers import GitRepo

pytestmark = [pytest.mark.timeout(240)]

CLUSTERS = ("c1", "c2", "c3")

PROJECT = """
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata:
  name: {team}
spec:
  sourceRepos: ['{repos}/{team}*']
  destinations:
    - {{server: '*', namespace: '{team}-*'}}
"""

APPSET = """
apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata:
  name: {name}
spec:
  generators:
    - clusters: {{}}
  template:
    metadata:
      name: '{name}-{{{{name}}}}'
    spec:
      project: {team}
      source: {{repoURL: {repo}, targetRevision: main, path: app}}
      destination: {{server: '{{{{server}}}}', namespace: {namespace}}}
      syncPolicy:
        automated: {{prune: true, selfHeal: true}}
        syncOptions: [CreateNamespace=true]
"""

SETTINGS = """
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  team: {team}
  version: '{version}'
"""

SNEAKY = """
apiVersion: v1
kind: ConfigMap
metadata:
  name: sneaky
  namespace: kube-system
data:
  from: team-a
"""

# A namespaced-only project (no clusterResourceWhitelist) cannot create cluster-scoped kinds.
ROLE = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: team-a-admin
rules: []
"""


def appsets(home: Path) -> dict[str, AppSetRecord]:
    store = open_store(home)
    try:
        return {s.name: s for s in AppStore(store).list_appsets()}
    finally:
        store.close()


def project_text(f: Fleet) -> str:
    store = open_store(f.home)
    try:
        return json.dumps([p.manifest for p in AppStore(store).list_projects()])
    finally:
        store.close()


def configmap(f: Fleet, cluster: str, namespace: str, name: str) -> dict[str, Any] | None:
    out = f.kubectl(cluster, "get", "configmap", name, "-n", namespace, "-o", "json")
    return json.loads(out.stdout) if out.returncode == 0 else None


def version(f: Fleet, cluster: str, namespace: str) -> str | None:
    cm = configmap(f, cluster, namespace, "settings")
    return None if cm is None else str(cm["data"]["version"])


def synced(f: Fleet, prefix: str, namespace: str, want: str) -> bool:
    apps = f.apps()
    return all(
        (a := apps.get(f"{prefix}-{c}")) is not None
        and a.sync_status == "Synced"
        and version(f, c, namespace) == want
        for c in CLUSTERS
    )


def test_two_teams_stay_inside_their_projects(tmp_path: Path) -> None:
    repos = tmp_path / "repos"
    with SimServer(clusters=list(CLUSTERS), kubeconfig_path=tmp_path / "kubeconfig") as sim:
        platform = GitRepo(repos / "platform")
        team = {t: GitRepo(repos / t) for t in ("team-a", "team-b")}
        # Team B also wants to hear of objects in its namespaces that no Application owns.
        orphans = (
            "  orphanedResources:\n    warn: true\n    ignore:\n"
            "      - {kind: ConfigMap, name: kube-root-ca.crt}\n"
            "      - {kind: ServiceAccount, name: default}\n"
        )
        platform.write(
            {
                f"projects/{t}.yaml": PROJECT.format(team=t, repos=repos)
                + (orphans if t == "team-b" else "")
                for t in team
            }
        )
        for t, repo in team.items():
            repo.write(
                {
                    "sets/web.yaml": APPSET.format(
                        name=f"{t}-web", team=t, repo=repo.path, namespace=f"{t}-web"
                    ),
                    "app/settings.yaml": SETTINGS.format(team=t, version=1),
                }
            )
        f = Fleet(tmp_path / "home", sim, platform, tmp_path / "hub.log")
        f.cli.ok("init")
        for name in CLUSTERS:
            f.cli.ok("cluster", "add", name, "--kubeconfig", str(sim.kubeconfig_path),
                     "--context", name)  # fmt: skip
        f.cli.ok("source", "add", "platform", "--repo", str(platform.path), "--path", "projects")
        for t, repo in team.items():
            f.cli.ok("source", "add", t, "--repo", str(repo.path), "--path", "sets")
        start_hub(f, "--git-poll", "1", "--resync", "600", "--port", "0")
        try:
            for t in team:
                wait_for(
                    f"{t} synced everywhere", lambda t=t: synced(f, f"{t}-web", f"{t}-web", "1")
                )

            # Team A aims a set at team B's namespace: the set is refused whole.
            team["team-a"].write(
                {
                    "sets/intrude.yaml": APPSET.format(
                        name="intrude", team="team-a", repo=team["team-a"].path,
                        namespace="team-b-web",
                    )
                }
            )  # fmt: skip
            record = wait_for(
                "the intruding set in error",
                lambda: (s := appsets(f.home).get("intrude")) is not None and s.last_error and s,
            )
            assert "namespace team-b-web" in record.last_error
            assert "project 'team-a'" in record.last_error
            assert not [a for a in f.apps() if a.startswith("intrude-")]

            # Team A's manifest puts an object in kube-system: the sync fails, naming the
            # object and the rule, and nothing of that revision is applied.
            team["team-a"].write(
                {
                    "app/settings.yaml": SETTINGS.format(team="team-a", version=2),
                    "app/sneaky.yaml": SNEAKY,
                    "app/role.yaml": ROLE,
                }
            )

            def refused() -> str | None:
                op = f.apps()["team-a-web-c1"].operation_state or {}
                message = str(op.get("message") or "")
                return message if op.get("phase") == "Failed" and "sneaky" in message else None

            message = wait_for("team A's sync refused", refused)
            assert "ConfigMap kube-system/sneaky" in message
            assert "project 'team-a'" in message and "destinations" in message
            assert "ClusterRole team-a-admin" in message and "clusterResourceWhitelist" in message

            # Team B keeps working in its own project meanwhile; someone left an object in
            # its namespace by hand, which its sync reports as orphaned.
            f.kubectl("c1", "create", "configmap", "stray", "-n", "team-b-web").check_returncode()
            team["team-b"].write({"app/settings.yaml": SETTINGS.format(team="team-b", version=2)})
            wait_for("team B on version 2", lambda: synced(f, "team-b-web", "team-b-web", "2"))
            op = f.apps()["team-b-web-c1"].operation_state or {}
            assert op.get("phase") == "Succeeded"
            assert (
                "OrphanedResourceWarning: application has 1 orphaned resource(s): "
                "ConfigMap team-b-web/stray" in op["message"]
            )
            assert "Orphaned" not in str(f.apps()["team-a-web-c2"].operation_state)
        finally:
            assert stop_hub(f) == 0, f.hub_log()[-3000:]

        for c in CLUSTERS:
            assert configmap(f, c, "kube-system", "sneaky") is None
            assert f.kubectl(c, "get", "clusterrole", "team-a-admin").returncode != 0
            assert version(f, c, "team-a-web") == "1"  # nothing of the refused revision
            assert configmap(f, c, "team-b-web", "settings")["data"]["team"] == "team-b"  # type: ignore[index]


LEGACY = """
apiVersion: v1
kind: ConfigMap
metadata:
  name: legacy
  namespace: shared-tools
data:
  from: team-a
"""


def test_prune_never_deletes_outside_the_project(tmp_path: Path) -> None:
    repos = tmp_path / "repos"
    with SimServer(clusters=["c1"], kubeconfig_path=tmp_path / "kubeconfig") as sim:
        repo = GitRepo(repos / "team-a")
        # At first the project lets team A use shared-tools and create that Namespace.
        wide = (
            PROJECT.format(team="team-a", repos=repos)
            + "    - {server: '*', namespace: shared-tools}\n"
            + "  clusterResourceWhitelist: [{group: '', kind: Namespace}]\n"
        )
        repo.write(
            {
                "projects/team-a.yaml": wide,
                "sets/web.yaml": APPSET.format(
                    name="team-a-web", team="team-a", repo=repo.path, namespace="team-a-web"
                ),
                "app/settings.yaml": SETTINGS.format(team="team-a", version=1),
                "app/legacy.yaml": LEGACY,
                "app/ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata: {name: shared-tools}\n",
            }
        )
        f = Fleet(tmp_path / "home", sim, repo, tmp_path / "hub.log")
        f.cli.ok("init")
        f.cli.ok("cluster", "add", "c1", "--kubeconfig", str(sim.kubeconfig_path),
                 "--context", "c1")  # fmt: skip
        f.cli.ok("source", "add", "projects", "--repo", str(repo.path), "--path", "projects")
        f.cli.ok("source", "add", "team-a", "--repo", str(repo.path), "--path", "sets")
        start_hub(f, "--git-poll", "1", "--resync", "600", "--port", "0")
        try:
            wait_for(
                "the legacy object synced",
                lambda: (
                    configmap(f, "c1", "shared-tools", "legacy") is not None
                    and version(f, "c1", "team-a-web") == "1"
                ),
            )
            # The platform narrows the project back to team-a-* (and no cluster kinds), then
            # team A drops the objects: prune must leave them alone.
            repo.write({"projects/team-a.yaml": PROJECT.format(team="team-a", repos=repos)})
            wait_for("the narrowed project stored", lambda: "shared-tools" not in project_text(f))
            repo.write(
                {
                    "app/settings.yaml": SETTINGS.format(team="team-a", version=2),
                    "app/legacy.yaml": None,
                    "app/ns.yaml": None,
                }
            )
            wait_for("version 2 synced", lambda: version(f, "c1", "team-a-web") == "2")

            def skipped() -> list[dict[str, Any]]:
                op = f.apps()["team-a-web-c1"].operation_state or {}
                res = (op.get("syncResult") or {}).get("resources") or []
                return [r for r in res if r.get("status") == "PruneSkipped"]

            skips = wait_for("the prunes skipped", lambda: len(skipped()) == 2 and skipped())
            messages = " ".join(str(r.get("message")) for r in skips)
            assert "outside the project" in messages
            assert "clusterResourceWhitelist" in messages and "destinations" in messages
        finally:
            assert stop_hub(f) == 0, f.hub_log()[-3000:]
        assert configmap(f, "c1", "shared-tools", "legacy") is not None
        assert f.kubectl("c1", "get", "namespace", "shared-tools").returncode == 0
