"""An Application's sources resolved to exact revisions and local trees, then rendered.

Every source of ``Application.app_sources()`` (one, or ``spec.sources``) is resolved: a Git
source to a commit SHA and its checkout, a chart-repository source (``chart:``) to the chart
version its ``targetRevision`` (a version or a semver range) selects and the unpacked chart.
``render_app`` renders each source that is not ref-only and concatenates the manifests, as
Argo CD does for multi-source Applications; ``ref:`` sources lend their checkout to
``$ref/path`` value files.

The app's revision is one string: the source's revision for a single source, the
revisions joined with ``,`` for several (``revision_text``); the per-source list is
kept in history (``source_record``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from clusters.kube import ApiResource
from hub.inline import check_blocking
from hub.sync.helm import ClusterInfo, RenderContext, api_versions_of, semver_of
from hub.sync.model import Application, ApplicationSource, AppSpecError
from hub.sync.render import TREE_RENDERS, RenderResult, render_source
from hub.sync.validate import SourcedManifest


class GitProvider(Protocol):
    def resolve(self, repo_url: str, revision: str) -> str: ...

    def materialize(self, repo_url: str, sha: str) -> Path: ...


class ChartProvider(Protocol):
    """Chart repositories (``hub.charts.ChartRepos``)."""

    def resolve_chart(self, repo_url: str, chart: str, constraint: str) -> str: ...

    def chart_dir(
        self, repo_url: str, chart: str, version: str, *, pass_credentials: bool = False
    ) -> Path: ...


@dataclass(frozen=True, kw_only=True)
class ResolvedSource:
    source: ApplicationSource
    revision: str  # a commit SHA, or a chart version
    tree: Path  # the checkout root, or the unpacked chart directory


def split_revision(app: Application, revision: str | None) -> list[str | None]:
    """Per-source revision overrides from one revision string (``revision_text``'s form)."""
    sources = app.app_sources()
    if not revision:
        return [None] * len(sources)
    if len(sources) == 1:
        return [revision]
    parts = revision.split(",")
    if len(parts) != len(sources):
        raise AppSpecError(
            f"{app.source_file or app.name}: revision {revision!r} names {len(parts)} "
            f"revision(s) but the app has {len(sources)} sources; give one per source, "
            "joined with ','"
        )
    return [p or None for p in parts]


def resolve_sources(
    app: Application,
    *,
    git: GitProvider,
    charts: ChartProvider | None,
    revision: str | None = None,
) -> list[ResolvedSource]:
    """Each source at an exact revision, materialized (Git or chart errors raise)."""
    out: list[ResolvedSource] = []
    for source, override in zip(app.app_sources(), split_revision(app, revision), strict=True):
        wanted = override or source.target_revision
        if source.is_chart_repo:
            check_blocking("a chart repository")
            if charts is None:
                raise AppSpecError(f"{source.repo_url}: no chart repository client configured")
            version = charts.resolve_chart(source.repo_url, source.chart, wanted)
            passing = source.helm is not None and source.helm.pass_credentials
            tree = charts.chart_dir(
                source.repo_url, source.chart, version, pass_credentials=passing
            )
            out.append(ResolvedSource(source=source, revision=version, tree=tree))
        else:
            sha = git.resolve(source.repo_url, wanted)
            out.append(
                ResolvedSource(
                    source=source, revision=sha, tree=git.materialize(source.repo_url, sha)
                )
            )
    return out


def revision_text(resolved: Sequence[ResolvedSource], *, multiple: bool) -> str:
    if not multiple:
        return resolved[0].revision
    return ",".join(r.revision for r in resolved)


def source_record(app: Application, resolved: Sequence[ResolvedSource]) -> dict[str, Any]:
    """What history keeps of the sources: each one's repo, path/chart, target and revision."""
    items = [
        {
            k: v
            for k, v in (
                ("repoURL", r.source.repo_url),
                ("path", r.source.path),
                ("chart", r.source.chart),
                ("targetRevision", r.source.target_revision),
                ("ref", r.source.ref),
                ("revision", r.revision),
            )
            if v
        }
        for r in resolved
    ]
    if app.has_multiple_sources:
        return {"sources": items, "revisions": [r.revision for r in resolved]}
    return items[0]


def render_app(
    app: Application,
    resolved: Sequence[ResolvedSource],
    *,
    cluster: ClusterInfo | None = None,
) -> RenderResult:
    """Manifests of every rendering source, in source order."""
    refs: Mapping[str, Path] = {r.source.ref: r.tree for r in resolved if r.source.ref}
    manifests: list[SourcedManifest] = []
    tools: list[str] = []
    for r in resolved:
        if r.source.ref_only:
            continue
        ctx = RenderContext(
            app_name=app.name,
            destination_namespace=app.destination.namespace,
            cluster=cluster or ClusterInfo(),
            revision=r.revision,
            refs=refs,
        )
        source = replace(r.source, path="") if r.source.is_chart_repo else r.source
        # r.tree is an exported commit or an unpacked chart version: it never changes
        result = TREE_RENDERS.render(
            r.tree, source, functools.partial(render_source, r.tree, source, context=ctx)
        )
        manifests.extend(result.manifests)
        tools.append(result.tool)
    return RenderResult(manifests=tuple(manifests), tool="+".join(dict.fromkeys(tools)))


def needs_cluster_info(resolved: Sequence[ResolvedSource]) -> bool:
    """Does any source render with Helm (and so want the cluster's capabilities)?"""
    return any(
        not r.source.ref_only
        and (r.source.declared_type == "Helm" or _has_chart(r.tree, r.source.path))
        for r in resolved
    )


@functools.lru_cache(maxsize=4096)
def _has_chart(tree: Path, path: str) -> bool:
    """Whether ``path`` of an exported tree is a chart. A tree is one commit's export and
    never changes, so the answer is kept: every render of every Application asked the
    file system again, on the worker's loop."""
    return (tree / path.strip("/") / "Chart.yaml").is_file()


def cluster_info(resources: Mapping[Any, ApiResource], server_version: str) -> ClusterInfo:
    """``--kube-version`` and ``--api-versions`` from the cluster's discovery and
    ``gitVersion`` (``AsyncKube.resources()`` / ``server_version()``)."""
    return ClusterInfo(
        kube_version=semver_of(server_version),
        api_versions=api_versions_of([(r.group, r.version, r.kind) for r in resources.values()]),
    )
