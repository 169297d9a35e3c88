"""Velero's bucket: which EBS snapshots the backups of the watched schedules own.

Owns: listing `<prefix>/backups/`, reading each backup's files (velero-format.md §1–§8,
every Velero version's quirks), turning them into `Backup` / `SourceSnapshot` records with
the reason for everything left out, and the in-memory cache that makes a warm cycle cost one
paginated listing and no GET.

Must not: touch EC2 (`inventory` does), decide what to copy (`planner` does), GET a key it has
not seen in a listing (except `velero-backup.json`, the one file every backup has), or let
one bad backup stop the others — a backup that cannot be read becomes an `errors` entry and
the rest proceed. Only a failure to *list* the bucket escapes, as a cycle failure. The
`parse_*` and `build_*` functions are pure: bytes or records in, records out, no I/O, no
clock, no logging; they raise `BackupReadError` (and nothing else) on bad input.

S3 is reached only through an `AwsClients`-shaped door (`S3Door`), so this module does not
import `snapd.aws` (a sibling in the layer contract).
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import math
import re
import tarfile
import tempfile
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
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

SCHEDULE_LABEL = "velero.io/schedule-name"
BACKUP_NAME_LABEL = "velero.io/backup-name"
EBS_CSI_DRIVER = "ebs.csi.aws.com"

#: PV labels that carry the zone, strongest first (velero-format §3.1, §7.3).
ZONE_LABELS = ("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone")
#: nodeAffinity keys that carry an EBS volume's zone (the driver's key, the well-known one,
#: the deprecated one).
ZONE_AFFINITY_KEYS = (
    "topology.ebs.csi.aws.com/zone",
    "topology.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/zone",
)

BACKUP_FILE = "velero-backup.json"
NO_BACKUP_FILE = "no velero-backup.json: upload interrupted or still in progress"
INVALID_NAME = (
    "backup folder name is not a valid Kubernetes object name "
    "(lowercase DNS-1123 subdomain, at most 253 characters); not read"
)
DATA_MOVER_UNKNOWN = "unknown"

#: Files above this size (compressed) are decompressed and parsed off the event loop.
INLINE_LIMIT = 256 << 10
#: A small JSON file larger than this (compressed) is refused rather than held in memory.
MAX_OBJECT_BYTES = 64 << 20
#: Decompressed size cap: a gzip bomb must not exhaust the pod's memory.
MAX_DECOMPRESSED_BYTES = 256 << 20
#: One resource JSON inside the tarball; Kubernetes objects are far smaller (etcd caps 1.5 MB).
MAX_MEMBER_BYTES = 16 << 20
#: Tarball download: chunk size and how much is kept in memory before spilling to disk.
TARBALL_CHUNK = 1 << 20
TARBALL_SPOOL_MEMORY = 8 << 20
#: Backups read at once on a cold cycle.
DEFAULT_CONCURRENCY = 16
#: S3 returns at most 1000 keys/prefixes per ListObjectsV2 page.
DEFAULT_PAGE_SIZE = 1000

_MAX_NAME = 253
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_SNAPSHOT_ID = re.compile(r"^snap-[0-9a-f]{8,32}$")
_VOLUME_ID = re.compile(r"vol-[0-9a-f]{8,32}")
_IN_TREE_AZ = re.compile(r"^aws://([a-z0-9-]+)/")
_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(?P<exponent>[eE][+-]?[0-9]+)|(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E))?$"
)
_QUANTITY_FACTORS = {
    None: Decimal(1),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_GIB = 2**30
#: Tarball members we read; everything else is skipped without decompressing into memory.
_PV = "persistentvolumes"
_PVC = "persistentvolumeclaims"
_VS = "volumesnapshots.snapshot.storage.k8s.io"
_VSC = "volumesnapshotcontents.snapshot.storage.k8s.io"
_WANTED_RESOURCES = frozenset({_PV, _PVC, _VS, _VSC})
_RESOURCE_PATH = re.compile(
    r"^resources/(?P<resource>[^/]+)/(?:(?P<version>[^/]+)-preferredversion/)?"
    r"(?:cluster|namespaces/(?P<namespace>[^/]+))/(?P<name>[^/]+)\.json$"
)

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# Records parsed from Velero's files (the intermediate shape between bytes and SourceSnapshot)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BackupDocument:
    """`velero-backup.json`: the `Backup` record plus the counter used to spot missing files."""

    backup: Backup
    #: `status.volumeSnapshotsCompleted`: native snapshots Velero says it took (0 when absent).
    native_snapshots_completed: int = 0


@dataclass(frozen=True, slots=True)
class NativeEntry:
    """One entry of `-volumesnapshots.json.gz`; `snapshot_id` None means Velero failed it."""

    pv: str | None
    snapshot_id: str | None
    phase: str | None = None
    volume_id: str | None = None
    availability_zone: str | None = None
    volume_type: str | None = None
    iops: int | None = None

    @property
    def failed(self) -> bool:
        return self.snapshot_id is None or self.phase == "Failed"


@dataclass(frozen=True, slots=True)
class VolumeInfoEntry:
    """One EBS entry of `-volumeinfo.json.gz` (native or CSI; the others are dropped)."""

    method: SnapshotMethod
    snapshot_id: str | None
    namespace: str | None = None
    pvc: str | None = None
    pv: str | None = None
    availability_zone: str | None = None
    volume_type: str | None = None
    iops: int | None = None
    csi_driver: str | None = None
    size_bytes: int | None = None
    failed: bool = False


@dataclass(frozen=True, slots=True)
class CsiVolumeSnapshot:
    """A VolumeSnapshot (from `-csi-volumesnapshots.json.gz` or the tarball)."""

    namespace: str | None
    name: str | None
    pvc: str | None
    content_name: str | None
    restore_size_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class CsiContent:
    """A VolumeSnapshotContent; `snapshot_id` is its `status.snapshotHandle` when EBS."""

    name: str | None
    snapshot_id: str | None
    volume_id: str | None = None
    driver: str | None = None
    restore_size_bytes: int | None = None
    #: `spec.volumeSnapshotRef`: trustworthy only in the tarball (fake in v1.9–v1.11 files).
    ref_namespace: str | None = None
    ref_name: str | None = None
    backup_label: str | None = None


@dataclass(frozen=True, slots=True)
class PersistentVolume:
    """What a PV in the tarball says about the volume, enough to rebuild it (§7.3)."""

    name: str
    claim_namespace: str | None = None
    claim_name: str | None = None
    volume_id: str | None = None
    csi_driver: str | None = None
    fs_type: str | None = None
    storage_class: str | None = None
    access_modes: tuple[str, ...] = ()
    volume_mode: str | None = None
    size_gib: int | None = None
    availability_zone: str | None = None


@dataclass(frozen=True, slots=True)
class PersistentVolumeClaim:
    """A PVC in the tarball: the PV it is bound to and the fields a PV may lack."""

    namespace: str
    name: str
    volume_name: str | None = None
    storage_class: str | None = None
    access_modes: tuple[str, ...] = ()
    volume_mode: str | None = None


@dataclass(frozen=True, slots=True)
class TarballResources:
    """The few resources snapd reads from `<name>.tar.gz`, deduplicated."""

    pvs: Mapping[str, PersistentVolume] = field(default_factory=dict)
    pvcs: Mapping[tuple[str, str], PersistentVolumeClaim] = field(default_factory=dict)
    volume_snapshots: tuple[CsiVolumeSnapshot, ...] = ()
    contents: tuple[CsiContent, ...] = ()


@dataclass(frozen=True, slots=True)
class BackupFiles:
    """One backup's parsed files; None = the file is absent (or could not be read)."""

    native_snapshots_completed: int = 0
    volume_snapshots: tuple[NativeEntry, ...] | None = None
    volume_info: tuple[VolumeInfoEntry, ...] | None = None
    csi_snapshots: tuple[CsiVolumeSnapshot, ...] | None = None
    csi_contents: tuple[CsiContent, ...] | None = None
    tarball: TarballResources | None = None
    #: Snapshot files that could not be read, each "<file>: <reason>".
    problems: tuple[str, ...] = ()
    #: Why the tarball could not be used, if it could not.
    tarball_problem: str | None = None


