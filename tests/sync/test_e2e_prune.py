"""End to end: prune on/off, Prune=false, and the empty-render guard."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.conftest import KubeEnv
from tests.sync.e2e_helpers import GitRepo, application, hub_app

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def cm(name: str, annotations: str = "{}") -> str:
    return f"""
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: {name}
          annotations: {annotations}
        data: {{a: b}}
        """


def _exists(kubectl: Kubectl, namespace: str, name: str) -> bool:
    run = kubectl("get", "configmap", name, "-n", namespace)
    if run.returncode != 0:
        assert "NotFound" in run.stderr, run.stderr
    return run.returncode == 0


def test_removed_manifests_are_pruned_only_when_asked_and_never_with_prune_false(
    kube: KubeEnv, tmp_path: Path, kubectl: Kubectl, namespace: str
) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write(
        {
            "app/a.yaml": cm("keep-me"),
            "app/b.yaml": cm("drop-me"),
            "app/c.yaml": cm("protected", '{argocd.argoproj.io/sync-options: "Prune=false"}'),
        }
    )
    h = hub_app(kube, tmp_path)
    h.write_app(application("cfg", repo, namespace=namespace))
    assert h.sync().exit_code == 0
    # an object nobody tracks, in the same namespace: never a prune candidate
    kubectl("create", "configmap", "bystander", "-n", namespace, "--from-literal=x=y")

    repo.write({"app/b.yaml": None, "app/c.yaml": None}, "drop two")
    diff = h.diff()
    assert diff.exit_code == 1 and "drop-me" in diff.stdout and "bystander" not in diff.stdout

    without = h.sync()  # prune off: reported, nothing deleted, app stays OutOfSync
    assert without.exit_code == 1, without.output
    assert "PruneSkipped" in without.stdout and "ignored (requires pruning)" in without.stdout
    assert "Sync status: OutOfSync" in without.stdout
    assert _exists(kubectl, namespace, "drop-me") and _exists(kubectl, namespace, "protected")

    with_prune = h.sync("--prune")
    assert "Pruned" in with_prune.stdout and "ignored (no prune)" in with_prune.stdout
    assert not _exists(kubectl, namespace, "drop-me")
    assert _exists(kubectl, namespace, "protected")  # Prune=false
    assert _exists(kubectl, namespace, "keep-me") and _exists(kubectl, namespace, "bystander")


def test_an_empty_or_missing_source_path_deletes_nothing_without_allow_empty(
    kube: KubeEnv, tmp_path: Path, kubectl: Kubectl, namespace: str
) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write({"app/a.yaml": cm("first"), "app/b.yaml": cm("second")})
    h = hub_app(kube, tmp_path)
    auto = {"syncPolicy": {"automated": {"prune": True, "allowEmpty": False}}}
    h.write_app(application("cfg", repo, namespace=namespace, extra_spec=auto))
    assert h.sync().exit_code == 0

    # the directory renamed: the old path no longer exists (a render error, never a prune)
    repo.write(
        {"app/a.yaml": None, "app/b.yaml": None, "renamed/README.md": "nothing here yet\n"},
        "rename",
    )
    missing = h.sync()
    assert missing.exit_code != 0
    assert "does not exist" in missing.output and "nothing will be pruned" in missing.output
    assert _exists(kubectl, namespace, "first") and _exists(kubectl, namespace, "second")

    # pointed at the new, empty directory: the empty-render guard refuses to prune everything
    h.write_app(application("cfg", repo, path="renamed", namespace=namespace, extra_spec=auto))
    empty = h.sync()
    assert empty.exit_code != 0
    assert "declares no resources" in empty.output and "allowEmpty" in empty.output
    assert _exists(kubectl, namespace, "first") and _exists(kubectl, namespace, "second")

    # allowEmpty: true is the explicit opt-in
    allow = {"syncPolicy": {"automated": {"prune": True, "allowEmpty": True}}}
    h.write_app(application("cfg", repo, path="renamed", namespace=namespace, extra_spec=allow))
    pruned = h.sync()
    # A real cluster finishes a foreground deletion later (its garbage collector): the sync
    # waits for the pruned objects to be gone, says so, and only then judges sync status.
    assert pruned.exit_code == 0, pruned.output
    assert "waiting for deletion of ConfigMap" in pruned.stdout
    assert "Sync status: Synced" in pruned.stdout
    assert not _exists(kubectl, namespace, "first") and not _exists(kubectl, namespace, "second")
    # what kube-controller-manager publishes in every namespace is never the app's to prune
    assert _exists(kubectl, namespace, "kube-root-ca.crt")


def test_a_pruned_object_held_by_a_finalizer_fails_the_sync_at_its_timeout_and_is_not_synced(
    kube: KubeEnv, tmp_path: Path, kubectl: Kubectl, namespace: str
) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write({"app/a.yaml": cm("stays"), "app/b.yaml": cm("held")})
    h = hub_app(kube, tmp_path)
    h.write_app(application("cfg", repo, namespace=namespace))
    assert h.sync().exit_code == 0
    hold = '{"metadata": {"finalizers": ["example.com/hold"]}}'
    run = kubectl("patch", "configmap", "held", "-n", namespace, "--type=merge", "-p", hold)
    assert run.returncode == 0, run.stderr

    repo.write({"app/b.yaml": None}, "drop held")
    stuck = h.sync("--prune", "--timeout", "3")
    assert stuck.exit_code == 1, stuck.output
    assert "waiting for deletion of ConfigMap " + namespace + "/held" in stuck.stdout
    assert "still present" in stuck.stdout and "held" in stuck.stdout
    assert "Sync status: OutOfSync" in stuck.stdout  # judged on what remains

    release = '{"metadata": {"finalizers": null}}'
    run = kubectl("patch", "configmap", "held", "-n", namespace, "--type=merge", "-p", release)
    assert run.returncode == 0, run.stderr
    done = h.sync("--prune")
    assert done.exit_code == 0, done.output
    assert "Sync status: Synced" in done.stdout
    assert not _exists(kubectl, namespace, "held") and _exists(kubectl, namespace, "stays")
