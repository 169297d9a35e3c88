"""Regenerate the copies of the alert rules and the Grafana dashboard that packaging needs.

The sources of truth are deploy/prometheus/snapd-rules.yaml and deploy/grafana/snapd.json.
Kustomize and Helm cannot read them where they are (Helm's `.Files` stays inside the chart),
so these copies are generated, and tests fail while one is stale:

- deploy/base/prometheusrule.yaml: its header up to `spec:`, then the rules file indented;
- deploy/helm/snapd/files/snapd-rules.yaml and files/snapd.json: byte-for-byte copies.

    make manifests        # or: python scripts/generate_manifests.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / "snapd-rules.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "snapd.json"
PROMETHEUS_RULE = ROOT / "deploy" / "base" / "prometheusrule.yaml"
CHART_FILES = ROOT / "deploy" / "helm" / "snapd" / "files"


def prometheus_rule(current: str, rules: str) -> str:
    """The PrometheusRule: its own header (through the `spec:` line), then the rules indented."""
    lines = current.splitlines(keepends=True)
    end = next(i for i, line in enumerate(lines) if line.rstrip("\n") == "spec:")
    body = "".join(f"  {line}" if line.strip() else line for line in rules.splitlines(True))
    return "".join(lines[: end + 1]) + body


def wanted() -> dict[Path, str]:
    """Every generated file and the text it must hold."""
    rules = RULES.read_text(encoding="utf-8")
    return {
        PROMETHEUS_RULE: prometheus_rule(PROMETHEUS_RULE.read_text(encoding="utf-8"), rules),
        CHART_FILES / "snapd-rules.yaml": rules,
        CHART_FILES / "snapd.json": DASHBOARD.read_text(encoding="utf-8"),
    }


def main() -> int:
    for path, text in wanted().items():
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
