"""plan(): what to copy, what to prune, what to leave — pure, so every rule is table-tested.

No I/O, no clock (`now` is passed in), no logging. The rules are DESIGN.md "Retention",
"Prune guard" and "Idempotent and crash-safe":

- A source snapshot is copied when it is `completed` in the source region and has no
  completed or pending replica (nor a copy already queued in this process).
- Retention is keyed by (namespace, PVC) across schedules. A completed replica is pruned
  when its backup time is older than `max_age` *and* at least `keep_last` newer replicas of
  its PVC are already completed: a planned or pending copy never stands in for a completed
  one, so a PVC never loses its last good copy to a copy that later fails.
- The newest source snapshot of a PVC is always copied, however old. Any other snapshot
  that retention would prune as soon as the copies planned with it complete is not copied.
- Duplicates (two replicas of one source, after a retried call) and replicas in `error`
  are cleanup: pruned, never held back by the guard.
- A replica under an unexpired snapshot lock is never pruned: its deletion moves to `kept`
  (reason `locked until <RFC3339>`) and is not counted by the guard (locking.py).
- The guard: if the retention prunes exceed `prune_max_fraction` of the scope's completed
  replicas, `guard_tripped` is set and the pruner holds the retention pass back.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from itertools import zip_longest

from snapd.config import format_duration
from snapd.locking import hold_locked
from snapd.models import (
    CopyAction,
    Discovery,
    Plan,
    Policy,
    PruneAction,
    PruneKind,
    Replica,
    Skip,
    SourceSnapshot,
)

VolumeKey = tuple[str, str]


def plan(
    discovery: Discovery,
    replicas: Sequence[Replica],
    policy: Policy,
    now: datetime,
    *,
    in_progress: Collection[str] = (),
    copier_owned: Collection[str] = (),
    destination_region: str = "the destination region",
) -> Plan:
    """The whole plan of one cycle; see the module docstring for the rules.

    `in_progress` are source ids queued or pending in this process's copier (never planned
    again); `copier_owned` are replica ids the copier is watching — never pruned here, since
    the copier settles them itself (a copy ending in `error` is its to delete and retry).
    """
    live, cleanup = split_cleanup(replicas)
    cleanup = [p for p in cleanup if p.replica.snapshot_id not in copier_owned]
    covered = {r.source_snapshot_id for r in live if r.source_snapshot_id} | set(in_progress)
    sources = unique_sources(discovery.snapshots)
    candidates, source_skips = copy_candidates(sources, covered)
    copies, retention_skips = choose_copies(sources, candidates, live, policy, now)
    copies = [CopyAction(c.source, c.reason.replace("{dest}", destination_region)) for c in copies]
    retention = retention_prunes(live, policy, now)
    # A replica under an unexpired lock is never sent to DeleteSnapshot, nor counted by the guard.
    cleanup, kept_cleanup = hold_locked(cleanup)
    retention, kept_retention = hold_locked(retention)
    completed = sum(1 for r in live if r.completed)
    tripped = bool(retention) and len(retention) > policy.prune_max_fraction * completed
    return Plan(
        copies=tuple(order_copies(copies)),
        prunes=(*cleanup, *retention),
        skipped=(*discovery.skipped, *source_skips, *retention_skips),
        errors=discovery.errors,
        completed_replicas=completed,
        guard_tripped=tripped,
        kept=(*kept_cleanup, *kept_retention),
    )


def split_cleanup(replicas: Iterable[Replica]) -> tuple[list[Replica], list[PruneAction]]:
    """Replicas worth keeping, and cleanup prunes for `error` replicas and duplicates.

    Of several replicas of one source, the best is kept: completed over pending, then the
    oldest (its incremental chain is the one AWS already knows), then the smallest id.
    """
    cleanup: list[PruneAction] = []
    by_source: dict[str, list[Replica]] = defaultdict(list)
    live: list[Replica] = []
    for replica in replicas:
        if replica.state == "error":
            message = replica.state_message or "no StateMessage"
            cleanup.append(PruneAction(replica, PruneKind.ERROR, f"copy ended in error: {message}"))
        elif replica.source_snapshot_id:
            by_source[replica.source_snapshot_id].append(replica)
        else:
            live.append(replica)
    for group in by_source.values():
        best, *others = sorted(group, key=_keep_order)
        live.append(best)
        cleanup.extend(
            PruneAction(r, PruneKind.DUPLICATE, f"duplicate of {best.snapshot_id}") for r in others
        )
    return live, cleanup


def _keep_order(replica: Replica) -> tuple[int, datetime, str]:
    start = replica.start_time or datetime.max.replace(tzinfo=None)
    return (0 if replica.completed else 1, start.replace(tzinfo=None), replica.snapshot_id)


def unique_sources(snapshots: Iterable[SourceSnapshot]) -> list[SourceSnapshot]:
    """One record per source snapshot id (the first discovery yielded)."""
    seen: dict[str, SourceSnapshot] = {}
    for snapshot in snapshots:
        seen.setdefault(snapshot.snapshot_id, snapshot)
    return list(seen.values())


def copy_candidates(
    sources: Iterable[SourceSnapshot], covered: Collection[str]
) -> tuple[list[SourceSnapshot], list[Skip]]:
    """Sources without a replica that can be copied now, and skips for those that cannot."""
    candidates: list[SourceSnapshot] = []
    skips: list[Skip] = []
    for source in sources:
        if source.snapshot_id in covered:
            continue
        if source.state == "missing":
            reason = "source snapshot no longer exists in the source region"
        elif source.state not in (None, "completed"):
            reason = f"source snapshot is {source.state}; it is copied once completed"
        else:
            candidates.append(source)
            continue
        skips.append(Skip(source.backup, reason, source.snapshot_id))
    return candidates, skips


def choose_copies(
    sources: Sequence[SourceSnapshot],
    candidates: Sequence[SourceSnapshot],
    live: Sequence[Replica],
    policy: Policy,
    now: datetime,
) -> tuple[list[CopyAction], list[Skip]]:
    """Copies worth making: the newest source of each PVC always, others unless doomed."""
    newest = newest_source_per_volume(sources)
    restore_points: dict[VolumeKey, list[datetime]] = defaultdict(list)
    for replica in live:
        if replica.backup_time and (replica.completed or replica.pending):
            restore_points[replica.volume_key].append(replica.backup_time)
    cutoff = now - policy.max_age
    copies: list[CopyAction] = []
    skips: list[Skip] = []
    for source in sorted(candidates, key=lambda s: s.backup_time, reverse=True):
        key = source.volume_key
        newer = sum(1 for t in restore_points[key] if t > source.backup_time)
        if newest.get(key) == source.snapshot_id:
            reason = "newest restore point of its volume, missing in {dest}"
        elif source.backup_time < cutoff and newer >= policy.keep_last:
            skips.append(Skip(source.backup, _doomed_reason(policy, newer), source.snapshot_id))
            continue
        else:
            reason = "missing in {dest}"
        copies.append(CopyAction(source, reason))
        restore_points[key].append(source.backup_time)
    return copies, skips


def _doomed_reason(policy: Policy, newer: int) -> str:
    return (
        f"older than retention ({format_duration(policy.max_age)}) with {newer} newer "
        "restore point(s) of its volume: it would be pruned as soon as copied"
    )


def newest_source_per_volume(sources: Iterable[SourceSnapshot]) -> dict[VolumeKey, str]:
    """Snapshot id of the newest source snapshot of each volume (ties: larger id)."""
    newest: dict[VolumeKey, SourceSnapshot] = {}
    for source in sources:
        best = newest.get(source.volume_key)
        if best is None or (source.backup_time, source.snapshot_id) > (
            best.backup_time,
            best.snapshot_id,
        ):
            newest[source.volume_key] = source
    return {key: s.snapshot_id for key, s in newest.items()}


def retention_prunes(live: Sequence[Replica], policy: Policy, now: datetime) -> list[PruneAction]:
    """Completed replicas past `max_age` with `keep_last` newer completed ones of their PVC.

    A replica whose backup time tag is unreadable is never aged out (it cannot be judged).
    """
    cutoff = now - policy.max_age
    by_volume: dict[VolumeKey, list[tuple[datetime, Replica]]] = defaultdict(list)
    for replica in live:
        if replica.completed and replica.backup_time is not None:
            by_volume[replica.volume_key].append((replica.backup_time, replica))
    prunes: list[PruneAction] = []
    for (namespace, pvc), group in sorted(by_volume.items()):
        group.sort(key=lambda item: (item[0], item[1].snapshot_id), reverse=True)
        for newer, (backup_time, replica) in enumerate(group):
            if newer >= policy.keep_last and backup_time < cutoff:
                reason = _retention_reason(policy, newer, namespace, pvc)
                prunes.append(PruneAction(replica, PruneKind.RETENTION, reason))
    return prunes


def _retention_reason(policy: Policy, newer: int, namespace: str, pvc: str) -> str:
    where = f"{namespace}/{pvc}" if namespace else pvc
    return (
        f"backup older than {format_duration(policy.max_age)}; "
        f"{newer} newer completed replica(s) of {where} kept"
    )


def order_copies(copies: Sequence[CopyAction]) -> list[CopyAction]:
    """Queue order: per volume oldest first, volumes interleaved round-robin.

    Oldest first keeps every later copy of a volume incremental in AWS (cheaper, faster);
    interleaving lets every PVC's restore points advance together instead of one volume's
    backlog starving the others. Only the order is chosen here: the copier never holds a
    free slot back waiting for a volume's previous copy.
    """
    by_volume: dict[VolumeKey, list[CopyAction]] = defaultdict(list)
    for copy in copies:
        by_volume[copy.source.volume_key].append(copy)
    lanes = [
        sorted(group, key=lambda c: (c.source.backup_time, c.source.snapshot_id))
        for _, group in sorted(by_volume.items())
    ]
    return [copy for row in zip_longest(*lanes) for copy in row if copy is not None]
