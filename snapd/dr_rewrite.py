"""Rewrite a Velero backup's files so a Velero in the destination region restores from replicas.

The DR location (docs/dr-location.md) holds copies of fully replicated backups in which every
EBS reference names the replica, the DR zone and the DR region. This module is the rewrite and
nothing else: bytes or file objects in, bytes out; no I/O of its own, no clock, no logging.

Velero's encoding is kept, so the files look as if Velero had written them in the DR region:
- `.json.gz` files: gzip of one compact JSON value + `\\n` (Go's `json.NewEncoder`), keys in
  their original order, Go's HTML escaping of `<`, `>`, `&`, U+2028 and U+2029;
- tarball items: compact JSON without the newline (Go's `json.Marshal`), same escaping;
- tarball members: same order, names and headers; only a rewritten item's size changes;
  every other member is copied through unchanged, in chunks (a tarball of any size is
  rewritten in bounded memory).
Only the named values change; a file or item that names nothing replicated is reported as
unchanged (`None`) so the caller can copy it server-side.
"""

from __future__ import annotations

import copy
import gzip
import io
import json
import tarfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import IO, Any

from snapd.errors import BackupReadError

#: Keys whose values are zones, in labels and in nodeAffinity match expressions.
ZONE_KEYS = frozenset(
    {
        "topology.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/zone",
        "topology.ebs.csi.aws.com/zone",
    }
)
#: Keys whose values are regions.
REGION_KEYS = frozenset(
    {"topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region"}
)
#: The VolumeSnapshot annotation older Velero and the CSI plugin build the restored VSC from.
HANDLE_ANNOTATION = "velero.io/csi-volumesnapshot-handle"
#: Largest tarball item read into memory to be rewritten (Kubernetes objects are ≤ 1.5 MB).
MAX_ITEM_BYTES = 16 << 20
#: Largest `.json.gz` file rewritten in memory (discovery refuses larger files anyway).
MAX_FILE_BYTES = 64 << 20
#: Go's `gzip.DefaultCompression`, what Velero's tarball writer uses.
GZIP_LEVEL = 6
#: Read size when draining the source to its gzip trailer.
DRAIN_CHUNK = 1 << 20

PV_RESOURCE = "persistentvolumes"
VS_RESOURCE = "volumesnapshots.snapshot.storage.k8s.io"
VSC_RESOURCE = "volumesnapshotcontents.snapshot.storage.k8s.io"


class DrRewriteError(BackupReadError):
    """A file could not be rewritten (corrupt, or a zone with no DR zone); not published."""


class FileKind(StrEnum):
    """The backup files whose content names snapshots, zones or regions."""

    VOLUME_SNAPSHOTS = "-volumesnapshots.json.gz"
    VOLUME_INFO = "-volumeinfo.json.gz"
    CSI_CONTENTS = "-csi-volumesnapshotcontents.json.gz"
    CSI_SNAPSHOTS = "-csi-volumesnapshots.json.gz"
    TARBALL = ".tar.gz"


def file_kind(backup: str, file_name: str) -> FileKind | None:
    """Which rewritable file `file_name` of backup `backup` is, or None (copied unchanged)."""
    for kind in FileKind:
        if file_name == backup + kind.value:
            return kind
    return None


@dataclass(slots=True)
class Seen:
    """What rewriting met: the names a DR cluster must provide (for `snapd dr-manifests`):
    VolumeSnapshotLocations of native entries, VolumeSnapshotClasses of the contents; and
    the source snapshots whose references were swapped for their replicas (the publisher
    checks every one the backup was read with is among them)."""

    locations: set[str] = field(default_factory=set)
    classes: set[str] = field(default_factory=set)
    snapshots: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class DrMapping:
    """What one backup's references become in the DR region.

    `snapshots`: source snapshot id → replica id, for every snapshot the backup names.
    `zones`: source zone → DR zone. `volumes`: the PV names of the replicated volumes (only
    their PersistentVolume items are moved to the DR zone).
    """

    snapshots: Mapping[str, str]
    zones: Mapping[str, str]
    source_region: str
    region: str
    volumes: frozenset[str] = field(default_factory=frozenset)
    seen: Seen = field(default_factory=Seen, compare=False)

    def zone(self, value: str) -> str:
        """The DR zone of a source zone; a zone with no DR zone stops the rewrite."""
        if value in self.zones:
            return self.zones[value]
        if value in self.zones.values():
            return value  # already a DR zone (a re-run over rewritten content)
        raise DrRewriteError(f"source zone {value} has no DR zone; map it in SNAPD_DR_ZONES")

    def region_of(self, value: str) -> str:
        return self.region if value == self.source_region else value


