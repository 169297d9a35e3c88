"""Velero's files, version by version (docs/velero-files.md), read by the pure parsers."""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from simworld.velero_bucket import (
    BACKUP_FILE,
    CSI,
    CSI_CONTENTS,
    CSI_SNAPSHOTS,
    DATA_MOVER,
    FAILED,
    NATIVE,
    POD_VOLUME,
    SKIPPED,
    TARBALL,
    VOLUME_INFO,
    VOLUME_SNAPSHOTS,
    VeleroBucket,
    Volume,
    build_tarball,
    gzip_json,
    pretty_json,
)
from snapd.errors import BackupReadError
from snapd.models import Backup, BackupScan, SnapshotMethod, SourceSnapshot
from snapd.velero import build_scan
from snapd.velero_files import (
    BackupFiles,
    StatusCounts,
    count_native_entries,
    gib,
    is_valid_backup_name,
    parse_backup,
    parse_backup_document,
    parse_csi_volume_snapshot_contents,
    parse_csi_volume_snapshots,
    parse_item_operations,
    parse_quantity,
    parse_tarball,
    parse_volume_info,
    parse_volume_snapshots,
    valid_label,
)

T0 = datetime(2024, 6, 15, 2, 0, 31, tzinfo=UTC)
SNAP = "snap-04eb410aaf788716f"
SNAP2 = "snap-0123456789abcdef0"
VOL = "vol-035e27cfcacb954c7"


# -- helpers -----------------------------------------------------------------------------------


def backup_doc(
    *,
    labels: Mapping[str, str] | None = None,
    phase: str | None = "Completed",
    **status: Any,
) -> dict[str, Any]:
    """A velero-backup.json document with the given labels and status fields.

    See docs/velero-files.md#velero-backupjson.
    """
    doc: dict[str, Any] = {
        "kind": "Backup",
        "apiVersion": "velero.io/v1",
        "metadata": {
            "name": "daily-20240615020031",
            "namespace": "velero",
            "creationTimestamp": "2024-06-15T02:00:30Z",
            "labels": {"velero.io/storage-location": "default", **(labels or {})},
            "managedFields": [{"manager": "velero-server", "operation": "Update"}],
            "ownerReferences": [{"kind": "Schedule", "name": "daily"}],
        },
        "spec": {"metadata": {}, "ttl": "720h0m0s"},
        "status": {
            "version": 1,
            "formatVersion": "1.1.0",
            "startTimestamp": "2024-06-15T02:00:31Z",
        },
    }
    if phase is not None:
        doc["status"]["phase"] = phase
    doc["status"].update(status)
    return doc


def native(pv_key: str = "persistentVolumeName", **status: Any) -> dict[str, Any]:
    """One `volume.Snapshot` entry (docs/velero-files.md#native-snapshots)."""
    return {
        "spec": {
            "backupName": "daily-20240615020031",
            pv_key: "pvc-ee7a89c5",
            "providerVolumeID": VOL,
            "volumeType": "gp2",
            "volumeAZ": "eu-west-1a",
            "volumeIOPS": 0,
        },
        "status": status or {"providerSnapshotID": SNAP, "phase": "Completed"},
    }


def scan_of(
    bucket: VeleroBucket,
    name: str,
    *,
    schedules: tuple[str, ...] = ("daily",),
    copy_failed: bool = False,
    skip: tuple[str, ...] = (),
) -> tuple[Backup, BackupFiles]:
    """Parse one built backup's files as discovery does (minus S3), leaving out `skip`."""
    files = {
        key.rsplit("/", 1)[-1]: data for key, data in bucket.files.items() if f"/{name}/" in key
    }
    document = parse_backup_document(name, files[BACKUP_FILE])

    def read(suffix: str, parser: Any) -> Any:
        file_name = name + suffix
        return parser(files[file_name]) if file_name in files and suffix not in skip else None

    result = BackupFiles(
        native_snapshots_completed=document.native_snapshots_completed,
        volume_snapshots=read(VOLUME_SNAPSHOTS, parse_volume_snapshots),
        volume_info=read(VOLUME_INFO, parse_volume_info),
        csi_snapshots=read(CSI_SNAPSHOTS, parse_csi_volume_snapshots),
        csi_contents=read(CSI_CONTENTS, parse_csi_volume_snapshot_contents),
        tarball=read(TARBALL, parse_tarball),
    )
    return document.backup, result


def build(
    version: str,
    volumes: list[Volume],
    *,
    name: str = "daily-20240615020031",
    schedule: str | None = "daily",
    phase: str = "Completed",
    skip: tuple[str, ...] = (),
    copy_failed: bool = False,
) -> tuple[VeleroBucket, list[SourceSnapshot], Any]:
    """Build one backup in memory and scan it; returns the bucket, snapshots and scan."""
    bucket = VeleroBucket("velero", mode="memory")
    bucket.backup(name, schedule=schedule, version=version, phase=phase, volumes=volumes, start=T0)
    backup, files = scan_of(bucket, name, skip=skip)
    scan = build_scan(backup, files, schedules=("daily",), copy_failed_backups=copy_failed)
    return bucket, list(scan.snapshots), scan


def by_pvc(snapshots: list[SourceSnapshot]) -> dict[str | None, SourceSnapshot]:
    return {s.volume.pvc: s for s in snapshots}


# -- velero-backup.json ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        pytest.param({"velero.io/schedule-name": "daily"}, "daily", id="schedule-label"),
        pytest.param({}, None, id="named-like-schedule-but-manual"),
        pytest.param({"velero.io/schedule-name": "hourly"}, "hourly", id="from-schedule-any-name"),
        pytest.param(
            {"velero.io/backup": "x", "velero.io/pv": "y"}, None, id="v1.0-label-aliasing-ignored"
        ),
    ],
)
def test_schedule_comes_from_the_label_only(labels: dict[str, str], expected: str | None) -> None:
    """A backup belongs to a schedule only by its label, never by its name."""
    backup = parse_backup("daily-20240615020031", pretty_json(backup_doc(labels=labels)))
    assert backup.schedule == expected


