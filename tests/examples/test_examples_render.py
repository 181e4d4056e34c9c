"""examples/ is a working GitOps repository: every ApplicationSet generates the Applications
the README promises, every Application and every Kustomize overlay renders and validates
with the sync engine, and the payments plan runs its hooks and waves in the documented
order. No cluster: generation runs against Argo CD cluster Secrets, rendering and
planning are the engine's pure core (plus kustomize)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from hub.demo import PLACEHOLDER_REPO, set_image_tag
from hub.sync.helm import ClusterInfo, find_helm
from hub.sync.model import Application, RenderError, parse_application
from hub.sync.plan import plan_sync
from hub.sync.render import RenderResult, render_source
from hub.sync.resources import Phase
from hub.sync.sources import ResolvedSource, needs_cluster_info, render_app
from hub.sync.validate import validate_manifests
from tests.clusters.cli_support import Hub

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
pytestmark = pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kustomize rendering needs kubectl kustomize"
)

CLUSTERS = {
    "dev": {"env": "dev", "region": "us-east"},
    "staging": {"env": "staging", "region": "us-east"},
    "prod-us-east": {"env": "production", "region": "us-east"},
    "prod-eu-west": {"env": "production", "region": "eu-west"},
    # Not selected by any env-based set: proves the selectors, not just the count.
    "sandbox": {"team": "research"},
}
APPS = ("payments", "users", "web")


def server(name: str) -> str:
    return f"https://{name}.clusters.example.com"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/ committed to a Git repository, as the demo and a user would have it."""
    path = tmp_path_factory.mktemp("examples") / "gitops"
    shutil.copytree(EXAMPLES, path)
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "PATH": "/usr/bin:/bin:/usr/local/bin",
    }
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "x"]):
        subprocess.run(["git", *args], cwd=path, check=True, env=env, capture_output=True)
    return path


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    docs = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": f"cluster-{name}",
                "labels": {"argocd.argoproj.io/secret-type": "cluster", **labels},
            },
            "stringData": {"name": name, "server": server(name)},
        }
        for name, labels in CLUSTERS.items()
    ]
    path = tmp_path_factory.mktemp("secrets") / "clusters.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return path


