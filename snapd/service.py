"""The engine behind `sync`, `status` and the `run` daemon: cycles, loops, shutdown.

A cycle is discover → source details → inventory → plan → adopt pending copies → enqueue
copies; it never waits for copies (the copier's starter and poller run between cycles).
Pruning is a separate pass with its own fresh plan, on its own interval in the daemon and
after the copies settle in `snapd sync`. Nothing is pruned when the bucket listing or the
inventory failed: those raise before a plan exists.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from snapd import __version__, dr, inventory, locking, locks, planner, velero
from snapd.aws import AwsClients
from snapd.config import Settings
from snapd.copier import Copier, CopyEvents, Unfinished
from snapd.errors import (
    AwsError,
    ConfigError,
    KubeError,
    SnapdError,
    WorkFailedError,
    first_error,
)
from snapd.logs import settings_field
from snapd.metrics import Health, Metrics, MetricsServer, serve_http
from snapd.models import GOOD_PHASES, Discovery, Plan, Policy, Replica
from snapd.pruner import PruneReport, prune

if TYPE_CHECKING:
    from snapd import kube, leader

log = structlog.get_logger("snapd.service")


def policy_from(settings: Settings) -> Policy:
    """The planner's slice of the settings."""
    return Policy(
        max_age=settings.retention_max_age,
        keep_last=settings.retention_keep_last,
        prune_max_fraction=settings.prune_max_fraction,
    )


@dataclass(frozen=True)
class SettingsWarning:
    """A setting that looks wrong given what the bucket and EC2 show (`settings_warnings`)."""

    setting: str
    warning: str
    schedule: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"setting": self.setting, "schedule": self.schedule, "warning": self.warning}


