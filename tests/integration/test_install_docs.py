"""The README's install section works from a clean checkout, both paths, as far as a machine
without a cluster allows: Helm's install runs as `--dry-run=client` with the README's own
values, and the kustomize overlay made as the README says renders with `kubectl kustomize`.

A clean checkout is the repository's tracked files alone (no .venv, nothing generated on
this machine), so a file the install needs but git does not hold fails here.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.integration.test_deploy import CUSTOM_GROUPS, K8S_VERSION
from tests.integration.test_helm import helm_binary

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
_FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>\w*)\n(?P<body>.*?)^(?P=indent)```", re.S | re.M)


def install_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Install on EKS")
    return text[start : text.index("\n## ", start + 1)]


def blocks(lang: str) -> list[str]:
    """The section's fenced blocks of one language, dedented."""
    return [
        textwrap.dedent(m["body"]) for m in _FENCE.finditer(install_section()) if m["lang"] == lang
    ]


def command(prefix: str) -> list[str]:
    """The one README command line that starts with `prefix`, split like a shell would."""
    lines = [
        line.split("#")[0].strip()
        for block in blocks("sh")
        for line in block.splitlines()
        if line.strip().startswith(prefix)
    ]
    assert len(lines) == 1, f"README install section: expected one `{prefix}` line, got {lines}"
    return shlex.split(lines[0])


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The tracked files of the repository, copied as a fresh clone would have them."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
    ).stdout.decode()
    target = tmp_path / "snapd"
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def invalid_objects(objects: list[dict[str, Any]]) -> list[str]:
    errors = []
    for obj in objects:
        if obj["apiVersion"].startswith(CUSTOM_GROUPS):
            continue
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as e:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {getattr(e, 'message', e)}")
    return errors


def test_readme_offers_helm_first_then_kustomize() -> None:
    """Both install paths are in the README, Helm first."""
    section = install_section()
    assert section.index("**With Helm**") < section.index("**With kustomize.**")


def test_helm_install_from_the_readme_works_in_a_clean_checkout(checkout: Path) -> None:
    """`helm install …` exactly as the README writes it, with its values file, dry-run."""
    [values] = [b for b in blocks("yaml") if b.startswith("# snapd-values.yaml")]
    (checkout / "snapd-values.yaml").write_text(values, encoding="utf-8")
    argv = command("helm install")
    result = run([helm_binary(), *argv[1:], "--dry-run=client"], checkout)
    assert result.returncode == 0, result.stderr
    manifest = result.stdout[result.stdout.index("MANIFEST:") + 9 : result.stdout.index("NOTES:")]
    objects = [doc for doc in yaml.safe_load_all(manifest) if doc]
    assert invalid_objects(objects) == []
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    given = yaml.safe_load(values)
    assert container["image"] == f"{given['image']['repository']}:{given['image']['tag']}"
    assert deployment["metadata"]["namespace"] == "snapd"
    assert "snapd status" in result.stdout[result.stdout.index("NOTES:") :]


def test_kustomize_overlay_from_the_readme_renders_in_a_clean_checkout(checkout: Path) -> None:
    """The README's `cp -r` of the example overlay, then what `kubectl apply -k` would send."""
    copy = [part.replace("CLUSTER", "eks-prod-eu") for part in command("cp -r")]
    assert run(copy, checkout).returncode == 0
    apply = command("kubectl apply -k")
    overlay = apply[-1].replace("CLUSTER", "eks-prod-eu")
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not installed: these tests need `kubectl kustomize` (v5)")
    result = run([kubectl, "kustomize", overlay], checkout)
    assert result.returncode == 0, result.stderr
    objects = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert invalid_objects(objects) == []
    assert {o["kind"] for o in objects} >= {"Deployment", "PrometheusRule", "ServiceMonitor"}
    dashboards = [o for o in objects if "grafana_dashboard" in o["metadata"].get("labels", {})]
    assert len(dashboards) == 1
