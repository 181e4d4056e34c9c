"""`hub serve` end to end: real Git repositories, `hub sim` clusters registered with the real
CLI, the hub running as a subprocess, and kubectl checks on the clusters.

One hub runs for the whole module (starting one costs seconds); the tests follow one
story in file order, each leaving the fleet Synced and Healthy for the next. Every wait
polls with a deadline; nothing asserts how long anything took.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from clusters.sim import SimServer
from hub.home import open_store
from tests.e2e.serve_support import (
    CONFIGMAP,
    DEPLOYMENT,
    NS,
    Fleet,
    start_hub,
    stop_hub,
    wait_for,
)
from tests.sync.e2e_helpers import GitRepo

pytestmark = [pytest.mark.sim_only("needs simulated clusters and faults"), pytest.mark.timeout(300)]

CLUSTERS = ["east", "west", "north", "south"]

APPSET = """
apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata:
  name: guestbook
spec:
  generators:
    - clusters:
        selector:
          matchLabels:
            env: prod
  template:
    metadata:
      name: '{{{{name}}}}-guestbook'
      finalizers:
        - resources-finalizer.argocd.argoproj.io
    spec:
      project: default
      source:
        repoURL: {repo}
        targetRevision: main
        path: guestbook
      destination:
        server: '{{{{server}}}}'
        namespace: guestbook
      syncPolicy:
        automated:
          prune: true
          selfHeal: true
        syncOptions:
          - CreateNamespace=true
