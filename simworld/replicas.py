"""Seeding replicas: snapshots in the destination region that look exactly like snapd's copies.

`seed_replica` puts a snapshot into the moto server's EC2 backend (through the installed
`Ec2Simulator`, in this process — the server's) carrying the full tag set that the copier
writes, built by `snapd.tags.build_copy_tags` from a `SourceSnapshot`, so `inventory` reads
it back as a `Replica`. States: `completed`, `pending` (with a chosen progress, for
`pending_for` seconds), or `error` (with a StateMessage). Fast: no copy has to run.

Test-only: production modules never import this (import-linter contract).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from simworld.ec2sim import Ec2Simulator
from snapd import tags
from snapd.models import SnapshotMethod, SourceSnapshot, Volume

_PROGRESS = "_ec2sim_progress"  # the simulator's per-snapshot progress attribute


def make_source(
    backup: str,
    namespace: str,
    pvc: str,
    *,
    snapshot_id: str = "snap-0123456789abcdef0",
    schedule: str = "daily",
    backup_time: datetime | None = None,
    availability_zone: str | None = "eu-west-1b",
    volume_type: str | None = "gp3",
    iops: int | None = 4000,
    throughput: int | None = 250,
    size_gib: int = 20,
    storage_class: str | None = "gp3",
    fs_type: str | None = "xfs",
    access_modes: tuple[str, ...] = ("ReadWriteOnce",),
    volume_mode: str | None = "Filesystem",
    pv: str | None = None,
    volume_id: str | None = "vol-0aaaabbbbccccdddd",
    source_tags: dict[str, str] | None = None,
) -> SourceSnapshot:
    """A source snapshot as discovery would have found it (defaults: a gp3 volume)."""
    return SourceSnapshot(
        snapshot_id=snapshot_id,
        backup=backup,
        schedule=schedule,
        backup_time=backup_time or datetime(2024, 5, 1, 2, 0, tzinfo=UTC),
        phase="Completed",
        method=SnapshotMethod.NATIVE,
        volume=Volume(
            namespace=namespace,
            pvc=pvc,
            pv=pv or f"pvc-{namespace}-{pvc}",
            volume_id=volume_id,
            availability_zone=availability_zone,
            volume_type=volume_type,
            iops=iops,
            throughput=throughput,
            storage_class=storage_class,
            fs_type=fs_type,
            access_modes=access_modes,
            volume_mode=volume_mode,
            size_gib=size_gib,
        ),
        state="completed",
        encrypted=False,
        source_tags=tuple(sorted((source_tags or {}).items())),
    )


@dataclass(frozen=True)
class SeededReplica:
    """A replica put into the destination region, and the source it claims to copy."""

    snapshot_id: str
    region: str
    source: SourceSnapshot
    tags: dict[str, str]


def seed_replica(
    sim: Ec2Simulator,
    source: SourceSnapshot,
    *,
    scope: str,
    source_region: str,
    destination_region: str,
    state: str = "completed",
    progress: int = 0,
    pending_for: float = 3600.0,
    state_message: str = "Given key ID is not accessible",
    encrypted: bool = False,
    kms_key_id: str | None = None,
) -> SeededReplica:
    """One replica of `source` in `destination_region`, tagged exactly as the copier tags.

    `state="pending"` keeps it pending for `pending_for` seconds of the simulator's clock,
    starting `progress` percent of the way in (so DescribeSnapshots shows that progress).
    """
    copy_tags = tags.build_copy_tags(source, scope, source_region)
    snapshot_id = sim.add_snapshot(
        destination_region,
        tags=copy_tags,
        size_gib=source.volume.size_gib or 8,
        encrypted=encrypted,
        kms_key_id=kms_key_id,
        description=f"snapd copy of {source.snapshot_id} ({source.backup})",
        pending_for=pending_for if state == "pending" else None,
    )
    snapshot: Any = sim.backend(destination_region).snapshots[snapshot_id]
    if state == "pending":
        tracker = snapshot.__dict__[_PROGRESS]
        tracker.started -= pending_for * progress / 100
    elif state != "completed":
        snapshot.status = state
        snapshot.progress = f"{progress}%"
        snapshot.state_message = state_message
    return SeededReplica(snapshot_id, destination_region, source, copy_tags)