# ---------------------------------------------------------------------------------------------
# Small pure helpers: typed access into untrusted JSON
# ---------------------------------------------------------------------------------------------


def _kind(value: object) -> str:
    """A JSON type name for error messages (`bool` before `int`: bool is an int in Python)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _at(obj: object, path: str, where: str) -> object:
    """Walk a dotted path; a missing or null step is None, a non-object step is an error."""
    current = obj
    walked: list[str] = []
    for key in path.split("."):
        if current is None:
            return None
        if not isinstance(current, dict):
            place = ".".join(walked) or "the entry"
            raise BackupReadError(f"{where}: {place} should be an object, got {_kind(current)}")
        current = current.get(key)
        walked.append(key)
    return current


def _str(value: object, where: str, path: str) -> str | None:
    """A string field; Go's omitempty and null both mean absent, so "" and null are None."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BackupReadError(f"{where}: {path} should be a string, got {_kind(value)}")
    return value


def _str_at(obj: object, path: str, where: str) -> str | None:
    return _str(_at(obj, path, where), where, path)


def _int_at(obj: object, path: str, where: str) -> int | None:
    """An integer field; Velero writes some (volumeinfo `iops`) as decimal strings."""
    value = _at(obj, path, where)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise BackupReadError(f"{where}: {path} should be a number, got boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,19}", value):
        return int(value)
    raise BackupReadError(f"{where}: {path} should be an integer, got {_kind(value)} {value!r:.40}")