def test_backup_fields_are_read() -> None:
    """Phase, times (aware UTC), expiration and format version come from velero-backup.json."""
    raw = pretty_json(
        backup_doc(
            completionTimestamp="2024-06-15T02:03:31Z",
            expiration="2024-07-15T02:00:31Z",
            volumeSnapshotsCompleted=2,
        )
    )
    document = parse_backup_document("daily-20240615020031", raw)
    backup = document.backup
    assert backup.phase == "Completed"
    assert backup.start_time == T0
    assert backup.completion_time == datetime(2024, 6, 15, 2, 3, 31, tzinfo=UTC)
    assert backup.expiration == datetime(2024, 7, 15, 2, 0, 31, tzinfo=UTC)
    assert backup.format_version == "1.1.0"
    assert document.native_snapshots_completed == 2


def test_zero_counters_are_omitted() -> None:
    """Go's omitempty drops zero counters: an absent counter means 0, not an error."""
    assert parse_backup_document("b", pretty_json(backup_doc())).native_snapshots_completed == 0


def test_start_falls_back_to_creation_time() -> None:
    """A backup without startTimestamp is dated by its creation time."""
    doc = backup_doc()
    del doc["status"]["startTimestamp"]
    assert parse_backup("b", pretty_json(doc)).start_time == datetime(
        2024, 6, 15, 2, 0, 30, tzinfo=UTC
    )


def test_in_flight_backup_has_no_completion_time() -> None:
    """WaitingForPluginOperations (v1.11+) has no completionTimestamp and is not terminal."""
    backup = parse_backup("b", pretty_json(backup_doc(phase="WaitingForPluginOperations")))
    assert backup.completion_time is None
    assert not backup.terminal


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(b'{"kind": "Backup", ', "invalid JSON", id="truncated-json"),
        pytest.param(b"[]", "expected a JSON object", id="top-level-array"),
        pytest.param(b"\xff\xfe", "invalid JSON", id="not-utf8"),
        pytest.param(pretty_json(backup_doc(phase=None)), "status.phase", id="no-phase"),
        pytest.param(
            pretty_json({"metadata": {"labels": ["a"]}, "status": {"phase": "Completed"}}),
            "metadata.labels should be an object",
            id="labels-array",
        ),
        pytest.param(
            pretty_json(backup_doc(startTimestamp="yesterday")),
            "not an RFC3339 time",
            id="bad-time",
        ),
        pytest.param(
            pretty_json(backup_doc(labels={"velero.io/schedule-name": 7})),  # type: ignore[dict-item]
            "should be a string",
            id="schedule-label-number",
        ),
    ],
)
def test_corrupt_backup_json_is_a_read_error(raw: bytes, reason: str) -> None:
    """A corrupt velero-backup.json is reported with a reason, never a crash."""
    with pytest.raises(BackupReadError, match=reason):
        parse_backup("b", raw)


# -- volumesnapshots ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pv_key",
    [
        pytest.param("PersistentVolumeName", id="v1.10-capitalised-key"),
        pytest.param("persistentVolumeName", id="v1.11-fixed-key"),
    ],
)
def test_volume_snapshots_read_both_pv_key_spellings(pv_key: str) -> None:
    """Up to v1.10 the PV key is capitalised; both spellings name the PV."""
    (entry,) = parse_volume_snapshots(gzip_json([native(pv_key)]))
    assert entry.pv == "pvc-ee7a89c5"
    assert entry.snapshot_id == SNAP
    assert entry.volume_id == VOL
    assert entry.availability_zone == "eu-west-1a"
    assert entry.iops is None  # volumeIOPS 0 = not recorded for gp2/gp3


def test_volume_snapshots_keep_real_iops() -> None:
    """io1/io2 IOPS recorded by the AWS plugin are kept."""
    entry = native()
    entry["spec"].update(volumeType="io2", volumeIOPS=4000)
    assert parse_volume_snapshots(gzip_json([entry]))[0].iops == 4000


@pytest.mark.parametrize(
    ("status", "failed"),
    [
        pytest.param({"phase": "Failed"}, True, id="failed-no-id"),
        pytest.param({"phase": "Completed"}, True, id="no-id"),
        pytest.param({"providerSnapshotID": SNAP, "phase": "Completed"}, False, id="completed"),
    ],
)
def test_failed_native_entries_have_no_snapshot(status: dict[str, str], failed: bool) -> None:
    """An entry without providerSnapshotID is a failed snapshot (PartiallyFailed backups)."""
    (entry,) = parse_volume_snapshots(gzip_json([native(**status)]))
    assert entry.failed is failed


@pytest.mark.parametrize(
    "value", [pytest.param(None, id="null"), pytest.param([], id="empty-array")]
)
def test_empty_lists_may_be_null(value: object) -> None:
    """Velero writes a nil slice as `null`: an empty list, not an error."""
    raw = gzip_json(value)
    assert parse_volume_snapshots(raw) == ()
    assert parse_volume_info(raw) == ()
    assert parse_csi_volume_snapshots(raw) == ()
    assert parse_csi_volume_snapshot_contents(raw) == ()


def test_other_providers_ids_are_not_ebs() -> None:
    """A VolumeSnapshotter id that is not `snap-…` is not an EBS snapshot: dropped."""
    assert parse_volume_snapshots(gzip_json([native(providerSnapshotID="gce-1")])) == ()


PARSERS = [
    pytest.param(parse_volume_snapshots, id="volumesnapshots"),
    pytest.param(parse_volume_info, id="volumeinfo"),
    pytest.param(parse_csi_volume_snapshots, id="csi-volumesnapshots"),
    pytest.param(parse_csi_volume_snapshot_contents, id="csi-volumesnapshotcontents"),
]


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(gzip_json([native()])[:20], "truncated or corrupt gzip", id="truncated-gzip"),
        pytest.param(b"not gzip at all", "truncated or corrupt gzip", id="not-gzip"),
        pytest.param(gzip.compress(b"[{"), "invalid JSON", id="invalid-json"),
        pytest.param(gzip_json({"a": 1}), "expected a JSON array", id="object-not-array"),
        pytest.param(gzip_json([1]), "entry 0 should be an object", id="entry-not-object"),
    ],
)
def test_corrupt_gz_files_are_read_errors(parser: Any, raw: bytes, reason: str) -> None:
    """Truncated gzip, invalid JSON or a wrong shape is a reason, never a crash."""
    with pytest.raises(BackupReadError, match=reason):
        parser(raw)


