"""The tag schema: what a replica is born with, and what `snapd list` reads back."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from snapd import tags
from snapd.models import SnapshotMethod, SourceSnapshot, Volume

SOURCE = SourceSnapshot(
    snapshot_id="snap-0123456789abcdef0",
    backup="daily-20261120020000",
    schedule="daily",
    backup_time=datetime(2026, 11, 20, 2, 0, 0, tzinfo=UTC),
    phase="Completed",
    method=SnapshotMethod.CSI,
    volume=Volume(
        namespace="shop",
        pvc="data-postgres-0",
        pv="pvc-1234",
        volume_id="vol-0abc",
        availability_zone="eu-west-1b",
        volume_type="gp3",
        iops=4000,
        throughput=250,
        storage_class="gp3-encrypted",
        fs_type="ext4",
        csi_driver="ebs.csi.aws.com",
        access_modes=("ReadWriteOnce",),
        volume_mode="Filesystem",
    ),
)


def test_contract_tags_present_and_exact() -> None:
    """Every contract key is set, with values exactly as discovered."""
    built = tags.build_copy_tags(SOURCE, "my-bucket/prod", "eu-west-1")
    assert built[tags.CLUSTER] == "my-bucket/prod"
    assert built[tags.SOURCE_SNAPSHOT_ID] == SOURCE.snapshot_id
    assert built[tags.SOURCE_REGION] == "eu-west-1"
    assert built[tags.SOURCE_VOLUME_ID] == "vol-0abc"
    assert built[tags.BACKUP_TIME] == "2026-11-20T02:00:00Z"
    assert built[tags.AVAILABILITY_ZONE] == "eu-west-1b"
    assert built[tags.IOPS] == "4000"
    assert built[tags.ACCESS_MODES] == "ReadWriteOnce"
    assert built["Name"] == "shop/data-postgres-0 daily-20261120020000"


@pytest.mark.parametrize(
    "value",
    ["a:b:c", "k=v,w=x", "with spaces and 'quotes'", "ünïcødé ✓", "arn:aws:kms:eu-west-1:1:key/x"],
    ids=["colons", "equals-commas", "spaces-quotes", "non-ascii", "arn"],
)
def test_source_tag_values_are_never_altered(value: str) -> None:
    """A carried-over source tag arrives byte for byte (the bash tool rewrote every ':')."""
    source = SOURCE.with_details(source_tags=(("team/owner", value),))
    assert tags.build_copy_tags(source, "s", "eu-west-1")["team/owner"] == value


def test_aws_keys_dropped_and_own_keys_win() -> None:
    """`aws:` keys are never sent, and a source tag cannot overwrite snapd's keys."""
    source = SOURCE.with_details(
        source_tags=(("aws:backup:source-resource", "x"), (tags.BACKUP, "forged"), ("Name", "old"))
    )
    built = tags.build_copy_tags(source, "s", "eu-west-1")
    assert not any(k.startswith("aws:") for k in built)
    assert built[tags.BACKUP] == SOURCE.backup
    assert built["Name"] != "old"


def test_fifty_tag_limit() -> None:
    """Source tags are dropped, never snapd's, when the union would pass 48 (EC2's 50 less
    the two Velero's AWS plugin adds to a volume it creates from a replica)."""
    source = SOURCE.with_details(source_tags=tuple((f"k{i:02}", "v") for i in range(60)))
    built = tags.build_copy_tags(source, "s", "eu-west-1")
    assert len(built) == tags.MAX_TAGS == 48
    assert tags.build_own_tags(SOURCE, "s", "eu-west-1").items() <= built.items()


def test_name_tag_cut_to_256() -> None:
    """A very long name is cut to EC2's limit instead of failing the copy."""
    long_source = SOURCE.with_details(
        volume=SOURCE.volume.with_values(namespace="n" * 200, pvc="p" * 200)
    )
    assert len(tags.build_copy_tags(long_source, "s", "r")["Name"]) == 256


def test_round_trip_to_replica() -> None:
    """Tags written at copy time read back into the same facts for list and restore."""
    built = tags.build_copy_tags(SOURCE, "scope", "eu-west-1")
    replica = tags.build_replica(
        snapshot_id="snap-r", region="eu-central-1", state="completed", progress=100, tags=built
    )
    assert replica.backup_time == SOURCE.backup_time
    assert (replica.volume.namespace, replica.volume.pvc, replica.volume.pv) == (
        "shop",
        "data-postgres-0",
        "pvc-1234",
    )
    assert (replica.volume.iops, replica.volume.throughput, replica.volume.access_modes) == (
        4000,
        250,
        ("ReadWriteOnce",),
    )
    assert replica.volume_key == ("shop", "data-postgres-0")


def test_malformed_tags_do_not_break_listing() -> None:
    """A hand-edited tag (bad time, bad number) leaves the replica listable."""
    replica = tags.build_replica(
        snapshot_id="snap-r",
        region="r",
        state="completed",
        progress=100,
        tags={tags.BACKUP_TIME: "yesterday", tags.IOPS: "many"},
    )
    assert replica.backup_time is None
    assert replica.volume.iops is None


def test_stray_snapd_keys_not_carried() -> None:
    """A `snapd.io/` tag on a source snapshot (inherited from a restored volume) never
    reaches the replica, so it cannot pose as another scope or restore."""
    source = SOURCE.with_details(source_tags=(("snapd.io/restore-of", "snap-x"), ("app", "a")))
    built = tags.build_copy_tags(source, "s", "eu-west-1")
    assert "snapd.io/restore-of" not in built
    assert built["app"] == "a"
