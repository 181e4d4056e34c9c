"""Renders on the event loop (``hub.inline``): inside ``forbid_blocking()`` every step that
may block raises ``WouldBlock`` before doing anything, and what needs no blocking step
renders as it would in a thread."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from hub.inline import WouldBlock, check_blocking, forbid_blocking
from hub.repos import RepoCache, ResolvedRevisions
from hub.sync.helm import RenderContext
from hub.sync.model import ApplicationSource, HelmSource, parse_application_yaml
from hub.sync.render import (
    INLINE_MAX_FILES,
    INLINE_MAX_PARSE,
    INLINE_MAX_PICKLE,
    PARSED_FILES,
    render_directory,
    render_source,
)
from hub.sync.sources import resolve_sources
from tests.hub.test_resolved_revisions import FakeRepos
from tests.sync.test_repo_cache import git

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\n"


@pytest.fixture
def no_subprocess(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every subprocess the code under test starts (there must be none)."""
    started: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        started.append(args)
        raise AssertionError(f"a subprocess ran inside forbid_blocking(): {args}")

    monkeypatch.setattr(subprocess, "run", refuse)
    return started


def test_the_guard_holds_inside_the_block_only_and_not_in_other_threads() -> None:
    check_blocking("outside")  # no effect
    seen: list[BaseException | None] = []
    with forbid_blocking():
        with pytest.raises(WouldBlock, match="a fetch"):
            check_blocking("a fetch")

        def other() -> None:
            try:
                check_blocking("in a thread")
                seen.append(None)
            except WouldBlock as exc:
                seen.append(exc)

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    check_blocking("after")
    assert seen == [None]


def test_a_small_file_is_parsed_inline_once_and_a_large_new_one_is_left_to_a_thread(
    tmp_path: Path,
) -> None:
    (tmp_path / "cm.yaml").write_text(CM.format(name="inline-first"))
    before = PARSED_FILES.misses
    with forbid_blocking():
        inline = render_directory(tmp_path)
        again = render_directory(tmp_path)
    assert PARSED_FILES.misses == before + 1  # parsed once: the second render read it back
    assert inline == again == render_directory(tmp_path)
    assert inline.manifests[0].obj["metadata"]["name"] == "inline-first"
    (tmp_path / "cm.yaml").write_text(CM.format(name="inline-changed"))
    with forbid_blocking():  # new text: parsed anew, never served stale
        assert render_directory(tmp_path).manifests[0].obj["metadata"]["name"] == "inline-changed"
    padding = "# " + "x" * INLINE_MAX_PARSE + "\n"
    (tmp_path / "cm.yaml").write_text(padding + CM.format(name="large"))
    with forbid_blocking(), pytest.raises(WouldBlock, match="parsing a large file"):
        render_directory(tmp_path)
    render_directory(tmp_path)  # in a thread: parsed and remembered
    with forbid_blocking():
        assert render_directory(tmp_path).manifests[0].obj["metadata"]["name"] == "large"


def test_a_large_directory_is_left_to_a_thread(tmp_path: Path) -> None:
    for i in range(INLINE_MAX_FILES + 1):
        (tmp_path / f"cm-{i:03}.yaml").write_text(CM.format(name=f"big-{i}"))
    render_directory(tmp_path)  # every file parsed: only the walk's size can block now
    with forbid_blocking(), pytest.raises(WouldBlock, match="a large directory"):
        render_directory(tmp_path)
    (tmp_path / f"cm-{INLINE_MAX_FILES:03}.yaml").unlink()
    with forbid_blocking():
        assert len(render_directory(tmp_path).manifests) == INLINE_MAX_FILES


