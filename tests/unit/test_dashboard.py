"""The Grafana dashboard: well-formed for Grafana, and every query reads metrics snapd exports.

Whether each query parses and returns data is proven end to end, against a real Prometheus
scraping a real `snapd run` (tests/integration/test_prometheus_e2e.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from snapd.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "snapd.json"
#: Metrics that dashboard panels show but this build does not export yet, because the
#: features exporting them land separately. Empty once they are all in; a test fails when an
#: entry here is exported after all (so the list only ever shrinks).
PENDING_METRICS: frozenset[str] = frozenset()
_METRIC = re.compile(r"\bsnapd_[a-z_]+\b")


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return dashboard


def panels() -> list[dict[str, Any]]:
    """Every panel with queries (rows excluded)."""
    return [p for p in load_dashboard()["panels"] if p["type"] != "row"]


def queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query on the dashboard."""
    return [(p["title"], t["expr"]) for p in panels() for t in p["targets"]]


def metrics_in(expr: str) -> set[str]:
    return set(_METRIC.findall(expr))


def exported_metrics() -> set[str]:
    """Sample names snapd serves: counters with `_total`, histograms with their series."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    return {
        family.name + suffix
        for family in Metrics().registry.collect()
        for suffix in suffixes.get(family.type, ("",))
    }


def test_every_query_reads_exported_metrics() -> None:
    """A typo or a metric this build lacks would leave a panel empty forever."""
    exported = exported_metrics()
    missing = {
        title: sorted(metrics_in(expr) - exported - PENDING_METRICS) for title, expr in queries()
    }
    missing = {title: names for title, names in missing.items() if names}
    assert missing == {}, f"dashboard panels read metrics snapd does not export: {missing}"


def test_pending_metrics_are_really_pending() -> None:
    """Once a pending metric is exported, its panels are checked like the others."""
    landed = sorted(PENDING_METRICS & exported_metrics())
    assert landed == [], f"remove {landed} from PENDING_METRICS in tests/unit/test_dashboard.py"


def test_dashboard_is_well_formed_for_grafana() -> None:
    """Stable uid, a Prometheus data-source variable used by every query, unique ids and
    refIds, panels inside the 24-column grid, a description on every panel."""
    dashboard = load_dashboard()
    assert dashboard["uid"] == "snapd"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["job"]["allValue"] == ".*snapd.*", "the alert rules' job match"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["description"].strip(), panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs, panel["title"]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert 'job=~"$job"' in target["expr"], f"{panel['title']}: filter by $job"


def test_dashboard_covers_what_an_operator_watches() -> None:
    """Coverage per PVC and schedule, copies vs the limit, backlog, failures, prunes, the DR
    recovery point, lock coverage and AWS errors each have a panel."""
    used = set().union(*(metrics_in(expr) for _, expr in queries()))
    assert used >= {
        "snapd_recovery_point_timestamp_seconds",
        "snapd_schedule_last_backup_timestamp_seconds",
        "snapd_copies_in_flight",
        "snapd_copies_in_flight_limit",
        "snapd_backlog_snapshots",
        "snapd_copies_failed_total",
        "snapd_prunes_total",
        "snapd_dr_recovery_point_timestamp_seconds",
        "snapd_replicas_unlocked",
        "snapd_recycle_bin_protected",
        "snapd_aws_errors_total",
        "snapd_copies_overdue_total",
    }
