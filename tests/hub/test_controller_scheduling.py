"""Pure scheduling helpers of the hub: jitter, backoff, change detection, URL matching."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from clusters.cache import backoff_delay
from clusters.registry import ClusterRecord
from hub.controller import cluster_fingerprint, jittered, normalize_repo


@pytest.mark.parametrize(("rand", "want"), [(0.0, 144.0), (0.5, 180.0), (1.0, 216.0)])
def test_jitter_spreads_an_interval_both_ways(rand: float, want: float) -> None:
    assert jittered(180.0, 0.2, rand=lambda: rand) == pytest.approx(want)


@pytest.mark.parametrize(
    ("failures", "want"),
    [(0, 0.0), (1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (6, 30.0), (50, 30.0)],
)
def test_backoff_doubles_up_to_its_cap(failures: int, want: float) -> None:
    assert backoff_delay(failures, jitter=0.0) == want


def test_backoff_jitter_stays_within_its_share() -> None:
    low = backoff_delay(4, rand=lambda: 0.0)
    high = backoff_delay(4, rand=lambda: 1.0)
    assert (low, high) == pytest.approx((8.0 * 0.8, 8.0 * 1.2))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("https://github.com/Org/Repo.git", "https://github.com/org/repo"),
        ("git@github.com:org/repo.git", "https://github.com/org/repo/"),
        ("ssh://git@github.com/org/repo", "http://github.com/org/repo.git"),
    ],
)
def test_push_urls_match_manifest_spellings(a: str, b: str) -> None:
    assert normalize_repo(a) == normalize_repo(b)


def test_different_repositories_do_not_match() -> None:
    assert normalize_repo("https://github.com/org/a") != normalize_repo("https://github.com/org/b")


def record(name: str, **changes: object) -> ClusterRecord:
    base: dict[str, object] = {
        "name": name,
        "server": f"https://{name}.example",
        "labels": MappingProxyType({"env": "prod"}),
        "annotations": MappingProxyType({}),
        "credential_kind": "token",
        "credential_rev": "r1",
    }
    base.update(changes)
    return ClusterRecord(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "change",
    [
        {"labels": MappingProxyType({"env": "staging"})},
        {"credential_rev": "r2"},
        {"server": "https://moved.example"},
    ],
)
def test_a_relabel_or_new_credential_changes_the_fingerprint(change: dict[str, object]) -> None:
    before = cluster_fingerprint([record("a")])
    after = cluster_fingerprint([record("a", **change)])
    assert before != after


def test_a_health_check_alone_does_not_change_the_fingerprint() -> None:
    assert cluster_fingerprint([record("a")]) == cluster_fingerprint(
        [record("a", server_version="v1.32.0")]
    )
