"""Where the end-to-end tests' clusters are, and the real kubectl against them: plain
helpers with no pytest and no side effect on import, so the benchmarks under bench/ use
them (through tests/sync/e2e_helpers.py and tests/e2e/serve_support.py) without loading
``tests/conftest.py``. The fixtures that build them are in conftest."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clusters.sim import SimServer


@dataclass(frozen=True, slots=True, kw_only=True)
class KubeEnv:
    """Where the end-to-end tests' clusters are."""

    kubeconfig: Path
    contexts: list[str]
    sim: SimServer | None

    @property
    def context(self) -> str:
        """The first context: the one shared tests use."""
        return self.contexts[0]

    def api_client(self, context: str | None = None) -> Any:
        """An official ``kubernetes`` ApiClient for a context (the first by default)."""
        from kubernetes import config

        return config.new_client_from_config(
            config_file=str(self.kubeconfig), context=context or self.context
        )


def run_kubectl(
    kubeconfig: Path,
    *args: str,
    context: str | None = None,
    input: str | None = None,
    timeout: float = 60,
    cache_dir: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    cmd = ["kubectl", "--kubeconfig", str(kubeconfig)]
    if context:
        cmd += ["--context", context]
    if cache_dir is not None:
        cmd += ["--cache-dir", str(cache_dir)]
    return subprocess.run(
        [*cmd, *args], input=input, capture_output=True, text=True, timeout=timeout, check=False
    )
