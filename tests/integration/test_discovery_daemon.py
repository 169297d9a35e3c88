"""Discovery as an operator meets it: a running `snapd run` while Velero writes, deletes and
re-creates backups, and what reaches the logs, the plan and the metrics.

Every test drives the real `snapd` CLI as a subprocess against the moto server, the EC2
simulator and a Velero bucket written file by file the way Velero uploads it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from simworld.ec2sim import Ec2Simulator
from simworld.moto_server import MotoWorld
from simworld.velero_bucket import BACKUP_FILE, CSI, NATIVE, TARBALL, VeleroBucket, Volume
from tests.integration.cli import run_snapd
from tests.integration.daemon import Daemon, running, wait_until
from tests.integration.test_cli_sync import BUCKET, SRC, replicas, settings_env, tag_map
from tests.integration.test_velero_discovery import named_by

WAIT = 30.0  # bound on every wait for the daemon to do something
NOW = datetime.now(UTC).replace(microsecond=0)
DB = Volume("shop", "db", 20, f"{SRC}a", NATIVE, "gp3")
CACHE = Volume("shop", "cache", 5, f"{SRC}b", CSI, "gp3")


def replicated(moto: MotoWorld) -> dict[str, dict[str, str]]:
    """Source snapshot id → tags of its replica, for every replica in the DR region."""
    found: dict[str, dict[str, str]] = {}
    for snapshot in replicas(moto):
        tags = tag_map(snapshot)
        found[tags["snapd.io/source-snapshot-id"]] = tags
    return found


def cycles(daemon: Daemon) -> int:
    return len(daemon.events("cycle.completed"))


def wait_cycles(daemon: Daemon, count: int) -> None:
    """Until `count` more cycles have completed (each one starts after the change)."""
    target = cycles(daemon) + count
    wait_until(
        lambda: cycles(daemon) >= target,
        timeout=WAIT,
        what=f"{count} more cycles",
        explain=lambda: daemon.stderr,
    )


def warnings_logged(daemon: Daemon, kind: str) -> list[dict[str, Any]]:
    return daemon.events(f"discovery.{kind}")


@pytest.mark.parametrize("version", ["1.10", "1.17"])
def test_backup_copied_as_velero_uploads_it(
    moto: MotoWorld, ec2sim: Ec2Simulator, version: str
) -> None:
    """While `snapd run` runs, Velero uploads a backup file by file in its version's order
    (1.10: Completed from the first velero-backup.json; 1.17: interim phase, no csi-* files,
    the finalizer last): each snapshot gets its replica in the cycles right after the file
    naming it appears, with no error on the way, and nothing is missing at the end."""
    ec2sim.copy_duration = 0.1
    bucket = VeleroBucket(BUCKET, region=SRC, endpoint_url=moto.url)
    name = f"daily-{NOW:%Y%m%d%H%M%S}"
    bucket.backup(
        name,
        schedule="daily",
        version=version,
        volumes=[DB, CACHE],
        start=NOW - timedelta(minutes=5),
        upload=False,
        order_seed=1,
    )
    built = bucket.backups[name]
    native, csi = (s.snapshot_id for s in built.snapshots)
    assert native
    assert csi
    finalised = built.version < (1, 11)  # from v1.11 the first velero-backup.json is interim
    env = settings_env(moto, SNAPD_SYNC_INTERVAL="0.3s")
    with running(env) as daemon:
        written: set[str] = set()
        while (suffix := bucket.upload_next(name)) is not None:
            written.add(suffix)
            finalised = finalised or not bucket.pending[name]
            # Velero's files appear seconds apart; snapd sees each in its next cycle.
            wait_cycles(daemon, 2)
            expected = named_by(built, written) if finalised and BACKUP_FILE in written else set()
            wait_until(
                lambda expected=expected: expected <= set(replicated(moto)),  # type: ignore[misc]
                timeout=WAIT,
                what=f"replicas of {sorted(expected)} after {sorted(written)}",
                explain=lambda: daemon.stderr,
            )
            if not finalised:
                assert replicated(moto) == {}, f"copied before Velero finalised ({suffix})"
        wait_cycles(daemon, 2)
        assert daemon.stop() == 0, daemon.stderr
    copies = replicated(moto)
    assert set(copies) == {native, csi}
    assert copies[native]["snapd.io/pvc"] == "db"
    assert copies[csi]["snapd.io/pvc"] == "cache"
    assert warnings_logged(daemon, "error") == []
    last = daemon.events("cycle.completed")[-1]
    assert (last["errors"], last["warnings"]) == (0, 0)


def test_recreated_backup_gets_its_replica(moto: MotoWorld, ec2sim: Ec2Simulator) -> None:
    """`velero backup delete X` then `velero backup create X` within one interval: the
    daemon reads the new X at its next verification listing (every prune interval) and
    copies its snapshot (the old reading is not reused beyond that)."""
    ec2sim.copy_duration = 0.1
    bucket = VeleroBucket(BUCKET, region=SRC, endpoint_url=moto.url)
    name = f"daily-{NOW - timedelta(hours=3):%Y%m%d%H%M%S}"
    bucket.backup(name, schedule="daily", volumes=[DB], start=NOW - timedelta(hours=3))
    (old,) = bucket.backups[name].snapshot_ids
    env = settings_env(moto, SNAPD_SYNC_INTERVAL="0.3s", SNAPD_PRUNE_INTERVAL="2s")
    with running(env) as daemon:
        wait_until(
            lambda: old in replicated(moto),
            timeout=WAIT,
            what="the first backup's replica",
            explain=lambda: daemon.stderr,
        )
        # Deleted and re-created between two listings: every listing shows the name. (Were
        # the folder deleted first, a cycle could fall into the gap and forget it.)
        bucket.backup(name, schedule="daily", volumes=[DB], start=NOW - timedelta(hours=1))
        (new,) = bucket.backups[name].snapshot_ids
        wait_until(
            lambda: new in replicated(moto),
            timeout=WAIT,
            what="the re-created backup's replica",
            explain=lambda: daemon.stderr,
        )
        assert daemon.stop() == 0, daemon.stderr
    assert replicated(moto)[new]["snapd.io/backup"] == name


def test_problems_reach_the_logs_once(moto: MotoWorld, ec2sim: Ec2Simulator) -> None:
    """A corrupt backup is one `discovery.error` line, a backup without its tarball one
    `discovery.warning` line (its snapshot still copied, its PVC from the source snapshot's
    tags), each once however many cycles run; only the corrupt one counts as unreadable;
    an interrupted upload never counts as an AWS error."""
    ec2sim.copy_duration = 0.1
    bucket = VeleroBucket(BUCKET, region=SRC, endpoint_url=moto.url)
    day = [NOW - timedelta(days=n) for n in (3, 2, 1)]
    corrupt, tarless, good = (f"daily-{d:%Y%m%d%H%M%S}" for d in day)
    for backup, start in zip((corrupt, tarless, good), day, strict=True):
        # v1.12: no volumeinfo, so without the tarball only the snapshot's tags name the PVC.
        bucket.backup(backup, schedule="daily", version="1.12", volumes=[DB], start=start)
    bucket.invalid_json(corrupt)
    bucket.remove(tarless, TARBALL)
    bucket.logs_only(f"daily-{NOW - timedelta(days=9):%Y%m%d}020031")
    env = settings_env(moto, SNAPD_SYNC_INTERVAL="0.3s", SNAPD_UPLOAD_GRACE="1s")
    with running(env) as daemon:
        wait_cycles(daemon, 5)
        scrape = daemon.scrape()
        assert daemon.stop() == 0, daemon.stderr

    errors = warnings_logged(daemon, "error")
    assert sorted(e["backup"] for e in errors) == sorted([corrupt, bucket_logs_only(bucket)])
    assert all(e["level"] == "warning" and e["reason"] for e in errors)
    (warning,) = warnings_logged(daemon, "warning")
    assert warning["backup"] == tarless
    assert warning["reason"].startswith(f"{tarless}.tar.gz is missing; its 1 snapshot(s)")
    (tarless_id,) = bucket.backups[tarless].snapshot_ids
    copy = replicated(moto)[tarless_id]
    assert (copy["snapd.io/namespace"], copy["snapd.io/pvc"]) == ("shop", "db")
    assert scrape.value("snapd_velero_backups_unreadable") == 2
    assert scrape.series("snapd_aws_errors_total") == {}

    plan = run_snapd("sync", "--dry-run", "-o", "json", env={**env, "SNAPD_LOG_FORMAT": "json"})
    assert plan.code == 0, plan.stderr
    document = json.loads(plan.stdout)
    assert [(w["backup"], w["source_snapshot_id"]) for w in document["warnings"]] == [
        (tarless, None)
    ]
    assert {e["backup"] for e in document["errors"]} == {corrupt, bucket_logs_only(bucket)}
    logged = [json.loads(line) for line in plan.stderr.splitlines() if line.startswith("{")]
    assert sum(1 for e in logged if e.get("event") == "discovery.warning") == 1

    status = run_snapd("status", "-o", "json", env=env)
    assert status.code == 0, status.stderr
    report = json.loads(status.stdout)
    assert [w["backup"] for w in report["warnings"]] == [tarless]
    assert report["unreadable_backups"] == 2


def bucket_logs_only(bucket: VeleroBucket) -> str:
    """The one folder of `bucket` that has no velero-backup.json."""
    folders = {key.split("/")[1] for key in bucket.files}
    (name,) = folders - set(bucket.backups)
    return name
