"""``hub source`` and ``hub appset reconcile`` end to end: real Git repositories made here,
clusters of a private ``hub sim`` registered with the real CLI, the store read back."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from clusters.sim import SimServer
from hub.apps import AppRecord, AppStore
from hub.home import open_store
from tests.clusters.cli_support import Hub, Run

pytestmark = pytest.mark.sim_only("needs four clusters of its own to relabel and remove")

GIT = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]


class Repo:
    """A Git repository in the test's tmp dir; ``commit`` writes files and commits them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()
        subprocess.run([*GIT, "init", "-q", "-b", "main"], cwd=root, check=True)

    def commit(self, files: dict[str, str | None], message: str = "change") -> str:
        for path, text in files.items():
            target = self.root / path
            if text is None:
                target.unlink()
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        subprocess.run([*GIT, "add", "-A"], cwd=self.root, check=True)
        subprocess.run([*GIT, "commit", "-qm", message, "--allow-empty"], cwd=self.root, check=True)
        head = subprocess.run([*GIT, "rev-parse", "HEAD"], cwd=self.root, check=True,
                              capture_output=True, text=True)  # fmt: skip
        return head.stdout.strip()


def appset(
    *,
    selector: dict[str, Any] | None = None,
    name: str = "guestbook",
    namespace: str = "guestbook",
    sync_policy: dict[str, Any] | None = None,
    generators: list[Any] | None = None,
    app_name: str = "guestbook-{{name}}",
) -> str:
    spec: dict[str, Any] = {
        "generators": generators
        or [{"clusters": {"selector": selector or {"matchLabels": {"env": "prod"}}}}],
        "template": {
            "metadata": {"name": app_name},
            "spec": {
                "project": "default",
                "source": {
                    "repoURL": "https://git.example.com/guestbook.git",
                    "path": "guestbook",
                    "targetRevision": "HEAD",
                },
                "destination": {"server": "{{server}}", "namespace": namespace},
            },
        },
    }
    if sync_policy is not None:
        spec["syncPolicy"] = sync_policy
    return yaml.safe_dump(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "ApplicationSet",
            "metadata": {"name": name, "namespace": "argocd"},
            "spec": spec,
        }
    )


@pytest.fixture(scope="module")
def fleet_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimServer]:
    # Four clusters of our own: tests relabel and remove them.
    path = tmp_path_factory.mktemp("sim") / "kubeconfig"
    with SimServer(clusters=4, kubeconfig_path=path) as server:
        yield server


@pytest.fixture
def hub(tmp_path: Path, fleet_sim: SimServer) -> Hub:
    h = Hub(tmp_path / "home")
    h.ok("init")
    names = fleet_sim.cluster_names
    for i, context in enumerate(names):
        env = "prod" if i < 3 else "dev"
        h.ok(
            "cluster", "add", f"c{i + 1}",
            "--kubeconfig", str(fleet_sim.kubeconfig_path),
            "--context", context,
            "--label", f"env={env}",
        )  # fmt: skip
    return h


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    r = Repo(tmp_path / "gitops")
    r.commit({"apps/guestbook.yaml": appset(), "README.md": "gitops\n"}, "first")
    return r


def apps_of(hub: Hub) -> dict[str, AppRecord]:
    store = open_store(hub.home)
    try:
        return {a.name: a for a in AppStore(store).list_apps()}
    finally:
        store.close()


def reconcile(hub: Hub, *args: str) -> tuple[Run, dict[str, Any]]:
    run = hub("appset", "reconcile", "-o", "json", *args)
    return run, json.loads(run.stdout)


def actions(report: dict[str, Any], kind: str) -> list[str]:
    return sorted(a["app"] for p in report["plans"] for a in p["actions"] if a["action"] == kind)


def test_source_add_list_and_rm(hub: Hub, repo: Repo) -> None:
    run = hub.ok("source", "add", "apps", "--repo", str(repo.root), "--path", "apps")
    assert "1 ApplicationSet(s)" in run.stdout and "in 1 file(s)" in run.stdout
    listed = json.loads(hub.ok("source", "list", "-o", "json").stdout)
    assert [(s["name"], s["repo"], s["path"], s["revision"]) for s in listed] == [
        ("apps", str(repo.root), "apps", "HEAD")
    ]
    assert yaml.safe_load(hub.ok("source", "list", "-o", "yaml").stdout) == listed
    assert hub.ok("source", "list").stdout.splitlines()[0].split()[0] == "NAME"
    again = hub("source", "add", "apps", "--repo", str(repo.root))
    assert again.exit_code == 2 and "already exists" in again.stderr
    missing = hub("source", "add", "other", "--repo", str(repo.root), "--path", "nope")
    assert missing.exit_code == 1 and "no directory 'nope'" in missing.stderr
    hub.ok("source", "rm", "apps")
    assert json.loads(hub.ok("source", "list", "-o", "json").stdout) == []
    assert hub("source", "rm", "apps").exit_code == 1


