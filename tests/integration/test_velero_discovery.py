"""Discovery against a Velero bucket in the moto server: what snapd copies, skips and reports."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from simworld.moto_server import MotoWorld
from simworld.velero_bucket import (
    BACKUP_FILE,
    CSI,
    CSI_CONTENTS,
    DATA_MOVER,
    FAILED,
    NATIVE,
    POD_VOLUME,
    SKIPPED,
    TARBALL,
    VOLUME_INFO,
    VOLUME_SNAPSHOTS,
    BuiltBackup,
    VeleroBucket,
    Volume,
    seed_realistic_world,
)
from snapd.aws import AwsClients
from snapd.errors import PermanentError
from snapd.metrics import Metrics
from snapd.models import Discovery, SnapshotMethod
from snapd.velero import NO_BACKUP_FILE, VANISHED, VeleroReader

REGION = "eu-west-1"
BUCKET = "velero-backups"
T0 = datetime(2024, 6, 1, 2, 0, 0, tzinfo=UTC)
BROKEN = Volume("shop", "broken", method=FAILED)
#: A reading time past the default upload grace of files written now.
LATER = datetime.now(UTC) + timedelta(hours=2)


# botocore attempts per call for the shared `aws` fixture (tests/conftest.py).
pytestmark = pytest.mark.aws_max_attempts(1)


async def discover(
    reader: VeleroReader,
    aws: AwsClients,
    *,
    prefix: str = "prod",
    schedules: tuple[str, ...] = ("daily",),
    copy_failed: bool = False,
    bucket: str = BUCKET,
    now: datetime | None = None,
) -> Discovery:
    return await reader.discover(
        aws,
        bucket=bucket,
        prefix=prefix,
        region=REGION,
        schedules=schedules,
        copy_failed_backups=copy_failed,
        now=now,
    )


def velero(prefix: str = "prod") -> VeleroBucket:
    """A bucket builder writing straight into the moto server's backends (seconds faster
    than HTTP; `test_realistic_world` covers the HTTP path)."""
    return VeleroBucket(BUCKET, prefix, REGION, mode="in_process")


def day(n: int) -> datetime:
    return T0 + timedelta(days=n)


def every_case() -> tuple[VeleroBucket, dict[str, list[str]]]:
    """A bucket with every case of docs/velero-files.md; returns the expected ids by backup."""
    db = Volume("shop", "db", 20, "eu-west-1a", NATIVE, "io2", iops=4000, storage_class="io2")
    cache = Volume("shop", "cache", 5, "eu-west-1b", CSI, storage_class="gp3-csi", fs_type="xfs")
    legacy = Volume("legacy", "old", 8, "eu-west-1c", NATIVE, "gp2", in_tree=True, zone_in="label")
    b = velero()
    b.backup(
        "daily-20240601020000", schedule="daily", version="1.9", volumes=[legacy], start=day(0)
    )
    b.backup(
        "daily-20240602020000",
        schedule="daily",
        version="1.12",
        phase="PartiallyFailed",
        volumes=[db, BROKEN],
        start=day(1),
    )
    b.backup("daily-20240603020000", schedule="daily", phase="Failed", volumes=[db], start=day(2))
    b.backup(
        "daily-20240603120000", schedule=None, volumes=[db], start=day(2)
    )  # manual, named like
    b.backup("before-upgrade", schedule=None, volumes=[db], start=day(2))
    b.backup("custom-name", schedule="daily", volumes=[db], start=day(3))  # --from-schedule --name
    b.backup("hourly-20240604010000", schedule="hourly", volumes=[db], start=day(3))
    b.backup(
        "daily-20240605020000",
        schedule="daily",
        version="1.14",
        volumes=[
            db,
            cache,
            Volume("shop", "uploads", method=POD_VOLUME),
            Volume("shop", "tmp", method=SKIPPED),
        ],
        start=day(4),
    )
    b.backup(
        "daily-20240606020000", schedule="daily", version="1.17", volumes=[cache], start=day(5)
    )
    b.backup(
        "daily-20240607020000", schedule="daily", version="1.10", volumes=[cache], start=day(6)
    )
    b.backup(
        "daily-20240608020000",
        schedule="daily",
        version="1.15",
        volumes=[db, Volume("billing", "ledger", 50, method=DATA_MOVER)],
        start=day(7),
    )
    b.backup(
        "daily-20240609020000",
        schedule="daily",
        phase="WaitingForPluginOperations",
        volumes=[cache],
        start=day(8),
    )
    b.backup(
        "daily-20240610020000", schedule="daily", phase="Finalizing", volumes=[db], start=day(9)
    )
    b.logs_only("daily-20240611020000")
    b.backup("daily-20240612020000", schedule="daily", volumes=[db, cache], start=day(11))
    b.corrupt_gzip("daily-20240612020000", VOLUME_INFO)
    b.backup("daily-20240613020000", schedule="daily", volumes=[db], start=day(12))
    b.invalid_json("daily-20240613020000", BACKUP_FILE)
    b.backup("daily-20240614020000", schedule="daily", version="1.12", volumes=[], start=day(13))
    b.put("prod/backups/Bad_Name/velero-backup.json", b"{}")
    b.decoys().pseudo_folders()
    # Another cluster under another prefix, same schedule name: never mixed in.
    velero("staging").backup("daily-20240605020000", schedule="daily", volumes=[db], start=day(4))
    yielded = [
        "daily-20240601020000",
        "daily-20240602020000",
        "custom-name",
        "daily-20240605020000",
        "daily-20240606020000",
        "daily-20240607020000",
        "daily-20240608020000",
        "daily-20240612020000",
        "daily-20240614020000",
    ]
    return b, {name: b.backups[name].snapshot_ids for name in yielded}


EveryCase = tuple[VeleroBucket, dict[str, list[str]]]


@pytest.fixture(scope="class")
def every(moto_session: MotoWorld) -> Iterator[EveryCase]:
    """The every-case bucket, seeded once for the class (seeding takes seconds)."""
    moto_session.reset()
    yield every_case()
    moto_session.reset()


@pytest.fixture
async def session_aws(every: EveryCase) -> AsyncIterator[AwsClients]:
    """Clients for the class's shared world (no reset between its tests)."""
    async with AwsClients(max_attempts=1) as clients:
        yield clients