# ---------------------------------------------------------------------------------------------
# Go's JSON encoding
# ---------------------------------------------------------------------------------------------

_GO_ESCAPES = (
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("&", "\\u0026"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
)


def go_json(value: object) -> bytes:
    """`json.Marshal(value)`: compact, keys in the given order, UTF-8, HTML characters escaped.

    `<`, `>`, `&` can only occur inside JSON strings, so replacing them in the whole text is
    exactly Go's escaping.
    """
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for plain, escaped in _GO_ESCAPES:
        text = text.replace(plain, escaped)
    return text.encode()


def go_json_gzip(value: object) -> bytes:
    """`encode.ToJSONGzip`: gzip of `json.NewEncoder(w).Encode(value)` (value + newline)."""
    return gzip.compress(go_json(value) + b"\n", mtime=0)


def _load(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DrRewriteError(f"{what}: invalid JSON: {exc}") from exc


def _gunzip(raw: bytes, what: str) -> bytes:
    try:
        data = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DrRewriteError(f"{what}: not a readable gzip file: {exc}") from exc
    if len(data) > MAX_FILE_BYTES:
        raise DrRewriteError(f"{what}: {len(data)} bytes uncompressed is too large to rewrite")
    return data


# ---------------------------------------------------------------------------------------------
# Value rewriters: each changes one decoded object in place and says whether it did
# ---------------------------------------------------------------------------------------------


def _dict(obj: object, *path: str) -> dict[str, Any] | None:
    """The dict at `path` inside `obj`, or None when any step is missing or not a dict."""
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj if isinstance(obj, dict) else None


def _swap(obj: dict[str, Any] | None, key: str, new: Callable[[str], str]) -> bool:
    """Replace `obj[key]` (a string) by `new(old)`; True when the value changed."""
    if obj is None or not isinstance(obj.get(key), str):
        return False
    old = obj[key]
    value = new(old)
    if value == old:
        return False
    obj[key] = value
    return True


def _snapshot(mapping: DrMapping) -> Callable[[str], str]:
    """Source snapshot id → its replica's (others stay), noting each one swapped."""

    def swap(value: str) -> str:
        replica = mapping.snapshots.get(value)
        if replica is None:
            return value
        mapping.seen.snapshots.add(value)
        return replica

    return swap


def _labels(labels: dict[str, Any] | None, mapping: DrMapping) -> bool:
    """Zone and region label values → the DR zone and region."""
    changed = False
    for key in sorted(ZONE_KEYS):
        changed |= _swap(labels, key, mapping.zone)
    for key in sorted(REGION_KEYS):
        changed |= _swap(labels, key, mapping.region_of)
    return changed


def rewrite_native_entry(entry: object, mapping: DrMapping) -> bool:
    """`volume.Snapshot`: `status.providerSnapshotID` and `spec.volumeAZ` (pv_restorer reads
    both; the AWS plugin creates the volume in that zone)."""
    status = _dict(entry, "status")
    if status is None or status.get("providerSnapshotID") not in mapping.snapshots:
        return False
    _swap(status, "providerSnapshotID", _snapshot(mapping))
    spec = _dict(entry, "spec")
    _swap(spec, "volumeAZ", mapping.zone)
    if spec is not None and isinstance(spec.get("location"), str) and spec["location"]:
        mapping.seen.locations.add(spec["location"])
    return True


def rewrite_volume_info_entry(entry: object, mapping: DrMapping) -> bool:
    """`BackupVolumeInfo`: native and CSI handles, the native zone, the PV's zone labels."""
    native = _dict(entry, "nativeSnapshotInfo")
    csi = _dict(entry, "csiSnapshotInfo")
    replicated = [i for i in (native, csi) if i and i.get("snapshotHandle") in mapping.snapshots]
    if not replicated:
        return False
    for info in replicated:
        _swap(info, "snapshotHandle", _snapshot(mapping))
    if native in replicated:
        _swap(native, "volumeAZ", lambda z: mapping.zone(z) if z else z)
    _labels(_dict(entry, "pvInfo", "labels"), mapping)
    return True


def rewrite_volume_snapshot_content(item: object, mapping: DrMapping) -> bool:
    """VolumeSnapshotContent: `status.snapshotHandle` and `spec.source.snapshotHandle` (the
    v1.14+ restore action builds the restored VSC from the tarball copy's handle)."""
    changed = _swap(_dict(item, "status"), "snapshotHandle", _snapshot(mapping))
    changed |= _swap(_dict(item, "spec", "source"), "snapshotHandle", _snapshot(mapping))
    spec = _dict(item, "spec")
    if changed and spec is not None and isinstance(spec.get("volumeSnapshotClassName"), str):
        mapping.seen.classes.add(spec["volumeSnapshotClassName"])
    return changed


def rewrite_volume_snapshot(item: object, mapping: DrMapping) -> bool:
    """VolumeSnapshot: the handle annotation (older Velero and the CSI plugin restore from it)."""
    return _swap(_dict(item, "metadata", "annotations"), HANDLE_ANNOTATION, _snapshot(mapping))


def rewrite_persistent_volume(item: object, mapping: DrMapping) -> bool:
    """A replicated volume's PV: zone/region labels, nodeAffinity values, in-tree volumeID.

    The AWS plugin's SetVolumeID keeps labels and affinity as they were, so they must already
    name the DR zone; for in-tree PVs it rebuilds `aws://<zone>/<vol>` from the zone label.
    """
    metadata = _dict(item, "metadata")
    if metadata is None or metadata.get("name") not in mapping.volumes:
        return False
    changed = _labels(_dict(metadata, "labels"), mapping)
    changed |= _node_affinity(_dict(item, "spec", "nodeAffinity", "required"), mapping)
    changed |= _swap(
        _dict(item, "spec", "awsElasticBlockStore"), "volumeID", lambda v: _in_tree_id(v, mapping)
    )
    return changed


def _node_affinity(required: dict[str, Any] | None, mapping: DrMapping) -> bool:
    terms = required.get("nodeSelectorTerms") if required else None
    changed = False
    for term in terms if isinstance(terms, list) else ():
        expressions = term.get("matchExpressions") if isinstance(term, dict) else None
        for expression in expressions if isinstance(expressions, list) else ():
            if not isinstance(expression, dict):
                continue
            key, values = expression.get("key"), expression.get("values")
            if key not in ZONE_KEYS | REGION_KEYS or not isinstance(values, list):
                continue
            convert = mapping.zone if key in ZONE_KEYS else mapping.region_of
            new = [convert(v) if isinstance(v, str) else v for v in values]
            if new != values:
                expression["values"] = new
                changed = True
    return changed


def _in_tree_id(value: str, mapping: DrMapping) -> str:
    """`aws://<zone>/vol-…` → `aws://<DR zone>/vol-…`; a plain `vol-…` stays."""
    if not value.startswith("aws://"):
        return value
    zone, _, rest = value.removeprefix("aws://").partition("/")
    return f"aws://{mapping.zone(zone)}/{rest}" if zone and rest else value


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------

_LIST_REWRITERS: dict[FileKind, Callable[[object, DrMapping], bool]] = {
    FileKind.VOLUME_SNAPSHOTS: rewrite_native_entry,
    FileKind.VOLUME_INFO: rewrite_volume_info_entry,
    FileKind.CSI_CONTENTS: rewrite_volume_snapshot_content,
    FileKind.CSI_SNAPSHOTS: rewrite_volume_snapshot,
}


def rewrite_json_gz(kind: FileKind, raw_gz: bytes, mapping: DrMapping) -> bytes | None:
    """The rewritten bytes of one `.json.gz` file, or None when it names nothing replicated."""
    rewrite = _LIST_REWRITERS[kind]
    value = _load(_gunzip(raw_gz, kind.value.lstrip("-")), kind.value.lstrip("-"))
    if value is None:
        return None  # Go's nil slice: nothing in it
    if not isinstance(value, list):
        raise DrRewriteError(f"{kind.value.lstrip('-')}: expected a JSON list")
    changed = False
    for entry in value:
        changed |= rewrite(entry, mapping)
    return go_json_gzip(value) if changed else None


def _group_resource(member_name: str) -> str | None:
    """`resources/<group-resource>/…/<name>.json` → group-resource (any version path)."""
    parts = member_name.split("/")
    if len(parts) < 4 or parts[0] != "resources" or not parts[-1].endswith(".json"):
        return None
    return parts[1]


_ITEM_REWRITERS: dict[str, Callable[[object, DrMapping], bool]] = {
    PV_RESOURCE: rewrite_persistent_volume,
    VS_RESOURCE: rewrite_volume_snapshot,
    VSC_RESOURCE: rewrite_volume_snapshot_content,
}


def rewrite_item(member_name: str, data: bytes, mapping: DrMapping) -> bytes | None:
    """One tarball item rewritten (`json.Marshal` encoding), or None when it stays as it is."""
    resource = _group_resource(member_name)
    rewrite = _ITEM_REWRITERS.get(resource or "")
    if rewrite is None:
        return None
    value = _load(data, member_name)
    return go_json(value) if rewrite(value, mapping) else None


@dataclass(slots=True)
class TarballReport:
    """What `rewrite_tarball` did: members seen and members rewritten."""

    members: int = 0
    rewritten: int = 0


def rewrite_tarball(source: IO[bytes], sink: IO[bytes], mapping: DrMapping) -> TarballReport:
    """Stream `<name>.tar.gz` from `source` to `sink`, rewriting PV, VS and VSC items.

    Both sides are tar stream mode (`r|`, `w|` over gzip streams): members are read and
    written strictly in order, and a member that is not rewritten is copied through in
    chunks, so memory stays bounded by the largest rewritten item whatever the tarball's size.
    """
    report = TarballReport()
    try:
        with (
            gzip.GzipFile(fileobj=source, mode="rb") as unpacked,
            tarfile.open(fileobj=unpacked, mode="r|") as reader,
            gzip.GzipFile(fileobj=sink, mode="wb", mtime=0, compresslevel=GZIP_LEVEL) as packed,
            tarfile.open(fileobj=packed, mode="w|", format=tarfile.PAX_FORMAT) as writer,
        ):
            for member in reader:
                report.members += 1
                if _copy_member(reader, writer, member, mapping):
                    report.rewritten += 1
            # Read to the gzip trailer: a tarball cut at a member boundary fails its CRC and
            # length check here instead of being published short.
            while unpacked.read(DRAIN_CHUNK):
                pass
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DrRewriteError(f"tarball: cannot be rewritten: {exc}") from exc
    return report


def _copy_member(
    reader: tarfile.TarFile, writer: tarfile.TarFile, member: tarfile.TarInfo, mapping: DrMapping
) -> bool:
    """Write one member to `writer`; True when its content was rewritten."""
    if not member.isfile():
        writer.addfile(member)
        return False
    stream = reader.extractfile(member)
    if stream is None:  # pragma: no cover - isfile() members always have a stream
        writer.addfile(member)
        return False
    if _group_resource(member.name) in _ITEM_REWRITERS and member.size <= MAX_ITEM_BYTES:
        data = stream.read()
        new = rewrite_item(member.name, data, mapping)
        if new is not None:
            header = copy.copy(member)
            header.size = len(new)
            writer.addfile(header, io.BytesIO(new))
            return True
        writer.addfile(member, io.BytesIO(data))
        return False
    writer.addfile(member, stream)
    return False