def lock_policy_from(settings: Settings) -> locking.LockPolicy:
    """The lock decisions' slice of the settings."""
    cool_off = settings.lock_cool_off
    return locking.LockPolicy(
        mode=settings.lock_mode,
        margin=settings.lock_margin,
        cool_off_hours=int(cool_off.total_seconds() // 3600) if cool_off else None,
    )


@dataclass
class CycleResult:
    """A plan and the inventory it was made from (status and sync read both)."""

    plan: Plan
    discovery: Discovery
    replicas: list[Replica]
    warnings: tuple[SettingsWarning, ...] = ()
    #: Whether `replicas` carry their locks (locking on and DescribeLockedSnapshots answered).
    locks_known: bool = False


def schedule_warnings(
    discovery: Discovery, schedules: Sequence[str], location: str
) -> list[SettingsWarning]:
    """A watched schedule with no backup in the bucket: a typo, or a schedule not yet run.

    Either way nothing of it is copied and no per-PVC alert can fire, so it is said out loud
    with the schedules that do have backups.
    """
    found = sorted({b.schedule for b in discovery.backups if b.schedule})
    return [
        SettingsWarning(
            "schedules",
            f"schedule {name} has no backups in {location}; schedules found: "
            f"{', '.join(found) if found else 'none'}",
            schedule=name,
        )
        for name in schedules
        if name not in found
    ]


def schedule_stats(discovery: Discovery, schedules: Sequence[str]) -> dict[str, tuple[float, int]]:
    """Per watched schedule: newest Completed/PartiallyFailed backup time (0: none), backups."""
    stats: dict[str, tuple[float, int]] = {name: (0.0, 0) for name in schedules}
    for backup in discovery.backups:
        if backup.schedule not in stats:
            continue
        newest, count = stats[backup.schedule]
        if backup.phase in GOOD_PHASES and backup.start_time:
            newest = max(newest, backup.start_time.timestamp())
        stats[backup.schedule] = (newest, count + 1)
    return stats


class Engine:
    """One scope's reconcile machinery: the Velero reader (with its cache) and the copier."""

    def __init__(
        self,
        settings: Settings,
        aws: AwsClients,
        metrics: Metrics | None = None,
        *,
        events: CopyEvents | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.aws = aws
        self.metrics = metrics or Metrics()
        self.now = now
        self.scope = settings.scope or ""
        self.source_region = settings.source_region or ""
        self.region = settings.destination_region or ""
        self.reader = velero.VeleroReader(verify_every=settings.prune_interval)
        #: The replicas last paired with their locks (unchanged pages give the same ones).
        self.lock_memo = locks.LockMemo()
        self.copier = Copier(
            aws,
            scope=self.scope,
            source_region=self.source_region,
            destination_region=self.region,
            max_in_flight=settings.max_in_flight,
            poll_interval=settings.poll_interval.total_seconds(),
            copy_retries=settings.copy_retries,
            kms_key_id=settings.destination_kms_key_id,
            completion_minutes=settings.completion_minutes,
            metrics=self.metrics,
            events=events,
        )
        self._plan_lock = asyncio.Lock()
        #: (kind, backup, reason, snapshot) of every problem already logged.
        self._reported: set[tuple[str, str, str, str | None]] = set()
        self._warned: set[str] = set()
        self.metrics.watch_schedules(settings.schedules)
        self.locks = lock_policy_from(settings)
        self.recycle_bin = locks.RecycleBinWatch(aws, self.region, self.scope, self.metrics)

        self.dr = _dr_publisher(settings, aws, self.metrics)
        self._dr_lock = asyncio.Lock()

    async def check_dr(self) -> None:
        """At start: the destination region's zones against SNAPD_DR_ZONES (ConfigError)."""
        if self.dr is not None:
            await self.dr.check_zones()

    async def publish_dr(self, result: CycleResult) -> dr.DrReport | None:
        """The DR location follows the cycle's plan; a failure is logged, never raised, so it
        never stops copies or pruning (each failed write is retried next cycle)."""
        if self.dr is None:
            return None
        try:
            async with self._dr_lock:
                report = await self.dr.reconcile(result.discovery, result.replicas, result.plan)
        except SnapdError as error:
            self.metrics.dr_publish_failures.inc()
            log.error("dr.pass_failed", error=str(error))
            return dr.DrReport(failed={self.dr.location: str(error)})
        if report.published or report.unpublished or report.failed:
            log.info(
                "dr.pass_completed",
                published=len(report.published),
                unpublished=len(report.unpublished),
                failed=len(report.failed),
                total=len(self.dr.published),
            )
        return report

    async def publish_pass(self, result: CycleResult | None = None) -> dr.DrReport | None:
        """The DR location follows `result` (else a fresh plan): `snapd sync` before it exits."""
        if self.dr is None:
            return None
        return await self.publish_dr(result or await self.plan_cycle())

    async def _hold_for_dr(self, plan: Plan) -> Plan:
        """Remove published backups naming replicas this pass deletes, first; prunes whose
        backup could not be removed wait for the next pass."""
        if self.dr is None or not plan.prunes:
            return plan
        try:
            async with self._dr_lock:
                held = await self.dr.before_prune(plan)
        except SnapdError as error:
            log.error("dr.prune_hold", error=str(error), reason="DR location not readable")
            held = {p.replica.snapshot_id for p in plan.prunes}
        if not held:
            return plan
        log.warning("prune.held_for_dr", replicas=sorted(held))
        kept = tuple(p for p in plan.prunes if p.replica.snapshot_id not in held)
        return dataclasses.replace(plan, prunes=kept)

    @property
    def bucket_location(self) -> str:
        """`s3://bucket/prefix/backups/`: where discovery looks."""
        return f"s3://{self.settings.velero_bucket}/{self.settings.backups_prefix}"

    async def discover(self) -> Discovery:
        """Velero's snapshots of the watched schedules, as the bucket describes them."""
        s = self.settings
        try:
            found = await self.reader.discover(
                self.aws,
                bucket=s.velero_bucket or "",
                prefix=s.velero_prefix,
                region=self.source_region,
                schedules=s.schedules,
                copy_failed_backups=s.copy_failed_backups,
                now=self.now(),
                upload_grace=s.upload_grace,
            )
        except AwsError as error:
            raise _bucket_error(error, s.velero_bucket or "", self.source_region) from error
        self.metrics.velero_backups_unreadable.set(found.unreadable_backups)
        self.metrics.set_schedules(schedule_stats(found, s.schedules))
        return found

    def report_problems(self, plan: Plan) -> None:
        """Log each `errors` and `warnings` entry once per backup and reason for the life of
        the process: one warning line that names the backup, the reason and the snapshot,
        not again every cycle while nothing changed."""
        for kind, entries in (("error", plan.errors), ("warning", plan.warnings)):
            for entry in entries:
                key = (kind, entry.backup, entry.error, entry.source_snapshot_id)
                if key in self._reported:
                    continue
                self._reported.add(key)
                fields: dict[str, str] = {"backup": entry.backup, "reason": entry.error}
                if entry.source_snapshot_id:
                    fields["source_snapshot_id"] = entry.source_snapshot_id
                log.warning(f"discovery.{kind}", **fields)

    def settings_warnings(self, discovery: Discovery) -> tuple[SettingsWarning, ...]:
        """Settings that look wrong given the bucket and EC2; each new one is logged once."""
        warnings = schedule_warnings(discovery, self.settings.schedules, self.bucket_location)
        hint = planner.source_region_hint(
            [s for s in discovery.snapshots if s.state is not None], self.source_region
        )
        if hint:
            warnings.append(SettingsWarning("source_region", hint))
        for warning in warnings:
            if warning.warning not in self._warned:
                log.warning(
                    "settings.suspicious",
                    setting=warning.setting,
                    schedule=warning.schedule,
                    warning=warning.warning,
                )
        # Forget the ones that went away, so a warning that comes back is logged again.
        self._warned = {w.warning for w in warnings}
        return tuple(warnings)

    async def add_details(self, found: Discovery, covered: Collection[str]) -> Discovery:
        """EC2 details (state, size, tags, volume type…) of the sources that may be copied.

        Sources that already have a completed or pending replica, or sit in the copier, need
        none: in a steady state a warm cycle then makes no DescribeSnapshots call at all.
        """
        needed = [src for src in found.snapshots if src.snapshot_id not in covered]
        detailed = await inventory.add_source_details(self.aws, self.source_region, needed)
        by_id = {src.snapshot_id: src for src in detailed}
        snapshots = tuple(by_id.get(src.snapshot_id, src) for src in found.snapshots)
        return dataclasses.replace(found, snapshots=snapshots)

    async def plan_cycle(self) -> CycleResult:
        """Discover and list replicas side by side, add source details, plan — no change."""
        async with self._plan_lock:
            listing_started = self.copier.clock()
            try:
                async with asyncio.TaskGroup() as group:
                    found = group.create_task(self.discover(), name="discover")
                    listed = group.create_task(
                        inventory.list_replicas(self.aws, self.region, self.scope, repeated=True),
                        name="inventory",
                    )
            except ExceptionGroup as group_error:
                raise first_error(group_error) from group_error
            replicas, locks_known = await self.read_locks(listed.result())
            in_progress = self._in_progress(listing_started)
            covered = in_progress | {
                r.source_snapshot_id for r in replicas if r.completed or r.pending
            }
            discovery = await self.add_details(found.result(), {c for c in covered if c})
            return self._plan(discovery, replicas, in_progress, locks_known=locks_known)

    async def replan(self, discovery: Discovery) -> CycleResult:
        """A plan from a fresh replica inventory and the bucket as `discovery` read it.

        `snapd sync`'s last pass (prune, locks, DR location) after the copies settled: the
        inventory changed (copies completed, failed ones were deleted) and is listed again,
        with its locks; the bucket is not read again — prunes depend on the replicas alone,
        and the discovery already carries its sources' details (docs/architecture.md,
        "What sync's last pass reads again").
        """
        async with self._plan_lock:
            listing_started = self.copier.clock()
            listed = await inventory.list_replicas(self.aws, self.region, self.scope, repeated=True)
            replicas, locks_known = await self.read_locks(listed)
            in_progress = self._in_progress(listing_started)
            return self._plan(discovery, replicas, in_progress, locks_known=locks_known)

    def _in_progress(self, listing_started: float) -> set[str]:
        """Sources the copier holds, and those it settled since the listing began: a listing
        may be stale by the time it is planned from, and these count as covered."""
        return self.copier.busy_sources() | self.copier.settled_since(listing_started)

    def _plan(
        self,
        discovery: Discovery,
        replicas: list[Replica],
        in_progress: set[str],
        *,
        locks_known: bool,
    ) -> CycleResult:
        """The planner over what was read, plus the warnings and metrics it feeds."""
        plan = planner.plan(
            discovery,
            replicas,
            policy_from(self.settings),
            self.now(),
            in_progress=in_progress,
            copier_owned=set(self.copier.active),
            destination_region=self.region,
            source_region=self.source_region,
        )
        warnings = self.settings_warnings(discovery)
        self.metrics.set_recovery_points(planner.recovery_points(replicas, self.now()))
        self.report_problems(plan)
        return CycleResult(plan, discovery, replicas, warnings, locks_known=locks_known)

    async def read_locks(self, replicas: list[Replica]) -> tuple[list[Replica], bool]:
        """The replicas with their locks (completed ones, batched); as they are when off.

        A failed look-up is logged and leaves the replicas without lock data: copies go on,
        no lock is placed this time, and a deletion AWS refuses under a lock is reported
        as locked by the pruner, never as deleted.
        """
        if not self.locks.enabled:
            return replicas, False
        ids = [r.snapshot_id for r in replicas if r.completed]
        try:
            found = await locks.read_locks(self.aws, self.region, ids, repeated=True)
        except AwsError as error:
            log.error("locks.unknown", code=error.code, error=error.message)
            return replicas, False
        return locks.with_locks(replicas, found, self.lock_memo), True

    async def lock_pass(self, result: CycleResult) -> locks.LockReport | None:
        """Lock what the plan keeps, extend what needs it; sets `snapd_replicas_unlocked`."""
        if not (self.locks.enabled and result.locks_known):
            return None
        actions = locking.lock_actions(
            result.replicas, result.plan, policy_from(self.settings), self.locks, self.now()
        )
        report = await locks.apply(self.aws, self.region, actions, self.locks, self.metrics)
        missing = locking.unlocked(result.replicas, result.plan)
        now_locked = set(report.locked)
        still = [r for r in missing if r.snapshot_id not in now_locked]
        self.metrics.replicas_unlocked.set(len(still))
        if actions:
            log.info(
                "locks.completed",
                locked=len(report.locked),
                extended=len(report.extended),
                failed=len(report.failed),
                unlocked=len(still),
            )
        return report

    async def cycle(self) -> CycleResult:
        """One reconcile cycle: plan, adopt pending copies, enqueue the plan's copies."""
        started = time.monotonic()
        cycle_id = uuid.uuid4().hex[:8]
        structlog.contextvars.bind_contextvars(cycle=cycle_id)
        try:
            result = await self.plan_cycle()
        except SnapdError as error:
            self.metrics.sync_cycles.labels(result="failure").inc()
            log.error("cycle.failed", error=str(error))
            raise
        finally:
            structlog.contextvars.unbind_contextvars("cycle")
        adopted = self.copier.adopt(result.replicas)
        queued = self.copier.enqueue(result.plan.copies)
        await self.lock_pass(result)
        self.metrics.sync_cycles.labels(result="success").inc()
        self.metrics.last_successful_sync.set(time.time())
        plan = result.plan
        log.info(
            "cycle.completed",
            cycle=cycle_id,
            seconds=round(time.monotonic() - started, 3),
            sources=len(result.discovery.snapshots),
            replicas=len(result.replicas),
            copies_planned=len(plan.copies),
            copies_queued=queued,
            adopted=adopted,
            prunes_planned=len(plan.prunes),
            skipped=len(plan.skipped),
            errors=len(plan.errors),
            warnings=len(plan.warnings),
            in_flight=len(self.copier.active),
            backlog=self.copier.backlog,
        )
        await self.publish_dr(result)
        return result

    async def prune_pass(
        self, *, force: bool = False, result: CycleResult | None = None
    ) -> PruneReport:
        """The prunes of `result` (else of a fresh plan) under the guard."""
        result = result or await self.plan_cycle()
        if self.locks.enabled:
            await self.lock_pass(result)
            await self.recycle_bin.check()
        report = await prune(
            self.aws,
            await self._hold_for_dr(result.plan),
            scope=self.scope,
            region=self.region,
            force=force,
            metrics=self.metrics,
        )
        log.info(
            "prune.completed",
            deleted=len(report.deleted),
            failed=len(report.failed),
            held_back=report.held_back,
            kept_locked=len(result.plan.kept),
            refused_locked=len(report.locked),
        )
        return report


def _dr_publisher(settings: Settings, aws: AwsClients, metrics: Metrics) -> dr.DrPublisher | None:
    """The DR location's publisher, when `SNAPD_DR_BUCKET` is set."""
    if not settings.dr_bucket:
        return None
    region = settings.destination_region or ""
    source_region = settings.source_region or ""
    return dr.DrPublisher(
        aws,
        source=velero.BucketLocation(
            settings.velero_bucket or "", settings.velero_prefix, source_region
        ),
        dr=velero.BucketLocation(settings.dr_bucket, settings.dr_prefix, region),
        source_region=source_region,
        overrides=settings.dr_zones,
        copy_failed_backups=settings.copy_failed_backups,
        metrics=metrics,
    )


def _bucket_error(error: AwsError, bucket: str, region: str) -> AwsError:
    """The bucket listing failed: say which setting to check when the answer says which."""
    if error.code == "NoSuchBucket":
        hint = (
            f"bucket {bucket} does not exist; check velero_bucket (SNAPD_VELERO_BUCKET, "
            "--velero-bucket): it is the bucket of Velero's BackupStorageLocation "
            "(`velero backup-location get -o yaml`)"
        )
    elif error.code in ("PermanentRedirect", "AuthorizationHeaderMalformed"):
        hint = (
            f"bucket {bucket} is not in {region}; snapd reads it in source_region "
            "(SNAPD_SOURCE_REGION, --source-region), the region of Velero's snapshots"
        )
    else:
        return error
    return type(error)(error.operation, error.code, f"{error.message} ({hint})")


# --------------------------------------------------------------------------- snapd sync


@dataclass
class SyncOutcome:
    """What `snapd sync` did, for its output and exit code.

    `unprotected` names every source the sync set out to copy (planned, re-planned or
    adopted) that ended without a completed replica, and why: given up, still pending or
    never started at `--timeout`, waiting to retry. Any entry makes the sync fail.
    """

    plan: Plan
    copies_started: int = 0
    copies_completed: int = 0
    unprotected: list[Unfinished] = field(default_factory=list)
    #: The wait hit `--timeout` (then nothing is pruned).
    timed_out: bool = False
    prune: PruneReport | None = None
    warnings: tuple[SettingsWarning, ...] = ()
    #: DR location writes that failed (backup → reason); retried by the next run.
    dr_failed: dict[str, str] = field(default_factory=dict)
    #: Backups the final DR pass published, and removed (backup → reason).
    dr_published: list[str] = field(default_factory=list)
    dr_removed: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> list[str]:
        """Given-up sources, one line each (`label (source): reason`)."""
        return [
            f"{u.label} ({u.source_id}): {u.reason}"
            for u in self.unprotected
            if u.state == "failed"
        ]

    @property
    def ok(self) -> bool:
        prune_ok = self.prune is None or self.prune.ok
        return not self.unprotected and not self.timed_out and prune_ok and not self.dr_failed


async def sync_once(engine: Engine, *, force: bool, wait_seconds: float) -> SyncOutcome:
    """One cycle, wait for every pending copy of the scope (bounded), then prune.

    Adopted copies that end in `error` send the sync back to planning (up to
    `copy_retries` times), since only a fresh plan knows their sources again.
    """
    result = await engine.cycle()
    outcome = SyncOutcome(result.plan, warnings=result.warnings)
    stop = asyncio.Event()
    copier = engine.copier
    pool = asyncio.create_task(copier.run(stop), name="copier")
    try:
        async with asyncio.timeout(wait_seconds):
            result = await _settle(engine, result)
        # Read before the pool stops: stopping forgets the queue and the pending copies.
        outcome.unprotected = copier.unfinished()
    except TimeoutError:
        outcome.timed_out = True
        outcome.unprotected = copier.time_out()
    finally:
        stop.set()
        await pool
    outcome.copies_started = copier.stats.started
    outcome.copies_completed = copier.stats.completed
    if outcome.timed_out:
        return outcome
    # The last pass: the replicas as the copies left them, the bucket as last read.
    final = await engine.replan(result.discovery)
    outcome.prune = await engine.prune_pass(force=force, result=final)
    report = await engine.publish_pass(final)
    if report is not None:
        outcome.dr_failed = dict(report.failed)
        outcome.dr_published = list(report.published)
        outcome.dr_removed = dict(report.unpublished)
        plan = outcome.plan
        outcome.plan = dataclasses.replace(plan, errors=plan.errors + report.errors)
    return outcome


async def _settle(engine: Engine, result: CycleResult) -> CycleResult:
    """Until the copier is idle, re-planning after adopted copies failed; the last cycle."""
    copier = engine.copier
    replans = 0
    while True:
        failed_before = copier.stats.adopted_failed
        await copier.wait_settled()
        if copier.stats.adopted_failed == failed_before or replans >= engine.settings.copy_retries:
            return result
        replans += 1
        result = await engine.cycle()


async def sync_holding_lease(engine: Engine, *, force: bool, wait_seconds: float) -> SyncOutcome:
    """`snapd sync`: with leader election on, take the Lease first and hold it throughout.

    A running `snapd run` of the same scope holds it, so the two never copy at once; the
    refusal names the holder. Losing the Lease mid-sync stops the sync (exit 1).
    """
    settings = engine.settings
    if not settings.leader_election:
        return await sync_once(engine, force=force, wait_seconds=wait_seconds)
    # Imported here: kubernetes_asyncio is slow to import and needed only for the Lease.
    from snapd import kube, leader

    async with await kube.connect() as client:
        elector = await leader.acquire_once(
            client,
            name=settings.lease_name,
            namespace=settings.lease_namespace,
            duration=settings.lease_duration,
        )
        election_stop = asyncio.Event()
        election = asyncio.create_task(elector.run(election_stop), name="leader-election")
        work = asyncio.create_task(sync_once(engine, force=force, wait_seconds=wait_seconds))
        try:
            await _first(asyncio.shield(work), elector.not_leading.wait())
            if not work.done():
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)
                raise WorkFailedError(f"lost the Lease to {elector.holder} during sync; stopped")
            return work.result()
        finally:
            election_stop.set()
            await election


# --------------------------------------------------------------------------- snapd run


async def run_daemon(settings: Settings) -> None:
    """The daemon: cycle loop, prune loop, copy pool, metrics — until SIGTERM/SIGINT.

    With leader election on, the work runs only while this instance holds the Lease; the
    standby serves /metrics, /healthz and /readyz (ready) with `snapd_leader` 0.
    """
    metrics = Metrics()
    health = Health()
    stop = asyncio.Event()

    def shut_down() -> None:
        # Not ready from the first moment of the drain, so no new scrape or traffic waits on us.
        health.mark_not_ready()
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, shut_down)
    async with (
        AwsClients(on_error=metrics.count_aws_error) as aws,
        await _serve(metrics, settings.metrics_port, health) as server,
    ):
        engine = Engine(settings, aws, metrics)
        try:
            await engine.check_dr()
        except AwsError as error:
            log.warning("dr.zones_unchecked", error=str(error), retry="at the first publish pass")
        await aws.settle(start_up_clients(settings))
        log.info(
            "service.started",
            metrics_port=server.port,
            version=__version__,
            **settings_field(settings.public_view()),
        )
        if engine.locks.enabled:
            await engine.recycle_bin.check()
        if settings.leader_election:
            from snapd import leader  # with the Lease only: see sync_holding_lease

            async with await _connect_for_election() as client:
                elector = leader.LeaderElector(
                    client,
                    name=settings.lease_name,
                    namespace=settings.lease_namespace,
                    duration=settings.lease_duration,
                )
                health.mark_ready()
                await _work_while_leading(engine, elector, stop)
        else:
            metrics.leader.set(1)
            health.mark_ready()
            await _work_until(engine, stop)
        log.info("service.stopped")


