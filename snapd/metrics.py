"""Every Prometheus metric snapd exports, with the names the alert rules use.

One `Metrics` object per process owns its own registry, so tests get a fresh one each and
nothing leaks through prometheus_client's global registry. Labelled series that alerts use
are created at start with zero values, so `rate()` and `absent()` work from the first
scrape. The HTTP endpoints live in `serve_http` (below), on the asyncio loop itself.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

COPY_FAILURE_REASONS = ("rejected", "error_state", "timeout")
PRUNE_RESULTS = ("deleted", "failed", "held_back")
CYCLE_RESULTS = ("success", "failure")


class Metrics:
    """The contract's metrics (DESIGN "Metrics"), registered on `registry`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.sync_cycles = Counter(
            "snapd_sync_cycles", "Reconcile cycles by result.", ["result"], registry=r
        )
        self.last_successful_sync = Gauge(
            "snapd_last_successful_sync_timestamp_seconds",
            "Unix time at the end of the last successful cycle.",
            registry=r,
        )
        self.copies_started = Counter(
            "snapd_copies_started", "CopySnapshot calls accepted by AWS.", registry=r
        )
        self.copies_completed = Counter(
            "snapd_copies_completed", "Copies that reached state completed.", registry=r
        )
        self.copies_failed = Counter(
            "snapd_copies_failed", "Copies that failed, by reason.", ["reason"], registry=r
        )
        self.copies_in_flight = Gauge(
            "snapd_copies_in_flight", "Our pending copies in the destination region.", registry=r
        )
        self.copy_duration = Histogram(
            "snapd_copy_duration_seconds",
            "Time from CopySnapshot to completed.",
            buckets=(30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800, 86400),
            registry=r,
        )
        self.backlog = Gauge(
            "snapd_backlog_snapshots",
            "Source snapshots planned for copy and not yet completed.",
            registry=r,
        )
        self.prunes = Counter(
            "snapd_prunes", "Replica deletions by result.", ["result"], registry=r
        )
        self.velero_backups_unreadable = Gauge(
            "snapd_velero_backups_unreadable",
            "Backups the last discovery could not read.",
            registry=r,
        )
        self.recovery_point = Gauge(
            "snapd_recovery_point_timestamp_seconds",
            "Backup time of the newest completed replica of a PVC.",
            ["namespace", "pvc"],
            registry=r,
        )
        self.aws_errors = Counter(
            "snapd_aws_errors",
            "AWS errors left after retries, by botocore operation and error code.",
            ["operation", "code"],
            registry=r,
        )
        self.leader = Gauge(
            "snapd_leader", "1 while this instance does the work, else 0.", registry=r
        )
        for result in CYCLE_RESULTS:
            self.sync_cycles.labels(result=result)
        for reason in COPY_FAILURE_REASONS:
            self.copies_failed.labels(reason=reason)
        for result in PRUNE_RESULTS:
            self.prunes.labels(result=result)

    def count_aws_error(self, operation: str, code: str) -> None:
        """The `AwsClients` error hook."""
        self.aws_errors.labels(operation=operation, code=code).inc()