@pytest.mark.parametrize(
    ("parser", "entry", "reason"),
    [
        pytest.param(
            parse_volume_snapshots,
            {"spec": [], "status": {}},
            "volumesnapshots file entry 0: spec should be an object",
            id="volumesnapshots-spec-array",
        ),
        pytest.param(
            parse_volume_snapshots,
            {"spec": {"volumeIOPS": "lots"}, "status": {"providerSnapshotID": SNAP}},
            "volumeIOPS should be an integer",
            id="volumesnapshots-iops-text",
        ),
        pytest.param(
            parse_volume_info,
            {"backupMethod": "NativeSnapshot", "nativeSnapshotInfo": {"snapshotHandle": 5}},
            "snapshotHandle should be a string",
            id="volumeinfo-handle-number",
        ),
        pytest.param(
            parse_volume_info,
            {"backupMethod": "CSISnapshot", "snapshotDataMoved": "no"},
            "snapshotDataMoved should be true or false",
            id="volumeinfo-moved-text",
        ),
        pytest.param(
            parse_csi_volume_snapshots,
            {"spec": {"source": "db"}},
            "spec.source should be an object",
            id="vs-source-text",
        ),
        pytest.param(
            parse_csi_volume_snapshot_contents,
            {"status": {"snapshotHandle": SNAP, "restoreSize": True}},
            "restoreSize should be a number",
            id="vsc-size-bool",
        ),
    ],
)
def test_wrong_field_types_are_read_errors(parser: Any, entry: dict[str, Any], reason: str) -> None:
    """A field of the wrong type names the file, the entry and the field."""
    with pytest.raises(BackupReadError, match=reason):
        parser(gzip_json([entry]))


def test_malformed_snapshot_id_is_a_read_error() -> None:
    """A `snap-` id that is not an EBS id means a corrupt file: reported, not copied."""
    with pytest.raises(BackupReadError, match="not a valid EBS snapshot id"):
        parse_volume_snapshots(gzip_json([native(providerSnapshotID="snap-xyz")]))


# -- volumeinfo --------------------------------------------------------------------------------


def volume_info(**entry: Any) -> bytes:
    return gzip_json([{"pvcName": "db", "pvcNamespace": "shop", "pvName": "pvc-1", **entry}])


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        pytest.param(
            {
                "backupMethod": "NativeSnapshot",
                "nativeSnapshotInfo": {
                    "snapshotHandle": SNAP,
                    "volumeType": "io2",
                    "volumeAZ": "eu-west-1b",
                    "iops": "4000",
                    "Phase": "Completed",
                },
            },
            (SnapshotMethod.NATIVE, SNAP, 4000, False),
            id="native-iops-string",
        ),
        pytest.param(
            {
                "backupMethod": "NativeSnapshot",
                "nativeSnapshotInfo": {"snapshotHandle": SNAP, "volumeType": "gp3", "iops": "0"},
            },
            (SnapshotMethod.NATIVE, SNAP, None, False),
            id="native-iops-zero-string",
        ),
        pytest.param(
            {
                "backupMethod": "CSISnapshot",
                "csiSnapshotInfo": {
                    "snapshotHandle": SNAP,
                    "size": 10737418240,
                    "driver": "ebs.csi.aws.com",
                    "vscName": "snapcontent-1",
                    "ReadyToUse": False,
                },
            },
            (SnapshotMethod.CSI, SNAP, None, False),
            id="csi-ready-to-use-false-still-counts",
        ),
        pytest.param(
            {
                "backupMethod": "NativeSnapshot",
                "result": "failed",
                "nativeSnapshotInfo": {"snapshotHandle": "", "iops": "0", "Phase": "Failed"},
            },
            (SnapshotMethod.NATIVE, None, None, True),
            id="native-failed",
        ),
    ],
)
def test_volume_info_ebs_entries(entry: dict[str, Any], expected: tuple[Any, ...]) -> None:
    """Native and CSI entries give snapshot, PVC and details; capitalised keys are fine."""
    (parsed,) = parse_volume_info(volume_info(**entry))
    assert (parsed.method, parsed.snapshot_id, parsed.iops, parsed.failed) == expected
    assert (parsed.namespace, parsed.pvc, parsed.pv) == ("shop", "db", "pvc-1")


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param(
            {
                "backupMethod": "CSISnapshot",
                "snapshotDataMoved": True,
                "csiSnapshotInfo": {"snapshotHandle": "unknown", "vscName": "unknown"},
                "snapshotDataMovementInfo": {"dataMover": "velero", "Phase": "Completed"},
            },
            id="data-mover",
        ),
        pytest.param(
            {"backupMethod": "CSISnapshot", "csiSnapshotInfo": {"snapshotHandle": "unknown"}},
            id="unknown-handle",
        ),
        pytest.param(
            {
                "backupMethod": "PodVolumeBackup",
                "pvbInfo": {"snapshotHandle": "f3a9", "Phase": "Completed"},
            },
            id="pod-volume-backup",
        ),
        pytest.param(
            {"skipped": True, "skippedReason": "volumeSnapshot: no applicable volumesnapshotter"},
            id="skipped-pv",
        ),
        pytest.param(
            {"backupMethod": "CSISnapshot", "csiSnapshotInfo": {"snapshotHandle": "local-123"}},
            id="other-csi-driver",
        ),
    ],
)
def test_volume_info_non_ebs_entries_are_ignored(entry: dict[str, Any]) -> None:
    """Data-mover, pod-volume, skipped and non-EBS entries own no EBS snapshot to copy."""
    assert parse_volume_info(volume_info(**entry)) == ()


def test_volume_info_pv_labels_may_be_null() -> None:
    """`pvInfo.labels: null` is Go's nil map and must not upset the parser."""
    raw = volume_info(
        backupMethod="NativeSnapshot",
        nativeSnapshotInfo={"snapshotHandle": SNAP},
        pvInfo={"reclaimPolicy": "Delete", "labels": None},
    )
    assert parse_volume_info(raw)[0].snapshot_id == SNAP


# -- CSI files ---------------------------------------------------------------------------------


