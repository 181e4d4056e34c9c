"""Rendering Applications: both modes, templatePatch, finalizers, names, duplicates."""

from __future__ import annotations

from typing import Any

import pytest

from generators.expand import RENDER_ERROR, VALIDATION_ERROR, Result, generate
from generators.render import APPSET_ANNOTATION, APPSET_LABEL, RESOURCES_FINALIZER, strategic_merge
from tests.generators.conftest import appset

TEMPLATE = {
    "metadata": {
        "name": "{{name}}-app",
        "labels": {"env": "{{env}}", "{{name}}-key": "v"},
        "annotations": {"note": "{{ missing }}"},
    },
    "spec": {
        "project": "default",
        "source": {"repoURL": "https://g/r.git", "path": "apps/{{name}}", "targetRevision": "HEAD"},
        "destination": {"server": "{{server}}", "namespace": "{{name}}"},
        "syncPolicy": {"automated": {"prune": True}, "syncOptions": ["CreateNamespace=true"]},
    },
}
GO_TEMPLATE = {
    "metadata": {"name": "{{ .name | lower }}-app", "labels": {"env": "{{ .env }}"}},
    "spec": {
        "project": "default",
        "destination": {"server": "{{ .server }}", "namespace": "{{ .missing }}"},
        "source": {"repoURL": "r", "path": '{{ if eq .env "prod" }}p{{ else }}np{{ end }}'},
    },
}
ELEMENTS = [
    {"name": "a", "env": "prod", "server": "https://a"},
    {"name": "b", "env": "dev", "server": "https://b"},
]


def render(
    template: dict[str, Any] = TEMPLATE,
    elements: list[dict[str, Any]] | None = None,
    **kw: Any,
) -> Result:
    return generate(appset([{"list": {"elements": elements or ELEMENTS}}], template=template, **kw))


def test_fast_mode_renders_every_string_and_map_key_and_leaves_the_rest() -> None:
    result = render()
    assert not result.conditions
    app = result.manifests[0]
    assert app["apiVersion"] == "argoproj.io/v1alpha1" and app["kind"] == "Application"
    assert app["metadata"]["name"] == "a-app"
    assert app["metadata"]["namespace"] == "argocd"
    assert app["metadata"]["labels"] == {"env": "prod", "a-key": "v", APPSET_LABEL: "set"}
    assert app["metadata"]["annotations"] == {
        "note": "{{ missing }}",
        APPSET_ANNOTATION: "argocd/set",
    }
    assert app["metadata"]["finalizers"] == [RESOURCES_FINALIZER]
    assert app["spec"]["destination"] == {"server": "https://a", "namespace": "a"}
    assert app["spec"]["syncPolicy"] == {
        "automated": {"prune": True},
        "syncOptions": ["CreateNamespace=true"],
    }


def test_apps_do_not_share_containers() -> None:
    first, second = render().manifests
    first["spec"]["syncPolicy"]["syncOptions"].append("x")
    assert second["spec"]["syncPolicy"]["syncOptions"] == ["CreateNamespace=true"]


def test_go_mode_renders_with_functions_and_missing_keys_print_no_value() -> None:
    result = render(GO_TEMPLATE, [{"name": "A", "env": "prod", "server": "s"}], go=True)
    assert not result.conditions, result.conditions
    app = result.manifests[0]
    assert app["metadata"]["name"] == "a-app"
    assert app["spec"]["source"]["path"] == "p"
    assert app["spec"]["destination"]["namespace"] == "<no value>"


def test_go_mode_missingkey_error_names_the_field_and_the_param_set() -> None:
    result = render(
        GO_TEMPLATE,
        [{"name": "A", "env": "prod", "server": "s"}],
        go=True,
        options=["missingkey=error"],
    )
    assert result.failed and not result.applications
    [condition] = result.conditions
    assert condition.reason == RENDER_ERROR
    assert "spec.template.spec.destination.namespace" in condition.message
    assert "spec.generators[0].list#0" in condition.message
    assert 'no entry for key "missing"' in condition.message
    # The param sets are still there for `--params`.
    assert len(result.params) == 1


def test_default_does_not_rescue_a_missing_key_under_missingkey_error() -> None:
    # Go evaluates `.missing` before calling `default` (argo-cd #20594).
    template = {"metadata": {"name": '{{ .missing | default "x" }}'}, "spec": {}}
    assert render(template, [{"a": "1"}], go=True).manifests[0]["metadata"]["name"] == "x"
    result = render(template, [{"a": "1"}], go=True, options=["missingkey=error"])
    assert result.failed


