"""The clusters generator: one param set per registered cluster matching a selector.

Argo CD reads cluster Secrets; gitops-hub hands the generator ``ClusterInfo`` records
(the CLI builds them from the hub's registry or from Argo CD cluster Secret manifests).
Every cluster counts as a Secret labelled ``argocd.argoproj.io/secret-type: cluster``:
that label is added if missing, matched by selectors and exposed as a param, as in
Argo CD.

Params: ``name``, ``nameNormalized``, ``server``, ``project`` and, in fasttemplate mode,
``metadata.labels.<k>`` / ``metadata.annotations.<k>`` for all labels and annotations;
in goTemplate mode ``metadata: {labels: {...}, annotations: {...}}`` (each sub-map
only when non-empty). ``values`` are rendered against each cluster's params.

The implicit local cluster (``in-cluster``, ``https://kubernetes.default.svc``) exists
only when the generator is built with ``include_local=True`` and no registered cluster
has that server; it is then produced first (as Argo CD's generator code does), only
for a completely empty selector, and has no ``metadata``.

Order: the local cluster, then the others by name (Argo CD's order for those is that
of a Go map, i.e. none).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from generators.base import GenerateContext
from generators.params import Params, sanitize_name
from generators.render import render_string
from generators.selector import matches
from generators.spec import AppTemplate, GeneratorSpec

SECRET_TYPE_LABEL = "argocd.argoproj.io/secret-type"
SECRET_TYPE_CLUSTER = "cluster"
LOCAL_CLUSTER_NAME = "in-cluster"
LOCAL_CLUSTER_SERVER = "https://kubernetes.default.svc"


@dataclass(frozen=True, kw_only=True)
class ClusterInfo:
    """What the clusters generator knows about a cluster: an Argo CD cluster Secret's view."""

    name: str
    server: str
    project: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)

    def secret_labels(self) -> dict[str, str]:
        """The labels as the cluster Secret carries them (with the secret-type label)."""
        return {
            **self.labels,
            SECRET_TYPE_LABEL: self.labels.get(SECRET_TYPE_LABEL, SECRET_TYPE_CLUSTER),
        }


def append_values(
    params: Params, values: Mapping[str, str], ctx: GenerateContext, where: str
) -> None:
    """Argo CD's ``appendTemplatedValues``: render ``values`` against ``params``, then add.

    All values are rendered against the params *before* any is added, so a value can
    never refer to another value (Argo CD's guard against billion-laughs expansion).
    """
    if not values:
        return
    rendered = {
        key: render_string(value, params, ctx.mode, name=f"{where}.values.{key}")
        for key, value in values.items()
    }
    if ctx.mode.go:
        params["values"] = rendered
    else:
        for key, value in rendered.items():
            params[f"values.{key}"] = value


class ClustersGenerator:
    key = "clusters"

    def __init__(self, clusters: Iterable[ClusterInfo], *, include_local: bool = False) -> None:
        by_name: dict[str, ClusterInfo] = {}
        for cluster in clusters:
            by_name[cluster.name] = cluster  # a Secret per name, the last one wins
        self._clusters = tuple(sorted(by_name.values(), key=lambda c: (c.name, c.server)))
        self._include_local = include_local and not any(
            c.server == LOCAL_CLUSTER_SERVER for c in self._clusters
        )

    def template(self, entry: GeneratorSpec) -> AppTemplate:
        assert entry.clusters is not None
        return entry.clusters.template

    def generate(self, entry: GeneratorSpec, ctx: GenerateContext) -> list[Params]:
        spec = entry.clusters
        assert spec is not None
        out: list[Params] = []
        if self._include_local and spec.selector.is_empty:
            # Argo CD's generator adds the local cluster before the Secrets' clusters.
            local: Params = {
                "name": LOCAL_CLUSTER_NAME,
                "nameNormalized": LOCAL_CLUSTER_NAME,
                "server": LOCAL_CLUSTER_SERVER,
                "project": "",
            }
            append_values(local, spec.values, ctx, spec.path)
            out.append(local)
        for cluster in self._clusters:
            labels = cluster.secret_labels()
            if not matches(spec.selector, labels):
                continue
            params = _cluster_params(cluster, labels, ctx)
            append_values(params, spec.values, ctx, spec.path)
            out.append(params)
        if spec.flat_list:
            return [{"clusters": out}]
        return out


def _cluster_params(cluster: ClusterInfo, labels: dict[str, str], ctx: GenerateContext) -> Params:
    params: Params = {
        "name": cluster.name,
        "nameNormalized": sanitize_name(cluster.name),
        "server": cluster.server,
        "project": cluster.project,
    }
    if ctx.mode.go:
        metadata: Params = {}
        if cluster.annotations:
            metadata["annotations"] = dict(cluster.annotations)
        if labels:
            metadata["labels"] = labels
        params["metadata"] = metadata
    else:
        for key, value in cluster.annotations.items():
            params[f"metadata.annotations.{key}"] = value
        for key, value in labels.items():
            params[f"metadata.labels.{key}"] = value
    return params
