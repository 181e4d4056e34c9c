"""End to end: bad manifests fail the sync before any write, naming file and object."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import KubeEnv
from tests.sync.e2e_helpers import GitRepo, application, hub_app

Kubectl = Callable[..., subprocess.CompletedProcess[str]]

GOOD = """
    apiVersion: v1
    kind: ConfigMap
    metadata: {name: written-first, namespace: NS}
    data: {a: b}
    """


@pytest.mark.parametrize(
    ("bad", "with_namespace", "expected"),
    [
        (
            "apiVersion: v1\nmetadata: {name: no-kind}\ndata: {a: b}\n",
            True,
            ["app/bad.yaml", "no-kind", "kind is missing"],
        ),
        (
            "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: gadget}\n",
            True,
            ["app/bad.yaml", "Widget gadget", "not known to the cluster"],
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: homeless}\n",
            False,
            ["app/bad.yaml", "ConfigMap homeless", "no spec.destination.namespace"],
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [unclosed\n",
            True,
            ["app/bad.yaml", "invalid YAML"],
        ),
    ],
    ids=["no-kind", "unknown-kind", "no-namespace", "invalid-yaml"],
)
def test_bad_input_fails_before_any_write_naming_file_and_object(
    kube: KubeEnv,
    tmp_path: Path,
    kubectl: Kubectl,
    namespace: str,
    bad: str,
    with_namespace: bool,
    expected: list[str],
) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write({"app/a-good.yaml": GOOD.replace("NS", namespace), "app/bad.yaml": bad})
    h = hub_app(kube, tmp_path)
    h.write_app(application("bad", repo, namespace=namespace if with_namespace else ""))

    run = h.sync("--timeout", "30")
    assert run.exit_code != 0
    for text in expected:
        assert text in run.output, run.output
    assert "Operation:   Error" in run.stdout
    diff = h.diff()
    assert diff.exit_code >= 2 and expected[0] in diff.output
    # nothing was written, not even the valid object before the bad one
    got = kubectl("get", "configmap", "written-first", "-n", namespace)
    assert got.returncode != 0 and "NotFound" in got.stderr
