"""locking: which replicas get locked and until when; which deletions a lock holds back."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from snapd.locking import MIN_LOCK, LockPolicy, lock_actions, unlocked
from snapd.models import Discovery, Policy, PruneKind, Replica, Volume
from snapd.planner import plan

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
POLICY = Policy(max_age=timedelta(days=30), keep_last=1, prune_max_fraction=1.0)
COMPLIANCE = LockPolicy(mode="compliance", margin=timedelta(days=1))


def rep(
    rid: str,
    age_days: float,
    *,
    source: str | None = None,
    pvc: str = "data",
    state: str = "completed",
    lock: str | None = None,
    lock_left: timedelta | None = None,
    start: datetime | None = None,
) -> Replica:
    return Replica(
        snapshot_id=rid,
        region="eu-central-1",
        state=state,
        progress=100,
        scope="bucket",
        source_snapshot_id=source or f"snap-src-{rid}",
        backup=f"daily-{source or rid}",
        backup_time=NOW - timedelta(days=age_days),
        volume=Volume(namespace="app", pvc=pvc),
        lock_state=lock,
        lock_expires=NOW + lock_left if lock_left is not None else None,
        start_time=start,
    )


def actions(
    replicas: list[Replica], locks: LockPolicy = COMPLIANCE
) -> dict[str, tuple[datetime, bool]]:
    the_plan = plan(Discovery(snapshots=()), replicas, POLICY, NOW)
    return {
        a.replica.snapshot_id: (a.expires, a.extend)
        for a in lock_actions(replicas, the_plan, POLICY, locks, NOW)
    }


def test_kept_replica_is_locked_until_backup_plus_max_age_plus_margin() -> None:
    replica = rep("r1", age_days=3)
    assert actions([replica]) == {"r1": (NOW - timedelta(days=3) + timedelta(days=31), False)}


def test_lock_is_at_least_a_day_from_now() -> None:
    """A replica near its age gets AWS's minimum, never a lock that ends too soon to be valid."""
    assert actions([rep("r1", age_days=29.99)]) == {"r1": (NOW + MIN_LOCK, False)}


def test_nothing_happens_with_locking_off() -> None:
    assert actions([rep("r1", age_days=3)], LockPolicy(mode="off")) == {}


def test_pending_error_duplicate_and_pruned_replicas_are_never_locked() -> None:
    early = NOW - timedelta(hours=5)
    replicas = [
        rep("pending", 1, state="pending"),
        rep("error", 1, state="error"),
        rep("best", 2, source="snap-x", start=early),
        rep("dupe", 2, source="snap-x", start=NOW),
        rep("old", 40),  # pruned by retention: "best" is newer and completed
    ]
    assert set(actions(replicas)) == {"best"}


def test_keep_last_past_its_age_is_extended_only_when_the_margin_runs_short() -> None:
    lone_short = rep("short", age_days=60, lock="compliance", lock_left=timedelta(hours=20))
    assert actions([lone_short]) == {"short": (NOW + timedelta(days=2), True)}
    lone_long = rep("long", age_days=60, lock="compliance", lock_left=timedelta(days=1, hours=2))
    assert actions([lone_long]) == {}


def test_a_lock_shorter_than_retention_is_extended() -> None:
    replica = rep("r1", age_days=3, lock="governance", lock_left=timedelta(days=2))
    assert actions([replica]) == {"r1": (NOW - timedelta(days=3) + timedelta(days=31), True)}


def test_an_expired_lock_is_replaced() -> None:
    replica = rep("r1", age_days=3, lock="expired", lock_left=-timedelta(days=1))
    assert actions([replica]) == {"r1": (NOW - timedelta(days=3) + timedelta(days=31), False)}


@pytest.mark.parametrize("state", ["governance", "compliance-cooloff", "compliance"])
def test_locked_replica_past_age_is_kept_with_reason_and_not_counted_by_the_guard(
    state: str,
) -> None:
    old = rep("old", age_days=40, lock=state, lock_left=timedelta(hours=5))
    new = rep("new", age_days=1)
    the_plan = plan(Discovery(snapshots=()), [old, new], Policy(prune_max_fraction=0.1), NOW)
    assert the_plan.prunes == ()
    assert not the_plan.guard_tripped
    [kept] = the_plan.kept
    assert kept.replica.snapshot_id == "old"
    assert kept.kind is PruneKind.RETENTION
    assert kept.reason == "locked until 2026-11-23T17:00:00Z"


def test_expired_lock_does_not_keep_a_replica() -> None:
    old = rep("old", age_days=40, lock="expired", lock_left=-timedelta(hours=5))
    the_plan = plan(Discovery(snapshots=()), [old, rep("new", 1)], POLICY, NOW)
    assert [p.replica.snapshot_id for p in the_plan.prunes] == ["old"]
    assert the_plan.kept == ()


def test_a_duplicate_someone_locked_is_kept_not_deleted() -> None:
    early = NOW - timedelta(hours=5)
    best = rep("best", 2, source="snap-x", start=early)
    dupe = rep(
        "dupe", 2, source="snap-x", start=NOW, lock="governance", lock_left=timedelta(days=3)
    )
    the_plan = plan(Discovery(snapshots=()), [best, dupe], POLICY, NOW)
    assert the_plan.prunes == ()
    assert [(k.replica.snapshot_id, k.kind) for k in the_plan.kept] == [
        ("dupe", PruneKind.DUPLICATE)
    ]


def test_unlocked_counts_only_replicas_due_a_lock() -> None:
    replicas = [
        rep("locked", 2, lock="compliance", lock_left=timedelta(days=30)),
        rep("bare", 3, pvc="other"),
        rep("pending", 0, state="pending", pvc="third"),
    ]
    the_plan = plan(Discovery(snapshots=()), replicas, POLICY, NOW)
    assert [r.snapshot_id for r in unlocked(replicas, the_plan)] == ["bare"]


def test_extension_keeps_compliance_mode_even_when_governance_is_configured() -> None:
    replica = rep("r1", age_days=60, lock="compliance", lock_left=timedelta(hours=3))
    the_plan = plan(Discovery(snapshots=()), [replica], POLICY, NOW)
    governance = dataclasses.replace(COMPLIANCE, mode="governance")
    [action] = lock_actions([replica], the_plan, POLICY, governance, NOW)
    assert action.mode == "compliance"
    assert action.extend
