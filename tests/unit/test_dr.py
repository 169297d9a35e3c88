"""The DR location's pure half: which backups are published, when one must go, zones, and
the manifests for the DR cluster."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime

import pytest
import yaml

from snapd import dr
from snapd.config import Settings, load_settings
from snapd.errors import ConfigError
from snapd.models import (
    Backup,
    BackupScan,
    Discovery,
    DiscoveryError,
    Plan,
    PruneAction,
    PruneKind,
    Replica,
    Skip,
    SnapshotMethod,
    SourceSnapshot,
    Volume,
)
from snapd.render import yaml_stream

T0 = datetime(2026, 11, 20, 2, 0, 31, tzinfo=UTC)
ZONES = {"eu-west-1a": "eu-central-1a", "eu-west-1b": "eu-central-1b"}


def snap(sid: str, backup: str = "daily-1", zone: str = "eu-west-1a") -> SourceSnapshot:
    return SourceSnapshot(
        snapshot_id=sid,
        backup=backup,
        schedule="daily",
        backup_time=T0,
        phase="Completed",
        method=SnapshotMethod.NATIVE,
        volume=Volume(namespace="shop", pvc=f"pvc-{sid}", pv=f"pv-{sid}", availability_zone=zone),
    )


def scan(name: str, *snaps: SourceSnapshot, **backup: object) -> BackupScan:
    record = Backup(name, "daily", str(backup.pop("phase", "Completed")), T0, **backup)  # type: ignore[arg-type]
    return BackupScan(name, record, snapshots=snaps)


def replica(rid: str, source: str, state: str = "completed") -> Replica:
    return Replica(rid, "eu-central-1", state, 100, "scope", source, backup="daily-1")


def choose(*scans: BackupScan, replicas: list[Replica], plan: Plan | None = None) -> dr.Choice:
    return dr.choose(
        Discovery(snapshots=(), scans=scans),
        dr.usable_replicas(replicas, plan),
        zones=ZONES,
        source_region="eu-west-1",
        region="eu-central-1",
        copy_failed_backups=False,
    )


REPLICAS = [replica("snap-r1", "snap-s1"), replica("snap-r2", "snap-s2")]


@pytest.mark.parametrize(
    ("case", "the_scan", "replicas", "published"),
    [
        ("fully replicated", scan("b", snap("snap-s1"), snap("snap-s2")), REPLICAS, True),
        (
            "one replica pending",
            scan("b", snap("snap-s1"), snap("snap-s2")),
            [REPLICAS[0], replica("snap-r2", "snap-s2", "pending")],
            False,
        ),
        ("one replica missing", scan("b", snap("snap-s1"), snap("snap-s2")), REPLICAS[:1], False),
        ("files not complete", scan("b", snap("snap-s1"), files_complete=False), REPLICAS, False),
        (
            "in flight",
            scan("b", snap("snap-s1"), phase="WaitingForPluginOperations"),
            REPLICAS,
            False,
        ),
        ("Failed", scan("b", snap("snap-s1"), phase="Failed"), REPLICAS, False),
        ("PartiallyFailed", scan("b", snap("snap-s1"), phase="PartiallyFailed"), REPLICAS, True),
        (
            "unreadable file",
            BackupScan(
                "b",
                Backup("b", "daily", "Completed", T0),
                snapshots=(snap("snap-s1"),),
                errors=(DiscoveryError("b", "corrupt"),),
            ),
            REPLICAS,
            False,
        ),
        (
            "snapshot skipped",
            BackupScan(
                "b",
                Backup("b", "daily", "Completed", T0),
                snapshots=(snap("snap-s1"),),
                skipped=(Skip("b", "source gone", "snap-s3"),),
            ),
            REPLICAS,
            False,
        ),
        (
            "not watched",
            BackupScan(
                "b",
                Backup("b", "hourly", "Completed", T0),
                snapshots=(snap("snap-s1"),),
                watched=False,
            ),
            REPLICAS,
            False,
        ),
    ],
)
def test_what_is_published(
    case: str, the_scan: BackupScan, replicas: list[Replica], published: bool
) -> None:
    assert ("b" in choose(the_scan, replicas=replicas).candidates) is published, case


def test_a_replica_to_be_pruned_is_not_usable() -> None:
    plan = Plan(prunes=(PruneAction(REPLICAS[1], PruneKind.RETENTION, "old"),))
    choice = choose(scan("b", snap("snap-s1"), snap("snap-s2")), replicas=REPLICAS, plan=plan)
    assert choice.candidates == {}
    record = dr.Published("b", "x", frozenset({"snap-r1", "snap-r2"}))
    reason = dr.stale_reason(record, choice, {"snap-r1", "snap-r2"})
    assert reason == "replica snap-r2 to be pruned"


def test_a_replica_deleted_behind_snapds_back_makes_the_backup_stale() -> None:
    choice = choose(scan("b", snap("snap-s1"), snap("snap-s2")), replicas=REPLICAS[:1])
    record = dr.Published("b", "x", frozenset({"snap-r1", "snap-r2"}))
    assert dr.stale_reason(record, choice, {"snap-r1"}) == (
        "replica snap-r2 no longer a completed replica"
    )


def test_a_published_backup_whose_source_left_stays_while_its_replicas_do() -> None:
    choice = choose(replicas=REPLICAS)
    record = dr.Published("gone", "x", frozenset({"snap-r1"}))
    assert dr.stale_reason(record, choice, {"snap-r1"}) is None


def test_changed_replicas_are_written_again() -> None:
    choice = choose(scan("b", snap("snap-s1")), replicas=REPLICAS)
    record = dr.Published("b", "old-digest", frozenset({"snap-r1"}))
    assert dr.stale_reason(record, choice, {"snap-r1"}) == "its replicas changed; written again"
    current = dr.Published("b", choice.candidates["b"].digest, frozenset({"snap-r1"}))
    assert dr.stale_reason(current, choice, {"snap-r1"}) is None


def test_duplicates_pick_the_same_replica_every_time() -> None:
    twins = [replica("snap-r9", "snap-s1"), replica("snap-r1", "snap-s1")]
    assert dr.usable_replicas(twins, None) == {"snap-s1": "snap-r1"}
    assert dr.usable_replicas(list(reversed(twins)), None) == {"snap-s1": "snap-r1"}


def test_a_zone_without_dr_zone_is_an_error_naming_it() -> None:
    choice = choose(scan("b", snap("snap-s1", zone="eu-west-1c")), replicas=REPLICAS)
    assert choice.candidates == {}
    [error] = choice.errors
    assert error.backup == "b"
    assert "source zone eu-west-1c has no DR zone in eu-central-1" in error.error
    assert "SNAPD_DR_ZONES" in error.error


def test_zone_map_same_letter_and_overrides() -> None:
    available = {"us-west-1a", "us-west-1b"}
    zones = dr.zone_map("eu-west-1", "us-west-1", available, {"eu-west-1c": "us-west-1a"})
    assert zones == {
        "eu-west-1a": "us-west-1a",
        "eu-west-1b": "us-west-1b",
        "eu-west-1c": "us-west-1a",
    }
    with pytest.raises(ConfigError, match="us-west-1z not in us-west-1; its zones: us-west-1a"):
        dr.check_overrides({"eu-west-1a": "us-west-1z"}, "us-west-1", available)


_DNS = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def test_dr_manifests_are_well_formed_objects() -> None:
    published = {
        "daily-1": {dr.META_LOCATIONS: "default,aws-eu", dr.META_CLASSES: "ebs-csi"},
        "daily-2": {dr.META_LOCATIONS: "default", dr.META_CLASSES: ""},
    }
    docs = dr.dr_manifests(
        published,
        bucket="dr",
        prefix="v/dr",
        region="eu-central-1",
        namespace="velero",
        bsl_name="snapd-dr",
    )
    parsed = list(yaml.safe_load_all(yaml_stream(docs)))
    assert parsed == docs
    for doc in parsed:
        assert set(doc) >= {"apiVersion", "kind", "metadata"}
        assert _DNS.match(doc["metadata"]["name"])
    assert [(d["kind"], d["metadata"]["name"]) for d in parsed] == [
        ("BackupStorageLocation", "snapd-dr"),
        ("VolumeSnapshotLocation", "aws-eu"),
        ("VolumeSnapshotLocation", "default"),
        ("VolumeSnapshotClass", "ebs-csi"),
    ]
    assert parsed[0]["spec"]["accessMode"] == "ReadOnly"
    assert parsed[1]["spec"] == {"provider": "aws", "config": {"region": "eu-central-1"}}
    assert "namespace" not in parsed[3]["metadata"]  # cluster-scoped


def _settings(**values: object) -> Settings:
    base: dict[str, object] = {"velero_bucket": "velero", "velero_prefix": "prod"}
    return load_settings({**base, **values})


def test_dr_zones_setting_is_a_map() -> None:
    settings = _settings(
        dr_bucket="dr-bucket", dr_zones="eu-west-1a=us-east-1c, eu-west-1b=us-east-1d"
    )
    assert settings.dr_zones == {"eu-west-1a": "us-east-1c", "eu-west-1b": "us-east-1d"}
    assert settings.dr_root == "s3://dr-bucket"
    with pytest.raises(ConfigError, match=r"put folders in dr_prefix"):
        _settings(dr_bucket="dr-bucket/folder")
    with pytest.raises(ConfigError, match=r"dr_zones \(SNAPD_DR_ZONES, --dr-zones\).*pairs"):
        _settings(dr_zones="eu-west-1a")
    with pytest.raises(ConfigError, match="availability zone names"):
        _settings(dr_zones="eu-west-1a=Frankfurt")


@pytest.mark.parametrize(
    ("dr_bucket", "dr_prefix", "refused"),
    [
        ("velero", "prod", True),  # the same location
        ("velero", "", True),  # the whole bucket holds the source
        ("velero", "prod/dr", True),  # inside the source root
        ("velero", "dr", False),  # a sibling prefix
        ("other", "prod", False),  # another bucket
    ],
)
def test_dr_root_must_not_be_or_overlap_the_velero_location(
    dr_bucket: str, dr_prefix: str, refused: bool
) -> None:
    settings = _settings(dr_bucket=dr_bucket, dr_prefix=dr_prefix)
    if refused:
        with pytest.raises(ConfigError, match="must differ from"):
            settings.check_dr_location()
    else:
        settings.check_dr_location()


def test_a_candidate_memo_remakes_a_candidate_whose_replica_or_reading_changed() -> None:
    """`choose` with the publisher's memo: the same reading (the very scan object) with the
    same replicas gives the candidate made before; a replica replaced by another, or the
    backup read again, makes a new one with its own digest — as a choice without memo."""
    memo: dr.CandidateMemo = {}
    the_scan = scan("b", snap("snap-s1"), snap("snap-s2"))

    def chosen(a_scan: BackupScan, replicas: list[Replica]) -> dr.Candidate:
        choice = dr.choose(
            Discovery(snapshots=(), scans=(a_scan,)),
            dr.usable_replicas(replicas, None),
            zones=ZONES,
            source_region="eu-west-1",
            region="eu-central-1",
            copy_failed_backups=False,
            memo=memo,
        )
        candidate = choice.candidates["b"]
        assert candidate == choose(a_scan, replicas=replicas).candidates["b"]
        return candidate

    first = chosen(the_scan, REPLICAS)
    assert chosen(the_scan, REPLICAS) is first
    replaced = chosen(the_scan, [REPLICAS[0], replica("snap-r9", "snap-s2")])
    assert replaced.digest != first.digest
    assert replaced.mapping.snapshots["snap-s2"] == "snap-r9"
    moved = snap("snap-s2")
    moved = dataclasses.replace(moved, volume=dataclasses.replace(moved.volume, pv="pv-new"))
    reread = scan("b", snap("snap-s1"), moved)  # its PV was renamed: the files changed
    assert chosen(the_scan, REPLICAS) == first
    assert "pv-new" in chosen(reread, REPLICAS).mapping.volumes
    assert set(memo) == {"b"}