def _bool_at(obj: object, path: str, where: str) -> bool:
    value = _at(obj, path, where)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise BackupReadError(f"{where}: {path} should be true or false, got {_kind(value)}")
    return value


def _dict_at(obj: object, path: str, where: str) -> dict[str, Any]:
    value = _at(obj, path, where)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BackupReadError(f"{where}: {path} should be an object, got {_kind(value)}")
    return value


def _list_at(obj: object, path: str, where: str) -> list[Any]:
    value = _at(obj, path, where)
    if value is None:
        return []
    if not isinstance(value, list):
        raise BackupReadError(f"{where}: {path} should be an array, got {_kind(value)}")
    return value


def _strings_at(obj: object, path: str, where: str) -> tuple[str, ...]:
    """A list of strings (access modes); order kept, duplicates dropped."""
    values = _list_at(obj, path, where)
    out: list[str] = []
    for value in values:
        text = _str(value, where, path)
        if text and text not in out:
            out.append(text)
    return tuple(out)


def _label(labels: Mapping[str, Any], key: str, where: str) -> str | None:
    return _str(labels.get(key), where, f"metadata.labels[{key}]")


def _gunzip(raw: bytes, what: str) -> bytes:
    """Decompress one Velero .gz file, refusing truncated, corrupt or bomb-sized input."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as stream:
            data = stream.read(MAX_DECOMPRESSED_BYTES + 1)
    except (EOFError, zlib.error, OSError) as exc:  # gzip.BadGzipFile is an OSError
        reason = str(exc) or type(exc).__name__
        raise BackupReadError(f"{what}: truncated or corrupt gzip ({reason})") from exc
    if len(data) > MAX_DECOMPRESSED_BYTES:
        raise BackupReadError(f"{what}: more than {MAX_DECOMPRESSED_BYTES >> 20} MiB decompressed")
    return data


def _load_json(data: bytes, what: str) -> object:
    """Decode JSON, turning every decoding failure into a `BackupReadError`."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise BackupReadError(f"{what}: invalid JSON ({reason})") from exc