def test_csi_files_quirks() -> None:
    """Quantity vs byte sizes, nanosecond creationTime and missing TypeMeta all parse."""
    vs = {
        "metadata": {"name": "velero-db-abcde", "namespace": "shop"},
        "spec": {"source": {"persistentVolumeClaimName": "db"}},
        "status": {"boundVolumeSnapshotContentName": "snapcontent-1", "restoreSize": "100Gi"},
    }
    vsc = {
        "metadata": {"name": "snapcontent-1"},
        "spec": {"driver": "ebs.csi.aws.com", "source": {"volumeHandle": VOL}},
        "status": {
            "snapshotHandle": SNAP,
            "restoreSize": 107374182400,
            "creationTime": 1718416831000000000,
        },
    }
    (snapshot,) = parse_csi_volume_snapshots(gzip_json([vs]))
    (content,) = parse_csi_volume_snapshot_contents(gzip_json([vsc]))
    assert snapshot.restore_size_bytes == 100 << 30
    assert (snapshot.namespace, snapshot.pvc, snapshot.content_name) == (
        "shop",
        "db",
        "snapcontent-1",
    )
    assert (content.snapshot_id, content.volume_id, content.restore_size_bytes) == (
        SNAP,
        VOL,
        100 << 30,
    )


@pytest.mark.parametrize(
    ("version", "reset"),
    [
        pytest.param("1.8", False, id="v1.8"),
        pytest.param("1.9", True, id="v1.9-fake-ref"),
        pytest.param("1.11", True, id="v1.11-fake-ref"),
        pytest.param("1.12", False, id="v1.12"),
        pytest.param("1.16", False, id="v1.16"),
    ],
)
def test_csi_snapshots_map_to_their_pvc_despite_fake_ref(version: str, reset: bool) -> None:
    """v1.9–v1.11 rewrite the VSC's volumeSnapshotRef to a fake one; the PVC is still right."""
    volumes = [Volume("shop", "db", method=CSI), Volume("billing", "ledger", method=CSI)]
    bucket, _, _ = build(version, volumes)
    name = "daily-20240615020031"
    contents = parse_csi_volume_snapshot_contents(bucket.files[bucket.key(name, CSI_CONTENTS)])
    assert all((c.ref_namespace or "").startswith("ns-") for c in contents) is reset
    # Without tarball and volumeinfo, only the CSI files map snapshot → PVC.
    backup, files = scan_of(bucket, name, skip=(TARBALL, VOLUME_INFO))
    scan = build_scan(backup, files, schedules=("daily",), copy_failed_backups=False)
    expected = {
        s.snapshot_id: (s.volume.namespace, s.volume.pvc) for s in bucket.backups[name].snapshots
    }
    assert {s.snapshot_id: (s.volume.namespace, s.volume.pvc) for s in scan.snapshots} == expected
    assert all(s.method is SnapshotMethod.CSI for s in scan.snapshots)
    assert not scan.errors


# -- tarball -----------------------------------------------------------------------------------


def pv_object(name: str = "pvc-1", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "labels": spec.pop("labels", {})},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "capacity": {"storage": "10Gi"},
            "claimRef": {"name": "db", "namespace": "shop"},
            "storageClassName": "gp3",
            "volumeMode": "Filesystem",
            **spec,
        },
    }


CSI_SOURCE = {"driver": "ebs.csi.aws.com", "volumeHandle": VOL, "fsType": "xfs"}


def affinity(key: str, *zones: str) -> dict[str, Any]:
    expression = {"key": key, "operator": "In", "values": list(zones)}
    return {"required": {"nodeSelectorTerms": [{"matchExpressions": [expression]}]}}


@pytest.mark.parametrize(
    ("spec", "zone", "fs_type", "volume_id"),
    [
        pytest.param(
            {
                "csi": CSI_SOURCE,
                "nodeAffinity": affinity("topology.ebs.csi.aws.com/zone", "eu-west-1b"),
            },
            "eu-west-1b",
            "xfs",
            VOL,
            id="csi-driver-zone-key",
        ),
        pytest.param(
            {
                "csi": CSI_SOURCE,
                "nodeAffinity": affinity("topology.kubernetes.io/zone", "eu-west-1c"),
            },
            "eu-west-1c",
            "xfs",
            VOL,
            id="well-known-zone-key",
        ),
        pytest.param(
            {
                "csi": CSI_SOURCE,
                "nodeAffinity": affinity("failure-domain.beta.kubernetes.io/zone", "eu-west-1a"),
            },
            "eu-west-1a",
            "xfs",
            VOL,
            id="deprecated-zone-key",
        ),
        pytest.param(
            {
                "csi": CSI_SOURCE,
                "nodeAffinity": affinity("topology.ebs.csi.aws.com/zone", "a", "b"),
            },
            None,
            "xfs",
            VOL,
            id="two-zones-is-no-zone",
        ),
        pytest.param(
            {
                "awsElasticBlockStore": {"volumeID": f"aws://eu-west-1a/{VOL}", "fsType": "ext4"},
                "labels": {"topology.kubernetes.io/zone": "eu-west-1a"},
            },
            "eu-west-1a",
            "ext4",
            VOL,
            id="in-tree-zone-label",
        ),
        pytest.param(
            {
                "awsElasticBlockStore": {"volumeID": f"aws://eu-west-1c/{VOL}"},
                "labels": {"failure-domain.beta.kubernetes.io/zone": "eu-west-1a__eu-west-1b"},
            },
            "eu-west-1c",
            None,
            VOL,
            id="in-tree-multizone-label-falls-back-to-volume-id",
        ),
        pytest.param(
            {"csi": {"driver": "efs.csi.aws.com", "volumeHandle": "fs-1"}},
            None,
            None,
            None,
            id="not-ebs",
        ),
    ],
)
def test_tarball_pv_details(
    spec: dict[str, Any], zone: str | None, fs_type: str | None, volume_id: str | None
) -> None:
    """A PV gives its zone (labels, node affinity, in-tree id), fs type and EBS volume."""
    tarball = parse_tarball(
        build_tarball([("persistentvolumes", None, "pvc-1", pv_object(**spec))])
    )
    pv = tarball.pvs["pvc-1"]
    assert (pv.availability_zone, pv.fs_type, pv.volume_id) == (zone, fs_type, volume_id)
    assert (pv.claim_namespace, pv.claim_name, pv.size_gib) == ("shop", "db", 10)
    assert pv.access_modes == ("ReadWriteOnce",)


