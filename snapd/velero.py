"""Velero's bucket: which EBS snapshots the backups of the watched schedules own.

Owns: listing `<prefix>/backups/`, reading each backup's files (parsed, every Velero version's
quirks, in `velero_files.py`), turning them into `Backup` / `SourceSnapshot` records with the
reason for everything left out (`build_*`), and the in-memory cache that makes a warm cycle
cost one paginated listing and no GET.

Must not: touch EC2 (`inventory` does), decide what to copy (`planner` does), GET a key it has
not seen in a listing (except `velero-backup.json`, the one file every backup has), or let
one bad backup stop the others — a backup that cannot be read becomes an `errors` entry and
the rest proceed. Only a failure to *list* the bucket escapes, as a cycle failure. The
`build_*` functions are pure, like the parsers: records in, records out, no I/O, no clock,
no logging; they raise `BackupReadError` (and nothing else) on bad input.

S3 is reached only through an `AwsClients`-shaped door (`S3Door`), so this module does not
import `snapd.aws` (a sibling in the layer contract).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any, Protocol, TypeVar

from snapd.errors import AwsError, BackupReadError, PermanentError
from snapd.models import (
    TERMINAL_PHASES,
    Backup,
    BackupScan,
    Discovery,
    DiscoveryError,
    Skip,
    SnapshotMethod,
    SourceSnapshot,
)
from snapd.velero_files import (
    BACKUP_FILE,
    TARBALL_CHUNK,
    BackupFiles,
    CsiContent,
    CsiVolumeSnapshot,
    PersistentVolume,
    TarballResources,
    gib,
    is_valid_backup_name,
    parse_backup_document,
    parse_csi_volume_snapshot_contents,
    parse_csi_volume_snapshots,
    parse_tarball,
    parse_volume_info,
    parse_volume_snapshots,
    valid_label,
)

NO_BACKUP_FILE = "no velero-backup.json: upload interrupted or still in progress"
INVALID_NAME = (
    "backup folder name is not a valid Kubernetes object name "
    "(lowercase DNS-1123 subdomain, at most 253 characters); not read"
)
INLINE_LIMIT = 256 << 10
MAX_OBJECT_BYTES = 64 << 20
TARBALL_SPOOL_MEMORY = 8 << 20
DEFAULT_CONCURRENCY = 16
DEFAULT_PAGE_SIZE = 1000

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
    """A SourceSnapshot being assembled; `fill` never overwrites a better source's value."""

    snapshot_id: str
    method: SnapshotMethod
    namespace: str | None = None
    pvc: str | None = None
    pv: str | None = None
    volume_id: str | None = None
    availability_zone: str | None = None
    volume_type: str | None = None
    iops: int | None = None
    storage_class: str | None = None
    fs_type: str | None = None
    csi_driver: str | None = None
    access_modes: tuple[str, ...] = ()
    volume_mode: str | None = None
    size_gib: int | None = None

    def fill(self, **values: Any) -> None:
        """Set each field that is still unknown; sources are applied best first."""
        for name, value in values.items():
            if value in (None, (), "") or getattr(self, name) not in (None, ()):
                continue
            setattr(self, name, value)

    def fill_claim(self, namespace: str | None, pvc: str | None) -> None:
        """Namespace and PVC come as a pair: never mix one source's namespace with another's."""
        if self.pvc is None and pvc:
            self.namespace, self.pvc = namespace, pvc


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
    if backup.schedule is None or backup.schedule not in schedules:
        return BackupScan(backup.name, backup, watched=False)
    gate = backup_gate(backup, copy_failed_backups)
    if gate is not None:
        return BackupScan(backup.name, backup, skipped=(gate,))
    files = files or BackupFiles()
    errors = [DiscoveryError(backup.name, problem) for problem in files.problems]
    if backup.start_time is None:
        errors.append(
            DiscoveryError(backup.name, f"{BACKUP_FILE} has no startTimestamp or creationTimestamp")
        )
        return BackupScan(backup.name, backup, errors=tuple(errors))
    drafts, skipped = _collect(backup, files)
    if files.tarball is not None:
        for draft in drafts.values():
            _enrich(draft, files.tarball)
    errors.extend(_consistency_errors(backup, files, drafts))
    snapshots = tuple(
        _source_snapshot(draft, backup, backup.start_time) for draft in drafts.values()
    )
    return BackupScan(
        backup.name, backup, snapshots=snapshots, skipped=tuple(skipped), errors=tuple(errors)
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
    if draft.pv and draft.pv in tarball.pvs:
        return tarball.pvs[draft.pv]
    if draft.pvc:
        claim = tarball.pvcs.get((draft.namespace or "", draft.pvc))
        if claim and claim.volume_name and claim.volume_name in tarball.pvs:
            return tarball.pvs[claim.volume_name]
        for pv in tarball.pvs.values():
            if (pv.claim_namespace, pv.claim_name) == (draft.namespace, draft.pvc):
                return pv
    if draft.volume_id:
        for pv in tarball.pvs.values():
            if pv.volume_id == draft.volume_id:
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
    claim = tarball.pvcs.get((draft.namespace or "", draft.pvc or ""))
    if claim is not None:
        draft.fill(
            storage_class=claim.storage_class,
            access_modes=claim.access_modes,
            volume_mode=claim.volume_mode,
        )


def _consistency_errors(
    backup: Backup, files: BackupFiles, drafts: Mapping[str, _Draft]
) -> list[DiscoveryError]:
    """Problems that make this reading incomplete, so it is not cached and is read again.

    - velero-backup.json counts more native snapshots than the files list: a snapshot file is
      missing or not uploaded yet (Velero uploads them after velero-backup.json).
    - the tarball could not be used and snapshots lack their PVC or PV details: they are
      still copied (a copy without details beats no copy), and the operator is told.
    """
    errors: list[DiscoveryError] = []
    native = sum(1 for d in drafts.values() if d.method is SnapshotMethod.NATIVE)
    failed_natives = sum(1 for n in files.volume_snapshots or () if n.failed)
    if files.native_snapshots_completed > native and not files.problems:
        errors.append(
            DiscoveryError(
                backup.name,
                f"{BACKUP_FILE} records {files.native_snapshots_completed} native snapshots "
                f"but the snapshot files list {native} (and {failed_natives} failed): "
                f"{backup.name}-volumesnapshots.json.gz is missing or incomplete",
            )
        )
    if files.tarball_problem and drafts:
        missing = [d.snapshot_id for d in drafts.values() if not d.pvc or not d.access_modes]
        if missing:
            errors.append(
                DiscoveryError(
                    backup.name,
                    f"{files.tarball_problem}; {len(missing)} snapshot(s) are copied without "
                    "their PVC or PV details (storage class, fs type, access modes)",
                )
            )
    return errors


def _source_snapshot(draft: _Draft, backup: Backup, backup_time: datetime) -> SourceSnapshot:
    """The frozen record of a finished draft."""
    return SourceSnapshot(
        snapshot_id=draft.snapshot_id,
        backup=backup.name,
        schedule=backup.schedule or "",
        backup_time=backup_time,
        phase=backup.phase,
        method=draft.method,
        namespace=draft.namespace,
        pvc=draft.pvc,
        pv=draft.pv,
        volume_id=draft.volume_id,
        availability_zone=draft.availability_zone,
        volume_type=draft.volume_type,
        iops=draft.iops,
        storage_class=draft.storage_class,
        fs_type=draft.fs_type,
        csi_driver=draft.csi_driver,
        access_modes=draft.access_modes,
        volume_mode=draft.volume_mode,
        size_gib=draft.size_gib,
    )


def build_discovery(scans: Iterable[BackupScan]) -> Discovery:
    """All scans of a cycle → one Discovery; a snapshot id claimed twice is reported once."""
    snapshots: dict[str, SourceSnapshot] = {}
    skipped: list[Skip] = []
    errors: list[DiscoveryError] = []
    backups: list[Backup] = []
    kept: list[BackupScan] = []
    for scan in scans:
        kept.append(scan)
        if scan.backup is not None:
            backups.append(scan.backup)
        skipped.extend(scan.skipped)
        errors.extend(scan.errors)
        for snapshot in scan.snapshots:
            snapshots.setdefault(snapshot.snapshot_id, snapshot)
    return Discovery(
        snapshots=tuple(snapshots.values()),
        skipped=tuple(skipped),
        errors=tuple(errors),
        backups=tuple(backups),
        scans=tuple(kept),
    )


# ---------------------------------------------------------------------------------------------
# S3: listing, reading, caching
# ---------------------------------------------------------------------------------------------


class S3Door(Protocol):
    """The part of `snapd.aws.AwsClients` this module uses (calls are counted there)."""

    def call(self, service: str, region: str, operation: str, **params: Any) -> Awaitable[Any]:
        """One AWS call, errors mapped to `AwsError`."""
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


class VeleroReader:
    """Reads the bucket each cycle and remembers what can never change.

    The cache (by backup name) holds every scan that is terminal and parsed cleanly,
    watched or not, so a warm cycle is one paginated listing. Backups that left the bucket
    leave the cache. Changing bucket, schedules or the Failed policy starts a fresh cache.
    """

    def __init__(
        self, *, concurrency: int = DEFAULT_CONCURRENCY, page_size: int = DEFAULT_PAGE_SIZE
    ) -> None:
        self._concurrency = concurrency
        self._page_size = page_size
        self._cache: dict[str, BackupScan] = {}
        self._cache_key: tuple[object, ...] | None = None

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
    ) -> Discovery:
        """List the backups, read the new ones, and return every watched snapshot.

        Raises only when the listing itself fails (the cycle failed); a backup that cannot
        be read is an `errors` entry.
        """
        location = BucketLocation(bucket, prefix.strip("/"), region)
        watched = frozenset(schedules)
        key = (location, watched, copy_failed_backups)
        if key != self._cache_key:
            self._cache, self._cache_key = {}, key
        names = await list_backups(aws, location, page_size=self._page_size)
        listed = set(names)
        self._cache = {n: s for n, s in self._cache.items() if n in listed}
        semaphore = asyncio.Semaphore(self._concurrency)

        async def read(name: str) -> BackupScan:
            async with semaphore:
                result = await read_backup(
                    aws, location, name, schedules=watched, copy_failed_backups=copy_failed_backups
                )
            if result.cacheable:
                self._cache[name] = result
            return result

        # Cached and invalid names resolve at once: a warm cycle starts no task at all.
        scans: dict[str, BackupScan | asyncio.Task[BackupScan]] = {}
        async with asyncio.TaskGroup() as group:
            for name in names:
                if not is_valid_backup_name(name):
                    scans[name] = _error_scan(name, INVALID_NAME)
                elif name in self._cache:
                    scans[name] = self._cache[name]
                else:
                    scans[name] = group.create_task(read(name), name=f"velero.read:{name[:80]}")
        return build_discovery(
            scan.result() if isinstance(scan, asyncio.Task) else scan for scan in scans.values()
        )


