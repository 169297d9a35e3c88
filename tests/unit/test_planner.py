"""planner.plan: which snapshots get copied, which replicas get pruned, and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from snapd.models import (
    Discovery,
    Policy,
    PruneKind,
    Replica,
    Skip,
    SnapshotMethod,
    SourceSnapshot,
    Volume,
)
from snapd.planner import order_copies, plan

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
POLICY = Policy(max_age=timedelta(days=30), keep_last=1, prune_max_fraction=0.5)


def day(n: int) -> datetime:
    """Backup time n days before NOW."""
    return NOW - timedelta(days=n)


def src(
    sid: str,
    age: int,
    pvc: str | None = "data",
    ns: str | None = "app",
    state: str = "completed",
) -> SourceSnapshot:
    return SourceSnapshot(
        snapshot_id=sid,
        backup=f"daily-{sid}",
        schedule="daily",
        backup_time=day(age),
        phase="Completed",
        method=SnapshotMethod.NATIVE,
        volume=Volume(namespace=ns, pvc=pvc),
        state=state,
    )


def rep(
    rid: str,
    source: str,
    age: int,
    pvc: str | None = "data",
    ns: str | None = "app",
    state: str = "completed",
    start: datetime | None = None,
    backup: str | None = None,
) -> Replica:
    return Replica(
        snapshot_id=rid,
        region="eu-central-1",
        state=state,
        progress=100 if state == "completed" else 10,
        scope="bucket",
        source_snapshot_id=source,
        backup=backup or f"daily-{source}",
        backup_time=day(age),
        volume=Volume(namespace=ns, pvc=pvc),
        start_time=start,
    )


@dataclass
class Case:
    id: str
    sources: list[SourceSnapshot]
    replicas: list[Replica]
    copies: list[str]
    prunes: dict[str, PruneKind] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    policy: Policy = POLICY
    guard: bool = False
    in_progress: tuple[str, ...] = ()
    warnings: int = 0


CASES = [
    Case("fresh world copies everything recent", [src("s1", 1), src("s2", 2)], [], ["s2", "s1"]),
    Case("completed replica is not copied again", [src("s1", 1)], [rep("r1", "s1", 1)], []),
    Case(
        "pending replica is not copied again",
        [src("s1", 1)],
        [rep("r1", "s1", 1, state="pending")],
        [],
    ),
    Case(
        "queued in this process is not planned again", [src("s1", 1)], [], [], in_progress=("s1",)
    ),
    Case(
        "error replica is cleaned up and its source copied again",
        [src("s1", 1)],
        [rep("r1", "s1", 1, state="error")],
        ["s1"],
        prunes={"r1": PruneKind.ERROR},
    ),
    Case(
        "duplicate replicas: keep the completed one, prune the other",
        [src("s1", 1)],
        [rep("r1", "s1", 1, state="pending"), rep("r2", "s1", 1)],
        [],
        prunes={"r1": PruneKind.DUPLICATE},
    ),
    Case(
        "source not completed is skipped with its id",
        [src("s1", 1, state="pending")],
        [],
        [],
        skipped=["s1"],
    ),
    Case("deleted source is skipped", [src("s1", 1, state="missing")], [], [], skipped=["s1"]),
    Case(
        "newest source of a PVC is copied however old",
        [src("s1", 90)],
        [],
        ["s1"],
    ),
    Case(
        "old source that retention would prune at once is not copied",
        [src("s1", 40), src("s2", 1)],
        [],
        ["s2"],
        skipped=["s1"],
    ),
    Case(
        "old source is copied when keep_last needs it",
        [src("s1", 40), src("s2", 1)],
        [],
        ["s1", "s2"],
        policy=Policy(max_age=timedelta(days=30), keep_last=2),
    ),
    Case(
        "old replica pruned when a newer completed one exists",
        [],
        [rep("r1", "s1", 40), rep("r2", "s2", 1), rep("r3", "s3", 2), rep("r4", "s4", 3)],
        [],
        prunes={"r1": PruneKind.RETENTION},
    ),
    Case(
        "last completed replica is never pruned however old",
        [],
        [rep("r1", "s1", 400)],
        [],
    ),
    Case(
        "a pending newer copy does not stand in for a completed one",
        [],
        [rep("r1", "s1", 40), rep("r2", "s2", 1, state="pending")],
        [],
    ),
    Case(
        "retention keys by namespace and PVC across schedules",
        [],
        [
            rep("r1", "s1", 40, pvc="a"),
            rep("r2", "s2", 41, pvc="b"),
            rep("r3", "s3", 1, pvc="a"),
            rep("r4", "s4", 2, pvc="c"),
            rep("r5", "s5", 3, pvc="c"),
        ],
        [],
        prunes={"r1": PruneKind.RETENTION},
    ),
    Case(
        "same PVC name in two namespaces are two volumes",
        [],
        [rep("r1", "s1", 40, ns="x"), rep("r2", "s2", 1, ns="y"), rep("r3", "s3", 2, ns="y")],
        [],
    ),
    Case(
        "Velero stopped: the guard holds back a mass prune",
        [],
        [rep(f"r{i}", f"s{i}", 40 + i) for i in range(10)],
        [],
        prunes={f"r{i}": PruneKind.RETENTION for i in range(1, 10)},
        guard=True,
    ),
    # --- identity: a replica retention cannot place is never aged out, never pooled
    Case(
        "replicas without identity tags are never pooled nor aged out",
        [],
        [rep("r1", "s1", 40, pvc=None, ns=None), rep("r2", "s2", 1, pvc=None, ns=None)],
        [],
    ),
    Case(
        "an unidentified replica is no newer restore point of an unidentified source",
        [src("s1", 40, pvc=None, ns=None)],
        [rep("r2", "s2", 1, pvc=None, ns=None)],
        ["s1"],
    ),
    Case(
        "unidentified sources are each copied, none doomed by another",
        [src("s1", 40, pvc=None, ns=None), src("s2", 1, pvc=None, ns=None)],
        [],
        ["s1", "s2"],
    ),
    Case(
        "a PVC without its namespace is not pooled with same-named PVCs",
        [],
        [rep("r1", "s1", 40, ns=None), rep("r2", "s2", 1, ns=None), rep("r3", "s3", 2, ns="y")],
        [],
    ),
    # --- duplicates agree on more than the source id
    Case(
        "an edited source id does not make another volume's replica a duplicate",
        [],
        [rep("r1", "s1", 1, pvc="a"), rep("r2", "s1", 2, pvc="b", backup="daily-s2")],
        [],
        warnings=1,
    ),
    Case(
        "same source and backup but another backup time is not a duplicate",
        [],
        [rep("r1", "s1", 1), rep("r2", "s1", 3)],
        [],
        warnings=1,
    ),
    Case(
        "duplicates agree on source, backup, namespace, PVC and time",
        [],
        [rep("r1", "s1", 1, start=day(1)), rep("r2", "s1", 1, start=day(0))],
        [],
        prunes={"r2": PruneKind.DUPLICATE},
    ),
    # --- a backup time in the future protects nothing
    Case(
        "a future replica never counts as newer: the real one is kept",
        [],
        [rep("r1", "s1", 40), rep("r2", "s2", -305)],
        [],
        warnings=1,
    ),
    Case(
        "a future source is copied and never outranks the real newest",
        [src("s1", 40), src("s2", -305)],
        [],
        ["s1", "s2"],
        warnings=1,
    ),
    Case(
        "a backup time within the clock skew counts as now",
        [],
        [rep("r1", "s1", 40), rep("r2", "s2", 0)],
        [],
        prunes={"r1": PruneKind.RETENTION},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_plan(case: Case) -> None:
    """Each rule of docs/contract.md#safety-rules (Retention, Idempotent) gives its plan."""
    result = plan(
        Discovery(tuple(case.sources)),
        case.replicas,
        case.policy,
        NOW,
        in_progress=case.in_progress,
    )
    assert sorted(c.source.snapshot_id for c in result.copies) == sorted(case.copies)
    assert {p.replica.snapshot_id: p.kind for p in result.prunes} == case.prunes
    assert sorted(s.source_snapshot_id or "" for s in result.skipped) == sorted(case.skipped)
    assert result.guard_tripped is case.guard
    assert len(result.warnings) == case.warnings, result.warnings
    assert all(c.reason for c in result.copies)
    assert all(p.reason for p in result.prunes)
    assert all(s.reason for s in result.skipped)


