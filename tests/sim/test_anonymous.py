"""What system:anonymous may read, and the 403 it gets otherwise (pure: no server)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusters.sim.server import _anonymous_forbidden, _public_info


@pytest.mark.parametrize("tail", ["version", "version/", "healthz", "livez", "readyz/etcd"])
def test_public_info_is_readable_but_not_writable(tail: str) -> None:
    assert _public_info("GET", tail)
    assert not _public_info("POST", tail)


@pytest.mark.parametrize(
    ("method", "tail", "watch", "message"),
    [
        ("GET", "api/v1/namespaces", False,
         'namespaces is forbidden: User "system:anonymous" cannot list resource "namespaces" '
         'in API group "" at the cluster scope'),
        ("GET", "api/v1/namespaces/team/configmaps", True,
         'configmaps is forbidden: User "system:anonymous" cannot watch resource "configmaps" '
         'in API group "" in the namespace "team"'),
        ("DELETE", "apis/apps/v1/namespaces/team/deployments/web", False,
         'deployments.apps "web" is forbidden: User "system:anonymous" cannot delete resource '
         '"deployments" in API group "apps" in the namespace "team"'),
        ("PATCH", "apis/apps/v1/namespaces/team/deployments/web/scale", False,
         'deployments.apps "web" is forbidden: User "system:anonymous" cannot patch resource '
         '"deployments/scale" in API group "apps" in the namespace "team"'),
        ("GET", "api", False, 'forbidden: User "system:anonymous" cannot get path "/api"'),
    ],
)  # fmt: skip
def test_the_forbidden_message_names_verb_resource_and_scope_as_rbac_does(
    method: str, tail: str, watch: bool, message: str
) -> None:
    err = _anonymous_forbidden(method, tail, watch=watch)
    assert (err.code, err.reason, err.message) == (403, "Forbidden", message)


@given(
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
    tail=st.text(alphabet="abc/v1-.", max_size=60),
    watch=st.booleans(),
)
def test_any_path_gets_a_403_status_and_never_an_exception(
    method: str, tail: str, watch: bool
) -> None:
    err = _anonymous_forbidden(method, tail, watch=watch)
    assert err.code == 403 and err.status()["reason"] == "Forbidden"
