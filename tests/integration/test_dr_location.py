"""The DR location end to end: the real `snapd` CLI against moto, the EC2 simulator and a
Velero bucket; what lands in the DR bucket is decoded and compared with what Velero reads."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
import yaml

from simworld.ec2sim import Ec2Simulator
from simworld.moto_server import MotoWorld
from simworld.velero_bucket import CSI, NATIVE, VeleroBucket, Volume, filler_tarball
from snapd import tags
from snapd.aws import AwsClients
from snapd.config import Settings
from snapd.dr import UPLOAD_PART_SIZE
from snapd.service import Engine
from tests.integration.cli import run_snapd
from tests.integration.test_cli_sync import settings_env

SRC, DST, BUCKET, DR_BUCKET = "eu-west-1", "eu-central-1", "velero-test", "snapd-dr"
NOW = datetime.now(UTC).replace(microsecond=0)


def env(moto: MotoWorld, **extra: str) -> dict[str, str]:
    """test_cli_sync's settings, with the DR location on (`extra` may override it)."""
    dr = {"SNAPD_DR_BUCKET": DR_BUCKET, "SNAPD_DR_PREFIX": "velero/dr"}
    return settings_env(moto, **{**dr, **extra})


def s3(moto: MotoWorld, region: str = DST) -> Any:
    return boto3.client("s3", region_name=region, endpoint_url=moto.url)


def make_dr_bucket(moto: MotoWorld) -> None:
    s3(moto).create_bucket(Bucket=DR_BUCKET, CreateBucketConfiguration={"LocationConstraint": DST})


VOLUMES = [
    Volume("shop", "db", 20, f"{SRC}a", NATIVE, "gp3"),
    Volume("shop", "cache", 5, f"{SRC}b", CSI, "gp3"),
    Volume("mon", "prom", 8, f"{SRC}b", NATIVE, "gp2", in_tree=True, zone_in="label"),
]


def seed(moto: MotoWorld, days: int = 2, version: str = "1.14") -> VeleroBucket:
    bucket = VeleroBucket(BUCKET, region=SRC, endpoint_url=moto.url)
    for day in range(days, 0, -1):
        start = NOW - timedelta(days=day)
        bucket.backup(
            f"daily-{start:%Y%m%d%H%M%S}",
            schedule="daily",
            volumes=VOLUMES,
            start=start,
            version=version,
        )
    return bucket


def objects(moto: MotoWorld, bucket: str, prefix: str = "", region: str = DST) -> dict[str, bytes]:
    client = s3(moto, region)
    found: dict[str, bytes] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents") or ():
            found[item["Key"]] = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return found


def replica_of(moto: MotoWorld) -> dict[str, str]:
    """Source snapshot id → completed replica id."""
    ec2 = boto3.client("ec2", region_name=DST, endpoint_url=moto.url)
    found = {}
    for snap in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]:
        t = tags.from_tag_list(snap.get("Tags"))
        if snap["State"] == "completed":
            found[t[tags.SOURCE_SNAPSHOT_ID]] = snap["SnapshotId"]
    return found


def dr_key(name: str, file_name: str) -> str:
    return f"velero/dr/backups/{name}/{file_name}"


def gz(data: bytes) -> Any:
    return json.loads(gzip.decompress(data))


def tar_items(data: bytes) -> dict[str, Any]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        return {
            m.name: json.loads(archive.extractfile(m).read())  # type: ignore[union-attr]
            for m in archive
            if m.name.endswith(".json")
        }