def generate(repo: Path, secrets: Path, appset: str, tmp_path: Path) -> list[dict[str, Any]]:
    run = Hub(tmp_path / "no-home")(
        "appset", "generate", str(repo / "appsets" / appset),
        "--repo", f"{PLACEHOLDER_REPO}={repo}", "--clusters", str(secrets), "-o", "json",
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    apps = json.loads(run.stdout)
    assert isinstance(apps, list)
    return apps


def destination(app: dict[str, Any]) -> str:
    dest = app["spec"]["destination"]
    return str(dest.get("name") or dest["server"])


EXPECTED: dict[str, dict[str, tuple[str, str]]] = {
    # appset file -> {Application name: (destination, source path)}
    "platform-addons.yaml": {
        f"monitoring-{c}": (server(c), "platform/monitoring")
        for c in ("dev", "prod-eu-west", "prod-us-east", "staging")
    },
    "apps-dev.yaml": {f"{a}-dev": ("dev", f"apps/{a}/overlays/dev") for a in APPS},
    "apps-promoted.yaml": {
        f"{a}-{c}": (server(c), f"apps/{a}/overlays/{env}")
        for a in APPS
        for c, env in (
            ("staging", "staging"),
            ("prod-us-east", "production"),
            ("prod-eu-west", "production"),
        )
    },
    "alerting.yaml": {
        "alerting-prod-us-east": ("prod-us-east", "platform/alerting/regions/us-east"),
        "alerting-prod-eu-west": ("prod-eu-west", "platform/alerting/regions/eu-west"),
    },
    "cluster-info.yaml": {
        f"cluster-info-{c}": (server(c), "platform/cluster-info")
        for c in ("dev", "prod-eu-west", "prod-us-east", "staging")
    },
}


def test_every_appset_file_has_an_expectation() -> None:
    assert sorted(p.name for p in (EXAMPLES / "appsets").glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("appset", sorted(EXPECTED))
def test_each_appset_generates_the_applications_the_readme_describes(
    repo: Path, secrets: Path, appset: str, tmp_path: Path
) -> None:
    apps = generate(repo, secrets, appset, tmp_path)
    got = {a["metadata"]["name"]: (destination(a), a["spec"]["source"]["path"]) for a in apps}
    assert got == EXPECTED[appset]
    for a in apps:
        assert a["spec"]["source"]["repoURL"] == PLACEHOLDER_REPO
        assert a["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}


@pytest.mark.parametrize("appset", ["apps-dev.yaml", "apps-promoted.yaml"])
def test_only_payments_ignores_the_replicas_its_hpa_owns(
    repo: Path, secrets: Path, appset: str, tmp_path: Path
) -> None:
    for app in generate(repo, secrets, appset, tmp_path):
        ignored = app["spec"].get("ignoreDifferences")
        if app["metadata"]["name"].startswith("payments-"):
            assert ignored == [
                {
                    "group": "apps",
                    "kind": "Deployment",
                    "name": "payments",
                    "jsonPointers": ["/spec/replicas"],
                }
            ]
        else:
            assert ignored is None, app["metadata"]["name"]


def _render(repo: Path, app: Application) -> RenderResult:
    """Render every source of ``app`` from the examples tree (Helm ones with helm)."""
    resolved = [ResolvedSource(source=s, revision="", tree=repo) for s in app.app_sources()]
    if needs_cluster_info(resolved):
        try:
            find_helm()
        except RenderError as exc:
            pytest.skip(f"helm is not installed: {exc}")
    return render_app(app, resolved, cluster=ClusterInfo(kube_version="1.32.0"))


def test_the_cluster_info_chart_takes_its_values_from_the_cluster_labels(
    repo: Path, secrets: Path, tmp_path: Path
) -> None:
    data = {}
    for doc in generate(repo, secrets, "cluster-info.yaml", tmp_path):
        app = parse_application(doc, source_file="cluster-info.yaml")
        (cm,) = [m.obj for m in _render(repo, app).manifests if m.obj["kind"] == "ConfigMap"]
        data[app.name] = cm["data"]
    assert data["cluster-info-dev"]["cluster"] == "dev"
    assert data["cluster-info-dev"]["logLevel"] == "info"  # no values-dev.yaml: skipped
    assert data["cluster-info-prod-eu-west"]["env"] == "production"
    assert data["cluster-info-prod-eu-west"]["logLevel"] == "warn"  # values-production.yaml
    assert data["cluster-info-staging"]["kubernetesVersion"] == "v1.32.0"


@pytest.mark.parametrize("appset", sorted(EXPECTED))
def test_every_generated_application_renders_and_validates(
    repo: Path, secrets: Path, appset: str, tmp_path: Path
) -> None:
    for doc in generate(repo, secrets, appset, tmp_path):
        app = parse_application(doc, source_file=appset)
        rendered = _render(repo, app)
        valid = validate_manifests(
            rendered.manifests, destination_namespace=app.destination.namespace
        )
        assert valid.manifests, doc["metadata"]["name"]
        assert valid.warnings == (), valid.warnings
        for m in valid.manifests:
            if m.obj["kind"] != "Namespace":
                assert m.obj["metadata"]["namespace"] == app.destination.namespace


# Every kustomization that is deployed (bases are only deployed through an overlay).
OVERLAYS = sorted(
    str(p.parent.relative_to(EXAMPLES))
    for p in EXAMPLES.glob("**/kustomization.yaml")
    if p.parent.name != "base"
)


def test_there_are_overlays_for_every_app_and_region() -> None:
    assert len(OVERLAYS) == 3 * len(APPS) + 2


@pytest.mark.parametrize("path", OVERLAYS)
def test_every_kustomize_overlay_renders_and_validates(repo: Path, path: str) -> None:
    app = parse_application(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": "x"},
            "spec": {
                "project": "default",
                "source": {"repoURL": PLACEHOLDER_REPO, "path": path, "targetRevision": "HEAD"},
                "destination": {"server": server("dev"), "namespace": "default"},
            },
        }
    )
    rendered = render_source(repo, app.primary_source())
    valid = validate_manifests(rendered.manifests, destination_namespace="default")
    kinds = {m.obj["kind"] for m in valid.manifests}
    assert "Namespace" in kinds or "ConfigMap" in kinds


def payments_plan(repo: Path, overlay: str) -> list[tuple[str, int, str, bool]]:
    app = parse_application(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": f"payments-{overlay}"},
            "spec": {
                "project": "default",
                "source": {
                    "repoURL": PLACEHOLDER_REPO,
                    "path": f"apps/payments/overlays/{overlay}",
                    "targetRevision": "HEAD",
                },
                "destination": {"server": server("dev"), "namespace": "payments"},
            },
        }
    )
    rendered = render_source(repo, app.primary_source())
    valid = validate_manifests(rendered.manifests, destination_namespace="payments")
    plan = plan_sync(
        app=app.name, desired=valid.manifests, live=[], revision="0" * 40, started_at=1,
        destination_namespace="payments",
    )  # fmt: skip
    return [(t.phase.value, t.wave, f"{t.key.kind}/{t.key.name}", t.hook) for t in plan.tasks]


@pytest.mark.parametrize("overlay", ["dev", "staging", "production"])
def test_the_payments_plan_runs_migration_waves_then_smoke_test(repo: Path, overlay: str) -> None:
    assert payments_plan(repo, overlay) == [
        # The PreSync hook lives in the payments namespace, so the Namespace (wave -2)
        # is pulled in front of it, as Argo CD does.
        (Phase.PRE_SYNC.value, 0, "Namespace/payments", False),
        (Phase.PRE_SYNC.value, 0, "Job/payments-migrate", True),
        ("Sync", -2, "ServiceAccount/payments", False),
        ("Sync", -2, "Role/payments-config-reader", False),
        ("Sync", -2, "RoleBinding/payments-config-reader", False),
        ("Sync", -1, "ConfigMap/payments-config", False),
        ("Sync", 1, "Deployment/payments", False),
        ("Sync", 2, "Service/payments", False),
        ("Sync", 2, "HorizontalPodAutoscaler/payments", False),
        ("Sync", 2, "Ingress/payments", False),
        (Phase.POST_SYNC.value, 0, "Job/payments-smoke-test", True),
    ]


def test_the_migration_hook_is_replaced_per_sync_and_bounded_in_time(repo: Path) -> None:
    rendered = render_source(
        repo,
        parse_application(
            {
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "Application",
                "metadata": {"name": "p"},
                "spec": {
                    "source": {"repoURL": PLACEHOLDER_REPO, "path": "apps/payments/overlays/dev"},
                    "destination": {"server": server("dev"), "namespace": "payments"},
                },
            }
        ).primary_source(),
    )
    jobs = {m.obj["metadata"]["name"]: m.obj for m in rendered.manifests if m.obj["kind"] == "Job"}
    migrate = jobs["payments-migrate"]
    assert migrate["metadata"]["annotations"]["argocd.argoproj.io/hook-delete-policy"] == (
        "BeforeHookCreation"
    )
    assert migrate["spec"]["activeDeadlineSeconds"] > 0
    deploy = next(m.obj for m in rendered.manifests if m.obj["kind"] == "Deployment")
    # The demo's Degraded step depends on a short progress deadline.
    assert deploy["spec"]["progressDeadlineSeconds"] <= 15


@pytest.mark.parametrize(
    ("image", "tag"),
    [
        ("registry.example.com/payments", "1.2.0-crashloop"),
        ("registry.example.com/payments-migrate", "1.3.0-fail"),
    ],
)
def test_the_demo_edits_one_image_tag_line_of_the_payments_kustomization(
    image: str, tag: str
) -> None:
    path = EXAMPLES / "apps/payments/base/kustomization.yaml"
    before = path.read_text()
    after = set_image_tag(before, image, tag)
    changed = [
        (a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b
    ]
    assert len(changed) == 1 and changed[0][1].strip() == f"newTag: {tag}"
    images = {i["name"]: i["newTag"] for i in yaml.safe_load(after)["images"]}
    assert images[image] == tag
