"""Shared fixtures: clusters to test against, and a kubectl helper.

- ``kube`` (session): a ``KubeEnv`` — the kubeconfig, its context names and the
  ``SimServer`` behind it. With ``HUB_E2E_KUBECONFIG=FILE`` set, the real cluster(s) of that
  kubeconfig (contexts from ``HUB_E2E_CONTEXTS=a,b``, else its current context) and
  ``sim`` is None; otherwise one session-wide ``hub sim`` with three clusters.
- ``sim``: the session ``SimServer``; skips the test (with the reason) on a real cluster.
  ``@pytest.mark.sim_only("reason")`` (or ``reason="..."``) does the same for a whole test
  or module; the reason says what only the simulator has.
- ``sim_factory``: start a private ``SimServer(**options)`` for this test only (faults,
  persistence, watch history); stopped when the test ends.
- ``namespace``: a fresh namespace on the first context, deleted after the test.
- ``kubectl(*args, context=None, input=None, timeout=60)``: run the real kubectl against
  ``kube``'s kubeconfig (first context unless told) and return the CompletedProcess.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from clusters.sim import SimServer
from clusters.sim.store import CHECK_WRITES_ENV
from tests.kube_env import KubeEnv, run_kubectl


def pytest_configure(config: pytest.Config) -> None:
    # Every simulator of the suite (in-process ones and ``hub sim serve`` subprocesses)
    # makes each status write it shares with the stored object the long way too, and fails
    # if the two disagree (clusters.sim.store._STATUS_ONLY_DEFAULTS). A hook, not import
    # time, in case a benchmark ever imports this file: they must measure the real cost
    # (tests/test_bench_imports.py keeps them off it).
    os.environ.setdefault(CHECK_WRITES_ENV, "1")


E2E_KUBECONFIG = "HUB_E2E_KUBECONFIG"
E2E_CONTEXTS = "HUB_E2E_CONTEXTS"
REAL_CLUSTER_SKIP = "needs the simulator (fault injection or simulated controllers); HUB_E2E_KUBECONFIG points at a real cluster"


def _real_env() -> KubeEnv | None:
    path = os.environ.get(E2E_KUBECONFIG)
    if not path:
        return None
    kubeconfig = Path(path).expanduser()
    if not kubeconfig.is_file():
        raise pytest.UsageError(f"{E2E_KUBECONFIG}={path}: no such file")
    contexts = [c for c in os.environ.get(E2E_CONTEXTS, "").split(",") if c.strip()]
    if not contexts:
        current = (yaml.safe_load(kubeconfig.read_text()) or {}).get("current-context")
        if not current:
            raise pytest.UsageError(f"{path} has no current-context; set {E2E_CONTEXTS}=a,b")
        contexts = [current]
    return KubeEnv(kubeconfig=kubeconfig, contexts=[c.strip() for c in contexts], sim=None)


@pytest.fixture(scope="session")
def kube() -> Iterator[KubeEnv]:
    real = _real_env()
    if real is not None:
        yield real
        return
    with SimServer(clusters=3) as sim:
        yield KubeEnv(kubeconfig=sim.kubeconfig_path, contexts=sim.cluster_names, sim=sim)


@pytest.fixture
def sim(kube: KubeEnv) -> SimServer:
    if kube.sim is None:
        pytest.skip(REAL_CLUSTER_SKIP)
    return kube.sim


@pytest.fixture(autouse=True)
def _sim_only_marker(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("sim_only")
    if marker is not None and os.environ.get(E2E_KUBECONFIG):
        reason = marker.kwargs.get("reason") or (
            marker.args[0] if marker.args else "needs the simulator"
        )
        pytest.skip(f"{reason} (HUB_E2E_KUBECONFIG points at a real cluster)")


@pytest.fixture
def sim_factory(tmp_path: Path) -> Iterator[Callable[..., SimServer]]:
    if os.environ.get(E2E_KUBECONFIG):
        pytest.skip(REAL_CLUSTER_SKIP)
    started: list[SimServer] = []

    def start(**options: Any) -> SimServer:
        options.setdefault("kubeconfig_path", tmp_path / f"sim-{len(started)}.kubeconfig")
        server = SimServer(**options).start()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def namespace(kube: KubeEnv) -> Iterator[str]:
    from kubernetes import client

    name = unique_name("hub-test")
    api = client.CoreV1Api(kube.api_client())
    api.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"hub-test": "true"}))
    )
    try:
        yield name
    finally:
        try:
            api.delete_namespace(name)
        except client.ApiException as exc:
            if exc.status != 404:
                raise
        finally:
            api.api_client.close()


@pytest.fixture(scope="session")
def _kubectl_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kubectl-cache")


@pytest.fixture
def kubectl(kube: KubeEnv, _kubectl_cache: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``kubectl("get", "ns", context=None, input=None, timeout=60)`` against ``kube``."""

    def run(
        *args: str, context: str | None = None, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return run_kubectl(
            kube.kubeconfig,
            *args,
            context=context or kube.context,
            input=input,
            timeout=timeout,
            cache_dir=_kubectl_cache,
        )

    return run


# ---------------------------------------------------------------- PostgreSQL
#
# - ``postgres_server`` (session): a throwaway PostgreSQL (tests/pg.py) started on first
#   use, stopped at the end. Without PostgreSQL installed the test fails with the reason
#   under CI (CI=true) and is skipped with it elsewhere.
# - ``postgres_url``: the URL (no password, trust auth) of a fresh, empty database for
#   this test: a schema of its own in a shared test database (tests/pg.py says why),
#   selected by the URL's ``options=-csearch_path=...``. ``postgres_server.create_database()``
#   makes a whole database when a test needs one.
# - ``db_location``: parametrized over both backends: a SQLite path in tmp_path, or
#   ``postgres_url``; for store-level tests that must hold on both.


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    from tests.pg import PostgresNotFound, PostgresServer, find_bindir, unavailable

    try:
        server = PostgresServer(find_bindir())
    except PostgresNotFound as exc:
        unavailable(exc, os.environ)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: Any) -> str:
    url: str = postgres_server.fresh_url()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_location(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    if request.param == "sqlite":
        return tmp_path / "hub.db"
    url: str = request.getfixturevalue("postgres_url")
    return url
