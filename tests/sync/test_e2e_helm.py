"""End to end: Helm charts from a Git path and from a chart repository served on loopback,
rendered with the real ``helm template`` and synced to the test cluster by the real CLI."""

from __future__ import annotations

import base64
import functools
import http.server
import json
import shutil
import subprocess
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from hub.home import load_keyring, open_store
from hub.sync.helm import find_helm
from hub.sync.history import HistoryEntry, SyncHistory
from hub.sync.model import RenderError
from tests.conftest import KubeEnv
from tests.sync.e2e_helpers import GitRepo, HubApp, application, hub_app

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def _helm() -> str:
    try:
        return find_helm()
    except RenderError as exc:
        pytest.skip(f"helm is not installed ({exc}); `make helm` installs it")


@pytest.fixture
def helm() -> str:
    return _helm()


def chart_files(
    name: str, version: str, *, extra: dict[str, str] | None = None, prefix: str = ""
) -> dict[str, str]:
    """A small chart: a ConfigMap from values, a Deployment-free Service, plus ``extra``."""
    files = {
        f"{prefix}Chart.yaml": f"""
            apiVersion: v2
            name: {name}
            version: {version}
            appVersion: "{version}"
            """,
        f"{prefix}values.yaml": """
            greeting: hello
            color: blue
            replicas: 1
            """,
        f"{prefix}templates/config.yaml": """
            apiVersion: v1
            kind: ConfigMap
            metadata:
              name: {{ .Release.Name }}-config
              labels:
                chart-version: {{ .Chart.Version | quote }}
            data:
              greeting: {{ .Values.greeting | quote }}
              color: {{ .Values.color | quote }}
              namespace: {{ .Release.Namespace | quote }}
              kube: {{ .Capabilities.KubeVersion.Version | quote }}
              hasApps: {{ .Capabilities.APIVersions.Has "apps/v1/Deployment" | quote }}
            """,
        f"{prefix}templates/service.yaml": """
            apiVersion: v1
            kind: Service
            metadata:
              name: {{ .Release.Name }}-svc
            spec:
              ports: [{port: 80}]
            """,
    }
    files.update(extra or {})
    return files


def _history(h: HubApp) -> list[HistoryEntry]:
    name = f"{yaml.safe_load(h.app_file.read_text())['metadata']['name']}"
    with open_store(h.hub.home) as store:
        return list(SyncHistory(store, lambda: load_keyring(h.hub.home)).entries(name))


def _json(kubectl: Kubectl, *args: str) -> dict:  # type: ignore[type-arg]
    run = kubectl(*args, "-o", "json")
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)  # type: ignore[no-any-return]


PRE_INSTALL_JOB = """
    apiVersion: batch/v1
    kind: Job
    metadata:
      name: {{ .Release.Name }}-migrate
      annotations:
        helm.sh/hook: pre-install,pre-upgrade
        helm.sh/hook-delete-policy: before-hook-creation
    spec:
      backoffLimit: 0
      template:
        spec:
          restartPolicy: Never
          containers:
            - name: migrate
              image: busybox:1.36
    """

TEST_HOOK = """
    apiVersion: v1
    kind: Pod
    metadata:
      name: {{ .Release.Name }}-test
      annotations:
        helm.sh/hook: test
    spec:
      containers: [{name: t, image: busybox:1.36}]
    """