class TestEveryCase:
    """One bucket holding every case; the tests read it and never change it."""

    async def test_every_case_is_copied_skipped_or_reported(
        self, every: EveryCase, session_aws: AwsClients
    ) -> None:
        """Exactly the snapshots of watched, finished backups are found; the rest has a reason."""
        _, expected = every
        # Read past the upload grace: the logs-only folder is an interrupted upload by then.
        result = await discover(VeleroReader(), session_aws, now=LATER)

        found: dict[str, list[str]] = {}
        for snapshot in result.snapshots:
            found.setdefault(snapshot.backup, []).append(snapshot.snapshot_id)
        assert {k: sorted(v) for k, v in found.items()} == {
            k: sorted(v) for k, v in expected.items() if v
        }
        assert sorted((s.backup, s.reason) for s in result.skipped) == [
            (
                "daily-20240602020000",
                f"Velero recorded a failed native snapshot of PV {BROKEN.pv_name}; nothing to copy",
            ),
            (
                "daily-20240603020000",
                "backup phase Failed; set SNAPD_COPY_FAILED_BACKUPS=true to copy its snapshots",
            ),
            (
                "daily-20240609020000",
                "backup in flight (phase WaitingForPluginOperations); read again next cycle",
            ),
            ("daily-20240610020000", "backup in flight (phase Finalizing); read again next cycle"),
        ]
        errors = {e.backup: e.error for e in result.errors}
        assert set(errors) == {
            "Bad_Name",
            "daily-20240611020000",
            "daily-20240612020000",
            "daily-20240613020000",
        }
        assert "not a valid Kubernetes object name" in errors["Bad_Name"]
        assert errors["daily-20240611020000"] == NO_BACKUP_FILE
        assert errors["daily-20240612020000"].startswith(
            "daily-20240612020000-volumeinfo.json.gz: truncated or corrupt gzip"
        )
        assert errors["daily-20240613020000"].startswith("velero-backup.json: invalid JSON")
        assert result.unreadable_backups == 4
        assert {b.name for b in result.backups} >= {"before-upgrade", "hourly-20240604010000"}

    async def test_snapshot_details(self, every: EveryCase, session_aws: AwsClients) -> None:
        """Each snapshot carries backup, PVC, volume and PV details from the right files."""
        bucket, _ = every
        result = await discover(VeleroReader(), session_aws)
        by_backup = {(s.backup, s.volume.pvc): s for s in result.snapshots}

        legacy = by_backup[("daily-20240601020000", "old")]  # v1.9 native, in-tree PV
        built = bucket.backups["daily-20240601020000"].snapshots[0]
        assert legacy.method is SnapshotMethod.NATIVE
        assert (legacy.volume.namespace, legacy.volume.pv, legacy.volume.volume_id) == (
            "legacy",
            built.volume.pv_name,
            built.volume_id,
        )
        assert (legacy.volume.availability_zone, legacy.volume.volume_type, legacy.volume.iops) == (
            "eu-west-1c",
            "gp2",
            None,
        )
        assert (legacy.volume.fs_type, legacy.volume.csi_driver, legacy.volume.size_gib) == (
            "ext4",
            None,
            8,
        )
        assert (legacy.schedule, legacy.phase, legacy.backup_time) == ("daily", "Completed", day(0))

        db = by_backup[("daily-20240605020000", "db")]
        assert (
            db.volume.volume_type,
            db.volume.iops,
            db.volume.storage_class,
            db.volume.size_gib,
        ) == ("io2", 4000, "io2", 20)

        for backup in ("daily-20240605020000", "daily-20240606020000", "daily-20240607020000"):
            cache = by_backup[(backup, "cache")]
            built = next(s for s in bucket.backups[backup].snapshots if s.volume.pvc == "cache")
            assert cache.method is SnapshotMethod.CSI
            assert (
                cache.volume.namespace,
                cache.volume.volume_id,
                cache.volume.availability_zone,
            ) == (
                "shop",
                built.volume_id,
                "eu-west-1b",
            )
            assert (
                cache.volume.storage_class,
                cache.volume.fs_type,
                cache.volume.csi_driver,
                cache.volume.size_gib,
            ) == (
                "gp3-csi",
                "xfs",
                "ebs.csi.aws.com",
                5,
            )
            assert cache.volume.access_modes == ("ReadWriteOnce",)
            assert cache.volume.volume_mode == "Filesystem"

        partial = by_backup[("daily-20240602020000", "db")]
        assert partial.phase == "PartiallyFailed"

    async def test_other_prefix_is_never_mixed_in(
        self, every: EveryCase, session_aws: AwsClients
    ) -> None:
        """Two clusters sharing a bucket and a schedule name each see only their own backups."""
        staging = await discover(VeleroReader(), session_aws, prefix="/staging/")
        prod = await discover(VeleroReader(), session_aws, prefix="prod")
        staging_ids = {s.snapshot_id for s in staging.snapshots}
        assert len(staging_ids) == 1
        assert not staging_ids & {s.snapshot_id for s in prod.snapshots}
        assert staging.errors == ()

    async def test_unchanged_folders_are_not_read_again(
        self, every: EveryCase, session_aws: AwsClients
    ) -> None:
        """In-flight, corrupt and interrupted backups cost no GET while their folder is as read."""
        reader = VeleroReader()
        cold = await discover(reader, session_aws)
        session_aws.calls.clear()
        warm = await discover(reader, session_aws)
        assert session_aws.calls["GetObject"] == 0
        assert session_aws.calls["ListObjectsV2"] == 1
        assert warm == cold


