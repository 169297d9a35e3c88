"""Every Prometheus metric snapd exports, with the names the alert rules use.

One `Metrics` object per process owns its own registry, so tests get a fresh one each and
nothing leaks through prometheus_client's global registry. Labelled series that alerts use
are created at start with zero values, so `rate()` and `absent()` work from the first
scrape. The HTTP endpoints live in `serve_http` (below), on the asyncio loop itself:
`/metrics`, `/healthz` (the loop's heartbeat, `Health`) and `/readyz`. This module only
records and serves; it never calls AWS or Kubernetes, and health never depends on them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.aiohttp import make_aiohttp_handler

from snapd import __version__

COPY_FAILURE_REASONS = ("rejected", "error_state", "timeout")
PRUNE_RESULTS = ("deleted", "failed", "held_back", "locked")
LOCK_RESULTS = ("locked", "extended", "failed")
CYCLE_RESULTS = ("success", "failure")

# The text format would add a `<name>_created` gauge beside every counter and histogram:
# twice the series, and no rule or dashboard reads them. Process-wide, and snapd's only.
disable_created_metrics()  # type: ignore[no-untyped-call]


class Metrics:
    """The contract's metrics (docs/contract.md#metrics), registered on `registry`."""

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
        self.copies_in_flight_limit = Gauge(
            "snapd_copies_in_flight_limit",
            "The copier's current limit on our pending copies: max_in_flight, lowered while "
            "AWS refuses copies with ResourceLimitExceeded.",
            registry=r,
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
        self.copies_overdue = Counter(
            "snapd_copies_overdue",
            "Time-based copies seen pending past their promised completion duration.",
            registry=r,
        )
        self.leader = Gauge(
            "snapd_leader", "1 while this instance does the work, else 0.", registry=r
        )
        self.schedule_last_backup = Gauge(
            "snapd_schedule_last_backup_timestamp_seconds",
            "Start time of the newest Completed or PartiallyFailed backup of a watched "
            "schedule (0: none in the bucket).",
            ["schedule"],
            registry=r,
        )
        self.schedule_backups = Gauge(
            "snapd_schedule_backups",
            "Backups of a watched schedule in the Velero bucket, any phase.",
            ["schedule"],
            registry=r,
        )
        self.build_info = Gauge(
            "snapd_build_info", "Always 1; the running snapd's version.", ["version"], registry=r
        )
        self.build_info.labels(version=__version__).set(1)
        self.replicas_unlocked = Gauge(
            "snapd_replicas_unlocked",
            "Completed replicas that should be locked and are not (0 with locking off).",
            registry=r,
        )
        self.recycle_bin_protected = Gauge(
            "snapd_recycle_bin_protected",
            "1 when a Recycle Bin rule for EBS snapshots covers our replicas, 0 when none "
            "does, -1 when unknown (locking off, or ListRules failed).",
            registry=r,
        )
        self.recycle_bin_protected.set(-1)
        self.locks = Counter("snapd_locks", "LockSnapshot calls by result.", ["result"], registry=r)
        for result in LOCK_RESULTS:
            self.locks.labels(result=result)
        self.dr_backups_published = Gauge(
            "snapd_dr_backups_published",
            "Backups published in the DR location (their velero-backup.json exists).",
            registry=r,
        )
        self.dr_recovery_point = Gauge(
            "snapd_dr_recovery_point_timestamp_seconds",
            "Backup time of the newest backup of a schedule published in the DR location.",
            ["schedule"],
            registry=r,
        )
        self.dr_publish_failures = Counter(
            "snapd_dr_publish_failures",
            "DR location writes (publish or removal of one backup) that failed.",
            registry=r,
        )
        for result in CYCLE_RESULTS:
            self.sync_cycles.labels(result=result)
        for reason in COPY_FAILURE_REASONS:
            self.copies_failed.labels(reason=reason)
        for result in PRUNE_RESULTS:
            self.prunes.labels(result=result)
        self._recovery_labels: set[tuple[str, str]] = set()

    def set_recovery_points(self, points: Mapping[tuple[str, str], float]) -> None:
        """Set `snapd_recovery_point_timestamp_seconds` to exactly `points`.

        Keys are (namespace, pvc), values Unix times. Label sets of PVCs no longer in
        `points` are removed, so the series stay bounded as PVCs come and go, and a PVC
        whose replicas are all pruned stops reporting a stale recovery point.
        """
        wanted = set(points)
        for namespace, pvc in self._recovery_labels - wanted:
            self.recovery_point.remove(namespace, pvc)
        for (namespace, pvc), timestamp in points.items():
            self.recovery_point.labels(namespace=namespace, pvc=pvc).set(timestamp)
        self._recovery_labels = wanted

    def watch_schedules(self, schedules: Iterable[str]) -> None:
        """Create the per-schedule series at 0 before the first discovery (alerts see them)."""
        for name in schedules:
            self.schedule_last_backup.labels(schedule=name)
            self.schedule_backups.labels(schedule=name)

    def set_schedules(self, stats: Mapping[str, tuple[float, int]]) -> None:
        """Per watched schedule: (newest usable backup time or 0, backups in the bucket)."""
        for name, (newest, count) in stats.items():
            self.schedule_last_backup.labels(schedule=name).set(newest)
            self.schedule_backups.labels(schedule=name).set(count)

    def count_aws_error(self, operation: str, code: str) -> None:
        """The `AwsClients` error hook."""
        self.aws_errors.labels(operation=operation, code=code).inc()


#: How often the heartbeat task ticks, and how old its last tick may be for /healthz.
HEARTBEAT_INTERVAL = 1.0
HEARTBEAT_MAX_LAG = 10.0


class Health:
    """What /healthz and /readyz answer.

    Liveness is the event loop's own pulse: a heartbeat task (`beat`) ticks every
    `interval` seconds, and the loop is alive while the last tick is at most `max_lag`
    old. It never looks at AWS, Kubernetes or copy progress — a restart would not fix
    those, and the alerts cover them. Readiness is a latch that start-up sets once it is
    done (`mark_ready`), on the leader and on a standby alike.
    """

    def __init__(
        self,
        *,
        interval: float = HEARTBEAT_INTERVAL,
        max_lag: float = HEARTBEAT_MAX_LAG,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.max_lag = max_lag
        self._clock = clock
        self._last_tick = clock()
        self._ready = False

    def tick(self) -> None:
        """Record that the loop just ran the heartbeat."""
        self._last_tick = self._clock()

    @property
    def lag(self) -> float:
        """Seconds since the last heartbeat tick."""
        return self._clock() - self._last_tick

    @property
    def alive(self) -> bool:
        """True while the heartbeat ticked within `max_lag` seconds."""
        return self.lag <= self.max_lag

    @property
    def ready(self) -> bool:
        """True once start-up called `mark_ready` (and no `mark_not_ready` since)."""
        return self._ready

    def mark_ready(self) -> None:
        """Start-up is done: /readyz answers 200 from now on."""
        self._ready = True

    def mark_not_ready(self) -> None:
        """Shutdown has begun: /readyz answers 503 again."""
        self._ready = False

    async def beat(self) -> None:
        """Tick every `interval` seconds until cancelled (the heartbeat task's body)."""
        while True:
            self.tick()
            await asyncio.sleep(self.interval)


class MetricsServer:
    """The running /metrics, /healthz, /readyz server and its heartbeat task.

    Made by `serve_http`; `stop()` (or leaving `async with`) closes the socket and stops
    the heartbeat. Serving runs on the caller's event loop: no thread of its own.
    """

    def __init__(self, runner: web.AppRunner, heartbeat: asyncio.Task[None]) -> None:
        self._runner = runner
        self._heartbeat = heartbeat
        sockname = runner.addresses[0]
        self.host: str = str(sockname[0])
        self.port: int = int(sockname[1])

    @property
    def url(self) -> str:
        """`http://HOST:PORT` of the server (127.0.0.1 when bound to every interface)."""
        # S104: a comparison with the wildcard address, not a bind to it.
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        """Close the listening socket, finish open requests (≤1 s), stop the heartbeat."""
        self._heartbeat.cancel()
        try:
            await self._runner.cleanup()
        finally:
            try:
                await self._heartbeat
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise

    async def __aenter__(self) -> MetricsServer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def build_app(metrics: Metrics, health: Health) -> web.Application:
    """The aiohttp application with the three endpoints (no socket; tests may use it)."""

    async def healthz(_: web.Request) -> web.Response:
        if health.alive:
            return web.Response(text="ok\n")
        return web.Response(
            status=503, text=f"event loop stalled: last heartbeat {health.lag:.1f}s ago\n"
        )

    async def readyz(_: web.Request) -> web.Response:
        if health.ready:
            return web.Response(text="ready\n")
        return web.Response(status=503, text="starting\n")

    app = web.Application()
    app.router.add_get("/metrics", make_aiohttp_handler(metrics.registry))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def serve_http(
    metrics: Metrics,
    port: int,
    health: Health,
    host: str = "0.0.0.0",  # noqa: S104 - scraped and probed from outside the pod
) -> MetricsServer:
    """Start serving on `host:port` (port 0 picks a free one) and the heartbeat task.

    Use as `async with await serve_http(...) as server:` or call `server.stop()`;
    `server.port` is the bound port.
    """
    runner = web.AppRunner(
        build_app(metrics, health), access_log=None, handle_signals=False, shutdown_timeout=1.0
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    heartbeat = asyncio.create_task(health.beat(), name="snapd.heartbeat")
    return MetricsServer(runner, heartbeat)
