"""The DR location: fully replicated backups, rewritten to name their replicas, in a bucket of
the destination region, so a Velero there restores them with a stock `velero restore`.

Owns: deciding which backups are published (`choose`, pure), writing them (server-side copies
of unchanged objects, the rewritten ones from `dr_rewrite`, `velero-backup.json` last),
removing them (`velero-backup.json` first) before any replica they name is pruned or as soon
as one stops being a completed replica of the scope, and reading the DR bucket alone for
`snapd dr-manifests`. See docs/dr-location.md.

Must not: write to the source bucket; touch any DR key outside
`<dr root>/backups/<name>/` of a name it publishes; block copies or pruning of other backups
(a failed write is counted, logged and retried next cycle); hold a tarball in memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import string
import threading
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from snapd.dr_rewrite import (
    DrMapping,
    DrRewriteError,
    FileKind,
    Seen,
    file_kind,
    rewrite_json_gz,
    rewrite_tarball,
)
from snapd.errors import AwsError, ConfigError, PermanentError, SnapdError
from snapd.metrics import Metrics
from snapd.models import Backup, BackupScan, Discovery, DiscoveryError, Plan, Replica
from snapd.velero import BucketLocation, S3Door, backup_gate, list_backup_files, list_backups
from snapd.velero_files import BACKUP_FILE, is_valid_backup_name

log = structlog.get_logger("snapd.dr")

#: CopyObject copies at most 5 GiB; larger objects go by UploadPartCopy.
COPY_OBJECT_LIMIT = 5 << 30
#: Part size of multipart copies and of the streamed tarball upload.
COPY_PART_SIZE = 512 << 20
UPLOAD_PART_SIZE = 8 << 20
#: Backups published side by side.
PUBLISH_CONCURRENCY = 2
#: S3 user metadata on `velero-backup.json`: what the published copy names.
META_DIGEST = "snapd-digest"
META_LOCATIONS = "snapd-vsl"
META_CLASSES = "snapd-vsclass"
META_REPLICAS_LIMIT = 1400


# ---------------------------------------------------------------------------------------------
# Zones
# ---------------------------------------------------------------------------------------------


def zone_map(
    source_region: str, region: str, available: Collection[str], overrides: Mapping[str, str]
) -> dict[str, str]:
    """Source zone → DR zone: `SNAPD_DR_ZONES` first, else the same letter when the
    destination region has it. A source zone absent here has no DR zone."""
    zones = {
        source_region + letter: region + letter
        for letter in string.ascii_lowercase
        if region + letter in available
    }
    zones.update(overrides)
    return zones


def check_overrides(overrides: Mapping[str, str], region: str, available: Collection[str]) -> None:
    """ConfigError for a `SNAPD_DR_ZONES` entry naming a zone the destination region lacks."""
    bad = sorted({dr for dr in overrides.values() if dr not in available})
    if bad:
        raise ConfigError(
            f"invalid setting dr_zones (SNAPD_DR_ZONES, --dr-zones): {', '.join(bad)} "
            f"not in {region}; its zones: {', '.join(sorted(available))}"
        )


# ---------------------------------------------------------------------------------------------
# Which backups are published (pure)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Candidate:
    """A backup that is fully replicated now, with what its DR copy will name."""

    name: str
    schedule: str
    backup_time: datetime | None
    mapping: DrMapping
    digest: str

    @property
    def replica_ids(self) -> frozenset[str]:
        return frozenset(self.mapping.snapshots.values())


#: `choose`'s memo: by backup, the scan and other inputs its candidate was made of, and
#: the candidate.
CandidateMemo = dict[str, tuple[BackupScan, tuple[object, ...], Candidate]]


@dataclass(frozen=True, slots=True)
class Choice:
    """`choose`'s answer: the backups ready to publish, the scans behind every backup
    (to judge published ones), and the backups held back for a missing DR zone."""

    candidates: Mapping[str, Candidate]
    usable: Mapping[str, str]
    scans: Mapping[str, BackupScan]
    errors: tuple[DiscoveryError, ...] = ()


def usable_replicas(replicas: Iterable[Replica], prunes: Plan | None) -> dict[str, str]:
    """Source snapshot id → the completed replica a DR copy may name.

    Replicas the plan will delete (retention or cleanup) never count: a backup naming one is
    removed before the prune. Among duplicates the lowest id wins, the same answer each cycle.
    """
    doomed = {p.replica.snapshot_id for p in prunes.prunes} if prunes else set()
    usable: dict[str, str] = {}
    for replica in sorted(replicas, key=lambda r: r.snapshot_id):
        source = replica.source_snapshot_id
        if replica.completed and source and replica.snapshot_id not in doomed:
            usable.setdefault(source, replica.snapshot_id)
    return usable


def digest(snapshots: Mapping[str, str], zones: Mapping[str, str], region: str) -> str:
    """Identifies what a published copy names; a change means it must be written again."""
    text = json.dumps([sorted(snapshots.items()), sorted(zones.items()), region])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def choose(
    discovery: Discovery,
    usable: Mapping[str, str],
    *,
    zones: Mapping[str, str],
    source_region: str,
    region: str,
    copy_failed_backups: bool,
    memo: CandidateMemo | None = None,
) -> Choice:
    """The backups to publish: watched, in a phase snapd copies from, files complete and
    clean, no named snapshot skipped, every EBS snapshot with a usable replica, and every
    source zone with a DR zone (else an `errors` entry naming the zone and SNAPD_DR_ZONES).

    With a `memo` (the publisher's, from its last pass), a candidate made of the very same
    scan (identity: the Velero reader's cached reading), the same replicas and zones is
    the one made before — its digest is not computed again."""
    zone_pairs = tuple(sorted(zones.items()))
    fresh: CandidateMemo = {}
    candidates: dict[str, Candidate] = {}
    scans: dict[str, BackupScan] = {}
    errors: list[DiscoveryError] = []
    for scan in discovery.scans:
        backup = scan.backup
        if backup is None or not scan.watched:
            continue
        scans[scan.name] = scan
        if not _publishable(scan, copy_failed_backups):
            continue
        if any(s.snapshot_id not in usable for s in scan.snapshots):
            continue
        missing = sorted(
            {s.volume.availability_zone for s in scan.snapshots if s.volume.availability_zone}
            - set(zones)
        )
        if missing:
            errors.append(
                DiscoveryError(
                    scan.name,
                    f"not published to the DR location: source zone {', '.join(missing)} has no "
                    f"DR zone in {region}; map it in SNAPD_DR_ZONES (src-az=dr-az)",
                )
            )
            continue
        replicas = tuple(usable[s.snapshot_id] for s in scan.snapshots)
        inputs = (replicas, zone_pairs, source_region, region)
        known = memo.get(scan.name) if memo is not None else None
        if known is not None and known[0] is scan and known[1] == inputs:
            candidates[scan.name] = known[2]
        else:
            candidates[scan.name] = _candidate(
                scan, backup, replicas, zones, source_region=source_region, region=region
            )
        fresh[scan.name] = (scan, inputs, candidates[scan.name])
    if memo is not None:
        memo.clear()
        memo.update(fresh)
    return Choice(candidates, dict(usable), scans, tuple(errors))


def _candidate(
    scan: BackupScan,
    backup: Backup,
    replicas: tuple[str, ...],
    zones: Mapping[str, str],
    *,
    source_region: str,
    region: str,
) -> Candidate:
    """The candidate of a publishable scan whose snapshots have these replicas (in order)."""
    snapshots = {s.snapshot_id: r for s, r in zip(scan.snapshots, replicas, strict=True)}
    mapping = DrMapping(
        snapshots=snapshots,
        zones=dict(zones),
        source_region=source_region,
        region=region,
        volumes=frozenset(s.volume.pv for s in scan.snapshots if s.volume.pv),
    )
    return Candidate(
        scan.name,
        backup.schedule or "",
        backup.start_time,
        mapping,
        digest(snapshots, zones, region),
    )


def _publishable(scan: BackupScan, copy_failed_backups: bool) -> bool:
    """Files agree with the status, nothing unreadable, nothing named that was skipped."""
    backup = scan.backup
    if backup is None or backup_gate(backup, copy_failed_backups) is not None:
        return False
    if scan.errors or not backup.files_complete:
        return False
    return not any(skip.source_snapshot_id for skip in scan.skipped)


@dataclass(slots=True)
class Published:
    """A backup present in the DR location (its `velero-backup.json` exists)."""

    name: str
    digest: str | None
    replica_ids: frozenset[str]
    schedule: str | None = None
    backup_time: datetime | None = None


def stale_reason(record: Published, choice: Choice, live_replicas: Collection[str]) -> str | None:
    """Why a published backup must leave the DR location now, or None when it stays.

    - it names a replica that is no longer usable (pruned next, deleted behind snapd's back,
      no longer completed): its restore would dangle;
    - it is a candidate whose replicas changed: written again (removed first).
    A backup whose source left the bucket stays while every replica it names is usable.
    """
    candidate = choice.candidates.get(record.name)
    if candidate is not None:
        if candidate.digest != record.digest:
            return "its replicas changed; written again"
        return None
    usable = set(choice.usable.values())
    gone = sorted(record.replica_ids - usable)
    if gone:
        state = (
            "to be pruned" if set(gone) & set(live_replicas) else "no longer a completed replica"
        )
        return f"replica {', '.join(gone)} {state}"
    scan = choice.scans.get(record.name)
    if scan is not None and not scan.errors:
        unreplicated = [s.snapshot_id for s in scan.snapshots if s.snapshot_id not in choice.usable]
        if unreplicated:
            return f"snapshot {', '.join(sorted(unreplicated))} has no completed replica"
    return None


# ---------------------------------------------------------------------------------------------
# The publisher (I/O)
# ---------------------------------------------------------------------------------------------


@dataclass
class DrReport:
    """One publish pass, for logs, status and tests."""

    published: list[str] = field(default_factory=list)
    unpublished: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    errors: tuple[DiscoveryError, ...] = ()


class DrPublisher:
    """Keeps the DR location in step with the replicas; state is what the DR bucket holds."""

    def __init__(
        self,
        aws: S3Door,
        *,
        source: BucketLocation,
        dr: BucketLocation,
        source_region: str,
        overrides: Mapping[str, str],
        copy_failed_backups: bool,
        metrics: Metrics,
        concurrency: int = PUBLISH_CONCURRENCY,
    ) -> None:
        self.aws = aws
        self.source = source
        self.dr = dr
        self.source_region = source_region
        self.overrides = dict(overrides)
        self.copy_failed_backups = copy_failed_backups
        self.metrics = metrics
        self.concurrency = concurrency
        self.zones: dict[str, str] | None = None
        self._published: dict[str, Published] | None = None
        self.errors: tuple[DiscoveryError, ...] = ()
        self._schedules_exported: set[str] = set()
        #: The last pass's candidates (`choose`): unchanged backups are not digested again.
        self._candidates: CandidateMemo = {}

    @property
    def published(self) -> Mapping[str, Published]:
        return dict(self._published or {})

    @property
    def location(self) -> str:
        """`s3://bucket/prefix` (no trailing `/`)."""
        return f"s3://{self.dr.bucket}/{self.dr.prefix}".rstrip("/")

    async def check_zones(self) -> dict[str, str]:
        """DescribeAvailabilityZones of the destination region (once); ConfigError for a bad
        `SNAPD_DR_ZONES` entry."""
        if self.zones is None:
            response = await self.aws.call(
                "ec2", self.dr.region, "DescribeAvailabilityZones", AllAvailabilityZones=True
            )
            available = {
                str(z["ZoneName"])
                for z in response.get("AvailabilityZones") or ()
                if z.get("ZoneName") and z.get("RegionName", self.dr.region) == self.dr.region
            }
            check_overrides(self.overrides, self.dr.region, available)
            self.zones = zone_map(self.source_region, self.dr.region, available, self.overrides)
        return self.zones

    # -- a pass --------------------------------------------------------------------------

    async def reconcile(
        self, discovery: Discovery, replicas: list[Replica], plan: Plan
    ) -> DrReport:
        """Remove what must go (velero-backup.json first), then publish what is ready.

        One listing of the DR `backups/` folder per pass (⌈published/1000⌉ LIST calls); a
        warm pass with nothing new makes no other DR request.
        """
        zones = await self.check_zones()
        await self._refresh()
        usable = usable_replicas(replicas, plan)
        choice = choose(
            discovery,
            usable,
            zones=zones,
            source_region=self.source_region,
            region=self.dr.region,
            copy_failed_backups=self.copy_failed_backups,
            memo=self._candidates,
        )
        report = DrReport(errors=choice.errors)
        self.errors = choice.errors
        live = {r.snapshot_id for r in replicas}
        for record in list(self.published.values()):
            reason = stale_reason(record, choice, live)
            if reason is None:
                self._describe(record, choice)
                continue
            if await self._try(report, record.name, self.unpublish(record.name)):
                report.unpublished[record.name] = reason
                log.info("dr.unpublished", backup=record.name, reason=reason)
        todo = [c for n, c in sorted(choice.candidates.items()) if n not in self.published]
        semaphore = asyncio.Semaphore(self.concurrency)

        async def one(candidate: Candidate) -> None:
            async with semaphore:
                if await self._try(report, candidate.name, self.publish(candidate)):
                    report.published.append(candidate.name)

        async with asyncio.TaskGroup() as group:
            for candidate in todo:
                group.create_task(one(candidate), name=f"dr.publish:{candidate.name[:80]}")
        self._set_metrics()
        return report

    async def survey(self, discovery: Discovery, replicas: list[Replica], plan: Plan) -> None:
        """Read the DR location's state without writing (for `snapd status`)."""
        zones = await self.check_zones()
        await self._refresh()
        choice = choose(
            discovery,
            usable_replicas(replicas, plan),
            zones=zones,
            source_region=self.source_region,
            region=self.dr.region,
            copy_failed_backups=self.copy_failed_backups,
            memo=self._candidates,
        )
        self.errors = choice.errors
        for record in self.published.values():
            self._describe(record, choice)

    def status(self, schedules: Iterable[str]) -> dict[str, Any]:
        """The `dr` object of `status -o json`."""
        newest = self.newest_published()
        rows = []
        for name in schedules:
            record = newest.get(name)
            rows.append(
                {
                    "name": name,
                    "newest_published_backup": record.name if record else None,
                    "recovery_point": _rfc3339(record.backup_time) if record else None,
                }
            )
        return {"location": self.location, "published": len(self.published), "schedules": rows}

    async def before_prune(self, plan: Plan) -> set[str]:
        """Remove every published backup naming a replica this prune pass deletes.

        Returns the replica ids whose removal failed: their prunes are held back this pass
        (a DR Velero must never see a backup pointing at a deleted snapshot).
        """
        doomed = {p.replica.snapshot_id for p in plan.prunes}
        if not doomed:
            return set()
        try:
            await self._refresh()
        except SnapdError as error:
            if self._published is None:
                raise  # nothing known: the caller holds every prune back
            log.warning("dr.list_failed", error=str(error), using="the last listing")
        held: set[str] = set()
        report = DrReport()
        for record in list(self.published.values()):
            named = record.replica_ids & doomed
            if not named:
                continue
            if await self._try(report, record.name, self.unpublish(record.name)):
                log.info("dr.unpublished", backup=record.name, reason="replicas to be pruned")
            else:
                held |= named
        self._set_metrics()
        return held

    async def _try(self, report: DrReport, name: str, work: Awaitable[None]) -> bool:
        """Run one backup's write; a failure is counted, logged and retried next pass."""
        try:
            await work
        except Exception as error:  # noqa: BLE001 - one backup's failure never stops the rest
            self.metrics.dr_publish_failures.inc()
            report.failed[name] = str(error)
            log.error("dr.write_failed", backup=name, error=str(error))
            return False
        return True

    # -- state ---------------------------------------------------------------------------

    async def _refresh(self) -> None:
        """List the DR `backups/` folder; learn about folders not seen before (start-up)."""
        names = set(await list_backups(self.aws, self.dr))
        known = self._published or {}
        fresh = {n: r for n, r in known.items() if n in names}
        if self._published is not None:
            unknown: list[str] = []
        else:
            unknown = sorted(n for n in names if is_valid_backup_name(n))
        for name in unknown:
            record = await self._head(name)
            if record is not None:
                fresh[name] = record
        self._published = fresh

    async def _head(self, name: str) -> Published | None:
        """A DR folder found at start-up: published when its velero-backup.json exists."""
        try:
            response = await self.aws.call(
                "s3", self.dr.region, "HeadObject", Bucket=self.dr.bucket, Key=self._key(name)
            )
        except PermanentError as error:
            if error.code in ("404", "NoSuchKey", "NotFound"):
                return None  # an interrupted publish: completed when the backup is ready
            raise
        meta = {str(k).lower(): str(v) for k, v in (response.get("Metadata") or {}).items()}
        replicas = frozenset(r for r in meta.get("snapd-replicas", "").split(",") if r)
        return Published(name, meta.get(META_DIGEST), replicas)

    def _describe(self, record: Published, choice: Choice) -> None:
        candidate = choice.candidates.get(record.name)
        if candidate is not None:
            record.schedule, record.backup_time = candidate.schedule, candidate.backup_time
            record.replica_ids = candidate.replica_ids
        elif record.schedule is None and record.name in choice.scans:
            backup = choice.scans[record.name].backup
            if backup is not None:
                record.schedule, record.backup_time = backup.schedule, backup.start_time

    def _set_metrics(self) -> None:
        records = self.published.values()
        self.metrics.dr_backups_published.set(len(records))
        newest: dict[str, float] = {}
        for record in records:
            if record.schedule and record.backup_time:
                stamp = record.backup_time.timestamp()
                newest[record.schedule] = max(newest.get(record.schedule, 0.0), stamp)
        for schedule in self._schedules_exported - set(newest):
            self.metrics.dr_recovery_point.remove(schedule)  # nothing of it published any more
        for schedule, stamp in newest.items():
            self.metrics.dr_recovery_point.labels(schedule=schedule).set(stamp)
        self._schedules_exported = set(newest)

    def newest_published(self) -> dict[str, Published]:
        """Per schedule, the published backup with the newest backup time."""
        newest: dict[str, Published] = {}
        for record in self.published.values():
            if not (record.schedule and record.backup_time):
                continue
            best = newest.get(record.schedule)
            if best is None or (best.backup_time and record.backup_time > best.backup_time):
                newest[record.schedule] = record
        return newest

    # -- writing -------------------------------------------------------------------------

    def _key(self, name: str, file_name: str = BACKUP_FILE) -> str:
        return self.dr.folder(name) + file_name

    async def publish(self, candidate: Candidate) -> None:
        """Every object of the source folder into the DR folder; velero-backup.json last."""
        name = candidate.name
        files = await list_backup_files(self.aws, self.source, name)
        if BACKUP_FILE not in files:
            raise PermanentError(
                "ListObjectsV2", "NoSuchKey", f"{BACKUP_FILE} left the source bucket"
            )
        mapping = DrMapping(
            snapshots=candidate.mapping.snapshots,
            zones=candidate.mapping.zones,
            source_region=candidate.mapping.source_region,
            region=candidate.mapping.region,
            volumes=candidate.mapping.volumes,
            seen=Seen(),
        )
        for file_name, size in sorted(files.items()):
            if file_name == BACKUP_FILE:
                continue
            kind = file_kind(name, file_name)
            try:
                if kind is FileKind.TARBALL:
                    await self._rewrite_tarball(name, file_name, mapping)
                elif kind is not None:
                    await self._rewrite_small(name, file_name, kind, mapping, size)
                else:
                    await self._copy(name, file_name, size)
            except DrRewriteError as error:
                raise PermanentError(
                    "PutObject", "RewriteFailed", f"{file_name}: {error}"
                ) from error
        _check_every_snapshot_met(mapping)
        await self._copy(
            name, BACKUP_FILE, files[BACKUP_FILE], metadata=_metadata(candidate, mapping.seen)
        )
        if self._published is None:
            self._published = {}
        self._published[name] = Published(
            name, candidate.digest, candidate.replica_ids, candidate.schedule, candidate.backup_time
        )
        log.info("dr.published", backup=name, replicas=len(candidate.replica_ids))

    async def unpublish(self, name: str) -> None:
        """velero-backup.json first (Velero stops listing it), then the rest of the folder."""
        await self.aws.call(
            "s3", self.dr.region, "DeleteObject", Bucket=self.dr.bucket, Key=self._key(name)
        )
        if self._published is not None:
            self._published.pop(name, None)
        keys = list(await list_backup_files(self.aws, self.dr, name))
        for start in range(0, len(keys), 1000):
            batch = [{"Key": self._key(name, k)} for k in keys[start : start + 1000]]
            response = await self.aws.call(
                "s3",
                self.dr.region,
                "DeleteObjects",
                Bucket=self.dr.bucket,
                Delete={"Objects": batch, "Quiet": True},
            )
            failed = response.get("Errors") or ()
            if failed:
                first = failed[0]
                raise PermanentError(
                    "DeleteObjects",
                    str(first.get("Code") or "DeleteFailed"),
                    f"could not delete {first.get('Key')}: {first.get('Message')}",
                )

    async def _copy(
        self, name: str, file_name: str, size: int, *, metadata: dict[str, str] | None = None
    ) -> None:
        """A server-side copy, source folder → DR folder (never through snapd's memory)."""
        source = {"Bucket": self.source.bucket, "Key": self.source.folder(name) + file_name}
        target = {"Bucket": self.dr.bucket, "Key": self._key(name, file_name)}
        extra: dict[str, Any] = {}
        if metadata is not None:
            extra = {"Metadata": metadata, "MetadataDirective": "REPLACE"}
        if size <= COPY_OBJECT_LIMIT:
            await self.aws.call(
                "s3", self.dr.region, "CopyObject", CopySource=source, **target, **extra
            )
            return
        await self._multipart(
            target, extra, lambda upload_id: self._copy_parts(source, target, size, upload_id)
        )

    async def _copy_parts(
        self, source: dict[str, str], target: dict[str, str], size: int, upload_id: str
    ) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        for number, start in enumerate(range(0, size, COPY_PART_SIZE), start=1):
            end = min(start + COPY_PART_SIZE, size) - 1
            response = await self.aws.call(
                "s3",
                self.dr.region,
                "UploadPartCopy",
                CopySource=source,
                CopySourceRange=f"bytes={start}-{end}",
                PartNumber=number,
                UploadId=upload_id,
                **target,
            )
            parts.append({"ETag": response["CopyPartResult"]["ETag"], "PartNumber": number})
        return parts

    async def _multipart(
        self,
        target: dict[str, str],
        extra: dict[str, Any],
        send: Callable[[str], Awaitable[list[dict[str, Any]]]],
    ) -> None:
        """CreateMultipartUpload → parts → Complete; Abort on any failure (no orphan parts)."""
        created = await self.aws.call(
            "s3",
            self.dr.region,
            "CreateMultipartUpload",
            **target,
            **{k: v for k, v in extra.items() if k == "Metadata"},
        )
        upload_id = str(created["UploadId"])
        try:
            parts = await send(upload_id)
            await self.aws.call(
                "s3",
                self.dr.region,
                "CompleteMultipartUpload",
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                **target,
            )
        except BaseException:
            await asyncio.shield(self._abort(target, upload_id))
            raise

    async def _abort(self, target: dict[str, str], upload_id: str) -> None:
        try:
            await self.aws.call(
                "s3", self.dr.region, "AbortMultipartUpload", UploadId=upload_id, **target
            )
        except AwsError as error:
            log.warning("dr.abort_failed", key=target["Key"], error=str(error))

    async def _rewrite_small(
        self, name: str, file_name: str, kind: FileKind, mapping: DrMapping, size: int
    ) -> None:
        """GET a `.json.gz` file, rewrite it, PUT it; copy it server-side if nothing changes."""
        response = await self.aws.call(
            "s3",
            self.source.region,
            "GetObject",
            Bucket=self.source.bucket,
            Key=self.source.folder(name) + file_name,
        )
        body = response["Body"]
        async with body:
            raw: bytes = await body.read()
        data = await asyncio.to_thread(rewrite_json_gz, kind, raw, mapping)
        if data is None:
            await self._copy(name, file_name, size)
            return
        await self.aws.call(
            "s3",
            self.dr.region,
            "PutObject",
            Bucket=self.dr.bucket,
            Key=self._key(name, file_name),
            Body=data,
        )

    async def _rewrite_tarball(self, name: str, file_name: str, mapping: DrMapping) -> None:
        """Stream the tarball: GET → rewrite in a thread → multipart upload, in bounded memory."""
        loop = asyncio.get_running_loop()
        response = await self.aws.call(
            "s3",
            self.source.region,
            "GetObject",
            Bucket=self.source.bucket,
            Key=self.source.folder(name) + file_name,
        )
        body = response["Body"]
        target = {"Bucket": self.dr.bucket, "Key": self._key(name, file_name)}

        async def send(upload_id: str) -> list[dict[str, Any]]:
            aborted = threading.Event()
            writer = _PartWriter(
                self.aws,
                region=self.dr.region,
                target=target,
                upload_id=upload_id,
                loop=loop,
                aborted=aborted,
            )
            reader = _BodyReader(body, loop, aborted)

            def work() -> None:
                rewrite_tarball(reader, writer, mapping)  # type: ignore[arg-type]
                writer.finish()

            async with body:
                try:
                    await asyncio.to_thread(work)
                except BaseException:
                    aborted.set()  # the thread stops at its next read or write
                    raise
            return writer.parts

        await self._multipart(target, {}, send)


def _rfc3339(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def _check_every_snapshot_met(mapping: DrMapping) -> None:
    """Refuse to publish files that no longer name the snapshots discovery read them with.

    Discovery keeps a terminal backup's reading by name between its verification listings,
    so a backup deleted and re-created under its name can reach the publisher with the old
    reading while the folder holds the new files; published, they would point a DR restore
    at source snapshots. Its velero-backup.json is not written: the backup stays invisible
    to Velero and is published once discovery has read the new files."""
    unmet = sorted(set(mapping.snapshots) - mapping.seen.snapshots)
    if unmet:
        raise PermanentError(
            "PutObject",
            "FilesChanged",
            f"the backup's files no longer name {len(unmet)} snapshot(s) it was read with "
            f"({', '.join(unmet[:3])}{', …' if len(unmet) > 3 else ''}): the backup changed "
            "since it was read (deleted and re-created under its name?); not published, "
            "retried once discovery has read it again",
        )


def _metadata(candidate: Candidate, seen: Seen) -> dict[str, str]:
    """What `velero-backup.json` carries for snapd: the digest, the replica ids (so a
    restarted snapd knows what the copy names), VSL and class names for dr-manifests."""
    replicas = ",".join(sorted(candidate.replica_ids))
    meta = {
        META_DIGEST: candidate.digest,
        META_LOCATIONS: ",".join(sorted(seen.locations)),
        META_CLASSES: ",".join(sorted(seen.classes)),
    }
    if len(replicas) <= META_REPLICAS_LIMIT:
        meta["snapd-replicas"] = replicas
    return meta


#: Longest a rewrite thread waits for one read or part upload on the event loop.
BRIDGE_TIMEOUT = 600.0


def _on_loop(
    call: Awaitable[Any], loop: asyncio.AbstractEventLoop, aborted: threading.Event
) -> Any:
    """Run one call on the event loop from the rewrite thread and wait for it (bounded)."""
    if aborted.is_set():
        raise OSError("publish cancelled")
    return asyncio.run_coroutine_threadsafe(_await(call), loop).result(BRIDGE_TIMEOUT)


class _BodyReader:
    """A blocking `read(n)` over an aiobotocore body, for the rewrite thread; never more
    than one upload part's worth at a time."""

    def __init__(
        self, body: Any, loop: asyncio.AbstractEventLoop, aborted: threading.Event
    ) -> None:
        self._body = body
        self._loop = loop
        self._aborted = aborted

    def read(self, size: int = -1) -> bytes:
        amount = UPLOAD_PART_SIZE if size is None or size < 0 else size
        data: bytes = _on_loop(self._body.read(amount), self._loop, self._aborted)
        return data

    def readable(self) -> bool:
        return True


class _PartWriter:
    """A blocking `write` that uploads a part each `UPLOAD_PART_SIZE` bytes, for the thread."""

    def __init__(
        self,
        aws: S3Door,
        *,
        region: str,
        target: dict[str, str],
        upload_id: str,
        loop: asyncio.AbstractEventLoop,
        aborted: threading.Event,
    ) -> None:
        self._aborted = aborted
        self._aws = aws
        self._region = region
        self._target = target
        self._upload_id = upload_id
        self._loop = loop
        self._buffer = bytearray()
        self.parts: list[dict[str, Any]] = []

    def write(self, data: bytes) -> int:
        self._buffer += data
        while len(self._buffer) >= UPLOAD_PART_SIZE:
            chunk = bytes(self._buffer[:UPLOAD_PART_SIZE])
            del self._buffer[:UPLOAD_PART_SIZE]
            self._send(chunk)
        return len(data)

    def flush(self) -> None:
        return None

    def finish(self) -> None:
        """The last part (any size, at least one part in all)."""
        if self._buffer or not self.parts:
            self._send(bytes(self._buffer))
            self._buffer.clear()

    def _send(self, chunk: bytes) -> None:
        number = len(self.parts) + 1
        call = self._aws.call(
            "s3",
            self._region,
            "UploadPart",
            Body=chunk,
            PartNumber=number,
            UploadId=self._upload_id,
            **self._target,
        )
        response = _on_loop(call, self._loop, self._aborted)
        self.parts.append({"ETag": response["ETag"], "PartNumber": number})


async def _await(call: Awaitable[Any]) -> Any:
    return await call


# ---------------------------------------------------------------------------------------------
# dr-manifests: reads only the DR bucket
# ---------------------------------------------------------------------------------------------


async def read_published(aws: S3Door, dr: BucketLocation) -> dict[str, dict[str, str]]:
    """Published backups of the DR location and their snapd metadata (HEAD per backup)."""
    names = [n for n in await list_backups(aws, dr) if is_valid_backup_name(n)]
    published: dict[str, dict[str, str]] = {}
    for name in names:
        try:
            response = await aws.call(
                "s3", dr.region, "HeadObject", Bucket=dr.bucket, Key=dr.folder(name) + BACKUP_FILE
            )
        except PermanentError as error:
            if error.code in ("404", "NoSuchKey", "NotFound"):
                continue
            raise
        published[name] = {
            str(k).lower(): str(v) for k, v in (response.get("Metadata") or {}).items()
        }
    return published


def dr_manifests(
    published: Mapping[str, Mapping[str, str]],
    *,
    bucket: str,
    prefix: str,
    region: str,
    namespace: str,
    bsl_name: str,
) -> list[dict[str, Any]]:
    """The DR cluster's objects: a ReadOnly BSL, the VSLs and VolumeSnapshotClasses the
    published backups name. Pure."""
    object_storage: dict[str, Any] = {"bucket": bucket}
    if prefix:
        object_storage["prefix"] = prefix
    manifests: list[dict[str, Any]] = [
        {
            "apiVersion": "velero.io/v1",
            "kind": "BackupStorageLocation",
            "metadata": {"name": bsl_name, "namespace": namespace},
            "spec": {
                "provider": "aws",
                "objectStorage": object_storage,
                "config": {"region": region},
                # ReadOnly, always: published backups keep Velero's past expiration, and a
                # ReadWrite BSL would garbage-collect them and delete the replicas.
                "accessMode": "ReadOnly",
            },
        }
    ]
    locations = sorted({v for m in published.values() for v in _split(m.get(META_LOCATIONS))})
    classes = sorted({v for m in published.values() for v in _split(m.get(META_CLASSES))})
    for location in locations:
        manifests.append(
            {
                "apiVersion": "velero.io/v1",
                "kind": "VolumeSnapshotLocation",
                "metadata": {"name": location, "namespace": namespace},
                "spec": {"provider": "aws", "config": {"region": region}},
            }
        )
    for name in classes:
        manifests.append(
            {
                "apiVersion": "snapshot.storage.k8s.io/v1",
                "kind": "VolumeSnapshotClass",
                "metadata": {
                    "name": name,
                    "labels": {"velero.io/csi-volumesnapshot-class": "true"},
                },
                "driver": "ebs.csi.aws.com",
                "deletionPolicy": "Retain",
            }
        )
    return manifests


def _split(value: str | None) -> list[str]:
    return [v for v in (value or "").split(",") if v]
