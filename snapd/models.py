"""Frozen records that cross module borders: what Velero says, what EC2 holds, what to do.

Nothing here does I/O or knows about botocore: `velero` and `inventory` build these records
from raw S3/EC2 data, `planner` turns them into a `Plan`, and the copier, pruner, restore
and CLI consume them. Keeping them frozen means a record seen by the planner is the record
acted upon.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

#: Velero phases after which a backup's files never change again (docs/velero-files.md#phases).
TERMINAL_PHASES = frozenset({"Completed", "PartiallyFailed", "Failed"})

#: Snapshot lock states in which DeleteSnapshot is refused (AWS's LockState but `expired`).
LOCKED_STATES = frozenset({"governance", "compliance-cooloff", "compliance"})

#: Phases whose snapshots are restore points worth copying.
GOOD_PHASES = frozenset({"Completed", "PartiallyFailed"})


class SnapshotMethod(StrEnum):
    """How Velero took the snapshot: through its AWS plugin, or through the EBS CSI driver."""

    NATIVE = "native"
    CSI = "csi"


@dataclass(frozen=True, slots=True)
class Backup:
    """One Velero backup as read from `backups/<name>/velero-backup.json`."""

    name: str
    schedule: str | None
    phase: str
    start_time: datetime | None
    completion_time: datetime | None = None
    expiration: datetime | None = None
    format_version: str | None = None
    #: True when the backup's files hold everything its `status` counts (discovery's
    #: checklist: native and CSI snapshots, item operations). Discovery sets it; a backup
    #: whose files were not (or not yet fully) read is False.
    files_complete: bool = True

    @property
    def terminal(self) -> bool:
        """Whether Velero will never rewrite this backup's files (safe to cache)."""
        return self.phase in TERMINAL_PHASES


@dataclass(frozen=True, slots=True)
class Volume:
    """One volume's restore attributes: where it belonged and how to rebuild it.

    The one record of them (docs/architecture.md#one-record-per-volume): discovery builds it
    from Velero's files (and EC2 fills what they lack), `tags` writes it onto a replica and
    reads it back field by field through one table (`tags.VOLUME_TAGS`), and planning, the
    DR location and restore use it as it is. What belongs to one snapshot rather than to the
    volume (its id, state, backup, times, lock, encryption) stays on `SourceSnapshot` and
    `Replica`. Every field is optional: None (or `()`) means nobody recorded it.
    """

    namespace: str | None = None
    pvc: str | None = None
    pv: str | None = None
    #: The source volume (`vol-…`) the snapshot was taken of.
    volume_id: str | None = None
    availability_zone: str | None = None
    volume_type: str | None = None
    iops: int | None = None
    throughput: int | None = None
    storage_class: str | None = None
    fs_type: str | None = None
    csi_driver: str | None = None
    access_modes: tuple[str, ...] = ()
    volume_mode: str | None = None
    #: GiB; not a tag: EC2 records it on every snapshot (VolumeSize).
    size_gib: int | None = None

    @property
    def key(self) -> tuple[str, str] | None:
        """(namespace, PVC) that retention groups by; PV or volume id when the PVC is unknown;
        None when nothing identifies the volume (see `volume_key`)."""
        return volume_key(self.namespace, self.pvc, self.pv, self.volume_id)

    def with_values(self, **changes: Any) -> Volume:
        """A copy with `changes` applied (field names of this record); it stays frozen."""
        return dataclasses.replace(self, **changes)


#: A volume nothing is known about.
NO_VOLUME = Volume()


