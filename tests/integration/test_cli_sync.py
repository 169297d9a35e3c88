"""The real `snapd` CLI, as a subprocess, against moto + the EC2 simulator + a Velero bucket."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from simworld.ec2sim import Ec2Simulator
from simworld.moto_server import MotoWorld
from simworld.velero_bucket import CSI, NATIVE, TARBALL, VeleroBucket, Volume
from snapd import tags
from snapd.aws import AwsClients
from snapd.config import Settings
from snapd.service import Engine
from tests.integration.cli import SNAPD, run_snapd

SRC, DST, BUCKET = "eu-west-1", "eu-central-1", "velero-test"
NOW = datetime.now(UTC).replace(microsecond=0)
CONTRACT_COPY_KEYS = {
    "source_snapshot_id",
    "backup",
    "schedule",
    "backup_time",
    "namespace",
    "pvc",
    "pv",
    "reason",
}


def settings_env(moto: MotoWorld, **extra: str) -> dict[str, str]:
    return {
        **moto.env(),
        "SNAPD_VELERO_BUCKET": BUCKET,
        "SNAPD_SCHEDULES": "daily",
        "SNAPD_SOURCE_REGION": SRC,
        "SNAPD_DESTINATION_REGION": DST,
        "SNAPD_POLL_INTERVAL": "0.1",
        "SNAPD_LOG_FORMAT": "json",
        **extra,
    }


VOLUMES = [
    Volume("shop", "db", 20, f"{SRC}a", NATIVE, "gp3"),
    Volume("shop", "cache", 5, f"{SRC}b", CSI, "gp3"),
]


def seed(moto: MotoWorld, days: int = 3, start_days_ago: int = 1) -> VeleroBucket:
    """`days` daily backups of two PVCs (native and CSI), newest `start_days_ago` days ago."""
    bucket = VeleroBucket(BUCKET, region=SRC, endpoint_url=moto.url)
    volumes = VOLUMES
    for day in range(start_days_ago + days - 1, start_days_ago - 1, -1):
        start = NOW - timedelta(days=day)
        bucket.backup(
            f"daily-{start:%Y%m%d%H%M%S}",
            schedule="daily",
            volumes=volumes,
            start=start,
            version="1.14",
        )
    return bucket


def expected_ids(bucket: VeleroBucket) -> set[str]:
    return {sid for b in bucket.backups.values() for sid in b.snapshot_ids}


def replicas(moto: MotoWorld, region: str = DST) -> list[dict[str, object]]:
    ec2 = boto3.client("ec2", region_name=region, endpoint_url=moto.url)
    return list(ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"])


def tag_map(snapshot: dict[str, object]) -> dict[str, str]:
    return tags.from_tag_list(snapshot.get("Tags"))  # type: ignore[arg-type]


def test_dry_run_json_plans_every_snapshot_and_changes_nothing(
    moto: MotoWorld, ec2sim: Ec2Simulator
) -> None:
    """`sync --dry-run -o json` prints the contract's object and makes no EC2 change."""
    bucket = seed(moto)
    result = run_snapd("sync", "--dry-run", "-o", "json", env=settings_env(moto))
    assert result.code == 0, result.stderr
    plan = json.loads(result.stdout)
    assert set(plan) >= {"copy", "prune", "skipped", "errors"}
    assert {c["source_snapshot_id"] for c in plan["copy"]} == expected_ids(bucket)
    assert all(set(c) >= CONTRACT_COPY_KEYS for c in plan["copy"])
    assert ec2sim.calls["CopySnapshot"] == 0
    assert replicas(moto) == []


