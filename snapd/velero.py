"""Velero's bucket: which EBS snapshots the backups of the watched schedules own.

Owns: listing `<prefix>/backups/`, reading each backup's files (parsed, every Velero version's
quirks, in `velero_files.py`), turning them into `Backup` / `SourceSnapshot` records with the
reason for everything left out (`build_*`), the checklist that tells a finished upload from
one still running (`missing_parts`, docs/discovery.md), and the in-memory cache (by name,
verified against each folder's ETags) that makes a warm cycle cost one names listing —
⌈backups/1000⌉ requests — and no GET.

Must not: touch EC2 (`inventory` does), decide what to copy (`planner` does), GET a key it has
not seen in the cycle's listing, or let one bad backup stop the others — a backup that
cannot be read becomes an `errors` entry and the rest proceed. Only a failure to *list*
the bucket escapes, as a cycle failure. The `build_*` functions are pure, like the parsers:
records in, records out, no I/O, no clock, no logging; they raise `BackupReadError` (and
nothing else) on bad input.

S3 is reached only through an `AwsClients`-shaped door (`S3Door`), so this module does not
import `snapd.aws` (a sibling in the layer contract).
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO, Any, NamedTuple, Protocol, TypeVar

from snapd.config import format_duration
from snapd.errors import AwsError, BackupReadError, PermanentError, first_error
from snapd.models import (
    TERMINAL_PHASES,
    Backup,
    BackupScan,
    Discovery,
    DiscoveryError,
    Skip,
    SnapshotMethod,
    SourceSnapshot,
    Volume,
)
from snapd.velero_files import (
    BACKUP_FILE,
    TARBALL_CHUNK,
    BackupDocument,
    BackupFiles,
    CsiContent,
    CsiVolumeSnapshot,
    PersistentVolume,
    TarballResources,
    count_native_entries,
    count_volume_info_csi,
    gib,
    is_valid_backup_name,
    parse_backup_document,
    parse_csi_volume_snapshot_contents,
    parse_csi_volume_snapshots,
    parse_item_operations,
    parse_tarball,
    parse_volume_info,
    parse_volume_snapshots,
    valid_label,
)

NO_BACKUP_FILE = "no velero-backup.json: upload interrupted or still in progress"
#: What happens to a backup's snapshots when one of its files cannot be read.
STILL_COPIED = "the snapshots its other files name are still copied"
INVALID_NAME = (
    "backup folder name is not a valid Kubernetes object name "
    "(lowercase DNS-1123 subdomain, at most 253 characters); not read"
)
INLINE_LIMIT = 256 << 10
MAX_OBJECT_BYTES = 64 << 20
TARBALL_SPOOL_MEMORY = 8 << 20
DEFAULT_CONCURRENCY = 16
DEFAULT_PAGE_SIZE = 1000
#: How often discovery verifies its cache with every file's ETag (the daemon passes
#: SNAPD_PRUNE_INTERVAL): the longest a backup re-created under its name goes unseen.
DEFAULT_VERIFY_EVERY = timedelta(hours=1)
#: How long after `completionTimestamp` files may still be arriving (SNAPD_UPLOAD_GRACE).
DEFAULT_UPLOAD_GRACE = timedelta(hours=1)

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# build_*: one backup's files → BackupScan
# ---------------------------------------------------------------------------------------------


def backup_gate(backup: Backup, copy_failed_backups: bool) -> Skip | None:
    """Why a watched backup's snapshots are not taken now, or None when they are.

    Completed and PartiallyFailed yield; Failed only on request; anything else is still
    being written by Velero (WaitingForPluginOperations, Finalizing…) and is read again.
    """
    if backup.phase == "Failed" and not copy_failed_backups:
        return Skip(
            backup.name,
            "backup phase Failed; set SNAPD_COPY_FAILED_BACKUPS=true to copy its snapshots",
        )
    if backup.phase not in TERMINAL_PHASES:
        return Skip(backup.name, f"backup in flight (phase {backup.phase}); read again next cycle")
    return None


@dataclass(slots=True)
class _Draft:
    """A SourceSnapshot being assembled: the `Volume` fields known so far, by name.

    `fill` never overwrites a better source's value. A plain dict while sources are
    applied (a frozen record rebuilt at each `fill` costs several times the CPU); `volume`
    is the record of what is known.
    """

    snapshot_id: str
    method: SnapshotMethod
    known: dict[str, Any] = field(default_factory=dict)

    def fill(self, **values: Any) -> None:
        """Set each `Volume` field that is still unknown; sources are applied best first."""
        for name, value in values.items():
            if value not in (None, (), "") and self.known.get(name) in (None, ()):
                self.known[name] = value

    def fill_claim(self, namespace: str | None, pvc: str | None) -> None:
        """Namespace and PVC come as a pair: never mix one source's namespace with another's."""
        if self.known.get("pvc") is None and pvc:
            self.known.update(namespace=namespace, pvc=pvc)

    @property
    def volume(self) -> Volume:
        """The frozen record of what is known so far (built anew: read it once per use)."""
        return Volume(**self.known)


def build_scan(
    backup: Backup,
    files: BackupFiles | None,
    *,
    schedules: Collection[str],
    copy_failed_backups: bool,
) -> BackupScan:
    """Combine one backup's parsed files into its source snapshots, skips and errors.

    Sources, best first: volumeinfo, then volumesnapshots and the CSI files, then the
    tarball. volumeinfo can be incomplete (Velero drops entries it cannot match to a PV), so
    every source adds the snapshots the better ones missed; a snapshot id appears once.
    Never raises: a problem becomes an `errors` entry and the readable snapshots still go.
    """
    unread = dataclasses.replace(backup, files_complete=False)
    if backup.schedule is None or backup.schedule not in schedules:
        return BackupScan(backup.name, unread, watched=False)
    gate = backup_gate(backup, copy_failed_backups)
    if gate is not None:
        return BackupScan(backup.name, unread, skipped=(gate,))
    files = files or BackupFiles()
    errors = [
        DiscoveryError(backup.name, f"{problem}; {STILL_COPIED}") for problem in files.problems
    ]
    if backup.start_time is None:
        errors.append(
            DiscoveryError(
                backup.name,
                f"{BACKUP_FILE} has no startTimestamp or creationTimestamp; its snapshots "
                "cannot be dated and are not copied",
            )
        )
        return BackupScan(backup.name, backup, errors=tuple(errors))
    drafts, skipped = _collect(backup, files)
    if files.tarball is not None:
        for draft in drafts.values():
            _enrich(draft, files.tarball)
    missing = missing_parts(backup.name, files, drafts)
    warnings = _tarball_warnings(backup, files, drafts, missing)
    complete = not missing and not files.problems
    record = dataclasses.replace(backup, files_complete=complete)
    snapshots = tuple(
        _source_snapshot(draft, record, backup.start_time) for draft in drafts.values()
    )
    return BackupScan(
        backup.name,
        record,
        snapshots=snapshots,
        skipped=tuple(skipped),
        errors=tuple(errors),
        warnings=warnings,
        missing=tuple(missing),
    )


def _collect(backup: Backup, files: BackupFiles) -> tuple[dict[str, _Draft], list[Skip]]:
    """Every EBS snapshot id the files name, best source first, and the failed entries."""
    drafts: dict[str, _Draft] = {}
    skipped: list[Skip] = []
    failed_ids: set[str] = set()
    reported: set[tuple[str | None, str | None]] = set()

    def fail(pv: str | None, claim: str | None, snapshot_id: str | None, method: str) -> None:
        """One skip per failed volume, even when volumeinfo and volumesnapshots both list it."""
        if snapshot_id is not None:
            failed_ids.add(snapshot_id)
        if (pv, snapshot_id) in reported:
            return
        reported.add((pv, snapshot_id))
        what = claim or (f"PV {pv}" if pv else "a volume")
        skipped.append(
            Skip(
                backup.name,
                f"Velero recorded a failed {method} snapshot of {what}; nothing to copy",
                snapshot_id,
            )
        )

    for info in files.volume_info or ():
        if info.failed or info.snapshot_id is None:
            claim = f"PVC {info.namespace}/{info.pvc}" if info.pvc else None
            fail(info.pv, claim, info.snapshot_id, info.method.value)
            continue
        draft = drafts.setdefault(info.snapshot_id, _Draft(info.snapshot_id, info.method))
        draft.fill_claim(info.namespace, info.pvc)
        draft.fill(
            pv=info.pv,
            availability_zone=info.availability_zone,
            volume_type=info.volume_type,
            iops=info.iops,
            csi_driver=info.csi_driver,
            size_gib=gib(info.size_bytes),
        )
    for native in files.volume_snapshots or ():
        if native.failed or native.snapshot_id is None:
            fail(native.pv, None, native.snapshot_id, SnapshotMethod.NATIVE.value)
            continue
        if native.snapshot_id in failed_ids:
            continue
        draft = drafts.setdefault(
            native.snapshot_id, _Draft(native.snapshot_id, SnapshotMethod.NATIVE)
        )
        draft.fill(
            pv=native.pv,
            volume_id=native.volume_id,
            availability_zone=native.availability_zone,
            volume_type=native.volume_type,
            iops=native.iops,
        )
    _collect_csi(
        drafts, failed_ids, files.csi_contents or (), files.csi_snapshots or (), trust_ref=False
    )
    if files.tarball is not None:
        label = valid_label(backup.name)
        ours = [c for c in files.tarball.contents if c.backup_label == label]
        _collect_csi(drafts, failed_ids, ours, files.tarball.volume_snapshots, trust_ref=True)
    return drafts, skipped


def _collect_csi(
    drafts: dict[str, _Draft],
    failed_ids: set[str],
    contents: Iterable[CsiContent],
    snapshots: Iterable[CsiVolumeSnapshot],
    *,
    trust_ref: bool,
) -> None:
    """Add CSI snapshots from VSCs, mapped to their PVC through the VolumeSnapshot.

    The join is `VS.status.boundVolumeSnapshotContentName == VSC.metadata.name`; the VSC's
    own `volumeSnapshotRef` is used only where it is real (the tarball), never from the
    v1.9–v1.11 files where Velero rewrote it to a fake `ns-<uid>/name-<uid>`.
    """
    snapshot_list = list(snapshots)
    by_content = {vs.content_name: vs for vs in snapshot_list if vs.content_name}
    by_name: dict[tuple[str | None, str | None], CsiVolumeSnapshot] = {
        (vs.namespace, vs.name): vs for vs in snapshot_list if vs.name
    }
    for content in contents:
        if content.snapshot_id is None or content.snapshot_id in failed_ids:
            continue
        vs = by_content.get(content.name) if content.name else None
        if vs is None and trust_ref:
            vs = by_name.get((content.ref_namespace, content.ref_name))
        draft = drafts.setdefault(
            content.snapshot_id, _Draft(content.snapshot_id, SnapshotMethod.CSI)
        )
        if vs is not None:
            draft.fill_claim(vs.namespace, vs.pvc)
        size = content.restore_size_bytes or (vs.restore_size_bytes if vs else None)
        draft.fill(volume_id=content.volume_id, csi_driver=content.driver, size_gib=gib(size))


def _find_pv(draft: _Draft, tarball: TarballResources) -> PersistentVolume | None:
    """The tarball PV of a snapshot: by PV name, by PVC binding or claimRef, by volume id."""
    volume = draft.volume
    if volume.pv and volume.pv in tarball.pvs:
        return tarball.pvs[volume.pv]
    if volume.pvc:
        claim = tarball.pvcs.get((volume.namespace or "", volume.pvc))
        if claim and claim.volume_name and claim.volume_name in tarball.pvs:
            return tarball.pvs[claim.volume_name]
        for pv in tarball.pvs.values():
            if (pv.claim_namespace, pv.claim_name) == (volume.namespace, volume.pvc):
                return pv
    if volume.volume_id:
        for pv in tarball.pvs.values():
            if pv.volume_id == volume.volume_id:
                return pv
    return None


def _enrich(draft: _Draft, tarball: TarballResources) -> None:
    """Fill PVC mapping and the PV details Velero's snapshot files do not record."""
    pv = _find_pv(draft, tarball)
    if pv is None:
        return
    draft.fill_claim(pv.claim_namespace, pv.claim_name)
    draft.fill(
        pv=pv.name,
        volume_id=pv.volume_id,
        availability_zone=pv.availability_zone,
        storage_class=pv.storage_class,
        fs_type=pv.fs_type,
        csi_driver=pv.csi_driver,
        access_modes=pv.access_modes,
        volume_mode=pv.volume_mode,
        size_gib=pv.size_gib,
    )
    volume = draft.volume
    claim = tarball.pvcs.get((volume.namespace or "", volume.pvc or ""))
    if claim is not None:
        draft.fill(
            storage_class=claim.storage_class,
            access_modes=claim.access_modes,
            volume_mode=claim.volume_mode,
        )


