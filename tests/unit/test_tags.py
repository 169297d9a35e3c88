"""The tag schema: what a replica is born with, and what `snapd list` reads back."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

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


# ------------------------------------------------------------ one record, one table of tags

#: A sample value of each type a `Volume` field can have, for the round trips.
SAMPLES: dict[str, Any] = {
    "str | None": "a:b,c=d ünïcødé",
    "int | None": 4000,
    "tuple[str, ...]": ("ReadWriteOnce", "ReadOnlyMany"),
}


def table_problems(record: type[Any], table: Sequence[tags.VolumeTag]) -> list[str]:
    """What keeps `table` from mapping every field of `record` to one tag and back."""
    fields = [f.name for f in dataclasses.fields(record)]
    rows = [row.field for row in table]
    keys = [row.key for row in table if row.key is not None]
    return (
        [f"field {name} has no row" for name in fields if name not in rows]
        + [f"row {name} names no field" for name in rows if name not in fields]
        + [
            f"field {name} has {rows.count(name)} rows"
            for name in set(rows)
            if rows.count(name) > 1
        ]
        + [
            f"key {key} is used by {keys.count(key)} rows"
            for key in set(keys)
            if keys.count(key) > 1
        ]
        + [f"key {key} is not snapd's" for key in keys if not key.startswith(tags.PREFIX)]
    )


def one_value(name: str) -> Volume:
    """A volume that knows `name` alone."""
    types = {f.name: str(f.type) for f in dataclasses.fields(Volume)}
    return Volume(**{name: SAMPLES[types[name]]})


def round_trip(volume: Volume) -> Volume:
    """Encode `volume` as tags and decode it back; the size travels as the snapshot's own."""
    return tags.volume_from_tags(tags.volume_tags(volume), size_gib=volume.size_gib)


def test_every_volume_field_has_one_row_and_every_row_a_field() -> None:
    """The table and the record move together: no field left out, no row for a lost field."""
    assert table_problems(Volume, tags.VOLUME_TAGS) == []
    # Only the size is not a tag: EC2 keeps it on the snapshot (VolumeSize).
    assert [row.field for row in tags.VOLUME_TAGS if row.key is None] == ["size_gib"]


def test_table_check_catches_a_missing_or_unknown_row() -> None:
    """The check above fails on each way the table can fall out of step with the record."""
    without_pvc = tuple(row for row in tags.VOLUME_TAGS if row.field != "pvc")
    assert table_problems(Volume, without_pvc) == ["field pvc has no row"]
    ghost = (*tags.VOLUME_TAGS, tags.VolumeTag("encryption", "snapd.io/encryption"))
    assert table_problems(Volume, ghost) == ["row encryption names no field"]
    twice = (*tags.VOLUME_TAGS, tags.VolumeTag("pv", "snapd.io/pv-name"))
    assert table_problems(Volume, twice) == ["field pv has 2 rows"]
    shared = (*without_pvc, tags.VolumeTag("pvc", tags.PV))
    assert table_problems(Volume, shared) == [f"key {tags.PV} is used by 2 rows"]


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(Volume)])
def test_each_field_round_trips_alone(name: str) -> None:
    """Every field, set on its own, is written to its tag and read back unchanged, and an
    unknown field writes no tag."""
    volume = one_value(name)
    assert round_trip(volume) == volume
    row = next(row for row in tags.VOLUME_TAGS if row.field == name)
    assert list(tags.volume_tags(volume)) == ([row.key] if row.key else [])


def test_full_and_empty_volumes_round_trip() -> None:
    """All fields at once, and none (None and no access modes): decode(encode(v)) == v."""
    full = Volume(
        **{f.name: getattr(one_value(f.name), f.name) for f in dataclasses.fields(Volume)}
    )
    assert round_trip(full) == full
    assert tags.volume_tags(Volume()) == {}
    assert round_trip(Volume()) == Volume()


def test_empty_values_are_not_written() -> None:
    """ "" and an empty mode list are as good as unknown: no tag, read back as unknown; zero
    is a value."""
    assert tags.volume_tags(Volume(namespace="", access_modes=())) == {}
    assert tags.volume_tags(Volume(iops=0)) == {tags.IOPS: "0"}
    assert round_trip(Volume(namespace="", iops=0)) == Volume(iops=0)


def test_replica_reads_back_the_source_volume() -> None:
    """The record a copy is born with is the record `snapd list` and restore read back."""
    source = SOURCE.with_details(volume=SOURCE.volume.with_values(size_gib=20))
    built = tags.build_copy_tags(source, "scope", "eu-west-1")
    replica = tags.build_replica(
        snapshot_id="snap-r",
        region="eu-central-1",
        state="completed",
        progress=100,
        tags=built,
        size_gib=20,
    )
    assert replica.volume == source.volume


def test_own_tags_are_the_contract_byte_for_byte() -> None:
    """Keys, values and their order, spelled out independently of the table."""
    source = SOURCE.with_details(
        volume=SOURCE.volume.with_values(access_modes=("ReadWriteOnce", "ReadOnlyMany"))
    )
    assert list(tags.build_own_tags(source, "b/prod", "eu-west-1").items()) == [
        ("snapd.io/cluster", "b/prod"),
        ("snapd.io/source-snapshot-id", "snap-0123456789abcdef0"),
        ("snapd.io/source-region", "eu-west-1"),
        ("snapd.io/backup", "daily-20261120020000"),
        ("snapd.io/schedule", "daily"),
        ("snapd.io/backup-time", "2026-11-20T02:00:00Z"),
        ("Name", "shop/data-postgres-0 daily-20261120020000"),
        ("snapd.io/source-volume-id", "vol-0abc"),
        ("snapd.io/namespace", "shop"),
        ("snapd.io/pvc", "data-postgres-0"),
        ("snapd.io/pv", "pvc-1234"),
        ("snapd.io/availability-zone", "eu-west-1b"),
        ("snapd.io/volume-type", "gp3"),
        ("snapd.io/iops", "4000"),
        ("snapd.io/throughput", "250"),
        ("snapd.io/storage-class", "gp3-encrypted"),
        ("snapd.io/fs-type", "ext4"),
        ("snapd.io/csi-driver", "ebs.csi.aws.com"),
        ("snapd.io/access-modes", "ReadWriteOnce,ReadOnlyMany"),
        ("snapd.io/volume-mode", "Filesystem"),
    ]