def start_up_clients(settings: Settings) -> set[tuple[str, str]]:
    """The clients every cycle uses, made before the work starts (`AwsClients.settle`)."""
    clients = set()
    if settings.source_region:
        clients |= {("s3", settings.source_region), ("ec2", settings.source_region)}
    if settings.destination_region:
        clients.add(("ec2", settings.destination_region))
    return clients


async def _serve(metrics: Metrics, port: int, health: Health) -> MetricsServer:
    """The metrics/health server; a port that cannot be bound is a configuration error."""
    try:
        return await serve_http(metrics, port, health)
    except OSError as error:
        raise ConfigError(
            f"invalid setting metrics_port (SNAPD_METRICS_PORT, --metrics-port): cannot listen "
            f"on port {port}: {error.strerror or error}"
        ) from error


async def _connect_for_election() -> kube.KubeClient:
    """Kubernetes access for the Lease; without it leader election is misconfigured (exit 2)."""
    from snapd import kube  # with the Lease only: see sync_holding_lease

    try:
        return await kube.connect()
    except KubeError as error:
        raise ConfigError(
            f"leader_election is on but Kubernetes is not reachable: {error}; run in the "
            "cluster (in-cluster config) or set KUBECONFIG, or turn SNAPD_LEADER_ELECTION off"
        ) from error


