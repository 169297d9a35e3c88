"""Never report protection that is not there: the real CLI and daemon against the simulated
world, each case the way it was found — slots held by other tools, refused copies, retries
in backoff at `--timeout`, replicas whose identity tags were removed or edited, wildcard
scopes, backup times in the future."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import boto3
import pytest

from simworld.ec2sim import Ec2Simulator
from simworld.moto_server import MotoWorld
from simworld.velero_bucket import CSI, NATIVE, VeleroBucket, Volume
from snapd import tags
from tests.integration.cli import run_snapd
from tests.integration.daemon import running, wait_until
from tests.integration.test_cli_sync import (
    DST,
    NOW,
    SRC,
    expected_ids,
    replicas,
    seed,
    settings_env,
    tag_map,
)


def sync_json(moto: MotoWorld, *args: str, timeout: float = 120, **env: str) -> tuple[int, Any]:
    """`snapd sync -o json ARGS`: exit code and the printed object."""
    result = run_snapd("sync", "-o", "json", *args, env=settings_env(moto, **env), timeout=timeout)
    assert result.stdout, result.stderr
    return result.code, json.loads(result.stdout)


def unprotected(output: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The sync summary's sources without a completed replica, by source snapshot id."""
    return {u["source_snapshot_id"]: u for u in output["result"]["unprotected"]}


# ------------------------------------------------------------ sync: never "ok" without copies


def test_sync_timeout_with_every_slot_held_by_other_tools_fails_naming_each_source(
    moto: MotoWorld, ec2sim: Ec2Simulator
) -> None:
    """Other tools' copies hold all 20 slots for the whole `--timeout`: nothing starts, and
    sync exits 1 naming every source as not started because the slots are taken."""
    ec2sim.add_foreign_pending(DST, 20, duration=600.0)
    bucket = seed(moto, days=1)
    code, output = sync_json(moto, "--timeout", "2s")
    assert code == 1
    assert output["result"]["ok"] is False
    missing = unprotected(output)
    assert set(missing) == expected_ids(bucket)
    for item in missing.values():
        assert item["state"] == "queued"
        assert "ResourceLimitExceeded" in item["reason"]
        assert item["replica_id"] is None
    assert [s for s in replicas(moto) if tags.CLUSTER in tag_map(s)] == []
    text = run_snapd("sync", "--timeout", "1s", env=settings_env(moto))
    assert text.code == 1
    named = [line for line in text.stdout.splitlines() if line.startswith("not protected: ")]
    assert {s for s in expected_ids(bucket) for line in named if s in line} == expected_ids(bucket)
    assert "prune skipped" in text.stdout


def test_sync_timeout_while_a_retry_waits_in_backoff_fails(
    moto: MotoWorld, ec2sim: Ec2Simulator
) -> None:
    """A copy ended in `error` and its retry still waits in backoff when `--timeout` hits:
    sync exits 1 and says the source waits to retry, and after what."""
    ec2sim.copy_duration = 0.0
    bucket = seed(moto, days=1)
    broken = sorted(expected_ids(bucket))[0]
    ec2sim.fail_copies(broken, times=1)
    # The retry's backoff is at least half a poll interval (10 s): past the 4 s timeout.
    code, output = sync_json(moto, "--timeout", "4s", SNAPD_POLL_INTERVAL="20s")
    assert code == 1
    missing = unprotected(output)
    assert set(missing) == {broken}
    assert missing[broken]["state"] == "queued"
    assert missing[broken]["reason"].startswith("waiting to retry (try 2 of 3) after: ")
    assert "Given key ID is not accessible" in missing[broken]["reason"]


def test_refused_copies_end_sync_within_one_poll_interval(
    moto: MotoWorld, ec2sim: Ec2Simulator
) -> None:
    """Every CopySnapshot refused (UnauthorizedOperation) and given up: sync exits 1 at once
    — long before its 12 h timeout and before one 120 s poll interval — naming each source
    and the refusal."""
    bucket = seed(moto, days=1)
    ec2sim.refuse_copies()
    code, output = sync_json(moto, timeout=100, SNAPD_POLL_INTERVAL="120s", SNAPD_COPY_RETRIES="1")
    assert code == 1
    missing = unprotected(output)
    assert set(missing) == expected_ids(bucket)
    for item in missing.values():
        assert item["state"] == "failed"
        assert "UnauthorizedOperation" in item["reason"]
    assert output["result"]["copies_failed"]
    assert ec2sim.calls["CopySnapshot"] == len(expected_ids(bucket))