def test_a_cluster_generator_over_three_clusters_gives_three_applications(
    hub: Hub, repo: Repo
) -> None:
    hub.ok("source", "add", "apps", "--repo", str(repo.root), "--path", "apps")
    run, report = reconcile(hub)
    assert run.exit_code == 0, run.output
    assert actions(report, "create") == ["guestbook-c1", "guestbook-c2", "guestbook-c3"]
    apps = apps_of(hub)
    assert sorted(apps) == ["guestbook-c1", "guestbook-c2", "guestbook-c3"]
    assert {a.cluster for a in apps.values()} == {"c1", "c2", "c3"}
    assert all(a.appset == "guestbook" and a.source == "apps" for a in apps.values())
    assert all(a.finalizers == ("resources-finalizer.argocd.argoproj.io",) for a in apps.values())
    # A second pass changes nothing.
    run, report = reconcile(hub)
    assert actions(report, "create") == [] and len(actions(report, "keep")) == 3
    text = hub.ok("appset", "reconcile").stdout
    assert "kept guestbook-c1: up to date" in text
    assert "summary: 0 created, 0 updated, 0 deleted or deleting, 3 kept" in text


def test_labelling_a_fourth_cluster_into_the_selector_adds_its_application_and_out_removes_it(
    hub: Hub, repo: Repo
) -> None:
    hub.ok("source", "add", "apps", "--repo", str(repo.root), "--path", "apps")
    hub.ok("appset", "reconcile")
    hub.ok("cluster", "label", "c4", "env=prod")
    _, report = reconcile(hub)
    assert actions(report, "create") == ["guestbook-c4"]
    assert apps_of(hub)["guestbook-c4"].cluster == "c4"
    # Relabelled out: the app has the resources finalizer, so it waits for a cascade.
    hub.ok("cluster", "label", "c4", "env=dev")
    _, report = reconcile(hub)
    assert actions(report, "delete") == ["guestbook-c4"]
    gone = apps_of(hub)["guestbook-c4"]
    assert gone.deleting and "resources are deleted from the cluster first" in (
        gone.deletion_reason or ""
    )
    assert not any(a.deleting for n, a in apps_of(hub).items() if n != "guestbook-c4")


def test_cluster_rm_removes_its_application_and_says_workloads_are_left_running(
    hub: Hub, repo: Repo
) -> None:
    hub.ok("source", "add", "apps", "--repo", str(repo.root), "--path", "apps")
    hub.ok("appset", "reconcile")
    run = hub.ok("cluster", "rm", "c2", "--yes")
    assert "cluster c2 removed" in run.stdout
    assert "guestbook-c2" in run.stdout and "left running" in run.stdout
    assert sorted(apps_of(hub)) == ["guestbook-c1", "guestbook-c3"]
    _, report = reconcile(hub)
    assert actions(report, "create") == [] and actions(report, "delete") == []
    run = hub.ok("cluster", "rm", "c4", "--yes")
    assert "no Applications targeted c4" in run.stdout


def test_a_malformed_generator_file_deletes_nothing_and_shows_the_error(
    hub: Hub, repo: Repo
) -> None:
    hub.ok("source", "add", "apps", "--repo", str(repo.root), "--path", "apps")
    hub.ok("appset", "reconcile")
    before = apps_of(hub)
    bad = appset(selector={"matchExpressions": [{"key": "env", "operator": "Is"}]})
    repo.commit({"apps/guestbook.yaml": bad}, "typo in the operator")
    run = hub("appset", "reconcile")
    assert run.exit_code == 1
    assert "apps/guestbook.yaml" in run.stderr and "'Is' is not a label selector operator" in (
        run.stderr
    )
    assert "NOT LOADED, last good set kept" in run.stdout
    assert apps_of(hub) == before
    listed = json.loads(hub.ok("source", "list", "-o", "json").stdout)[0]
    assert "apps/guestbook.yaml" in listed["lastError"]
    # The last good set still follows the fleet while Git is broken.
    hub.ok("cluster", "label", "c4", "env=prod")
    _, report = reconcile(hub)
    assert actions(report, "create") == ["guestbook-c4"]
    # Unparsable YAML is also named by file.
    repo.commit({"apps/guestbook.yaml": "spec: [unclosed\n"}, "broken yaml")
    run = hub("appset", "reconcile")
    assert run.exit_code == 1 and "apps/guestbook.yaml" in run.stderr
    assert sorted(apps_of(hub)) == sorted([*before, "guestbook-c4"])