def test_discovery_skips_and_errors_pass_through() -> None:
    """Skips and unreadable backups from discovery reach the plan unchanged."""
    from snapd.models import DiscoveryError

    discovery = Discovery(
        (), skipped=(Skip("b1", "in flight"),), errors=(DiscoveryError("b2", "bad gzip"),)
    )
    result = plan(discovery, [], POLICY, NOW)
    assert result.skipped == (Skip("b1", "in flight"),)
    assert [e.backup for e in result.errors] == ["b2"]


def test_guard_counts_only_retention() -> None:
    """Cleanup of error replicas never trips the guard, however many there are."""
    replicas = [rep(f"e{i}", f"s{i}", 1, state="error") for i in range(5)] + [rep("ok", "x", 1)]
    result = plan(Discovery(()), replicas, POLICY, NOW)
    assert len(result.cleanup_prunes) == 5
    assert not result.guard_tripped


def test_copy_order_oldest_first_per_volume_interleaved() -> None:
    """The queue is per volume oldest first, volumes interleaved round-robin."""
    sources = [
        src("a1", 3, pvc="a"),
        src("a2", 2, pvc="a"),
        src("a3", 1, pvc="a"),
        src("b1", 2, pvc="b"),
        src("b2", 1, pvc="b"),
    ]
    result = plan(Discovery(tuple(sources)), [], POLICY, NOW)
    assert [c.source.snapshot_id for c in result.copies] == ["a1", "b1", "a2", "b2", "a3"]
    assert order_copies(list(result.copies)) == list(result.copies)