def missing_parts(name: str, files: BackupFiles, drafts: Mapping[str, _Draft]) -> list[str]:
    """What the files still lack against the backup's `status`: the checklist.

    Velero uploads `velero-backup.json` first, the tarball next, then the other files one by
    one (docs/velero-files.md#upload-order-and-rewrites); a reader racing that upload sees a
    finished status over files that are not all there yet. Checked: the volumesnapshots file
    (every version since v0.10 writes it) against `volumeSnapshotsAttempted/Completed`; the
    CSI snapshots the files name (the `csi-*` files up to v1.16, volumeinfo from v1.13 — the
    only one from v1.17 — or the tarball) against `csiVolumeSnapshotsAttempted/Completed`; the
    itemoperations file against `backupItemOperationsAttempted`. A file that is present but
    unreadable is a problem (an error at once), not a missing part.
    """
    counts = files.counts
    missing: list[str] = []

    def absent(suffix: str, parsed: object) -> bool:
        if files.listed is not None:
            return name + suffix not in files.listed
        return parsed is None and not any(p.startswith(name + suffix) for p in files.problems)

    native_completed = max(files.native_snapshots_completed, counts.native_completed)
    if absent(VOLUME_SNAPSHOTS, files.volume_snapshots):
        missing.append(f"{name}{VOLUME_SNAPSHOTS} (Velero writes it with every backup)")
    elif files.volume_snapshots is not None:
        entries = files.native_entries
        done = files.native_completed_entries
        if entries is None:
            entries = len(files.volume_snapshots)
        if done is None:
            done = sum(1 for n in files.volume_snapshots if not n.failed)
        missing += _short(
            "native snapshot entries", "volumeSnapshotsAttempted", entries, counts.native_attempted
        )
        missing += _short(
            "completed native snapshots", "volumeSnapshotsCompleted", done, native_completed
        )
    if counts.csi_attempted or counts.csi_completed:
        missing += _csi_missing(name, files, drafts)
    if counts.item_operations_attempted:
        if absent(ITEM_OPERATIONS, files.item_operations):
            missing.append(f"{name}{ITEM_OPERATIONS}")
        elif files.item_operations is not None:
            missing += _short(
                "item operations",
                "backupItemOperationsAttempted",
                files.item_operations,
                counts.item_operations_attempted,
            )
    if missing and files.tarball is None and absent(TARBALL, None):
        # Uploaded before the snapshot files: absent with them, it is still to come.
        missing.append(f"{name}{TARBALL}")
    return missing


