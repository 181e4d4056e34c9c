"""The real kubectl binary against the cluster: the commands people and scripts use most."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest
import yaml

pytestmark = pytest.mark.e2e

Kubectl = Callable[..., subprocess.CompletedProcess[str]]

IMAGE = "registry.k8s.io/pause:3.9"


def _manifest(namespace: str, replicas: int = 1, data: str = "1") -> str:
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: {namespace}
  labels: {{app: web}}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: main
        image: {IMAGE}
        ports:
        - containerPort: 8080
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: {namespace}
data:
  value: "{data}"
"""


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"kubectl failed ({result.returncode}): {result.stderr}"
    return result.stdout


def test_apply_creates_then_reports_unchanged(kubectl: Kubectl, namespace: str) -> None:
    out = _ok(kubectl("apply", "-f", "-", input=_manifest(namespace)))
    assert "deployment.apps/web created" in out and "configmap/settings created" in out
    out = _ok(kubectl("apply", "-f", "-", input=_manifest(namespace)))
    assert "deployment.apps/web unchanged" in out and "configmap/settings unchanged" in out
    out = _ok(kubectl("apply", "-f", "-", input=_manifest(namespace, data="2")))
    assert "configmap/settings configured" in out


def test_server_side_apply_creates_and_then_conflicts_with_another_manager(
    kubectl: Kubectl, namespace: str
) -> None:
    out = _ok(
        kubectl(
            "apply",
            "--server-side",
            "--field-manager=team-a",
            "-f",
            "-",
            input=_manifest(namespace),
        )
    )
    assert "serverside-applied" in out
    clash = kubectl(
        "apply",
        "--server-side",
        "--field-manager=team-b",
        "-f",
        "-",
        input=_manifest(namespace, data="other"),
    )
    assert clash.returncode != 0 and "conflict" in clash.stderr.lower()
    _ok(
        kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=team-b",
            "-f",
            "-",
            input=_manifest(namespace, data="other"),
        )
    )
    assert (
        _ok(
            kubectl("get", "configmap", "settings", "-n", namespace, "-o", "jsonpath={.data.value}")
        )
        == "other"
    )


def test_get_yaml_shows_server_populated_fields(kubectl: Kubectl, namespace: str) -> None:
    _ok(kubectl("apply", "--server-side", "-f", "-", input=_manifest(namespace)))
    obj = yaml.safe_load(
        _ok(
            kubectl(
                "get", "deployment", "web", "-n", namespace, "-o", "yaml", "--show-managed-fields"
            )
        )
    )
    assert (
        obj["metadata"]["uid"]
        and obj["metadata"]["resourceVersion"]
        and obj["metadata"]["generation"] == 1
    )
    assert obj["spec"]["strategy"]["type"] == "RollingUpdate"
    assert obj["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert any(
        m["manager"] == "kubectl" and m["operation"] == "Apply"
        for m in obj["metadata"]["managedFields"]
    )


def test_get_prints_a_table_with_kind_columns(kubectl: Kubectl, namespace: str) -> None:
    _ok(kubectl("apply", "-f", "-", input=_manifest(namespace)))
    header = _ok(kubectl("get", "deployments", "-n", namespace)).splitlines()[0].split()
    assert header == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    rows = _ok(kubectl("get", "namespaces", namespace)).splitlines()
    assert rows[0].split() == ["NAME", "STATUS", "AGE"] and rows[1].split()[:2] == [
        namespace,
        "Active",
    ]


@pytest.mark.parametrize(("replicas", "expected_rc"), [(1, 0), (3, 1)])
def test_diff_exits_zero_when_in_sync_and_one_when_not(
    kubectl: Kubectl, namespace: str, replicas: int, expected_rc: int
) -> None:
    _ok(kubectl("apply", "-f", "-", input=_manifest(namespace)))
    result = kubectl("diff", "-f", "-", input=_manifest(namespace, replicas=replicas))
    assert result.returncode == expected_rc, result.stderr
    if expected_rc:
        assert "+  replicas: 3" in result.stdout