def test_sync_copies_everything_then_nothing(moto: MotoWorld, ec2sim: Ec2Simulator) -> None:
    """A first sync copies every snapshot with exact tags; a second copies nothing."""
    ec2sim.copy_duration = 0.3
    bucket = seed(moto)
    first = run_snapd("sync", env=settings_env(moto))
    assert first.code == 0, first.stderr
    made = replicas(moto)
    assert {tag_map(s)[tags.SOURCE_SNAPSHOT_ID] for s in made} == expected_ids(bucket)
    assert all(s["State"] == "completed" for s in made)
    for snapshot in made:
        t = tag_map(snapshot)
        assert t[tags.CLUSTER] == BUCKET
        assert t[tags.SCHEDULE] == "daily"
        assert t[tags.AVAILABILITY_ZONE] in (f"{SRC}a", f"{SRC}b")
        assert t[tags.NAMESPACE] == "shop"
    copies = ec2sim.calls["CopySnapshot"]
    second = run_snapd("sync", env=settings_env(moto))
    assert second.code == 0, second.stderr
    assert ec2sim.calls["CopySnapshot"] == copies
    assert len(replicas(moto)) == len(made)


def test_list_json_contract(moto: MotoWorld, ec2sim: Ec2Simulator) -> None:
    """`snapd list -o json` reads the replicas from tags alone, with the contract's keys."""
    ec2sim.copy_duration = 0.1
    seed(moto, days=1)
    assert run_snapd("sync", env=settings_env(moto)).code == 0
    env = {**moto.env(), "SNAPD_CLUSTER": BUCKET, "SNAPD_DESTINATION_REGION": DST}
    result = run_snapd("list", "-o", "json", env=env)
    assert result.code == 0, result.stderr
    items = json.loads(result.stdout)
    assert len(items) == 2
    for item in items:
        assert isinstance(item["size_gib"], int)
        assert isinstance(item["progress"], int)
        assert isinstance(item["encrypted"], bool)
        assert item["state"] == "completed"
        assert item["availability_zone"]
    table = run_snapd("list", "--pvc", "db", env=env)
    assert "shop" in table.stdout
    assert "cache" not in table.stdout


