"""The DR rewrite, per Velero version layout: decode what was written, compare it field by
field with what Velero reads on restore (docs/dr-location.md "What Velero reads")."""

from __future__ import annotations

import copy
import gzip
import io
import json
import tarfile
import tracemalloc
from typing import IO, Any, cast

import pytest

from simworld.velero_bucket import (
    CSI,
    CSI_CONTENTS,
    CSI_SNAPSHOTS,
    DATA_MOVER,
    FAILED,
    NATIVE,
    POD_VOLUME,
    TARBALL,
    VOLUME_INFO,
    VOLUME_SNAPSHOTS,
    BuiltBackup,
    VeleroBucket,
    Volume,
    build_tarball,
    filler_tarball,
)
from snapd.dr_rewrite import (
    HANDLE_ANNOTATION,
    DrMapping,
    DrRewriteError,
    FileKind,
    file_kind,
    go_json,
    rewrite_json_gz,
    rewrite_tarball,
)

VERSIONS = ["1.0", "1.3", "1.4", "1.8", "1.9", "1.10", "1.11", "1.12", "1.13", "1.14"]
VERSIONS += ["1.15", "1.16", "1.17", "1.18"]
ZONES = {"eu-west-1a": "us-east-1c", "eu-west-1b": "us-east-1d"}
NAME = "daily-20240615020031"


def _volumes() -> list[Volume]:
    return [
        Volume("shop", "db", 20, "eu-west-1a", NATIVE),
        Volume("shop", "cache", 5, "eu-west-1b", CSI, storage_class="gp3-csi"),
        Volume("mon", "prom", 50, "eu-west-1b", NATIVE, in_tree=True, zone_in="label"),
        Volume("mon", "logs", 8, "eu-west-1a", CSI, zone_in="label"),
        Volume("shop", "uploads", 3, "eu-west-1a", POD_VOLUME),
        Volume("shop", "broken", 3, "eu-west-1a", FAILED),
    ]


def _build(version: str, volumes: list[Volume] | None = None) -> tuple[VeleroBucket, BuiltBackup]:
    bucket = VeleroBucket("velero", region="eu-west-1", mode="memory")
    bucket.backup(NAME, schedule="daily", version=version, volumes=volumes or _volumes())
    return bucket, bucket.backups[NAME]


def _mapping(built: BuiltBackup) -> DrMapping:
    snapshots = {
        s.snapshot_id: "snap-dr" + s.snapshot_id[5:] for s in built.snapshots if s.snapshot_id
    }
    return DrMapping(
        snapshots=snapshots,
        zones=ZONES,
        source_region="eu-west-1",
        region="us-east-1",
        volumes=frozenset(s.volume.pv_name for s in built.snapshots if s.snapshot_id),
    )


def _gz_value(raw: bytes) -> Any:
    text = gzip.decompress(raw)
    assert text.endswith(b"\n"), "one JSON value and a newline"
    assert text.count(b"\n") == 1
    return json.loads(text)


def _same_order(actual: Any, expected: Any) -> None:
    """Equal, and keys in the same order at every level."""
    assert actual == expected
    assert json.dumps(actual) == json.dumps(expected)