async def test_failed_backups_are_copied_on_request(aws: AwsClients) -> None:
    """With SNAPD_COPY_FAILED_BACKUPS the snapshots a Failed backup took are found."""
    bucket = velero()
    bucket.backup(
        "daily-20240603020000", schedule="daily", phase="Failed", volumes=[Volume("shop", "db")]
    )
    result = await discover(VeleroReader(), aws, copy_failed=True)
    assert [s.snapshot_id for s in result.snapshots] == bucket.backups[
        "daily-20240603020000"
    ].snapshot_ids
    assert result.snapshots[0].phase == "Failed"
    assert result.skipped == ()


async def test_warm_cycle_costs_one_listing_and_no_get(aws: AwsClients) -> None:
    """Unchanged finished backups are read once per process: later cycles only list."""
    bucket = velero()
    for n in range(4):
        bucket.backup(
            f"daily-2024060{n + 1}020000", schedule="daily", volumes=[Volume("shop", "db")]
        )
    bucket.backup("before-upgrade", volumes=[Volume("shop", "db")])
    bucket.backup(
        "daily-20240608020000", schedule="daily", phase="Failed", volumes=[Volume("shop", "db")]
    )
    reader = VeleroReader()
    cold = await discover(reader, aws)
    assert aws.calls["GetObject"] > 0
    aws.calls.clear()
    warm = await discover(reader, aws)
    assert aws.calls["GetObject"] == 0
    assert aws.calls["ListObjectsV2"] == math.ceil(6 / 1000)
    assert warm == cold


