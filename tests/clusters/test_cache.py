"""The live cache: bookkeeping (no cluster) and list/watch against ``hub sim``."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any, cast

import anyio
import pytest
from anyio.from_thread import start_blocking_portal

from clusters.cache import MIN_WINDOW_S, LiveCache, key_of, window_seconds
from clusters.connect import build_connection
from clusters.kube import ApiResource, AsyncKube, Gone, KubeClient, KubeError, Transient
from clusters.kubeconfig import BearerToken, TLSSettings
from clusters.registry import ClusterCredentials
from clusters.sim import SimServer

ANN = "gitops-hub/tracking-id"
CM = ApiResource(group="", version="v1", kind="ConfigMap", plural="configmaps", namespaced=True)


def owner(obj: Mapping[str, Any]) -> str | None:
    text = ((obj.get("metadata") or {}).get("annotations") or {}).get(ANN)
    return None if not text else str(text).split(":", 1)[0]


def cm(name: str, rv: str, app: str | None = None, ns: str = "n") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns, "resourceVersion": rv}
    if app:
        meta["annotations"] = {ANN: f"{app}:/ConfigMap:{ns}/{name}"}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}


class Sink:
    def __init__(self) -> None:
        self.calls: list[set[str]] = []

    def __call__(self, apps: set[str]) -> None:
        self.calls.append(set(apps))


def offline_cache() -> tuple[LiveCache, Sink]:
    sink = Sink()
    # The bookkeeping never touches the client; no cluster is needed to test it.
    return LiveCache(cast(AsyncKube, None), owner_of=owner, on_change=sink), sink


def test_only_tracked_objects_keep_their_bodies() -> None:
    cache, sink = offline_cache()
    cache.replace_kind(CM, [cm("a", "1", app="shop"), cm("b", "2")], "2")
    assert [o["metadata"]["name"] for o in cache.tracked("shop")] == ["a"]
    assert cache.get_tracked(("", "ConfigMap", "n", "b")) is None
    assert cache.exists(("", "ConfigMap", "n", "b"))
    assert cache.is_synced(("", "ConfigMap"))
    # A first list concerns every app (the empty set), not only those it names: an app
    # that tracks no ConfigMap yet waited for the kind's list to be in.
    assert sink.calls == [set()]
    cache.replace_kind(CM, [cm("a", "3", app="shop"), cm("b", "2")], "3")  # a relist
    assert sink.calls == [set(), {"shop"}]


def test_a_change_the_owner_need_not_hear_is_cached_but_not_told() -> None:
    """The caller's ``unheard`` decides per (app, cached, new) whether the app hears of a
    change of one of its objects (the hub skips status-only changes that keep the
    object's health); the cache holds the new version either way. Removals, objects
    that change hands and objects no app tracked before are always told."""
    asked: list[tuple[str, str, str]] = []

    def unheard(app: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
        asked.append((app, old["metadata"]["resourceVersion"], new["metadata"]["resourceVersion"]))
        return new.get("data") == {"quiet": "yes"}

    sink = Sink()
    cache = LiveCache(cast(AsyncKube, None), owner_of=owner, on_change=sink, unheard=unheard)
    cache.replace_kind(CM, [cm("a", "1", app="shop")], "1")
    quiet = {**cm("a", "2", app="shop"), "data": {"quiet": "yes"}}
    cache.apply_event(CM, "MODIFIED", quiet)
    assert sink.calls == [set()]  # the first list only
    assert cache.get_tracked(("", "ConfigMap", "n", "a")) == quiet
    assert cache.stats.unheard == 1
    cache.apply_event(CM, "MODIFIED", cm("a", "3", app="shop"))
    assert sink.calls == [set(), {"shop"}]
    assert asked == [("shop", "1", "2"), ("shop", "2", "3")]
    cache.apply_event(CM, "MODIFIED", {**cm("a", "4", app="cart"), "data": {"quiet": "yes"}})
    cache.apply_event(CM, "ADDED", {**cm("b", "5", app="shop"), "data": {"quiet": "yes"}})
    cache.apply_event(CM, "DELETED", {**cm("b", "6", app="shop"), "data": {"quiet": "yes"}})
    assert sink.calls[2:] == [{"shop", "cart"}, {"shop"}, {"shop"}]
    assert len(asked) == 2  # never asked about those


def test_a_hook_that_fails_lets_the_app_hear_and_the_watch_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(app: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
        raise KeyError("a bug")

    sink = Sink()
    cache = LiveCache(cast(AsyncKube, None), owner_of=owner, on_change=sink, unheard=broken)
    cache.replace_kind(CM, [cm("a", "1", app="shop")], "1")
    cache.apply_event(CM, "MODIFIED", cm("a", "2", app="shop"))
    assert sink.calls == [set(), {"shop"}]
    assert cache.get_tracked(("", "ConfigMap", "n", "a")) == cm("a", "2", app="shop")
    assert "hears a change failed" in caplog.text


@pytest.mark.parametrize(
    ("etype", "obj", "apps", "tracked"),
    [
        ("MODIFIED", cm("a", "5", app="shop"), {"shop"}, ["a"]),
        ("DELETED", cm("a", "5", app="shop"), {"shop"}, []),
        ("MODIFIED", cm("a", "5"), {"shop"}, []),  # annotation removed: no longer the app's
        ("ADDED", cm("c", "5"), set(), ["a"]),  # untracked: nobody to tell
        ("ADDED", cm("c", "5", app="cart"), {"cart"}, ["a"]),
        ("BOOKMARK", {"kind": "ConfigMap", "metadata": {"resourceVersion": "9"}}, set(), ["a"]),
    ],
)
def test_watch_events_reach_the_apps_they_concern(
    etype: str, obj: dict[str, Any], apps: set[str], tracked: list[str]
) -> None:
    cache, sink = offline_cache()
    cache.replace_kind(CM, [cm("a", "1", app="shop")], "1")
    sink.calls.clear()
    cache.apply_event(CM, etype, obj)
    assert set().union(*sink.calls) == apps
    assert [o["metadata"]["name"] for o in cache.tracked("shop")] == tracked


def test_a_relist_drops_what_disappeared_meanwhile() -> None:
    cache, sink = offline_cache()
    cache.replace_kind(CM, [cm("a", "1", app="shop"), cm("b", "2", app="shop")], "2")
    sink.calls.clear()
    cache.replace_kind(CM, [cm("a", "1", app="shop")], "7")
    assert [o["metadata"]["name"] for o in cache.tracked("shop")] == ["a"]
    assert not cache.exists(("", "ConfigMap", "n", "b"))
    assert sink.calls == [{"shop"}]


def test_a_kind_is_not_current_until_listed_nor_while_it_relists_after_410() -> None:
    current_at_list: list[bool] = []

    class GoneAlways:
        """The transport's two calls, scripted: every watch is 410 Gone."""

        async def list(self, res: ApiResource, **_: Any) -> tuple[list[dict[str, Any]], str]:
            current_at_list.append(cache.is_current(("", "ConfigMap")))
            return [cm("a", "1", app="shop")], "1"

        async def watch(self, res: ApiResource, **_: Any) -> AsyncIterator[Any]:
            assert cache.is_current(("", "ConfigMap"))  # listed, nothing failed since
            if len(current_at_list) == 2:
                await anyio.sleep_forever()  # cancelled by the test from here
            raise Gone("too old", status=410)
            yield  # an async generator, as AsyncKube.watch

    sink = Sink()
    cache = LiveCache(
        cast(AsyncKube, GoneAlways()),
        owner_of=owner,
        on_change=sink,
    )

    async def main() -> None:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(cache.run_kind, CM)
                while len(current_at_list) < 2:  # the relist after 410 happened
                    await anyio.sleep(0.01)
                tg.cancel_scope.cancel()

    anyio.run(main)
    # before the first list, and during the relist after 410 Gone: a sync must list itself
    assert current_at_list == [False, False]
    assert cache.is_synced(("", "ConfigMap"))  # the worker's view: listed once
    cache.replace_kind(CM, [], "2")
    assert cache.is_current(("", "ConfigMap"))
    cache._failed(CM, KubeError("watch failed"))
    assert not cache.is_current(("", "ConfigMap"))


# ---------------------------------------------------------------- against hub sim


@pytest.fixture
def spoke(sim_factory: Callable[..., SimServer]) -> Iterator[tuple[SimServer, KubeClient]]:
    sim = sim_factory(clusters=["one"], bookmark_interval=60.0)
    creds = ClusterCredentials(
        name="one",
        server=sim.server_url("one"),
        tls=TLSSettings(ca_data=sim.ca_pem),
        credential=BearerToken(token=sim.token("one")),
        credential_rev="t",
    )
    connection = build_connection(creds)
    try:
        yield sim, KubeClient(connection)
    finally:
        connection.close()


@contextlib.contextmanager
def running(cache: LiveCache, *kinds: ApiResource) -> Iterator[None]:
    """``cache.run_kind`` of each kind as tasks of an event loop in a background thread (as
    in a worker); the test's own blocking calls stay in the test's thread."""
    with start_blocking_portal() as portal:
        scopes: list[anyio.CancelScope] = []

        async def run_all() -> None:
            with anyio.CancelScope() as scope:
                scopes.append(scope)
                async with anyio.create_task_group() as tg:
                    for res in kinds:
                        tg.start_soon(cache.run_kind, res)
            await cache.aclose()

        future = portal.start_task_soon(run_all)
        try:
            yield
        finally:
            portal.call(lambda: [s.cancel() for s in scopes])
            future.result(timeout=10)


def wait_until(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_cache_lists_once_then_follows_watches_and_relists_after_410(
    spoke: tuple[SimServer, KubeClient],
) -> None:
    sim, kube = spoke
    res = kube.resource_for("", "ConfigMap")
    changes: list[set[str]] = []
    cache = LiveCache(
        AsyncKube(kube.connection), owner_of=owner, on_change=changes.append, window_s=1.0
    )
    kube.apply(cm("early", "", app="shop", ns="default") | {"metadata": {
        "name": "early", "namespace": "default", "annotations": {ANN: "shop:/ConfigMap:default/early"}
    }})  # fmt: skip
    with running(cache, res):
        wait_until(lambda: cache.is_synced(("", "ConfigMap")), "the first list")
        assert [key_of(o)[3] for o in cache.tracked("shop")] == ["early"]
        kube.apply({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "late", "namespace": "default",
                         "annotations": {ANN: "shop:/ConfigMap:default/late"}},
            "data": {"k": "v"},
        })  # fmt: skip
        wait_until(lambda: len(cache.tracked("shop")) == 2, "the watch event")
        # Advance the cluster's resourceVersion past the cache's, then forget the history:
        # the next watch window resumes from a version the server no longer has (410).
        kube.apply({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "elsewhere", "namespace": "default"},
        })  # fmt: skip
        sim.compact("one")
        wait_until(lambda: cache.stats.relists_after_gone >= 1, "a relist after 410 Gone")
        kube.delete(res, "early", "default")
        wait_until(lambda: len(cache.tracked("shop")) == 1, "the delete after a relist")
        assert cache.stats.lists >= 1
        assert cache.stats.watches >= 1


