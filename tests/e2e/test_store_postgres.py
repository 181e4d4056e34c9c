"""The hub on PostgreSQL, end to end: `hub init --database`, `hub cluster add` against a
`hub sim`, `hub serve --once` syncing an app, `hub status`; and `hub migrate-store`
moving a SQLite home (clusters, apps, history, tokens, repo credentials) to PostgreSQL,
after which the hub runs on the copy. Credentials never appear in clear in a pg_dump."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from clusters.sim import SimServer
from hub.api.client import hold_serve_lock
from hub.auth.tokens import authenticate
from hub.home import load_keyring, open_store
from hub.repo_credentials import RepoCredentialStore
from tests.e2e.serve_support import CONFIGMAP, DEPLOYMENT, WEB_APPSET, Fleet
from tests.sync.e2e_helpers import GitRepo

pytestmark = [pytest.mark.sim_only("needs simulated clusters"), pytest.mark.timeout(180)]

REPO_PASSWORD = "repo-password-9f3c1e"


def _fleet(tmp_path: Path, sim: SimServer) -> Fleet:
    repo = GitRepo(tmp_path / "repo")
    repo.write(
        {
            "sets/web.yaml": WEB_APPSET.format(repo=repo.path),
            "web/deployment.yaml": DEPLOYMENT.format(image="nginx:1.25"),
            "web/configmap.yaml": CONFIGMAP,
        }
    )
    return Fleet(tmp_path / "home", sim, repo, tmp_path / "log")


def _cluster_tokens(sim: SimServer) -> list[str]:
    config = yaml.safe_load(Path(sim.kubeconfig_path).read_text())
    return [u["user"]["token"] for u in config["users"] if u["user"].get("token")]


def _add_clusters_and_sync(f: Fleet, sim: SimServer, names: tuple[str, ...]) -> None:
    for name in names:
        f.cli.ok("cluster", "add", name, "--kubeconfig", str(sim.kubeconfig_path),
                 "--context", name)  # fmt: skip
    f.cli.ok("source", "add", "root", "--repo", str(f.repo.path), "--path", "sets")
    run = f.cli("serve", "--once", "--timeout", "30")
    assert run.exit_code == 0, run.output


def _history_counts(home: Path) -> dict[str, int]:
    with open_store(home) as store, store.read() as db:
        rows = db.execute("SELECT app, COUNT(*) FROM sync_history GROUP BY app").fetchall()
    return {str(app): int(n) for app, n in rows}


def test_a_hub_on_postgresql_registers_syncs_and_reports(
    tmp_path: Path, postgres_url: str, postgres_server: Any
) -> None:
    with SimServer(clusters=["one"], ready_delay=0.1, kubeconfig_path=tmp_path / "k") as sim:
        f = _fleet(tmp_path, sim)
        init = f.cli.ok("init", "--database", postgres_url)
        assert "state database: postgresql postgresql://" in init.stdout
        assert not (f.home / "hub.db").exists()
        _add_clusters_and_sync(f, sim, ("one",))
        apps = f.apps()
        assert list(apps) == ["one-web"] and apps["one-web"].health_status == "Healthy"
        assert f.kubectl("one", "get", "configmap", "settings", "-n", "web").returncode == 0
        status = f.cli.ok("status", "--offline")
        assert "state database: postgresql" in status.stdout
        assert "one" in status.stdout
        dump = postgres_server.dump(postgres_url)
        assert b"CREATE TABLE" in dump and b"clusters" in dump
        tokens = _cluster_tokens(sim)
        assert tokens
        for token in tokens:  # sealed: never in clear anywhere in the database
            assert token.encode() not in dump


def test_migrate_store_moves_a_sqlite_home_and_the_hub_runs_on_the_copy(
    tmp_path: Path, postgres_url: str, postgres_server: Any
) -> None:
    with SimServer(clusters=["one", "two"], ready_delay=0.1, kubeconfig_path=tmp_path / "k") as sim:
        f = _fleet(tmp_path, sim)
        f.cli.ok("init")
        _add_clusters_and_sync(f, sim, ("one", "two"))
        f.cli.ok("user", "add", "alice")
        created = f.cli.ok("token", "create", "--user", "alice").stdout
        api_token = next(w for w in created.split() if w.startswith("hub_"))
        f.cli.ok("repo", "add", "https://charts.example.com/", "--username", "u",
                 "--password-stdin", input=REPO_PASSWORD + "\n")  # fmt: skip
        history_before = _history_counts(f.home)
        assert sorted(history_before) == ["one-web", "two-web"]

        # A running hub (its serve lock) stops the migration, with the way out.
        fd = hold_serve_lock(f.home, api=False)
        try:
            refused = f.cli("migrate-store", "--to", postgres_url)
        finally:
            os.close(fd)
        assert refused.exit_code != 0
        assert "stop it first" in refused.output and "migrate-store" in refused.output

        moved = f.cli.ok("migrate-store", "--to", postgres_url)
        assert "row counts checked" in moved.stdout
        assert "now uses postgresql" in moved.stdout
        recorded = f.home / "database.url"
        assert recorded.read_text().strip() == postgres_url
        assert stat.S_IMODE(recorded.stat().st_mode) == 0o600

        with open_store(f.home) as after:
            assert after.backend == "postgresql"
            assert authenticate(after, api_token).subject == "alice"
            creds = RepoCredentialStore(after, lambda: load_keyring(f.home))
            assert [c.url for c in creds.list()] == ["https://charts.example.com"]
            found = creds.lookup("https://charts.example.com/stable/index.yaml")
            assert found is not None and found.password == REPO_PASSWORD  # same master key
        assert _history_counts(f.home) == history_before
        assert f.cli.names() == ["one", "two"]
        # Audited writes continue the copied ids (identity counters moved past them).
        f.cli.ok("user", "add", "bob")
        with open_store(f.home) as after, after.read() as db:
            seqs = [r[0] for r in db.execute("SELECT seq FROM audit ORDER BY seq").fetchall()]
            last = db.execute("SELECT action, target FROM audit ORDER BY seq DESC").fetchone()
        assert len(seqs) == len(set(seqs)) >= 3 and tuple(last) == ("user.add", "bob")
        # The hub runs on the copy: the same master key opens the copied credentials.
        f.repo.write({"web/configmap.yaml": CONFIGMAP.replace("hello", "bonjour")})
        run = f.cli("serve", "--once", "--timeout", "30")
        assert run.exit_code == 0, run.output
        got = f.kubectl("one", "get", "configmap", "settings", "-n", "web", "-o", "json")
        assert '"greeting": "bonjour"' in got.stdout
        assert _history_counts(f.home)["one-web"] == history_before["one-web"] + 1
        dump = postgres_server.dump(postgres_url)
        for secret in (*_cluster_tokens(sim), REPO_PASSWORD, api_token.split("_", 2)[2]):
            assert secret.encode() not in dump

        # A second migration into the (now non-empty) database is refused, not merged.
        other = Fleet(tmp_path / "other", sim, f.repo, tmp_path / "log2")
        other.cli.ok("init")
        again = other.cli("migrate-store", "--to", postgres_url)
        assert again.exit_code != 0 and "is not empty" in again.output
        assert not (other.home / "database.url").exists()
