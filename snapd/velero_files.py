"""Velero's files, one parser each: bytes in, records out (velero-format.md §1–§8).

`velero-backup.json`, `-volumesnapshots.json.gz` (both spellings of the PV name),
`-volumeinfo.json.gz` (native and CSI entries; pod-volume, skipped and data-mover entries left
out), the CSI VolumeSnapshot / VolumeSnapshotContent files of v1.4–v1.16, and the resource
tarball (PVs, PVCs and CSI objects, streamed member by member). Every Velero version's quirks
live here.

Everything is pure: no I/O, no clock, no logging; untrusted JSON is read through small typed
accessors, sizes are capped (a gzip bomb cannot exhaust memory), and the only exception that
leaves is `BackupReadError`, naming the file and the field (fuzzed by the tests). `velero.py`
reads the bucket and turns these records into what snapd copies.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import re
import tarfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import IO, Any

from snapd.errors import BackupReadError
from snapd.models import (
    Backup,
    SnapshotMethod,
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
DATA_MOVER_UNKNOWN = "unknown"

#: Files above this size (compressed) are decompressed and parsed off the event loop.
#: A small JSON file larger than this (compressed) is refused rather than held in memory.
#: Decompressed size cap: a gzip bomb must not exhaust the pod's memory.
MAX_DECOMPRESSED_BYTES = 256 << 20
#: One resource JSON inside the tarball; Kubernetes objects are far smaller (etcd caps 1.5 MB).
MAX_MEMBER_BYTES = 16 << 20
#: Tarball download: chunk size and how much is kept in memory before spilling to disk.
TARBALL_CHUNK = 1 << 20
#: Backups read at once on a cold cycle.
#: S3 returns at most 1000 keys/prefixes per ListObjectsV2 page.
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


# ---------------------------------------------------------------------------------------------
# Records parsed from Velero's files (the intermediate shape between bytes and SourceSnapshot)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatusCounts:
    """What a backup's `status` says Velero made: the checklist its files must satisfy.

    Every counter is `omitempty` in Velero, so an absent one is 0 (velero-format §2.2).
    """

    native_attempted: int = 0
    native_completed: int = 0
    csi_attempted: int = 0
    csi_completed: int = 0
    item_operations_attempted: int = 0


@dataclass(frozen=True, slots=True)
class BackupDocument:
    """`velero-backup.json`: the `Backup` record plus the counters used to spot missing files."""

    backup: Backup
    #: `status.volumeSnapshotsCompleted`: native snapshots Velero says it took (0 when absent).
    native_snapshots_completed: int = 0
    counts: StatusCounts = field(default_factory=StatusCounts)


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
    #: The counters of `status` the files are checked against.
    counts: StatusCounts = field(default_factory=StatusCounts)
    #: File names in the backup's folder; None when unknown (then a parsed file is present).
    listed: frozenset[str] | None = None
    #: Entries of the volumesnapshots file as written, every provider (None: count parsed).
    native_entries: int | None = None
    #: Of those, the entries in phase Completed (None: count parsed).
    native_completed_entries: int | None = None
    #: CSISnapshot entries of volumeinfo that are not data-mover ones, every driver.
    volume_info_csi_entries: int | None = None
    #: Entries of `-itemoperations.json.gz`; None when the file is absent or unread.
    item_operations: int | None = None


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
    counts = StatusCounts(
        native_attempted=_counter(doc, "volumeSnapshotsAttempted", what),
        native_completed=_counter(doc, "volumeSnapshotsCompleted", what),
        csi_attempted=_counter(doc, "csiVolumeSnapshotsAttempted", what),
        csi_completed=_counter(doc, "csiVolumeSnapshotsCompleted", what),
        item_operations_attempted=_counter(doc, "backupItemOperationsAttempted", what),
    )
    return BackupDocument(
        backup=backup, native_snapshots_completed=counts.native_completed, counts=counts
    )


def _counter(doc: object, name: str, what: str) -> int:
    """One `status` counter; absent (omitempty) or negative is 0."""
    return max(0, _int_at(doc, f"status.{name}", what) or 0)


def count_native_entries(raw_gz: bytes) -> tuple[int, int]:
    """`-volumesnapshots.json.gz` → (entries, entries in phase Completed), every provider.

    `volumeSnapshotsAttempted/Completed` count every VolumeSnapshotter's snapshots, while
    `parse_volume_snapshots` keeps only EBS ones: the checklist needs the file as written.
    """
    items = _load_gz_list(raw_gz, "volumesnapshots file")
    completed = sum(
        1
        for i, item in enumerate(items)
        if _str_at(item, "status.phase", f"entry {i}") == "Completed"
    )
    return len(items), completed


def count_volume_info_csi(raw_gz: bytes) -> int:
    """CSISnapshot entries of `-volumeinfo.json.gz` that are not data-mover ones, every driver."""
    count = 0
    for index, item in enumerate(_load_gz_list(raw_gz, "volumeinfo file")):
        where = f"volumeinfo file entry {index}"
        if _str_at(item, "backupMethod", where) != "CSISnapshot":
            continue
        if _bool_at(item, "snapshotDataMoved", where) or _bool_at(item, "skipped", where):
            continue
        count += 1
    return count


def parse_item_operations(raw_gz: bytes) -> int:
    """`-itemoperations.json.gz` (v1.11+) → how many item operations it records."""
    return len(_load_gz_list(raw_gz, "itemoperations file"))


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
