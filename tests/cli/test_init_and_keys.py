"""``hub init`` and ``hub key rotate`` through the real CLI, including interrupted rotations."""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from clusters import crypto as crypto_mod
from clusters.crypto import MasterKey
from hub import home as home_mod
from hub.home import load_keyring, open_registry, write_key_file
from tests.clusters.cli_support import Hub
from tests.conftest import KubeEnv


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
def hub(tmp_path: Path) -> Hub:
    return Hub(tmp_path / "home")


def add_clusters(hub: Hub, kube: KubeEnv, count: int = 3) -> list[str]:
    names = []
    for i in range(count):
        context = kube.contexts[i % len(kube.contexts)]
        name = f"c{i}"
        hub.ok(
            "cluster",
            "add",
            name,
            "--kubeconfig",
            str(kube.kubeconfig),
            "--context",
            context,
            "--skip-check",
            "--allow-same-server",
            "tests reuse a context when the environment has few",
        )
        names.append(name)
    return names


def all_readable(home: Path, names: list[str]) -> None:
    registry = open_registry(home)
    try:
        for name in names:
            assert registry.credentials(name).name == name
    finally:
        registry.close()


def test_init_creates_the_database_and_a_0600_key_file(hub: Hub) -> None:
    run = hub.ok("init")
    assert f"initialised hub home {hub.home}" in run.stdout
    key_file = hub.home / "master.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(hub.home.stat().st_mode) == 0o700
    assert len(base64.b64decode(key_file.read_text())) == 32
    assert (hub.home / "hub.db").exists()
    assert key_file.read_text().strip() not in run.output


def test_init_on_an_existing_home_changes_nothing(hub: Hub) -> None:
    hub.ok("init")
    key = (hub.home / "master.key").read_bytes()
    run = hub.ok("init")
    assert "already initialised; nothing changed" in run.stdout
    assert (hub.home / "master.key").read_bytes() == key


def test_init_warns_when_an_initialised_home_has_lost_its_key(hub: Hub) -> None:
    hub.ok("init")
    (hub.home / "master.key").unlink()
    run = hub.ok("init")
    assert "already initialised; nothing changed" in run.stdout
    assert "master.key does not exist and HUB_MASTER_KEY is not set" in run.stderr
    assert not (hub.home / "master.key").exists()


def test_init_with_hub_master_key_writes_no_key_file(hub: Hub) -> None:
    run = hub.ok("init", env={"HUB_MASTER_KEY": new_key()})
    assert "master key: HUB_MASTER_KEY" in run.stdout
    assert not (hub.home / "master.key").exists()


@pytest.mark.parametrize("value", ["not-base64!", base64.b64encode(b"too short").decode()])
def test_a_malformed_hub_master_key_is_refused_without_echoing_it(hub: Hub, value: str) -> None:
    run = hub("init", env={"HUB_MASTER_KEY": value})
    assert run.exit_code == 1
    assert "HUB_MASTER_KEY" in run.stderr and value not in run.output
    assert not (hub.home / "hub.db").exists()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o666])
def test_a_key_file_wider_than_0600_is_refused(hub: Hub, kube: KubeEnv, mode: int) -> None:
    hub.ok("init")
    (hub.home / "master.key").chmod(mode)
    run = hub(
        "cluster",
        "add",
        "x",
        "--kubeconfig",
        str(kube.kubeconfig),
        "--context",
        kube.context,
        "--skip-check",
    )
    assert run.exit_code == 1
    assert f"has permissions {mode:04o}, wider than 0600" in run.stderr
    assert "chmod 600" in run.stderr
    (hub.home / "master.key").chmod(0o600)
    assert hub.names() == []


def test_commands_before_init_say_to_run_init(hub: Hub) -> None:
    run = hub("cluster", "list")
    assert run.exit_code == 1
    assert "run `hub init`" in run.stderr
    assert not hub.home.exists()


def test_rotation_rewraps_every_record_and_removes_the_backup(hub: Hub, kube: KubeEnv) -> None:
    hub.ok("init")
    names = add_clusters(hub, kube)
    old_key = (hub.home / "master.key").read_text()
    run = hub.ok("key", "rotate")
    assert "3 credential(s) re-wrapped" in run.stdout
    assert (hub.home / "master.key").read_text() != old_key
    assert sorted(p.name for p in hub.home.glob("master.key*")) == ["master.key"]
    all_readable(hub.home, names)
    # The old key no longer opens anything.
    (hub.home / "master.key").unlink()
    run = hub("cluster", "check", names[0], env={"HUB_MASTER_KEY": old_key.strip()})
    assert run.exit_code == 1
    assert f"cannot decrypt credentials for cluster {names[0]}: wrong master key?" in run.output


class Crash(BaseException):
    """Stands for the process dying at that point (not an Exception: nothing catches it)."""


def _crash_on(monkeypatch: pytest.MonkeyPatch, target: object, attr: str, nth: int = 1) -> None:
    real: Callable[..., object] = getattr(target, attr)
    calls = 0

    def crashing(*args: object, **kw: object) -> object:
        nonlocal calls
        calls += 1
        if calls == nth:
            raise Crash(attr)
        return real(*args, **kw)

    monkeypatch.setattr(target, attr, crashing)


CRASH_POINTS = {
    # step 1 done, the transaction never ran
    "after writing the new key": (home_mod, "_rewrap", 1),
    # inside the transaction, after some records were re-wrapped
    "in the middle of the transaction": (crypto_mod, "rewrap", 2),
    # transaction committed, no file renamed yet
    "after the commit": (os, "replace", 1),
    # master.key moved to master.key.old, the new key still in master.key.new
    "between the renames": (os, "replace", 2),
    # new key in place, backup not yet deleted
    "before deleting the backup": (Path, "unlink", 1),
}