def _load_gz_list(raw_gz: bytes, what: str) -> list[dict[str, Any]]:
    """A `.json.gz` list file: `null` means empty (Go's nil slice), each item an object."""
    value = _load_json(_gunzip(raw_gz, what), what)
    if value is None:
        return []
    if not isinstance(value, list):
        raise BackupReadError(f"{what}: expected a JSON array, got {_kind(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise BackupReadError(f"{what}: entry {index} should be an object, got {_kind(item)}")
    return value


def _parse_time(value: object, where: str, path: str) -> datetime | None:
    """metav1.Time (RFC3339, `Z`) → aware UTC datetime; None when absent."""
    text = _str(value, where, path)
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError) as exc:  # OverflowError: year 1 or 9999 with an offset
        raise BackupReadError(f"{where}: {path} is not an RFC3339 time: {text!r:.60}") from exc


def _snapshot_id(value: str | None, where: str, path: str) -> str | None:
    """An EBS snapshot id, or None when the handle is not EBS's (another provider/driver)."""
    if value is None or not value.startswith("snap-"):
        return None
    if not _SNAPSHOT_ID.match(value):
        raise BackupReadError(f"{where}: {path} {value!r:.60} is not a valid EBS snapshot id")
    return value


def _volume_id(value: str | None) -> str | None:
    """`vol-…` out of a CSI handle or an in-tree `aws://<az>/vol-…` id (the plugin's regexp)."""
    if not value:
        return None
    match = _VOLUME_ID.search(value)
    return match.group(0) if match else None


def parse_quantity(value: object, where: str = "quantity") -> int | None:
    """A Kubernetes quantity (`10Gi`, `100G`, `1e9`, bytes as a number) → bytes, rounded up.

    Sizes come as quantities in PVs and VolumeSnapshots and as plain byte counts elsewhere.
    None when absent; zero or negative sizes are treated as unknown.
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BackupReadError(f"{where}: expected a quantity, got {_kind(value)}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise BackupReadError(f"{where}: expected a quantity, got {value!r}")
        number = Decimal(value)
    else:
        match = _QUANTITY.match(value.strip())
        if not match:
            raise BackupReadError(f"{where}: {value!r:.40} is not a Kubernetes quantity")
        try:
            number = Decimal(match["number"] + (match["exponent"] or ""))
        except InvalidOperation as exc:  # pragma: no cover - the regexp admits only numbers
            raise BackupReadError(f"{where}: {value!r:.40} is not a number") from exc
        number *= _QUANTITY_FACTORS[match["suffix"]]
    if number <= 0:
        return None
    if number.adjusted() > 24:  # > 1 YB: no EBS volume, a corrupt value
        raise BackupReadError(f"{where}: {value!r:.40} is not a plausible volume size")
    return math.ceil(number)


def gib(size_bytes: int | None) -> int | None:
    """Bytes → whole GiB, rounded up (EBS sizes are whole GiB)."""
    if size_bytes is None or size_bytes <= 0:
        return None
    return -(-size_bytes // _GIB)


def valid_label(value: str) -> str:
    """Velero's `label.GetValidName`: >63 chars → first 57 + 6 hex of sha256 (§8 item 8)."""
    if len(value) <= 63:
        return value
    return value[:57] + hashlib.sha256(value.encode()).hexdigest()[:6]


def is_valid_backup_name(name: str) -> bool:
    """Kubernetes object-name rules (lowercase DNS-1123 subdomain, ≤253), checked before a
    name from the bucket becomes part of an S3 key or a tag."""
    return 0 < len(name) <= _MAX_NAME and bool(_DNS1123_SUBDOMAIN.match(name))


# ---------------------------------------------------------------------------------------------
# parse_*: one Velero file each
# ---------------------------------------------------------------------------------------------


