"""The worker's connection to its cluster: connect (credentials, discovery), the probe,
the watch-based ``LiveCache`` of the kinds the Applications render to and its callbacks,
the connection state the API shows, and the Applications marked Unknown while the
cluster does not answer."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from functools import partial

import anyio

from clusters.cache import LiveCache
from clusters.connect import connect
from clusters.errors import ClusterError
from clusters.kube import ApiResource, AsyncKube, KubeError, Unauthorized
from hub.apps import Condition
from hub.errors import HubError
from hub.handle import ClusterConnection, ConnectionState
from hub.sync.resources import owning_app
from hub.worker.services import COMPARISON_ERROR, _now
from hub.worker.state import WorkerState

log = logging.getLogger("hub.worker")  # one logger for the package (see ClusterWorker)

CONNECT_TIMEOUT_S = 30.0
PROBE_S = 10.0  # how often a connected worker checks that its cluster still answers
# The probe's deadline: a cluster that cannot answer GET /version within a probe period
# is not keeping up (the request deadline of 30 s made a hang take 40-52 s to find).
PROBE_TIMEOUT_S = PROBE_S
PROBE_KEY = ("", "")  # the probe's entry among the failing kinds


def probe_due(heard_at: float, now: float, *, failing: bool) -> bool:
    """Should the liveness probe ask the cluster now? Not while the cluster answered
    within the last ``PROBE_S``: a list, a watch event or bookmark (``LiveCache.heard_at``)
    or a watch opening (at 1,000 clusters the probe was 100 requests/s beside the syncs'
    own); always while the probe itself fails (only its own answer clears that). A
    cluster that stops answering goes quiet, and the probe asks one period later."""
    return failing or now - heard_at >= PROBE_S


class Connection(WorkerState):
    """Connects to the cluster and keeps its watch cache."""

    def _set_connection(self, state: ConnectionState, message: str = "") -> None:
        if self.connection.state != state or self.connection.message != message:
            self.connection = ClusterConnection(
                state=state, message=message, since=_now().isoformat()
            )
            if self.svc.metrics is not None:
                self.svc.metrics.set_cluster_connection(self.name, state)
            if state == "Connected":
                log.info("cluster %s: connected", self.name)
            else:
                log.warning("cluster %s: %s: %s", self.name, state, message)

    def _write_guard(self) -> Callable[[], None] | None:
        """Replicas (``hub.leases``): every POST/PUT/PATCH/DELETE to the spoke first checks
        that this replica still holds the cluster's lease (reads are never refused)."""
        fences = self.svc.fences
        if fences is None:
            return None
        name = self.name
        return lambda: fences.check_local(name)

    async def _connect(self) -> bool:
        kube: AsyncKube | None = None
        failure: tuple[ConnectionState, str] | None = None
        try:
            with anyio.fail_after(CONNECT_TIMEOUT_S):
                # credentials (decryption, an exec plugin) in a thread; then discovery on
                # the loop, which also proves the cluster answers
                connection = await self._call(
                    partial(connect, self.svc.registry, self.name), abandon=True
                )
                kube = AsyncKube(connection, write_guard=self._write_guard())
                await kube.resources(refresh=True)
        except TimeoutError:
            failure = ("Unreachable", f"no answer within {CONNECT_TIMEOUT_S:g}s")
        except Unauthorized as exc:
            failure = ("Unauthorized", str(exc))
        except (ClusterError, HubError) as exc:
            failure = ("Unreachable", str(exc))
        if failure is not None or kube is None:
            if kube is not None:
                with anyio.CancelScope(shield=True):
                    await kube.aclose()
            self._connect_failures += 1
            self._set_connection(*(failure or ("Unreachable", "no connection")))
            return False
        self._connect_failures = 0
        self.kube = kube
        self.cache = LiveCache(
            kube,
            owner_of=owning_app,
            on_change=self._changed,
            on_state=self._state,
            unheard=self._unheard,
        )
        self._set_connection("Connected")
        self._unknown_marked = False
        self._dirty.update(self.apps)
        if self._tg is not None:
            self._tg.start_soon(self._probe, kube, name=f"probe {self.name}")
        return True

    async def _probe(self, kube: AsyncKube) -> None:
        """Ask the cluster for its version every ``PROBE_S`` (jittered): the watches stay
        open for minutes (``clusters.cache.window_seconds``), so an open stream that goes
        quiet is no proof the cluster still answers. One small GET per cluster, where the
        short watch windows of before re-opened every watch every 10 s; skipped while the
        watches themselves show the cluster answering (``probe_due``)."""
        while True:
            await anyio.sleep(PROBE_S * (0.8 + 0.4 * random.random()))
            failing = PROBE_KEY in self._kind_errors
            if not probe_due(self._last_answer(), time.monotonic(), failing=failing):
                continue
            try:
                await kube.ping(PROBE_TIMEOUT_S)
            except KubeError as exc:
                self._answered(PROBE_KEY, exc)
            else:
                if PROBE_KEY in self._kind_errors:
                    self._answered(PROBE_KEY, None)

    def _changed(self, apps: set[str]) -> None:
        """The cache saw a change (on this loop)."""
        if apps:
            self._dirty.update(a for a in apps if a in self.apps)
        else:
            self._dirty.update(self.apps)  # a kind finished its first list
        self._wake.set()

    def _state(self, res: ApiResource, error: KubeError | None) -> None:
        """A kind's list or watch answered (None) or failed (on this loop)."""
        self._answered((res.group, res.kind), error)

    def _answered(self, gk: tuple[str, str], error: KubeError | None) -> None:
        """A kind's list or watch, or the probe (``PROBE_KEY``), answered or failed."""
        if error is None:
            self._heard_at = time.monotonic()
            if self._kind_errors.pop(gk, None) is not None and not self._kind_errors:
                self._set_connection("Connected")
                self._unknown_marked = False
                self._outage = (self._quiet_since, self._heard_at)
                self._forgive_outage()
                self._dirty.update(self.apps)
        else:
            if not self._kind_errors:  # an outage starts: since the cluster's last answer
                self._quiet_since = self._last_answer()
            self._kind_errors[gk] = str(error)
            state: ConnectionState = (
                "Unauthorized" if isinstance(error, Unauthorized) else "Unreachable"
            )
            self._set_connection(state, str(error))
        self._wake.set()

    def _forgive_outage(self) -> None:
        """The cluster answers again: every sync that failed during the outage
        (``self._outage``) is marked so, and the automated sync tries its revision again
        (``decide_auto_sync``); a sync still running is marked when it ends
        (``Operations._record``). Without it an app whose sync ran into a hang stayed
        OutOfSync after the cluster came back, until the next commit."""
        for name, last in list(self._last.items()):
            self._last[name] = self._outage_marked(last)

    async def _watch_kind(self, group_kind: tuple[str, str]) -> bool:
        """Start caching a kind; True when it is cached and listed."""
        assert self.cache is not None and self.kube is not None and self._tg is not None
        if group_kind in self._kind_scopes:
            return self.cache.is_synced(group_kind)
        res = (await self.kube.resources()).get(group_kind)
        if res is None or not {"list", "watch"} <= res.verbs:
            # Not served (yet): nothing of it can be live. A sync may install its CRD, so
            # discovery is refreshed after the next sync and the kind tried again.
            self._unserved.add(group_kind)
            return True
        scope = anyio.CancelScope()
        self._kind_scopes[group_kind] = scope
        cache = self.cache

        async def loop() -> None:
            with scope:
                await cache.run_kind(res)

        self._tg.start_soon(loop, name=f"watch {self.name} {res.plural}")
        return False

    def _stop_watches(self) -> None:
        for scope in self._kind_scopes.values():
            scope.cancel()

    async def _mark_unknown(self, reason: str) -> None:
        if self._unknown_marked:
            return
        message = f"cluster {self.name}: {reason}"
        for name in list(self.apps):
            await self._write(
                name,
                sync_status="Unknown",
                health_status="Unknown",
                conditions=[Condition(type=COMPARISON_ERROR, message=message)],
                batch=True,
            )
        self._unknown_marked = True

    async def _close_client(self) -> None:
        """Release the cluster's connection pool (the cache's transport is the client)."""
        kube, self.kube, self.cache = self.kube, None, None
        if kube is not None:
            await kube.aclose()