def test_kill_nine_mid_copy_then_rerun(moto: MotoWorld, ec2sim: Ec2Simulator) -> None:
    """`kill -9` of `snapd sync` while copies are pending, then a rerun: no duplicate copy,
    nothing lost — the pending copies are adopted."""
    ec2sim.copy_duration = 3.0
    bucket = seed(moto)
    process = subprocess.Popen(
        [SNAPD, "sync"],
        env={**os.environ, **settings_env(moto)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while ec2sim.pending_count(DST) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    assert ec2sim.pending_count(DST) >= 2
    ec2sim.copy_duration = 0.2
    rerun = run_snapd("sync", env=settings_env(moto))
    assert rerun.code == 0, rerun.stderr
    made = replicas(moto)
    sources = [tag_map(s)[tags.SOURCE_SNAPSHOT_ID] for s in made]
    assert sorted(sources) == sorted(expected_ids(bucket))  # each exactly once
    assert all(s["State"] == "completed" for s in made)


def test_prune_guard_when_velero_stopped(moto: MotoWorld, ec2sim: Ec2Simulator) -> None:
    """Velero stopped producing backups longer ago than the max age: the guard holds the
    mass prune back (exit 1, says --force); --force prunes but keeps the newest per PVC."""
    ec2sim.copy_duration = 0.1
    seed(moto, days=4, start_days_ago=40)
    env = settings_env(moto, SNAPD_RETENTION_MAX_AGE="30d", SNAPD_RETENTION_KEEP_LAST="1")
    # Copy first with a long max age so every backup is copied.
    assert run_snapd("sync", env={**env, "SNAPD_RETENTION_MAX_AGE": "90d"}).code == 0
    assert len(replicas(moto)) == 8
    held = run_snapd("sync", env=env)
    assert held.code == 1
    assert "--force" in held.stdout + held.stderr
    assert len(replicas(moto)) == 8
    forced = run_snapd("sync", "--force", env=env)
    assert forced.code == 0, forced.stderr
    left = replicas(moto)
    assert len(left) == 2
    newest = max(b for b in {tag_map(s)[tags.BACKUP_TIME] for s in left})
    assert {tag_map(s)[tags.BACKUP_TIME] for s in left} == {newest}


def test_other_scopes_and_untagged_snapshots_untouched(
    moto: MotoWorld, ec2sim: Ec2Simulator
) -> None:
    """Replicas of another scope, and snapshots without snapd tags, are never deleted."""
    ec2sim.copy_duration = 0.1
    foreign_old = (NOW - timedelta(days=400)).strftime("%Y-%m-%dT%H:%M:%SZ")
    other = ec2sim.add_snapshot(
        DST,
        tags={
            tags.CLUSTER: "other-cluster",
            tags.PVC: "db",
            tags.NAMESPACE: "shop",
            tags.BACKUP_TIME: foreign_old,
            tags.SOURCE_SNAPSHOT_ID: "snap-1",
        },
    )
    plain = ec2sim.add_snapshot(DST, tags={"team": "data"})
    seed(moto, days=1)
    result = run_snapd("sync", "--force", env=settings_env(moto, SNAPD_RETENTION_MAX_AGE="1d"))
    assert result.code == 0, result.stderr
    ids = {s["SnapshotId"] for s in replicas(moto)}
    assert {other, plain} <= ids


def test_failed_copies_retried_counted_and_exit_1(moto: MotoWorld, ec2sim: Ec2Simulator) -> None:
    """A source whose copies always end in `error` is retried SNAPD_COPY_RETRIES times, the
    others complete, and sync exits 1 naming it."""
    ec2sim.copy_duration = 0.1
    bucket = seed(moto, days=1)
    broken = next(iter(expected_ids(bucket)))
    ec2sim.fail_copies(broken, times=100)
    result = run_snapd("sync", env=settings_env(moto, SNAPD_COPY_RETRIES="2"))
    assert result.code == 1
    assert broken in result.stdout
    assert ec2sim.calls["CopySnapshot"] == 3  # 2 tries of the broken one, 1 of the other
    states = [(tag_map(s)[tags.SOURCE_SNAPSHOT_ID], s["State"]) for s in replicas(moto)]
    assert states == [(next(iter(expected_ids(bucket) - {broken})), "completed")]


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"SNAPD_SCHEDULES": "daily"}, "velero_bucket"),
        (
            {"SNAPD_VELERO_BUCKET": "bkt", "SNAPD_SCHEDULES": "daily", "SNAPD_MAX_IN_FLIGHT": "50"},
            "max_in_flight",
        ),
    ],
    ids=["missing-bucket", "limit-too-high"],
)
def test_configuration_errors_exit_2(moto: MotoWorld, env: dict[str, str], needle: str) -> None:
    """A missing or bad setting exits 2 with one line naming it, before any AWS call."""
    full = {**moto.env(), "SNAPD_SOURCE_REGION": SRC, "SNAPD_DESTINATION_REGION": DST, **env}
    result = run_snapd("sync", "--dry-run", env=full)
    assert result.code == 2
    assert needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_sigterm_drains_and_exits_zero(moto: MotoWorld, ec2sim: Ec2Simulator) -> None:
    """SIGTERM to `snapd run` stops new work, drains within the drain timeout (no
    `service.drain_timed_out`) and exits 0; the copies left pending are adopted by the next
    run, never copied twice."""
    ec2sim.copy_duration = 2.0
    bucket = seed(moto)
    env = settings_env(
        moto, SNAPD_METRICS_PORT="0", SNAPD_DRAIN_TIMEOUT="5s", SNAPD_MAX_IN_FLIGHT="2"
    )
    code, err = interrupt_while_copying(ec2sim, "run", env=env, signum=signal.SIGTERM, timeout=20)
    assert code == 0, err
    events = [json.loads(line).get("event") for line in err.splitlines() if line.startswith("{")]
    assert "service.draining" in events, err
    assert "service.drain_timed_out" not in events, err
    assert events.index("service.draining") < events.index("service.stopped")
    ec2sim.copy_duration = 0.1
    assert run_snapd("sync", env=settings_env(moto)).code == 0
    sources = [tag_map(s)[tags.SOURCE_SNAPSHOT_ID] for s in replicas(moto)]
    assert sorted(sources) == sorted(expected_ids(bucket))


