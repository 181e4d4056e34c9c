"""Argo CD Application parsing: typed, errors naming file and field path."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.sync.model import (
    AppSpecError,
    SyncError,
    SyncOptions,
    UnsupportedSourceError,
    parse_application,
    parse_application_yaml,
    parse_duration,
)

APP = """
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: payments
  namespace: argocd
  finalizers: [resources-finalizer.argocd.argoproj.io]
spec:
  project: shop
  source:
    repoURL: https://git.example/shop.git
    path: apps/payments
    targetRevision: main
    directory:
      recurse: true
      include: '*.yaml'
      exclude: 'test/*'
      jsonnet: {tlas: []}
  destination:
    name: eu-1
    namespace: payments
  syncPolicy:
    automated: {prune: true, selfHeal: true}
    syncOptions: [CreateNamespace=true, PruneLast=true]
    retry:
      limit: 5
      backoff: {duration: 10s, factor: 3, maxDuration: 2m}
  ignoreDifferences:
    - group: apps
      kind: Deployment
      jsonPointers: [/spec/replicas]
    - kind: ConfigMap
      jqPathExpressions: ['.data.generated']
      managedFieldsManagers: [kube-controller-manager]
  revisionHistoryLimit: 3
  someFutureField: ignored
"""


def test_a_full_application_parses_into_typed_fields() -> None:
    app = parse_application_yaml(APP, source_file="apps/payments.yaml")
    assert (app.name, app.namespace, app.project) == ("payments", "argocd", "shop")
    src = app.primary_source()
    assert (src.repo_url, src.path, src.target_revision, src.declared_type) == (
        "https://git.example/shop.git",
        "apps/payments",
        "main",
        "Directory",
    )
    assert src.directory is not None and src.directory.recurse and src.directory.exclude == "test/*"
    assert (app.destination.name, app.destination.server, app.destination.namespace) == (
        "eu-1",
        "",
        "payments",
    )
    policy = app.sync_policy
    assert policy.auto_sync and policy.automated is not None
    assert (policy.automated.prune, policy.automated.self_heal, policy.automated.allow_empty) == (
        True,
        True,
        False,
    )
    assert policy.sync_options.has("CreateNamespace", "true")
    assert policy.retry is not None and policy.retry.limit == 5
    assert (
        policy.retry.backoff.duration_s,
        policy.retry.backoff.factor,
        policy.retry.backoff.max_duration_s,
    ) == (10, 3, 120)
    assert app.ignore_differences[0].json_pointers == ("/spec/replicas",)
    assert app.ignore_differences[1].managed_fields_managers == ("kube-controller-manager",)
    assert app.revision_history_limit == 3


def test_defaults_match_argo_cd() -> None:
    app = parse_application(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": "a"},
            "spec": {
                "source": {"repoURL": "r"},
                "destination": {"server": "https://k"},
                "syncPolicy": {"retry": {}},
            },
        }
    )
    assert app.project == "default" and app.revision_history_limit == 10
    assert app.primary_source().target_revision == "HEAD"
    assert app.sync_policy.retry is not None
    backoff = app.sync_policy.retry.backoff
    assert (backoff.duration_s, backoff.factor, backoff.max_duration_s) == (5, 2, 180)
    assert not app.sync_policy.auto_sync


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ("  destination: [x]", "spec.destination: expected a mapping, got a list"),
        (
            "  revisionHistoryLimit: ten",
            "spec.revisionHistoryLimit: expected an integer, got 'ten'",
        ),
        (
            "  syncPolicy: {automated: {prune: 'yes'}}",
            "spec.syncPolicy.automated.prune: expected true or false",
        ),
        (
            "  syncPolicy: {syncOptions: CreateNamespace=true}",
            "spec.syncPolicy.syncOptions: expected a list of strings",
        ),
        (
            "  syncPolicy: {retry: {backoff: {duration: soon}}}",
            "spec.syncPolicy.retry.backoff.duration: cannot parse 'soon'",
        ),
        ("  ignoreDifferences: [{group: apps}]", r"spec.ignoreDifferences\[0\].kind: is required"),
        (
            "  destination: {server: https://k, name: eu-1}",
            "spec.destination: set either server or name, not both",
        ),
    ],
)
def test_errors_name_the_file_and_field_path(patch: str, message: str) -> None:
    text = (
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: a}\nspec:\n  source: {repoURL: r}\n"
        + patch
        + "\n"
    )
    with pytest.raises(AppSpecError, match=f"^app.yaml: {message}"):
        parse_application_yaml(text, source_file="app.yaml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: Application\n", "expected argoproj.io/v1alpha1 Application"),
        (
            "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {}\nspec: {}\n",
            "metadata.name: is required",
        ),
        (
            "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: a}\nspec: {}\n",
            "spec.source: is required",
        ),
        ("a: [", "invalid YAML"),
        ("---\n---\n", "expected exactly one Application document, found 0"),
    ],
)
def test_invalid_documents_are_usage_errors(text: str, message: str) -> None:
    with pytest.raises(AppSpecError, match=message) as err:
        parse_application_yaml(text, source_file="app.yaml")
    assert err.value.exit_code == 2


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            {"repoURL": "r", "path": "p", "plugin": {"name": "x"}},
            "plugin sources are not supported yet",
        ),
        (
            {"repoURL": "r", "path": "p", "kustomize": {"namePrefix": "x-", "images": ["a=b"]}},
            r"kustomize overrides .*\(namePrefix, images\)",
        ),
    ],
)
def test_sources_we_cannot_render_are_reported_clearly(
    source: dict[str, object], message: str
) -> None:
    app = parse_application(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": "a"},
            "spec": {"source": source},
        },
        source_file="a.yaml",
    )
    with pytest.raises(UnsupportedSourceError, match=message):
        app.primary_source()


def test_multiple_sources_are_all_resolved_and_ref_only_sources_not_rendered() -> None:
    spec = {"sources": [{"repoURL": "r1", "path": "a"}, {"repoURL": "r2", "ref": "values"}]}
    app = parse_application(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": "a"},
            "spec": spec,
        }
    )
    assert [s.repo_url for s in app.sources] == ["r1", "r2"] and app.sources[1].ref == "values"
    assert [s.repo_url for s in app.app_sources()] == ["r1", "r2"]
    assert app.sources[1].ref_only and not app.sources[0].ref_only
    assert app.primary_source().repo_url == "r1"
    single = parse_application(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": "a"},
            "spec": {"sources": [{"repoURL": "r1", "path": "a"}]},
        }
    )
    assert single.primary_source().path == "a"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5s", 5),
        ("3m", 180),
        ("1h", 3600),
        ("1h30m", 5400),
        ("500ms", 0.5),
        ("1.5m", 90),
        ("10", 10),
        (7, 7),
        ("0", 0),
    ],
)
def test_argo_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "s", "5 s", "1d", "five", True, None, "1h-30m"])
def test_bad_durations_are_errors(text: object) -> None:
    if text == "5":
        assert parse_duration(text) == 5  # a bare number is seconds
        return
    with pytest.raises(AppSpecError, match="duration"):
        parse_duration(text)


def test_sync_options_later_values_and_resource_values_win() -> None:
    opts = SyncOptions.parse(["Prune=true", " Prune=false ", "", "Prune=false"])
    assert opts.items == ("Prune=true", "Prune=false")
    assert opts.get("Prune") == "false" and opts.get("Replace") is None


_yamlish = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda c: (
        st.lists(c, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "spec",
                    "source",
                    "repoURL",
                    "path",
                    "destination",
                    "syncPolicy",
                    "automated",
                    "retry",
                    "backoff",
                    "duration",
                    "ignoreDifferences",
                    "kind",
                    "metadata",
                    "name",
                    "x",
                ]
            ),
            c,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_yamlish)
def test_any_input_parses_or_fails_with_our_own_error(spec: object) -> None:
    doc = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "a"},
        "spec": spec,
    }
    try:
        app = parse_application(doc, source_file="fuzz.yaml")
    except SyncError as exc:
        assert str(exc).startswith("fuzz.yaml: ")
    else:
        assert app.source is not None or app.sources


@pytest.mark.parametrize(
    "bad",
    ["!!int zz", "!!float clu", '!!timestamp "zz"', "!!float", "[" * 5000],
    ids=["int", "float", "timestamp", "empty-float", "deep"],
)
def test_hostile_yaml_in_an_application_file_is_a_usage_error_naming_the_file(bad: str) -> None:
    text = f"apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: {bad}\n"
    with pytest.raises(AppSpecError, match=r"^app.yaml: invalid YAML: line 4, column \d+: ") as err:
        parse_application_yaml(text, source_file="app.yaml")
    assert err.value.exit_code == 2