def test_sync_publishes_every_fully_replicated_backup(
    moto: MotoWorld, ec2sim: Ec2Simulator
) -> None:
    """After `snapd sync` each backup sits in the DR location, byte-identical except the
    references, which name the replicas, the DR zones and region; the source is untouched."""
    make_dr_bucket(moto)
    bucket = seed(moto)
    source_before = objects(moto, BUCKET, region=SRC)
    result = run_snapd("sync", env=env(moto))
    assert result.code == 0, result.stderr
    assert objects(moto, BUCKET, region=SRC) == source_before, "never a write to the source"
    dr = objects(moto, DR_BUCKET)
    replicas = replica_of(moto)
    assert set(dr) == {
        k.replace("backups/", "velero/dr/backups/", 1)
        for k in source_before
        if k.startswith("backups/daily-")
    }
    for name, built in bucket.backups.items():
        src = {k.rsplit("/", 1)[1]: v for k, v in source_before.items() if f"/{name}/" in k}
        rewritten = {
            f"{name}-volumesnapshots.json.gz",
            f"{name}-volumeinfo.json.gz",
            f"{name}-csi-volumesnapshotcontents.json.gz",
            f"{name}-csi-volumesnapshots.json.gz",
            f"{name}.tar.gz",
        }
        for file_name, data in src.items():
            if file_name not in rewritten:
                assert dr[dr_key(name, file_name)] == data, file_name
        # Native: pv_restorer reads providerSnapshotID and volumeAZ.
        for entry in gz(dr[dr_key(name, f"{name}-volumesnapshots.json.gz")]):
            source = next(
                s
                for s in built.snapshots
                if s.volume.pv_name == entry["spec"]["persistentVolumeName"]
            )
            assert source.snapshot_id is not None
            assert entry["status"]["providerSnapshotID"] == replicas[source.snapshot_id]
            assert entry["spec"]["volumeAZ"] == DST + source.az[-1]  # the same letter
        # v1.14+: volumeinfo picks the method and names the handle.
        for entry in gz(dr[dr_key(name, f"{name}-volumeinfo.json.gz")]):
            info = entry.get("nativeSnapshotInfo") or entry["csiSnapshotInfo"]
            assert info["snapshotHandle"] in replicas.values()
        # CSI: the VSC handle in the tarball and the VS annotation.
        items = tar_items(dr[dr_key(name, f"{name}.tar.gz")])
        contents = [v for k, v in items.items() if "volumesnapshotcontents" in k]
        assert contents
        assert all(c["status"]["snapshotHandle"] in replicas.values() for c in contents)
        for key, pv in items.items():
            if not key.startswith("resources/persistentvolumes/"):
                continue
            text = json.dumps(pv)
            assert f"{SRC}a" not in text
            assert f"{SRC}b" not in text
            assert f'"{SRC}"' not in text
        prom = next(v for k, v in items.items() if k.endswith(f"{VOLUMES[2].pv_name}.json"))
        assert prom["metadata"]["labels"]["topology.kubernetes.io/zone"] == f"{DST}b"
        assert prom["spec"]["awsElasticBlockStore"]["volumeID"].startswith(f"aws://{DST}b/vol-")