def parse_backup_document(name: str, raw: bytes) -> BackupDocument:
    """`velero-backup.json` (plain JSON) → the Backup record and its native snapshot counter.

    The schedule comes from the `velero.io/schedule-name` label only: manual backups may be
    named like a schedule and `--from-schedule --name X` may not be (§2.5, §8 item 8).
    """
    what = BACKUP_FILE
    doc = _load_json(raw, what)
    if not isinstance(doc, dict):
        raise BackupReadError(f"{what}: expected a JSON object, got {_kind(doc)}")
    labels = _dict_at(doc, "metadata.labels", what)
    schedule = _label(labels, SCHEDULE_LABEL, what)
    phase = _str_at(doc, "status.phase", what)
    if phase is None:
        raise BackupReadError(f"{what}: status.phase is missing; Velero never uploads that")
    start = _parse_time(_at(doc, "status.startTimestamp", what), what, "status.startTimestamp")
    created = _parse_time(
        _at(doc, "metadata.creationTimestamp", what), what, "metadata.creationTimestamp"
    )
    backup = Backup(
        name=name,
        schedule=schedule,
        phase=phase,
        start_time=start or created,
        completion_time=_parse_time(
            _at(doc, "status.completionTimestamp", what), what, "status.completionTimestamp"
        ),
        expiration=_parse_time(_at(doc, "status.expiration", what), what, "status.expiration"),
        format_version=_str_at(doc, "status.formatVersion", what),
    )
    completed = _int_at(doc, "status.volumeSnapshotsCompleted", what) or 0
    return BackupDocument(backup=backup, native_snapshots_completed=max(0, completed))


def parse_backup(name: str, raw: bytes) -> Backup:
    """`velero-backup.json` → `Backup` (name is the folder's, already validated)."""
    return parse_backup_document(name, raw).backup


def parse_volume_snapshots(raw_gz: bytes) -> tuple[NativeEntry, ...]:
    """`-volumesnapshots.json.gz` → native entries, failed ones included (no snapshot id).

    Up to v1.10 the PV key is `PersistentVolumeName` (a malformed Go struct tag), later
    `persistentVolumeName`; both are read. `volumeIOPS` is 0 for gp2/gp3 (not recorded).
    """
    what = "volumesnapshots file"
    entries: list[NativeEntry] = []
    for index, item in enumerate(_load_gz_list(raw_gz, what)):
        where = f"{what} entry {index}"
        _dict_at(item, "spec", where)
        pv = _str_at(item, "spec.persistentVolumeName", where) or _str_at(
            item, "spec.PersistentVolumeName", where
        )
        raw_id = _str_at(item, "status.providerSnapshotID", where)
        snapshot_id = _snapshot_id(raw_id, where, "status.providerSnapshotID")
        if raw_id is not None and snapshot_id is None:
            continue  # another VolumeSnapshotter's id: not an EBS snapshot
        entries.append(
            NativeEntry(
                pv=pv,
                snapshot_id=snapshot_id,
                phase=_str_at(item, "status.phase", where),
                volume_id=_volume_id(_str_at(item, "spec.providerVolumeID", where)),
                availability_zone=_str_at(item, "spec.volumeAZ", where),
                volume_type=_str_at(item, "spec.volumeType", where),
                iops=_positive(_int_at(item, "spec.volumeIOPS", where)),
            )
        )
    return tuple(entries)


def _positive(value: int | None) -> int | None:
    """Velero writes 0 for "not recorded" (gp2/gp3 IOPS, sizes): keep only real values."""
    return value if value is not None and value > 0 else None


def parse_volume_info(raw_gz: bytes) -> tuple[VolumeInfoEntry, ...]:
    """`-volumeinfo.json.gz` (v1.13+) → EBS entries: NativeSnapshot and CSISnapshot.

    Dropped: PodVolumeBackup (file-level, not EBS), skipped PVs (no `backupMethod`), data
    mover entries (`snapshotDataMoved`, handle `unknown`: the EBS snapshot was temporary and
    is gone), and handles that are not `snap-` (other CSI drivers). A native entry with an
    empty handle, or any entry with `result: failed`, is kept as failed.
    """
    what = "volumeinfo file"
    entries: list[VolumeInfoEntry] = []
    for index, item in enumerate(_load_gz_list(raw_gz, what)):
        where = f"{what} entry {index}"
        entry = _volume_info_entry(item, where)
        if entry is not None:
            entries.append(entry)
    return tuple(entries)