async def test_unwatched_backups_cost_one_get(aws: AwsClients) -> None:
    """Backups of other schedules are identified by velero-backup.json alone."""
    bucket = velero()
    bucket.backup("hourly-20240601010000", schedule="hourly", volumes=[Volume("shop", "db")])
    bucket.backup("before-upgrade", volumes=[Volume("shop", "db")])
    await discover(VeleroReader(), aws)
    assert aws.calls["GetObject"] == 2
    assert aws.calls["ListObjectsV2"] == 1


async def test_in_flight_backup_is_picked_up_when_completed(aws: AwsClients) -> None:
    """A backup waiting for plugin operations is copied once Velero finalises it."""
    bucket = velero()
    bucket.backup(
        "daily-20240609020000",
        schedule="daily",
        phase="WaitingForPluginOperations",
        volumes=[Volume("shop", "cache", method=CSI)],
    )
    reader = VeleroReader()
    first = await discover(reader, aws)
    assert first.snapshots == ()
    assert [s.reason for s in first.skipped] == [
        "backup in flight (phase WaitingForPluginOperations); read again next cycle"
    ]
    bucket.set_phase("daily-20240609020000", "Completed")
    second = await discover(reader, aws)
    assert [s.snapshot_id for s in second.snapshots] == bucket.backups[
        "daily-20240609020000"
    ].snapshot_ids
    assert second.skipped == ()


async def test_deleted_backups_leave_the_result(aws: AwsClients) -> None:
    """A backup removed from the bucket is no longer reported (and leaves the cache)."""
    bucket = velero()
    bucket.backup("daily-20240601020000", schedule="daily", volumes=[Volume("shop", "db")])
    bucket.backup("daily-20240602020000", schedule="daily", volumes=[Volume("shop", "db")])
    reader = VeleroReader()
    assert len((await discover(reader, aws)).snapshots) == 2
    for key in [k for k in bucket.files if "/daily-20240601020000/" in k]:
        await aws.call("s3", REGION, "DeleteObject", Bucket=BUCKET, Key=key)
    after = await discover(reader, aws)
    assert [s.backup for s in after.snapshots] == ["daily-20240602020000"]
    assert reader.cached == 1


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param("remove", id="missing-tarball"),
        pytest.param("truncate", id="truncated-tarball"),
    ],
)
async def test_tarball_problem_still_copies(aws: AwsClients, damage: str) -> None:
    """A lost tarball does not stop the copies; the missing PV details are reported."""
    bucket = velero()
    name = "daily-20240605020000"
    bucket.backup(
        name, schedule="daily", volumes=[Volume("shop", "db"), Volume("shop", "c", method=CSI)]
    )
    if damage == "remove":
        bucket.remove(name, TARBALL)
    else:
        bucket.corrupt_gzip(name, TARBALL)
    result = await discover(VeleroReader(), aws)
    assert sorted(s.snapshot_id for s in result.snapshots) == sorted(
        bucket.backups[name].snapshot_ids
    )
    assert {s.volume.pvc for s in result.snapshots} == {"db", "c"}
    assert result.errors == ()
    assert result.unreadable_backups == 0
    (warning,) = result.warnings
    assert warning.error.startswith(
        f"{name}.tar.gz is missing"
        if damage == "remove"
        else f"{name}.tar.gz: truncated or corrupt"
    )
    assert "its 2 snapshot(s) are still handled like any other" in warning.error
    assert [b.files_complete for b in result.backups] == [True]


