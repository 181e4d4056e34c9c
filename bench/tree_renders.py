"""Renders of one path for a fleet of Applications (issue 12, ``hub.sync.render.TreeRenders``).

A clusters generator gives every cluster an Application on the same path of the same
commit. This renders that path for APPS Applications through ``resolve_sources`` and
``render_app`` (a real Git repository, exported by ``RepoCache``), once as the hub does
(the render of a commit's path is worked out once) and once with that memory emptied
before every render (as each Application rendered on its own), for a kustomization and
for a plain directory, and prints wall time and CPU, kustomize's processes included.

    python bench/tree_renders.py --apps 100
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hub.repos import RepoCache  # noqa: E402
from hub.sync import render, sources  # noqa: E402
from tests.sync.test_repo_cache import git  # noqa: E402
from tests.sync.test_tree_renders import app_at  # noqa: E402

FILES = 5


def make_repo(origin: Path) -> None:
    for path in ("kust", "plain"):
        (origin / path).mkdir(parents=True)
        for i in range(FILES):
            (origin / path / f"cm{i}.yaml").write_text(
                f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i}}}\ndata: {{k: v}}\n"
            )
    names = ", ".join(f"cm{i}.yaml" for i in range(FILES))
    (origin / "kust" / "kustomization.yaml").write_text(f"resources: [{names}]\n")
    git(origin, "init", "-q", "-b", "main")
    git(origin, "add", "-A")
    git(origin, "commit", "-q", "-m", "one")


def cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=100)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hub-tree-renders-"))
    origin = tmp / "origin"
    make_repo(origin)
    with RepoCache(tmp / "home") as cache:
        for path in ("kust", "plain"):
            first = app_at(origin, path, "warm")
            # resolved once, as the hub resolves a revision once per Git cycle
            resolved = sources.resolve_sources(first, git=cache, charts=None)
            tool = sources.render_app(first, resolved).tool
            for mode in ("each Application alone", "once per commit (the hub)"):
                started, cpu = time.perf_counter(), cpu_s()
                for i in range(args.apps):
                    if mode.startswith("each"):
                        render.TREE_RENDERS.clear()
                    got = sources.render_app(app_at(origin, path, f"app-{i}"), resolved)
                    assert len(got.manifests) == FILES
                print(
                    f"{args.apps} Applications on one {tool} path, {mode}: "
                    f"{time.perf_counter() - started:.2f} s, CPU {cpu_s() - cpu:.2f} s"
                )


if __name__ == "__main__":
    main()