def test_tarball_dedupes_preferred_version_and_ignores_other_versions() -> None:
    """Each object is stored twice (plain + -preferredversion); other API versions are not read."""
    raw = build_tarball(
        [
            ("persistentvolumes", None, "pvc-1", pv_object()),
            ("persistentvolumeclaims", "shop", "db", {"spec": {"volumeName": "pvc-1"}}),
        ]
    )
    # Add a non-preferred version copy with different content; it must be ignored.
    import io
    import tarfile

    extra = io.BytesIO()
    with (
        tarfile.open(fileobj=extra, mode="w:gz") as out,
        tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as old,
    ):
        for member in old.getmembers():
            out.addfile(member, old.extractfile(member))
        data = json.dumps(pv_object("other", storageClassName="bogus")).encode()
        info = tarfile.TarInfo("resources/persistentvolumes/v1beta1/cluster/pvc-1.json")
        info.size = len(data)
        out.addfile(info, io.BytesIO(data))
    tarball = parse_tarball(extra.getvalue())
    assert list(tarball.pvs) == ["pvc-1"]
    assert tarball.pvs["pvc-1"].storage_class == "gp3"
    assert tarball.pvcs[("shop", "db")].volume_name == "pvc-1"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(build_tarball([])[:30], "truncated or corrupt", id="truncated"),
        pytest.param(b"garbage", "truncated or corrupt", id="not-a-tarball"),
        pytest.param(
            build_tarball([("persistentvolumes", None, "pvc-1", {"spec": {"csi": "x"}})]),
            "spec.csi should be an object",
            id="pv-wrong-shape",
        ),
        pytest.param(
            build_tarball(
                [("persistentvolumes", None, "pvc-1", {"spec": {"capacity": {"storage": "ten"}}})]
            ),
            "not a Kubernetes quantity",
            id="bad-quantity",
        ),
    ],
)
def test_corrupt_tarball_is_a_read_error(raw: bytes, reason: str) -> None:
    """A truncated or malformed tarball is reported with a reason."""
    with pytest.raises(BackupReadError, match=reason):
        parse_tarball(raw)


def test_tarball_cut_anywhere_is_a_read_error() -> None:
    """A tarball cut at any point (an interrupted upload) is a reason, never a crash."""
    raw = build_tarball([("persistentvolumes", None, "pvc-1", pv_object())])
    for cut in [*range(64), *range(64, len(raw), 7)]:
        with pytest.raises(BackupReadError):
            parse_tarball(raw[:cut])


# -- small helpers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "size_bytes", "size_gib"),
    [
        pytest.param("10Gi", 10 << 30, 10, id="Gi"),
        pytest.param("100G", 100 * 10**9, 94, id="G-decimal-rounds-up"),
        pytest.param("500Mi", 500 << 20, 1, id="Mi"),
        pytest.param("1.5Ti", 3 << 39, 1536, id="fraction"),
        pytest.param("1e9", 10**9, 1, id="exponent"),
        pytest.param(10737418240, 10 << 30, 10, id="bytes-number"),
        pytest.param("10737418240", 10 << 30, 10, id="bytes-string"),
        pytest.param("0", None, None, id="zero-is-unknown"),
        pytest.param(None, None, None, id="absent"),
    ],
)
def test_quantities(value: object, size_bytes: int | None, size_gib: int | None) -> None:
    """Kubernetes quantities become whole GiB, rounded up as EBS sizes are."""
    assert parse_quantity(value) == size_bytes
    assert gib(parse_quantity(value)) == size_gib


@pytest.mark.parametrize("value", ["ten", "10Qi", "1e999", True, [10], "--1"], ids=str)
def test_bad_quantities_are_read_errors(value: object) -> None:
    """A size that is not a quantity is a corrupt file, reported."""
    with pytest.raises(BackupReadError):
        parse_quantity(value)


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("daily-20240615020031", True),
        ("a.b-c", True),
        ("x" * 253, True),
        ("x" * 254, False),
        ("Daily", False),
        ("-daily", False),
        ("daily_1", False),
        ("../etc", False),
        ("", False),
    ],
    ids=["schedule", "dots", "253", "254", "upper", "dash-first", "underscore", "dotdot", "empty"],
)
def test_backup_names_are_validated(name: str, valid: bool) -> None:
    """Only Kubernetes object names ever become S3 keys or tags."""
    assert is_valid_backup_name(name) is valid


def test_long_names_are_hashed_in_labels() -> None:
    """Velero hashes label values over 63 characters (first 57 + 6 hex of sha256)."""
    assert valid_label("a" * 63) == "a" * 63
    hashed = valid_label("a" * 64)
    assert len(hashed) == 63
    assert hashed.startswith("a" * 57)
    assert hashed != "a" * 63


# -- build_scan --------------------------------------------------------------------------------

MIXED = [
    Volume("shop", "db", 20, "eu-west-1a", NATIVE, "io2", iops=4000, storage_class="io2"),
    Volume("shop", "cache", 5, "eu-west-1b", CSI, storage_class="gp3-csi", fs_type="xfs"),
    Volume("shop", "uploads", 30, method=POD_VOLUME),
    Volume("shop", "tmp", 1, method=SKIPPED),
    Volume("billing", "ledger", 50, "eu-west-1c", DATA_MOVER),
]


