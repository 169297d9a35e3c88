"""The Velero bucket builder: realistic Velero buckets and their EBS snapshots, in moto.

Writes what Velero writes (docs/velero-files.md), byte-shaped like Velero — pretty
`velero-backup.json`; compact JSON + "\\n", gzipped, for `.json.gz`; `null` for empty lists;
a tarball of sorted-key JSON under `resources/…` with `-preferredversion` copies and
`metadata/version` — for every version quirk snapd must read, and creates the matching
source volumes and snapshots in EC2 first, so the ids in the files are real moto ids.

Three ways in (`mode`): `http` — botocore clients to the moto server (tests, `make demo`;
`AWS_ENDPOINT_URL` points at it); `in_process` — straight into moto's backends, no HTTP (the
benchmark's 10,000 backups; only in the process that runs the moto server); `memory` — no
AWS at all, made-up ids, bytes kept in `VeleroBucket.files` (pure unit and fuzz tests).

Test-only: production modules never import this (import-linter contract).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import os
import random
import tarfile
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

from simworld.moto_server import ACCOUNT_ID

NATIVE = "native"
CSI = "csi"
POD_VOLUME = "pod-volume"
SKIPPED = "skipped"
DATA_MOVER = "data-mover"
#: A native snapshot Velero tried and failed (no providerSnapshotID; PartiallyFailed).
FAILED = "failed"
METHODS = frozenset({NATIVE, CSI, POD_VOLUME, SKIPPED, DATA_MOVER, FAILED})

BACKUP_FILE = "velero-backup.json"
VOLUME_SNAPSHOTS = "-volumesnapshots.json.gz"
VOLUME_INFO = "-volumeinfo.json.gz"
CSI_SNAPSHOTS = "-csi-volumesnapshots.json.gz"
CSI_CONTENTS = "-csi-volumesnapshotcontents.json.gz"
CSI_CLASSES = "-csi-volumesnapshotclasses.json.gz"
POD_VOLUME_BACKUPS = "-podvolumebackups.json.gz"
RESOURCE_LIST = "-resource-list.json.gz"
ITEM_OPERATIONS = "-itemoperations.json.gz"
RESULTS = "-results.gz"
LOGS = "-logs.gz"
TARBALL = ".tar.gz"

#: Parallel requests when seeding over HTTP.
HTTP_WORKERS = 16
T = TypeVar("T")
R = TypeVar("R")

TERMINAL = frozenset({"Completed", "PartiallyFailed", "Failed"})
_NAMESPACE_UUID = uuid.UUID("6f1c2a5e-3f0b-4b55-9a4e-0d7b2b1c9e11")
_BASE_TIME = datetime(2024, 6, 15, 2, 0, 31, tzinfo=UTC)


@dataclass(frozen=True)
class Volume:
    """One PVC in a backup, and how Velero backed it up (`method`, one of METHODS).

    `zone_in` says where the PV records its zone: `affinity` (CSI nodeAffinity), `label`
    (topology label, as in-tree PVs have) or `none`. `in_volume_info=False` makes Velero
    drop the entry from volumeinfo, as it does when it cannot match the PV
    (docs/velero-files.md#volumeinfo).
    """

    namespace: str
    pvc: str
    size_gib: int = 10
    az: str | None = None
    method: str = NATIVE
    volume_type: str = "gp3"
    iops: int | None = None
    #: gp3 throughput (MiB/s) of the source volume; Velero records it nowhere.
    throughput: int | None = None
    storage_class: str = "gp3"
    fs_type: str = "ext4"
    access_modes: tuple[str, ...] = ("ReadWriteOnce",)
    volume_mode: str = "Filesystem"
    in_tree: bool = False
    zone_in: str = "affinity"
    in_volume_info: bool = True
    #: PV `spec.capacity.storage`; default `<size_gib>Gi`.
    capacity: str | None = None
    pv: str | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; one of {sorted(METHODS)}")

    @property
    def pv_name(self) -> str:
        """`pvc-<uuid>` like a dynamically provisioned PV, stable for one PVC."""
        return self.pv or f"pvc-{uuid.uuid5(_NAMESPACE_UUID, f'{self.namespace}/{self.pvc}')}"


@dataclass(frozen=True)
class BuiltSnapshot:
    """A volume of a built backup; `snapshot_id` is None when no EBS snapshot survives."""

    backup: str
    volume: Volume
    volume_id: str
    az: str
    snapshot_id: str | None

    @property
    def method(self) -> str:
        return self.volume.method


@dataclass
class BuiltBackup:
    """What `VeleroBucket.backup` wrote: enough for tests to state the expected result."""

    name: str
    schedule: str | None
    phase: str
    version: tuple[int, int]
    start: datetime
    snapshots: list[BuiltSnapshot] = field(default_factory=list)
    document: dict[str, Any] = field(default_factory=dict)

    @property
    def snapshot_ids(self) -> list[str]:
        """EBS snapshots this backup owns (failed, pod-volume, data-mover have none)."""
        return [s.snapshot_id for s in self.snapshots if s.snapshot_id]


class _Store(Protocol):
    """Where the builder writes: moto over HTTP, or moto's backends in this process."""

    def ensure_bucket(self, bucket: str) -> None: ...
    def put(self, bucket: str, key: str, data: bytes) -> None: ...
    def map(self, function: Callable[[T], R], items: Sequence[T]) -> list[R]: ...
    def delete(self, bucket: str, key: str) -> None: ...
    def create_volume(self, az: str, volume: Volume, tags: dict[str, str]) -> str: ...
    def create_snapshot(self, volume_id: str, description: str, tags: dict[str, str]) -> str: ...


class _HttpStore:
    """moto server over HTTP with botocore clients (sync; the server runs in a thread)."""

    def __init__(self, region: str, endpoint_url: str | None) -> None:
        url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
        self.region = region
        self.s3, self.ec2 = _http_clients(region, url)
        self._pool = ThreadPoolExecutor(HTTP_WORKERS, thread_name_prefix="velero-bucket")

    def map(self, function: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """Run calls side by side: the moto server is threaded, one request costs ~20 ms."""
        return list(self._pool.map(function, items))

    def ensure_bucket(self, bucket: str) -> None:
        existing = {b["Name"] for b in self.s3.list_buckets().get("Buckets", [])}
        if bucket in existing:
            return
        params: dict[str, Any] = {"Bucket": bucket}
        if self.region != "us-east-1":
            params["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        self.s3.create_bucket(**params)

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self.s3.put_object(Bucket=bucket, Key=key, Body=data)

    def delete(self, bucket: str, key: str) -> None:
        self.s3.delete_object(Bucket=bucket, Key=key)

    def create_volume(self, az: str, volume: Volume, tags: dict[str, str]) -> str:
        params: dict[str, Any] = {
            "AvailabilityZone": az,
            "Size": volume.size_gib,
            "VolumeType": volume.volume_type,
            "TagSpecifications": [{"ResourceType": "volume", "Tags": _tag_list(tags)}],
        }
        if volume.iops:
            params["Iops"] = volume.iops
        if volume.throughput:
            params["Throughput"] = volume.throughput
        return str(self.ec2.create_volume(**params)["VolumeId"])

    def create_snapshot(self, volume_id: str, description: str, tags: dict[str, str]) -> str:
        response = self.ec2.create_snapshot(
            VolumeId=volume_id,
            Description=description,
            TagSpecifications=[{"ResourceType": "snapshot", "Tags": _tag_list(tags)}],
        )
        return str(response["SnapshotId"])


@functools.cache
def _http_clients(region: str, url: str | None) -> tuple[Any, Any]:
    """The S3 and EC2 clients of one region and endpoint, made once per process.

    A builder is made per test, and a botocore session of its own would parse the EC2 and
    S3 models again each time (~0.1 s of CPU); botocore's clients are thread-safe, so every
    builder of a region shares them (as the builder's own thread pool already does).
    """
    import botocore.session
    from botocore.config import Config

    session = botocore.session.get_session()
    config = Config(max_pool_connections=HTTP_WORKERS)
    s3 = session.create_client("s3", region_name=region, endpoint_url=url, config=config)
    ec2 = session.create_client("ec2", region_name=region, endpoint_url=url, config=config)
    return s3, ec2


class _InProcessStore:
    """moto's backends directly: no HTTP, for seeding thousands of backups quickly."""

    def __init__(self, region: str) -> None:
        from moto.ec2.models import ec2_backends
        from moto.s3.models import s3_backends

        self.region = region
        self.s3 = s3_backends[ACCOUNT_ID]["aws"]
        self.ec2 = ec2_backends[ACCOUNT_ID][region]

    def ensure_bucket(self, bucket: str) -> None:
        if bucket not in self.s3.buckets:
            self.s3.create_bucket(bucket, self.region)

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self.s3.put_object(bucket, key, data)

    def map(self, function: Callable[[T], R], items: Sequence[T]) -> list[R]:
        return [function(item) for item in items]

    def delete(self, bucket: str, key: str) -> None:
        self.s3.delete_object(bucket, key)

    def create_volume(self, az: str, volume: Volume, tags: dict[str, str]) -> str:
        created = self.ec2.create_volume(
            size=volume.size_gib, zone_name=az, volume_type=volume.volume_type, iops=volume.iops
        )
        self.ec2.create_tags([created.id], tags)
        return str(created.id)

    def create_snapshot(self, volume_id: str, description: str, tags: dict[str, str]) -> str:
        snapshot = self.ec2.create_snapshot(volume_id, description)
        self.ec2.create_tags([snapshot.id], tags)
        return str(snapshot.id)


class _MemoryStore:
    """No AWS at all: files stay in `VeleroBucket.files`, ids are made up (pure unit tests)."""

    def ensure_bucket(self, bucket: str) -> None:
        pass

    def put(self, bucket: str, key: str, data: bytes) -> None:
        pass

    def map(self, function: Callable[[T], R], items: Sequence[T]) -> list[R]:
        return [function(item) for item in items]

    def delete(self, bucket: str, key: str) -> None:
        pass

    def create_volume(self, az: str, volume: Volume, tags: dict[str, str]) -> str:
        return f"vol-{uuid.uuid4().hex[:17]}"

    def create_snapshot(self, volume_id: str, description: str, tags: dict[str, str]) -> str:
        return f"snap-{uuid.uuid4().hex[:17]}"


def _volume_tags(volume: Volume) -> dict[str, str]:
    """Tags the EBS CSI driver puts on a volume it provisions (with extra-create-metadata)."""
    return {
        "CSIVolumeName": volume.pv_name,
        "ebs.csi.aws.com/cluster": "true",
        "kubernetes.io/created-for/pvc/name": volume.pvc,
        "kubernetes.io/created-for/pvc/namespace": volume.namespace,
        "kubernetes.io/created-for/pv/name": volume.pv_name,
    }


def _tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def _time(value: datetime) -> str:
    """metav1.Time: RFC3339 at second precision, UTC."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def compact_json(value: object) -> bytes:
    """Go's `json.NewEncoder(w).Encode(x)`: compact, one value, then a newline."""
    return json.dumps(value, separators=(",", ":")).encode() + b"\n"


def gzip_json(value: object) -> bytes:
    """A `.json.gz` file as `encode.ToJSONGzip` writes it (a nil slice is `null`)."""
    return gzip.compress(compact_json(value), mtime=0)


def pretty_json(value: object) -> bytes:
    """`velero-backup.json`: the k8s pretty serializer (2-space indent, trailing newline)."""
    return json.dumps(value, indent=2).encode() + b"\n"


def valid_label(value: str) -> str:
    """Velero's `label.GetValidName` (names >63 chars are hashed in label values)."""
    if len(value) <= 63:
        return value
    return value[:57] + hashlib.sha256(value.encode()).hexdigest()[:6]


def _version(text: str) -> tuple[int, int]:
    major, minor = text.lstrip("v").split(".")[:2]
    return int(major), int(minor)


class VeleroBucket:
    """A Velero BSL (bucket + prefix) being filled with backups, fluently.

    ```
    bucket = VeleroBucket("velero", prefix="prod", region="eu-west-1")
    bucket.backup("daily-20240615020031", schedule="daily", version="1.14",
                  volumes=[Volume("shop", "db", method=CSI)]).corrupt_gzip(
                  "daily-20240615020031", VOLUME_INFO)
    ```
    `backups[name].snapshot_ids` are the EBS snapshots each backup owns.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        region: str = "eu-west-1",
        *,
        endpoint_url: str | None = None,
        mode: str = "http",
        lean: bool = False,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.region = region
        #: Write only the files snapd reads (the benchmark's many backups).
        self.lean = lean
        stores: dict[str, Callable[[], _Store]] = {
            "http": lambda: _HttpStore(region, endpoint_url),
            "in_process": lambda: _InProcessStore(region),
            "memory": _MemoryStore,
        }
        self._store = stores[mode]()
        self._store.ensure_bucket(bucket)
        self.backups: dict[str, BuiltBackup] = {}
        self._volumes: dict[tuple[str, str], str] = {}
        #: Every key written and its bytes, newest content.
        self.files: dict[str, bytes] = {}
        #: Writes still to come of backups made with `upload=False`, in Velero's order.
        self.pending: dict[str, list[tuple[str, bytes]]] = {}
        self._count = 0

    # -- keys -----------------------------------------------------------------------------

    @property
    def root(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""

    def key(self, backup: str, suffix: str) -> str:
        """S3 key of one backup file: `velero-backup.json` or `<backup><suffix>`."""
        name = suffix if suffix == BACKUP_FILE else backup + suffix
        return f"{self.root}backups/{backup}/{name}"

    def put(self, key: str, data: bytes) -> VeleroBucket:
        """Write raw bytes at a key relative to the bucket (not the prefix)."""
        self._store.put(self.bucket, key, data)
        self.files[key] = data
        return self

    def _put_files(self, backup: str, files: Sequence[tuple[str, bytes]]) -> None:
        """Upload several files of one backup side by side."""
        keyed = [(self.key(backup, suffix), data) for suffix, data in files]
        self._store.map(lambda item: self._store.put(self.bucket, *item), keyed)
        self.files.update(keyed)

    # -- backups --------------------------------------------------------------------------

    def backup(
        self,
        name: str,
        *,
        schedule: str | None = None,
        version: str = "1.14",
        phase: str = "Completed",
        volumes: Sequence[Volume] = (),
        start: datetime | None = None,
        labels: dict[str, str] | None = None,
        csi_feature: bool = True,
        upload: bool = True,
        order_seed: int = 0,
    ) -> VeleroBucket:
        """Create the volumes' snapshots in EC2, then upload every file Velero `version`
        writes for this backup. `schedule` None is a manual backup (no schedule label);
        `csi_feature=False` is Velero without EnableCSI (its CSI files hold `null`).
        `upload=False` uploads nothing yet: `upload_next` then writes the files one at a
        time in the version's own order (`upload_order`; `order_seed` picks Go's random map
        order of the last files), as a reader racing Velero's upload sees them."""
        self._count += 1
        start = start or _BASE_TIME + timedelta(hours=self._count)
        built = BuiltBackup(name, schedule, phase, _version(version), start)
        backup_labels = {"velero.io/storage-location": "default", **(labels or {})}
        if schedule is not None:
            backup_labels["velero.io/schedule-name"] = schedule
        for volume in volumes:  # each PVC's volume once, in order
            self._volume(volume)
        built.snapshots.extend(
            self._store.map(lambda v: self._snapshot(name, v, backup_labels), list(volumes))
        )
        built.document = self._document(built, backup_labels)
        self.backups[name] = built
        files = self._files(built, csi_feature)
        if upload:
            self._put_files(built.name, files)
        else:
            self.pending[name] = self.upload_order(built, files, order_seed)
        return self

    def upload_order(
        self, built: BuiltBackup, files: Sequence[tuple[str, bytes]], seed: int = 0
    ) -> list[tuple[str, bytes]]:
        """The writes of Velero's upload of one backup, in order.

        See docs/velero-files.md#upload-order-and-rewrites and docs/velero-files.md#phases.

        `PutBackup`, every version: the log, `velero-backup.json`, the tarball, then the
        other files in Go's map order (random; `seed` picks one). Up to v1.10 the first
        `velero-backup.json` already carries the final phase. From v1.11 it carries
        `Finalizing` — `WaitingForPluginOperations` when CSI snapshots run as async item
        operations — without `completionTimestamp`; the finalizer then rewrites the
        volumeinfo (v1.14+) and the tarball (when there were async operations) and last
        `velero-backup.json` with the final phase. A Failed backup is uploaded once.
        """
        by_suffix = dict(files)
        head = [s for s in (LOGS, BACKUP_FILE, TARBALL) if s in by_suffix]
        rest = [s for s in by_suffix if s not in head]
        random.Random(seed).shuffle(rest)
        steps = [(s, by_suffix[s]) for s in (*head, *rest)]
        if built.version < (1, 11) or built.phase not in ("Completed", "PartiallyFailed"):
            return steps
        asynchronous = any(s.method == CSI for s in built.snapshots)
        interim = json.loads(json.dumps(built.document))
        interim["status"]["phase"] = "WaitingForPluginOperations" if asynchronous else "Finalizing"
        interim["status"].pop("completionTimestamp", None)
        steps = [(s, pretty_json(interim) if s == BACKUP_FILE else d) for s, d in steps]
        if asynchronous and built.version >= (1, 14) and VOLUME_INFO in by_suffix:
            steps.append((VOLUME_INFO, by_suffix[VOLUME_INFO]))
        if asynchronous:
            steps.append((TARBALL, by_suffix[TARBALL]))
        steps.append((BACKUP_FILE, by_suffix[BACKUP_FILE]))
        return steps

    def upload_next(self, name: str) -> str | None:
        """Write the next file of a backup made with `upload=False`; its suffix, or None
        when the upload is done."""
        steps = self.pending.get(name) or []
        if not steps:
            return None
        suffix, data = steps.pop(0)
        self.put(self.key(name, suffix), data)
        return suffix

    def delete_backup(self, name: str) -> VeleroBucket:
        """Every file of a backup gone, as `velero backup delete` leaves the bucket."""
        for key in [k for k in self.files if k.startswith(f"{self.root}backups/{name}/")]:
            self._store.delete(self.bucket, key)
            del self.files[key]
        self.pending.pop(name, None)
        return self

    def _volume(self, volume: Volume) -> str:
        """The source EBS volume of one PVC, created on first use (tagged like EBS CSI's)."""
        key = (volume.namespace, volume.pvc)
        if key not in self._volumes:
            az = volume.az or f"{self.region}a"
            self._volumes[key] = self._store.create_volume(az, volume, _volume_tags(volume))
        return self._volumes[key]

    def _snapshot(self, backup: str, volume: Volume, labels: dict[str, str]) -> BuiltSnapshot:
        """The volume's EBS snapshot, when one survives, tagged as Velero or EBS CSI tags it."""
        az = volume.az or f"{self.region}a"
        volume_id = self._volume(volume)
        volume_tags = _volume_tags(volume)
        snapshot_id: str | None = None
        if volume.method == NATIVE:
            tags = {
                **volume_tags,
                **labels,
                "velero.io/backup": backup,
                "velero.io/pv": volume.pv_name,
            }
            snapshot_id = self._store.create_snapshot(volume_id, "", tags)
        elif volume.method == CSI:
            tags = {
                "CSIVolumeSnapshotName": f"snapshot-{uuid.uuid4()}",
                "ebs.csi.aws.com/cluster": "true",
            }
            description = f"Created by AWS EBS CSI driver for volume {volume_id}"
            snapshot_id = self._store.create_snapshot(volume_id, description, tags)
        return BuiltSnapshot(backup, volume, volume_id, az, snapshot_id)

    def _document(self, built: BuiltBackup, labels: dict[str, str]) -> dict[str, Any]:
        """The Backup CR as Velero uploads it; zero counters are omitted.

        See docs/velero-files.md#velero-backupjson.
        """
        natives = [s for s in built.snapshots if s.method in (NATIVE, FAILED)]
        csis = [s for s in built.snapshots if s.method == CSI]
        status: dict[str, Any] = {
            "version": 1,
            "formatVersion": "1.1.0",
            "expiration": _time(built.start + timedelta(days=30)),
            "phase": built.phase,
            "startTimestamp": _time(built.start),
        }
        if built.phase in TERMINAL:
            status["completionTimestamp"] = _time(built.start + timedelta(minutes=3))
        counters = {
            "volumeSnapshotsAttempted": len(natives),
            "volumeSnapshotsCompleted": sum(1 for s in natives if s.method == NATIVE),
            "csiVolumeSnapshotsAttempted": len(csis),
            "csiVolumeSnapshotsCompleted": len(csis),
            "errors": sum(1 for s in natives if s.method == FAILED),
        }
        status.update({k: v for k, v in counters.items() if v})
        spec: dict[str, Any] = {
            "metadata": {},
            "includedNamespaces": ["*"],
            "ttl": "720h0m0s",
            "hooks": {},
            "storageLocation": "default",
            "volumeSnapshotLocations": ["default"],
            "defaultVolumesToFsBackup": False,
            "csiSnapshotTimeout": "10m0s",
        }
        if built.version >= (1, 11):
            spec["itemOperationTimeout"] = "4h0m0s"
        if built.version >= (1, 12):
            spec["snapshotMoveData"] = any(s.method == DATA_MOVER for s in built.snapshots)
        return {
            "kind": "Backup",
            "apiVersion": "velero.io/v1",
            "metadata": {
                "name": built.name,
                "namespace": "velero",
                "uid": str(uuid.uuid4()),
                "resourceVersion": "4211",
                "generation": 7,
                "creationTimestamp": _time(built.start),
                "labels": dict(sorted(labels.items())),
                "annotations": {
                    "velero.io/source-cluster-k8s-gitversion": "v1.29.4-eks-036c24b",
                    "velero.io/source-cluster-k8s-major-version": "1",
                    "velero.io/source-cluster-k8s-minor-version": "29+",
                },
            },
            "spec": spec,
            "status": status,
        }

    def _files(self, built: BuiltBackup, csi_feature: bool) -> list[tuple[str, bytes]]:
        """Every file of the version, final content. `backup` uploads them side by side
        (tests that race the upload use `upload=False` and `upload_next`)."""
        files: list[tuple[str, bytes]] = []
        v = built.version
        if not self.lean:
            files.append((LOGS, gzip.compress(b'level=info msg="Backup completed"\n', mtime=0)))
        files.append((BACKUP_FILE, pretty_json(built.document)))
        files.append((TARBALL, self._tarball(built)))
        natives = [
            self._native_entry(built, s) for s in built.snapshots if s.method in (NATIVE, FAILED)
        ]
        files.append((VOLUME_SNAPSHOTS, gzip_json(natives or None)))
        if v >= (1, 13):
            files.append((VOLUME_INFO, gzip_json(self._volume_info(built))))
        csis = [s for s in built.snapshots if s.method == CSI] if csi_feature else []
        if (1, 4) <= v < (1, 17):
            moved = v >= (1, 12) and any(s.method == DATA_MOVER for s in built.snapshots)
            kept = [] if moved else csis
            vss = [self._volume_snapshot(built, s) for s in kept]
            vscs = [self._content(built, s, reset=(1, 9) <= v < (1, 12)) for s in kept]
            files.append((CSI_SNAPSHOTS, gzip_json(vss or None)))
            files.append((CSI_CONTENTS, gzip_json(vscs or None)))
        if not self.lean:
            files.extend(self._other_files(built, csis))
        return files

    def _other_files(
        self, built: BuiltBackup, csis: list[BuiltSnapshot]
    ) -> list[tuple[str, bytes]]:
        """Files snapd never reads, for realism (and to prove it does not fetch them)."""
        v = built.version
        files: list[tuple[str, bytes]] = []
        if (1, 9) <= v < (1, 18):
            files.append((CSI_CLASSES, gzip_json([_snapshot_class()] if csis else None)))
        pvbs = [_pod_volume_backup(built, s) for s in built.snapshots if s.method == POD_VOLUME]
        files.append((POD_VOLUME_BACKUPS, gzip_json(pvbs or None)))
        files.append((RESOURCE_LIST, gzip_json(_resource_list(built))))
        if v >= (1, 11):
            files.append((ITEM_OPERATIONS, gzip_json(None)))
            files.append((RESULTS, gzip_json({"errors": {}, "warnings": {}})))
        return files

    # -- file contents --------------------------------------------------------------------

    def _native_entry(self, built: BuiltBackup, snap: BuiltSnapshot) -> dict[str, Any]:
        """One `volume.Snapshot`; up to v1.10 the PV key is `PersistentVolumeName`.

        See docs/velero-files.md#native-snapshots.
        """
        pv_key = "PersistentVolumeName" if built.version < (1, 11) else "persistentVolumeName"
        spec: dict[str, Any] = {
            "backupName": built.name,
            "backupUID": built.document["metadata"]["uid"],
            "location": "default",
            pv_key: snap.volume.pv_name,
            "providerVolumeID": snap.volume_id,
            "volumeType": snap.volume.volume_type,
        }
        if snap.volume.zone_in != "none":
            spec["volumeAZ"] = snap.az
        spec["volumeIOPS"] = snap.volume.iops or 0
        status: dict[str, Any] = {"phase": "Failed"}
        if snap.snapshot_id:
            status = {"providerSnapshotID": snap.snapshot_id, "phase": "Completed"}
        return {"spec": spec, "status": status}

    def _volume_info(self, built: BuiltBackup) -> list[dict[str, Any]]:
        """`[]volume.BackupVolumeInfo` in Velero's order: skipped, native, CSI, PVB, data mover."""
        order = [SKIPPED, NATIVE, FAILED, CSI, POD_VOLUME, DATA_MOVER]
        ranked = sorted(
            (s for s in built.snapshots if s.volume.in_volume_info),
            key=lambda s: order.index(s.method),
        )
        return [self._volume_info_entry(built, s) for s in ranked]

    def _volume_info_entry(self, built: BuiltBackup, snap: BuiltSnapshot) -> dict[str, Any]:
        v, volume = built.version, snap.volume
        entry: dict[str, Any] = {
            "pvcName": volume.pvc,
            "pvcNamespace": volume.namespace,
            "pvName": volume.pv_name,
        }
        if volume.method != SKIPPED:
            entry["backupMethod"] = {
                NATIVE: "NativeSnapshot",
                FAILED: "NativeSnapshot",
                CSI: "CSISnapshot",
                DATA_MOVER: "CSISnapshot",
                POD_VOLUME: "PodVolumeBackup",
            }[volume.method]
        entry["snapshotDataMoved"] = volume.method == DATA_MOVER
        entry["preserveLocalSnapshot"] = volume.method == CSI
        entry["skipped"] = volume.method == SKIPPED
        if volume.method == SKIPPED:
            entry["skippedReason"] = "volumeSnapshot: no applicable volumesnapshotter found;"
        else:
            entry["startTimestamp"] = _time(built.start)
            if v >= (1, 14):
                entry["completionTimestamp"] = _time(built.start + timedelta(minutes=1))
            if v >= (1, 15):
                entry["result"] = "failed" if volume.method == FAILED else "succeeded"
        entry.update(self._volume_info_snapshot(built, snap))
        entry["pvInfo"] = {"reclaimPolicy": "Delete", "labels": None}
        return entry

    def _volume_info_snapshot(self, built: BuiltBackup, snap: BuiltSnapshot) -> dict[str, Any]:
        """The volumeinfo entry's snapshot part: native, CSI, data mover or pod volume info,
        with the fields each Velero version writes."""
        v, volume = built.version, snap.volume
        entry: dict[str, Any] = {}
        size = volume.size_gib << 30
        phase = {"Phase": "Completed"} if v >= (1, 15) else {}
        if volume.method in (NATIVE, FAILED):
            entry["nativeSnapshotInfo"] = {
                "snapshotHandle": snap.snapshot_id or "",
                "volumeType": volume.volume_type,
                "volumeAZ": snap.az if volume.zone_in != "none" else "",
                "iops": str(volume.iops or 0),
                **(
                    {"Phase": "Failed" if volume.method == FAILED else "Completed"}
                    if v >= (1, 15)
                    else {}
                ),
            }
        elif volume.method == CSI:
            info: dict[str, Any] = {
                "snapshotHandle": snap.snapshot_id,
                "size": size,
                "driver": "ebs.csi.aws.com",
                "vscName": _vsc_name(built, snap),
                "operationID": f"{volume.namespace}/{_vs_name(built, snap)}/{_time(built.start)}",
            }
            if v >= (1, 15):
                info["ReadyToUse"] = False
            entry["csiSnapshotInfo"] = info
        elif volume.method == DATA_MOVER:
            entry["csiSnapshotInfo"] = {
                "snapshotHandle": "unknown",
                "size": size,
                "driver": "ebs.csi.aws.com",
                "vscName": "unknown",
                "operationID": "unknown",
            }
            entry["snapshotDataMovementInfo"] = {
                "dataMover": "velero",
                "uploaderType": "kopia",
                "retainedSnapshot": _vs_name(built, snap),
                "snapshotHandle": uuid.uuid5(_NAMESPACE_UUID, snap.volume_id).hex,
                "operationID": f"du-{uuid.uuid5(_NAMESPACE_UUID, built.name + volume.pvc)}",
                **({"size": size} if v >= (1, 14) else {}),
                **phase,
            }
        elif volume.method == POD_VOLUME:
            entry["pvbInfo"] = {
                "snapshotHandle": uuid.uuid5(_NAMESPACE_UUID, built.name + volume.pvc).hex,
                "size": size,
                "uploaderType": "kopia",
                "volumeName": "data",
                "podName": f"{volume.pvc}-0",
                "podNamespace": volume.namespace,
                "nodeName": "ip-10-0-1-23.eu-west-1.compute.internal",
                **phase,
            }
        return entry

    def _volume_snapshot(self, built: BuiltBackup, snap: BuiltSnapshot) -> dict[str, Any]:
        """A Velero-made VolumeSnapshot (docs/velero-files.md#csi-snapshots)."""
        volume = snap.volume
        return {
            "kind": "VolumeSnapshot",
            "apiVersion": "snapshot.storage.k8s.io/v1",
            "metadata": {
                "name": _vs_name(built, snap),
                "generateName": f"velero-{volume.pvc}-",
                "namespace": volume.namespace,
                "uid": _vs_uid(built, snap),
                "labels": {"velero.io/backup-name": valid_label(built.name)},
                "annotations": {
                    "velero.io/csi-volumesnapshot-handle": snap.snapshot_id,
                    "velero.io/csi-driver-name": "ebs.csi.aws.com",
                },
            },
            "spec": {
                "source": {"persistentVolumeClaimName": volume.pvc},
                "volumeSnapshotClassName": "ebs-csi",
            },
            "status": {
                "boundVolumeSnapshotContentName": _vsc_name(built, snap),
                "creationTime": _time(built.start),
                "readyToUse": True,
                "restoreSize": f"{volume.size_gib}Gi",
            },
        }

    def _content(self, built: BuiltBackup, snap: BuiltSnapshot, *, reset: bool) -> dict[str, Any]:
        """A VolumeSnapshotContent; `reset` = v1.9–v1.11's rewrite before upload.

        See docs/velero-files.md#csi-version-traps.
        """
        vsc_uid = str(uuid.uuid5(_NAMESPACE_UUID, _vsc_name(built, snap)))
        source: dict[str, Any] = {"volumeHandle": snap.volume_id}
        ref: dict[str, Any] = {
            "apiVersion": "snapshot.storage.k8s.io/v1",
            "kind": "VolumeSnapshot",
            "name": _vs_name(built, snap),
            "namespace": snap.volume.namespace,
            "uid": _vs_uid(built, snap),
        }
        if reset:
            source = {"snapshotHandle": snap.snapshot_id}
            ref = {"namespace": f"ns-{vsc_uid}", "name": f"name-{vsc_uid}"}
        return {
            "kind": "VolumeSnapshotContent",
            "apiVersion": "snapshot.storage.k8s.io/v1",
            "metadata": {
                "name": _vsc_name(built, snap),
                "uid": vsc_uid,
                "labels": {"velero.io/backup-name": valid_label(built.name)},
            },
            "spec": {
                "deletionPolicy": "Retain",
                "driver": "ebs.csi.aws.com",
                "source": source,
                "volumeSnapshotClassName": "ebs-csi",
                "volumeSnapshotRef": ref,
            },
            "status": {
                "creationTime": int(built.start.timestamp()) * 1_000_000_000,
                "readyToUse": True,
                "restoreSize": snap.volume.size_gib << 30,
                "snapshotHandle": snap.snapshot_id,
            },
        }

    def _tarball(self, built: BuiltBackup) -> bytes:
        """`<name>.tar.gz`: PVs, PVCs, VS/VSC, namespaces; each item twice.

        See docs/velero-files.md#the-tarball.
        """
        items: list[tuple[str, str | None, str, dict[str, Any]]] = []
        for snap in built.snapshots:
            volume = snap.volume
            items.append(("persistentvolumes", None, volume.pv_name, _pv(snap)))
            items.append(("persistentvolumeclaims", volume.namespace, volume.pvc, _pvc(snap)))
            if volume.method == CSI:
                items.append(
                    (
                        "volumesnapshots.snapshot.storage.k8s.io",
                        volume.namespace,
                        _vs_name(built, snap),
                        self._volume_snapshot(built, snap),
                    )
                )
                items.append(
                    (
                        "volumesnapshotcontents.snapshot.storage.k8s.io",
                        None,
                        _vsc_name(built, snap),
                        self._content(built, snap, reset=False),
                    )
                )
        for namespace in sorted({s.volume.namespace for s in built.snapshots}):
            items.append(("namespaces", None, namespace, _namespace(namespace)))
        return build_tarball(items)

    # -- damage and decoys -----------------------------------------------------------------

    def file(self, backup: str, suffix: str) -> bytes:
        """The bytes last written for one backup file."""
        return self.files[self.key(backup, suffix)]

    def corrupt_gzip(self, backup: str, suffix: str = VOLUME_INFO) -> VeleroBucket:
        """Truncate a .gz file mid-stream (an interrupted upload or a bad copy)."""
        data = self.file(backup, suffix)
        return self.put(self.key(backup, suffix), data[: max(10, len(data) // 2)])

    def invalid_json(self, backup: str, suffix: str = VOLUME_SNAPSHOTS) -> VeleroBucket:
        """Replace a file with well-compressed but invalid JSON."""
        text = b'{"spec": [oops\n'
        data = text if suffix == BACKUP_FILE else gzip.compress(text, mtime=0)
        return self.put(self.key(backup, suffix), data)

    def replace(self, backup: str, suffix: str, value: object) -> VeleroBucket:
        """Replace a file's content: bytes as given, anything else as Velero would encode it."""
        if isinstance(value, bytes):
            data = value
        elif suffix == BACKUP_FILE:
            data = pretty_json(value)
        else:
            data = gzip_json(value)
        return self.put(self.key(backup, suffix), data)

    def remove(self, backup: str, suffix: str) -> VeleroBucket:
        """Delete one file of a backup (e.g. the tarball, or velero-backup.json)."""
        key = self.key(backup, suffix)
        self._store.delete(self.bucket, key)
        self.files.pop(key, None)
        return self

    def set_phase(self, backup: str, phase: str) -> VeleroBucket:
        """Rewrite velero-backup.json as the finalizer does (v1.11+): new phase, completion."""
        built = self.backups[backup]
        built.phase = phase
        status = built.document["status"]
        status["phase"] = phase
        if phase in TERMINAL:
            status["completionTimestamp"] = _time(built.start + timedelta(minutes=30))
        return self.put(self.key(backup, BACKUP_FILE), pretty_json(built.document))

    def logs_only(self, name: str) -> VeleroBucket:
        """A folder with only `<name>-logs.gz`: Velero's upload was interrupted.

        See docs/velero-files.md#upload-order-and-rewrites.
        """
        return self.put(self.key(name, LOGS), gzip.compress(b'level=error msg="upload failed"\n'))

    def pseudo_folders(self, names: Iterable[str] | None = None) -> VeleroBucket:
        """Zero-byte `…/` keys some S3 tools create: `backups/` and `backups/<name>/`."""
        self.put(f"{self.root}backups/", b"")
        for name in self.backups if names is None else names:
            self.put(f"{self.root}backups/{name}/", b"")
        return self

    def decoys(self) -> VeleroBucket:
        """Things under the root that are not backups: restores, kopia, restic, revision."""
        restore = "daily-20240615020031-20240616101500"
        self.put(f"{self.root}restores/{restore}/restore-{restore}-logs.gz", gzip.compress(b"\n"))
        self.put(f"{self.root}restores/{restore}/{restore}-volumeinfo.json.gz", gzip_json([]))
        self.put(f"{self.root}kopia/shop/kopia.repository.f", b'{"uniqueID":"x"}')
        self.put(f"{self.root}kopia/shop/_log_20240615", b"\x00\x01")
        self.put(f"{self.root}restic/shop/config", b"restic")
        self.put(f"{self.root}metadata/revision", str(uuid.uuid4()).encode())
        self.put(f"{self.root}backups/README.txt", b"not a backup\n")
        return self


# -- Kubernetes objects of the tarball ---------------------------------------------------------


def build_tarball(items: Iterable[tuple[str, str | None, str, dict[str, Any]]]) -> bytes:
    """A Velero tarball from (group-resource, namespace or None, name, object) items.

    Velero writes each item at `resources/<gr>/{cluster|namespaces/<ns>}/<name>.json` and
    again under `<gr>/v1-preferredversion/…`; sorted-key compact JSON; mode 0755; no
    directory entries; `metadata/version` first.
    """
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        _add(archive, "metadata/version", b"1.1.0\n")
        for resource, namespace, name, obj in items:
            data = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
            scope = f"namespaces/{namespace}" if namespace else "cluster"
            _add(archive, f"resources/{resource}/{scope}/{name}.json", data)
            _add(archive, f"resources/{resource}/v1-preferredversion/{scope}/{name}.json", data)
    return buffer.getvalue()


def _add(archive: tarfile.TarFile, path: str, data: bytes) -> None:
    info = tarfile.TarInfo(path)
    info.size = len(data)
    info.mode = 0o755
    info.mtime = int(_BASE_TIME.timestamp())
    archive.addfile(info, io.BytesIO(data))


def _pv(snap: BuiltSnapshot) -> dict[str, Any]:
    """The PV as the API server returns it: CSI (nodeAffinity) or in-tree (zone labels)."""
    volume = snap.volume
    spec: dict[str, Any] = {
        "accessModes": list(volume.access_modes),
        "capacity": {"storage": volume.capacity or f"{volume.size_gib}Gi"},
        "claimRef": {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "name": volume.pvc,
            "namespace": volume.namespace,
            "uid": volume.pv_name.removeprefix("pvc-"),
        },
        "persistentVolumeReclaimPolicy": "Delete",
        "storageClassName": volume.storage_class,
        "volumeMode": volume.volume_mode,
        **_pv_volume_source(snap),
    }
    if volume.zone_in == "affinity":
        spec["nodeAffinity"] = _pv_node_affinity(snap.az)
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": volume.pv_name,
            "labels": _pv_zone_labels(snap),
            "annotations": {"pv.kubernetes.io/provisioned-by": "ebs.csi.aws.com"},
            "finalizers": ["kubernetes.io/pv-protection"],
        },
        "spec": spec,
        "status": {"phase": "Bound"},
    }


def _pv_zone_labels(snap: BuiltSnapshot) -> dict[str, str]:
    """The topology labels of a PV whose zone is in its labels (older provisioners): snapd
    must read the zone from there when the PV has no nodeAffinity."""
    if snap.volume.zone_in != "label":
        return {}
    return {
        "topology.kubernetes.io/region": snap.az[:-1],
        "topology.kubernetes.io/zone": snap.az,
    }


def _pv_volume_source(snap: BuiltSnapshot) -> dict[str, Any]:
    """The PV's volume source: the in-tree `awsElasticBlockStore` (`aws://zone/vol-…`) or
    the EBS CSI driver's handle — the two shapes a volume id is read from."""
    volume = snap.volume
    if volume.in_tree:
        return {
            "awsElasticBlockStore": {
                "volumeID": f"aws://{snap.az}/{snap.volume_id}",
                "fsType": volume.fs_type,
            }
        }
    return {
        "csi": {
            "driver": "ebs.csi.aws.com",
            "fsType": volume.fs_type,
            "volumeHandle": snap.volume_id,
            "volumeAttributes": {
                "storage.kubernetes.io/csiProvisionerIdentity": "1718000000000-8081-ebs.csi.aws.com"
            },
        }
    }


def _pv_node_affinity(zone: str) -> dict[str, Any]:
    """The EBS CSI driver's nodeAffinity: the PV may mount only in its volume's zone."""
    term = {"key": "topology.ebs.csi.aws.com/zone", "operator": "In", "values": [zone]}
    return {"required": {"nodeSelectorTerms": [{"matchExpressions": [term]}]}}


def _pvc(snap: BuiltSnapshot) -> dict[str, Any]:
    volume = snap.volume
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": volume.pvc,
            "namespace": volume.namespace,
            "uid": volume.pv_name.removeprefix("pvc-"),
            "annotations": {"pv.kubernetes.io/bind-completed": "yes"},
        },
        "spec": {
            "accessModes": list(volume.access_modes),
            "resources": {"requests": {"storage": f"{volume.size_gib}Gi"}},
            "storageClassName": volume.storage_class,
            "volumeMode": volume.volume_mode,
            "volumeName": volume.pv_name,
        },
        "status": {"phase": "Bound", "capacity": {"storage": f"{volume.size_gib}Gi"}},
    }


def _namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def _snapshot_class() -> dict[str, Any]:
    """VolumeSnapshotClass: `driver`/`deletionPolicy` are top-level, no `spec`.

    See docs/velero-files.md#csi-snapshots.
    """
    return {
        "kind": "VolumeSnapshotClass",
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "metadata": {"name": "ebs-csi", "labels": {"velero.io/csi-volumesnapshot-class": "true"}},
        "driver": "ebs.csi.aws.com",
        "deletionPolicy": "Retain",
    }


def _pod_volume_backup(built: BuiltBackup, snap: BuiltSnapshot) -> dict[str, Any]:
    volume = snap.volume
    return {
        "kind": "PodVolumeBackup",
        "apiVersion": "velero.io/v1",
        "metadata": {"name": f"{built.name}-{volume.pvc}", "namespace": "velero"},
        "spec": {
            "node": "ip-10-0-1-23",
            "pod": {"kind": "Pod", "namespace": volume.namespace, "name": f"{volume.pvc}-0"},
            "volume": "data",
            "uploaderType": "kopia",
        },
        "status": {"phase": "Completed", "snapshotID": "f3a9c1d2", "progress": {}},
    }


def _resource_list(built: BuiltBackup) -> dict[str, list[str]]:
    return {
        "v1/PersistentVolume": sorted({s.volume.pv_name for s in built.snapshots}),
        "v1/PersistentVolumeClaim": sorted(
            {f"{s.volume.namespace}/{s.volume.pvc}" for s in built.snapshots}
        ),
    }


def _vs_name(built: BuiltBackup, snap: BuiltSnapshot) -> str:
    """`velero-<pvc>-<5 chars>` (generateName), stable for one backup and PVC."""
    suffix = uuid.uuid5(_NAMESPACE_UUID, f"{built.name}/{snap.volume.pvc}").hex[:5]
    return f"velero-{snap.volume.pvc}-{suffix}"


def _vs_uid(built: BuiltBackup, snap: BuiltSnapshot) -> str:
    return str(
        uuid.uuid5(_NAMESPACE_UUID, f"vs/{built.name}/{snap.volume.namespace}/{snap.volume.pvc}")
    )


def _vsc_name(built: BuiltBackup, snap: BuiltSnapshot) -> str:
    """`snapcontent-<VS uid>`, as the external-snapshotter names it."""
    return f"snapcontent-{_vs_uid(built, snap)}"


# -- ready-made worlds ------------------------------------------------------------------------


@dataclass(frozen=True)
class SeededWorld:
    """What `seed_realistic_world` created; `expected_snapshot_ids` is what snapd must find."""

    bucket: str
    prefix: str
    region: str
    schedule: str
    backups: dict[str, BuiltBackup]
    expected_snapshot_ids: tuple[str, ...]
    corrupt_backup: str
    in_flight_backup: str
    logs_only_backup: str


def _demo_volumes(region: str) -> list[Volume]:
    """The demo's four PVCs: native and CSI, gp2/gp3/io2, one in-tree PV (zone in a label)."""
    a, b = f"{region}a", f"{region}b"
    return [
        Volume("shop", "postgres-data", 20, a, NATIVE, "gp3", storage_class="gp3"),
        Volume("shop", "redis-data", 5, b, CSI, "gp3", storage_class="gp3-csi"),
        Volume("billing", "ledger-db", 50, a, CSI, "io2", iops=4000, storage_class="io2"),
        Volume(
            "monitoring",
            "prometheus-data",
            100,
            b,
            NATIVE,
            "gp2",
            storage_class="gp2",
            in_tree=True,
            zone_in="label",
        ),
    ]


def _seed_daily_week(
    world: VeleroBucket, volumes: list[Volume], days: int, now: datetime
) -> tuple[list[str], str]:
    """`days` daily backups at 02:00:31, the one 3 days ago PartiallyFailed (its first volume's
    snapshot failed), the one 5 days ago with a corrupt volumeinfo. Returns the names, oldest
    first, and the corrupt one."""
    names: list[str] = []
    corrupt = ""
    for day in range(days, 0, -1):
        start = (now - timedelta(days=day)).replace(hour=2, minute=0, second=31)
        name = f"daily-{start:%Y%m%d%H%M%S}"
        phase, todays = "Completed", list(volumes)
        if day == 3:
            phase = "PartiallyFailed"
            todays[0] = replace(volumes[0], method=FAILED)
        world.backup(
            name, schedule="daily", version="1.14", phase=phase, volumes=todays, start=start
        )
        names.append(name)
        if day == 5:
            corrupt = name
            world.corrupt_gzip(name, VOLUME_INFO)
    return names, corrupt


def seed_realistic_world(
    *,
    bucket: str = "velero-backups",
    prefix: str = "",
    region: str = "eu-west-1",
    days: int = 7,
    now: datetime | None = None,
    endpoint_url: str | None = None,
    mode: str = "http",
) -> SeededWorld:
    """A week of schedule `daily` over four PVCs in three namespaces, native and CSI, with
    one PartiallyFailed backup, one corrupt backup, one in flight, one interrupted upload,
    a manual and an `hourly` backup, and the decoys Velero leaves around. For `make demo`."""
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    world = VeleroBucket(bucket, prefix, region, endpoint_url=endpoint_url, mode=mode)
    volumes = _demo_volumes(region)
    names, corrupt = _seed_daily_week(world, volumes, days, now)
    in_flight_start = now - timedelta(minutes=10)
    in_flight = f"daily-{in_flight_start:%Y%m%d%H%M%S}"
    world.backup(
        in_flight,
        schedule="daily",
        phase="WaitingForPluginOperations",
        volumes=volumes[1:2],
        start=in_flight_start,
    )
    logs_only = f"daily-{(now - timedelta(days=days + 1)):%Y%m%d}020031"
    world.logs_only(logs_only)
    world.backup(
        "before-upgrade",
        schedule=None,
        volumes=volumes[:1],
        start=now - timedelta(days=2, hours=5),
    )
    world.backup(
        f"hourly-{now - timedelta(hours=1):%Y%m%d%H}0000",
        schedule="hourly",
        volumes=volumes[1:2],
        start=now - timedelta(hours=1),
    )
    world.decoys().pseudo_folders()
    expected = tuple(
        snapshot_id for name in names for snapshot_id in world.backups[name].snapshot_ids
    )
    return SeededWorld(
        bucket=bucket,
        prefix=world.prefix,
        region=region,
        schedule="daily",
        backups=world.backups,
        expected_snapshot_ids=expected,
        corrupt_backup=corrupt,
        in_flight_backup=in_flight,
        logs_only_backup=logs_only,
    )


def seed_many_backups(
    count: int,
    *,
    bucket: str = "velero-backups",
    prefix: str = "",
    region: str = "eu-west-1",
    schedule: str = "daily",
    volumes_per_backup: int = 1,
    start: datetime = _BASE_TIME,
    mode: str = "in_process",
) -> list[str]:
    """`count` Completed backups of `schedule`, one per hour, for the benchmark.

    In-process by default (moto's backends, no HTTP): only the files snapd reads are
    written. The volumes are shared: PVC `data-<i>` in namespace `bench`.
    """
    world = VeleroBucket(bucket, prefix, region, mode=mode, lean=True)
    volumes = [
        Volume("bench", f"data-{i}", 10, f"{region}a", NATIVE if i % 2 == 0 else CSI)
        for i in range(volumes_per_backup)
    ]
    names: list[str] = []
    for index in range(count):
        when = start + timedelta(hours=index)
        name = f"{schedule}-{when:%Y%m%d%H%M%S}"
        world.backup(name, schedule=schedule, volumes=volumes, start=when)
        names.append(name)
    return names


# ------------------------------------------------------------------ oversized tarballs

#: Size of one filler member in `filler_tarball`.
FILLER_MEMBER = 128 << 20


class _Zeros(io.RawIOBase):
    """`size` zero bytes, read in chunks (a filler member never held in memory)."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), self.left)
        buffer[:count] = bytes(count)
        self.left -= count
        return count


def filler_tarball(
    original: bytes,
    sink: Any,
    filler_total: int,
    *,
    member_size: int = FILLER_MEMBER,
    incompressible: bool = False,
) -> int:
    """Write to `sink` a backup's tarball (`original`, `.tar.gz` bytes) with `filler_total`
    bytes of filler members in front of its items; returns the number of filler members.

    Zeros by default: a gigabyte packs into about a megabyte, so a test or the benchmark
    can make a tarball far larger than a memory bound cheaply. `incompressible` fills with
    seeded random bytes instead, so the packed tarball is as large as its content (each
    member is then held in memory while written: keep `member_size` small).
    """
    members = 0
    with (
        gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=1, mtime=0) as packed,
        tarfile.open(fileobj=packed, mode="w|") as out,
    ):
        noise = random.Random(filler_total)
        left = filler_total
        while left > 0:
            size = min(member_size, left)
            info = tarfile.TarInfo(f"resources/configmaps/namespaces/big/filler-{members}.bin")
            info.size = size
            content = io.BytesIO(noise.randbytes(size)) if incompressible else _Zeros(size)
            out.addfile(info, content)
            left -= size
            members += 1
        with tarfile.open(fileobj=io.BytesIO(original), mode="r:gz") as source:
            for member in source:
                out.addfile(member, source.extractfile(member))
    return members