def _short(what: str, counter: str, found: int, counted: int) -> list[str]:
    """One missing part when the files hold fewer `what` than `status.<counter>` counts."""
    if found >= counted:
        return []
    return [f"{counted - found} of the {counted} {what} status.{counter} counts"]


def _csi_missing(name: str, files: BackupFiles, drafts: Mapping[str, _Draft]) -> list[str]:
    """The CSI part of the checklist: whatever this version writes must name them all."""
    counts = files.counts
    csi_found = sum(1 for d in drafts.values() if d.method is SnapshotMethod.CSI)
    in_volume_info = files.volume_info_csi_entries
    if in_volume_info is None and files.volume_info is not None:
        in_volume_info = sum(1 for v in files.volume_info if v.method is SnapshotMethod.CSI)
    sources = [
        n
        for n in (
            len(files.csi_contents) if files.csi_contents is not None else None,
            in_volume_info,
        )
        if n is not None
    ]
    if not sources and not csi_found:
        return [
            f"the files naming its CSI snapshots ({name}{CSI_CONTENTS} up to Velero 1.16, "
            f"{name}{VOLUME_INFO} from 1.13)"
        ]
    made = max([*sources, csi_found])
    attempted = max(made, len(files.csi_snapshots or ()))
    return _short("CSI snapshots", "csiVolumeSnapshotsCompleted", made, counts.csi_completed) + (
        _short(
            "CSI snapshot entries", "csiVolumeSnapshotsAttempted", attempted, counts.csi_attempted
        )
    )


