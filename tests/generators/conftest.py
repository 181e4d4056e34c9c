"""Helpers for generator tests: ApplicationSets from dicts and real Git repositories."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from generators.clusters import ClusterInfo
from generators.expand import Context, Result, generate
from generators.spec import ApplicationSet, parse_appset
from hub.repos import LocalRepoReader, RepoMapping

REPO_URL = "https://git.example.com/org/repo.git"


def appset(
    generators: list[Any],
    *,
    template: Mapping[str, Any] | None = None,
    go: bool = False,
    options: list[str] | None = None,
    **spec_extra: Any,
) -> ApplicationSet:
    """An ApplicationSet document built from Python data (parsed like a file)."""
    spec: dict[str, Any] = {
        "generators": generators,
        "template": template or {"metadata": {"name": "app"}, "spec": {"project": "default"}},
        **spec_extra,
    }
    if go:
        spec["goTemplate"] = True
    if options is not None:
        spec["goTemplateOptions"] = options
    doc = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "ApplicationSet",
        "metadata": {"name": "set", "namespace": "argocd"},
        "spec": spec,
    }
    return parse_appset(doc, source="test.yaml")


def params_of(result: Result) -> list[dict[str, Any]]:
    assert not result.generation_failed, result.conditions
    return [p.params for p in result.params]


def run(
    generators: list[Any], *, go: bool = False, context: Context | None = None, **kw: Any
) -> list[dict[str, Any]]:
    """The param sets of an ApplicationSet made of ``generators``."""
    return params_of(generate(appset(generators, go=go, **kw), context))


def error_of(generators: list[Any], *, go: bool = False, context: Context | None = None) -> str:
    result = generate(appset(generators, go=go), context)
    assert result.generation_failed, result.params
    return result.conditions[0].message


def cluster(name: str, server: str | None = None, **labels: str) -> ClusterInfo:
    return ClusterInfo(name=name, server=server or f"https://{name}.example.com", labels=labels)


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[[Mapping[str, str]], Path]:
    """Create a Git repository with the given files committed (path -> content)."""
    counter = iter(range(1000))

    def make(files: Mapping[str, str]) -> Path:
        root = tmp_path / f"repo{next(counter)}"
        root.mkdir()
        _git(root, "init", "-q", "-b", "main")
        for rel, content in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        _git(root, "add", "-A")
        _git(root, "commit", "-q", "-m", "init", "--allow-empty")
        return root

    return make


@pytest.fixture
def repo_context(
    make_repo: Callable[[Mapping[str, str]], Path],
) -> Iterator[Callable[..., Context]]:
    """A ``Context`` reading ``REPO_URL`` from a fresh repository with the given files."""
    readers: list[LocalRepoReader] = []

    def make(files: Mapping[str, str], **kw: Any) -> Context:
        reader = LocalRepoReader(RepoMapping(by_url={REPO_URL: make_repo(files)}))
        readers.append(reader)
        return Context(repo_reader=reader, **kw)

    yield make
    for reader in readers:
        reader.close()