@pytest.mark.parametrize(
    "version", ["1.9", "1.10", "1.11", "1.12", "1.13", "1.14", "1.15", "1.16", "1.17", "1.18"]
)
def test_every_version_yields_native_and_csi_with_details(version: str) -> None:
    """Every Velero version yields native and CSI snapshots with PVC, AZ and PV details."""
    numeric = tuple(int(part) for part in version.split("."))
    volumes = [v for v in MIXED if numeric >= (1, 12) or v.method != DATA_MOVER]
    bucket, snapshots, scan = build(version, volumes)
    built = bucket.backups["daily-20240615020031"]
    assert sorted(s.snapshot_id for s in snapshots) == sorted(built.snapshot_ids)
    assert not scan.errors
    assert not scan.skipped
    found = by_pvc(snapshots)
    db, cache = found["db"], found["cache"]
    assert (
        db.method,
        db.volume.namespace,
        db.volume.availability_zone,
        db.volume.volume_type,
        db.volume.iops,
    ) == (
        SnapshotMethod.NATIVE,
        "shop",
        "eu-west-1a",
        "io2",
        4000,
    )
    assert db.volume.volume_id == built.snapshots[0].volume_id
    assert (
        db.volume.storage_class,
        db.volume.fs_type,
        db.volume.size_gib,
        db.volume.access_modes,
    ) == (
        "io2",
        "ext4",
        20,
        ("ReadWriteOnce",),
    )
    assert (
        cache.method,
        cache.volume.availability_zone,
        cache.volume.fs_type,
        cache.volume.size_gib,
    ) == (
        SnapshotMethod.CSI,
        "eu-west-1b",
        "xfs",
        5,
    )
    assert cache.volume.volume_id == built.snapshots[1].volume_id
    assert cache.volume.csi_driver == "ebs.csi.aws.com"
    assert (cache.backup, cache.schedule, cache.backup_time, cache.phase) == (
        "daily-20240615020031",
        "daily",
        T0,
        "Completed",
    )


def test_volume_info_incomplete_natives_still_yielded() -> None:
    """A native snapshot Velero left out of volumeinfo is still copied (from volumesnapshots)."""
    volumes = [Volume("shop", "db"), Volume("shop", "lost", in_volume_info=False)]
    bucket, snapshots, scan = build("1.14", volumes)
    assert sorted(s.snapshot_id for s in snapshots) == sorted(
        bucket.backups["daily-20240615020031"].snapshot_ids
    )
    assert by_pvc(snapshots)["lost"].volume.namespace == "shop"  # mapped through the tarball PV
    assert not scan.errors


def test_volume_info_incomplete_csi_found_in_tarball() -> None:
    """v1.17+ has no CSI files: a CSI snapshot missing from volumeinfo is found in the tarball."""
    volumes = [
        Volume("shop", "db", method=CSI),
        Volume("shop", "lost", method=CSI, in_volume_info=False),
    ]
    bucket, snapshots, _ = build("1.17", volumes)
    assert sorted(s.snapshot_id for s in snapshots) == sorted(
        bucket.backups["daily-20240615020031"].snapshot_ids
    )
    assert by_pvc(snapshots)["lost"].volume.availability_zone == "eu-west-1a"


def test_v117_volume_info_only_csi_gets_volume_id_from_tarball() -> None:
    """volumeinfo has no volume id; the tarball PV supplies it."""
    bucket, snapshots, _ = build("1.17", [Volume("shop", "db", method=CSI)])
    assert (
        snapshots[0].volume.volume_id
        == bucket.backups["daily-20240615020031"].snapshots[0].volume_id
    )


def test_tarball_vscs_of_other_backups_are_not_ours() -> None:
    """A VSC in the tarball labelled with another backup's name is not this backup's snapshot."""
    bucket, _, _ = build("1.17", [Volume("shop", "db", method=CSI)])
    name = "daily-20240615020031"
    backup, files = scan_of(bucket, name, skip=(VOLUME_INFO,))
    assert files.tarball is not None
    foreign = replace(files.tarball.contents[0], snapshot_id=SNAP2, backup_label="other-backup")
    tarball = replace(files.tarball, contents=(*files.tarball.contents, foreign))
    scan = build_scan(
        backup, replace(files, tarball=tarball), schedules=("daily",), copy_failed_backups=False
    )
    assert SNAP2 not in {s.snapshot_id for s in scan.snapshots}
    assert len(scan.snapshots) == 1


def test_long_backup_names_match_hashed_vsc_labels() -> None:
    """A backup name over 63 characters still finds its VSCs (label value is hashed)."""
    name = "daily-" + "x" * 70
    bucket, snapshots, _ = build(
        "1.17", [Volume("shop", "db", method=CSI)], name=name, skip=(VOLUME_INFO,)
    )
    assert [s.snapshot_id for s in snapshots] == bucket.backups[name].snapshot_ids


def test_partially_failed_reports_failed_entry_once() -> None:
    """A failed native snapshot is one skip with the PVC named, and nothing to copy."""
    volumes = [Volume("shop", "db"), Volume("shop", "broken", method=FAILED)]
    _, snapshots, scan = build("1.15", volumes, phase="PartiallyFailed")
    assert [s.volume.pvc for s in snapshots] == ["db"]
    assert [s.reason for s in scan.skipped] == [
        "Velero recorded a failed native snapshot of PVC shop/broken; nothing to copy"
    ]
    assert not scan.errors


def test_v112_failed_entry_without_volume_info() -> None:
    """Before volumeinfo, the failed entry is named by its PV."""
    volumes = [Volume("shop", "db"), Volume("shop", "broken", method=FAILED)]
    _, snapshots, scan = build("1.12", volumes, phase="PartiallyFailed")
    assert len(snapshots) == 1
    (skip,) = scan.skipped
    assert "PV pvc-" in skip.reason


@pytest.mark.parametrize(
    ("phase", "copy_failed", "yielded", "reason"),
    [
        pytest.param("Completed", False, True, None, id="completed"),
        pytest.param("PartiallyFailed", False, True, None, id="partially-failed"),
        pytest.param(
            "Failed",
            False,
            False,
            "backup phase Failed; set SNAPD_COPY_FAILED_BACKUPS=true to copy its snapshots",
            id="failed",
        ),
        pytest.param("Failed", True, True, None, id="failed-copied-on-request"),
        *[
            pytest.param(
                phase,
                False,
                False,
                f"backup in flight (phase {phase}); read again next cycle",
                id=phase,
            )
            for phase in (
                "WaitingForPluginOperations",
                "WaitingForPluginOperationsPartiallyFailed",
                "Finalizing",
                "FinalizingPartiallyFailed",
                "InProgress",
                "New",
                "Queued",
            )
        ],
    ],
)
def test_phases(phase: str, copy_failed: bool, yielded: bool, reason: str | None) -> None:
    """Completed/PartiallyFailed are copied, Failed only on request, in-flight ones wait."""
    _, snapshots, scan = build("1.14", [Volume("shop", "db")], phase=phase, copy_failed=copy_failed)
    assert bool(snapshots) is yielded
    assert [s.reason for s in scan.skipped] == ([reason] if reason else [])


