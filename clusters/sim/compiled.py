"""The simulator compiled with mypyc, used only when it was built from exactly these sources.

One simulator process plays every API server of a fleet benchmark, and interpreted it
needs more CPU than the hub it serves (docs/benchmarks.md). ``tools/build_sim.py``
(``make sim``; ``make test`` runs it) compiles its modules into ``build/sim-mypyc/lib``
with a manifest of the sources it compiled. On import, ``clusters.sim`` and
``clusters.sim.controllers`` put the compiled folder ahead of their own on their
``__path__`` when the manifest matches this interpreter and every source it lists still
has the same content; otherwise the simulator runs interpreted, as before, and
``state()`` says why. Only the simulator is compiled: the hub always runs as written.

``HUB_SIM_COMPILED``: ``0`` never uses the build, ``1`` requires it (an error that says
why it cannot be used and how to build it), unset uses it when it is current.

This module stays interpreted: it decides what is loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from clusters.errors import ClusterUsageError

ENV = "HUB_SIM_COMPILED"
ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build" / "sim-mypyc"
LIB = BUILD / "lib"
MANIFEST = "manifest.json"

# Modules that stay interpreted beside the compiled ones: ``readonly`` subclasses dict and
# list and ``objectapi`` is an async generator (mypyc compiles neither), ``shards`` is run
# with ``python -m`` (which needs Python code), and this module decides what is loaded.
INTERPRETED = frozenset({"__init__.py", "compiled.py", "readonly.py", "objectapi.py", "shards.py"})


class CompiledSimUnavailable(ClusterUsageError, ImportError):
    """``HUB_SIM_COMPILED`` asks for what cannot be had (the CLI prints it, exit 2)."""


@dataclass(frozen=True, slots=True)
class BuildState:
    """Whether the compiled simulator is in use, and why (or why not)."""

    compiled: bool
    reason: str


def compilable_sources(root: Path = ROOT) -> dict[str, Path]:
    """Module name -> source file of every simulator module that gets compiled."""
    sim = root / "clusters" / "sim"
    found: dict[str, Path] = {}
    for path in sorted(sim.rglob("*.py")):
        if path.name in INTERPRETED:
            continue
        rel = path.relative_to(root).with_suffix("")
        found[".".join(rel.parts)] = path
    return found


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def interpreter_tag() -> str:
    """What a compiled extension must have been built for: this Python's version and ABI."""
    return f"{sys.implementation.cache_tag} {sysconfig.get_config_var('EXT_SUFFIX')}"


def manifest_for(sources: dict[str, Path], mypy_version: str) -> dict[str, object]:
    return {
        "interpreter": interpreter_tag(),
        "mypy": mypy_version,
        "modules": {name: digest(path) for name, path in sources.items()},
    }


def check_build(lib: Path = LIB, root: Path = ROOT) -> BuildState:
    """Whether the build in ``lib`` was made from the sources under ``root`` as they are
    now, for this interpreter (reads files; loads nothing)."""
    try:
        manifest = json.loads((lib / MANIFEST).read_text())
    except FileNotFoundError:
        return BuildState(False, f"no compiled build in {lib} (make sim builds it)")
    except (OSError, ValueError) as exc:
        return BuildState(False, f"unreadable {lib / MANIFEST}: {exc}")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("modules"), dict):
        return BuildState(False, f"{lib / MANIFEST} is not a manifest of this build tool")
    if manifest.get("interpreter") != interpreter_tag():
        return BuildState(
            False,
            f"built for {manifest.get('interpreter')!r}, this is {interpreter_tag()!r}",
        )
    modules: dict[str, object] = manifest["modules"]
    current = compilable_sources(root)
    for name, recorded in sorted(modules.items()):
        path = current.get(name)
        if path is None:
            return BuildState(False, f"stale: {name} is in the build but no longer compiled")
        if digest(path) != recorded:
            return BuildState(False, f"stale: {path.relative_to(root)} changed since the build")
    missing = sorted(set(current) - set(modules))
    if missing:
        return BuildState(False, f"stale: {', '.join(missing)} not in the build")
    return BuildState(True, f"compiled with mypyc {manifest.get('mypy')} ({len(modules)} modules)")


def _decide() -> BuildState:
    wanted = os.environ.get(ENV, "").strip()
    if wanted not in ("", "0", "1"):
        raise CompiledSimUnavailable(
            f"{ENV}={wanted!r}: use 1 (require the compiled simulator), 0 (never use it) "
            "or leave it unset (use it when it is current)"
        )
    if wanted == "0":
        return BuildState(False, f"{ENV}=0")
    state = check_build()
    if wanted == "1" and not state.compiled:
        raise CompiledSimUnavailable(
            f"{ENV}=1 but the compiled simulator cannot be used: {state.reason}; "
            "run `make sim` (or unset it)"
        )
    return state


_STATE = _decide()


def state() -> BuildState:
    """What this process loaded (decided once, at the first import of ``clusters.sim``)."""
    return _STATE


def package_path(package: str, path: list[str]) -> list[str]:
    """The ``__path__`` a simulator package should have: the compiled folder first when
    the build is in use (it holds extension modules only, so what was not compiled is
    still found in the sources)."""
    if not _STATE.compiled:
        return path
    return [str(LIB.joinpath(*package.split("."))), *path]
