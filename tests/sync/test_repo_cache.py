"""RepoCache: revisions resolved to SHAs, trees exported by SHA without a checkout."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from hub import repos
from hub.repos import RepoCache, RepoError


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    out = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, env=env, check=True
    )
    return out.stdout.strip()


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    repo = tmp_path / "origin"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "app").mkdir()
    (repo / "app" / "cm.yaml").write_text("kind: ConfigMap\n")
    (repo / "run.sh").write_text("#!/bin/sh\n")
    (repo / "run.sh").chmod(0o755)
    os.symlink("app/cm.yaml", repo / "link.yaml")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "one")
    git(repo, "tag", "v1")
    return repo


def test_a_local_path_resolves_branches_tags_and_head(origin: Path, tmp_path: Path) -> None:
    head = git(origin, "rev-parse", "HEAD")
    with RepoCache(tmp_path / "home") as cache:
        assert cache.resolve(str(origin), "main") == head
        assert cache.resolve(str(origin), "v1") == head
        assert cache.resolve(str(origin), "HEAD") == head
        with pytest.raises(RepoError, match="revision 'nope' not found"):
            cache.resolve(str(origin), "nope")


def test_materialize_writes_the_tree_at_a_sha_and_leaves_the_repo_alone(
    origin: Path, tmp_path: Path
) -> None:
    first = git(origin, "rev-parse", "HEAD")
    (origin / "app" / "cm.yaml").write_text("kind: Secret\n")
    git(origin, "commit", "-q", "-am", "two")
    (origin / "app" / "cm.yaml").write_text("uncommitted\n")
    with RepoCache(tmp_path / "home") as cache:
        tree = cache.materialize(str(origin), first)
        assert tree == tmp_path / "home" / "trees" / first
        assert (tree / "app" / "cm.yaml").read_text() == "kind: ConfigMap\n"
        assert os.access(tree / "run.sh", os.X_OK)
        assert os.readlink(tree / "link.yaml") == "app/cm.yaml"
        assert cache.materialize(str(origin), first) == tree  # reused
    assert (origin / "app" / "cm.yaml").read_text() == "uncommitted\n"
    assert "cm.yaml" in git(origin, "status", "--porcelain")


def test_a_url_is_cloned_bare_once_and_fetched_on_resolve(origin: Path, tmp_path: Path) -> None:
    url = f"file://{origin}"
    with RepoCache(tmp_path / "home") as cache:
        first = cache.resolve(url, "main")
        assert first == git(origin, "rev-parse", "HEAD")
        clones = list((tmp_path / "home" / "repos").iterdir())
        assert len(clones) == 1 and (clones[0] / "HEAD").is_file()  # bare: no work tree
        assert not (clones[0] / ".git").exists()
        (origin / "new.yaml").write_text("kind: Service\n")
        git(origin, "add", "new.yaml")
        git(origin, "commit", "-q", "-m", "two")
        second = cache.resolve(url, "main")
        assert second == git(origin, "rev-parse", "HEAD") != first
        assert (cache.materialize(url, second) / "new.yaml").is_file()
        assert cache.resolve(url, "v1") == first


def test_clean_removes_old_trees_and_keeps_recent_ones(origin: Path, tmp_path: Path) -> None:
    with RepoCache(tmp_path / "home", max_age_s=100) as cache:
        tree = cache.materialize(str(origin), git(origin, "rev-parse", "HEAD"))
        mtime = tree.stat().st_mtime
        assert cache.clean(now=mtime + 10) == 0
        assert tree.is_dir()
        assert cache.clean(now=mtime + 1000) == 1
        assert not tree.exists()


def test_a_tree_is_one_path_marked_used_once_a_minute_and_exported_again_after_clean(
    origin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sha = git(origin, "rev-parse", "HEAD")
    touched: list[Path] = []
    real_utime = os.utime
    monkeypatch.setattr(
        os, "utime", lambda p, *a, **k: (touched.append(Path(p)), real_utime(p, *a, **k))
    )
    with RepoCache(tmp_path / "home", max_age_s=100) as cache:
        tree = cache.materialize(str(origin), sha)
        for _ in range(5):
            assert cache.materialize(str(origin), sha) is tree  # one Path: cheap cache keys
        assert touched == []  # just exported: not marked again on every render
        monkeypatch.setattr(repos, "TREE_TOUCH_INTERVAL_S", 0.0)  # as if a minute passed
        cache.materialize(str(origin), sha)
        assert touched == [tree]  # marked again
        assert cache.clean(now=tree.stat().st_mtime + 1000) == 1
        again = cache.materialize(str(origin), sha)  # not the remembered, removed tree
        assert again == tree and (again / "app" / "cm.yaml").is_file()
