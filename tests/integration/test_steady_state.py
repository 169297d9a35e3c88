"""The state a daemon lives in for months: every watched snapshot already has a replica.

The real `snapd run` as a subprocess against the moto server and the EC2 simulator, whose
per-region call counts show which region each request went to.
"""

from __future__ import annotations

from datetime import timedelta

from simworld.ec2sim import Ec2Simulator
from simworld.moto_server import MotoWorld
from tests.integration.cli import run_snapd
from tests.integration.daemon import running, wait_until
from tests.integration.test_cli_sync import DST, NOW, SRC, seed, settings_env
from tests.integration.test_discovery_daemon import DB, WAIT, replicated, wait_cycles


def source_calls(ec2sim: Ec2Simulator) -> dict[str, int]:
    """EC2 requests answered in the source region, by action."""
    return {action: n for (region, action), n in ec2sim.region_calls.items() if region == SRC}


def test_replicated_sources_are_never_described_again(
    moto: MotoWorld, ec2sim: Ec2Simulator
) -> None:
    """A daemon started over a bucket whose snapshots all have completed replicas asks the
    source region nothing, cycle after cycle (its prune pass included), while it lists the
    replicas every cycle; a new backup's snapshots are described — they may be copied —
    and get their replicas, and then the source region falls silent again."""
    ec2sim.copy_duration = 0.1
    bucket = seed(moto, days=3)
    synced = run_snapd("sync", env=settings_env(moto))
    assert synced.code == 0, synced.stderr
    ec2sim.region_calls.clear()
    env = settings_env(moto, SNAPD_SYNC_INTERVAL="0.3s")
    with running(env) as daemon:
        wait_cycles(daemon, 3)
        assert source_calls(ec2sim) == {}, daemon.stderr
        assert ec2sim.region_calls[DST, "DescribeSnapshots"] >= 3  # the replica inventory
        # A new backup: its two snapshots are described (once, batched) and copied.
        start = NOW - timedelta(minutes=30)
        name = f"daily-{start:%Y%m%d%H%M%S}"
        bucket.backup(name, schedule="daily", volumes=[DB], start=start)
        (new,) = bucket.backups[name].snapshot_ids
        wait_until(
            lambda: new in replicated(moto),
            timeout=WAIT,
            what="the new backup's replica",
            explain=lambda: daemon.stderr,
        )
        assert source_calls(ec2sim).get("DescribeSnapshots", 0) >= 1
        wait_cycles(daemon, 1)  # one that may still have planned before the copy completed
        ec2sim.region_calls.clear()
        wait_cycles(daemon, 3)
        assert source_calls(ec2sim) == {}, daemon.stderr
        assert daemon.stop() == 0, daemon.stderr