async def _work_while_leading(
    engine: Engine, elector: leader.LeaderElector, stop: asyncio.Event
) -> None:
    """Work whenever we hold the Lease; stop new work at once when it is lost."""
    election_stop = asyncio.Event()
    election = asyncio.create_task(elector.run(election_stop), name="leader-election")
    try:
        while not stop.is_set():
            await _first(elector.leading.wait(), stop.wait())
            if stop.is_set():
                break
            engine.metrics.leader.set(1)
            log.info("leader.started", identity=elector.identity)
            lost = asyncio.Event()
            watcher = asyncio.create_task(_set_when(lost, elector.not_leading, stop))
            await _work_until(engine, lost)
            watcher.cancel()
            engine.metrics.leader.set(0)
            if not stop.is_set():
                log.warning("leader.lost", identity=elector.identity, holder=elector.holder)
    finally:
        election_stop.set()
        await election


async def _set_when(target: asyncio.Event, *events: asyncio.Event) -> None:
    await _first(*(e.wait() for e in events))
    target.set()


async def _first(*waits: Awaitable[Any]) -> None:
    """Until the first of `waits` finishes; the others are cancelled."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


async def _work_until(engine: Engine, stop: asyncio.Event) -> None:
    """Run the loops until `stop`; then let running calls finish within the drain timeout."""
    work_stop = asyncio.Event()
    work = asyncio.create_task(_work(engine, work_stop), name="work")
    await _first(stop.wait(), asyncio.shield(work))
    work_stop.set()
    drain = engine.settings.drain_timeout.total_seconds()
    log.info("service.draining", drain_timeout=drain)
    done, _ = await asyncio.wait({work}, timeout=drain)
    if not done:
        work.cancel()
        log.warning("service.drain_timed_out", drain_timeout=drain)
    results = await asyncio.gather(work, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):
            log.error("service.work_failed", error=repr(result))


async def _work(engine: Engine, stop: asyncio.Event) -> None:
    async with asyncio.TaskGroup() as group:
        group.create_task(engine.copier.run(stop), name="copier")
        group.create_task(_cycle_loop(engine, stop), name="cycle-loop")
        group.create_task(_prune_loop(engine, stop), name="prune-loop")


async def _cycle_loop(engine: Engine, stop: asyncio.Event) -> None:
    interval = engine.settings.sync_interval.total_seconds()
    while not stop.is_set():
        try:
            await engine.cycle()
        except AwsError as error:
            log.error("cycle.retry_later", code=error.code, error=error.message)
        except SnapdError as error:
            log.error("cycle.retry_later", error=str(error))
        except Exception:  # the daemon must outlive a bug in one cycle
            engine.metrics.sync_cycles.labels(result="failure").inc()
            log.exception("cycle.crashed")
        await _sleep_or_stop(stop, interval)


async def _prune_loop(engine: Engine, stop: asyncio.Event) -> None:
    interval = engine.settings.prune_interval.total_seconds()
    await _sleep_or_stop(stop, min(interval, engine.settings.sync_interval.total_seconds()))
    while not stop.is_set():
        try:
            await engine.prune_pass()
        except SnapdError as error:
            log.error("prune.skipped", error=str(error), reason="discovery or inventory failed")
        except Exception:  # a bug in one pass must not stop the daemon
            log.exception("prune.crashed")
        await _sleep_or_stop(stop, interval)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    """Wait on the stop event, not `sleep`, so shutdown is instant."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return
