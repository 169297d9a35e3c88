"""Which replicas to lock, until when, and which deletions a lock holds back — pure.

No I/O, no clock (`now` is passed in), no logging; `locks.py` does the AWS calls. The rules
(docs/immutable-replicas.md):

- The replica a plan keeps for its source — completed, not a duplicate, not an `error` copy,
  not about to be pruned — is locked until `backup time + retention max age + margin`, and
  never for less than AWS's minimum of a day from now. A pending copy is never locked: AWS
  counts a lock from completion anyway, and a copy that may still fail stays simple to clean.
- A replica retention keeps past its age (the newest `keep_last` of a PVC, or one without a
  readable backup time) never loses its lock: when less than `margin` remains, the lock is
  extended to `now + 2 × margin`.
- A lock shorter than the replica's retention (set by someone else, or before max age grew)
  is extended to the retention's end.
- Any planned deletion of a replica under an unexpired lock moves to the plan's `kept`, with
  the reason `locked until <RFC3339>`: snapd never calls DeleteSnapshot on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from snapd.models import KeptAction, Plan, Policy, PruneAction, Replica
from snapd.tags import format_time

#: AWS refuses a lock shorter than a day; the extra hour covers the request's own travel.
MIN_LOCK = timedelta(days=1, hours=1)
#: A lock ending this little before its target is left alone (clock skew, rounding).
TOLERANCE = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class LockPolicy:
    """The lock settings, lifted out of `Settings` so the decisions stay pure."""

    mode: str = "off"
    margin: timedelta = timedelta(days=1)
    cool_off_hours: int | None = None

    @property
    def enabled(self) -> bool:
        return self.mode != "off"


@dataclass(frozen=True, slots=True)
class LockAction:
    """Lock (or extend the lock of) one replica until `expires`."""

    replica: Replica
    expires: datetime
    mode: str
    extend: bool
    reason: str


def hold_locked(prunes: Iterable[PruneAction]) -> tuple[list[PruneAction], list[KeptAction]]:
    """Split planned deletions into those that will be attempted and those a lock keeps."""
    attempted: list[PruneAction] = []
    kept: list[KeptAction] = []
    for action in prunes:
        replica = action.replica
        if replica.locked:
            until = format_time(replica.lock_expires) if replica.lock_expires else "unknown"
            kept.append(KeptAction(replica, action.kind, f"locked until {until}"))
        else:
            attempted.append(action)
    return attempted, kept


def to_lock(replicas: Sequence[Replica], plan: Plan) -> list[Replica]:
    """Completed replicas the plan keeps: every one but those pruned, or kept only by a lock.

    Duplicates and `error` copies are in the plan's prunes (or `kept`, when someone else
    locked them), so they never appear here; neither do pending copies.
    """
    leaving = {p.replica.snapshot_id for p in plan.prunes} | {
        k.replica.snapshot_id for k in plan.kept
    }
    return [r for r in replicas if r.completed and r.snapshot_id not in leaving]


def lock_actions(
    replicas: Sequence[Replica],
    plan: Plan,
    policy: Policy,
    locks: LockPolicy,
    now: datetime,
) -> list[LockAction]:
    """The LockSnapshot calls one pass makes: new locks, then extensions; none when off."""
    if not locks.enabled:
        return []
    actions: list[LockAction] = []
    for replica in to_lock(replicas, plan):
        action = _action_for(replica, policy, locks, now)
        if action is not None:
            actions.append(action)
    return actions


def _action_for(
    replica: Replica, policy: Policy, locks: LockPolicy, now: datetime
) -> LockAction | None:
    floor = now + MIN_LOCK
    retention_end = replica.backup_time + policy.max_age if replica.backup_time else None
    past_age = retention_end is None or retention_end <= now
    wanted: datetime = (
        now + 2 * locks.margin
        if past_age or retention_end is None
        else retention_end + locks.margin
    )
    target = max(floor, wanted)
    if not replica.locked or replica.lock_expires is None:
        why = "kept past its age" if past_age else "retention keeps it"
        return LockAction(replica, target, locks.mode, False, f"not locked; {why}")
    mode = "compliance" if replica.lock_state != "governance" else locks.mode
    remaining = replica.lock_expires - now
    if past_age and remaining < locks.margin:
        return LockAction(
            replica, target, mode, True, "kept past its age; lock ends within the margin"
        )
    if not past_age and replica.lock_expires < target - TOLERANCE:
        return LockAction(replica, target, mode, True, "lock ends before retention does")
    return None


def unlocked(replicas: Sequence[Replica], plan: Plan) -> list[Replica]:
    """Replicas that should be locked and are not (what `snapd_replicas_unlocked` counts)."""
    return [r for r in to_lock(replicas, plan) if not r.locked]
