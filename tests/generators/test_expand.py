"""Properties of the whole expansion: own errors only, determinism, matrix sizes."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generators.errors import GeneratorError
from generators.expand import Context, generate, requeue_after
from generators.spec import parse_appset
from tests.generators.conftest import appset, cluster

KEYS = st.sampled_from(["name", "env", "path.basename", "values.x", "a", "b", "missing"])
TEXT = st.text(alphabet="abc-.{} $|\"'\n", max_size=12)
SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**6), 10**21), st.floats(allow_nan=False), TEXT
)
JSON = st.recursive(
    SCALAR,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "values", "x"]), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def template_string(draw: st.DrawFn, go: bool) -> str:
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["text", "tag", "junk", "func"]))
        key = draw(KEYS)
        if kind == "text":
            parts.append(draw(TEXT))
        elif kind == "tag":
            parts.append(f"{{{{ .{key} }}}}" if go else f"{{{{{key}}}}}")
        elif kind == "func":
            fn = draw(st.sampled_from(["upper", "lower", "toJson", "quote", "normalize", "trim"]))
            parts.append(f"{{{{ .{key} | {fn} }}}}" if go else f"{{{{ {key} | {fn} }}}}")
        else:
            parts.append(
                draw(
                    st.sampled_from(
                        [
                            "{{",
                            "}}",
                            "{{ }}",
                            "{{ .a.b.c }}",
                            "{{ index .a 1 }}",
                            "{{ if .a }}x{{ end }}",
                        ]
                    )
                )
            )
    return "".join(parts)


@st.composite
def appset_doc(draw: st.DrawFn) -> dict[str, Any]:
    go = draw(st.booleans())
    elements = draw(
        st.lists(
            st.dictionaries(KEYS, JSON if go else st.one_of(TEXT, JSON), max_size=4), max_size=4
        )
    )
    gen: dict[str, Any] = {"list": {"elements": elements}}
    if draw(st.booleans()):
        other = draw(
            st.lists(st.dictionaries(st.sampled_from(["b", "c"]), TEXT, max_size=2), max_size=3)
        )
        gen = {"matrix": {"generators": [gen, {"list": {"elements": other}}]}}
    if draw(st.booleans()):
        gen["selector"] = {"matchLabels": {draw(KEYS): draw(TEXT)}}
    spec: dict[str, Any] = {
        "goTemplate": go,
        "generators": [gen, {"clusters": {"values": {"v": draw(template_string(go))}}}],
        "template": {
            "metadata": {
                "name": draw(template_string(go)),
                "labels": {draw(template_string(go)): draw(template_string(go))},
            },
            "spec": {
                "project": draw(template_string(go)),
                "source": {"path": draw(template_string(go)), "n": draw(JSON)},
            },
        },
    }
    if draw(st.booleans()):
        spec["goTemplateOptions"] = ["missingkey=error"]
    if draw(st.booleans()):
        spec["templatePatch"] = draw(
            st.sampled_from(["", "spec: {}", "metadata: {labels: {p: '{{x}}'}}", "a: [", "- 1"])
        )
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "ApplicationSet",
        "metadata": {"name": "s"},
        "spec": spec,
    }


CONTEXT = Context(clusters=(cluster("c1", env="prod"), cluster("C_2")), include_local_cluster=True)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(appset_doc())
def test_any_spec_gives_applications_or_conditions_never_another_exception(
    doc: dict[str, Any],
) -> None:
    try:
        aset = parse_appset(doc, source="prop.yaml")
    except GeneratorError:
        return
    result = generate(aset, CONTEXT)
    if result.failed:
        assert result.conditions
    else:
        assert len(result.applications) + len(result.conditions) == len(result.params)
    for app in result.manifests:
        assert app["kind"] == "Application" and isinstance(app["metadata"]["name"], str)


@settings(max_examples=100, deadline=None)
@given(appset_doc())
def test_expansion_is_deterministic(doc: dict[str, Any]) -> None:
    try:
        aset = parse_appset(doc, source="prop.yaml")
    except GeneratorError:
        return
    first, second = generate(aset, CONTEXT), generate(aset, CONTEXT)
    assert first.manifests == second.manifests
    assert [p.params for p in first.params] == [p.params for p in second.params]
    assert first.conditions == second.conditions


@settings(max_examples=200, deadline=None)
@given(JSON)
def test_arbitrary_documents_parse_or_raise_the_packages_error(doc: Any) -> None:
    for candidate in (
        doc,
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "ApplicationSet",
            "metadata": {"name": "s"},
            "spec": doc,
        },
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "ApplicationSet",
            "metadata": {"name": "s"},
            "spec": {"generators": [doc], "template": doc},
        },
    ):
        with contextlib.suppress(GeneratorError):
            parse_appset(candidate)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 6), st.integers(0, 6), st.booleans())
def test_matrix_size_is_the_product_of_its_inputs(n: int, m: int, go: bool) -> None:
    first = {"list": {"elements": [{"a": str(i)} for i in range(n)]}}
    second = {"list": {"elements": [{"b": str(j)} for j in range(m)]}}
    result = generate(appset([{"matrix": {"generators": [first, second]}}], go=go))
    assert len(result.params) == n * m


@pytest.mark.parametrize(
    ("generators", "seconds"),
    [
        ([{"list": {"elements": []}}, {"clusters": {}}], None),
        ([{"git": {"repoURL": "r", "directories": [{"path": "*"}]}}], 180),
        (
            [
                {
                    "matrix": {
                        "generators": [
                            {"clusters": {}},
                            {
                                "git": {
                                    "repoURL": "r",
                                    "files": [{"path": "x"}],
                                    "requeueAfterSeconds": 30,
                                }
                            },
                        ]
                    }
                },
                {"git": {"repoURL": "r", "directories": [{"path": "*"}]}},
            ],
            30,
        ),
    ],
)
def test_requeue_after_is_the_minimum_over_git_generators(
    generators: list[Any], seconds: int | None
) -> None:
    assert requeue_after(appset(generators)) == seconds


def test_a_go_template_that_mutates_its_params_leaks_into_no_other_app_nor_the_params() -> None:
    mutate = (
        '{{ if eq .app "a" }}{{ $_ := set .metadata.labels "y" "leak" }}'
        '{{ $_ := set . "x" "leak" }}{{ end }}{{ get .metadata.labels "y" }}/{{ get . "x" }}'
    )
    spec = appset(
        [
            {
                "matrix": {
                    "generators": [
                        {"clusters": {}},
                        {"list": {"elements": [{"app": "a"}, {"app": "b"}]}},
                    ]
                }
            }
        ],
        go=True,
        template={
            "metadata": {"name": "{{ .name }}-{{ .app }}", "annotations": {"seen": mutate}},
            "spec": {"project": "default"},
        },
    )
    result = generate(spec, Context(clusters=(cluster("c1", env="prod"),)))
    seen = {
        app.name: app.manifest["metadata"]["annotations"]["seen"] for app in result.applications
    }
    assert seen == {"c1-a": "leak/leak", "c1-b": "/"}
    for param_set in result.params:
        assert "x" not in param_set.params
        assert "y" not in param_set.params["metadata"]["labels"]
