"""Parsing ApplicationSet YAML into typed specs, and the errors for invalid ones."""

from __future__ import annotations

import pytest

from generators.spec import SpecError, parse_appsets

HEADER = """apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata:
  name: s
  namespace: argocd
spec:
"""
TEMPLATE = """  template:
    metadata: {name: x}
    spec: {project: default}
"""


def doc(generators: str, extra: str = "") -> str:
    return HEADER + "  generators:\n" + generators + TEMPLATE + extra


def test_a_full_document_parses_into_typed_fields() -> None:
    text = doc(
        """  - git:
      repoURL: https://g/r.git
      revision: main
      directories: [{path: "apps/*"}, {path: apps/x, exclude: true}]
      values: {a: b}
      pathParamPrefix: p
    selector: {matchLabels: {env: prod}}
""",
        '  goTemplate: true\n  goTemplateOptions: ["missingkey=error"]\n'
        "  syncPolicy: {preserveResourcesOnDeletion: true}\n  strategy: {type: Canary}\n",
    )
    [aset] = parse_appsets(text, source="f.yaml")
    assert aset.name == "s" and aset.namespace == "argocd"
    entry = aset.spec.generators[0]
    assert entry.git is not None
    assert entry.git.revision == "main"
    assert [d.exclude for d in entry.git.directories] == [False, True]
    assert entry.git.path_param_prefix == "p"
    assert entry.selector is not None and entry.selector.match_labels == {"env": "prod"}
    assert aset.spec.mode.go and aset.spec.mode.missing_key == "error"
    assert aset.spec.sync_policy.preserve_resources_on_deletion
    # Fields we do not interpret are kept for later stages.
    assert aset.spec.raw["strategy"] == {"type": "Canary"}
    assert aset.spec.strategy is not None and aset.spec.strategy.type == "Canary"


def test_multi_document_files_give_every_set_and_skip_other_kinds() -> None:
    other = "---\napiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata: {name: p}\n---\n"
    text = doc("  - list: {elements: []}\n") + other + doc("  - clusters: {}\n")
    sets = parse_appsets(text, source="f.yaml")
    assert [s.source for s in sets] == ["f.yaml#0", "f.yaml#2"]
    assert sets[1].spec.generators[0].clusters is not None


def test_unknown_fields_are_ignored_like_argo_cd() -> None:
    text = doc("  - list: {elements: [{a: b}], futureField: 1}\n    alsoNew: true\n")
    [aset] = parse_appsets(text)
    assert aset.spec.generators[0].list is not None


def test_clusters_with_a_null_body_is_a_clusters_generator() -> None:
    [aset] = parse_appsets(doc("  - clusters:\n"))
    assert aset.spec.generators[0].clusters is not None


@pytest.mark.parametrize(
    ("generators", "extra", "path", "reason"),
    [
        (
            "  - matrix:\n      generators:\n      - list: {elements: []}\n      - git:\n"
            "          repoURL: r\n          directories: [{path: a}, {path: b}, {exclude: true}]\n",
            "",
            "spec.generators[0].matrix.generators[1].git.directories[2].path",
            "is required",
        ),
        (
            "  - list: {elements: [a]}\n",
            "",
            "spec.generators[0].list.elements[0]",
            "must be a mapping",
        ),
        ("  - git: {repoURL: r}\n", "", "spec.generators[0].git", "directories` or `files"),
        ("  - lsit: {}\n", "", "spec.generators[0]", "unknown key(s) lsit"),
        ("  - scmProvider: {}\n", "", "spec.generators[0].scmProvider", "not supported"),
        (
            "  - clusters: {values: {replicas: 3}}\n",
            "",
            "spec.generators[0].clusters.values.replicas",
            "must be a string",
        ),
        (
            "  - clusters:\n      selector:\n        matchExpressions: [{key: a, operator: Has}]\n",
            "",
            "spec.generators[0].clusters.selector.matchExpressions[0].operator",
            "not a label selector operator",
        ),
        (
            "  - clusters:\n      selector:\n        matchExpressions: [{key: a, operator: In}]\n",
            "",
            "spec.generators[0].clusters.selector.matchExpressions[0].values",
            "non-empty",
        ),
        (
            "  - list: {elements: []}\n",
            "  goTemplateOptions: [missingkey=eror]\n",
            "spec.goTemplateOptions",
            "missingkey=default|invalid|zero|error",
        ),
        (
            "  - list: {elements: []}\n",
            "  goTemplate: 'true'\n",
            "spec.goTemplate",
            "true or false",
        ),
        (
            "  - list: {elements: []}\n",
            "  templatePatch: {spec: {}}\n",
            "spec.templatePatch",
            "must be a string",
        ),
        (
            "  - matrix:\n      generators:\n      - list: {elements: []}\n"
            "      - list: {elements: []}\n        clusters: {}\n",
            "",
            "spec.generators[0].matrix.generators[1]",
            "exactly one generator",
        ),
        (
            "  - matrix:\n      generators:\n      - matrix:\n          generators:\n"
            "          - merge: {generators: []}\n",
            "",
            "spec.generators[0].matrix.generators[0].matrix.generators[0].merge",
            "at most 2 levels",
        ),
    ],
)
def test_invalid_documents_name_the_file_the_field_path_and_the_reason(
    generators: str, extra: str, path: str, reason: str
) -> None:
    with pytest.raises(SpecError) as info:
        parse_appsets(doc(generators, extra), source="sets/a.yaml")
    message = str(info.value)
    assert message.startswith(f"sets/a.yaml: {path}: "), message
    assert reason in message


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("kind: ApplicationSet\napiVersion: argoproj.io/v1beta9\n", "apiVersion: must be"),
        (
            HEADER.replace("name: s", "name: ''") + "  generators: [{list: {}}]\n" + TEMPLATE,
            "metadata.name",
        ),
        (HEADER + TEMPLATE, "spec.generators: is required"),
        (HEADER + "  generators: [{list: {}}]\n", "spec.template: is required"),
        ("kind: Deployment\n", "no ApplicationSet"),
        ("a: [", "not valid YAML"),
        ("- 1\n", "must be a mapping"),
    ],
)
def test_broken_documents_are_rejected(text: str, reason: str) -> None:
    with pytest.raises(SpecError, match=None) as info:
        parse_appsets(text, source="x.yaml")
    assert reason in str(info.value)


def test_timestamps_and_odd_keys_load_as_kubernetes_does() -> None:
    from generators.spec import load_yaml

    assert load_yaml("d: 2024-01-01\n1: a\ntrue: b\n") == {"d": "2024-01-01", "1": "a", "true": "b"}