def test_status_dr_manifests_and_bad_settings(moto: MotoWorld, ec2sim: Ec2Simulator) -> None:
    make_dr_bucket(moto)
    bucket = seed(moto)
    assert run_snapd("sync", env=env(moto)).code == 0
    status = run_snapd("status", "-o", "json", env=env(moto))
    assert status.code == 0, status.stderr
    dr = json.loads(status.stdout)["dr"]
    newest = max(bucket.backups)
    assert dr["location"] == f"s3://{DR_BUCKET}/velero/dr"
    assert dr["published"] == 2
    assert dr["schedules"] == [
        {
            "name": "daily",
            "newest_published_backup": newest,
            "recovery_point": bucket.backups[newest].start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    ]
    text = run_snapd("status", env=env(moto))
    assert "DR location s3://snapd-dr/velero/dr: 2 backups published" in text.stdout
    # dr-manifests reads the DR bucket alone: no source settings at all.
    only_dr = {k: v for k, v in env(moto).items() if not k.startswith("SNAPD_VELERO")}
    only_dr.pop("SNAPD_SOURCE_REGION")
    manifests = run_snapd("dr-manifests", "--velero-namespace", "velero-dr", env=only_dr)
    assert manifests.code == 0, manifests.stderr
    docs = list(yaml.safe_load_all(manifests.stdout))
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert kinds == {
        ("BackupStorageLocation", "snapd-dr"),
        ("VolumeSnapshotLocation", "default"),
        ("VolumeSnapshotClass", "ebs-csi"),
    }
    bsl = docs[0]
    assert bsl["spec"] == {
        "provider": "aws",
        "objectStorage": {"bucket": DR_BUCKET, "prefix": "velero/dr"},
        "config": {"region": DST},
        "accessMode": "ReadOnly",
    }
    assert bsl["metadata"]["namespace"] == "velero-dr"
    vsc = docs[2]
    assert vsc["deletionPolicy"] == "Retain"
    assert vsc["driver"] == "ebs.csi.aws.com"
    assert vsc["metadata"]["labels"] == {"velero.io/csi-volumesnapshot-class": "true"}
    # The DR root is the source location: exit 2, one line.
    same = run_snapd("sync", env=env(moto, SNAPD_DR_BUCKET=BUCKET, SNAPD_DR_PREFIX=""))
    assert same.code == 2
    assert "must differ from" in same.stderr
    # A SNAPD_DR_ZONES zone the destination region lacks: exit 2 naming it.
    bad = run_snapd("sync", env=env(moto, SNAPD_DR_ZONES=f"{SRC}a={DST}z"))
    assert bad.code == 2, bad.stderr
    assert f"{DST}z not in {DST}" in bad.stderr


def test_a_zone_without_dr_zone_is_reported_not_published(
    moto: MotoWorld, ec2sim: Ec2Simulator
) -> None:
    """us-west-1 has zones a and b only: a backup in eu-west-1c has no DR zone there."""
    west = "us-west-1"
    s3(moto, west).create_bucket(
        Bucket=DR_BUCKET, CreateBucketConfiguration={"LocationConstraint": west}
    )
    bucket = VeleroBucket(BUCKET, region=SRC, endpoint_url=moto.url)
    start = NOW - timedelta(hours=3)
    lost, fine = f"daily-{start:%Y%m%d%H%M%S}", f"daily-{start + timedelta(hours=1):%Y%m%d%H%M%S}"
    bucket.backup(lost, schedule="daily", volumes=[Volume("shop", "db", 5, f"{SRC}c")], start=start)
    bucket.backup(
        fine,
        schedule="daily",
        volumes=[Volume("shop", "web", 5, f"{SRC}a")],
        start=start + timedelta(hours=1),
    )
    settings = env(moto, SNAPD_DESTINATION_REGION=west)
    result = run_snapd("sync", "-o", "json", env=settings)
    assert result.code == 0, result.stderr
    errors = [e for e in json.loads(result.stdout)["errors"] if e["backup"] == lost]
    assert len(errors) == 1
    assert f"source zone {SRC}c has no DR zone in {west}" in errors[0]["error"]
    assert "SNAPD_DR_ZONES" in errors[0]["error"]
    published = objects(moto, DR_BUCKET, region=west)
    assert not any(f"/{lost}/" in k for k in published)
    assert dr_key(fine, "velero-backup.json") in published
    status = json.loads(run_snapd("status", "-o", "json", env=settings).stdout)
    assert any(e["backup"] == lost and "SNAPD_DR_ZONES" in e["error"] for e in status["errors"])
    # Mapped, it is published.
    mapped = run_snapd("sync", env={**settings, "SNAPD_DR_ZONES": f"{SRC}c={west}b"})
    assert mapped.code == 0, mapped.stderr
    volumes = objects(moto, DR_BUCKET, region=west)[dr_key(lost, f"{lost}-volumesnapshots.json.gz")]
    assert gz(volumes)[0]["spec"]["volumeAZ"] == f"{west}b"


async def _engine_pass(moto: MotoWorld, settings: Settings) -> dict[str, int]:
    async with AwsClients() as aws:
        engine = Engine(settings, aws)
        await engine.cycle()  # cold: publishes what is ready (nothing new here)
        before = dict(aws.calls)
        await engine.cycle()  # warm
        return {k: v - before.get(k, 0) for k, v in aws.calls.items() if v - before.get(k, 0)}


def test_warm_cycle_costs_one_dr_listing(
    moto: MotoWorld, ec2sim: Ec2Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_dr_bucket(moto)
    seed(moto)
    assert run_snapd("sync", env=env(moto)).code == 0
    for key, value in env(moto).items():
        monkeypatch.setenv(key, value)
    import asyncio

    calls = asyncio.run(_engine_pass(moto, Settings()))
    s3_calls = {k: v for k, v in calls.items() if k not in ("DescribeSnapshots",)}
    # One source listing (cached backups) + one DR listing; no GET, HEAD, PUT, COPY.
    assert s3_calls == {"ListObjectsV2": 2}, calls


def test_dr_listing_pages_by_published_backups_not_by_files(
    moto: MotoWorld, ec2sim: Ec2Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The DR location is listed one entry per published backup: a published folder that
    holds over a thousand files still costs the warm pass one DR listing page."""
    from moto.s3.models import s3_backends

    from simworld.moto_server import ACCOUNT_ID

    make_dr_bucket(moto)
    bucket = seed(moto, days=1)
    assert run_snapd("sync", env=env(moto)).code == 0
    (name,) = bucket.backups
    backend = s3_backends[ACCOUNT_ID]["aws"]
    for index in range(1000):  # e.g. a backup with many PodVolumeBackup files
        backend.put_object(DR_BUCKET, dr_key(name, f"extra/{index:04d}"), b"x")
    for key, value in env(moto).items():
        monkeypatch.setenv(key, value)
    import asyncio

    calls = asyncio.run(_engine_pass(moto, Settings()))
    # One source listing page (a few files) + one DR listing page (one published backup).
    assert calls.get("ListObjectsV2") == 2, calls


def test_a_backup_recreated_under_its_name_is_not_published_with_the_old_reading(
    moto: MotoWorld, ec2sim: Ec2Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Discovery keeps a finished backup's reading by name until its next verification
    listing; a backup deleted and re-created meanwhile must not be published with the new
    files and the old reading's replicas (its new snapshots would point at the source)."""
    make_dr_bucket(moto)
    bucket = seed(moto, days=1)
    assert run_snapd("sync", env=settings_env(moto)).code == 0  # replicas, DR off
    (name,) = bucket.backups
    for key, value in env(moto).items():
        monkeypatch.setenv(key, value)
    import asyncio

    async def recreate_then_publish() -> dict[str, str]:
        async with AwsClients() as aws:
            engine = Engine(Settings(), aws)
            await engine.discover()  # the old backup's reading, cached by name
            bucket.delete_backup(name)
            bucket.backup(name, schedule="daily", volumes=VOLUMES, start=NOW - timedelta(days=1))
            report = await engine.publish_pass()
            assert report is not None
            return report.failed

    failed = asyncio.run(recreate_then_publish())
    assert "no longer name 3 snapshot(s) it was read with" in failed[name], failed
    assert dr_key(name, "velero-backup.json") not in objects(moto, DR_BUCKET)


def test_replica_deleted_behind_snapds_back_unpublishes_at_once(
    moto: MotoWorld, ec2sim: Ec2Simulator
) -> None:
    make_dr_bucket(moto)
    bucket = seed(moto, days=1)
    assert run_snapd("sync", env=env(moto)).code == 0
    name = next(iter(bucket.backups))
    assert dr_key(name, "velero-backup.json") in objects(moto, DR_BUCKET)
    victim = next(iter(replica_of(moto).values()))
    boto3.client("ec2", region_name=DST, endpoint_url=moto.url).delete_snapshot(SnapshotId=victim)
    ec2sim.copy_duration = 4  # the new copy stays pending past --timeout (1s)
    first = run_snapd("sync", "--timeout", "1s", env=env(moto))
    assert first.code == 1  # the copy timed out
    assert not any(k.startswith(f"velero/dr/backups/{name}/") for k in objects(moto, DR_BUCKET))
    assert "dr.unpublished" in first.stderr
    ec2sim.copy_duration = 0.2
    second = run_snapd("sync", env=env(moto))
    assert second.code == 0, second.stderr
    dr = objects(moto, DR_BUCKET)
    assert dr_key(name, "velero-backup.json") in dr
    handles = {
        e["status"]["providerSnapshotID"]
        for e in gz(dr[dr_key(name, f"{name}-volumesnapshots.json.gz")])
    }
    assert victim not in handles
    assert handles <= set(replica_of(moto).values())


def test_retention_removes_the_published_backup_before_its_replica(
    moto: MotoWorld, ec2sim: Ec2Simulator
) -> None:
    """One PVC's replica of the old backup is pruned (the other PVC has no newer copy and
    is kept): the whole backup leaves the DR location first, velero-backup.json first."""
    make_dr_bucket(moto)
    bucket = VeleroBucket(BUCKET, region=SRC, endpoint_url=moto.url)
    old, new = NOW - timedelta(days=3), NOW - timedelta(hours=2)
    old_name, new_name = f"daily-{old:%Y%m%d%H%M%S}", f"daily-{new:%Y%m%d%H%M%S}"
    bucket.backup(old_name, schedule="daily", volumes=VOLUMES[:2], start=old)
    bucket.backup(new_name, schedule="daily", volumes=VOLUMES[:1], start=new)
    assert run_snapd("sync", env=env(moto)).code == 0
    assert dr_key(old_name, "velero-backup.json") in objects(moto, DR_BUCKET)
    result = run_snapd("sync", env=env(moto, SNAPD_RETENTION_MAX_AGE="1d"))
    assert result.code == 0, result.stderr
    dr = objects(moto, DR_BUCKET)
    assert not any(f"/{old_name}/" in k for k in dr)
    assert dr_key(new_name, "velero-backup.json") in dr
    events = [
        json.loads(line)["event"] for line in result.stderr.splitlines() if line.startswith("{")
    ]
    assert "prune.deleted" in events
    assert events.index("dr.unpublished") < events.index("prune.deleted")
    # The old backup's CSI replica (PVC cache, no newer copy) is kept; db's is gone.
    left = replica_of(moto)
    old_ids = set(bucket.backups[old_name].snapshot_ids)
    assert len(old_ids & set(left)) == 1


#: Incompressible filler: the published tarball is about this large, so it goes up in
#: ⌈size / part size⌉ parts, never one body.
STREAM_FILLER = UPLOAD_PART_SIZE + (1 << 20)


def test_a_tarball_larger_than_an_upload_part_is_published_in_parts(
    moto: MotoWorld, ec2sim: Ec2Simulator
) -> None:
    """`snapd sync` publishes a backup whose tarball holds 9 MiB of incompressible filler
    before its items: the DR copy goes up as a multipart upload of part-sized pieces (the
    publisher streams GET → rewrite → parts; tests/unit/test_dr_rewrite.py bounds the
    rewrite's memory, and `make bench --parts dr-memory` the whole process's RSS with 1 GiB),
    and the rewritten items and every filler byte come out right."""
    make_dr_bucket(moto)
    bucket = seed(moto, days=1)
    [name] = bucket.backups
    packed = io.BytesIO()
    fillers = filler_tarball(
        bucket.file(name, ".tar.gz"),
        packed,
        STREAM_FILLER,
        member_size=4 << 20,
        incompressible=True,
    )
    bucket.put(bucket.key(name, ".tar.gz"), packed.getvalue())
    result = run_snapd("sync", env=env(moto))
    assert result.code == 0, result.stderr
    key = dr_key(name, f"{name}.tar.gz")
    head = s3(moto).head_object(Bucket=DR_BUCKET, Key=key)
    parts = -(-head["ContentLength"] // UPLOAD_PART_SIZE)
    assert parts >= 2
    assert head["ETag"].strip('"').endswith(f"-{parts}"), head["ETag"]
    published = s3(moto).get_object(Bucket=DR_BUCKET, Key=key)["Body"]
    replicas = replica_of(moto)
    members, filler, handles = 0, 0, 0
    with (
        gzip.GzipFile(fileobj=published, mode="rb") as unpacked,
        tarfile.open(fileobj=unpacked, mode="r|") as archive,
    ):
        for member in archive:
            members += 1
            if "filler" in member.name:
                filler += member.size
                continue
            if "volumesnapshotcontents" in member.name:
                item = json.loads(archive.extractfile(member).read())  # type: ignore[union-attr]
                assert item["status"]["snapshotHandle"] in replicas.values()
                handles += 1
    assert handles
    assert filler == STREAM_FILLER
    assert members > fillers
    assert dr_key(name, "velero-backup.json") in objects_keys(moto)


def objects_keys(moto: MotoWorld) -> set[str]:
    found: set[str] = set()
    for page in s3(moto).get_paginator("list_objects_v2").paginate(Bucket=DR_BUCKET):
        found.update(item["Key"] for item in page.get("Contents") or ())
    return found


def test_kill_9_mid_publish_leaves_no_backup_file_and_the_next_run_completes(
    moto: MotoWorld, ec2sim: Ec2Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL while the tarball streams: the DR folder has files but no velero-backup.json
    (Velero does not list it); the next `snapd sync` completes it.

    The moto server (threads of this process) holds the tarball's first part upload until
    snapd is killed, so the kill lands mid-stream on any machine, with a small tarball."""
    import os
    import signal
    import subprocess
    import threading

    from moto.s3.models import S3Backend

    from tests.integration.cli import SNAPD

    streaming, release = threading.Event(), threading.Event()
    upload_part = S3Backend.upload_part

    def held_upload_part(backend: Any, bucket_name: str, *args: Any) -> Any:
        if bucket_name == DR_BUCKET and not release.is_set():
            streaming.set()
            release.wait(120)
        return upload_part(backend, bucket_name, *args)

    monkeypatch.setattr(S3Backend, "upload_part", held_upload_part)
    make_dr_bucket(moto)
    bucket = seed(moto, days=1)
    [name] = bucket.backups
    source_files = {k.rsplit("/", 1)[1] for k in bucket.files if f"/{name}/" in k}
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME")}
    process = subprocess.Popen(
        [SNAPD, "sync"],
        env={**base, **env(moto)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert streaming.wait(300), "publishing never reached the tarball"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        release.set()
        if process.poll() is None:
            process.kill()
            process.wait(timeout=60)
    partial = {k.rsplit("/", 1)[1] for k in objects_keys(moto) if f"/{name}/" in k}
    assert partial, "killed mid-publish"
    assert "velero-backup.json" not in partial
    assert f"{name}.tar.gz" not in partial
    assert partial < source_files
    again = run_snapd("sync", env=env(moto), timeout=600)
    assert again.code == 0, again.stderr
    complete = {k.rsplit("/", 1)[1] for k in objects_keys(moto) if f"/{name}/" in k}
    assert complete == source_files


def test_run_publishes_within_a_sync_interval_and_exports_the_metrics(
    moto: MotoWorld, ec2sim: Ec2Simulator
) -> None:
    """`snapd run`: once the replicas complete, the next cycle publishes; the three DR
    metrics say so."""
    from tests.integration.daemon import Daemon, wait_until

    make_dr_bucket(moto)
    bucket = seed(moto, days=2)
    newest = max(bucket.backups)
    daemon = Daemon(env(moto, SNAPD_SYNC_INTERVAL="1s", SNAPD_PRUNE_INTERVAL="1h")).start()
    try:
        wait_until(
            lambda: all(
                dr_key(n, "velero-backup.json") in objects_keys(moto) for n in bucket.backups
            ),
            timeout=120,
            what="both backups published",
            interval=0.5,
            explain=lambda: daemon.stderr[-3000:],
        )
        wait_until(
            lambda: daemon.scrape().value("snapd_dr_backups_published") == 2,
            timeout=30,
            what="snapd_dr_backups_published 2",
        )
        scrape = daemon.scrape()
        stamp = bucket.backups[newest].start.timestamp()
        assert scrape.value("snapd_dr_recovery_point_timestamp_seconds", schedule="daily") == stamp
        assert scrape.value("snapd_dr_publish_failures_total") == 0
    finally:
        assert daemon.stop() == 0


def test_an_unwritable_dr_location_never_stops_the_copies(
    moto: MotoWorld, ec2sim: Ec2Simulator
) -> None:
    """The DR bucket does not exist: every snapshot is still copied; the failure is
    reported, and `sync` exits 1 (the DR work failed) without touching the source."""
    bucket = seed(moto, days=1)
    source_before = objects(moto, BUCKET, region=SRC)
    result = run_snapd("sync", "-o", "json", env=env(moto))
    assert result.code == 1, result.stderr
    assert set(replica_of(moto)) == {s for b in bucket.backups.values() for s in b.snapshot_ids}
    outcome = json.loads(result.stdout)["result"]
    assert outcome["dr_failed"] == {
        f"s3://{DR_BUCKET}/velero/dr": "ListObjectsV2 failed: NoSuchBucket: "
        "The specified bucket does not exist"
    }
    assert "dr.pass_failed" in result.stderr
    assert objects(moto, BUCKET, region=SRC) == source_before