def _volume_info_entry(item: dict[str, Any], where: str) -> VolumeInfoEntry | None:
    """One volumeinfo entry, or None when it is not an EBS snapshot snapd could copy."""
    method = _str_at(item, "backupMethod", where)
    if method not in ("NativeSnapshot", "CSISnapshot") or _bool_at(item, "skipped", where):
        return None
    failed = _str_at(item, "result", where) == "failed"
    namespace = _str_at(item, "pvcNamespace", where)
    pvc = _str_at(item, "pvcName", where)
    pv = _str_at(item, "pvName", where)
    if method == "CSISnapshot":
        if _bool_at(item, "snapshotDataMoved", where):
            return None
        handle = _str_at(item, "csiSnapshotInfo.snapshotHandle", where)
        if handle == DATA_MOVER_UNKNOWN:
            return None
        snapshot_id = _snapshot_id(handle, where, "csiSnapshotInfo.snapshotHandle")
        if handle is not None and snapshot_id is None:
            return None
        return VolumeInfoEntry(
            method=SnapshotMethod.CSI,
            snapshot_id=snapshot_id,
            csi_driver=_str_at(item, "csiSnapshotInfo.driver", where),
            size_bytes=_positive(_int_at(item, "csiSnapshotInfo.size", where)),
            failed=failed or snapshot_id is None,
            namespace=namespace,
            pvc=pvc,
            pv=pv,
        )
    handle = _str_at(item, "nativeSnapshotInfo.snapshotHandle", where)
    snapshot_id = _snapshot_id(handle, where, "nativeSnapshotInfo.snapshotHandle")
    if handle is not None and snapshot_id is None:
        return None
    return VolumeInfoEntry(
        method=SnapshotMethod.NATIVE,
        snapshot_id=snapshot_id,
        availability_zone=_str_at(item, "nativeSnapshotInfo.volumeAZ", where),
        volume_type=_str_at(item, "nativeSnapshotInfo.volumeType", where),
        iops=_positive(_int_at(item, "nativeSnapshotInfo.iops", where)),
        failed=failed or snapshot_id is None,
        namespace=namespace,
        pvc=pvc,
        pv=pv,
    )


def parse_csi_volume_snapshots(raw_gz: bytes) -> tuple[CsiVolumeSnapshot, ...]:
    """`-csi-volumesnapshots.json.gz` (v1.4–v1.16) → VolumeSnapshots (PVC + bound VSC)."""
    what = "csi-volumesnapshots file"
    return tuple(
        _volume_snapshot(item, f"{what} entry {index}")
        for index, item in enumerate(_load_gz_list(raw_gz, what))
    )


def parse_csi_volume_snapshot_contents(raw_gz: bytes) -> tuple[CsiContent, ...]:
    """`-csi-volumesnapshotcontents.json.gz` (v1.4–v1.16) → VSCs with their EBS snapshot id.

    In v1.9–v1.11 these copies were reset before upload: `spec.source` holds only the
    snapshot handle and `spec.volumeSnapshotRef` is fake, so `build_scan` joins them to
    VolumeSnapshots by `boundVolumeSnapshotContentName` instead. `status.creationTime` is
    Unix nanoseconds, not a timestamp; snapd does not need it.
    """
    what = "csi-volumesnapshotcontents file"
    return tuple(
        _volume_snapshot_content(item, f"{what} entry {index}")
        for index, item in enumerate(_load_gz_list(raw_gz, what))
    )


def _volume_snapshot(item: dict[str, Any], where: str) -> CsiVolumeSnapshot:
    """The fields of one VolumeSnapshot that map its snapshot to a PVC."""
    return CsiVolumeSnapshot(
        namespace=_str_at(item, "metadata.namespace", where),
        name=_str_at(item, "metadata.name", where),
        pvc=_str_at(item, "spec.source.persistentVolumeClaimName", where),
        content_name=_str_at(item, "status.boundVolumeSnapshotContentName", where),
        restore_size_bytes=parse_quantity(
            _at(item, "status.restoreSize", where), f"{where}: status.restoreSize"
        ),
    )