def test_adopted_copy_that_fails_is_copied_again(moto: MotoWorld, ec2sim: Ec2Simulator) -> None:
    """A copy left pending by a crashed run that then ends in `error` is deleted, and the
    same `snapd sync` plans and copies its source again."""
    ec2sim.copy_duration = 0.1
    bucket = seed(moto, days=1)
    source = sorted(expected_ids(bucket))[0]
    orphan = ec2sim.add_snapshot(
        DST,
        tags={
            tags.CLUSTER: BUCKET,
            tags.SOURCE_SNAPSHOT_ID: source,
            tags.PVC: "db",
            tags.NAMESPACE: "shop",
            tags.BACKUP: "b",
        },
        pending_for=0.5,
        ends_in_error="Given key ID is not accessible",
    )
    result = run_snapd("sync", env=settings_env(moto))
    assert result.code == 0, result.stderr
    made = replicas(moto)
    assert orphan not in {s["SnapshotId"] for s in made}
    assert sorted(tag_map(s)[tags.SOURCE_SNAPSHOT_ID] for s in made) == sorted(expected_ids(bucket))
    assert all(s["State"] == "completed" for s in made)


def test_run_with_busy_metrics_port_exits_2(moto: MotoWorld) -> None:
    """`snapd run` on a port already taken says which setting to change and exits 2."""
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))  # noqa: S104 - the same address snapd binds
        taken.listen()
        port = taken.getsockname()[1]
        result = run_snapd("run", env=settings_env(moto, SNAPD_METRICS_PORT=str(port)), timeout=60)
    assert result.code == 2
    assert "metrics_port" in result.stderr