def test_a_generator_error_at_run_time_keeps_every_application(hub: Hub, repo: Repo) -> None:
    git_matrix = [
        {
            "matrix": {
                "generators": [
                    {"clusters": {"selector": {"matchLabels": {"env": "prod"}}}},
                    {
                        "git": {
                            "repoURL": str(repo.root),
                            "revision": "HEAD",
                            "files": [{"path": "config/*.json"}],
                        }
                    },
                ]
            }
        }
    ]
    repo.commit(
        {
            "config/a.json": '{"team": "a"}',
            "apps/guestbook.yaml": appset(generators=git_matrix, app_name="gb-{{name}}-{{team}}"),
        }
    )
    hub.ok("source", "add", "apps", "--repo", str(repo.root), "--path", "apps")
    _, report = reconcile(hub)
    assert actions(report, "create") == ["gb-c1-a", "gb-c2-a", "gb-c3-a"]
    repo.commit({"config/a.json": '{"team": '}, "truncated config")
    run, report = reconcile(hub)
    assert run.exit_code == 1
    plan = next(p for p in report["plans"] if p["name"] == "guestbook")
    assert "config/a.json" in plan["error"]
    assert {c["type"]: c["status"] for c in plan["conditions"]} == {
        "ErrorOccurred": "True",
        "ParametersGenerated": "False",
        "ResourcesUpToDate": "False",
    }
    assert actions(report, "delete") == [] and len(actions(report, "keep")) == 3
    assert sorted(apps_of(hub)) == ["gb-c1-a", "gb-c2-a", "gb-c3-a"]


@pytest.mark.parametrize(
    ("policy", "updated", "deleted"),
    [
        ("create-only", False, False),
        ("create-update", True, False),
        ("create-delete", False, True),
        ("sync", True, True),
    ],
)
def test_applications_sync_policies_are_honoured(
    hub: Hub, repo: Repo, policy: str, updated: bool, deleted: bool
) -> None:
    repo.commit({"apps/guestbook.yaml": appset(sync_policy={"applicationsSync": policy})})
    hub.ok("source", "add", "apps", "--repo", str(repo.root), "--path", "apps")
    hub.ok("appset", "reconcile")
    changed = appset(sync_policy={"applicationsSync": policy}, namespace="guestbook-v2")
    repo.commit({"apps/guestbook.yaml": changed}, "new namespace")
    hub.ok("cluster", "label", "c3", "env=dev")
    _, report = reconcile(hub)
    apps = apps_of(hub)
    assert (apps["guestbook-c1"].namespace == "guestbook-v2") is updated
    assert actions(report, "update") == (["guestbook-c1", "guestbook-c2"] if updated else [])
    assert apps["guestbook-c3"].deleting is deleted
    hub.ok("cluster", "label", "c4", "env=prod")
    _, report = reconcile(hub)
    assert actions(report, "create") == ["guestbook-c4"]  # every policy creates


def test_deleting_the_appset_file_removes_its_applications(hub: Hub, repo: Repo) -> None:
    preserved = appset(name="kept-resources", app_name="kr-{{name}}",
                       sync_policy={"preserveResourcesOnDeletion": True})  # fmt: skip
    repo.commit({"apps/preserved.yaml": preserved, "apps/.keep": ""})
    hub.ok("source", "add", "apps", "--repo", str(repo.root), "--path", "apps")
    hub.ok("appset", "reconcile")
    assert len(apps_of(hub)) == 6
    sha = repo.commit({"apps/guestbook.yaml": None, "apps/preserved.yaml": None}, "retire both")
    # Every Application of the source would go: the revision is held until confirmed.
    run, report = reconcile(hub)
    assert run.exit_code == 1 and "hub source confirm apps" in run.output
    assert report["sources"][0]["held"] is True
    text = hub("appset", "reconcile")
    assert f"source apps @ {sha[:12]}: HELD" in text.stdout
    assert len(apps_of(hub)) == 6 and not any(a.deleting for a in apps_of(hub).values())
    confirmed = hub.ok("source", "confirm", "apps")
    assert sha[:12] in confirmed.stdout
    run, report = reconcile(hub)
    assert run.exit_code == 0, run.output
    apps = apps_of(hub)
    # With the resources finalizer: resources first (the reconciler's job), then the record.
    assert sorted(apps) == ["guestbook-c1", "guestbook-c2", "guestbook-c3"]
    assert all(a.deleting for a in apps.values())
    # preserveResourcesOnDeletion: records removed at once, workloads left running.
    assert sorted(a for a in actions(report, "delete") if a.startswith("kr-")) == [
        "kr-c1",
        "kr-c2",
        "kr-c3",
    ]
    store = open_store(hub.home)
    try:
        assert AppStore(store).list_appsets() == []
    finally:
        store.close()


