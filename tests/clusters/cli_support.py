"""Running the real ``hub`` CLI in tests (in-process through click, or as a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from hub.cli import main

# Variables that would make a test depend on the machine it runs on.
CLEAN_ENV: dict[str, str | None] = {
    "HUB_HOME": None,
    "HUB_MASTER_KEY": None,
    "HUB_NEW_MASTER_KEY": None,
    "KUBECONFIG": None,
}


@dataclass(frozen=True)
class Run:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class Hub:
    """``hub --home HOME ...`` through click's CliRunner (same process, real CLI code)."""

    def __init__(self, home: Path, env: Mapping[str, str | None] | None = None) -> None:
        self.home = home
        self.env = {**CLEAN_ENV, **(env or {})}

    def __call__(
        self, *args: str, input: str | None = None, env: Mapping[str, str | None] | None = None
    ) -> Run:
        runner = CliRunner()
        result = runner.invoke(
            main,
            ["--home", str(self.home), *args],
            input=input,
            env={**self.env, **(env or {})},
            catch_exceptions=False,
        )
        return Run(result.exit_code, result.stdout, result.stderr)

    def ok(self, *args: str, **kw: Any) -> Run:
        run = self(*args, **kw)
        assert run.exit_code == 0, run.output
        return run

    def names(self) -> list[str]:
        return [c["name"] for c in yaml.safe_load(self.ok("cluster", "list", "-o", "yaml").stdout)]


def hub_subprocess(
    home: Path, *args: str, env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.Popen[str]:
    """Start ``hub --home HOME ARGS`` as its own process (for concurrency tests)."""
    full_env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    full_env.update(env or {})
    return subprocess.Popen(
        [sys.executable, "-m", "hub", "--home", str(home), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
    )


def kubeconfig_with(source: Path, target: Path, context: str, **user: Any) -> Path:
    """Copy ``context`` of ``source`` into a one-context kubeconfig at ``target`` with its
    user entry replaced by ``user`` (e.g. ``token="wrong"``, or ``exec={...}``)."""
    doc = yaml.safe_load(source.read_text())
    ctx = next(c for c in doc["contexts"] if c["name"] == context)
    cluster = next(c for c in doc["clusters"] if c["name"] == ctx["context"]["cluster"])
    original = next(u for u in doc["users"] if u["name"] == ctx["context"]["user"])
    new_user = dict(user) if user else dict(original["user"])
    out = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": context,
        "clusters": [cluster],
        "users": [{"name": "u", "user": new_user}],
        "contexts": [{"name": context, "context": {"cluster": cluster["name"], "user": "u"}}],
    }
    target.write_text(yaml.safe_dump(out))
    return target


def token_of(kubeconfig: Path, context: str) -> str:
    doc = yaml.safe_load(kubeconfig.read_text())
    ctx = next(c for c in doc["contexts"] if c["name"] == context)
    user = next(u for u in doc["users"] if u["name"] == ctx["context"]["user"])
    return str(user["user"]["token"])