@dataclass(frozen=True, slots=True)
class SourceSnapshot:
    """An EBS snapshot in the source region that a Velero backup of a watched schedule owns.

    The first block and `volume` come from the bucket. `state`, `encrypted`, `tags` (and
    what `volume` lacks, such as its size) are filled from DescribeSnapshots by
    `inventory.add_source_details`; `state` is None until then, and "missing" when EC2 no
    longer knows the snapshot.
    """

    snapshot_id: str
    backup: str
    schedule: str
    backup_time: datetime
    phase: str
    method: SnapshotMethod
    volume: Volume = NO_VOLUME
    # From DescribeSnapshots in the source region.
    state: str | None = None
    encrypted: bool | None = None
    source_tags: tuple[tuple[str, str], ...] = ()

    @property
    def volume_key(self) -> tuple[str, str] | None:
        """(namespace, PVC) that retention groups by (`Volume.key`)."""
        return self.volume.key

    def with_details(self, **changes: Any) -> SourceSnapshot:
        """A copy with details added (EC2 state, volume…); the record itself stays frozen."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, slots=True)
class Replica:
    """snapd's copy of a source snapshot in the destination region, read back from its tags
    (`tags.build_replica`); `volume` is the source's record, its size the copy's own."""

    snapshot_id: str
    region: str
    state: str
    progress: int
    scope: str
    source_snapshot_id: str | None
    source_region: str | None = None
    backup: str | None = None
    schedule: str | None = None
    backup_time: datetime | None = None
    volume: Volume = NO_VOLUME
    encrypted: bool = False
    kms_key_id: str | None = None
    start_time: datetime | None = None
    state_message: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    #: AWS's LockState (`governance`, `compliance-cooloff`, `compliance`, `expired`) and
    #: LockExpiresOn; None when unlocked, or when locking is off (then nobody looked).
    lock_state: str | None = None
    lock_expires: datetime | None = None
    #: A time-based copy's promise (EC2's CompletionDurationMinutes); None for a standard one.
    completion_minutes: int | None = None

    @property
    def volume_key(self) -> tuple[str, str] | None:
        """(namespace, PVC) that retention groups by; see `Volume.key`."""
        return self.volume.key

    @property
    def identity(self) -> tuple[str, str, str, str, datetime] | None:
        """What two replicas must share to be copies of one restore point (duplicates):
        source snapshot, backup, namespace, PVC and backup time. None when the source id,
        backup or backup time tag is missing: such a replica is never taken for a duplicate."""
        if not (self.source_snapshot_id and self.backup and self.backup_time):
            return None
        return (
            self.source_snapshot_id,
            self.backup,
            self.volume.namespace or "",
            self.volume.pvc or "",
            self.backup_time,
        )

    @property
    def locked(self) -> bool:
        """Whether a lock stops DeleteSnapshot now (any state but `expired`)."""
        return self.lock_state in LOCKED_STATES

    @property
    def promised_by(self) -> datetime | None:
        """When a time-based copy promised to be complete (start + duration), else None."""
        if self.completion_minutes is None or self.start_time is None:
            return None
        return self.start_time + timedelta(minutes=self.completion_minutes)

    def overdue(self, now: datetime) -> bool:
        """Still pending past its time-based promise (AWS's copyMissedCompletionDuration)."""
        promised = self.promised_by
        return self.pending and promised is not None and now > promised

    @property
    def completed(self) -> bool:
        return self.state == "completed"

    @property
    def pending(self) -> bool:
        return self.state == "pending"


def volume_key(
    namespace: str | None, pvc: str | None, pv: str | None, volume_id: str | None
) -> tuple[str, str] | None:
    """The retention key of one volume: (namespace, PVC) when both are known, else the PV
    name, else the source volume id; None when none is known.

    A PVC is namespaced, so a PVC name alone would pool same-named PVCs of different
    namespaces. None (identity tags removed, or never written) must never be pooled with
    other unknowns either: the planner never ages such a replica out and never counts it
    as a newer restore point of anything.
    """
    if namespace and pvc:
        return (namespace, pvc)
    if pv:
        return ("", pv)
    if volume_id:
        return ("", volume_id)
    return None


@dataclass(frozen=True, slots=True)
class Skip:
    """Something discovery or planning deliberately leaves alone, with the reason why."""

    backup: str
    reason: str
    source_snapshot_id: str | None = None


@dataclass(frozen=True, slots=True)
class DiscoveryError:
    """A backup (or one snapshot of it) that could not be read; every other backup proceeds."""

    backup: str
    error: str
    source_snapshot_id: str | None = None


@dataclass(frozen=True, slots=True)
class BackupScan:
    """Everything discovery learnt from one `backups/<name>/` folder."""

    name: str
    backup: Backup | None
    snapshots: tuple[SourceSnapshot, ...] = ()
    skipped: tuple[Skip, ...] = ()
    errors: tuple[DiscoveryError, ...] = ()
    #: True when the folder belongs to a watched schedule (or could not be attributed).
    watched: bool = True
    #: Problems that leave the snapshots determined (a missing tarball): reported, not
    #: counted as unreadable.
    warnings: tuple[DiscoveryError, ...] = ()
    #: What the files still lack against the backup's `status` (empty when complete). Turned
    #: into a skip, or an error once the upload grace has passed (`finish_scan`).
    missing: tuple[str, ...] = ()
    #: False when an S3 read failed or a file vanished while read: the result says nothing
    #: lasting about the folder, so it is never cached.
    settled: bool = True
    #: When the newest file of a folder without `velero-backup.json` was written (the
    #: upload grace runs from it).
    uploaded_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Discovery:
    """The result of reading the bucket: source snapshots plus what was skipped or unreadable."""

    snapshots: tuple[SourceSnapshot, ...]
    skipped: tuple[Skip, ...] = ()
    errors: tuple[DiscoveryError, ...] = ()
    backups: tuple[Backup, ...] = ()
    #: Every folder's scan, for the DR location (which publishes whole backups).
    scans: tuple[BackupScan, ...] = ()
    #: Backups whose snapshots are determined and handled, with a problem worth telling.
    warnings: tuple[DiscoveryError, ...] = ()

    @property
    def unreadable_backups(self) -> int:
        return len({e.backup for e in self.errors if e.source_snapshot_id is None})


@dataclass(frozen=True, slots=True)
class Policy:
    """The settings the planner needs, lifted out of `Settings` so planning stays pure."""

    max_age: timedelta = timedelta(days=30)
    keep_last: int = 1
    prune_max_fraction: float = 0.5


class PruneKind(StrEnum):
    """Why a replica is deleted; cleanup is never held back by the prune guard."""

    RETENTION = "retention"
    DUPLICATE = "duplicate"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class CopyAction:
    """Copy one source snapshot to the destination region."""

    source: SourceSnapshot
    reason: str


@dataclass(frozen=True, slots=True)
class PruneAction:
    """Delete one replica in the destination region."""

    replica: Replica
    kind: PruneKind
    reason: str


@dataclass(frozen=True, slots=True)
class KeptAction:
    """A replica retention or cleanup would delete, kept because its lock has not expired."""

    replica: Replica
    kind: PruneKind
    reason: str


@dataclass(frozen=True, slots=True)
class Plan:
    """What one cycle will do, each item with its reason; built by `planner.plan` alone."""

    copies: tuple[CopyAction, ...] = ()
    prunes: tuple[PruneAction, ...] = ()
    skipped: tuple[Skip, ...] = ()
    errors: tuple[DiscoveryError, ...] = ()
    #: Problems worth telling that change nothing about what is copied (same shape as
    #: `errors`): backups whose snapshots are still handled despite a problem, backup times
    #: in the future, replicas that claim one source but disagree on what it is.
    warnings: tuple[DiscoveryError, ...] = ()
    #: Completed replicas of the scope, the base of the prune guard's fraction.
    completed_replicas: int = 0
    #: True when the retention prunes exceed `prune_max_fraction` of `completed_replicas`.
    guard_tripped: bool = False
    #: Replicas due for deletion but under an unexpired lock: no DeleteSnapshot until it ends.
    kept: tuple[KeptAction, ...] = ()

    @property
    def retention_prunes(self) -> tuple[PruneAction, ...]:
        return tuple(p for p in self.prunes if p.kind is PruneKind.RETENTION)

    @property
    def cleanup_prunes(self) -> tuple[PruneAction, ...]:
        return tuple(p for p in self.prunes if p.kind is not PruneKind.RETENTION)
