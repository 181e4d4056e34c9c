"""Property tests: any input to the parsers gives a result or ClusterUsageError, never a crash."""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clusters.argo import parse_cluster_secrets, to_new_cluster
from clusters.errors import ClusterUsageError
from clusters.kubeconfig import read_context
from clusters.registry import parse_label_changes

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=20),
    st.sampled_from(["https://a:1", "v1", "Secret", "cluster", "Zm9v", "{}", "%%"]),
)
values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.sampled_from(
                [
                    "name",
                    "server",
                    "config",
                    "data",
                    "stringData",
                    "metadata",
                    "labels",
                    "kind",
                    "apiVersion",
                    "token",
                    "user",
                    "cluster",
                    "exec",
                    "namespaces",
                    "tlsClientConfig",
                    "x",
                ]
            ),
            inner,
            max_size=5,
        ),
    ),
    max_leaves=20,
)


def secret_like(string_data: dict[str, Any], labels: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s", "labels": labels},
        "stringData": string_data,
    }


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        values,
        st.builds(
            secret_like,
            st.dictionaries(
                st.sampled_from(
                    ["name", "server", "config", "namespaces", "clusterResources", "project"]
                ),
                st.one_of(
                    st.text(max_size=30),
                    st.just('{"bearerToken": 5}'),
                    st.just('{"tlsClientConfig": []}'),
                    st.builds(json.dumps, values),
                ),
                max_size=6,
            ),
            st.one_of(values, st.just({"argocd.argoproj.io/secret-type": "cluster"})),
        ),
    )
)
def test_argo_parsing_never_crashes(doc: Any) -> None:
    try:
        for secret in parse_cluster_secrets(yaml.safe_dump(doc), Path("f.yaml")):
            with contextlib.suppress(ClusterUsageError):
                to_new_cluster(secret).validate()
    except ClusterUsageError as exc:
        assert str(exc).startswith("f.yaml")


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(values, st.text(max_size=50)))
def test_kubeconfig_reading_never_crashes(doc: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kc"
        path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
        try:
            read_context(path, "ctx" if isinstance(doc, dict) and "x" in doc else None)
        except ClusterUsageError as exc:
            assert str(path) in str(exc)


@given(st.lists(st.text(max_size=20), max_size=4))
def test_label_change_parsing_never_crashes(args: list[str]) -> None:
    try:
        sets, removes = parse_label_changes(args)
    except ClusterUsageError:
        return
    assert not set(sets) & set(removes)