def _volume_snapshot_content(item: dict[str, Any], where: str) -> CsiContent:
    """The fields of one VolumeSnapshotContent: EBS snapshot id, source volume, ref, label."""
    labels = _dict_at(item, "metadata.labels", where)
    return CsiContent(
        name=_str_at(item, "metadata.name", where),
        snapshot_id=_snapshot_id(
            _str_at(item, "status.snapshotHandle", where), where, "status.snapshotHandle"
        ),
        volume_id=_volume_id(_str_at(item, "spec.source.volumeHandle", where)),
        driver=_str_at(item, "spec.driver", where),
        restore_size_bytes=_positive(_int_at(item, "status.restoreSize", where)),
        ref_namespace=_str_at(item, "spec.volumeSnapshotRef.namespace", where),
        ref_name=_str_at(item, "spec.volumeSnapshotRef.name", where),
        backup_label=_label(labels, BACKUP_NAME_LABEL, where),
    )


def parse_tarball(source: bytes | IO[bytes]) -> TarballResources:
    """`<name>.tar.gz` → its PVs, PVCs, VolumeSnapshots and VolumeSnapshotContents.

    Streams the archive once and reads only those members. Each object appears under the
    plain path and again under `<version>-preferredversion/`: the first copy wins. Paths of
    non-preferred API versions (`--features=EnableAPIGroupVersions`) are ignored. Blocking:
    callers on the event loop run it in a thread.
    """
    fileobj = io.BytesIO(source) if isinstance(source, bytes) else source
    objects: dict[tuple[str, str | None, str], tuple[str, dict[str, Any]]] = {}
    try:
        # gzip.GzipFile, not tarfile's own "r|gz": tarfile's gzip header parser raises
        # TypeError on a file cut inside the header (found by fuzzing).
        with (
            gzip.GzipFile(fileobj=fileobj, mode="rb") as unzipped,
            tarfile.open(fileobj=unzipped, mode="r|") as archive,
        ):
            for member in archive:
                found = _tar_object(archive, member, objects)
                if found is not None:
                    objects[found[0]] = found[1]
            # Read to the end so gzip checks its CRC and length: a cut upload is reported.
            while unzipped.read(TARBALL_CHUNK):
                pass
    except BackupReadError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, OSError, ValueError) as exc:
        reason = str(exc) or type(exc).__name__
        raise BackupReadError(f"tarball: truncated or corrupt ({reason})") from exc
    return _tarball_resources(objects)


def _tar_object(
    archive: tarfile.TarFile,
    member: tarfile.TarInfo,
    seen: Mapping[tuple[str, str | None, str], object],
) -> tuple[tuple[str, str | None, str], tuple[str, dict[str, Any]]] | None:
    """Read one wanted, not yet seen member as a JSON object; None for everything else."""
    path = member.name.removeprefix("./")
    match = _RESOURCE_PATH.match(path)
    if match is None or match["resource"] not in _WANTED_RESOURCES or not member.isfile():
        return None
    key = (match["resource"], match["namespace"], match["name"])
    if key in seen:
        return None  # the -preferredversion copy of an object already read
    if member.size > MAX_MEMBER_BYTES:
        raise BackupReadError(f"tarball: {path} is {member.size} bytes, too large for a resource")
    stream = archive.extractfile(member)
    if stream is None:  # pragma: no cover - isfile() members always have data
        return None
    value = _load_json(stream.read(), f"tarball: {path}")
    if not isinstance(value, dict):
        raise BackupReadError(f"tarball: {path}: expected a JSON object, got {_kind(value)}")
    return key, (path, value)