def test_no_prune_when_the_bucket_cannot_be_listed(moto: MotoWorld, ec2sim: Ec2Simulator) -> None:
    """A bucket that cannot be listed fails the cycle (exit 1, says why) and nothing is
    pruned, however old the replicas, even with --force."""
    old = (NOW - timedelta(days=400)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for i in range(3):
        ec2sim.add_snapshot(
            DST,
            tags={
                tags.CLUSTER: "missing-bucket",
                tags.PVC: "db",
                tags.NAMESPACE: "shop",
                tags.BACKUP_TIME: old,
                tags.SOURCE_SNAPSHOT_ID: f"snap-{i:017x}",
            },
        )
    env = settings_env(moto, SNAPD_VELERO_BUCKET="missing-bucket")
    result = run_snapd("sync", "--force", env=env)
    assert result.code == 1
    assert "NoSuchBucket" in result.stderr
    assert len(replicas(moto)) == 3


async def test_warm_cycle_asks_ec2_nothing_about_replicated_sources(
    moto: MotoWorld, ec2sim: Ec2Simulator
) -> None:
    """Once every source has a replica, a cycle costs one S3 listing and one inventory page:
    no GET, no DescribeSnapshots of sources, no DescribeVolumes."""
    ec2sim.copy_duration = 0.1
    seed(moto, days=3)
    assert run_snapd("sync", env=settings_env(moto)).code == 0
    settings = Settings(
        velero_bucket=BUCKET, schedules=["daily"], source_region=SRC, destination_region=DST
    )
    async with AwsClients() as aws:
        engine = Engine(settings, aws)
        await engine.cycle()  # cold: reads the bucket once
        aws.calls.clear()
        warm = await engine.cycle()
    assert warm.plan.copies == ()
    assert dict(aws.calls) == {"ListObjectsV2": 1, "DescribeSnapshots": 1}


def interrupt_while_copying(
    ec2sim: Ec2Simulator, command: str, *, env: dict[str, str], signum: int, timeout: float
) -> tuple[int, str]:
    """Start `snapd COMMAND`, send it `signum` once two copies are pending (bounded wait),
    and return its exit code and stderr (it must exit within `timeout` seconds)."""
    process = subprocess.Popen(
        [SNAPD, command],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while ec2sim.pending_count(DST) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    if ec2sim.pending_count(DST) < 2:
        process.kill()
        _, err = process.communicate(timeout=30)
        raise AssertionError(f"snapd {command} started no two copies within 60 s:\n{err}")
    process.send_signal(signum)
    _, err = process.communicate(timeout=timeout)
    return process.returncode, err


class S3Gets:
    """Every S3 GetObject the moto server answers, by path; tarballs refused (AccessDenied).

    A WSGI wrapper around the moto server of this process. A refused read is never cached
    by snapd's bucket reader (it is read again next cycle), so every backup of the bucket
    stays uncacheable: what a pass reads, it reads from S3.
    """

    DENIED = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
        b"<Message>Access Denied</Message></Error>"
    )

    def __init__(self) -> None:
        self.keys: Counter[str] = Counter()
        self._lock = threading.Lock()

    @contextmanager
    def recording(self) -> Iterator[S3Gets]:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication

        original = DomainDispatcherApplication.__call__
        gets = self

        def counted(app: Any, environ: dict[str, Any], start_response: Any) -> Any:
            query = str(environ.get("QUERY_STRING", ""))
            path = str(environ.get("PATH_INFO", ""))
            s3 = "/s3/aws4_request" in str(environ.get("HTTP_AUTHORIZATION", ""))
            if s3 and environ.get("REQUEST_METHOD") == "GET" and "list-type" not in query:
                with gets._lock:
                    gets.keys[path] += 1
                if path.endswith(TARBALL):
                    start_response("403 Forbidden", [("Content-Type", "application/xml")])
                    return [gets.DENIED]
            return original(app, environ, start_response)

        DomainDispatcherApplication.__call__ = counted  # type: ignore[method-assign,assignment]
        try:
            yield self
        finally:
            DomainDispatcherApplication.__call__ = original  # type: ignore[method-assign]


def test_sync_reads_each_backup_file_once(moto: MotoWorld, ec2sim: Ec2Simulator) -> None:
    """`snapd sync` plans its prune pass from the bucket as its first pass read it: where no
    backup can be cached (S3 refuses every tarball), each file is fetched once, not once per
    pass — and the prune pass still plans from the replicas the copies left."""
    ec2sim.copy_duration = 0.2
    bucket = seed(moto, days=4, start_days_ago=40)
    env = settings_env(moto, SNAPD_RETENTION_KEEP_LAST="1")
    assert run_snapd("sync", env={**env, "SNAPD_RETENTION_MAX_AGE": "90d"}).code == 0
    assert len(replicas(moto)) == 8
    newest = f"daily-{NOW:%Y%m%d%H%M%S}"
    bucket.backup(newest, schedule="daily", volumes=VOLUMES, start=NOW, version="1.14")
    # Past 30 days a replica goes once a newer one of its PVC is completed: the 40-day-old
    # pair only once today's copies complete, so the prune pass must see those copies.
    with S3Gets().recording() as gets:
        result = run_snapd("sync", "--force", env={**env, "SNAPD_RETENTION_MAX_AGE": "30d"})
    assert result.code == 0, result.stderr
    tarballs = {k for k in gets.keys if k.endswith(TARBALL)}
    assert len(tarballs) == len(bucket.backups) == 5  # read (and refused) in the first pass
    assert len(gets.keys) >= 3 * len(bucket.backups)  # velero-backup.json, snapshot files
    assert {k: n for k, n in gets.keys.items() if n > 1} == {}
    left = replicas(moto)
    assert {tag_map(s)[tags.BACKUP] for s in left} == {newest}
    assert len(left) == 2