def test_a_large_file_is_left_to_a_thread_even_parsed(tmp_path: Path) -> None:
    items = "".join(f"  k{i}: '{'x' * 100}'\n" for i in range(INLINE_MAX_PICKLE // 100 + 1))
    (tmp_path / "big.yaml").write_text(CM.format(name="big") + "data:\n" + items)
    render_directory(tmp_path)  # parsed, remembered
    with forbid_blocking(), pytest.raises(WouldBlock, match="a large file"):
        render_directory(tmp_path)


def test_kustomize_and_helm_never_run_inside_the_block(
    tmp_path: Path, no_subprocess: list[Any]
) -> None:
    kust = tmp_path / "kust"
    kust.mkdir()
    (kust / "kustomization.yaml").write_text("resources: []\n")
    chart = tmp_path / "chart"
    chart.mkdir()
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: c\nversion: 0.1.0\n")
    with forbid_blocking():
        with pytest.raises(WouldBlock, match="kustomize"):
            render_source(tmp_path, ApplicationSource(repo_url="r", path="kust"))
        with pytest.raises(WouldBlock, match="helm"):
            render_source(
                tmp_path,
                ApplicationSource(repo_url="r", path="chart", helm=HelmSource()),
                context=RenderContext(app_name="web"),
            )
    assert no_subprocess == []


def test_git_exports_and_resolves_are_left_to_a_thread(tmp_path: Path) -> None:
    origin = tmp_path / "origin"
    origin.mkdir()
    git(origin, "init", "-q", "-b", "main")
    (origin / "cm.yaml").write_text(CM.format(name="g"))
    git(origin, "add", "-A")
    git(origin, "commit", "-q", "-m", "one")
    sha = git(origin, "rev-parse", "HEAD")
    with RepoCache(tmp_path / "home") as cache:
        with forbid_blocking():
            with pytest.raises(WouldBlock, match="git resolve"):
                cache.resolve(str(origin), "main")
            with pytest.raises(WouldBlock, match="git export"):
                cache.materialize(str(origin), sha)
        assert not (tmp_path / "home" / "trees" / sha).exists()  # nothing half-done
        tree = cache.materialize(str(origin), sha)
        with forbid_blocking():
            assert cache.materialize(str(origin), sha) == tree  # exported: a stat, inline


def test_a_revision_resolved_in_this_cycle_answers_inline_and_a_new_one_does_not() -> None:
    repos = FakeRepos()
    revisions = ResolvedRevisions(repos)
    with forbid_blocking(), pytest.raises(WouldBlock, match="git resolve"):
        revisions.resolve("r", "main")
    assert repos.calls == []  # raised before the fetch (and before the key's lock)
    assert revisions.resolve("r", "main") == "a" * 40
    with forbid_blocking():
        assert revisions.resolve("r", "main") == "a" * 40
    revisions.new_cycle()
    with forbid_blocking(), pytest.raises(WouldBlock):
        revisions.resolve("r", "main")
    assert repos.calls == [("r", "main")]


def test_a_chart_repository_source_is_left_to_a_thread() -> None:
    app = parse_application_yaml(
        """
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: web}
spec:
  project: default
  source: {repoURL: 'https://charts.example.com', chart: web, targetRevision: 1.0.0}
  destination: {name: a, namespace: web}
"""
    )

    class Charts:
        def resolve_chart(self, *args: Any) -> str:
            raise AssertionError("a chart repository was read inside forbid_blocking()")

        def chart_dir(self, *args: Any, **kwargs: Any) -> Path:
            raise AssertionError("a chart was downloaded inside forbid_blocking()")

    with forbid_blocking(), pytest.raises(WouldBlock, match="a chart repository"):
        resolve_sources(app, git=FakeRepos(), charts=Charts())


def test_a_sha_this_hub_resolved_answers_inline_in_any_later_cycle() -> None:
    # A render asks for the SHA its revision resolved to; a new Git cycle (every poll)
    # must not send every worker's next render to a thread for it.
    repos = FakeRepos()
    revisions = ResolvedRevisions(repos)
    sha = revisions.resolve("r", "main")
    revisions.new_cycle()
    with forbid_blocking():
        assert revisions.resolve("r", sha) == sha
        with pytest.raises(WouldBlock):
            revisions.resolve("r", "main")  # a branch is asked again each cycle
        with pytest.raises(WouldBlock):
            revisions.resolve("q", sha)  # known for its own repository only
    assert repos.calls == [("r", "main")]
