"""The contract's metrics: names, types, zero-valued label sets, bounded recovery points."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from simworld.ec2sim import ManualClock
from snapd import __version__
from snapd.metrics import Health, Metrics

#: docs/contract.md#metrics: family name as exposed (counters without `_total`) → type.
CONTRACT = {
    "snapd_sync_cycles": "counter",
    "snapd_last_successful_sync_timestamp_seconds": "gauge",
    "snapd_copies_started": "counter",
    "snapd_copies_completed": "counter",
    "snapd_copies_failed": "counter",
    "snapd_copies_in_flight": "gauge",
    "snapd_copy_duration_seconds": "histogram",
    "snapd_backlog_snapshots": "gauge",
    "snapd_prunes": "counter",
    "snapd_velero_backups_unreadable": "gauge",
    "snapd_recovery_point_timestamp_seconds": "gauge",
    "snapd_aws_errors": "counter",
    "snapd_leader": "gauge",
    "snapd_schedule_last_backup_timestamp_seconds": "gauge",
    "snapd_schedule_backups": "gauge",
    "snapd_build_info": "gauge",
    "snapd_replicas_unlocked": "gauge",
    "snapd_recycle_bin_protected": "gauge",
    "snapd_locks": "counter",
    "snapd_copies_overdue": "counter",
    # Beyond the contract: the copier's current limit, for "in flight vs the limit".
    "snapd_copies_in_flight_limit": "gauge",
    "snapd_dr_backups_published": "gauge",
    "snapd_dr_recovery_point_timestamp_seconds": "gauge",
    "snapd_dr_publish_failures": "counter",
}

#: Series that alerts use, present with value 0 from the first scrape.
ZERO_SERIES = [
    ("snapd_sync_cycles_total", {"result": "success"}),
    ("snapd_sync_cycles_total", {"result": "failure"}),
    ("snapd_copies_failed_total", {"reason": "rejected"}),
    ("snapd_copies_failed_total", {"reason": "error_state"}),
    ("snapd_copies_failed_total", {"reason": "timeout"}),
    ("snapd_prunes_total", {"result": "deleted"}),
    ("snapd_prunes_total", {"result": "failed"}),
    ("snapd_prunes_total", {"result": "held_back"}),
    ("snapd_prunes_total", {"result": "locked"}),
    ("snapd_locks_total", {"result": "failed"}),
    ("snapd_replicas_unlocked", {}),
    ("snapd_copies_started_total", {}),
    ("snapd_copies_completed_total", {}),
    ("snapd_copies_in_flight", {}),
    ("snapd_copies_overdue_total", {}),
    ("snapd_backlog_snapshots", {}),
    ("snapd_leader", {}),
    ("snapd_last_successful_sync_timestamp_seconds", {}),
]


def scrape(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the text exposition, keyed by name and sorted labels."""
    text = generate_latest(metrics.registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def families(metrics: Metrics) -> dict[str, str]:
    text = generate_latest(metrics.registry).decode()
    return {family.name: family.type for family in text_string_to_metric_families(text)}


def test_every_contract_metric_is_exported_with_its_type() -> None:
    """A fresh process exports every metric of the contract, each with the contract's type."""
    assert families(Metrics()) == CONTRACT


@pytest.mark.parametrize(
    ("name", "labels"), ZERO_SERIES, ids=[f"{n}{sorted(ls.values())}" for n, ls in ZERO_SERIES]
)
def test_alerted_series_exist_at_zero_from_the_start(name: str, labels: dict[str, str]) -> None:
    """Alert expressions see every labelled series at 0 before anything happened."""
    assert scrape(Metrics())[(name, tuple(sorted(labels.items())))] == 0


def test_each_metrics_object_has_its_own_registry() -> None:
    """Two Metrics objects (two tests) never share a counter."""
    first, second = Metrics(), Metrics()
    first.copies_started.inc()
    assert scrape(first)[("snapd_copies_started_total", ())] == 1
    assert scrape(second)[("snapd_copies_started_total", ())] == 0


def test_aws_errors_are_counted_by_operation_and_code() -> None:
    """The AwsClients error hook counts each error under botocore's operation name."""
    metrics = Metrics()
    metrics.count_aws_error("CopySnapshot", "ResourceLimitExceeded")
    metrics.count_aws_error("CopySnapshot", "ResourceLimitExceeded")
    key = (
        "snapd_aws_errors_total",
        (("code", "ResourceLimitExceeded"), ("operation", "CopySnapshot")),
    )
    assert scrape(metrics)[key] == 2


def recovery_points(metrics: Metrics) -> dict[tuple[str, str], float]:
    return {
        (dict(labels)["namespace"], dict(labels)["pvc"]): value
        for (name, labels), value in scrape(metrics).items()
        if name == "snapd_recovery_point_timestamp_seconds"
    }


def test_recovery_points_are_set_and_dropped_with_their_pvcs() -> None:
    """A PVC that disappears from the inventory stops exporting a recovery point."""
    metrics = Metrics()
    metrics.set_recovery_points({("shop", "data-db-0"): 100.0, ("shop", "data-db-1"): 200.0})
    assert recovery_points(metrics) == {("shop", "data-db-0"): 100.0, ("shop", "data-db-1"): 200.0}

    metrics.set_recovery_points({("shop", "data-db-1"): 300.0, ("crm", "pg"): 50.0})
    assert recovery_points(metrics) == {("shop", "data-db-1"): 300.0, ("crm", "pg"): 50.0}

    metrics.set_recovery_points({})
    assert recovery_points(metrics) == {}


def test_health_is_alive_while_the_heartbeat_is_recent() -> None:
    """Liveness fails only when the heartbeat is older than max_lag, and recovers on a tick."""
    clock = ManualClock()
    health = Health(max_lag=10, clock=clock)
    assert health.alive
    clock.now += 10
    assert health.alive
    clock.now += 0.5
    assert not health.alive
    health.tick()
    assert health.alive


def test_readiness_is_a_latch_set_by_start_up() -> None:
    """Not ready until start-up marks it; shutdown may take it back."""
    health = Health()
    assert not health.ready
    health.mark_ready()
    assert health.ready
    health.mark_not_ready()
    assert not health.ready


def test_watched_schedules_exist_at_zero_and_follow_discovery() -> None:
    """Each watched schedule has its two series at 0 from the start; discovery sets them."""
    metrics = Metrics()
    metrics.watch_schedules(["daily", "nightly"])
    samples = scrape(metrics)
    for name in ("daily", "nightly"):
        assert samples[("snapd_schedule_last_backup_timestamp_seconds", (("schedule", name),))] == 0
        assert samples[("snapd_schedule_backups", (("schedule", name),))] == 0
    metrics.set_schedules({"daily": (1_700_000_000.0, 7), "nightly": (0.0, 0)})
    samples = scrape(metrics)
    assert samples[("snapd_schedule_last_backup_timestamp_seconds", (("schedule", "daily"),))] == (
        1_700_000_000.0
    )
    assert samples[("snapd_schedule_backups", (("schedule", "daily"),))] == 7


def test_build_info_names_the_version() -> None:
    """`snapd_build_info{version}` is 1 with the running version, for dashboards and upgrades."""
    assert scrape(Metrics())[("snapd_build_info", (("version", __version__),))] == 1


def test_recycle_bin_gauge_starts_unknown() -> None:
    """Nobody looked yet (locking off, or before the first ListRules): -1, never a false 0."""
    assert scrape(Metrics())[("snapd_recycle_bin_protected", ())] == -1
