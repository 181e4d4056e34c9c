"""Shared parts of the sync engine's end-to-end tests (``tests/sync/test_e2e_*.py``).

- ``GitRepo``: a real Git repository in a temporary directory, written and committed.
- ``HubApp``: a hub home with the test cluster registered, running the real ``hub`` CLI.
- ``engine_parts``: what the hub's reconcilers hand the engine for a home (the cluster's
  client, the sync history, the repository cache), for tests that call it directly.
- ``Recorder``: watches a namespace on the cluster with the official client and keeps every
  event in resourceVersion order, so tests can check the order of writes and what status
  each object had before the next write.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from clusters.connect import connect
from clusters.kube import KubeClient
from hub.home import load_keyring, open_registry, open_store
from hub.repos import RepoCache
from hub.sync.history import SyncHistory
from tests.clusters.cli_support import Hub, Run
from tests.kube_env import KubeEnv

CLUSTER = "target"


class GitRepo:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.com",
        }
        out = subprocess.run(
            ["git", "-C", str(self.path), *args],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        return out.stdout.strip()

    def write(self, files: Mapping[str, str | None], message: str = "change") -> str:
        """Write (or delete, for None) files and commit; returns the new SHA."""
        for rel, text in files.items():
            target = self.path / rel
            if text is None:
                if target.exists():
                    self.git("rm", "-q", "-r", rel)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(textwrap.dedent(text).lstrip())
            self.git("add", rel)
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")


def application(
    name: str,
    repo: GitRepo,
    *,
    path: str = "app",
    namespace: str = "",
    extra_spec: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "project": "default",
        "source": {"repoURL": str(repo.path), "path": path, "targetRevision": "main"},
        "destination": {"name": CLUSTER, "namespace": namespace},
    }
    spec.update(extra_spec or {})
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": "argocd"},
        "spec": spec,
    }


@dataclass
class HubApp:
    hub: Hub
    app_file: Path
    # App names are tracking identities: tests share a cluster, so each test's apps get a
    # suffix of their own (two apps of one name would claim each other's objects).
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:6])

    def write_app(self, app: Mapping[str, Any]) -> None:
        doc = dict(app)
        doc["metadata"] = {**doc["metadata"], "name": f"{doc['metadata']['name']}-{self.suffix}"}
        self.app_file.write_text(yaml.safe_dump(doc, sort_keys=False))

    def __call__(self, *args: str) -> Run:
        return self.hub("app", *args)

    def sync(self, *args: str) -> Run:
        return self.hub("app", "sync", "-f", str(self.app_file), *args)

    def diff(self, *args: str) -> Run:
        return self.hub("app", "diff", "-f", str(self.app_file), *args)


def hub_app(kube: KubeEnv, tmp_path: Path) -> HubApp:
    hub = Hub(tmp_path / "home")
    hub.ok("init")
    hub.ok(
        "cluster",
        "add",
        CLUSTER,
        "--kubeconfig",
        str(kube.kubeconfig),
        "--context",
        kube.context,
    )
    return HubApp(hub=hub, app_file=tmp_path / "app.yaml")


@dataclass(frozen=True)
class EngineParts:
    kube: KubeClient
    history: SyncHistory
    repos: RepoCache


@contextmanager
def engine_parts(home: Path) -> Iterator[EngineParts]:
    """The engine's collaborators for the test cluster of ``home``, closed after the block."""
    registry = open_registry(home)
    store = open_store(home)
    repos = RepoCache(home)
    try:
        yield EngineParts(
            kube=KubeClient(connect(registry, CLUSTER)),
            history=SyncHistory(store, lambda: load_keyring(home)),
            repos=repos,
        )
    finally:
        repos.close()
        store.close()
        registry.close()


# ---------------------------------------------------------------- observing the cluster


@dataclass(frozen=True)
class Seen:
    rv: int
    type: str
    kind: str
    name: str
    obj: dict[str, Any]


class Recorder:
    """Every ADDED/MODIFIED/DELETED event of some kinds in one namespace, by resourceVersion."""

    def __init__(self, kube: KubeEnv, namespace: str, kinds: Iterable[tuple[str, str]]) -> None:
        from kubernetes.dynamic import DynamicClient

        self._api = kube.api_client()
        self._dyn = DynamicClient(self._api)  # type: ignore[no-untyped-call]
        self.namespace = namespace
        self.events: list[Seen] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = []
        for api_version, kind in kinds:
            res = self._dyn.resources.get(api_version=api_version, kind=kind)
            start = res.get(namespace=namespace).metadata.resourceVersion
            t = threading.Thread(target=self._watch, args=(res, kind, start), daemon=True)
            t.start()
            self._threads.append(t)

    def _watch(self, res: Any, kind: str, rv: str) -> None:
        while not self._stop.is_set():
            for ev in res.watch(namespace=self.namespace, resource_version=rv, timeout=2):
                obj = ev["raw_object"]
                rv = obj["metadata"]["resourceVersion"]
                with self._lock:
                    self.events.append(
                        Seen(int(rv), ev["type"], kind, obj["metadata"]["name"], obj)
                    )
                if self._stop.is_set():
                    return

    def stop(self) -> list[Seen]:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)
        self._api.close()
        with self._lock:
            return sorted(self.events, key=lambda s: s.rv)

    @staticmethod
    def first(
        events: list[Seen], kind: str, name: str, pred: Callable[[Seen], bool] | None = None
    ) -> int:
        """The resourceVersion of the first event of ``kind/name`` matching ``pred``."""
        for s in events:
            if s.kind == kind and s.name.startswith(name) and (pred is None or pred(s)):
                return s.rv
        raise AssertionError(f"no matching event for {kind} {name}")