def test_plain_applications_and_projects_from_a_source_are_stored(
    hub: Hub, repo: Repo, fleet_sim: SimServer
) -> None:
    server = yaml.safe_load(fleet_sim.kubeconfig_path.read_text())["clusters"][0]["cluster"][
        "server"
    ]
    app = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "tools", "namespace": "argocd"},
        "spec": {
            "project": "platform",
            "source": {"repoURL": str(repo.root), "path": "tools"},
            "destination": {"server": server, "namespace": "tools"},
        },
    }
    project = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AppProject",
        "metadata": {"name": "platform", "namespace": "argocd"},
        # projects are enforced: this one must let the app's destination in
        "spec": {"sourceRepos": ["*"], "destinations": [{"server": "*", "namespace": "*"}]},
    }
    repo.commit({"apps/tools.json": json.dumps(app), "apps/project.yml": yaml.safe_dump(project)})
    hub.ok("source", "add", "apps", "--repo", str(repo.root), "--path", "apps")
    _, report = reconcile(hub)
    assert "tools" in actions(report, "create")
    tools = apps_of(hub)["tools"]
    assert tools.appset is None and tools.source == "apps" and tools.project == "platform"
    repo.commit({"apps/tools.json": None}, "retire tools")
    _, report = reconcile(hub)
    assert actions(report, "delete") == ["tools"]
    assert "tools" not in apps_of(hub)  # no finalizer: record removed, workloads left


def test_removing_a_source_removes_what_it_declared(hub: Hub, repo: Repo) -> None:
    hub.ok("source", "add", "apps", "--repo", str(repo.root), "--path", "apps")
    hub.ok("appset", "reconcile")
    run = hub.ok("source", "rm", "apps")
    assert "1 ApplicationSet(s)" in run.stdout
    _, report = reconcile(hub)
    assert len(actions(report, "delete")) == 3
    assert all(a.deleting for a in apps_of(hub).values())


def test_a_source_directory_that_vanishes_is_an_error_not_an_empty_set(
    hub: Hub, repo: Repo
) -> None:
    hub.ok("source", "add", "apps", "--repo", str(repo.root), "--path", "apps")
    hub.ok("appset", "reconcile")
    repo.commit({"apps/guestbook.yaml": None}, "last file of the directory removed")
    run = hub("appset", "reconcile")
    assert run.exit_code == 1 and "no directory 'apps'" in run.stderr
    assert len(apps_of(hub)) == 3 and not any(a.deleting for a in apps_of(hub).values())


def test_a_url_source_is_cloned_into_the_repo_cache(hub: Hub, repo: Repo) -> None:
    url = f"file://{repo.root}"
    hub.ok("source", "add", "apps", "--repo", url, "--path", "apps", "--revision", "main")
    _, report = reconcile(hub)
    assert len(actions(report, "create")) == 3
    head = subprocess.run(
        ["git", "rev-parse", "main"], cwd=repo.root, capture_output=True, text=True, check=True
    )
    assert report["sources"][0]["sha"] == head.stdout.strip()
    assert any((hub.home / "repos").iterdir())


def test_a_url_source_follows_new_commits_across_processes(hub: Hub, repo: Repo) -> None:
    url = f"file://{repo.root}"
    hub.ok("source", "add", "apps", "--repo", url, "--path", "apps", "--revision", "main")
    _, report = reconcile(hub)
    assert len(actions(report, "create")) == 3
    assert (
        report["sources"][0]["sha"]
        == subprocess.run(
            ["git", "rev-parse", "main"], cwd=repo.root, capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    repo.commit({"apps/guestbook.yaml": appset(namespace="moved")}, "move namespace")
    _, report = reconcile(hub)
    assert actions(report, "update") == ["guestbook-c1", "guestbook-c2", "guestbook-c3"]
    assert {a.namespace for a in apps_of(hub).values()} == {"moved"}
