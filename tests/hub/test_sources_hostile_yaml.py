"""One hostile file in a source is an error of that file: the load reports it, nothing raises.

``hub serve`` reloads sources in a loop; an exception escaping ``load_source`` took the
whole process (and so the fleet) down on every reload.
"""

from __future__ import annotations

import pytest

from hub.sources import Source, load_source
from tests.hub.test_sources import MemoryGit

HOSTILE = [
    b"apiVersion: argoproj.io/v1alpha1\nkind: ApplicationSet\nmetadata:\n  name: !!int zz\n",
    b"kind: ApplicationSet\nmetadata:\n  name: !!float clu\n",
    b'kind: Application\nmetadata:\n  created: !!timestamp "zz"\n',
    b"kind: AppProject\nspec:\n  ratio: !!float\n",
    b"kind: ApplicationSet\nspec: " + b"[" * 5000 + b"\n",
    b"".join(b" " * i + b"a:\n" for i in range(5000)),
    b"a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
    + b"".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n".encode() for i in range(1, 10)),
]
IDS = ["int", "float", "timestamp", "empty-float", "deep-flow", "deep-block", "laughs"]


@pytest.mark.parametrize("content", HOSTILE, ids=IDS)
def test_a_hostile_file_is_an_error_of_that_file(content: bytes) -> None:
    files = {"apps/bad.yaml": content}
    result = load_source(Source(name="s", repo="mem", path="apps"), MemoryGit(files))
    assert not result.ok
    assert len(result.errors) == 1 and result.errors[0].startswith("apps/bad.yaml@")
    assert "not valid YAML: line " in result.errors[0]