def test_plan_is_deterministic() -> None:
    """The same inputs give the same plan (no hidden clock or randomness)."""
    sources = [src(f"s{i}", i) for i in range(40)]
    replicas = [rep(f"r{i}", f"s{i}", i) for i in range(0, 40, 3)]
    first = plan(Discovery(tuple(sources)), replicas, POLICY, NOW)
    second = plan(Discovery(tuple(sources)), replicas, POLICY, NOW)
    assert first == second


def test_within_skew_and_beyond() -> None:
    """Five minutes ahead is clock drift and counts; an hour ahead is reported, not counted."""
    from snapd.planner import in_future

    assert not in_future(NOW + timedelta(minutes=5), NOW)
    assert in_future(NOW + timedelta(hours=1), NOW)
    assert not in_future(None, NOW)


def test_future_and_conflict_warnings_name_backup_and_replicas() -> None:
    """The warnings say which backup, which replicas and what happens to them."""
    replicas = [rep("r1", "s1", 1, pvc="a"), rep("r2", "s1", 2, pvc="b", backup="daily-s2")]
    replicas.append(rep("r3", "s3", -30))
    result = plan(Discovery(()), replicas, POLICY, NOW)
    by_backup = {w.backup: w for w in result.warnings}
    future = by_backup["daily-s3"]
    assert "in the future" in future.error
    assert "r3" in future.error
    conflict = next(w for w in result.warnings if w.source_snapshot_id == "s1")
    assert "r1, r2" in conflict.error
    assert "none is deleted" in conflict.error
