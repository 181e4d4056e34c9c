"""A kubeconfig or cluster-secret file with hostile YAML is a usage error naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from clusters.argo import parse_cluster_secrets
from clusters.errors import ClusterUsageError
from clusters.kubeconfig import read_context

HOSTILE = [
    "name: !!int zz\n",
    "name: !!float clu\n",
    'name: !!timestamp "zz"\n',
    "name: !!float\n",
    "name: !!bool maybe\n",
    "name: " + "[" * 5000,
]
IDS = ["int", "float", "timestamp", "empty-float", "bool", "deep"]


@pytest.mark.parametrize("text", HOSTILE, ids=IDS)
def test_a_hostile_kubeconfig_is_a_usage_error_naming_the_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config"
    path.write_text("apiVersion: v1\nkind: Config\n" + text)
    with pytest.raises(ClusterUsageError, match=f"^kubeconfig {path}: not valid YAML"):
        read_context(path)


@pytest.mark.parametrize("text", HOSTILE, ids=IDS)
def test_hostile_cluster_secrets_are_a_usage_error_naming_the_file(text: str) -> None:
    with pytest.raises(ClusterUsageError, match=r"^clusters\.yaml: not valid YAML"):
        parse_cluster_secrets("apiVersion: v1\nkind: Secret\n" + text, Path("clusters.yaml"))
