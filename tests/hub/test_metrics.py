"""/metrics parses with prometheus_client's parser and carries the named series."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hub.home import init_home, open_store
from hub.metrics import AppCount, Metrics, repo_label, store_app_counts


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, frozenset(labels.items())))


def test_every_named_family_is_exposed_and_parses() -> None:
    m = Metrics(
        app_counts=lambda: [
            AppCount(cluster="east", sync_status="Synced", health_status="Healthy", count=4),
            AppCount(cluster="east", sync_status="OutOfSync", health_status="Degraded", count=1),
        ],
        connections=lambda: {"east": "Connected", "west": "Unreachable"},
    )
    m.observe_sync("east", "guestbook-east", "Succeeded", 2.0)
    m.observe_sync("east", "api-east", "Failed", 0.4)
    m.observe_reconcile("east", 0.02)
    m.observe_git_fetch("https://git.example/org/repo.git", 0.3)
    m.observe_git_fetch("https://git.example/org/repo.git", 5.0, ok=False)
    m.count_cluster_request("east", "get", 200)
    m.count_http_request("/api/v1/clusters", "get", 200)
    m.count_webhook("github", "accepted")

    assert (
        value(m, "hub_applications", cluster="east", sync_status="Synced", health_status="Healthy")
        == 4
    )
    assert (
        value(
            m, "hub_applications", cluster="east", sync_status="OutOfSync", health_status="Degraded"
        )
        == 1
    )
    assert value(m, "hub_sync_operations_total", cluster="east", result="Succeeded") == 1
    assert value(m, "hub_sync_operations_total", cluster="east", result="Failed") == 1
    assert value(m, "hub_sync_duration_seconds_count", cluster="east") == 2
    assert value(m, "hub_sync_duration_seconds_sum", cluster="east") == pytest.approx(2.4)
    assert value(m, "hub_reconcile_duration_seconds_count", cluster="east") == 1
    repo = "https://git.example/org/repo.git"
    assert value(m, "hub_git_fetch_duration_seconds_count", repo=repo) == 2
    assert value(m, "hub_git_fetch_errors_total", repo=repo) == 1
    assert value(m, "hub_cluster_connection_state", cluster="west", state="Unreachable") == 1
    assert value(m, "hub_cluster_connection_state", cluster="west", state="Connected") == 0
    assert value(m, "hub_cluster_api_requests_total", cluster="east", verb="GET", code="200") == 1
    assert (
        value(m, "hub_http_requests_total", route="/api/v1/clusters", method="GET", status="200")
        == 1
    )
    assert value(m, "hub_webhook_events_total", provider="github", result="accepted") == 1


def test_two_metrics_objects_share_no_series() -> None:
    a, b = Metrics(), Metrics()
    a.observe_sync("east", "x", "Succeeded", 1.0)
    assert value(a, "hub_sync_operations_total", cluster="east", result="Succeeded") == 1
    assert value(b, "hub_sync_operations_total", cluster="east", result="Succeeded") is None


def test_a_removed_cluster_loses_its_series() -> None:
    m = Metrics()
    m.observe_sync("gone", "x", "Succeeded", 1.0)
    m.count_cluster_request("gone", "list", 200)
    m.set_cluster_connection("gone", "Connected")
    m.observe_sync("kept", "y", "Succeeded", 1.0)
    m.forget_cluster("gone")
    names = {labels for _, labels in samples(m)}
    assert not any(("cluster", "gone") in labels for labels in names)
    assert value(m, "hub_sync_operations_total", cluster="kept", result="Succeeded") == 1


@pytest.mark.parametrize(
    ("url", "label"),
    [
        ("https://user:s3cret@git.example/org/r.git", "https://git.example/org/r.git"),
        ("https://git.example:8443/org/r.git?token=abc", "https://git.example:8443/org/r.git"),
        ("git@github.com:org/r.git", "git@github.com:org/r.git"),
        ("/srv/git/r", "/srv/git/r"),
    ],
)
def test_repository_labels_never_carry_credentials(url: str, label: str) -> None:
    assert repo_label(url) == label


def test_application_counts_come_from_the_store_at_scrape_time(
    tmp_path: Path, db_location: Path | str
) -> None:
    from hub.apps import AppStore, DesiredApp

    url = None if isinstance(db_location, Path) else db_location
    init_home(tmp_path / "home", env={"HUB_MASTER_KEY": ""}, database=url)
    store = open_store(tmp_path / "home")
    apps = AppStore(store)
    m = Metrics(app_counts=store_app_counts(store))
    assert (
        value(m, "hub_applications", cluster="east", sync_status="Unknown", health_status="Unknown")
        is None
    )
    with apps.transaction() as txn:
        for name in ("a", "b"):
            txn.put_desired(DesiredApp(name=name, appset="web", source="root", cluster="east"))
    apps.set_status("a", sync_status="Synced", health_status="Healthy")
    assert (
        value(m, "hub_applications", cluster="east", sync_status="Synced", health_status="Healthy")
        == 1
    )
    assert (
        value(m, "hub_applications", cluster="east", sync_status="Unknown", health_status="Unknown")
        == 1
    )
    store.close()


def test_the_sync_slots_gauge_reads_the_running_slots() -> None:
    from hub.worker.slots import FairSlots

    slots = FairSlots(2)
    m = Metrics(sync_slots=slots.use)
    assert value(m, "hub_sync_slots", state="limit") == 2
    assert value(m, "hub_sync_slots", state="held") == 0

    async def main() -> None:
        async with anyio.create_task_group() as tg, slots.slot("east"), slots.slot("east"):
            tg.start_soon(wait_for_one, slots)
            await anyio.wait_all_tasks_blocked()
            assert value(m, "hub_sync_slots", state="held") == 2
            assert value(m, "hub_sync_slots", state="waiting") == 1
        assert value(m, "hub_sync_slots", state="waiting") == 0

    async def wait_for_one(s: FairSlots) -> None:
        async with s.slot("west"):
            pass

    anyio.run(main)
    assert value(m, "hub_sync_slots", state="held") == 0
    assert value(Metrics(), "hub_sync_slots", state="limit") is None  # no hub: no family