def test_one_broken_element_is_reported_and_the_others_still_render() -> None:
    template = {"metadata": {"name": "{{ .name }}-{{ index .list 1 }}"}, "spec": {}}
    result = render(
        template, [{"name": "ok", "list": ["a", "b"]}, {"name": "bad", "list": []}], go=True
    )
    assert [a.name for a in result.applications] == ["ok-b"]
    assert result.failed and "spec.generators[0].list#1" in result.conditions[0].message


def test_an_empty_param_set_returns_the_template_untouched() -> None:
    template = {"metadata": {"name": "static", "labels": {"x": "{{name}}"}}, "spec": {}}
    app = render(template, elements=[{}]).manifests[0]
    assert app["metadata"]["labels"]["x"] == "{{name}}"
    assert "finalizers" not in app["metadata"]


def test_an_empty_param_set_is_not_executed_in_go_mode_either() -> None:
    template = {
        "metadata": {"name": "static", "labels": {"x": "{{ .name }}"}},
        "spec": {"project": "default", "info": "{{ .missing | required }}"},
    }
    result = render(template, elements=[{}], go=True, options=["missingkey=error"])
    assert not result.conditions
    app = result.manifests[0]
    assert app["metadata"]["labels"]["x"] == "{{ .name }}"
    assert app["spec"] == {"project": "default", "info": "{{ .missing | required }}"}
    assert "finalizers" not in app["metadata"]


@pytest.mark.parametrize(
    ("finalizers", "preserve", "expected"),
    [
        (None, False, [RESOURCES_FINALIZER]),
        (None, True, None),
        ([], False, [RESOURCES_FINALIZER]),
        (["custom/finalizer"], False, ["custom/finalizer"]),
        (["custom/finalizer"], True, ["custom/finalizer"]),
    ],
)
def test_the_resources_finalizer_is_added_unless_preserved_or_already_set(
    finalizers: list[str] | None, preserve: bool, expected: list[str] | None
) -> None:
    template: dict[str, Any] = {"metadata": {"name": "{{name}}"}, "spec": {}}
    if finalizers is not None:
        template["metadata"]["finalizers"] = finalizers
    result = render(template, syncPolicy={"preserveResourcesOnDeletion": preserve})
    assert result.manifests[0]["metadata"].get("finalizers") == expected


def test_generator_templates_override_the_set_template_field_by_field() -> None:
    gen = {
        "list": {
            "elements": [{"name": "a"}],
            "template": {
                "metadata": {"labels": {"from": "generator"}},
                "spec": {"destination": {"namespace": "gen-ns"}},
            },
        }
    }
    template = {
        "metadata": {"name": "{{name}}", "labels": {"from": "set", "other": "set"}},
        "spec": {"project": "p", "destination": {"server": "s", "namespace": "set-ns"}},
    }
    app = generate(appset([gen], template=template)).manifests[0]
    assert app["metadata"]["name"] == "a"
    assert app["metadata"]["labels"]["from"] == "generator"
    assert app["metadata"]["labels"]["other"] == "set"
    assert app["spec"] == {"project": "p", "destination": {"server": "s", "namespace": "gen-ns"}}


@pytest.mark.parametrize("go", [False, True])
def test_template_patch_is_rendered_and_strategically_merged(go: bool) -> None:
    name = "{{ .name }}" if go else "{{name}}"
    patch = f"""
metadata:
  annotations:
    patched: "{name}"
spec:
  project: sneaky
  syncPolicy:
    syncOptions: ["Replace=true"]
    automated: null
  source:
    helm: {{releaseName: "{name}"}}
"""
    template = {
        "metadata": {"name": name},
        "spec": {
            "project": "default",
            "source": {"repoURL": "r", "path": "p"},
            "syncPolicy": {"automated": {"prune": True}, "syncOptions": ["A", "B"]},
        },
    }
    result = render(template, go=go, templatePatch=patch)
    assert not result.conditions, result.conditions
    app = result.manifests[0]
    assert app["metadata"]["annotations"]["patched"] == "a"
    assert app["spec"]["project"] == "default"  # a patch cannot change the project
    assert app["spec"]["syncPolicy"] == {"syncOptions": ["Replace=true"]}
    assert app["spec"]["source"] == {"repoURL": "r", "path": "p", "helm": {"releaseName": "a"}}


