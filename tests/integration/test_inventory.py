"""Inventory against moto + the EC2 simulator: batched lookups, our scope only, pagination."""

from __future__ import annotations

from datetime import UTC, datetime

import boto3
import pytest

from simworld.ec2sim import Ec2Simulator
from simworld.moto_server import MotoWorld
from snapd import inventory, tags
from snapd.aws import AwsClients
from snapd.errors import PermanentError
from snapd.models import SnapshotMethod, SourceSnapshot, Volume

SRC, DST = "eu-west-1", "eu-central-1"


def source(snapshot_id: str, volume_id: str | None = None) -> SourceSnapshot:
    return SourceSnapshot(
        snapshot_id=snapshot_id,
        backup="daily-1",
        schedule="daily",
        backup_time=datetime(2026, 11, 1, tzinfo=UTC),
        phase="Completed",
        method=SnapshotMethod.CSI,
        volume=Volume(namespace="app", pvc="data", volume_id=volume_id),
    )


async def test_source_details_are_batched(aws: AwsClients, ec2sim: Ec2Simulator) -> None:
    """450 sources cost 3 filtered DescribeSnapshots calls; a deleted one is `missing`."""
    ids = [ec2sim.add_snapshot(SRC, tags={"velero.io/backup": "daily-1"}) for _ in range(450)]
    ec2sim.reset()
    sources = [source(i) for i in ids] + [source("snap-0000000000000dead")]
    detailed = await inventory.add_source_details(aws, SRC, sources)
    assert ec2sim.calls["DescribeSnapshots"] == 3
    assert ec2sim.calls["DescribeVolumes"] == 0
    states = {s.snapshot_id: s.state for s in detailed}
    assert states.pop("snap-0000000000000dead") == inventory.MISSING
    assert set(states.values()) == {"completed"}
    assert all(dict(s.source_tags) == {"velero.io/backup": "daily-1"} for s in detailed[:450])


async def test_csi_volume_details_from_describe_volumes(
    aws: AwsClients, ec2sim: Ec2Simulator, moto: MotoWorld
) -> None:
    """Velero records no type, IOPS or throughput for CSI snapshots: one batched
    DescribeVolumes of the source volumes fills them, while the volumes exist."""
    ec2 = boto3.client("ec2", region_name=SRC, endpoint_url=moto.url)
    volume = ec2.create_volume(
        AvailabilityZone=f"{SRC}b", Size=20, VolumeType="gp3", Iops=4000, Throughput=250
    )["VolumeId"]
    snapshot = ec2.create_snapshot(VolumeId=volume)["SnapshotId"]
    gone = ec2sim.add_snapshot(SRC)
    ec2sim.reset()
    detailed = await inventory.add_source_details(
        aws, SRC, [source(snapshot, volume), source(gone, "vol-0000000000000gone")]
    )
    assert ec2sim.calls["DescribeVolumes"] == 1
    first, second = detailed
    assert (first.volume.volume_type, first.volume.iops, first.volume.throughput) == (
        "gp3",
        4000,
        250,
    )
    assert first.volume.availability_zone == f"{SRC}b"
    assert second.volume.volume_type is None  # its volume is gone: nothing invented


async def test_replicas_of_our_scope_only_across_pages(
    aws: AwsClients, ec2sim: Ec2Simulator
) -> None:
    """Listing follows NextToken across pages and sees only our scope's snapshots we own."""
    for i in range(1100):
        ec2sim.add_snapshot(
            DST, tags={tags.CLUSTER: "ours", tags.SOURCE_SNAPSHOT_ID: f"snap-{i:017x}"}
        )
    ec2sim.add_snapshot(DST, tags={tags.CLUSTER: "theirs"})
    ec2sim.add_snapshot(DST, tags={tags.CLUSTER: "ours"}, owner_id="210987654321")
    ec2sim.add_snapshot(DST, tags={"unrelated": "x"})
    ec2sim.reset()
    replicas = await inventory.list_replicas(aws, DST, "ours")
    assert len(replicas) == 1100
    assert {r.scope for r in replicas} == {"ours"}
    assert ec2sim.calls["DescribeSnapshots"] == 2