def test_a_chart_in_git_with_values_from_a_second_source(
    kube: KubeEnv, tmp_path: Path, kubectl: Kubectl, namespace: str, helm: str
) -> None:
    charts = GitRepo(tmp_path / "charts")
    charts.write(
        chart_files(
            "greeter",
            "0.1.0",
            prefix="greeter/",
            extra={
                "greeter/templates/migrate.yaml": PRE_INSTALL_JOB,
                "greeter/templates/test.yaml": TEST_HOOK,
            },
        )
    )
    values = GitRepo(tmp_path / "values")
    values.write({"envs/prod.yaml": "greeting: from-the-values-repo\n"})
    h = hub_app(kube, tmp_path)
    app = application("greeter", charts, namespace=namespace)
    del app["spec"]["source"]
    app["spec"]["sources"] = [
        {
            "repoURL": str(charts.path),
            "path": "greeter",
            "targetRevision": "main",
            "helm": {
                "valueFiles": ["$values/envs/prod.yaml", "missing.yaml"],
                "ignoreMissingValueFiles": True,
                "parameters": [{"name": "color", "value": "red,green", "forceString": True}],
                "releaseName": "web",
            },
        },
        {"repoURL": str(values.path), "targetRevision": "main", "ref": "values"},
    ]
    h.write_app(app)
    run = h.sync("--timeout", "90")
    assert run.exit_code == 0, run.output

    cm = _json(kubectl, "get", "configmap", "web-config", "-n", namespace)
    assert cm["data"]["greeting"] == "from-the-values-repo"  # $values/envs/prod.yaml
    assert cm["data"]["color"] == "red,green"  # --set-string, comma escaped
    assert cm["data"]["namespace"] == namespace  # --namespace = destination namespace
    assert cm["data"]["kube"] == "v1.32.0"  # --kube-version from the cluster
    assert cm["data"]["hasApps"] == "true"  # --api-versions from discovery
    # the Helm pre-install hook ran as a PreSync hook, before the ConfigMap was applied
    assert "PreSync" in run.stdout and "web-migrate" in run.stdout
    job = _json(kubectl, "get", "job", "web-migrate", "-n", namespace)
    created_job = job["metadata"]["creationTimestamp"]
    assert created_job <= cm["metadata"]["creationTimestamp"]
    # helm.sh/hook: test is a hook Argo CD ignores: never created
    assert kubectl("get", "pod", "web-test", "-n", namespace).returncode != 0
    diff = h.diff()  # the same render compared with the cluster: nothing differs
    assert diff.exit_code == 0, diff.output

    # history records both sources' revisions
    (entry,) = _history(h)
    assert entry.source["revisions"] == [
        charts.git("rev-parse", "HEAD"),
        values.git("rev-parse", "HEAD"),
    ]
    assert entry.revision == ",".join(entry.source["revisions"])
    assert h("history", "-f", str(h.app_file)).exit_code == 0

    # a template removed from the chart is pruned
    charts.write({"greeter/templates/service.yaml": None}, "drop the service")
    run = h.sync("--timeout", "90", "--prune")
    assert run.exit_code == 0, run.output
    assert kubectl("get", "service", "web-svc", "-n", namespace).returncode != 0
    assert kubectl("get", "configmap", "web-config", "-n", namespace).returncode == 0

    # rollback to the first sync brings the service back and records both revisions again
    run = h("rollback", "-f", str(h.app_file), str(entry.id), "--timeout", "90")
    assert run.exit_code == 0, run.output
    assert kubectl("get", "service", "web-svc", "-n", namespace).returncode == 0
    last = _history(h)[-1]
    assert last.revision == entry.revision
    assert last.source["revisions"] == entry.source["revisions"]


# ---------------------------------------------------------------- a chart repository


REPO_USER, REPO_PASSWORD = "reader", "s3cret-chart-pass"


class _Handler(http.server.SimpleHTTPRequestHandler):
    require_auth = False

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        token = base64.b64encode(f"{REPO_USER}:{REPO_PASSWORD}".encode()).decode()
        if self.require_auth and self.headers.get("Authorization") != f"Basic {token}":
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="charts"')
            self.end_headers()
            return
        super().do_GET()


class _AuthHandler(_Handler):
    require_auth = True