def test_waiters_on_the_loop_wake_on_every_change_the_cache_sees() -> None:
    cache, _ = offline_cache()

    async def main() -> None:
        start = cache.version
        woke: list[int] = []

        async def waiter() -> None:
            woke.append(await cache.changed(start, 30))

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.sleep(0.05)  # the waiter is parked on the cache's event
            cache.replace_kind(CM, [cm("a", "1", app="shop")], "1")
        assert woke and woke[0] > start
        # an event and a failure count as changes too (a gate re-reads, then sleeps again)
        after_list = await cache.changed(-1, 0)
        cache.apply_event(CM, "MODIFIED", cm("a", "2", app="shop"))
        after_event = await cache.changed(-1, 0)
        cache._failed(CM, KubeError("watch failed"))
        assert after_list < after_event < await cache.changed(-1, 0)
        assert await cache.changed(cache.version, 0.01) == cache.version  # nothing new

    anyio.run(main)


def test_watch_windows_are_long_and_jittered_like_client_gos() -> None:
    assert window_seconds(lambda: 0.0) == MIN_WINDOW_S == 300.0
    assert window_seconds(lambda: 0.999) < 2 * MIN_WINDOW_S
    assert window_seconds(lambda: 0.5) == 450.0


def test_an_unexpected_error_in_a_kinds_loop_is_reported_and_retried_not_raised() -> None:
    calls: list[str] = []
    states: list[KubeError | None] = []

    class BuggyOnce:
        async def list(self, res: ApiResource, **_: Any) -> tuple[list[dict[str, Any]], str]:
            calls.append("list")
            if len(calls) == 1:
                raise ValueError("a bug in the transport")
            return [cm("a", "1", app="shop")], "1"

        async def watch(self, res: ApiResource, **_: Any) -> AsyncIterator[Any]:
            await anyio.sleep_forever()
            yield

    cache = LiveCache(
        cast(AsyncKube, BuggyOnce()),
        owner_of=owner,
        on_change=Sink(),
        on_state=lambda _res, err: states.append(err),
    )

    async def main() -> None:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(cache.run_kind, CM)
                while not cache.is_current(("", "ConfigMap")):
                    await anyio.sleep(0.01)
                tg.cancel_scope.cancel()

    anyio.run(main)
    assert calls == ["list", "list"]
    assert isinstance(states[0], KubeError) and "ValueError" in str(states[0])
    assert states[-1] is None