async def test_upload_in_progress_is_read_until_complete(aws: AwsClients) -> None:
    """A backup read while Velero still uploads is re-read until its files are complete;
    within the upload grace that is a skip, past it an error naming what is missing."""
    bucket = velero()
    name = "daily-20240605020000"
    bucket.backup(name, schedule="daily", version="1.10", volumes=[Volume("shop", "db")])
    snapshot_file = bucket.files[bucket.key(name, VOLUME_SNAPSHOTS)]
    bucket.remove(name, VOLUME_SNAPSHOTS)
    completed = bucket.backups[name].start + timedelta(minutes=3)
    missing = f"{name}-volumesnapshots.json.gz (Velero writes it with every backup)"
    reader = VeleroReader()
    first = await discover(reader, aws, now=completed + timedelta(minutes=10))
    assert (first.snapshots, first.errors) == ((), ())
    assert [s.reason for s in first.skipped] == [
        f"upload in progress, not in the bucket yet: {missing}; the snapshots found so far "
        "are copied and the backup is read again every cycle"
    ]
    assert [b.files_complete for b in first.backups] == [False]
    late = await discover(reader, aws, now=completed + timedelta(hours=2))
    assert [e.error for e in late.errors] == [
        f"files incomplete more than 1h after the backup completed, missing: {missing}; "
        "the snapshots found so far are copied and the backup is read again every cycle"
    ]
    bucket.replace(name, VOLUME_SNAPSHOTS, snapshot_file)
    done = await discover(reader, aws, now=completed + timedelta(hours=3))
    assert [s.snapshot_id for s in done.snapshots] == bucket.backups[name].snapshot_ids
    assert (done.errors, done.skipped) == ((), ())
    assert [b.files_complete for b in done.backups] == [True]


async def test_pagination(aws: AwsClients) -> None:
    """Listing pages through every backup; a warm cycle costs one call per page of names."""
    bucket = velero()
    for n in range(5):
        bucket.backup(
            f"daily-2024060{n + 1}020000", schedule="daily", volumes=[Volume("shop", "db")]
        )
    reader = VeleroReader(page_size=2)
    cold = await discover(reader, aws)
    assert len(cold.snapshots) == 5
    aws.calls.clear()
    await discover(reader, aws)
    assert aws.calls["ListObjectsV2"] == math.ceil(5 / 2)
    assert aws.calls["GetObject"] == 0


async def test_more_than_a_thousand_backups(aws: AwsClients) -> None:
    """S3's 1000-prefix pages do not hide backups: the one after 1000 others is found."""
    # The 1000 others have names Kubernetes refuses, so they cost no GET (fast in moto).
    raw = velero()
    for n in range(1000):
        raw.put(f"prod/backups/Backup-{n:04}/velero-backup.json", b"{}")
    bucket = velero()
    bucket.backup("daily-20240601020000", schedule="daily", volumes=[Volume("shop", "db")])
    reader = VeleroReader()
    cold = await discover(reader, aws)
    assert [s.snapshot_id for s in cold.snapshots] == bucket.backups[
        "daily-20240601020000"
    ].snapshot_ids
    assert len(cold.errors) == 1000
    aws.calls.clear()
    await discover(reader, aws)
    assert aws.calls["ListObjectsV2"] == math.ceil(1001 / 1000)
    assert aws.calls["GetObject"] == 0


async def test_listing_failure_fails_the_cycle(aws: AwsClients) -> None:
    """A bucket that cannot be listed is a cycle failure, not an empty result."""
    with pytest.raises(PermanentError) as caught:
        await discover(VeleroReader(), aws, bucket="no-such-bucket")
    assert caught.value.code == "NoSuchBucket"