@pytest.mark.parametrize(
    "schedule", [pytest.param(None, id="manual"), pytest.param("hourly", id="other-schedule")]
)
def test_unwatched_backups_yield_nothing_and_skip_nothing(schedule: str | None) -> None:
    """Backups of other schedules, or manual ones named like the schedule, are not watched."""
    _, snapshots, scan = build("1.14", [Volume("shop", "db")], schedule=schedule)
    assert snapshots == []
    assert (scan.skipped, scan.errors) == ((), ())
    assert scan.watched is False
    assert scan.settled


def test_missing_volume_snapshots_file_is_noticed() -> None:
    """Without the volumesnapshots file the backup's files are incomplete: not an error yet."""
    bucket, _, _ = build("1.12", [Volume("shop", "db")])
    backup, files = scan_of(bucket, "daily-20240615020031", skip=(VOLUME_SNAPSHOTS,))
    scan = build_scan(backup, files, schedules=("daily",), copy_failed_backups=False)
    assert scan.snapshots == ()
    assert scan.errors == ()
    assert scan.missing == (
        "daily-20240615020031-volumesnapshots.json.gz (Velero writes it with every backup)",
    )
    assert scan.backup is not None
    assert scan.backup.files_complete is False


def test_unusable_tarball_still_copies_with_a_warning() -> None:
    """Without the tarball, snapshots are still copied; a warning says what happens to them."""
    bucket, _, _ = build("1.14", [Volume("shop", "db"), Volume("shop", "cache", method=CSI)])
    backup, files = scan_of(bucket, "daily-20240615020031", skip=(TARBALL,))
    files = replace(files, tarball_problem="daily-20240615020031.tar.gz: truncated or corrupt")
    scan = build_scan(backup, files, schedules=("daily",), copy_failed_backups=False)
    assert len(scan.snapshots) == 2
    assert {s.volume.pvc for s in scan.snapshots} == {"db", "cache"}  # volumeinfo mapped them
    assert scan.errors == ()
    (warning,) = scan.warnings
    assert "truncated or corrupt" in warning.error
    assert "its 2 snapshot(s) are still handled like any other" in warning.error
    assert scan.backup is not None
    assert scan.backup.files_complete is True


def test_unusable_tarball_without_snapshots_is_no_error() -> None:
    """A backup with no snapshots does not need its tarball."""
    bucket, _, _ = build("1.14", [Volume("shop", "uploads", method=POD_VOLUME)])
    backup, files = scan_of(bucket, "daily-20240615020031", skip=(TARBALL,))
    files = replace(files, tarball_problem="no tarball")
    scan = build_scan(backup, files, schedules=("daily",), copy_failed_backups=False)
    assert (scan.snapshots, scan.errors) == ((), ())


def test_snapshot_ids_are_deduplicated() -> None:
    """A snapshot named by volumeinfo, volumesnapshots, CSI files and tarball appears once."""
    _, snapshots, _ = build("1.14", [Volume("shop", "db"), Volume("shop", "c", method=CSI)])
    ids = [s.snapshot_id for s in snapshots]
    assert len(ids) == len(set(ids)) == 2


def test_backup_without_any_time_is_an_error() -> None:
    """Without a start or creation time a snapshot cannot be dated: error, not a guess."""
    backup = Backup("b", "daily", "Completed", None)
    scan = build_scan(backup, BackupFiles(), schedules=("daily",), copy_failed_backups=False)
    assert "startTimestamp" in scan.errors[0].error
    assert scan.snapshots == ()


def test_read_problems_are_errors_and_readable_snapshots_still_go() -> None:
    """A corrupt file of one backup is an error entry; what was readable is still copied."""
    bucket, _, _ = build("1.14", [Volume("shop", "db"), Volume("shop", "c", method=CSI)])
    backup, files = scan_of(bucket, "daily-20240615020031", skip=(VOLUME_INFO,))
    files = replace(files, problems=("daily-20240615020031-volumeinfo.json.gz: truncated",))
    scan = build_scan(backup, files, schedules=("daily",), copy_failed_backups=False)
    assert len(scan.snapshots) == 2
    assert [e.error for e in scan.errors] == [
        "daily-20240615020031-volumeinfo.json.gz: truncated; "
        "the snapshots its other files name are still copied"
    ]
    assert scan.backup is not None
    assert scan.backup.files_complete is False


# -- minimal but valid documents; the status checklist -----------------------------------------


def test_minimal_backup_document_parses() -> None:
    """Only what Velero always writes: no startTimestamp, formatVersion or labels but the
    schedule's, zero counters omitted — read, dated by creationTimestamp, counters 0."""
    doc = {
        "kind": "Backup",
        "apiVersion": "velero.io/v1",
        "metadata": {
            "name": "daily-20240615020031",
            "creationTimestamp": "2024-06-15T02:00:30Z",
            "labels": {"velero.io/schedule-name": "daily"},
        },
        "spec": {},
        "status": {"phase": "Completed"},
    }
    document = parse_backup_document("daily-20240615020031", json.dumps(doc).encode())
    backup = document.backup
    assert (backup.schedule, backup.phase, backup.start_time) == (
        "daily",
        "Completed",
        datetime(2024, 6, 15, 2, 0, 30, tzinfo=UTC),
    )
    assert (backup.format_version, backup.completion_time) == (None, None)
    assert document.counts == StatusCounts()


def test_status_counters_are_read() -> None:
    """Every counter of the checklist comes from `status`."""
    raw = json.dumps(
        backup_doc(
            volumeSnapshotsAttempted=3,
            volumeSnapshotsCompleted=2,
            csiVolumeSnapshotsAttempted=2,
            csiVolumeSnapshotsCompleted=1,
            backupItemOperationsAttempted=4,
        )
    ).encode()
    assert parse_backup_document("b", raw).counts == StatusCounts(3, 2, 2, 1, 4)