def test_refused_copies_are_retried_then_reported(moto: MotoWorld, ec2sim: Ec2Simulator) -> None:
    """One source refused on every try, the other copied: sync retries the refused one
    SNAPD_COPY_RETRIES times, exits 1 naming only it."""
    ec2sim.copy_duration = 0.1
    bucket = seed(moto, days=1)
    refused, copied = sorted(expected_ids(bucket))
    ec2sim.refuse_copies(refused)
    code, output = sync_json(moto, SNAPD_COPY_RETRIES="2")
    assert code == 1
    assert set(unprotected(output)) == {refused}
    assert [tag_map(s)[tags.SOURCE_SNAPSHOT_ID] for s in replicas(moto)] == [copied]
    assert ec2sim.calls["CopySnapshot"] == 3


def ec2(moto: MotoWorld) -> Any:
    return boto3.client("ec2", region_name=DST, endpoint_url=moto.url)


# ------------------------------------------------------------ scopes: exact, or refused


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"SNAPD_CLUSTER": "team-?"}, "'?'"),
        ({"SNAPD_CLUSTER": "team-*"}, "'*'"),
        ({"SNAPD_CLUSTER": "t" * 257}, "257 characters"),
        ({"SNAPD_VELERO_PREFIX": "clusters/*"}, "velero_prefix"),
        ({"SNAPD_VELERO_PREFIX": "p" * 260}, "set cluster"),
    ],
    ids=["question-mark", "asterisk", "too-long", "wildcard-prefix", "long-default-scope"],
)
def test_a_scope_that_is_no_exact_tag_value_exits_2(
    moto: MotoWorld, ec2sim: Ec2Simulator, extra: dict[str, str], needle: str
) -> None:
    """A scope EC2 would read as a wildcard filter (or cannot store as a tag value) is a
    configuration error: one line naming the setting, exit 2, before any AWS call — never
    a listing that holds another scope's replicas, nor a failure at the first copy."""
    ec2sim.add_snapshot(DST, tags={tags.CLUSTER: "team-b", tags.PVC: "db"})
    seed(moto, days=1)
    ec2sim.calls.clear()
    result = run_snapd("sync", env=settings_env(moto, **extra))
    assert result.code == 2, result.stderr
    assert needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert sum(ec2sim.calls.values()) == 0


# ------------------------------------------------------------ identity: removed or edited tags

IDENTITY_TAGS = (tags.NAMESPACE, tags.PVC, tags.PV, tags.SOURCE_VOLUME_ID)


def test_replicas_without_identity_tags_are_never_aged_out_together(
    moto: MotoWorld, ec2sim: Ec2Simulator
) -> None:
    """Two PVCs' only replicas lose their namespace/PVC/PV/volume tags (a person, an older
    version): retention cannot tell whose they are, so neither is pruned — not one "because
    a newer replica of (blank) is kept"."""
    ec2sim.copy_duration = 0.1
    seed(moto, days=1, start_days_ago=40)
    assert run_snapd("sync", env=settings_env(moto, SNAPD_RETENTION_MAX_AGE="90d")).code == 0
    made = [str(s["SnapshotId"]) for s in replicas(moto)]
    assert len(made) == 2
    ec2(moto).delete_tags(Resources=made, Tags=[{"Key": key} for key in IDENTITY_TAGS])
    code, plan = sync_json(moto, "--dry-run", SNAPD_RETENTION_MAX_AGE="30d")
    assert code == 0
    assert plan["prune"] == []
    result = run_snapd("sync", "--force", env=settings_env(moto, SNAPD_RETENTION_MAX_AGE="30d"))
    assert result.code == 0, result.stderr
    assert sorted(str(s["SnapshotId"]) for s in replicas(moto)) == sorted(made)


def test_an_edited_source_id_never_makes_another_volumes_replica_a_duplicate(
    moto: MotoWorld, ec2sim: Ec2Simulator
) -> None:
    """The cache PVC's only replica gets the db replica's source id by hand: both are kept
    and the conflict is reported; a true duplicate (every identity tag equal) still goes."""
    ec2sim.copy_duration = 0.1
    bucket = seed(moto, days=1)
    assert run_snapd("sync", env=settings_env(moto)).code == 0
    by_pvc = {tag_map(s)[tags.PVC]: s for s in replicas(moto)}
    db, cache = by_pvc["db"], by_pvc["cache"]
    db_source = tag_map(db)[tags.SOURCE_SNAPSHOT_ID]
    ec2(moto).create_tags(
        Resources=[cache["SnapshotId"]], Tags=[{"Key": tags.SOURCE_SNAPSHOT_ID, "Value": db_source}]
    )
    duplicate = ec2sim.add_snapshot(DST, tags=tag_map(db))
    code, output = sync_json(moto)
    assert code == 0, output
    left = {s["SnapshotId"] for s in replicas(moto)}
    assert cache["SnapshotId"] in left
    # db's replica and its true duplicate may share a StartTime second: which one stays is
    # the tie-break's choice, that exactly one stays is the rule.
    [kept_db] = {db["SnapshotId"], duplicate} & left
    conflicts = [w for w in output["warnings"] if w["source_snapshot_id"] == db_source]
    assert len(conflicts) == 1
    assert cache["SnapshotId"] in conflicts[0]["error"]
    assert kept_db in conflicts[0]["error"]
    # The cache source lost its claimed replica, so it was copied again: still covered.
    covered = {tag_map(s)[tags.SOURCE_SNAPSHOT_ID] for s in replicas(moto)}
    assert covered == expected_ids(bucket)


