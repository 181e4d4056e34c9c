"""Renders of an exported commit are worked out once per path (``hub.sync.render.
TreeRenders``): a fleet of Applications on one path runs ``kustomize build`` once, gets
its own copy of the objects, and a new commit, other directory options, a Helm source or
an error are never answered from memory."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

import pytest

from hub.inline import forbid_blocking
from hub.repos import RepoCache
from hub.sync.model import (
    Application,
    ApplicationSource,
    DirectorySource,
    HelmSource,
    RenderError,
    parse_application_yaml,
)
from hub.sync.render import TreeRenders, find_kustomize_command
from hub.sync.sources import render_app, resolve_sources
from tests.sync.test_repo_cache import git

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{k: v}}\n"


def app_at(repo: Path, path: str, name: str) -> Application:
    return parse_application_yaml(
        f"""
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {{name: {name}}}
spec:
  project: default
  source: {{repoURL: '{repo}', path: {path}, targetRevision: main}}
  destination: {{name: {name}, namespace: shop}}
"""
    )


@pytest.fixture
def kustomize_runs(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every ``kustomize build`` (or ``kubectl kustomize``) started, really run."""
    runs: list[list[str]] = []
    real = subprocess.run

    def counting(argv: Any, *args: Any, **kwargs: Any) -> Any:
        if "kustomize" in " ".join(map(str, argv)):
            runs.append(list(argv))
        return real(argv, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", counting)
    return runs


def commit(origin: Path, message: str) -> str:
    git(origin, "add", "-A")
    git(origin, "commit", "-q", "-m", message)
    return git(origin, "rev-parse", "HEAD")


@pytest.mark.skipif(find_kustomize_command() is None, reason="needs kustomize or kubectl")
def test_a_fleet_on_one_kustomization_runs_kustomize_once_per_commit(
    tmp_path: Path, kustomize_runs: list[list[str]]
) -> None:
    origin = tmp_path / "origin"
    (origin / "web").mkdir(parents=True)
    git(origin, "init", "-q", "-b", "main")
    (origin / "web" / "cm.yaml").write_text(CM.format(name="web"))
    (origin / "web" / "kustomization.yaml").write_text("resources: [cm.yaml]\n")
    commit(origin, "one")
    with RepoCache(tmp_path / "home") as cache:

        def render(name: str, *, inline: bool = False) -> Any:
            app = app_at(origin, "web", name)
            resolved = resolve_sources(app, git=cache, charts=None)
            if not inline:
                return render_app(app, resolved)
            with forbid_blocking():  # from memory: no kustomize, no thread needed
                return render_app(app, resolved)

        first = render("web-a")
        assert len(kustomize_runs) == 1 and first.tool == "kustomize"
        first.manifests[0].obj["data"]["k"] = "changed by its caller"
        second = render("web-b", inline=True)
        assert len(kustomize_runs) == 1
        assert second.manifests[0].obj["data"] == {"k": "v"}  # its own copy
        assert second.manifests[0].origin == first.manifests[0].origin

        (origin / "web" / "cm.yaml").write_text(CM.format(name="web-2"))
        commit(origin, "two")
        third = render("web-c")
        assert len(kustomize_runs) == 2  # a new commit is a new tree: rendered again
        assert third.manifests[0].obj["metadata"]["name"] == "web-2"


def test_a_path_is_kept_per_tree_and_directory_options(tmp_path: Path) -> None:
    renders = TreeRenders()
    calls: list[str] = []

    def rendering(label: str) -> Any:
        from hub.sync.render import render_source

        def run() -> Any:
            calls.append(label)
            return render_source(tree, source)

        return run

    tree = tmp_path / "trees" / ("a" * 40)
    (tree / "web" / "sub").mkdir(parents=True)
    (tree / "web" / "cm.yaml").write_text(CM.format(name="top"))
    (tree / "web" / "sub" / "cm.yaml").write_text(CM.format(name="deep"))
    source = ApplicationSource(repo_url="r", path="web")
    flat = renders.render(tree, source, rendering("flat"))
    assert renders.render(tree, source, rendering("flat again")) == flat
    source = ApplicationSource(repo_url="r", path="web", directory=DirectorySource(recurse=True))
    deep = renders.render(tree, source, rendering("recursive"))
    assert calls == ["flat", "recursive"]
    assert [m.obj["metadata"]["name"] for m in flat.manifests] == ["top"]
    assert [m.obj["metadata"]["name"] for m in deep.manifests] == ["top", "deep"]
    assert (renders.hits, renders.misses) == (1, 2)
    renders.clear()
    renders.render(tree, source, rendering("after clear"))
    assert calls == ["flat", "recursive", "after clear"]


def test_helm_sources_and_errors_are_never_kept(tmp_path: Path) -> None:
    renders = TreeRenders()
    calls: list[str] = []

    def failing() -> Any:
        calls.append("error")
        raise RenderError("web/cm.yaml: invalid YAML")

    source = ApplicationSource(repo_url="r", path="web")
    for _ in range(2):
        with pytest.raises(RenderError, match="invalid YAML"):
            renders.render(tmp_path, source, failing)
    assert calls == ["error", "error"]

    from hub.sync.render import RenderResult

    def helm() -> RenderResult:
        calls.append("helm")
        return RenderResult(manifests=(), tool="helm")

    helm_source = ApplicationSource(repo_url="r", path="chart", helm=HelmSource())
    renders.render(tmp_path, helm_source, helm)
    renders.render(tmp_path, helm_source, helm)
    # a path that turns out to hold a chart (no helm block) is Helm too: not kept
    renders.render(tmp_path, ApplicationSource(repo_url="r", path="chart"), helm)
    renders.render(tmp_path, ApplicationSource(repo_url="r", path="chart"), helm)
    assert calls == ["error", "error", "helm", "helm", "helm", "helm"]
    assert renders.hits == 0


def test_the_memory_is_bounded_least_recently_used_first(tmp_path: Path) -> None:
    from hub.sync.render import RenderResult
    from hub.sync.validate import SourcedManifest

    def result(name: str) -> RenderResult:
        obj = {"kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "x" * 400}}
        return RenderResult(manifests=(SourcedManifest(obj=obj, origin=name),), tool="directory")

    renders = TreeRenders(max_bytes=1500)  # room for two of these
    for name in ("a", "b", "c"):
        renders.render(
            tmp_path, ApplicationSource(repo_url="r", path=name), functools.partial(result, name)
        )
    calls: list[str] = []

    def again(name: str) -> Any:
        def run() -> RenderResult:
            calls.append(name)
            return result(name)

        return run

    for name in ("c", "b", "a"):
        renders.render(tmp_path, ApplicationSource(repo_url="r", path=name), again(name))
    assert calls == ["a"]  # the oldest went first
