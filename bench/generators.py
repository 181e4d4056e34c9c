"""Benchmark: a matrix of 1,000 clusters x 10 git directories (10,000 Applications).

Expands and renders the set in fasttemplate and goTemplate mode and prints the median
of several runs for each. The repository is an in-memory ``RepoReader`` so the figure
is the generators' own cost (reading a real tree is a one-off, cached per revision).

    python bench/generators.py [--clusters 1000] [--dirs 10] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

# Run as a script, this file's directory comes first on sys.path and its name would
# shadow the ``generators`` package it measures.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

from generators.clusters import ClusterInfo
from generators.expand import Context, generate
from generators.git import RepoTree
from generators.spec import ApplicationSet, parse_appset

REPO = "https://git.example.com/platform/apps.git"


class MemoryRepo:
    """A ``RepoReader`` over a fixed tree: ``apps/app-N`` directories."""

    def __init__(self, dirs: int) -> None:
        names = [f"apps/app-{i:02d}" for i in range(dirs)]
        self._tree = RepoTree(
            files=tuple(f"{n}/kustomization.yaml" for n in names), directories=("apps", *names)
        )

    def list_tree(self, repo_url: str, revision: str) -> RepoTree:
        return self._tree

    def read_file(self, repo_url: str, revision: str, path: str) -> bytes:
        return b"resources: []\n"


def appset(go: bool) -> ApplicationSet:
    if go:
        name, path, server = (
            "{{ .path.basename }}-{{ .nameNormalized }}",
            "{{ .path.path }}",
            "{{ .server }}",
        )
        env, region, ns = (
            "{{ .metadata.labels.env }}",
            '{{ index .metadata.labels "region" }}',
            "{{ .path.basename }}",
        )
    else:
        name, path, server = "{{path.basename}}-{{nameNormalized}}", "{{path}}", "{{server}}"
        env, region, ns = (
            "{{metadata.labels.env}}",
            "{{metadata.labels.region}}",
            "{{path.basename}}",
        )
    doc: dict[str, Any] = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "ApplicationSet",
        "metadata": {"name": "fleet", "namespace": "argocd"},
        "spec": {
            "goTemplate": go,
            "generators": [
                {
                    "matrix": {
                        "generators": [
                            {
                                "clusters": {
                                    "selector": {
                                        "matchExpressions": [{"key": "env", "operator": "Exists"}]
                                    }
                                }
                            },
                            {
                                "git": {
                                    "repoURL": REPO,
                                    "revision": "HEAD",
                                    "directories": [{"path": "apps/*"}],
                                }
                            },
                        ]
                    }
                }
            ],
            "template": {
                "metadata": {"name": name, "labels": {"env": env, "region": region}},
                "spec": {
                    "project": "default",
                    "source": {"repoURL": REPO, "targetRevision": "HEAD", "path": path},
                    "destination": {"server": server, "namespace": ns},
                    "syncPolicy": {
                        "automated": {"prune": True, "selfHeal": True},
                        "syncOptions": ["CreateNamespace=true"],
                    },
                },
            },
        },
    }
    return parse_appset(doc, source="bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--dirs", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    fleet = tuple(
        ClusterInfo(
            name=f"cluster-{i:04d}",
            server=f"https://10.0.{i // 250}.{i % 250}:6443",
            labels={"env": ("prod", "staging", "dev")[i % 3], "region": ("eu", "us")[i % 2]},
        )
        for i in range(args.clusters)
    )
    context = Context(clusters=fleet, repo_reader=MemoryRepo(args.dirs))
    expected = args.clusters * args.dirs
    print(f"matrix {args.clusters} clusters x {args.dirs} directories = {expected} Applications")
    for label, go in (("fasttemplate", False), ("goTemplate", True)):
        aset = appset(go)
        times, cpu = [], []
        for _ in range(args.runs):
            start, start_cpu = time.perf_counter(), time.process_time()
            result = generate(aset, context)
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
            if result.conditions or len(result.applications) != expected:
                raise SystemExit(f"{label}: unexpected result: {result.conditions[:3]}")
        print(
            f"{label:>12}: median {statistics.median(times):.3f} s "
            f"(min {min(times):.3f}, max {max(times):.3f}; CPU median "
            f"{statistics.median(cpu):.3f} s; {args.runs} runs)"
        )


if __name__ == "__main__":
    main()