# ------------------------------------------------------------ a backup time in the future

FUTURE = NOW + timedelta(days=305)
#: The volumes `seed` backs up.
VOLUMES = [
    Volume("shop", "db", 20, f"{SRC}a", NATIVE, "gp3"),
    Volume("shop", "cache", 5, f"{SRC}b", CSI, "gp3"),
]


def seed_with_future_backup(moto: MotoWorld) -> tuple[VeleroBucket, str, str]:
    """A real backup two days old and one whose startTimestamp lies 305 days ahead."""
    bucket = seed(moto, days=1, start_days_ago=2)
    (real,) = bucket.backups
    future = f"daily-{FUTURE:%Y%m%d%H%M%S}"
    bucket.backup(future, schedule="daily", volumes=VOLUMES, start=FUTURE, version="1.14")
    return bucket, real, future


def test_a_future_backup_time_never_counts_as_protection(
    moto: MotoWorld, ec2sim: Ec2Simulator
) -> None:
    """Velero's clock (or a hand) writes a backup time 305 days ahead: its snapshots are
    copied, but the real newest backup is still copied and kept by retention, `status`
    shows the real recovery point (no negative age) and names the future backup."""
    ec2sim.copy_duration = 0.1
    bucket, real, future = seed_with_future_backup(moto)
    env = {"SNAPD_RETENTION_MAX_AGE": "1d"}
    code, output = sync_json(moto, SNAPD_RETENTION_MAX_AGE="1d")
    assert code == 0, output
    copied = {tag_map(s)[tags.SOURCE_SNAPSHOT_ID] for s in replicas(moto)}
    assert copied == expected_ids(bucket)  # the real backup's snapshots too
    assert [w["backup"] for w in output["warnings"]] == [future]
    assert "in the future" in output["warnings"][0]["error"]

    again = run_snapd("sync", "--force", env=settings_env(moto, **env))
    assert again.code == 0, again.stderr
    kept = {tag_map(s)[tags.BACKUP] for s in replicas(moto)}
    assert kept == {real, future}

    status = run_snapd("status", "-o", "json", env=settings_env(moto, **env))
    assert status.code == 0, status.stderr
    report = json.loads(status.stdout)
    real_time = bucket.backups[real].start.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert {(p["pvc"], p["recovery_point"]) for p in report["pvcs"]} == {
        ("db", real_time),
        ("cache", real_time),
    }
    assert all(p["age_seconds"] > 0 for p in report["pvcs"])
    assert report["schedules"][0]["newest_backup"] == real
    assert [w["backup"] for w in report["warnings"]] == [future]
    text = run_snapd("status", env=settings_env(moto, **env))
    assert f"warning: backup {future}: " in text.stdout
    assert "-305d" not in text.stdout


def test_the_daemon_exports_no_future_recovery_point(moto: MotoWorld, ec2sim: Ec2Simulator) -> None:
    """`snapd run`: the recovery point metric of each PVC is its real newest replica, so
    SnapdRecoveryPointTooOld can still fire when only a future-dated replica is newer."""
    ec2sim.copy_duration = 0.1
    bucket, real, _ = seed_with_future_backup(moto)
    real_time = bucket.backups[real].start.timestamp()
    with running(settings_env(moto, SNAPD_SYNC_INTERVAL="1s")) as daemon:

        def points() -> dict[str, float] | None:
            series = daemon.scrape().series("snapd_recovery_point_timestamp_seconds")
            found = {dict(labels)["pvc"]: value for labels, value in series.items()}
            return found if set(found) == {"db", "cache"} else None

        exported = wait_until(points, timeout=120, what="recovery points of db and cache")
        assert exported == {"db": real_time, "cache": real_time}
        assert daemon.stop() == 0
