"""`hub serve --once` with Helm: an ApplicationSet (goTemplate, ``templatePatch``) generating
multi-source Helm Applications, and a chart from a chart repository, on simulated clusters."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from clusters.sim import SimServer
from tests.e2e.serve_support import Fleet, start_hub, stop_hub, wait_for
from tests.sync.e2e_helpers import GitRepo
from tests.sync.test_e2e_helm import chart_files, chart_repo, helm  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.sim_only("needs simulated clusters"), pytest.mark.timeout(180)]

APPSET = """
apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata:
  name: greeter
spec:
  goTemplate: true
  generators:
    - clusters: {{}}
  template:
    metadata:
      name: '{{{{.name}}}}-greeter'
    spec:
      project: default
      sources:
        - repoURL: {repo}
          targetRevision: main
          path: charts/greeter
          helm:
            valueFiles: ['$values/envs/{{{{.name}}}}.yaml']
            valuesObject:
              color: '{{{{.name | upper}}}}'
        - repoURL: {repo}
          targetRevision: main
          ref: values
      destination: {{server: '{{{{.server}}}}', namespace: greeter}}
      syncPolicy:
        syncOptions: [CreateNamespace=true]
  templatePatch: |
    spec:
      sources:
        - repoURL: {repo}
          targetRevision: main
          path: charts/greeter
          helm:
            valueFiles: ['$values/envs/{{{{.name}}}}.yaml']
            valuesObject:
              color: '{{{{.name | upper}}}}'
            parameters:
              - name: replicas
                value: '{{{{ len .name }}}}'
        - repoURL: {repo}
          targetRevision: main
          ref: values
"""


def _configmap(f: Fleet, cluster: str, name: str, ns: str) -> dict[str, str]:
    out = f.kubectl(cluster, "get", "configmap", name, "-n", ns, "-o", "json")
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout)["data"])


def test_an_appset_of_multi_source_helm_apps_syncs_with_once(tmp_path: Path, helm: str) -> None:  # noqa: F811
    with SimServer(clusters=["one", "two"], ready_delay=0.2, kubeconfig_path=tmp_path / "k") as sim:
        repo = GitRepo(tmp_path / "repo")
        files = chart_files("greeter", "0.1.0", prefix="charts/greeter/")
        files["charts/greeter/templates/config.yaml"] += (
            "  replicas: {{ .Values.replicas | quote }}\n"
        )
        files["sets/greeter.yaml"] = APPSET.format(repo=repo.path)
        files["envs/one.yaml"] = "greeting: hello-one\n"
        files["envs/two.yaml"] = "greeting: hello-two\n"
        first = repo.write(files)
        f = Fleet(tmp_path / "home", sim, repo, tmp_path / "log")
        f.cli.ok("init")
        for name in ("one", "two"):
            f.cli.ok("cluster", "add", name, "--kubeconfig", str(sim.kubeconfig_path),
                     "--context", name)  # fmt: skip
        f.cli.ok("source", "add", "root", "--repo", str(repo.path), "--path", "sets")
        run = f.cli("serve", "--once", "--timeout", "30")
        assert run.exit_code == 0, run.output
        for cluster in ("one", "two"):
            data = _configmap(f, cluster, f"{cluster}-greeter-config", "greeter")
            assert data["greeting"] == f"hello-{cluster}"  # $values/envs/<cluster>.yaml
            assert data["color"] == cluster.upper()  # valuesObject built with goTemplate
            assert data["replicas"] == "3"  # the parameter templatePatch added
        apps = f.apps()
        # both sources' revisions are the app's revision
        assert apps["one-greeter"].desired_sha == f"{first},{first}"


def test_a_chart_repository_app_syncs_with_once(
    tmp_path: Path,
    chart_repo: tuple[str, Callable[[str], None]],  # noqa: F811
) -> None:
    url, publish = chart_repo
    publish("1.4.0")
    with SimServer(clusters=["one"], ready_delay=0.2, kubeconfig_path=tmp_path / "k") as sim:
        repo = GitRepo(tmp_path / "repo")
        app = f"""
            apiVersion: argoproj.io/v1alpha1
            kind: Application
            metadata: {{name: podinfo}}
            spec:
              project: default
              source: {{repoURL: '{url}', chart: podinfo, targetRevision: '~1.4'}}
              destination: {{name: one, namespace: podinfo}}
              syncPolicy: {{syncOptions: [CreateNamespace=true]}}
            """
        repo.write({"apps/podinfo.yaml": app})
        f = Fleet(tmp_path / "home", sim, repo, tmp_path / "log")
        f.cli.ok("init")
        f.cli.ok("cluster", "add", "one", "--kubeconfig", str(sim.kubeconfig_path),
                 "--context", "one")  # fmt: skip
        f.cli.ok("source", "add", "root", "--repo", str(repo.path), "--path", "apps")
        run = f.cli("serve", "--once", "--timeout", "30")
        assert run.exit_code == 0, run.output
        assert _configmap(f, "one", "podinfo-config", "podinfo")["greeting"] == "hello"
        assert f.apps()["podinfo"].desired_sha == "1.4.0"


def test_a_running_hub_deploys_a_new_chart_version_inside_the_range(
    tmp_path: Path,
    chart_repo: tuple[str, Callable[[str], None]],  # noqa: F811
) -> None:
    url, publish = chart_repo
    publish("2.0.0")
    with SimServer(clusters=["one"], ready_delay=0.2, kubeconfig_path=tmp_path / "k") as sim:
        repo = GitRepo(tmp_path / "repo")
        app = f"""
            apiVersion: argoproj.io/v1alpha1
            kind: Application
            metadata: {{name: auto}}
            spec:
              project: default
              source: {{repoURL: '{url}', chart: podinfo, targetRevision: '>=2.0.0 <3.0.0'}}
              destination: {{name: one, namespace: auto}}
              syncPolicy:
                automated: {{prune: true}}
                syncOptions: [CreateNamespace=true]
            """
        repo.write({"apps/auto.yaml": app})
        f = Fleet(tmp_path / "home", sim, repo, tmp_path / "log")
        f.cli.ok("init")
        f.cli.ok("cluster", "add", "one", "--kubeconfig", str(sim.kubeconfig_path),
                 "--context", "one")  # fmt: skip
        f.cli.ok("source", "add", "root", "--repo", str(repo.path), "--path", "apps")

        def label() -> str | None:
            out = f.kubectl("one", "get", "configmap", "auto-config", "-n", "auto", "-o",
                            "jsonpath={.metadata.labels.chart-version}")  # fmt: skip
            return out.stdout if out.returncode == 0 else None

        start_hub(f, "--git-poll", "1", "--resync", "600", "--port", "0")
        try:
            wait_for("2.0.0 deployed", lambda: label() == "2.0.0", timeout=60)
            publish("2.1.0")  # the next poll resolves the range again and auto-syncs
            wait_for("2.1.0 deployed", lambda: label() == "2.1.0", timeout=60)
            # The label lands when the sync applies; the sync records its revision only
            # after its health gate, a moment later.
            wait_for("2.1.0 recorded", lambda: f.apps()["auto"].synced_sha == "2.1.0", timeout=30)
        finally:
            code = stop_hub(f)
        assert code == 0, f.hub_log()[-4000:]