def _error_scan(name: str, error: str) -> BackupScan:
    """A folder that could not be read (not attributable to a schedule, so `watched`)."""
    return BackupScan(name, None, errors=(DiscoveryError(name, error),))


async def list_backups(
    aws: S3Door, location: BucketLocation, *, page_size: int = DEFAULT_PAGE_SIZE
) -> list[str]:
    """Backup names: the common prefixes under `<prefix>/backups/` (delimiter `/`).

    Keys directly under `backups/` (pseudo-folder keys ending in `/`, stray files) are not
    backups. Pages without CommonPrefixes are normal. Errors propagate: no listing, no cycle.
    """
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
        for common in page.get("CommonPrefixes") or ():
            prefix = common.get("Prefix") if isinstance(common, dict) else None
            if not prefix or not prefix.startswith(root):
                continue
            name = prefix[len(root) :].removesuffix("/")
            if name:
                names.append(name)
    return names


async def list_backup_files(aws: S3Door, location: BucketLocation, name: str) -> dict[str, int]:
    """File name → size of one backup folder, so only files that exist are fetched."""
    folder = location.folder(name)
    files: dict[str, int] = {}
    async for page in aws.pages(
        "s3", location.region, "ListObjectsV2", Bucket=location.bucket, Prefix=folder
    ):
        for item in page.get("Contents") or ():
            key = str(item.get("Key") or "")
            relative = key[len(folder) :]
            if not key.startswith(folder) or not relative or "/" in relative:
                continue  # pseudo-folder keys and anything nested
            files[relative] = int(item.get("Size") or 0)
    return files