def _serve_charts(
    tmp_path: Path, helm: str, handler_class: type[_Handler]
) -> Iterator[tuple[str, Callable[[str], None]]]:
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(handler_class, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/charts"
    (served / "charts").mkdir()

    def publish(version: str) -> None:
        src = tmp_path / f"src-{version}" / "podinfo"
        for rel, text in chart_files("podinfo", version).items():
            target = src / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(textwrap.dedent(text).lstrip())
        subprocess.run(
            [helm, "package", str(src), "-d", str(served / "charts")],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [helm, "repo", "index", str(served / "charts"), "--url", url],
            check=True,
            capture_output=True,
        )
        shutil.rmtree(src.parent)

    try:
        yield url, publish
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def chart_repo(tmp_path: Path, helm: str) -> Iterator[tuple[str, Callable[[str], None]]]:
    """A chart repository on loopback; ``publish(version)`` packages a new version."""
    yield from _serve_charts(tmp_path, helm, _Handler)


@pytest.fixture
def private_chart_repo(tmp_path: Path, helm: str) -> Iterator[tuple[str, Callable[[str], None]]]:
    """The same, answering 401 without HTTP basic auth."""
    yield from _serve_charts(tmp_path, helm, _AuthHandler)


def test_a_chart_from_a_repository_follows_a_semver_range(
    kube: KubeEnv,
    tmp_path: Path,
    kubectl: Kubectl,
    namespace: str,
    chart_repo: tuple[str, Callable[[str], None]],
) -> None:
    url, publish = chart_repo
    publish("1.0.0")
    publish("2.0.0")  # outside the range: never chosen
    h = hub_app(kube, tmp_path)
    unused = GitRepo(tmp_path / "unused")
    app = application("podinfo", unused, namespace=namespace)
    app["spec"]["source"] = {
        "repoURL": url,
        "chart": "podinfo",
        "targetRevision": "^1.0",
        "helm": {"valuesObject": {"greeting": "from-values-object"}},
    }
    h.write_app(app)
    run = h.sync("--timeout", "60")
    assert run.exit_code == 0, run.output
    name = f"podinfo-{h.suffix}"
    cm = _json(kubectl, "get", "configmap", f"{name}-config", "-n", namespace)
    assert cm["metadata"]["labels"]["chart-version"] == "1.0.0"
    assert cm["data"]["greeting"] == "from-values-object"

    publish("1.1.0")  # a new version inside the range is picked up by the next sync
    run = h.sync("--timeout", "60")
    assert run.exit_code == 0, run.output
    cm = _json(kubectl, "get", "configmap", f"{name}-config", "-n", namespace)
    assert cm["metadata"]["labels"]["chart-version"] == "1.1.0", run.output
    entries = _history(h)
    assert [e.revision for e in entries] == ["1.0.0", "1.1.0"]
    assert entries[-1].source["chart"] == "podinfo"
    assert "1.1.0" in h("history", "-f", str(h.app_file)).output

    # rollback re-applies what 1.0.0 rendered, and records that revision
    run = h("rollback", "-f", str(h.app_file), str(entries[0].id), "--timeout", "60")
    assert run.exit_code == 0, run.output
    cm = _json(kubectl, "get", "configmap", f"{name}-config", "-n", namespace)
    assert cm["metadata"]["labels"]["chart-version"] == "1.0.0"
    assert _history(h)[-1].revision == "1.0.0"

    # a range nothing matches fails before any write, naming what is there
    app["spec"]["source"]["targetRevision"] = "^3.0"
    h.write_app(app)
    run = h.sync("--timeout", "60")
    assert run.exit_code == 1
    assert "no version matches '^3.0'" in run.output and "1.1.0" in run.output


def test_a_private_chart_repository_uses_the_sealed_credentials(
    kube: KubeEnv,
    tmp_path: Path,
    kubectl: Kubectl,
    namespace: str,
    private_chart_repo: tuple[str, Callable[[str], None]],
) -> None:
    url, publish = private_chart_repo
    publish("0.3.0")
    h = hub_app(kube, tmp_path)
    app = application("private", GitRepo(tmp_path / "unused"), namespace=namespace)
    app["spec"]["source"] = {"repoURL": url, "chart": "podinfo", "targetRevision": "0.3.0"}
    h.write_app(app)
    run = h.sync("--timeout", "60")
    assert run.exit_code == 1
    assert "HTTP 401" in run.output and "hub repo add" in run.output

    added = h.hub("repo", "add", url, "--username", REPO_USER, "--password-stdin",
                  input=REPO_PASSWORD + "\n")  # fmt: skip
    assert added.exit_code == 0, added.output
    listed = h.hub("repo", "list")
    assert url in listed.output and REPO_USER in listed.output
    (item,) = json.loads(h.hub("repo", "list", "-o", "json").output)
    assert item["url"] == url and "password" not in json.dumps(item).lower()
    run = h.sync("--timeout", "60")
    assert run.exit_code == 0, run.output
    name = f"private-{h.suffix}"
    assert kubectl("get", "configmap", f"{name}-config", "-n", namespace).returncode == 0
    # the password is nowhere in clear: not in any output, not in the state database
    for out in (added.output, listed.output, run.output):
        assert REPO_PASSWORD not in out
    for db_file in (h.hub.home).glob("*.db*"):
        assert REPO_PASSWORD.encode() not in db_file.read_bytes()
    assert h.hub("repo", "rm", url).exit_code == 0
    assert "no repository credentials" in h.hub("repo", "list").output
