"""Rollups: per-cluster counts, the ApplicationSet x cluster matrix, totals, --fail-on."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from clusters.registry import ClusterRecord, LastCheck
from hub.errors import HubUsageError
from hub.rollups import (
    SCHEMA_VERSION,
    AppState,
    Connection,
    FailOn,
    FleetStatus,
    LastSync,
    build_status,
    connection_from_check,
    fail_on,
    worst,
)

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
CLUSTERS = [
    ClusterRecord(name="west", server="https://west"),
    ClusterRecord(name="east", server="https://east"),
]


def app(name: str, appset: str | None, cluster: str | None, sync: str, health: str) -> AppState:
    return AppState(name=name, appset=appset, cluster=cluster, sync=sync, health=health)


FLEET = [
    app("web-east", "web", "east", "Synced", "Healthy"),
    app("web-west", "web", "west", "OutOfSync", "Degraded"),
    app("api-east", "api", "east", "Synced", "Progressing"),
    app("api-east-2", "api", "east", "Synced", "Healthy"),
    app("tools", None, "east", "Unknown", "Unknown"),
    app("lost", "web", "gone", "Synced", "Healthy"),  # its cluster was removed
]


def status(*, appset: str | None = None, cluster: str | None = None) -> FleetStatus:
    return build_status(
        apps=FLEET,
        clusters=CLUSTERS,
        connections={"east": Connection(state="Connected")},
        last_syncs={
            "east": LastSync(time=T0, revision="abc123", app="web-east", phase="Succeeded")
        },
        appsets=["web", "api", "empty"],
        now=T0,
        appset=appset,
        cluster=cluster,
    )


def test_one_row_per_registered_cluster_sorted_with_its_counts() -> None:
    doc = status().to_json()
    assert doc["schemaVersion"] == SCHEMA_VERSION
    east, west = doc["clusters"]
    assert (east["name"], west["name"]) == ("east", "west")
    assert east["applications"] == {
        "total": 4,
        "sync": {"Synced": 3, "OutOfSync": 0, "Unknown": 1},
        "health": {
            "Healthy": 2,
            "Progressing": 1,
            "Degraded": 0,
            "Suspended": 0,
            "Missing": 0,
            "Unknown": 1,
        },
    }
    assert west["applications"]["sync"]["OutOfSync"] == 1
    assert east["connection"]["state"] == "Connected"
    assert west["connection"]["state"] == "Unknown"  # the hub did not report it
    assert east["lastSync"] == {
        "time": "2026-01-02T03:04:05Z",
        "revision": "abc123",
        "app": "web-east",
        "phase": "Succeeded",
    }
    assert west["lastSync"] is None


def test_totals_count_every_application_including_those_of_unregistered_clusters() -> None:
    totals = status().to_json()["totals"]
    assert totals["clusters"] == 2
    assert totals["applications"]["total"] == 6
    assert totals["unassigned"] == 1
    assert sum(totals["applications"]["sync"].values()) == 6
    assert sum(totals["applications"]["health"].values()) == 6


def test_matrix_rows_are_appsets_columns_clusters_and_cells_show_the_worst_state() -> None:
    matrix = status().to_json()["matrix"]
    assert matrix["clusters"] == ["east", "west"]
    rows = {r["appset"]: {c["cluster"]: c for c in r["cells"]} for r in matrix["rows"]}
    assert list(rows) == ["api", "empty", "web", None]
    assert rows["api"]["east"] == {
        "cluster": "east",
        "applications": ["api-east", "api-east-2"],
        "sync": "Synced",
        "health": "Progressing",
    }
    assert "west" not in rows["api"]
    assert rows["empty"] == {}
    assert (rows["web"]["west"]["sync"], rows["web"]["west"]["health"]) == ("OutOfSync", "Degraded")
    assert rows[None]["east"]["applications"] == ["tools"]


@pytest.mark.parametrize(
    ("kw", "clusters", "total", "rows"),
    [
        ({"cluster": "east"}, ["east"], 4, ["api", "empty", "web", None]),
        ({"appset": "web"}, ["east", "west"], 3, ["web"]),
        ({"appset": "web", "cluster": "west"}, ["west"], 1, ["web"]),
        ({"appset": "empty"}, ["east", "west"], 0, ["empty"]),
    ],
)
def test_filters_narrow_rows_matrix_and_totals(
    kw: dict[str, str], clusters: list[str], total: int, rows: list[str | None]
) -> None:
    doc = status(**kw).to_json()
    assert [c["name"] for c in doc["clusters"]] == clusters
    assert doc["matrix"]["clusters"] == clusters
    assert [r["appset"] for r in doc["matrix"]["rows"]] == rows
    assert doc["totals"]["applications"]["total"] == total
    assert doc["filters"] == {"appset": kw.get("appset"), "cluster": kw.get("cluster")}


@pytest.mark.parametrize(
    ("kw", "word"), [({"appset": "nope"}, "ApplicationSet"), ({"cluster": "gone"}, "cluster")]
)
def test_filtering_on_a_name_that_does_not_exist_is_a_usage_error(
    kw: dict[str, str], word: str
) -> None:
    with pytest.raises(HubUsageError, match=word):
        status(**kw)


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        ([], []),
        ([FailOn.OUTOFSYNC], ["application web-west (west) is OutOfSync"]),
        ([FailOn.DEGRADED], ["application web-west (west) is Degraded"]),
        ([FailOn.UNKNOWN], ["application tools (east) is Unknown/Unknown"]),
        (
            [FailOn.DEGRADED, FailOn.OUTOFSYNC],
            ["application web-west (west) is OutOfSync", "application web-west (west) is Degraded"],
        ),
    ],
)
def test_fail_on_names_every_offending_application(
    conditions: list[FailOn], expected: list[str]
) -> None:
    assert fail_on(status(), conditions) == expected


def test_fail_on_only_looks_at_the_filtered_applications() -> None:
    assert fail_on(status(appset="api"), list(FailOn)) == []
    assert fail_on(status(cluster="west"), [FailOn.DEGRADED]) != []


@pytest.mark.parametrize(
    ("values", "order", "expected"),
    [
        (
            ["Healthy", "Degraded", "Progressing"],
            ("Healthy", "Suspended", "Progressing", "Missing", "Degraded", "Unknown"),
            "Degraded",
        ),
        (
            ["Healthy", "Suspended"],
            ("Healthy", "Suspended", "Progressing", "Missing", "Degraded", "Unknown"),
            "Suspended",
        ),
        (["Synced", "Unknown", "OutOfSync"], ("Synced", "OutOfSync", "Unknown"), "Unknown"),
        (["Synced", "Weird"], ("Synced", "OutOfSync", "Unknown"), "Weird"),
        ([], ("Synced", "OutOfSync", "Unknown"), "Unknown"),
    ],
)
def test_worst_follows_the_given_order(
    values: list[str], order: tuple[str, ...], expected: str
) -> None:
    assert worst(values, order) == expected


@pytest.mark.parametrize(
    ("check", "state"),
    [
        (None, "Unknown"),
        (LastCheck(time=T0, ok=True, message="v1.30"), "Connected"),
        (LastCheck(time=T0, ok=False, message="connection refused"), "Unreachable"),
    ],
)
def test_without_a_running_hub_the_last_check_gives_the_connection(
    check: LastCheck | None, state: str
) -> None:
    record = ClusterRecord(name="c", server="https://c", last_check=check)
    assert connection_from_check(record).state == state