async def read_backup(
    aws: S3Door,
    location: BucketLocation,
    name: str,
    *,
    schedules: Collection[str],
    copy_failed_backups: bool,
) -> BackupScan:
    """Read one backup folder into a BackupScan; every failure becomes an errors entry."""
    try:
        return await _read_backup(aws, location, name, schedules, copy_failed_backups)
    except BackupReadError as exc:
        return _error_scan(name, str(exc))
    except AwsError as exc:
        return _error_scan(name, f"could not read the backup from S3: {exc}")
    except Exception as exc:  # noqa: BLE001 - one bad backup must never stop the others
        return _error_scan(name, f"unexpected {type(exc).__name__} reading the backup: {exc}")


async def _read_backup(
    aws: S3Door,
    location: BucketLocation,
    name: str,
    schedules: Collection[str],
    copy_failed_backups: bool,
) -> BackupScan:
    """velero-backup.json first; the other files only for a watched, copyable backup."""
    folder = location.folder(name)
    try:
        raw = await _get_bytes(aws, location, folder + BACKUP_FILE)
    except PermanentError as exc:
        if exc.code in ("NoSuchKey", "404", "NotFound"):
            return _error_scan(name, NO_BACKUP_FILE)
        raise
    document = await _off_loop_if_large(parse_backup_document, name, raw)
    backup = document.backup
    if backup.schedule not in schedules or backup_gate(backup, copy_failed_backups) is not None:
        return build_scan(
            backup, None, schedules=schedules, copy_failed_backups=copy_failed_backups
        )
    listing = await list_backup_files(aws, location, name)
    files = await _read_files(aws, location, name, listing, document.native_snapshots_completed)
    return build_scan(backup, files, schedules=schedules, copy_failed_backups=copy_failed_backups)