"""


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("serve-fleet")
    with SimServer(
        clusters=CLUSTERS, ready_delay=0.2, kubeconfig_path=root / "sim.kubeconfig"
    ) as sim:
        repo = GitRepo(root / "repo")
        repo.write(
            {
                "appsets/guestbook.yaml": APPSET.format(repo=repo.path),
                "guestbook/deployment.yaml": DEPLOYMENT.format(image="nginx:1.25"),
                "guestbook/configmap.yaml": CONFIGMAP,
            },
            "guestbook everywhere",
        )
        f = Fleet(root / "home", sim, repo, root / "hub.log")
        f.cli.ok("init")
        for name in CLUSTERS[:3]:
            f.cli.ok(
                "cluster", "add", name, "--kubeconfig", str(sim.kubeconfig_path),
                "--context", name, "--label", "env=prod",
            )  # fmt: skip
        f.cli.ok(
            "cluster", "add", CLUSTERS[3], "--kubeconfig", str(sim.kubeconfig_path),
            "--context", CLUSTERS[3], "--label", "env=staging",
        )  # fmt: skip
        f.cli.ok("source", "add", "root", "--repo", str(repo.path), "--path", "appsets")
        start_hub(f, "--git-poll", "1", "--resync", "30", "--port", "0")
        try:
            yield f
        finally:
            code = stop_hub(f)
        assert code == 0, f.hub_log()[-4000:]


def test_an_appset_with_a_cluster_generator_syncs_all_three_clusters(fleet: Fleet) -> None:
    wait_for(
        "3 Applications Synced and Healthy",
        lambda: fleet.all_good(CLUSTERS[:3], "nginx:1.25"),
        timeout=90,
    )
    assert f"{CLUSTERS[3]}-guestbook" not in fleet.apps()
    assert fleet.kubectl(CLUSTERS[0], "get", "configmap", "settings", "-n", NS).returncode == 0


def test_a_commit_changing_the_image_rolls_out_everywhere(fleet: Fleet) -> None:
    sha = fleet.commit_image("nginx:1.26")
    wait_for("the new image on 3 clusters", lambda: fleet.all_good(CLUSTERS[:3], "nginx:1.26"))
    # Synced comes from a refresh, which can see the new live state before the sync
    # that applied it has recorded its revision.
    wait_for(
        "the commit recorded as synced on 3 clusters",
        lambda: {fleet.apps()[f"{c}-guestbook"].synced_sha for c in CLUSTERS[:3]} == {sha},
        timeout=30,
    )


def test_labelling_a_fourth_cluster_into_the_selector_adds_its_application(
    fleet: Fleet,
) -> None:
    fleet.cli.ok("cluster", "label", CLUSTERS[3], "env=prod")
    wait_for("the 4th cluster's app", lambda: fleet.all_good(CLUSTERS, "nginx:1.26"))


def test_cluster_rm_prunes_its_application_and_leaves_the_workload(fleet: Fleet) -> None:
    gone = CLUSTERS[3]
    fleet.cli.ok("cluster", "rm", gone, "--yes")
    wait_for("its Application gone", lambda: f"{gone}-guestbook" not in fleet.apps())
    wait_for("its worker stopped", lambda: f"cluster {gone} left the registry" in fleet.hub_log())
    # Like Argo CD: the workload keeps running, no longer managed.
    assert fleet.image(gone) == "nginx:1.26"
    assert fleet.all_good(CLUSTERS[:3], "nginx:1.26")


def test_a_malformed_generator_file_deletes_nothing(fleet: Fleet) -> None:
    fleet.repo.write({"appsets/broken.yaml": "kind: ApplicationSet\nspec: [unclosed\n"})
    store = open_store(fleet.home)
    try:

        def source_error() -> str | None:
            with store.read() as db:
                row = db.execute("SELECT last_error FROM sources WHERE name = 'root'").fetchone()
            return None if row is None else row[0]

        error = wait_for("the hub to report the bad file", source_error)
    finally:
        store.close()
    assert "broken.yaml" in error
    apps = fleet.apps()
    assert sorted(apps) == sorted(f"{c}-guestbook" for c in CLUSTERS[:3])
    assert all(fleet.image(c) == "nginx:1.26" for c in CLUSTERS[:3])
    fleet.repo.write({"appsets/broken.yaml": None}, "remove the broken file")


def test_an_offline_cluster_goes_unknown_while_the_others_sync_and_recovers(
    fleet: Fleet,
) -> None:
    offline = CLUSTERS[1]
    fleet.sim.faults(offline).set(outage="refuse")
    try:
        wait_for(
            "the offline cluster's app Unknown",
            lambda: fleet.apps()[f"{offline}-guestbook"].sync_status == "Unknown",
        )
        condition = fleet.apps()[f"{offline}-guestbook"].conditions
        assert condition and offline in condition[0].message
        fleet.commit_image("nginx:1.27")
        others = [CLUSTERS[0], CLUSTERS[2]]
        wait_for("the others on the new image", lambda: fleet.all_good(others, "nginx:1.27"))
        assert fleet.apps()[f"{offline}-guestbook"].sync_status == "Unknown"
    finally:
        fleet.sim.faults(offline).clear()
    wait_for(
        "the cluster to recover on its own",
        lambda: fleet.all_good(CLUSTERS[:3], "nginx:1.27"),
        timeout=90,
    )


def test_kubectl_scale_drift_is_healed_without_a_git_change(fleet: Fleet) -> None:
    cluster = CLUSTERS[0]
    before = fleet.repo.git("rev-parse", "HEAD")
    out = fleet.kubectl(cluster, "scale", "deployment", "web", "-n", NS, "--replicas=5")
    assert out.returncode == 0, out.stderr

    def healed() -> bool:
        dep = fleet.deployment(cluster)
        return dep is not None and dep["spec"]["replicas"] == 2

    wait_for("replicas back to 2 (self-heal)", healed, timeout=30)
    assert fleet.repo.git("rev-parse", "HEAD") == before
    wait_for("the app Synced again", lambda: fleet.all_good(CLUSTERS[:3], "nginx:1.27"))


def test_a_cluster_relabelled_out_of_the_selector_has_its_app_deleted_with_its_resources(
    fleet: Fleet,
) -> None:
    # The resources finalizer asks for a cascade: the worker deletes what the app tracks,
    # then the record goes (unlike `hub cluster rm`, which leaves workloads running).
    leaving = CLUSTERS[2]
    fleet.cli.ok("cluster", "label", leaving, "env=dev")
    wait_for("its app gone", lambda: f"{leaving}-guestbook" not in fleet.apps())
    assert fleet.deployment(leaving) is None
    assert fleet.kubectl(leaving, "get", "configmap", "settings", "-n", NS).returncode != 0
    assert fleet.all_good(CLUSTERS[:2], "nginx:1.27")