def _tarball_warnings(
    backup: Backup, files: BackupFiles, drafts: Mapping[str, _Draft], missing: Collection[str]
) -> tuple[DiscoveryError, ...]:
    """A tarball that is missing or broken while the snapshot files are readable: a warning.

    The snapshots are determined by the snapshot files, so they are handled like any other
    (the planner copies or skips each with its reason); only the details the tarball alone
    records (storage class, fs type, access modes, and the PVC where no other file names
    it) are lost. While the upload is still incomplete an absent tarball is just not there
    yet (`missing_parts`).
    """
    problem = files.tarball_problem
    if (
        problem is None
        or not drafts
        or (files.tarball is None and any(TARBALL in m for m in missing))
    ):
        return ()
    unnamed = sum(1 for d in drafts.values() if not d.volume.pvc)
    consequence = (
        f"its {len(drafts)} snapshot(s) are still handled like any other (copied unless "
        "listed under skipped), tagged with the PVC and PV that volumeinfo, the snapshot "
        "files or the source snapshot's tags give, without storage class, fs type or access "
        "modes"
    )
    if unnamed:
        consequence += (
            f"; {unnamed} of them name no PVC in the files: without a created-for/pvc tag "
            "on the source snapshot their replica is kept and listed by PV and source volume"
        )
    return (DiscoveryError(backup.name, f"{problem}; {consequence}"),)


def _source_snapshot(draft: _Draft, backup: Backup, backup_time: datetime) -> SourceSnapshot:
    """The frozen record of a finished draft."""
    return SourceSnapshot(
        snapshot_id=draft.snapshot_id,
        backup=backup.name,
        schedule=backup.schedule or "",
        backup_time=backup_time,
        phase=backup.phase,
        method=draft.method,
        volume=draft.volume,
    )


def finish_scan(scan: BackupScan, now: datetime | None, upload_grace: timedelta) -> BackupScan:
    """Report what a backup's files still lack: a skip while the upload may still run, an
    error once `upload_grace` has passed since `completionTimestamp` (start time when
    absent; for a folder without `velero-backup.json` its newest file; at once without
    `now`). Only the reporting changes: the backup is read again every cycle either way,
    and the snapshots found so far are copied meanwhile."""
    if not scan.missing:
        return scan
    parts = "; ".join(scan.missing)
    if scan.backup is None:  # no velero-backup.json: Velero writes it second, after the log
        since, handling = scan.uploaded_at, "it is read again every cycle"
    else:
        since = scan.backup.completion_time or scan.backup.start_time
        handling = "the snapshots found so far are copied and the backup is read again every cycle"
    if now is not None and since is not None and now - since < upload_grace:
        skip = Skip(scan.name, f"upload in progress, not in the bucket yet: {parts}; {handling}")
        return dataclasses.replace(scan, skipped=(*scan.skipped, skip))
    if scan.backup is None:
        error = DiscoveryError(scan.name, NO_BACKUP_FILE)
    else:
        error = DiscoveryError(
            scan.name,
            f"files incomplete more than {format_duration(upload_grace)} after the backup "
            f"completed, missing: {parts}; {handling}",
        )
    return dataclasses.replace(scan, errors=(*scan.errors, error))


def build_discovery(
    scans: Iterable[BackupScan],
    *,
    now: datetime | None = None,
    upload_grace: timedelta = DEFAULT_UPLOAD_GRACE,
) -> Discovery:
    """All scans of a cycle → one Discovery; a snapshot id claimed twice is reported once."""
    snapshots: dict[str, SourceSnapshot] = {}
    skipped: list[Skip] = []
    errors: list[DiscoveryError] = []
    warnings: list[DiscoveryError] = []
    backups: list[Backup] = []
    kept: list[BackupScan] = []
    for raw in scans:
        scan = finish_scan(raw, now, upload_grace)
        kept.append(scan)
        if scan.backup is not None:
            backups.append(scan.backup)
        skipped.extend(scan.skipped)
        errors.extend(scan.errors)
        warnings.extend(scan.warnings)
        for snapshot in scan.snapshots:
            snapshots.setdefault(snapshot.snapshot_id, snapshot)
    return Discovery(
        snapshots=tuple(snapshots.values()),
        skipped=tuple(skipped),
        errors=tuple(errors),
        backups=tuple(backups),
        scans=tuple(kept),
        warnings=tuple(warnings),
    )


# ---------------------------------------------------------------------------------------------
# S3: listing, reading, caching
# ---------------------------------------------------------------------------------------------


class S3Door(Protocol):
    """The part of `snapd.aws.AwsClients` this module uses (calls are counted there)."""

    def call(
        self,
        service: str,
        region: str,
        operation: str,
        *,
        expected_codes: Collection[str] = (),
        **params: Any,
    ) -> Awaitable[Any]:
        """One AWS call, errors mapped to `AwsError` (`expected_codes` not counted)."""
        ...

    def pages(
        self, service: str, region: str, operation: str, **params: Any
    ) -> AsyncIterator[dict[str, Any]]:
        """Every page of a paginated call."""
        ...