def test_scale_sets_replicas_through_the_scale_subresource(
    kubectl: Kubectl, namespace: str
) -> None:
    _ok(kubectl("apply", "-f", "-", input=_manifest(namespace)))
    _ok(kubectl("scale", "deployment/web", "-n", namespace, "--replicas=2"))
    assert (
        _ok(kubectl("get", "deployment", "web", "-n", namespace, "-o", "jsonpath={.spec.replicas}"))
        == "2"
    )


def test_rollout_status_and_wait_see_the_deployment_become_available(
    kubectl: Kubectl, namespace: str
) -> None:
    _ok(kubectl("apply", "-f", "-", input=_manifest(namespace, replicas=2)))
    out = _ok(
        kubectl("rollout", "status", "deployment/web", "-n", namespace, "--timeout=60s", timeout=90)
    )
    assert "successfully rolled out" in out
    _ok(
        kubectl(
            "wait",
            "--for=condition=Available",
            "deployment/web",
            "-n",
            namespace,
            "--timeout=60s",
            timeout=90,
        )
    )


def test_delete_removes_what_the_manifest_names(kubectl: Kubectl, namespace: str) -> None:
    _ok(kubectl("apply", "-f", "-", input=_manifest(namespace)))
    out = _ok(
        kubectl(
            "delete",
            "-f",
            "-",
            "--wait=true",
            "--timeout=60s",
            input=_manifest(namespace),
            timeout=90,
        )
    )
    assert 'deployment.apps "web" deleted' in out
    missing = kubectl("get", "configmap", "settings", "-n", namespace)
    assert missing.returncode == 1 and "NotFound" in missing.stderr


def test_get_watch_streams_changes_until_it_times_out(kubectl: Kubectl, namespace: str) -> None:
    _ok(kubectl("apply", "-f", "-", input=_manifest(namespace)))
    proc = subprocess.Popen(
        [
            "kubectl",
            *_kubectl_base(kubectl),
            "get",
            "configmaps",
            "-n",
            namespace,
            "--watch",
            "--request-timeout=3s",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _ok(
            kubectl(
                "create",
                "-f",
                "-",
                input=f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: later, namespace: {namespace}}}\n",
            )
        )
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "DATA", "AGE"]
    assert any(line.split()[0] == "settings" for line in lines[1:])
    assert any(line.split()[0] == "later" for line in lines[1:])


def _kubectl_base(kubectl: Kubectl) -> list[str]:
    """The --kubeconfig/--context/--cache-dir flags the fixture passes, recovered from a dry call."""
    probe = kubectl("config", "current-context")
    args = probe.args
    assert isinstance(args, list)
    return [a for a in args[1 : args.index("config")]]


def test_typed_create_commands_work_although_kubectl_sends_protobuf(
    kubectl: Kubectl, namespace: str
) -> None:
    _ok(kubectl("create", "configmap", "typed", "-n", namespace, "--from-literal=a=b"))
    _ok(kubectl("create", "secret", "generic", "creds", "-n", namespace, "--from-literal=p=q"))
    _ok(kubectl("create", "serviceaccount", "bot", "-n", namespace))
    assert (
        _ok(kubectl("get", "configmap", "typed", "-n", namespace, "-o", "jsonpath={.data.a}"))
        == "b"
    )
    assert (
        _ok(kubectl("get", "secret", "creds", "-n", namespace, "-o", "jsonpath={.data.p}"))
        == "cQ=="
    )
    assert (
        _ok(kubectl("get", "serviceaccount", "bot", "-n", namespace, "-o", "name")).strip()
        == "serviceaccount/bot"
    )


@pytest.mark.sim_only(
    reason="kube-apiserver reads every protobuf body; the simulator only four kinds (docs/sim.md)"
)
def test_typed_create_of_other_kinds_is_refused_as_unsupported_media_type(
    kubectl: Kubectl, namespace: str
) -> None:
    run = kubectl("create", "deployment", "typed", "-n", namespace, "--image=nginx")
    assert run.returncode == 1
    assert "415" in run.stderr or "unknown format" in run.stderr, run.stderr
    assert kubectl("get", "deployment", "typed", "-n", namespace).returncode == 1
