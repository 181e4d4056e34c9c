"""The compiled simulator is used only when it was built from the sources as they are.

Pure checks of ``clusters.sim.compiled`` on a scratch tree (no compiler involved), a check
that this process loaded what the build state says, and a guard that keeps the simulator
compilable in a way mypyc gets right.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path

import pytest

from clusters.sim import compiled

ROOT = Path(__file__).resolve().parents[2]


def _tree(tmp_path: Path) -> Path:
    sim = tmp_path / "clusters" / "sim"
    (sim / "controllers").mkdir(parents=True)
    for name in ("__init__.py", "compiled.py", "readonly.py", "store.py", "ssa.py"):
        (sim / name).write_text(f"# {name}\n")
    for name in ("__init__.py", "pods.py"):
        (sim / "controllers" / name).write_text(f"# {name}\n")
    return tmp_path


def _built(root: Path) -> Path:
    lib = root / "lib"
    lib.mkdir()
    manifest = compiled.manifest_for(compiled.compilable_sources(root), "9.9")
    (lib / compiled.MANIFEST).write_text(json.dumps(manifest))
    return lib


def test_only_the_modules_that_can_be_compiled_are_listed(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    assert sorted(compiled.compilable_sources(root)) == [
        "clusters.sim.controllers.pods",
        "clusters.sim.ssa",
        "clusters.sim.store",
    ]


def test_a_build_of_these_sources_is_used(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    state = compiled.check_build(_built(root), root)
    assert state.compiled, state.reason
    assert "mypyc 9.9 (3 modules)" in state.reason


def _edit(root: Path) -> None:
    (root / "clusters" / "sim" / "controllers" / "pods.py").write_text("# edited\n")


def _add(root: Path) -> None:
    (root / "clusters" / "sim" / "faults.py").write_text("# new\n")


def _remove(root: Path) -> None:
    (root / "clusters" / "sim" / "ssa.py").unlink()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (_edit, "stale: clusters/sim/controllers/pods.py changed since the build"),
        (_add, "stale: clusters.sim.faults not in the build"),
        (_remove, "stale: clusters.sim.ssa is in the build but no longer compiled"),
    ],
)
def test_a_changed_added_or_removed_module_makes_the_build_stale(
    tmp_path: Path, change: Callable[[Path], None], reason: str
) -> None:
    root = _tree(tmp_path)
    lib = _built(root)
    change(root)
    assert compiled.check_build(lib, root) == compiled.BuildState(False, reason)


def test_an_edit_to_an_interpreted_module_does_not(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    lib = _built(root)
    (root / "clusters" / "sim" / "readonly.py").write_text("# edited\n")
    assert compiled.check_build(lib, root).compiled


def test_a_build_for_another_interpreter_is_not_used(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    lib = _built(root)
    manifest = json.loads((lib / compiled.MANIFEST).read_text())
    manifest["interpreter"] = "cpython-312 .cpython-312-x86_64-linux-gnu.so"
    (lib / compiled.MANIFEST).write_text(json.dumps(manifest))
    state = compiled.check_build(lib, root)
    assert not state.compiled
    assert "cpython-312" in state.reason and compiled.interpreter_tag() in state.reason


@pytest.mark.parametrize("text", ["", "{", "[]", '{"modules": 3}'])
def test_a_missing_or_broken_manifest_is_not_used(tmp_path: Path, text: str) -> None:
    root = _tree(tmp_path)
    lib = tmp_path / "lib"
    state = compiled.check_build(lib, root)
    assert not state.compiled and "no compiled build" in state.reason
    lib.mkdir()
    (lib / compiled.MANIFEST).write_text(text)
    state = compiled.check_build(lib, root)
    assert not state.compiled
    assert str(lib / compiled.MANIFEST) in state.reason


def test_the_loaded_modules_are_what_the_build_state_says() -> None:
    """In this process: extension modules exactly when the state says compiled (CI builds
    the simulator first, so there this checks the compiled path)."""
    state = compiled.state()
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    for name in compiled.compilable_sources():
        module = importlib.import_module(name)
        assert str(module.__file__).endswith(suffix) == state.compiled, (name, state)
    for name in ("clusters.sim.readonly", "clusters.sim.objectapi", "clusters.sim.shards"):
        assert str(importlib.import_module(name).__file__).endswith(".py")


def test_a_process_told_not_to_use_the_build_runs_interpreted() -> None:
    code = (
        "import clusters.sim.store as s, clusters.sim.compiled as c;"
        "print(s.__file__.endswith('.py'), c.state().reason)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={"HUB_SIM_COMPILED": "0", "PATH": "/usr/bin:/bin"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == ["True", "HUB_SIM_COMPILED=0"]


@pytest.mark.parametrize(
    ("wanted", "message"),
    [
        ("1", "HUB_SIM_COMPILED=1 but the compiled simulator cannot be used: no compiled build"),
        ("yes", "HUB_SIM_COMPILED='yes': use 1 (require the compiled simulator), 0 (never"),
    ],
)
def test_hub_sim_fails_clearly_when_the_build_it_asks_for_cannot_be_had(
    tmp_path: Path, wanted: str, message: str
) -> None:
    """HUB_SIM_COMPILED=1 against a checkout without a build, or a value it does not know:
    one line and exit 2 from the CLI, no traceback (a copy of the packages, so the real
    build is untouched)."""
    copy = tmp_path / "checkout"
    for package in ("clusters", "hub", "generators"):
        for path in (ROOT / package).rglob("*.py"):
            target = copy / path.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(path.read_text())
    proc = subprocess.run(
        [sys.executable, "-m", "hub", "--home", str(tmp_path / "home"), "sim", "serve"],
        env={"HUB_SIM_COMPILED": wanted, "PATH": "/usr/bin:/bin"},
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"error: {message}"), proc.stderr
    assert "Traceback" not in proc.stderr
    if wanted == "1":
        assert "make sim" in proc.stderr


# Bases a native class may have: builtins, and typing's Protocol (asyncio's is spelled
# asyncio.protocols.Protocol in the sources).
_NATIVE_BASES = {
    "object",
    "Exception",
    "ValueError",
    "KeyError",
    "RuntimeError",
    "Protocol",
    "typing.Protocol",
    "Generic",
    "NamedTuple",
    "TypedDict",
}


def _classes_with_python_bases() -> list[tuple[str, str, list[str], bool]]:
    """(module file, class, its bases, marked non-native) for each class of the compiled
    modules with a base that is neither in ``_NATIVE_BASES`` nor a compiled class."""
    trees = {
        str(p.relative_to(ROOT)): ast.parse(p.read_text())
        for p in compiled.compilable_sources().values()
    }
    classes = [
        (path, node) for path, tree in trees.items() for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
    ]  # fmt: skip
    compiled_classes = {node.name for _, node in classes}
    found = []
    for path, node in classes:
        bases = [ast.unparse(b) for b in node.bases]
        foreign = [
            b
            for b in (base.split("[")[0] for base in bases)
            if b not in _NATIVE_BASES and b.rsplit(".", 1)[-1] not in compiled_classes
        ]
        if foreign:
            marked = any("native_class=False" in ast.unparse(d) for d in node.decorator_list)
            found.append((path, node.name, bases, marked))
    return found


def test_classes_with_a_python_base_are_marked_non_native() -> None:
    """mypyc compiles a class whose base is a Python class (ClusterError, asyncio's
    Protocol) as a native one unless told otherwise, and such a class loses its class
    attributes and crashed the simulator (a segfault on an apply conflict). Each must
    carry ``@mypyc_attr(native_class=False)``."""
    found = _classes_with_python_bases()
    unmarked = [(path, name, bases) for path, name, bases, marked in found if not marked]
    assert unmarked == []
    seen = {name for _, name, _, _ in found}
    assert {"ApplyConflict", "PatchError", "H2ServerConnection"} <= seen


def test_the_build_removes_work_folders_left_an_hour_ago_only(tmp_path: Path) -> None:
    # A failed build keeps its work folder for a look; killed builds leave theirs. The
    # next build removes those, never a young one (another build may be running in it).
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
    try:
        build_sim = importlib.import_module("build_sim")
    finally:
        sys.path.pop(0)
    now = 1_000_000.0
    old, young, other = tmp_path / "build-old", tmp_path / "build-young", tmp_path / "lib"
    for folder, age in ((old, 3601.0), (young, 600.0), (other, 99_999.0)):
        folder.mkdir()
        os.utime(folder, (now - age, now - age))
    (tmp_path / "build-file").write_text("not a folder")
    assert build_sim.stale_work(tmp_path, now) == [old]
    assert build_sim.stale_work(tmp_path / "missing", now) == []