def _tar(raw: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
    members = []
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as archive:
        for info in archive:
            handle = archive.extractfile(info)
            members.append((info, handle.read() if handle else b""))
    return members


@pytest.mark.parametrize("version", VERSIONS)
def test_volume_snapshots_name_the_replica_and_dr_zone(version: str) -> None:
    bucket, built = _build(version)
    mapping = _mapping(built)
    original = _gz_value(bucket.file(NAME, VOLUME_SNAPSHOTS))
    written = rewrite_json_gz(
        FileKind.VOLUME_SNAPSHOTS, bucket.file(NAME, VOLUME_SNAPSHOTS), mapping
    )
    assert written is not None
    expected = copy.deepcopy(original)
    for entry in expected:
        snapshot_id = entry["status"].get("providerSnapshotID")
        if snapshot_id:  # pv_restorer: providerSnapshotID, volumeAZ (+ type, IOPS unchanged)
            entry["status"]["providerSnapshotID"] = mapping.snapshots[snapshot_id]
            entry["spec"]["volumeAZ"] = ZONES[entry["spec"]["volumeAZ"]]
    value = _gz_value(written)
    _same_order(value, expected)
    assert gzip.decompress(written) == go_json(expected) + b"\n"
    # What Velero will read, field by field.
    natives = {s.volume.pv_name: s for s in built.snapshots if s.method == NATIVE}
    for entry in value:
        pv = entry["spec"].get("persistentVolumeName") or entry["spec"]["PersistentVolumeName"]
        if pv in natives:
            source_id = natives[pv].snapshot_id
            assert source_id is not None
            assert entry["status"]["providerSnapshotID"] == "snap-dr" + source_id[5:]
            assert entry["spec"]["volumeAZ"] == ZONES[natives[pv].az]
            assert entry["spec"]["volumeType"] == natives[pv].volume.volume_type
            assert entry["spec"]["location"] == "default"
        else:
            assert entry["status"] == {"phase": "Failed"}


@pytest.mark.parametrize("version", [v for v in VERSIONS if v >= "1.13" or v == "1.13"][-6:])
def test_volume_info_names_replicas_zones_and_regions(version: str) -> None:
    volumes = _volumes()
    volumes[0] = Volume("shop", "db", 20, "eu-west-1a", NATIVE, zone_in="label")
    bucket, built = _build(version, volumes)
    raw = bucket.file(NAME, VOLUME_INFO)
    original = _gz_value(raw)
    for entry in original:  # Velero fills pvInfo.labels from the PV's labels
        entry["pvInfo"]["labels"] = {
            "topology.kubernetes.io/region": "eu-west-1",
            "topology.kubernetes.io/zone": "eu-west-1a",
            "team": "shop",
        }
    bucket.replace(NAME, VOLUME_INFO, original)
    mapping = _mapping(built)
    written = rewrite_json_gz(FileKind.VOLUME_INFO, bucket.file(NAME, VOLUME_INFO), mapping)
    assert written is not None
    expected = copy.deepcopy(original)
    for entry in expected:
        info = entry.get("nativeSnapshotInfo") or entry.get("csiSnapshotInfo") or {}
        if info.get("snapshotHandle") in mapping.snapshots:
            info["snapshotHandle"] = mapping.snapshots[info["snapshotHandle"]]
            if "volumeAZ" in info:
                info["volumeAZ"] = ZONES[info["volumeAZ"]]
            entry["pvInfo"]["labels"]["topology.kubernetes.io/region"] = "us-east-1"
            entry["pvInfo"]["labels"]["topology.kubernetes.io/zone"] = "us-east-1c"
    _same_order(_gz_value(written), expected)
    # v1.14+ restore chooses the method per volume from these entries.
    by_pvc = {e["pvcName"]: e for e in _gz_value(written)}
    assert by_pvc["cache"]["csiSnapshotInfo"]["snapshotHandle"].startswith("snap-dr")
    assert by_pvc["db"]["nativeSnapshotInfo"]["volumeAZ"] == "us-east-1c"
    assert by_pvc["broken"]["nativeSnapshotInfo"]["snapshotHandle"] == ""
    assert by_pvc["uploads"]["pvInfo"]["labels"]["topology.kubernetes.io/zone"] == "eu-west-1a"


@pytest.mark.parametrize("version", ["1.4", "1.8", "1.9", "1.10", "1.11", "1.12", "1.16"])
def test_csi_files_name_the_replica(version: str) -> None:
    bucket, built = _build(version)
    mapping = _mapping(built)
    contents = rewrite_json_gz(FileKind.CSI_CONTENTS, bucket.file(NAME, CSI_CONTENTS), mapping)
    snapshots = rewrite_json_gz(FileKind.CSI_SNAPSHOTS, bucket.file(NAME, CSI_SNAPSHOTS), mapping)
    assert contents is not None
    assert snapshots is not None
    expected_contents = _gz_value(bucket.file(NAME, CSI_CONTENTS))
    for vsc in expected_contents:
        vsc["status"]["snapshotHandle"] = mapping.snapshots[vsc["status"]["snapshotHandle"]]
        source = vsc["spec"]["source"]
        if "snapshotHandle" in source:  # v1.9-v1.11 reset contents
            source["snapshotHandle"] = mapping.snapshots[source["snapshotHandle"]]
    _same_order(_gz_value(contents), expected_contents)
    expected_vs = _gz_value(bucket.file(NAME, CSI_SNAPSHOTS))
    for vs in expected_vs:
        annotations = vs["metadata"]["annotations"]
        annotations[HANDLE_ANNOTATION] = mapping.snapshots[annotations[HANDLE_ANNOTATION]]
    _same_order(_gz_value(snapshots), expected_vs)
    assert len(expected_vs) == 2


def test_csi_files_without_the_feature_hold_null_and_stay() -> None:
    bucket = VeleroBucket("velero", mode="memory")
    bucket.backup(NAME, schedule="daily", version="1.12", volumes=_volumes(), csi_feature=False)
    mapping = _mapping(bucket.backups[NAME])
    assert rewrite_json_gz(FileKind.CSI_CONTENTS, bucket.file(NAME, CSI_CONTENTS), mapping) is None


@pytest.mark.parametrize("version", VERSIONS)
def test_tarball_items_move_to_the_replica_and_dr_zone(version: str) -> None:
    bucket, built = _build(version)
    mapping = _mapping(built)
    raw = bucket.file(NAME, TARBALL)
    sink = io.BytesIO()
    report = rewrite_tarball(io.BytesIO(raw), sink, mapping)
    before, after = _tar(raw), _tar(sink.getvalue())
    assert [i.name for i, _ in after] == [i.name for i, _ in before]
    assert report.members == len(before)
    rewritten = 0
    for (old, old_data), (new, new_data) in zip(before, after, strict=True):
        for attribute in ("mode", "mtime", "uid", "gid", "uname", "gname", "type"):
            assert getattr(new, attribute) == getattr(old, attribute)
        assert new.size == len(new_data)
        if new_data == old_data:
            continue
        rewritten += 1
        old_obj, new_obj = json.loads(old_data), json.loads(new_data)
        assert new_data == go_json(new_obj)  # compact, sorted keys kept, no newline
        assert list(new_obj) == list(old_obj)
        _check_item(old.name, old_obj, new_obj, mapping)
    assert rewritten == report.rewritten
    # 4 PVs (2 copies each), 2 VS, 2 VSC (2 copies each).
    assert rewritten == 16


class _CountingSink(io.RawIOBase):
    """A sink that keeps nothing: counts what is written (the DR upload's stand-in)."""

    def __init__(self) -> None:
        self.written = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.written += len(data)
        return len(data)


#: Filler in the streaming test: eight times its memory bound, so a rewrite that holds the
#: tarball (or one whole filler member) in memory fails it. Zeros pack to ~64 KiB.
STREAM_FILLER = 64 << 20
STREAM_MEMORY_BOUND = 8 << 20


def test_a_tarball_far_larger_than_memory_is_rewritten_streaming() -> None:
    """64 MiB of filler in 16 MiB members before the items: the rewrite allocates under
    8 MiB at its peak (tracemalloc counts every Python allocation, zlib's buffers too), so
    a tarball of any size is published in bounded memory; the items are still rewritten.
    The whole `snapd sync` process publishing a 1 GiB tarball is measured by `make bench`
    (`--parts dr-memory`)."""
    bucket, built = _build("1.14")
    packed = io.BytesIO()
    fillers = filler_tarball(
        bucket.file(NAME, TARBALL), packed, STREAM_FILLER, member_size=16 << 20
    )
    source, sink = io.BytesIO(packed.getvalue()), _CountingSink()
    del packed
    tracemalloc.start()
    try:
        report = rewrite_tarball(source, cast("IO[bytes]", sink), _mapping(built))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < STREAM_MEMORY_BOUND, f"peak {peak >> 20} MiB"
    assert report.members == fillers + len(_tar(bucket.file(NAME, TARBALL)))
    assert report.rewritten == 16
    assert sink.written > 0


def _check_item(path: str, old: dict[str, Any], new: dict[str, Any], mapping: DrMapping) -> None:
    """What the Velero restore reads from each rewritten item, and nothing else changed."""
    expected = copy.deepcopy(old)
    if "/persistentvolumes/" in f"/{path.split('/')[1]}/":
        labels = expected["metadata"].get("labels") or {}
        if "topology.kubernetes.io/zone" in labels:
            labels["topology.kubernetes.io/zone"] = ZONES[labels["topology.kubernetes.io/zone"]]
            labels["topology.kubernetes.io/region"] = "us-east-1"
        spec = expected["spec"]
        if "nodeAffinity" in spec:
            expression = spec["nodeAffinity"]["required"]["nodeSelectorTerms"][0][
                "matchExpressions"
            ][0]
            expression["values"] = [ZONES[z] for z in expression["values"]]
        if "awsElasticBlockStore" in spec:
            zone, volume = spec["awsElasticBlockStore"]["volumeID"][6:].split("/")
            spec["awsElasticBlockStore"]["volumeID"] = f"aws://{ZONES[zone]}/{volume}"
            assert new["spec"]["awsElasticBlockStore"]["volumeID"].startswith("aws://us-east-1")
    elif path.split("/")[1].startswith("volumesnapshotcontents"):
        expected["status"]["snapshotHandle"] = mapping.snapshots[old["status"]["snapshotHandle"]]
        assert new["status"]["snapshotHandle"].startswith("snap-dr")
    else:
        annotations = expected["metadata"]["annotations"]
        annotations[HANDLE_ANNOTATION] = mapping.snapshots[annotations[HANDLE_ANNOTATION]]
    assert new == expected


def test_pv_of_a_volume_not_replicated_stays_byte_identical() -> None:
    bucket, built = _build("1.14")
    mapping = _mapping(built)
    mapping = DrMapping(mapping.snapshots, ZONES, "eu-west-1", "us-east-1", frozenset())
    sink = io.BytesIO()
    rewrite_tarball(io.BytesIO(bucket.file(NAME, TARBALL)), sink, mapping)
    pvs = [(i.name, d) for i, d in _tar(sink.getvalue()) if "/persistentvolumes/" in i.name]
    original = dict((i.name, d) for i, d in _tar(bucket.file(NAME, TARBALL)))
    assert pvs
    assert all(original[name] == data for name, data in pvs)


def test_go_escaping_and_unicode_are_kept() -> None:
    item = {"metadata": {"name": "pv-1", "annotations": {"a": "x<y>&z", "é": "日本\u2028"}}}
    assert (
        go_json(item)
        == (
            '{"metadata":{"name":"pv-1","annotations":{"a":"x\\u003cy\\u003e\\u0026z",'
            '"é":"日本\\u2028"}}}'
        ).encode()
    )


def test_a_zone_without_dr_zone_stops_the_rewrite() -> None:
    bucket, built = _build("1.14", [Volume("shop", "db", 20, "eu-west-1c", NATIVE)])
    mapping = _mapping(built)
    with pytest.raises(DrRewriteError, match="eu-west-1c has no DR zone; map it in SNAPD_DR_ZONES"):
        rewrite_json_gz(FileKind.VOLUME_SNAPSHOTS, bucket.file(NAME, VOLUME_SNAPSHOTS), mapping)


def test_corrupt_files_are_errors_not_crashes() -> None:
    bucket, built = _build("1.14")
    mapping = _mapping(built)
    with pytest.raises(DrRewriteError, match="gzip"):
        rewrite_json_gz(FileKind.VOLUME_INFO, b"not gzip", mapping)
    with pytest.raises(DrRewriteError, match="tarball"):
        rewrite_tarball(io.BytesIO(bucket.file(NAME, TARBALL)[:200]), io.BytesIO(), mapping)


def test_data_mover_entries_are_left_alone() -> None:
    bucket, built = _build("1.15", [Volume("shop", "db", 20, "eu-west-1a", DATA_MOVER)])
    assert (
        rewrite_json_gz(FileKind.VOLUME_INFO, bucket.file(NAME, VOLUME_INFO), _mapping(built))
        is None
    )


def test_non_preferred_version_paths_are_rewritten_too() -> None:
    vsc = {"kind": "VolumeSnapshotContent", "status": {"snapshotHandle": "snap-0a"}}
    raw = build_tarball([])
    items = [("volumesnapshotcontents.snapshot.storage.k8s.io", None, "c", vsc)]
    raw = build_tarball(items)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for info, data in _tar(raw):
            archive.addfile(info, io.BytesIO(data))
        extra = tarfile.TarInfo(
            "resources/volumesnapshotcontents.snapshot.storage.k8s.io/v1beta1/cluster/c.json"
        )
        payload = json.dumps(vsc, sort_keys=True, separators=(",", ":")).encode()
        extra.size = len(payload)
        archive.addfile(extra, io.BytesIO(payload))
    mapping = DrMapping({"snap-0a": "snap-0b"}, ZONES, "eu-west-1", "us-east-1")
    sink = io.BytesIO()
    assert rewrite_tarball(io.BytesIO(buffer.getvalue()), sink, mapping).rewritten == 3
    for info, data in _tar(sink.getvalue()):
        if info.name.endswith("c.json"):
            assert json.loads(data)["status"]["snapshotHandle"] == "snap-0b"


def test_file_kinds() -> None:
    assert file_kind(NAME, f"{NAME}-volumeinfo.json.gz") is FileKind.VOLUME_INFO
    assert file_kind(NAME, f"{NAME}.tar.gz") is FileKind.TARBALL
    assert file_kind(NAME, f"{NAME}-logs.gz") is None
    assert file_kind(NAME, "velero-backup.json") is None
