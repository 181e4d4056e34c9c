"""One place decides "source or sources" (Argo CD: ``spec.sources``, when set, replaces
``spec.source``): ``Application.declared_sources`` and, for stored raw specs,
``declared_source_specs``; the readers that used their own rule follow it."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from hub.apps import DesiredApp
from hub.sync.model import declared_source_specs, parse_application

ONE = {"repoURL": "https://example.com/one.git", "path": "one", "targetRevision": "v1"}
TWO = {"repoURL": "https://example.com/two.git", "path": "two", "targetRevision": "v2"}
THREE = {"repoURL": "https://example.com/three.git", "path": "three", "targetRevision": "v3"}


def manifest(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "a"},
        "spec": {"project": "default", "destination": {"name": "x", "namespace": "d"}, **spec},
    }


def test_sources_replace_source_when_both_are_set() -> None:
    app = parse_application(manifest({"source": ONE, "sources": [TWO, THREE]}))
    assert [s.repo_url for s in app.declared_sources()] == [TWO["repoURL"], THREE["repoURL"]]
    assert app.declared_sources() == app.app_sources()
    assert declared_source_specs({"source": ONE, "sources": [TWO, THREE]}) == [TWO, THREE]
    assert declared_source_specs({"source": ONE}) == [ONE]
    assert declared_source_specs({}) == []


def test_the_stored_desired_revision_is_the_first_of_spec_sources() -> None:
    both = DesiredApp.from_manifest(
        manifest({"source": ONE, "sources": [TWO, THREE]}),
        appset=None,
        source="root",
        cluster="x",
    )
    assert both.desired_revision == "v2"
    single = DesiredApp.from_manifest(
        manifest({"source": ONE}), appset=None, source="root", cluster="x"
    )
    assert single.desired_revision == "v1"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=10,
)


@given(
    st.dictionaries(st.sampled_from(["source", "sources", "project", "x"]), json_values, max_size=3)
)
def test_a_raw_spec_of_any_shape_gives_mappings_and_never_raises(spec: dict[str, Any]) -> None:
    found = declared_source_specs(spec)
    assert all(isinstance(s, dict) for s in found)
