"""The alert rules: valid for Prometheus, unit-tested with promtool, tied to the runbook.

promtool and prometheus come from Debian's `prometheus` package (`make tools`). A missing
tool fails these tests rather than skipping them: an unchecked rules file is a silent gap.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from snapd.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "snapd-rules.yaml"
RULES_TEST = ROOT / "deploy" / "prometheus" / "snapd-rules.test.yaml"
PROMETHEUS_RULE = ROOT / "deploy" / "base" / "prometheusrule.yaml"
RUNBOOK = ROOT / "README.md"
#: The runbook base every `runbook_url` starts with (README "Alert runbook" documents it).
RUNBOOK_BASE = "https://github.com/snapd-dr/snapd/blob/main/README.md"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run `make tools` (Debian package `prometheus`)")
    return path


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, cwd=ROOT)


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def alerts() -> list[dict[str, Any]]:
    return [rule for group in load(RULES)["groups"] for rule in group["rules"] if "alert" in rule]


ALERT_NAMES = [rule["alert"] for rule in alerts()]


def test_promtool_accepts_the_rules() -> None:
    """Prometheus would load the rules file."""
    result = run(tool("promtool"), "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    """Each alert fires on its series and stays quiet on healthy ones (standby, fail-over)."""
    result = run(tool("promtool"), "test", "rules", str(RULES_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_prometheus_server_is_installed() -> None:
    """The Prometheus server the end-to-end test runs is on this machine."""
    result = run(tool("prometheus"), "--version")
    assert result.returncode == 0, result.stderr
    assert "prometheus, version" in result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    """No alert goes untested: promtool sees it fire once and stay quiet once."""
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in load(RULES_TEST)["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert sorted(set(ALERT_NAMES) - firing) == [], "alerts never seen firing"
    assert sorted(set(ALERT_NAMES) - quiet) == [], "alerts never seen quiet"


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_alert_says_what_to_do_and_links_its_runbook(name: str) -> None:
    """Every alert has a severity, a summary, a description and its runbook section."""
    rule = next(rule for rule in alerts() if rule["alert"] == name)
    assert rule["labels"]["severity"] in {"warning", "critical"}
    annotations = rule["annotations"]
    assert annotations["summary"].strip()
    assert len(annotations["description"]) > 80
    anchor = name.lower()  # GitHub's anchor of the heading `### SnapdXxx`
    assert annotations["runbook_url"] == f"{RUNBOOK_BASE}#{anchor}"
    assert re.search(rf"^### {name}$", RUNBOOK.read_text(encoding="utf-8"), re.MULTILINE), (
        f"README.md has no `### {name}` runbook section"
    )


def test_rules_only_use_exported_metrics() -> None:
    """A typo in a metric name would make an alert silently never fire."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    exported = {
        family.name + suffix
        for family in Metrics().registry.collect()
        for suffix in suffixes.get(family.type, ("",))
    }
    used = {m for rule in alerts() for m in re.findall(r"\bsnapd_[a-z_]+\b", rule["expr"])}
    assert sorted(used - exported) == []


def test_prometheusrule_carries_the_same_groups() -> None:
    """The operator's PrometheusRule is the plain rules file, unchanged."""
    assert load(PROMETHEUS_RULE)["spec"]["groups"] == load(RULES)["groups"], (
        "deploy/base/prometheusrule.yaml differs from deploy/prometheus/snapd-rules.yaml; "
        "regenerate it with the command in its header"
    )


def test_runbook_base_is_documented() -> None:
    """Alertmanager and Grafana need absolute links: the README names their base and how to
    point it at another copy of the runbook."""
    text = RUNBOOK.read_text(encoding="utf-8")
    section = text[text.index("## Alert runbook") :]
    assert RUNBOOK_BASE in section
    assert "runbook_url" in section