async def test_realistic_world(aws: AwsClients) -> None:
    """The demo world: a week of `daily` is found, with its corrupt and unfinished backups."""
    world = seed_realistic_world(bucket=BUCKET, region=REGION)
    result = await discover(
        VeleroReader(), aws, prefix=world.prefix, schedules=(world.schedule,), now=LATER
    )
    assert sorted(s.snapshot_id for s in result.snapshots) == sorted(world.expected_snapshot_ids)
    assert {e.backup for e in result.errors} == {world.corrupt_backup, world.logs_only_backup}
    assert world.in_flight_backup in {s.backup for s in result.skipped}


def named_by(built: BuiltBackup, written: set[str]) -> set[str]:
    """The snapshot ids the files written so far name (what a reader can find)."""
    ids: set[str] = set()
    for snap in built.snapshots:
        if snap.snapshot_id is None:
            continue
        in_info = VOLUME_INFO in written and snap.volume.in_volume_info
        if snap.method == NATIVE and (VOLUME_SNAPSHOTS in written or in_info):
            ids.add(snap.snapshot_id)
        if snap.method == CSI and (TARBALL in written or CSI_CONTENTS in written or in_info):
            ids.add(snap.snapshot_id)
    return ids


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("version", ["1.9", "1.10", "1.12", "1.14", "1.17", "1.18"])
async def test_each_versions_upload_order(aws: AwsClients, version: str, seed: int) -> None:
    """Read after every file of Velero's upload, in the version's order: each snapshot is
    found by the first reading after a file naming it appears, the backup is complete only
    once its files hold what its status counts, and a complete backup is not read again."""
    now = datetime.now(UTC).replace(microsecond=0)
    bucket = velero()
    name = "daily-20240605020000"
    volumes = [Volume("shop", "db"), Volume("shop", "cache", method=CSI)]
    bucket.backup(
        name,
        schedule="daily",
        version=version,
        volumes=volumes,
        start=now - timedelta(minutes=5),
        upload=False,
        order_seed=seed,
    )
    built = bucket.backups[name]
    reader = VeleroReader()
    written: set[str] = set()
    finalised = built.version < (1, 11)  # from v1.11 the first velero-backup.json is interim
    while (suffix := bucket.upload_next(name)) is not None:
        written.add(suffix)
        done = not bucket.pending[name]
        finalised = finalised or done
        result = await discover(reader, aws, now=now)
        found = {s.snapshot_id for s in result.snapshots}
        expected = named_by(built, written) if finalised and BACKUP_FILE in written else set()
        assert found == expected, f"after {suffix}"
        assert result.errors == ()
        if BACKUP_FILE in written:
            (backup,) = result.backups
            if backup.files_complete:
                assert found == set(built.snapshot_ids), f"complete after {suffix}"
            elif finalised:
                assert any(s.reason.startswith("upload in progress") for s in result.skipped)
    assert found == set(built.snapshot_ids)
    assert [b.files_complete for b in result.backups] == [True]
    assert result.skipped == ()
    aws.calls.clear()
    assert await discover(reader, aws, now=now) == result
    assert aws.calls["GetObject"] == 0