@dataclass(frozen=True, slots=True)
class BucketLocation:
    """Where a BSL keeps its backups: bucket, prefix (no leading/trailing `/`), region."""

    bucket: str
    prefix: str
    region: str

    @property
    def backups_prefix(self) -> str:
        """`<prefix>/backups/`, or `backups/` at the bucket root."""
        return f"{self.prefix}/backups/" if self.prefix else "backups/"

    def folder(self, name: str) -> str:
        return f"{self.backups_prefix}{name}/"


#: The files discovery reads besides velero-backup.json, by suffix after the backup name.
VOLUME_SNAPSHOTS = "-volumesnapshots.json.gz"
VOLUME_INFO = "-volumeinfo.json.gz"
CSI_SNAPSHOTS = "-csi-volumesnapshots.json.gz"
CSI_CONTENTS = "-csi-volumesnapshotcontents.json.gz"
TARBALL = ".tar.gz"


ITEM_OPERATIONS = "-itemoperations.json.gz"
#: S3's answers for a key that is not there (any more): the backup changed under us.
MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
VANISHED = (
    "files disappeared while being read (Velero is deleting or rewriting this backup); "
    "nothing is copied from it now, it is read again next cycle"
)


class ObjectInfo(NamedTuple):
    """What the listing says about one file: enough to tell a changed file from the same.

    A named tuple, not a dataclass: a listing makes one per object every cycle (50,000 at
    10,000 backups), and a tuple is built in C. `last_modified` is the listing's own
    datetime (None when the listing gave no time)."""

    size: int
    etag: str
    last_modified: datetime | None


#: One backup folder's files (name relative to the folder → listing facts).
Folder = Mapping[str, ObjectInfo]


def folder_identity(folder: Folder) -> int:
    """The identity of a folder's content: a hash of every file's name, ETag, size and time.

    Any upload, rewrite (the finalizer's), deletion or re-creation under the same name
    changes it, so a cached reading is reused only while the folder is exactly as read. A
    hash, not the tuple, so 10,000 cached backups cost a few hundred KB, not tens of MB;
    of a frozenset, so the files' order does not matter and need not be sorted.
    """
    return hash(frozenset(folder.items()))