@pytest.mark.parametrize("point", list(CRASH_POINTS))
def test_an_interrupted_rotation_leaves_every_record_readable_and_can_be_finished(
    hub: Hub, kube: KubeEnv, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    hub.ok("init")
    names = add_clusters(hub, kube)
    target, attr, nth = CRASH_POINTS[point]
    with monkeypatch.context() as patch:
        _crash_on(patch, target, attr, nth)
        with pytest.raises(Crash):
            hub("key", "rotate")
    # Every record opens with the key files left behind, by a fresh process-like load.
    all_readable(hub.home, names)
    # Writes keep working while the rotation is unfinished, and stay readable.
    hub.ok(
        "cluster",
        "add",
        "late",
        "--kubeconfig",
        str(kube.kubeconfig),
        "--context",
        kube.context,
        "--skip-check",
        "--allow-same-server",
        "a second name for c0's server",
    )
    all_readable(hub.home, [*names, "late"])
    # Running the rotation again finishes it: one key file, one key id, all readable.
    hub.ok("key", "rotate")
    assert sorted(p.name for p in hub.home.glob("master.key*")) == ["master.key"]
    keyring = load_keyring(hub.home)
    registry = open_registry(hub.home)
    try:
        assert registry.key_ids_in_use() == {keyring.primary.key_id: len(names) + 1}
    finally:
        registry.close()
    all_readable(hub.home, [*names, "late"])


def test_rotation_with_hub_master_key_needs_the_new_key_in_the_environment(
    hub: Hub, kube: KubeEnv
) -> None:
    old, new = new_key(), new_key()
    hub.env["HUB_MASTER_KEY"] = old
    hub.ok("init")
    names = add_clusters(hub, kube, 2)
    run = hub("key", "rotate")
    assert run.exit_code == 2
    assert "HUB_NEW_MASTER_KEY" in run.stderr
    assert old not in run.output
    run = hub.ok("key", "rotate", env={"HUB_NEW_MASTER_KEY": new})
    assert "2 credential(s) re-wrapped" in run.stdout
    assert "now set HUB_MASTER_KEY to the value of HUB_NEW_MASTER_KEY" in run.stdout
    assert new not in run.output and old not in run.output
    assert not list(hub.home.glob("master.key*"))
    # Re-running with both keys is harmless (an interrupted run is finished the same way).
    hub.ok("key", "rotate", env={"HUB_NEW_MASTER_KEY": new})
    # The old key now fails with the documented message; the new one works.
    run = hub("cluster", "export", names[0], "--show-secrets")
    assert run.exit_code == 1
    assert run.stderr.strip().endswith(
        f"cannot decrypt credentials for cluster {names[0]}: wrong master key?"
    )
    hub.env["HUB_MASTER_KEY"] = new
    hub.ok("cluster", "export", names[0], "--show-secrets")


def test_rotation_without_the_right_key_file_writes_nothing(hub: Hub, kube: KubeEnv) -> None:
    key = new_key()
    hub.env["HUB_MASTER_KEY"] = key
    hub.ok("init")
    names = add_clusters(hub, kube, 1)
    # Without the environment, a key file holding another key cannot open the record.
    hub.env["HUB_MASTER_KEY"] = None
    write_key_file(hub.home / "master.key", MasterKey.generate("other"))
    run = hub("key", "rotate")
    assert run.exit_code == 1
    assert f"cannot decrypt credentials for cluster {names[0]}: wrong master key?" in run.stderr
    assert sorted(p.name for p in hub.home.glob("master.key*")) == ["master.key"]
    hub.env["HUB_MASTER_KEY"] = key
    hub.ok("cluster", "export", names[0], "--show-secrets")


def test_a_symlinked_key_file_is_refused(hub: Hub, tmp_path: Path) -> None:
    hub.ok("init")
    real = tmp_path / "elsewhere.key"
    (hub.home / "master.key").rename(real)
    (hub.home / "master.key").symlink_to(real)
    run = hub("key", "rotate")
    assert run.exit_code == 1
    assert "is a symbolic link; refusing to follow it" in run.stderr
    assert sorted(p.name for p in hub.home.glob("master.key*")) == ["master.key"]


def test_rotation_also_rewraps_the_sync_history_manifests(hub: Hub) -> None:
    from datetime import UTC, datetime

    from hub.home import open_store
    from hub.sync.history import Operation, OperationPhase, SyncHistory, Trigger

    hub.ok("init")
    manifest = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {}}
    store = open_store(hub.home)
    try:
        SyncHistory(store, lambda: load_keyring(hub.home)).record(
            Operation(
                app="web",
                operation_id="op-1",
                cluster="c0",
                revision="0" * 40,
                source={"repoURL": "/repo", "path": "web"},
                initiated_by="test",
                trigger=Trigger.USER,
                started_at=datetime.now(UTC),
                phase=OperationPhase.SUCCEEDED,
                message="",
                resources=(),
            ),
            finished_at=datetime.now(UTC),
            manifests=[manifest],
        )
    finally:
        store.close()
    hub.ok("key", "rotate")
    store = open_store(hub.home)
    try:
        # Only the new key is on disk now: the manifests must open with it alone.
        history = SyncHistory(store, lambda: load_keyring(hub.home))
        assert history.manifests("web", 0) == [manifest]
    finally:
        store.close()