class Clock:
    """A monotonic clock the test moves by hand (the reader's verification cadence)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_recreated_backup_is_read_again_at_the_next_verification(
    aws: AwsClients,
) -> None:
    """A backup deleted and re-created under its name between two cycles looks the same in
    the names listing; the verification listing (every `verify_every`) sees its new ETags
    and reads it again — never later than that."""
    bucket = velero()
    name = "daily-20240605020000"
    bucket.backup(name, schedule="daily", volumes=[Volume("shop", "db")])
    clock = Clock()
    reader = VeleroReader(verify_every=timedelta(hours=1), clock=clock)
    first = await discover(reader, aws)
    bucket.delete_backup(name)
    bucket.backup(name, schedule="daily", volumes=[Volume("shop", "db")])
    clock.now += 3599
    aws.calls.clear()
    assert await discover(reader, aws) == first
    assert (aws.calls["ListObjectsV2"], aws.calls["GetObject"]) == (1, 0)
    clock.now += 1
    second = await discover(reader, aws)
    assert [s.snapshot_id for s in second.snapshots] == bucket.backups[name].snapshot_ids
    assert {s.snapshot_id for s in second.snapshots}.isdisjoint(
        s.snapshot_id for s in first.snapshots
    )


async def test_names_listing_finds_new_and_deleted_backups(aws: AwsClients) -> None:
    """Between verifications a new backup costs one listing of its own folder and its
    GETs; a deleted one leaves the result at once; finished ones cost nothing more."""
    bucket = velero()
    old, new = "daily-20240601020000", "daily-20240602020000"
    bucket.backup(old, schedule="daily", volumes=[Volume("shop", "db")])
    bucket.backup("daily-20240603020000", schedule="daily", volumes=[Volume("shop", "db")])
    reader = VeleroReader(clock=Clock())
    await discover(reader, aws)
    bucket.backup(new, schedule="daily", volumes=[Volume("shop", "db")])
    bucket.delete_backup(old)
    aws.calls.clear()
    warm = await discover(reader, aws)
    assert sorted(b.name for b in warm.backups) == [new, "daily-20240603020000"]
    assert set(bucket.backups[new].snapshot_ids) <= {s.snapshot_id for s in warm.snapshots}
    assert aws.calls["ListObjectsV2"] == 2  # the names, then the new folder
    assert aws.calls["GetObject"] > 0
    aws.calls.clear()
    assert await discover(reader, aws) == warm
    assert (aws.calls["ListObjectsV2"], aws.calls["GetObject"]) == (1, 0)


async def test_many_new_backups_take_the_verification_listing(aws: AwsClients) -> None:
    """When more folders need a listing of their own than the verification listing has
    pages, the cycle takes the verification listing instead (fewer requests)."""
    bucket = velero()
    bucket.backup("daily-20240601020000", schedule="daily", volumes=[Volume("shop", "db")])
    reader = VeleroReader(page_size=1000, clock=Clock())
    await discover(reader, aws)
    for n in range(2, 5):
        bucket.backup(f"daily-2024060{n}020000", schedule="daily", volumes=[Volume("shop", "db")])
    aws.calls.clear()
    warm = await discover(reader, aws)
    assert len(warm.backups) == 4
    assert aws.calls["ListObjectsV2"] == 2  # the names, then one page of every file


class VanishingS3:
    """The moto server, except that one key is deleted just before it is fetched: Velero
    deleting a backup while snapd reads it."""

    def __init__(self, aws: AwsClients, key: str) -> None:
        self.aws, self.key = aws, key

    async def call(self, service: str, region: str, operation: str, **params: Any) -> Any:
        if operation == "GetObject" and params.get("Key") == self.key:
            await self.aws.call(service, region, "DeleteObject", Bucket=BUCKET, Key=self.key)
        return await self.aws.call(service, region, operation, **params)

    def pages(
        self, service: str, region: str, operation: str, **params: Any
    ) -> AsyncIterator[dict[str, Any]]:
        return self.aws.pages(service, region, operation, **params)


@pytest.mark.parametrize("suffix", [BACKUP_FILE, VOLUME_SNAPSHOTS, TARBALL])
async def test_file_vanishing_while_read_is_no_aws_error(moto: MotoWorld, suffix: str) -> None:
    """A listed file gone when fetched is the backup changing under us: a skip, read again
    next cycle, and never counted in snapd_aws_errors_total."""
    bucket = velero()
    name = "daily-20240605020000"
    bucket.backup(name, schedule="daily", volumes=[Volume("shop", "db")])
    metrics = Metrics()
    async with AwsClients(max_attempts=1, on_error=metrics.count_aws_error) as clients:
        reader = VeleroReader()
        result = await discover(reader, VanishingS3(clients, bucket.key(name, suffix)))  # type: ignore[arg-type]
        assert result.snapshots == ()
        assert result.errors == ()
        assert [s.reason for s in result.skipped] == [VANISHED]
        assert reader.cached == 0
        counted = {
            s.labels["code"]
            for family in metrics.registry.collect()
            for s in family.samples
            if s.name == "snapd_aws_errors_total"
        }
        assert counted == set()