class VeleroReader:
    """Reads the bucket each cycle and remembers readings while their folder is unchanged.

    The cache holds, by backup name, each reading with the identity of the folder it was
    made from (`folder_identity`: names, ETags, sizes, times). Two listings feed it:

    - the **names listing** (`list_backups`, delimiter `/`): one entry per backup,
      ⌈backups/1000⌉ requests. A cycle that finds every name cached with a final reading
      (`reusable_by_name`: terminal phase, files complete, no error) lists nothing more, so a
      warm cycle over a replicated bucket costs that listing and no GET. Names not cached,
      or cached with a reading that may still change (upload in progress, non-terminal
      phase, unreadable), get their own folder listing and are read again when it changed.
    - the **verification listing** (`list_folders`, every object with its ETag): on the
      first cycle, every `verify_every` (the prune interval in the daemon), and whenever
      more folders need a listing of their own than it has pages. It is what catches the
      one change a names listing cannot see: a backup deleted and re-created under its
      name between two cycles (Velero refuses the new backup until the old one's deletion
      finished, so this needs a delete and a create inside one sync interval). Such a
      backup is read again at the next verification, at most `verify_every` later.

    Readings that hit an S3 failure are never cached. Backups that left the bucket leave the
    cache. Changing bucket, schedules or the Failed policy starts a fresh cache.
    """

    def __init__(
        self,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        page_size: int = DEFAULT_PAGE_SIZE,
        verify_every: timedelta = DEFAULT_VERIFY_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._concurrency = concurrency
        self._page_size = page_size
        self._verify_every = verify_every.total_seconds()
        self._clock = clock
        self._cache: dict[str, tuple[int, BackupScan]] = {}
        self._cache_key: tuple[object, ...] | None = None
        self._verified_at: float | None = None
        self._verified_pages = 0

    @property
    def cached(self) -> int:
        """How many backups are cached (for tests and the benchmark)."""
        return len(self._cache)

    async def discover(
        self,
        aws: S3Door,
        *,
        bucket: str,
        prefix: str,
        region: str,
        schedules: Collection[str],
        copy_failed_backups: bool,
        now: datetime | None = None,
        upload_grace: timedelta = DEFAULT_UPLOAD_GRACE,
    ) -> Discovery:
        """List the backups, read the new or changed ones, and return every watched snapshot.

        Raises only when a listing fails (the cycle failed); a backup that cannot be read is
        an `errors` entry. `now` dates the upload grace (default: the clock).
        """
        location = BucketLocation(bucket, prefix.strip("/"), region)
        watched = frozenset(schedules)
        key = (location, watched, copy_failed_backups)
        if key != self._cache_key:
            self._cache, self._cache_key, self._verified_at = {}, key, None
        names, folders = await self._list(aws, location)
        present = set(names)
        self._cache = {n: c for n, c in self._cache.items() if n in present}
        scans = await self._scan(
            aws, location, names, folders, watched=watched, copy_failed_backups=copy_failed_backups
        )
        return build_discovery(
            scans,
            now=now if now is not None else datetime.now(UTC),
            upload_grace=upload_grace,
        )

    async def _list(
        self, aws: S3Door, location: BucketLocation
    ) -> tuple[Collection[str], Mapping[str, Folder]]:
        """The cycle's backup names, and the listed folders of those that need one.

        A name missing from the folders has a final cached reading that is reused as is.
        Whichever costs fewer requests: the verification listing, or the names listing plus
        one listing per folder that needs it (new, or with a reading that may change)."""
        final = {n for n, (_, scan) in self._cache.items() if reusable_by_name(scan)}
        pending = len(self._cache) - len(final)
        if self._verification_due() or pending >= self._verified_pages:
            return await self._verify(aws, location)
        names = await list_backups(aws, location, page_size=self._page_size)
        unsettled = [n for n in names if n not in final and is_valid_backup_name(n)]
        if len(unsettled) > self._verified_pages:
            return await self._verify(aws, location)
        semaphore = asyncio.Semaphore(self._concurrency)

        async def one(name: str) -> Folder:
            async with semaphore:
                folders = await list_folders(aws, location, name=name, page_size=self._page_size)
            return folders.get(name, {})

        listed = await asyncio.gather(*(one(n) for n in unsettled))
        return names, dict(zip(unsettled, listed, strict=True))

    def _verification_due(self) -> bool:
        return self._verified_at is None or (
            self._clock() - self._verified_at >= self._verify_every
        )

    async def _verify(
        self, aws: S3Door, location: BucketLocation
    ) -> tuple[Collection[str], Mapping[str, Folder]]:
        """The verification listing: every folder with every file's ETag."""
        started = self._clock()
        folders = await list_folders(aws, location, page_size=self._page_size)
        objects = sum(len(files) for files in folders.values())
        self._verified_at = started
        self._verified_pages = -(-objects // self._page_size)
        return folders.keys(), folders

    async def _scan(
        self,
        aws: S3Door,
        location: BucketLocation,
        names: Iterable[str],
        folders: Mapping[str, Folder],
        *,
        watched: frozenset[str],
        copy_failed_backups: bool,
    ) -> list[BackupScan]:
        """Every name's reading: reused when cached for the same folder (or final and not
        listed this cycle), read when new or changed. Unchanged and invalid names resolve at
        once: a warm cycle starts no task at all."""
        semaphore = asyncio.Semaphore(self._concurrency)

        async def read(name: str, folder: Folder, identity: int) -> BackupScan:
            async with semaphore:
                result = await read_backup(
                    aws,
                    location,
                    name,
                    folder,
                    schedules=watched,
                    copy_failed_backups=copy_failed_backups,
                )
            if result.settled:
                self._cache[name] = (identity, result)
            else:
                self._cache.pop(name, None)
            return result

        scans: dict[str, BackupScan | asyncio.Task[BackupScan]] = {}
        async with asyncio.TaskGroup() as group:
            for name in names:
                if not is_valid_backup_name(name):
                    scans[name] = _error_scan(name, INVALID_NAME)
                    continue
                cached = self._cache.get(name)
                folder = folders.get(name)
                if folder is None and cached is not None:  # final, not listed this cycle
                    scans[name] = cached[1]
                    continue
                identity = folder_identity(folder or {})
                if cached is not None and cached[0] == identity:
                    scans[name] = cached[1]
                else:
                    scans[name] = group.create_task(
                        read(name, folder or {}, identity), name=f"velero.read:{name[:80]}"
                    )
        return [s.result() if isinstance(s, asyncio.Task) else s for s in scans.values()]


def reusable_by_name(scan: BackupScan) -> bool:
    """Whether a reading stays true as long as its backup keeps its name.

    Velero never rewrites the files of a backup in a terminal phase, so once such a backup
    is read cleanly and completely, only its deletion (the names listing shows it) or a
    re-creation under its name (the verification listing shows it) can change it."""
    return (
        scan.settled
        and scan.backup is not None
        and scan.backup.terminal
        and not scan.missing
        and not scan.errors
    )


def _error_scan(name: str, error: str, *, settled: bool = True) -> BackupScan:
    """A folder that could not be read (not attributable to a schedule, so `watched`)."""
    return BackupScan(name, None, errors=(DiscoveryError(name, error),), settled=settled)


async def list_folders(
    aws: S3Door,
    location: BucketLocation,
    *,
    name: str | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> dict[str, dict[str, ObjectInfo]]:
    """Every backup folder under `<prefix>/backups/` (or only `name`'s) and its files.

    One paginated ListObjectsV2 without delimiter: ⌈objects/1000⌉ requests, each object
    with its ETag, size and time — what tells a changed or re-created backup from the one
    already read, and which files to GET, without a request per backup. Keys directly
    under `backups/` are not backups; pseudo-folder keys (`…/`) make a folder without
    files; nested keys are ignored. Errors propagate: no listing, no cycle.
    """
    root = location.backups_prefix
    folders: dict[str, dict[str, ObjectInfo]] = {}
    async for page in aws.pages(
        "s3",
        location.region,
        "ListObjectsV2",
        Bucket=location.bucket,
        Prefix=root if name is None else location.folder(name),
        PaginationConfig={"PageSize": page_size},
    ):
        _add_listed(folders, root, page.get("Contents") or ())
    return folders


def _add_listed(
    folders: dict[str, dict[str, ObjectInfo]], root: str, contents: Iterable[Any]
) -> None:
    """One listing page's objects into `folders` (see `list_folders`): one tight loop, as
    a warm cycle runs it for every object of the bucket and does little else. The items are
    botocore's parse of the ListObjectsV2 model (`Key`/`ETag` strings, `Size` an int,
    `LastModified` a datetime), so their types are not checked again here."""
    start = len(root)
    for item in contents:
        key: str = item.get("Key") or ""
        if not key.startswith(root):
            continue
        name, slash, relative = key[start:].partition("/")
        if not name or not slash:
            continue
        files = folders.get(name)
        if files is None:
            files = folders[name] = {}
        if relative and "/" not in relative:
            files[relative] = ObjectInfo(
                int(item.get("Size") or 0), item.get("ETag") or "", item.get("LastModified")
            )


async def list_backups(
    aws: S3Door, location: BucketLocation, *, page_size: int = DEFAULT_PAGE_SIZE
) -> list[str]:
    """Backup names: the folders under `<prefix>/backups/`, from a listing with delimiter
    `/` that answers one entry per folder — ⌈folders/1000⌉ requests however many files
    each folder holds. Names only: a backup re-created under its name looks the same here;
    `VeleroReader` verifies with `list_folders` and its ETags for that. Keys directly under
    `backups/` are not backups."""
    root = location.backups_prefix
    names: list[str] = []
    async for page in aws.pages(
        "s3",
        location.region,
        "ListObjectsV2",
        Bucket=location.bucket,
        Prefix=root,
        Delimiter="/",
        PaginationConfig={"PageSize": page_size},
    ):
        for item in page.get("CommonPrefixes") or ():
            prefix = str(item.get("Prefix") or "") if isinstance(item, dict) else ""
            name = prefix[len(root) :].rstrip("/")
            if prefix.startswith(root) and name:
                names.append(name)
    return names


async def list_backup_files(aws: S3Door, location: BucketLocation, name: str) -> dict[str, int]:
    """File name → size of one backup folder, so only files that exist are fetched."""
    folders = await list_folders(aws, location, name=name)
    return {file: info.size for file, info in folders.get(name, {}).items()}


def _newest(folder: Folder) -> datetime | None:
    """The time of the newest file of a folder, when the listing gave times."""
    times = [i.last_modified for i in folder.values() if i.last_modified is not None]
    return max(times, default=None)


class _VanishedError(Exception):
    """A listed file was gone when fetched: the backup is being deleted or re-created."""


async def read_backup(
    aws: S3Door,
    location: BucketLocation,
    name: str,
    folder: Folder,
    *,
    schedules: Collection[str],
    copy_failed_backups: bool,
) -> BackupScan:
    """Read one backup folder into a BackupScan; every failure becomes an errors entry.

    A file that vanished between the listing and its GET is the backup changing under us
    (Velero deleting it): a skip, read again next cycle, never an AWS error.
    """
    try:
        return await _read_backup(
            aws,
            location,
            name,
            folder,
            schedules=schedules,
            copy_failed_backups=copy_failed_backups,
        )
    except _VanishedError:
        return BackupScan(name, None, skipped=(Skip(name, VANISHED),), settled=False)
    except BackupReadError as exc:
        return _error_scan(name, str(exc))
    except AwsError as exc:
        return _error_scan(
            name,
            f"could not read the backup from S3: {exc}; nothing is copied from it until it is "
            "read, tried again next cycle",
            settled=False,
        )
    except Exception as exc:  # noqa: BLE001 - one bad backup must never stop the others
        return _error_scan(
            name, f"unexpected {type(exc).__name__} reading the backup: {exc}", settled=False
        )


async def _read_backup(
    aws: S3Door,
    location: BucketLocation,
    name: str,
    folder: Folder,
    *,
    schedules: Collection[str],
    copy_failed_backups: bool,
) -> BackupScan:
    """velero-backup.json first; the other files only for a watched, copyable backup."""
    if BACKUP_FILE not in folder:
        return BackupScan(name, None, missing=(BACKUP_FILE,), uploaded_at=_newest(folder))
    raw = await _get_bytes(aws, location, location.folder(name) + BACKUP_FILE)
    document = await _off_loop_if_large(parse_backup_document, name, raw)
    backup = document.backup
    if backup.schedule not in schedules or backup_gate(backup, copy_failed_backups) is not None:
        return build_scan(
            backup, None, schedules=schedules, copy_failed_backups=copy_failed_backups
        )
    files, settled = await _read_files(aws, location, name, folder, document)
    scan = build_scan(backup, files, schedules=schedules, copy_failed_backups=copy_failed_backups)
    return scan if settled else dataclasses.replace(scan, settled=False)


#: Snapshot files: suffix → (the parser's name for the file in messages, parser).
_FILE_PARSERS: dict[str, tuple[str, Callable[[bytes], Any]]] = {
    VOLUME_SNAPSHOTS: ("volumesnapshots file", parse_volume_snapshots),
    VOLUME_INFO: ("volumeinfo file", parse_volume_info),
    CSI_SNAPSHOTS: ("csi-volumesnapshots file", parse_csi_volume_snapshots),
    CSI_CONTENTS: ("csi-volumesnapshotcontents file", parse_csi_volume_snapshot_contents),
    ITEM_OPERATIONS: ("itemoperations file", parse_item_operations),
}
#: Files whose entries are also counted as written (every provider) for the checklist.
_CENSUS: dict[str, Callable[[bytes], Any]] = {
    VOLUME_SNAPSHOTS: count_native_entries,
    VOLUME_INFO: count_volume_info_csi,
}


def _name_file(message: str, label: str, file_name: str) -> str:
    """Say which file a parser's message is about: "volumeinfo file entry 2: …" → its name."""
    return file_name + message[len(label) :] if message.startswith(label) else message


async def _read_files(
    aws: S3Door,
    location: BucketLocation,
    name: str,
    folder: Folder,
    document: BackupDocument,
) -> tuple[BackupFiles, bool]:
    """GET and parse every snapshot file present, then the tarball; problems are collected.

    The itemoperations file is read only when `status` counts item operations. The flag
    is False when an S3 read failed (the reading must not be cached).
    """
    results: dict[str, Any] = {}
    census: dict[str, Any] = {}
    problems: list[str] = []
    failed_reads: list[str] = []
    wanted = [
        suffix
        for suffix in _FILE_PARSERS
        if name + suffix in folder
        and (suffix != ITEM_OPERATIONS or document.counts.item_operations_attempted)
    ]

    async def fetch(suffix: str) -> None:
        label, parser = _FILE_PARSERS[suffix]
        file_name = name + suffix
        try:
            raw = await _get_bytes(aws, location, location.folder(name) + file_name)
            results[suffix] = await _off_loop_if_large(parser, raw)
            if suffix in _CENSUS:
                census[suffix] = await _off_loop_if_large(_CENSUS[suffix], raw)
        except BackupReadError as exc:
            results.pop(suffix, None)
            problems.append(_name_file(str(exc), label, file_name))
        except _VanishedError:
            raise
        except AwsError as exc:
            problems.append(f"{file_name}: could not read from S3: {exc}")
            failed_reads.append(file_name)

    try:
        async with asyncio.TaskGroup() as group:
            for suffix in wanted:
                group.create_task(fetch(suffix), name=f"velero.get:{name[:80]}{suffix}")
    except ExceptionGroup as failed:
        if failed.subgroup(_VanishedError) is not None:
            raise _VanishedError from failed
        raise first_error(failed) from failed
    tarball, tarball_problem = await _read_tarball(aws, location, name, folder, failed_reads)
    natives = census.get(VOLUME_SNAPSHOTS)
    files = BackupFiles(
        native_snapshots_completed=document.native_snapshots_completed,
        volume_snapshots=results.get(VOLUME_SNAPSHOTS),
        volume_info=results.get(VOLUME_INFO),
        csi_snapshots=results.get(CSI_SNAPSHOTS),
        csi_contents=results.get(CSI_CONTENTS),
        tarball=tarball,
        problems=tuple(sorted(problems)),
        tarball_problem=tarball_problem,
        counts=document.counts,
        listed=frozenset(folder),
        native_entries=natives[0] if natives else None,
        native_completed_entries=natives[1] if natives else None,
        volume_info_csi_entries=census.get(VOLUME_INFO),
        item_operations=results.get(ITEM_OPERATIONS),
    )
    return files, not failed_reads


async def _read_tarball(
    aws: S3Door, location: BucketLocation, name: str, folder: Folder, failed_reads: list[str]
) -> tuple[TarballResources | None, str | None]:
    """Stream `<name>.tar.gz` to a spooled temp file and parse it in a thread."""
    file_name = name + TARBALL
    if file_name not in folder:
        return None, f"{file_name} is missing"
    try:
        with tempfile.SpooledTemporaryFile(max_size=TARBALL_SPOOL_MEMORY) as spool:
            await _download(aws, location, location.folder(name) + file_name, spool)
            spool.seek(0)
            return await asyncio.to_thread(parse_tarball, spool), None
    except BackupReadError as exc:
        return None, _name_file(str(exc), "tarball", file_name)
    except AwsError as exc:
        failed_reads.append(file_name)
        return None, f"{file_name}: could not read from S3: {exc}"


async def _get_object(aws: S3Door, location: BucketLocation, key: str) -> Any:
    """GetObject of a listed key; a key gone since the listing raises `_VanishedError`.

    S3's "no such key" is expected here (Velero deletes backups, and an interrupted upload
    leaves holes), so it is not counted as an AWS error.
    """
    try:
        return await aws.call(
            "s3",
            location.region,
            "GetObject",
            Bucket=location.bucket,
            Key=key,
            expected_codes=MISSING_CODES,
        )
    except PermanentError as exc:
        if exc.code in MISSING_CODES:
            raise _VanishedError(key) from exc
        raise


async def _get_bytes(aws: S3Door, location: BucketLocation, key: str) -> bytes:
    """GET one small object into memory (refusing anything implausibly large)."""
    response = await _get_object(aws, location, key)
    size = int(response.get("ContentLength") or 0)
    if size > MAX_OBJECT_BYTES:
        raise BackupReadError(f"{key.rsplit('/', 1)[-1]}: {size} bytes is too large to read")
    body = response["Body"]
    async with body:
        data: bytes = await body.read()
    return data


async def _download(aws: S3Door, location: BucketLocation, key: str, sink: IO[bytes]) -> None:
    """GET one object in chunks into `sink`; the writes (which may hit disk) run in a thread."""
    response = await _get_object(aws, location, key)
    body = response["Body"]
    async with body:  # releases the connection, also on error
        while chunk := await body.read(TARBALL_CHUNK):
            await asyncio.to_thread(sink.write, chunk)


async def _off_loop_if_large(function: Callable[..., T], *args: Any) -> T:
    """Parse small files inline, large ones (gzip + JSON is CPU work) in a thread."""
    size = max((len(a) for a in args if isinstance(a, bytes)), default=0)
    if size > INLINE_LIMIT:
        return await asyncio.to_thread(function, *args)
    return function(*args)
