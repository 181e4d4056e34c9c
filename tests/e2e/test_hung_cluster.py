"""`hub serve` end to end: a cluster that stops answering — it keeps the connections it has
and accepts new ones, but answers nothing — is found by the worker's liveness probe,
reported Unreachable, costs only itself, and recovers on its own when it answers again.

The sim's ``outage: hang`` fault also drops the watch streams already open (a refused
or reset connection, caught at once by the watch; ``test_serve_isolation``). Here the
streams stay open and silent, as they do behind a frozen API server or a dropped network
path: only the probe can tell (``hub.worker.connection.probe_due``). The fault is a
latency far beyond any deadline of the hub, on a sim whose watches send no bookmarks
during the test: every new request waits, the open streams carry nothing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from clusters.kube import DEFAULT_TIMEOUT_S
from clusters.sim import SimServer
from hub.worker import PROBE_S, PROBE_TIMEOUT_S
from tests.e2e.serve_support import (
    AUTOMATED,
    CONFIGMAP,
    DEPLOYMENT,
    NS,
    Fleet,
    guestbook_appset,
    start_hub,
    stop_hub,
    wait_for,
)
from tests.sync.e2e_helpers import GitRepo

pytestmark = [pytest.mark.sim_only("needs simulated faults"), pytest.mark.timeout(300)]

CLUSTERS = ["alpha", "beta", "gamma"]
HUNG = "beta"
FINE = [c for c in CLUSTERS if c != HUNG]


HANG_S = 3600.0  # the sim's largest latency: a request sent during the test never ends
# Once it goes quiet, the probe is due after PROBE_S, asked at the next jittered tick (at
# most 1.2 x PROBE_S later), and fails when its request's deadline passes. The margin
# covers the hub's tick, the status write and this test's polling on 2 busy cores.
DETECT_S = PROBE_S + 1.2 * PROBE_S + PROBE_TIMEOUT_S + 30.0
# Back: the probe in flight when the fault clears still waits for its deadline, the next
# one answers; then the worker refreshes and syncs its apps (a sync request sent during
# the hang may still wait for its own deadline).
RECOVER_S = DEFAULT_TIMEOUT_S + 1.2 * PROBE_S + 60.0


def cluster_status(f: Fleet, name: str) -> dict[str, Any]:
    """The cluster's row of `hub status -o json` (the running hub's API): what an
    operator sees."""
    doc = json.loads(f.cli.ok("status", "-o", "json").stdout)
    return next(c for c in doc["clusters"] if c["name"] == name)


def uids(f: Fleet, cluster: str) -> dict[str, str]:
    """The uid of each resource the app put on ``cluster``: a deletion (even one followed
    by a re-creation) changes it."""
    out: dict[str, str] = {}
    for kind, name in (("deployment", "web"), ("configmap", "settings")):
        got = f.kubectl(cluster, "get", kind, name, "-n", NS, "-o", "json")
        assert got.returncode == 0, f"{kind} {name} on {cluster}: {got.stderr}"
        out[f"{kind}/{name}"] = json.loads(got.stdout)["metadata"]["uid"]
    return out


def test_a_hung_cluster_is_reported_unreachable_holds_no_one_and_recovers(
    tmp_path: Path,
) -> None:
    with SimServer(
        clusters=CLUSTERS,
        ready_delay=0.2,
        kubeconfig_path=tmp_path / "kubeconfig",
        bookmark_interval=HANG_S,  # a hung server sends no bookmarks either
    ) as sim:
        repo = GitRepo(tmp_path / "repo")
        repo.write(
            {
                "sets/guestbook.yaml": guestbook_appset(
                    repo.path, policy=[AUTOMATED, "retry: {limit: 0}"]
                ),
                "guestbook/deployment.yaml": DEPLOYMENT.format(image="nginx:1.25"),
                "guestbook/configmap.yaml": CONFIGMAP,
            }
        )
        f = Fleet(tmp_path / "home", sim, repo, tmp_path / "hub.log")
        f.cli.ok("init")
        for name in CLUSTERS:
            f.cli.ok("cluster", "add", name, "--kubeconfig", str(sim.kubeconfig_path),
                     "--context", name)  # fmt: skip
        f.cli.ok("source", "add", "root", "--repo", str(repo.path), "--path", "sets")
        start_hub(f, "--git-poll", "1", "--resync", "600", "--port", "0")
        try:
            wait_for("every cluster synced", lambda: f.all_good(CLUSTERS, "nginx:1.25"))
            wait_for(
                "every cluster connected",
                lambda: all(
                    cluster_status(f, c)["connection"]["state"] == "Connected" for c in CLUSTERS
                ),
            )
            before = {c: uids(f, c) for c in CLUSTERS}
            apps = sorted(f.apps())

            sim.faults(HUNG).set(latency=HANG_S)
            hung_at = time.monotonic()
            try:
                # A commit at once: the hung cluster's app is found OutOfSync from its
                # cache before the hang is known, so its sync starts and waits.
                f.commit_image("nginx:1.26")
                wait_for("the others on 1.26", lambda: f.all_good(FINE, "nginx:1.26"))

                def unreachable() -> dict[str, Any] | None:
                    conn: dict[str, Any] = cluster_status(f, HUNG)["connection"]
                    return conn if conn["state"] == "Unreachable" else None

                conn = wait_for(
                    "the hung cluster reported Unreachable",
                    unreachable,
                    timeout=max(1.0, DETECT_S - (time.monotonic() - hung_at)),
                )
                # found by the probe, on the probe's own deadline
                probe = f"GET /version: no answer within {PROBE_TIMEOUT_S:g}s"
                assert HUNG in conn["message"] and probe in conn["message"], conn
                wait_for(
                    "the hung cluster's app Unknown",
                    lambda: f.apps()[f"{HUNG}-guestbook"].sync_status == "Unknown",
                )
                hung = f.apps()[f"{HUNG}-guestbook"]
                assert hung.health_status == "Unknown"
                assert hung.conditions and HUNG in hung.conditions[0].message
                row = cluster_status(f, HUNG)["applications"]
                assert row["sync"].get("Unknown") == row["total"] == 1, row
                # The sync of 1.26 that started on the hung cluster ran out of time (the
                # app allows no retry: a hang that outlasts a sync's retries, in one
                # request deadline instead of minutes).
                wait_for(
                    "the hung cluster's sync of 1.26 to fail",
                    lambda: (
                        (f.apps()[f"{HUNG}-guestbook"].operation_state or {}).get("phase")
                        in ("Failed", "Error")
                    ),
                    timeout=DEFAULT_TIMEOUT_S + 30.0,
                )

                # Known hung: the others still heal drift, and nothing anywhere is
                # deleted meanwhile.
                scaled = f.kubectl(FINE[0], "scale", "deployment", "web", "-n", NS,
                                   "--replicas=5")  # fmt: skip
                assert scaled.returncode == 0, scaled.stderr
                wait_for(
                    "the drift healed on a connected cluster",
                    lambda: (f.deployment(FINE[0]) or {}).get("spec", {}).get("replicas") == 2,
                )
                assert sorted(f.apps()) == apps
                assert {c: uids(f, c) for c in FINE} == {c: before[c] for c in FINE}
                assert cluster_status(f, HUNG)["connection"]["state"] == "Unreachable"
            finally:
                sim.faults(HUNG).clear()

            wait_for(
                "the hung cluster connected again",
                lambda: cluster_status(f, HUNG)["connection"]["state"] == "Connected",
                timeout=RECOVER_S,
            )
            wait_for(
                "the hung cluster on 1.26, on its own",
                lambda: f.all_good(CLUSTERS, "nginx:1.26"),
                timeout=RECOVER_S,
            )
            assert sorted(f.apps()) == apps
            assert {c: uids(f, c) for c in CLUSTERS} == before
        finally:
            assert stop_hub(f) == 0, f.hub_log()[-3000:]
