"""The tag schema: snapd's database. Builds the tags a copy is born with and reads them back.

All state lives in tags on the replicas (docs/contract.md#tags-the-database), so this
module is the only place that knows key names and value formats. Values are written
exactly as given: no character of a value is ever altered (the bash tool this replaces
rewrote every `:`), except the `Name` tag, which is cut to EC2's 256 characters. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from snapd.models import Replica, SourceSnapshot, Volume

PREFIX = "snapd.io/"
CLUSTER = "snapd.io/cluster"
SOURCE_SNAPSHOT_ID = "snapd.io/source-snapshot-id"
SOURCE_REGION = "snapd.io/source-region"
SOURCE_VOLUME_ID = "snapd.io/source-volume-id"
BACKUP = "snapd.io/backup"
SCHEDULE = "snapd.io/schedule"
BACKUP_TIME = "snapd.io/backup-time"
NAMESPACE = "snapd.io/namespace"
PVC = "snapd.io/pvc"
PV = "snapd.io/pv"
AVAILABILITY_ZONE = "snapd.io/availability-zone"
VOLUME_TYPE = "snapd.io/volume-type"
IOPS = "snapd.io/iops"
THROUGHPUT = "snapd.io/throughput"
STORAGE_CLASS = "snapd.io/storage-class"
FS_TYPE = "snapd.io/fs-type"
CSI_DRIVER = "snapd.io/csi-driver"
ACCESS_MODES = "snapd.io/access-modes"
VOLUME_MODE = "snapd.io/volume-mode"
NAME = "Name"

# What a restore made: copy-backs and volumes. Volumes deliberately carry no `snapd.io/cluster`
# (Velero copies a volume's tags onto its snapshots, which must never look like replicas).
RESTORE_OF = "snapd.io/restore-of"
RESTORE_SCOPE = "snapd.io/restore-scope"
RESTORE_BACKUP = "snapd.io/restore-backup"
RESTORE_NAMESPACE = "snapd.io/restore-namespace"
RESTORE_PVC = "snapd.io/restore-pvc"
RESTORE_TARGET = "snapd.io/restore-target"
RESTORE_KEY = "snapd.io/restore-key"

#: EC2 allows 50 user tags per resource; keys up to 128 characters, values up to 256.
EC2_MAX_TAGS = 50
#: A replica carries at most 48: velero-plugin-for-aws copies every tag of the snapshot onto
#: the volume a DR Velero creates from it and adds two of its own (docs/dr-location.md).
MAX_TAGS = EC2_MAX_TAGS - 2
MAX_KEY_LENGTH = 128
MAX_VALUE_LENGTH = 256
RESERVED_PREFIX = "aws:"


def _text(value: str | None) -> str | None:
    """A text value, as written (read back as stored, "" included)."""
    return value


def _int(value: str | None) -> int | None:
    """A whole number; a malformed tag reads as None (the replica stays listable)."""
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _join_modes(modes: tuple[str, ...]) -> str:
    """Access modes as one comma-separated value (`ReadWriteOnce,ReadOnlyMany`)."""
    return ",".join(modes)


def _split_modes(value: str | None) -> tuple[str, ...]:
    """`_join_modes` back; absent or empty is no mode."""
    return tuple(mode for mode in (value or "").split(",") if mode)


@dataclass(frozen=True, slots=True)
class VolumeTag:
    """How one field of `Volume` lives on a replica: its tag key and its codec both ways.

    `key` None means the field is not a tag: EC2 keeps it on the snapshot itself and
    `build_replica` is handed it (only `size_gib`, the snapshot's VolumeSize).
    """

    field: str
    key: str | None
    encode: Callable[[Any], str] = str
    decode: Callable[[str | None], Any] = _text


#: THE table of the volume's tags, in the order they are written: one row per `Volume`
#: field (tests/unit/test_tags.py fails on a field without a row or a row without a field).
#: Adding an attribute to the record is one field there and one row here.
VOLUME_TAGS: tuple[VolumeTag, ...] = (
    VolumeTag("volume_id", SOURCE_VOLUME_ID),
    VolumeTag("namespace", NAMESPACE),
    VolumeTag("pvc", PVC),
    VolumeTag("pv", PV),
    VolumeTag("availability_zone", AVAILABILITY_ZONE),
    VolumeTag("volume_type", VOLUME_TYPE),
    VolumeTag("iops", IOPS, decode=_int),
    VolumeTag("throughput", THROUGHPUT, decode=_int),
    VolumeTag("storage_class", STORAGE_CLASS),
    VolumeTag("fs_type", FS_TYPE),
    VolumeTag("csi_driver", CSI_DRIVER),
    VolumeTag("access_modes", ACCESS_MODES, encode=_join_modes, decode=_split_modes),
    VolumeTag("volume_mode", VOLUME_MODE),
    VolumeTag("size_gib", None, decode=_int),
)


def volume_tags(volume: Volume) -> dict[str, str]:
    """The volume's tags, in table order; a field with no value (None, "", no mode) is
    not written, so it reads back as unknown."""
    tags: dict[str, str] = {}
    for row in VOLUME_TAGS:
        value = getattr(volume, row.field)
        if row.key is None or value is None:
            continue
        encoded = row.encode(value)
        if encoded != "":
            tags[row.key] = encoded
    return tags


def volume_from_tags(tags: Mapping[str, str], **untagged: Any) -> Volume:
    """The `Volume` a replica's tags describe; `untagged` gives the fields that are not
    tags (`size_gib=` the snapshot's VolumeSize)."""
    values = {row.field: row.decode(tags.get(row.key)) for row in VOLUME_TAGS if row.key}
    return Volume(**values, **untagged)


def format_time(value: datetime) -> str:
    """RFC3339 UTC at second precision, the one format of `snapd.io/backup-time`."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> datetime | None:
    """Read `format_time` back; a malformed value is None (the replica stays listable)."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def display_name(namespace: str | None, pvc: str | None, backup: str) -> str:
    """The `Name` tag: `<namespace>/<pvc> <backup>`, cut to EC2's 256 characters."""
    return f"{namespace or '-'}/{pvc or '-'} {backup}"[:MAX_VALUE_LENGTH]


def build_copy_tags(source: SourceSnapshot, scope: str, source_region: str) -> dict[str, str]:
    """Every tag a replica of `source` is created with, in `TagSpecifications`.

    snapd's own keys win over the source snapshot's tags; `aws:` keys (which EC2 refuses)
    and stray `snapd.io/` keys (a volume restored by snapd passes them to Velero's next
    snapshots) are dropped; if the union is over `MAX_TAGS` (48), source tags are dropped, in a
    stable order (sorted keys), until it fits.
    """
    own = build_own_tags(source, scope, source_region)
    carried = sorted(
        (key, value)
        for key, value in source.source_tags
        if key not in own
        and not key.lower().startswith(RESERVED_PREFIX)
        and not key.startswith(PREFIX)
        and len(key) <= MAX_KEY_LENGTH
        and len(value) <= MAX_VALUE_LENGTH
    )
    room = max(0, MAX_TAGS - len(own))
    merged = dict(carried[:room])
    merged.update(own)
    return merged


def build_own_tags(source: SourceSnapshot, scope: str, source_region: str) -> dict[str, str]:
    """snapd's keys alone; the volume's (`VOLUME_TAGS`) only when their value is known."""
    tags = {
        CLUSTER: scope,
        SOURCE_SNAPSHOT_ID: source.snapshot_id,
        SOURCE_REGION: source_region,
        BACKUP: source.backup,
        SCHEDULE: source.schedule,
        BACKUP_TIME: format_time(source.backup_time),
        NAME: display_name(source.volume.namespace, source.volume.pvc, source.backup),
    }
    tags.update(volume_tags(source.volume))
    return tags


def to_tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    """EC2's `[{"Key": …, "Value": …}]` shape."""
    return [{"Key": key, "Value": value} for key, value in tags.items()]


def from_tag_list(tags: Iterable[Mapping[str, str]] | None) -> dict[str, str]:
    """EC2's tag list to a dict; tolerates a missing or null list."""
    return {t["Key"]: t.get("Value", "") for t in tags or () if "Key" in t}


def build_replica(
    *,
    snapshot_id: str,
    region: str,
    state: str,
    progress: int,
    tags: Mapping[str, str],
    size_gib: int | None = None,
    encrypted: bool = False,
    kms_key_id: str | None = None,
    start_time: datetime | None = None,
    state_message: str | None = None,
    completion_minutes: int | None = None,
) -> Replica:
    """A `Replica` from a destination snapshot's EC2 fields and its tags."""
    return Replica(
        snapshot_id=snapshot_id,
        region=region,
        state=state,
        progress=progress,
        scope=tags.get(CLUSTER, ""),
        source_snapshot_id=tags.get(SOURCE_SNAPSHOT_ID),
        source_region=tags.get(SOURCE_REGION),
        backup=tags.get(BACKUP),
        schedule=tags.get(SCHEDULE),
        backup_time=parse_time(tags.get(BACKUP_TIME)),
        volume=volume_from_tags(tags, size_gib=size_gib),
        encrypted=encrypted,
        kms_key_id=kms_key_id,
        start_time=start_time,
        state_message=state_message,
        tags=tuple(sorted(tags.items())),
        completion_minutes=completion_minutes,
    )