def _tarball_resources(
    objects: Mapping[tuple[str, str | None, str], tuple[str, dict[str, Any]]],
) -> TarballResources:
    """Turn the raw tarball objects into records."""
    pvs: dict[str, PersistentVolume] = {}
    pvcs: dict[tuple[str, str], PersistentVolumeClaim] = {}
    snapshots: list[CsiVolumeSnapshot] = []
    contents: list[CsiContent] = []
    for (resource, namespace, name), (path, obj) in objects.items():
        where = f"tarball: {path}"
        if resource == _PV:
            pv = _persistent_volume(obj, name, where)
            pvs[pv.name] = pv
        elif resource == _PVC:
            pvc = _persistent_volume_claim(obj, namespace or "", name, where)
            pvcs[(pvc.namespace, pvc.name)] = pvc
        elif resource == _VS:
            vs = _volume_snapshot(obj, where)
            snapshots.append(
                CsiVolumeSnapshot(
                    namespace=vs.namespace or namespace,
                    name=vs.name or name,
                    pvc=vs.pvc,
                    content_name=vs.content_name,
                    restore_size_bytes=vs.restore_size_bytes,
                )
            )
        else:
            contents.append(_volume_snapshot_content(obj, where))
    return TarballResources(
        pvs=pvs, pvcs=pvcs, volume_snapshots=tuple(snapshots), contents=tuple(contents)
    )


def _persistent_volume(obj: dict[str, Any], file_name: str, where: str) -> PersistentVolume:
    """A PV's claim, EBS volume, zone and the fields needed to recreate it (§7.3)."""
    driver = _str_at(obj, "spec.csi.driver", where)
    handle = _str_at(obj, "spec.csi.volumeHandle", where)
    in_tree_id = _str_at(obj, "spec.awsElasticBlockStore.volumeID", where)
    volume_id = _volume_id(handle) if driver == EBS_CSI_DRIVER else None
    fs_type = _str_at(obj, "spec.csi.fsType", where) or _str_at(
        obj, "spec.awsElasticBlockStore.fsType", where
    )
    capacity = _at(obj, "spec.capacity.storage", where)
    return PersistentVolume(
        name=_str_at(obj, "metadata.name", where) or file_name,
        claim_namespace=_str_at(obj, "spec.claimRef.namespace", where),
        claim_name=_str_at(obj, "spec.claimRef.name", where),
        volume_id=volume_id or _volume_id(in_tree_id),
        csi_driver=driver,
        fs_type=fs_type,
        storage_class=_str_at(obj, "spec.storageClassName", where),
        access_modes=_strings_at(obj, "spec.accessModes", where),
        volume_mode=_str_at(obj, "spec.volumeMode", where),
        size_gib=gib(parse_quantity(capacity, f"{where}: spec.capacity.storage")),
        availability_zone=_pv_zone(obj, in_tree_id, where),
    )


def _pv_zone(obj: dict[str, Any], in_tree_id: str | None, where: str) -> str | None:
    """The PV's zone: zone labels, then nodeAffinity, then an in-tree `aws://<az>/vol-…` id.

    A value naming several zones (`a__b` labels, several `In` values) is not one AZ: None.
    """
    labels = _dict_at(obj, "metadata.labels", where)
    for key in ZONE_LABELS:
        value = _label(labels, key, where)
        if value and "__" not in value:
            return value
    zones: set[str] = set()
    terms = _list_at(obj, "spec.nodeAffinity.required.nodeSelectorTerms", where)
    for term in terms:
        for expression in _list_at(term, "matchExpressions", f"{where}: nodeSelectorTerms[]"):
            place = f"{where}: matchExpressions[]"
            selector = _str_at(expression, "key", place)
            if selector in ZONE_AFFINITY_KEYS and _str_at(expression, "operator", place) == "In":
                zones.update(_strings_at(expression, "values", place))
    if len(zones) == 1:
        return zones.pop()
    match = _IN_TREE_AZ.match(in_tree_id or "")
    return match.group(1) if match else None


def _persistent_volume_claim(
    obj: dict[str, Any], namespace: str, file_name: str, where: str
) -> PersistentVolumeClaim:
    """A PVC's bound PV and the fields its PV may not carry."""
    return PersistentVolumeClaim(
        namespace=_str_at(obj, "metadata.namespace", where) or namespace,
        name=_str_at(obj, "metadata.name", where) or file_name,
        volume_name=_str_at(obj, "spec.volumeName", where),
        storage_class=_str_at(obj, "spec.storageClassName", where),
        access_modes=_strings_at(obj, "spec.accessModes", where),
        volume_mode=_str_at(obj, "spec.volumeMode", where),
    )


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
    for scan in scans:
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