def test_a_kind_is_current_again_as_soon_as_a_watch_is_accepted_not_at_its_windows_end() -> None:
    """Windows last minutes: after a failed watch, the next one's acceptance (not its end)
    makes the kind current again and reports the cluster as answering."""
    states: list[KubeError | None] = []
    watches: list[str] = []

    class FailsOnce:
        async def list(self, res: ApiResource, **_: Any) -> tuple[list[dict[str, Any]], str]:
            return [cm("a", "1", app="shop")], "1"

        async def watch(
            self, res: ApiResource, on_open: Callable[[], None] | None = None, **_: Any
        ) -> AsyncIterator[Any]:
            watches.append("watch")
            if len(watches) == 1:
                raise Transient("connection closed", status=0)
            assert on_open is not None
            on_open()
            await anyio.sleep_forever()  # a long window, still open when the test looks
            yield

    cache = LiveCache(
        cast(AsyncKube, FailsOnce()),
        owner_of=owner,
        on_change=Sink(),
        on_state=lambda _res, err: states.append(err),
        backoff=lambda _failures: 0.0,
    )

    async def main() -> None:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(cache.run_kind, CM)
                while len(watches) < 2 or not cache.is_current(("", "ConfigMap")):
                    await anyio.sleep(0.01)
                tg.cancel_scope.cancel()

    anyio.run(main)
    assert isinstance(states[1], Transient) and states[-1] is None


def test_every_answer_of_the_cluster_bookmarks_included_moves_heard_at() -> None:
    cache, _ = offline_cache()
    assert cache.heard_at == 0.0
    cache.replace_kind(CM, [cm("a", "1", app="shop")], "1")
    listed = cache.heard_at
    assert listed > 0.0
    time.sleep(0.01)
    cache.apply_event(CM, "BOOKMARK", {"kind": "ConfigMap", "metadata": {"resourceVersion": "9"}})
    assert cache.heard_at > listed  # a bookmark changes nothing cached, but the cluster spoke
