"""Compile the simulator (``clusters/sim``) with mypyc into build/sim-mypyc/lib.

``make sim`` runs it, and ``make test`` through it. Nothing is done when the build is
current. The sources are copied first and the copy compiled, so the manifest's digests
are those of exactly what was compiled; the new build replaces the old one only once it
is complete. ``clusters/sim/compiled.py`` decides at import time whether it is used.

A failed build keeps its work folder (``build/sim-mypyc/build-*``, about 80 MB) for a
look at mypyc's C; the next run removes work folders left for more than an hour, by
failures or by builds that were killed.

Exit status: 0 when the build is current or was made; 0 with a notice when there is no
C compiler (the simulator then runs interpreted); 1 when mypyc or the compiler fails,
which means a simulator module no longer compiles and must be fixed (or listed in
``compiled.INTERPRETED`` with the reason).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clusters.sim import compiled  # noqa: E402 (the checkout's, not an installed copy)

# Run in a child process with cwd in the copy: setuptools reads the pyproject.toml of
# its working directory, and mypyc writes its C beside it.
_SETUP = """
import sys
from setuptools import setup
from mypyc.build import mypycify

paths = sys.argv[1:]
setup(
    name="hub-sim-compiled",
    ext_modules=mypycify(paths, opt_level="3", separate=True),
    script_args=["build_ext", "--build-lib", "lib", "--build-temp", "tmp", "--parallel", "{jobs}"],
)
"""


def _compiler() -> str | None:
    cc = os.environ.get("CC") or str(sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc)


#: A work folder older than this is no build in progress (one takes one to three minutes).
STALE_WORK_S = 3600.0


def stale_work(build_dir: Path, now: float) -> list[Path]:
    """The work folders of earlier builds that failed or were killed: ``build-*`` folders
    untouched for ``STALE_WORK_S``. A younger one may be another build's, still running."""
    if not build_dir.is_dir():
        return []
    return sorted(
        p
        for p in build_dir.glob("build-*")
        if p.is_dir() and now - p.stat().st_mtime > STALE_WORK_S
    )


def build(build_dir: Path, jobs: int) -> Path:
    """Compile a copy of the sources; returns the new lib folder (with its manifest)."""
    import mypy.version

    work = Path(tempfile.mkdtemp(prefix="build-", dir=build_dir))
    src = work / "src"
    shutil.copytree(
        ROOT / "clusters", src / "clusters", ignore=shutil.ignore_patterns("__pycache__")
    )
    sources = compiled.compilable_sources(src)
    script = work / "setup_sim.py"
    script.write_text(_SETUP.replace("{jobs}", str(jobs)))
    paths = [str(p.relative_to(src)) for p in sources.values()]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(
        [sys.executable, str(script), *paths],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        raise SystemExit(f"build_sim: mypyc failed ({work} kept):\n{tail}")
    lib = src / "lib"
    manifest = compiled.manifest_for(sources, mypy.version.__version__)
    (lib / compiled.MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return lib


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="Rebuild even when current.")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    for old_work in stale_work(compiled.BUILD, time.time()):
        shutil.rmtree(old_work, ignore_errors=True)
        print(f"build_sim: removed {old_work}, left by a failed or killed build")
    state = compiled.check_build()
    if state.compiled and not args.force:
        print(f"build_sim: current ({state.reason})")
        return 0
    if _compiler() is None:
        print("build_sim: no C compiler found; the simulator runs interpreted")
        return 0
    print(f"build_sim: compiling the simulator with mypyc ({state.reason})", flush=True)
    compiled.BUILD.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    lib = build(compiled.BUILD, args.jobs)
    old = compiled.BUILD / "lib.old"
    shutil.rmtree(old, ignore_errors=True)
    if compiled.LIB.exists():
        compiled.LIB.rename(old)
    lib.rename(compiled.LIB)
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(lib.parent.parent, ignore_errors=True)  # the copy and mypyc's C
    after = compiled.check_build()
    print(f"build_sim: {after.reason} in {time.monotonic() - t0:.0f}s")
    return 0 if after.compiled else 1


if __name__ == "__main__":
    sys.exit(main())