def test_native_entry_without_zone_or_phase_is_a_snapshot() -> None:
    """`volumeAZ` and `phase` are omitempty: an entry with an id and neither is copied."""
    entry = native()
    del entry["spec"]["volumeAZ"]
    entry["status"] = {"providerSnapshotID": SNAP}
    (parsed,) = parse_volume_snapshots(gzip_json([entry]))
    assert (parsed.snapshot_id, parsed.availability_zone, parsed.failed) == (SNAP, None, False)
    assert count_native_entries(gzip_json([entry])) == (1, 0)


@pytest.mark.parametrize(
    "parser",
    [
        parse_volume_snapshots,
        parse_volume_info,
        parse_csi_volume_snapshots,
        parse_csi_volume_snapshot_contents,
    ],
)
def test_files_holding_null_are_empty(parser: Any) -> None:
    """Go writes a nil slice as `null`: every list file then holds no entry."""
    assert parser(gzip_json(None)) == ()
    assert parse_item_operations(gzip_json(None)) == 0


def checked(
    version: str, volumes: list[Volume], *, skip: tuple[str, ...] = (), **counts: int
) -> BackupScan:
    """build_scan of a built backup with `skip` files absent and `counts` in its status."""
    bucket, _, _ = build(version, volumes)
    backup, files = scan_of(bucket, "daily-20240615020031", skip=skip)
    names = {k.rsplit("/", 1)[-1] for k in bucket.files if "/daily-20240615020031/" in k}
    listed = frozenset(n for n in names if not any(n.endswith(s) for s in skip))
    files = replace(files, listed=listed, counts=replace(files.counts, **counts))
    return build_scan(backup, files, schedules=("daily",), copy_failed_backups=False)


def test_v117_csi_snapshots_are_counted_from_volume_info() -> None:
    """Velero 1.17 writes no csi-* files: volumeinfo alone names its CSI snapshots."""
    scan = checked("1.17", [Volume("shop", "cache", method=CSI)], csi_completed=1)
    assert scan.missing == ()
    assert scan.backup is not None
    assert scan.backup.files_complete


def test_csi_snapshots_missing_from_every_file_are_missing() -> None:
    """Status counts CSI snapshots no file names yet (tarball, volumeinfo still to come)."""
    scan = checked(
        "1.17",
        [Volume("shop", "cache", method=CSI)],
        skip=(VOLUME_INFO, TARBALL),
        csi_completed=1,
        csi_attempted=1,
    )
    assert scan.snapshots == ()
    assert scan.missing == (
        "the files naming its CSI snapshots (daily-20240615020031-csi-volumesnapshotcontents"
        ".json.gz up to Velero 1.16, daily-20240615020031-volumeinfo.json.gz from 1.13)",
        "daily-20240615020031.tar.gz",
    )


def test_fewer_csi_snapshots_than_counted_are_missing() -> None:
    """Files naming 1 CSI snapshot under a status that counts 2: one is missing."""
    scan = checked("1.14", [Volume("shop", "cache", method=CSI)], csi_completed=2)
    assert scan.missing == ("1 of the 2 CSI snapshots status.csiVolumeSnapshotsCompleted counts",)
    assert len(scan.snapshots) == 1  # what is there is copied meanwhile


def test_native_entries_short_of_attempted_are_missing() -> None:
    """volumeSnapshotsAttempted counts an entry the file does not hold."""
    scan = checked("1.12", [Volume("shop", "db")], native_attempted=2)
    assert scan.missing == (
        "1 of the 2 native snapshot entries status.volumeSnapshotsAttempted counts",
    )


def test_item_operations_file_is_checked() -> None:
    """backupItemOperationsAttempted needs the itemoperations file with as many entries."""
    volumes = [Volume("shop", "db")]
    absent = checked(
        "1.14", volumes, skip=("-itemoperations.json.gz",), item_operations_attempted=1
    )
    assert absent.missing == ("daily-20240615020031-itemoperations.json.gz",)
    bucket, _, _ = build("1.14", volumes)
    backup, files = scan_of(bucket, "daily-20240615020031")
    files = replace(files, counts=StatusCounts(item_operations_attempted=2), item_operations=1)
    scan = build_scan(backup, files, schedules=("daily",), copy_failed_backups=False)
    assert scan.missing == (
        "1 of the 2 item operations status.backupItemOperationsAttempted counts",
    )
    done = replace(files, item_operations=2)
    assert build_scan(backup, done, schedules=("daily",), copy_failed_backups=False).missing == ()


@pytest.mark.parametrize(
    ("version", "interim", "finalizer"),
    [
        pytest.param("1.10", None, [], id="v1.10-one-upload"),
        pytest.param("1.12", "WaitingForPluginOperations", [TARBALL, BACKUP_FILE], id="v1.12"),
        pytest.param(
            "1.14", "WaitingForPluginOperations", [VOLUME_INFO, TARBALL, BACKUP_FILE], id="v1.14"
        ),
    ],
)
def test_bucket_builder_uploads_in_velero_order(
    version: str, interim: str | None, finalizer: list[str]
) -> None:
    """The builder's upload order is Velero's: log, velero-backup.json, tarball, the rest in
    map order; from v1.11 an interim phase first and the finalizer's rewrites last."""
    bucket = VeleroBucket("velero", mode="memory")
    volumes = [Volume("shop", "db"), Volume("shop", "cache", method=CSI)]
    bucket.backup("b", schedule="daily", version=version, volumes=volumes, upload=False)
    steps = list(bucket.pending["b"])
    assert [s for s, _ in steps[:3]] == ["-logs.gz", BACKUP_FILE, TARBALL]
    first = json.loads(steps[1][1])["status"]
    if interim is None:
        assert first["phase"] == "Completed"
        assert "completionTimestamp" in first
    else:
        assert first["phase"] == interim
        assert "completionTimestamp" not in first
        assert [s for s, _ in steps[-len(finalizer) :]] == finalizer
        assert json.loads(steps[-1][1])["status"]["phase"] == "Completed"
    other = VeleroBucket("velero", mode="memory")
    other.backup(
        "b", schedule="daily", version=version, volumes=volumes, upload=False, order_seed=7
    )
    assert sorted(s for s, _ in steps) == sorted(s for s, _ in other.pending["b"])
    while bucket.upload_next("b") is not None:
        pass
    assert bucket.pending["b"] == []
    assert json.loads(bucket.file("b", BACKUP_FILE))["status"]["phase"] == "Completed"