async def test_a_failed_batch_raises_the_aws_error(aws: AwsClients, ec2sim: Ec2Simulator) -> None:
    """A Describe call that fails after retries surfaces as snapd's typed AWS error (the
    command exits 1 with its code), never as a bare task-group exception."""
    ids = [ec2sim.add_snapshot(SRC) for _ in range(3)]
    ec2sim.inject("DescribeSnapshots", "UnauthorizedOperation", times=10)
    with pytest.raises(PermanentError) as caught:
        await inventory.add_source_details(aws, SRC, [source(i) for i in ids])
    assert caught.value.code == "UnauthorizedOperation"


async def test_a_wildcard_scope_never_lists_another_scope(
    aws: AwsClients, ec2sim: Ec2Simulator, moto: MotoWorld
) -> None:
    """EC2 reads `?` in a tag filter as a wildcard, so `team-?` matches scope `team-b`'s
    replicas; the inventory keeps only replicas whose tag equals the scope exactly."""
    ours = ec2sim.add_snapshot(DST, tags={tags.CLUSTER: "team-?", tags.PVC: "db"})
    ec2sim.add_snapshot(DST, tags={tags.CLUSTER: "team-b", tags.PVC: "db"})
    ec2 = boto3.client("ec2", region_name=DST, endpoint_url=moto.url)
    filtered = ec2.describe_snapshots(
        OwnerIds=["self"], Filters=[{"Name": f"tag:{tags.CLUSTER}", "Values": ["team-?"]}]
    )["Snapshots"]
    assert len(filtered) == 2  # the filter alone would hand us team-b's replica
    replicas = await inventory.list_replicas(aws, DST, "team-?")
    assert [(r.snapshot_id, r.scope) for r in replicas] == [(ours, "team-?")]
    assert [r.scope for r in await inventory.list_replicas(aws, DST, "team-b")] == ["team-b"]


async def test_a_repeated_listing_rebuilds_what_changed_and_reuses_what_did_not(
    aws: AwsClients, ec2sim: Ec2Simulator, moto: MotoWorld
) -> None:
    """A daemon's inventory (`repeated=True`): a pass over unchanged pages parses nothing and
    hands back the very replicas of the pass before; a tag edited by hand, a replica
    deleted or one added between passes is seen at the next pass, as a fresh listing sees it."""
    ids = [
        ec2sim.add_snapshot(
            DST, tags={tags.CLUSTER: "ours", tags.SOURCE_SNAPSHOT_ID: f"snap-{i:017x}"}
        )
        for i in range(1100)
    ]
    first = await inventory.list_replicas(aws, DST, "ours", repeated=True)
    assert aws.parsers.remembered["DescribeSnapshotsResult"] == 0
    second = await inventory.list_replicas(aws, DST, "ours", repeated=True)
    assert aws.parsers.remembered["DescribeSnapshotsResult"] == 2  # both pages, unparsed
    assert len(second) == 1100
    assert all(a is b for a, b in zip(first, second, strict=True))

    ec2 = boto3.client("ec2", region_name=DST, endpoint_url=moto.url)
    ec2.create_tags(Resources=[ids[7]], Tags=[{"Key": tags.PVC, "Value": "edited"}])
    ec2.delete_snapshot(SnapshotId=ids[8])
    added = ec2sim.add_snapshot(DST, tags={tags.CLUSTER: "ours", tags.PVC: "new"})
    third = await inventory.list_replicas(aws, DST, "ours", repeated=True)
    fresh = await inventory.list_replicas(aws, DST, "ours")
    assert third == fresh
    by_id = {r.snapshot_id: r for r in third}
    assert by_id[ids[7]].volume.pvc == "edited"
    assert ids[8] not in by_id
    assert by_id[added].volume.pvc == "new"


async def test_repeated_listings_of_two_regions_or_scopes_stay_apart(
    aws: AwsClients, ec2sim: Ec2Simulator
) -> None:
    """Each region and scope is its own family: identical pages of another listing never
    answer for this one (its replicas carry their own region)."""
    ec2sim.add_snapshot(DST, tags={tags.CLUSTER: "ours"})
    ec2sim.add_snapshot(SRC, tags={tags.CLUSTER: "ours"})
    (dst,) = await inventory.list_replicas(aws, DST, "ours", repeated=True)
    (src,) = await inventory.list_replicas(aws, SRC, "ours", repeated=True)
    assert (dst.region, src.region) == (DST, SRC)
    assert await inventory.list_replicas(aws, DST, "theirs", repeated=True) == []
