"""Immutable replicas through the real `snapd` CLI: locks placed, honoured and shown.

The simulator's locks run on its wall clock; `Ec2Simulator.travel()` moves it forward so a
lock of a day expires within the test. snapd's own clock is the real one, so the scenarios
keep every lock snapd places far from the travelled distance except the one meant to expire.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from simworld.ec2sim import Ec2Simulator
from simworld.moto_server import MotoWorld
from simworld.snapshot_lock import SNAPSHOT_LOCKED_CODE
from simworld.velero_bucket import NATIVE, VeleroBucket, Volume
from snapd import tags
from tests.integration.cli import run_snapd
from tests.integration.daemon import Scrape, running, wait_until
from tests.integration.test_cli_sync import (
    BUCKET,
    DST,
    SRC,
    replicas,
    seed,
    settings_env,
    tag_map,
)

WAIT = 30.0  # bound on every wait for the daemon to do something
DB = Volume("shop", "db", 20, f"{SRC}a", NATIVE, "gp3")


def backup(bucket: VeleroBucket, age: timedelta) -> str:
    start = datetime.now(UTC).replace(microsecond=0) - age
    name = f"daily-{start:%Y%m%d%H%M%S}"
    bucket.backup(name, schedule="daily", volumes=[DB], start=start, version="1.14")
    return name


def by_backup(moto: MotoWorld) -> dict[str, str]:
    """Replica id per backup name."""
    return {tag_map(s)[tags.BACKUP]: str(s["SnapshotId"]) for s in replicas(moto)}


def list_json(moto: MotoWorld) -> list[dict[str, Any]]:
    env = {
        **moto.env(),
        "SNAPD_CLUSTER": BUCKET,
        "SNAPD_DESTINATION_REGION": DST,
        "SNAPD_LOCK_MODE": "compliance",
    }
    result = run_snapd("list", "-o", "json", env=env)
    assert result.code == 0, result.stderr
    items: list[dict[str, Any]] = json.loads(result.stdout)
    return items


def test_compliance_keeps_a_replica_past_max_age_until_its_lock_expires(
    moto: MotoWorld, ec2sim: Ec2Simulator
) -> None:
    """Locked past its age: kept (and listed as locked); nobody can delete it; pruned after."""
    ec2sim.copy_duration = 0.2
    env = settings_env(
        moto,
        SNAPD_LOCK_MODE="compliance",
        SNAPD_LOCK_MARGIN="1h",
        SNAPD_RETENTION_MAX_AGE="10d",
    )
    bucket = VeleroBucket(BUCKET, region=SRC, endpoint_url=moto.url)
    old = backup(bucket, timedelta(days=11))  # copied: the newest restore point of its PVC
    first = run_snapd("sync", env=env)
    assert first.code == 0, first.stderr
    old_id = by_backup(moto)[old]
    lock = ec2sim.lock_of(DST, old_id)
    assert lock is not None
    assert lock.mode == "compliance"
    # Kept past its age by keep-last: AWS's minimum of a day (2 × margin is only 2h).
    assert timedelta(days=1) <= lock.expires - ec2sim.wall_now() <= timedelta(days=1, hours=2)

    new = backup(bucket, timedelta(hours=12))
    second = run_snapd("sync", env=env)
    assert second.code == 0, second.stderr
    assert old_id in by_backup(moto).values(), "a locked replica must not be deleted"
    assert ec2sim.calls["DeleteSnapshot"] == 0, "snapd never tries to delete a locked replica"
    new_id = by_backup(moto)[new]
    new_lock = ec2sim.lock_of(DST, new_id)
    assert new_lock is not None
    assert new_lock.expires > ec2sim.wall_now() + timedelta(days=9)

    plan = json.loads(run_snapd("sync", "--dry-run", "-o", "json", env=env).stdout)
    assert plan["prune"] == []
    [kept] = plan["kept"]
    assert kept["snapshot_id"] == old_id
    assert kept["backup"] == old
    assert {"snapshot_id", "source_snapshot_id", "backup", "namespace", "pvc", "reason"} <= set(
        kept
    )
    assert kept["reason"] == f"locked until {lock.expires.strftime('%Y-%m-%dT%H:%M:%SZ')}"

    listed = {item["snapshot_id"]: item for item in list_json(moto)}
    assert listed[old_id]["lock_state"] == "compliance"
    assert listed[old_id]["lock_expires"] == kept["reason"].removeprefix("locked until ")

    ec2 = boto3.client("ec2", region_name=DST, endpoint_url=moto.url)
    with pytest.raises(ClientError) as refused:
        ec2.delete_snapshot(SnapshotId=old_id)
    assert refused.value.response["Error"]["Code"] == SNAPSHOT_LOCKED_CODE

    ec2sim.travel(timedelta(days=1, hours=3))  # the old replica's lock expires
    third = run_snapd("sync", env=env)
    assert third.code == 0, third.stderr
    assert set(by_backup(moto)) == {new}, "pruned by the first pass after its lock expired"


def test_turning_locking_on_locks_every_existing_replica_in_one_cycle(
    moto: MotoWorld, ec2sim: Ec2Simulator
) -> None:
    """Replicas made with locking off are all locked by the next sync, with batched look-ups."""
    ec2sim.copy_duration = 0.1
    seed(moto, days=3)
    assert run_snapd("sync", env=settings_env(moto)).code == 0
    made = [str(s["SnapshotId"]) for s in replicas(moto)]
    assert len(made) == 6
    assert ec2sim.calls["DescribeLockedSnapshots"] == 0, "no lock look-ups with locking off"
    assert ec2sim.rbin.calls == {}, "no Recycle Bin look-ups with locking off"
    assert all(item["lock_state"] is None for item in list_json(moto))

    ec2sim.add_recycle_bin_rule(DST, resource_tags={tags.CLUSTER: BUCKET})
    env = settings_env(moto, SNAPD_LOCK_MODE="governance")
    before = ec2sim.calls["DescribeLockedSnapshots"]
    result = run_snapd("sync", env=env)
    assert result.code == 0, result.stderr
    assert ec2sim.calls["LockSnapshot"] == len(made)
    # One cycle and one prune pass, each at most ⌈6/1000⌉ + 1 calls.
    assert ec2sim.calls["DescribeLockedSnapshots"] - before <= 2 * 2
    for sid in made:
        lock = ec2sim.lock_of(DST, sid)
        assert lock is not None
        assert lock.mode == "governance"
    assert {item["lock_state"] for item in list_json(moto)} == {"governance"}

    status = run_snapd("status", "-o", "json", env=env)
    assert status.code == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["locks"] == {
        "mode": "governance",
        "locked": 6,
        "unlocked": 0,
        "should_be_locked": 0,
        "kept_by_lock": 0,
    }
    assert report["recycle_bin_protected"] is True
    text = run_snapd("status", env=env).stdout
    assert "lock mode governance   locked: 6   unlocked: 0   should be locked: 0" in text
    assert "Recycle Bin rule covers replicas: yes" in text
    list_env = {**env, "SNAPD_CLUSTER": BUCKET}
    wide = run_snapd("list", "-o", "wide", env=list_env).stdout
    assert wide.splitlines()[0].split()[-1] == "LOCK"
    assert wide.count("governance until ") == 6
    again = run_snapd("sync", env=env)
    assert again.code == 0, again.stderr
    assert ec2sim.calls["LockSnapshot"] == len(made), "locked replicas are not locked again"


def test_failed_lock_is_reported_and_never_fails_the_sync(
    moto: MotoWorld, ec2sim: Ec2Simulator
) -> None:
    """LockSnapshot refused: logged and counted, the copies and the exit code unaffected."""
    ec2sim.copy_duration = 0.1
    seed(moto, days=1)
    ec2sim.inject("LockSnapshot", "UnauthorizedOperation", times=10)
    env = settings_env(moto, SNAPD_LOCK_MODE="compliance")
    result = run_snapd("sync", env=env)
    assert result.code == 0, result.stderr
    assert len(replicas(moto)) == 2
    assert "lock.failed" in result.stderr
    status = json.loads(run_snapd("status", "-o", "json", env=env).stdout)
    assert status["locks"]["should_be_locked"] == 2
    assert status["recycle_bin_protected"] is False
    ec2sim.faults.clear()  # IAM fixed
    retried = run_snapd("sync", env=env)
    assert retried.code == 0, retried.stderr
    assert all(ec2sim.lock_of(DST, str(s["SnapshotId"])) for s in replicas(moto))


def test_a_lock_someone_else_placed_is_reported_as_locked_never_as_deleted(
    moto: MotoWorld, ec2sim: Ec2Simulator
) -> None:
    """Locking off: DeleteSnapshot refused under a foreign lock → `locked`, not `pruned`."""
    ec2sim.copy_duration = 0.1
    env = settings_env(moto, SNAPD_RETENTION_MAX_AGE="10d")
    bucket = VeleroBucket(BUCKET, region=SRC, endpoint_url=moto.url)
    old = backup(bucket, timedelta(days=11))
    assert run_snapd("sync", env=env).code == 0
    old_id = by_backup(moto)[old]
    ec2 = boto3.client("ec2", region_name=DST, endpoint_url=moto.url)
    ec2.lock_snapshot(SnapshotId=old_id, LockMode="governance", LockDuration=2)
    backup(bucket, timedelta(hours=12))
    result = run_snapd("sync", "-o", "json", env=env)
    assert result.code == 0, result.stderr
    outcome = json.loads(result.stdout)["result"]
    assert outcome["pruned"] == []
    assert list(outcome["prune_refused_locked"]) == [old_id]
    assert old_id in by_backup(moto).values()


def test_daemon_metrics_follow_unlocked_replicas_and_the_recycle_bin(
    moto: MotoWorld, ec2sim: Ec2Simulator
) -> None:
    """`snapd run`: unlocked replicas and failed locks show in /metrics until IAM is fixed;
    the Recycle Bin gauge follows the rules, checked at start and in each prune pass."""
    ec2sim.copy_duration = 0.1
    seed(moto, days=1)
    ec2sim.inject("LockSnapshot", "UnauthorizedOperation", times=10_000)
    env = settings_env(
        moto,
        SNAPD_LOCK_MODE="compliance",
        SNAPD_SYNC_INTERVAL="0.5s",
        SNAPD_PRUNE_INTERVAL="0.5s",
    )
    with running(env) as daemon:
        wait_until(  # checked at start: no rule yet
            lambda: daemon.scrape().value("snapd_recycle_bin_protected") == 0,
            timeout=WAIT,
            what="the Recycle Bin gauge at 0",
        )

        def unlocked() -> Scrape | None:
            s = daemon.scrape()
            failing = (s.value("snapd_locks_total", result="failed") or 0) > 0
            return s if failing and s.value("snapd_replicas_unlocked") == 2 else None

        wait_until(unlocked, timeout=WAIT, what="2 unlocked replicas in /metrics")
        ec2sim.faults.clear()  # IAM fixed
        ec2sim.add_recycle_bin_rule(DST)  # a region-level rule

        def healed() -> Scrape | None:
            s = daemon.scrape()
            done = (
                s.value("snapd_replicas_unlocked") == 0
                and s.value("snapd_recycle_bin_protected") == 1
            )
            return s if done else None

        scrape = wait_until(
            healed,
            timeout=WAIT,
            what="locks placed and the Recycle Bin seen",
            explain=lambda: daemon.stderr,
        )
        assert daemon.stop() == 0, daemon.stderr
    assert scrape.value("snapd_locks_total", result="locked") == 2
    assert all(ec2sim.lock_of(DST, str(s["SnapshotId"])) for s in replicas(moto))
