"""Time-based copies: every replication copy promises a completion time, and a broken
promise is counted, logged and shown by `snapd status`.

moto drops CompletionDurationMinutes; the EC2 simulator records it and reports it back in
DescribeSnapshots (`TransferType`, `CompletionDurationMinutes`) as AWS does.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from structlog.testing import capture_logs

from simworld.ec2sim import Ec2Simulator
from simworld.moto_server import MotoWorld
from snapd import inventory, tags
from snapd.aws import AwsClients
from snapd.metrics import Metrics
from tests.integration.cli import run_snapd
from tests.integration.test_cli_sync import (
    BUCKET,
    DST,
    SRC,
    expected_ids,
    replicas,
    seed,
    settings_env,
)
from tests.integration.test_copier import SCOPE, make_copier, seed_sources

# botocore attempts per call for the shared `aws` fixture (tests/conftest.py).
pytestmark = pytest.mark.aws_max_attempts(4)


def test_sync_makes_every_copy_time_based(moto: MotoWorld, ec2sim: Ec2Simulator) -> None:
    """SNAPD_COPY_COMPLETION_DURATION=1h30m: every CopySnapshot asks for 90 minutes."""
    ec2sim.copy_duration = 0.2
    bucket = seed(moto, days=2)
    result = run_snapd("sync", env=settings_env(moto, SNAPD_COPY_COMPLETION_DURATION="1h30m"))
    assert result.code == 0, result.stderr
    made = replicas(moto)
    assert len(made) == len(expected_ids(bucket))
    assert ec2sim.completion_minutes == {s["SnapshotId"]: 90 for s in made}
    assert {s["TransferType"] for s in made} == {"time-based"}


def test_without_the_setting_copies_are_standard(moto: MotoWorld, ec2sim: Ec2Simulator) -> None:
    """Unset: standard copies, no CompletionDurationMinutes sent (AWS's default, no cost)."""
    ec2sim.copy_duration = 0.2
    seed(moto, days=1)
    result = run_snapd("sync", env=settings_env(moto))
    assert result.code == 0, result.stderr
    assert ec2sim.completion_minutes == {}
    assert {s["TransferType"] for s in replicas(moto)} == {"standard"}


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("10m", id="below-15m"),
        pytest.param("20m", id="not-a-15m-step"),
        pytest.param("49h", id="over-48h"),
        pytest.param("0", id="zero"),
        pytest.param("soon", id="not-a-duration"),
    ],
)
def test_bad_completion_duration_exits_2_before_any_copy(
    moto: MotoWorld, ec2sim: Ec2Simulator, value: str
) -> None:
    """A value EC2 would refuse is exit 2 with one line naming the setting; nothing copied."""
    seed(moto, days=1)
    result = run_snapd("sync", env=settings_env(moto, SNAPD_COPY_COMPLETION_DURATION=value))
    assert result.code == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "SNAPD_COPY_COMPLETION_DURATION" in lines[0]
    assert "duration" in lines[0] or "15 minutes" in lines[0]
    assert ec2sim.calls["CopySnapshot"] == 0


def seed_overdue_copy(moto: MotoWorld, ec2sim: Ec2Simulator) -> tuple[str, str]:
    """A time-based copy an earlier process started an hour ago with a 15-minute promise,
    still pending; returns (replica id, source id)."""
    bucket = seed(moto, days=1)
    backup = next(iter(bucket.backups.values()))
    source_id = sorted(backup.snapshot_ids)[0]
    copy_tags = {
        tags.CLUSTER: BUCKET,
        tags.SOURCE_SNAPSHOT_ID: source_id,
        tags.SOURCE_REGION: SRC,
        tags.BACKUP: backup.name,
        tags.SCHEDULE: "daily",
        tags.NAMESPACE: "shop",
        tags.PVC: "db",
    }
    replica_id = ec2sim.add_snapshot(
        DST, tags=copy_tags, pending_for=3600, completion_minutes=15, started_ago=3600
    )
    return replica_id, source_id


def test_status_shows_copies_past_their_promise(moto: MotoWorld, ec2sim: Ec2Simulator) -> None:
    """`snapd status` lists a pending time-based copy whose promised time has passed."""
    replica_id, source_id = seed_overdue_copy(moto, ec2sim)
    env = settings_env(moto, SNAPD_COPY_COMPLETION_DURATION="15m")
    result = run_snapd("status", "-o", "json", env=env)
    assert result.code == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["copy_completion_duration"] == "15m"
    [late] = status["overdue_copies"]
    assert late["snapshot_id"] == replica_id
    assert late["source_snapshot_id"] == source_id
    assert late["completion_minutes"] == 15
    assert (late["namespace"], late["pvc"]) == ("shop", "db")
    assert late["overdue_seconds"] >= 40 * 60, "promised 45 minutes ago"
    text = run_snapd("status", env=env)
    assert text.code == 0, text.stderr
    assert "time-based copies: 15m   overdue: 1" in text.stdout
    assert replica_id in text.stdout


def test_status_without_time_based_copies_lists_none(moto: MotoWorld, ec2sim: Ec2Simulator) -> None:
    """Off and nothing overdue: `overdue_copies` is empty and the text says nothing of it."""
    seed(moto, days=1)
    env = settings_env(moto)
    status = json.loads(run_snapd("status", "-o", "json", env=env).stdout)
    assert status["copy_completion_duration"] is None
    assert status["overdue_copies"] == []
    assert "time-based" not in run_snapd("status", env=env).stdout


async def test_copier_counts_a_broken_promise_once(aws: AwsClients, ec2sim: Ec2Simulator) -> None:
    """A copy polled pending past its promise is counted and logged once, however often
    it is polled, and only once its promised time has passed."""
    (source,) = seed_sources(ec2sim, 1)
    metrics = Metrics()
    now = [datetime.now(UTC)]
    copier = make_copier(aws, metrics, completion_minutes=30, wall_clock=lambda: now[0])
    ec2sim.copy_durations[source.snapshot_id] = 3600.0
    replica_id = await copier.start_copy(source)
    assert ec2sim.completion_minutes == {replica_id: 30}
    [replica] = await inventory.list_replicas(aws, DST, SCOPE)
    assert replica.completion_minutes == 30
    copier.adopt([replica])
    with capture_logs() as logs:
        await copier.poll_once()
        assert metrics.copies_overdue._value.get() == 0, "within its promise"
        now[0] += timedelta(minutes=31)
        for _ in range(3):
            await copier.poll_once()
    assert metrics.copies_overdue._value.get() == 1
    overdue = [e for e in logs if e["event"] == "copy.overdue"]
    assert len(overdue) == 1
    assert overdue[0]["snapshot_id"] == replica_id
    assert overdue[0]["completion_minutes"] == 30
    assert replica_id in copier.active, "AWS keeps copying: the copy is still tracked"


def test_replica_listing_reads_the_promise(moto: MotoWorld, ec2sim: Ec2Simulator) -> None:
    """`snapd list -o json` still works with time-based replicas in the region."""
    replica_id, _ = seed_overdue_copy(moto, ec2sim)
    ec2 = boto3.client("ec2", region_name=DST, endpoint_url=moto.url)
    [snapshot] = ec2.describe_snapshots(SnapshotIds=[replica_id])["Snapshots"]
    replica = inventory.build_replica_from_ec2(snapshot, DST)
    assert replica.completion_minutes == 15
    assert replica.overdue(datetime.now(UTC))
    assert not replica.overdue(snapshot["StartTime"] + timedelta(minutes=14))