def test_an_empty_spec_in_a_patch_clears_the_spec_but_keeps_the_project() -> None:
    result = render(templatePatch="spec:\n")
    assert result.manifests[0]["spec"] == {"project": "default"}


@pytest.mark.parametrize(
    ("patch", "reason"),
    [
        ("a: [", "not valid YAML"),
        ("- 1", "must be a mapping"),
        ("metadata: {labels: {a: 1}}", "metadata.labels"),
    ],
)
def test_broken_patches_are_render_errors(patch: str, reason: str) -> None:
    result = render(templatePatch=patch)
    assert result.failed and reason in result.conditions[0].message


def test_strategic_merge_directives() -> None:
    target = {"a": {"x": 1, "y": 2}, "b": [1, 2], "c": {"k": "v"}}
    patch = {"a": {"$patch": "replace", "z": 3}, "b": [3], "c": {"$patch": "delete"}}
    assert strategic_merge(target, patch) == {"a": {"z": 3}, "b": [3]}


def test_a_later_duplicate_name_is_rejected_naming_both_sources_and_the_rest_is_kept() -> None:
    generators = [
        {"list": {"elements": [{"name": "a"}, {"name": "b"}]}},
        {"list": {"elements": [{"name": "c"}, {"name": "a"}]}},
    ]
    result = generate(appset(generators, template={"metadata": {"name": "{{name}}"}, "spec": {}}))
    assert [a.name for a in result.applications] == ["a", "b", "c"]
    assert not result.failed
    [condition] = result.conditions
    assert condition.reason == VALIDATION_ERROR
    assert "spec.generators[1].list#1" in condition.message
    assert "spec.generators[0].list#0" in condition.message


@pytest.mark.parametrize(
    ("name", "reason"),
    [("", "empty"), ("Upper", "not a valid"), ("{{nope}}", "placeholder"), ("a" * 254, "253")],
)
def test_invalid_names_are_rejected_and_valid_apps_kept(name: str, reason: str) -> None:
    elements = [{"n": "good"}, {"n": name}]
    result = generate(
        appset(
            [{"list": {"elements": elements}}], template={"metadata": {"name": "{{n}}"}, "spec": {}}
        )
    )
    assert [a.name for a in result.applications] == ["good"]
    assert reason in result.conditions[0].message


def test_long_set_names_still_give_a_valid_label() -> None:
    from generators.render import link_label_value

    value = link_label_value("x" * 100)
    assert len(value) <= 63 and value != link_label_value("x" * 101)


def test_helm_values_object_and_parameters_are_templated_in_go_mode() -> None:
    """ApplicationSet templates with Helm fields expand as in Argo CD: every string inside
    ``helm.valuesObject`` (nested maps and lists too) and ``helm.parameters`` is a template,
    keys and non-strings are kept; the result parses as a Helm source."""
    from hub.sync.model import parse_application

    template = {
        "metadata": {"name": "{{ .name }}-chart"},
        "spec": {
            "project": "default",
            "destination": {"server": "{{ .server }}", "namespace": "web"},
            "sources": [
                {
                    "repoURL": "r",
                    "path": "charts/web",
                    "helm": {
                        "valueFiles": ["$values/envs/{{ .env }}.yaml"],
                        "valuesObject": {
                            "env": "{{ .env | upper }}",
                            "ingress": {"hosts": ["{{ .name }}.example.com"], "enabled": True},
                            "replicas": 2,
                        },
                        "parameters": [{"name": "image.tag", "value": "{{ .name }}-1"}],
                    },
                },
                {"repoURL": "v", "ref": "values"},
            ],
        },
    }
    result = render(template, goTemplate=True)
    assert not result.conditions, result.conditions
    apps = {a["metadata"]["name"]: a for a in result.manifests}
    helm = apps["a-chart"]["spec"]["sources"][0]["helm"]
    assert helm["valuesObject"] == {
        "env": "PROD",
        "ingress": {"hosts": ["a.example.com"], "enabled": True},
        "replicas": 2,
    }
    assert helm["valueFiles"] == ["$values/envs/prod.yaml"]
    assert helm["parameters"] == [{"name": "image.tag", "value": "a-1"}]
    parsed = parse_application({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                                **apps["b-chart"]})  # fmt: skip
    source = parsed.primary_source()
    assert source.helm is not None and "env: DEV" in source.helm.values_yaml
