"""A self-heal waits for the live cache to hear of the last sync's own writes
(``hub.worker.decisions.unheard_writes_wait_s``): pure decisions, no cluster."""

from __future__ import annotations

from hub.worker.decisions import WrittenObjects, unheard_writes_wait_s

DEPLOY = "apps/Deployment web/api"
CONFIG = "/ConfigMap web/settings"
DEPLOY_KEY = ("apps", "Deployment", "web", "api")
CONFIG_KEY = ("", "ConfigMap", "web", "settings")


def written(until: float = 10.0, **objects: object) -> WrittenObjects:
    keys = {"deploy": (DEPLOY, DEPLOY_KEY), "config": (CONFIG, CONFIG_KEY)}
    return WrittenObjects(
        until=until, seen={keys[k][0]: (keys[k][1], obj) for k, obj in objects.items()}
    )


def test_a_written_object_the_cache_has_not_replaced_since_the_sync_holds_the_heal() -> None:
    before = {"metadata": {"resourceVersion": "7"}}
    cache = {DEPLOY_KEY: before}
    wait = unheard_writes_wait_s(written(deploy=before), [DEPLOY], cache.get, now_monotonic=4.0)
    assert wait == 6.0  # until the cap; an event for the object wakes the app sooner


def test_an_object_the_sync_created_and_the_cache_has_not_seen_yet_holds_it_too() -> None:
    wait = unheard_writes_wait_s(written(deploy=None), [DEPLOY], {}.get, now_monotonic=4.0)
    assert wait == 6.0


def test_any_event_since_the_sync_lets_the_heal_decide_on_what_the_cluster_holds() -> None:
    before = {"metadata": {"resourceVersion": "7"}}
    # an equal but new object: the cache heard of it (the sync's own event, or drift)
    cache = {DEPLOY_KEY: {"metadata": {"resourceVersion": "7"}}}
    assert unheard_writes_wait_s(written(deploy=before), [DEPLOY], cache.get, 4.0) == 0.0


def test_drift_of_a_resource_the_sync_did_not_apply_heals_at_once() -> None:
    before = {"metadata": {"resourceVersion": "7"}}
    cache = {DEPLOY_KEY: before}
    assert unheard_writes_wait_s(written(deploy=before), [CONFIG], cache.get, 4.0) == 0.0


def test_one_unheard_write_among_heard_ones_holds_the_heal() -> None:
    deploy, config = {"kind": "Deployment"}, {"kind": "ConfigMap"}
    cache = {DEPLOY_KEY: {"kind": "Deployment", "new": True}, CONFIG_KEY: config}
    got = unheard_writes_wait_s(
        written(deploy=deploy, config=config), [DEPLOY, CONFIG], cache.get, 9.0
    )
    assert got == 1.0


def test_no_sync_remembered_or_the_wait_over_heals_at_once() -> None:
    before = {"metadata": {}}
    cache = {DEPLOY_KEY: before}
    assert unheard_writes_wait_s(None, [DEPLOY], cache.get, 4.0) == 0.0
    assert unheard_writes_wait_s(written(deploy=before), [DEPLOY], cache.get, 10.0) == 0.0