#: Snapshot files: suffix → (the parser's name for the file in messages, parser).
_FILE_PARSERS: dict[str, tuple[str, Callable[[bytes], Any]]] = {
    VOLUME_SNAPSHOTS: ("volumesnapshots file", parse_volume_snapshots),
    VOLUME_INFO: ("volumeinfo file", parse_volume_info),
    CSI_SNAPSHOTS: ("csi-volumesnapshots file", parse_csi_volume_snapshots),
    CSI_CONTENTS: ("csi-volumesnapshotcontents file", parse_csi_volume_snapshot_contents),
}


def _name_file(message: str, label: str, file_name: str) -> str:
    """Say which file a parser's message is about: "volumeinfo file entry 2: …" → its name."""
    return file_name + message[len(label) :] if message.startswith(label) else message


async def _read_files(
    aws: S3Door,
    location: BucketLocation,
    name: str,
    listing: Mapping[str, int],
    native_snapshots_completed: int,
) -> BackupFiles:
    """GET and parse every snapshot file present, then the tarball; problems are collected."""
    results: dict[str, Any] = {}
    problems: list[str] = []
    if name + VOLUME_SNAPSHOTS not in listing:
        # Velero uploads it with every backup (v0.10+), after velero-backup.json: without it
        # the upload is cut or still running, and a reading now must not be cached.
        problems.append(f"{name}{VOLUME_SNAPSHOTS} missing: upload incomplete or in progress")

    async def fetch(suffix: str) -> None:
        label, parser = _FILE_PARSERS[suffix]
        file_name = name + suffix
        try:
            raw = await _get_bytes(aws, location, location.folder(name) + file_name)
            results[suffix] = await _off_loop_if_large(parser, raw)
        except BackupReadError as exc:
            problems.append(_name_file(str(exc), label, file_name))
        except AwsError as exc:
            problems.append(f"{file_name}: could not read from S3: {exc}")

    async with asyncio.TaskGroup() as group:
        for suffix in _FILE_PARSERS:
            if name + suffix in listing:
                group.create_task(fetch(suffix), name=f"velero.get:{name[:80]}{suffix}")
    tarball, tarball_problem = await _read_tarball(aws, location, name, listing)
    return BackupFiles(
        native_snapshots_completed=native_snapshots_completed,
        volume_snapshots=results.get(VOLUME_SNAPSHOTS),
        volume_info=results.get(VOLUME_INFO),
        csi_snapshots=results.get(CSI_SNAPSHOTS),
        csi_contents=results.get(CSI_CONTENTS),
        tarball=tarball,
        problems=tuple(sorted(problems)),
        tarball_problem=tarball_problem,
    )


async def _read_tarball(
    aws: S3Door, location: BucketLocation, name: str, listing: Mapping[str, int]
) -> tuple[TarballResources | None, str | None]:
    """Stream `<name>.tar.gz` to a spooled temp file and parse it in a thread."""
    file_name = name + TARBALL
    if file_name not in listing:
        return None, f"no {file_name} in the backup folder"
    try:
        with tempfile.SpooledTemporaryFile(max_size=TARBALL_SPOOL_MEMORY) as spool:
            await _download(aws, location, location.folder(name) + file_name, spool)
            spool.seek(0)
            return await asyncio.to_thread(parse_tarball, spool), None
    except BackupReadError as exc:
        return None, _name_file(str(exc), "tarball", file_name)
    except AwsError as exc:
        return None, f"{file_name}: could not read from S3: {exc}"


async def _get_bytes(aws: S3Door, location: BucketLocation, key: str) -> bytes:
    """GET one small object into memory (refusing anything implausibly large)."""
    response = await aws.call("s3", location.region, "GetObject", Bucket=location.bucket, Key=key)
    size = int(response.get("ContentLength") or 0)
    if size > MAX_OBJECT_BYTES:
        raise BackupReadError(f"{key.rsplit('/', 1)[-1]}: {size} bytes is too large to read")
    body = response["Body"]
    async with body:
        data: bytes = await body.read()
    return data


async def _download(aws: S3Door, location: BucketLocation, key: str, sink: IO[bytes]) -> None:
    """GET one object in chunks into `sink`; the writes (which may hit disk) run in a thread."""
    response = await aws.call("s3", location.region, "GetObject", Bucket=location.bucket, Key=key)
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
