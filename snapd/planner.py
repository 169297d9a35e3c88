"""plan(): what to copy, what to prune, what to leave — pure, so every rule is table-tested.

No I/O, no clock (`now` is passed in), no logging. The rules are "Retention", "Prune guard"
and "Idempotent and crash-safe" in docs/contract.md#safety-rules:

- A source snapshot is copied when it is `completed` in the source region and has no
  completed or pending replica (nor a copy already queued in this process).
- Retention is keyed by (namespace, PVC) across schedules. A completed replica is pruned
  when its backup time is older than `max_age` *and* at least `keep_last` newer replicas of
  its PVC are already completed: a planned or pending copy never stands in for a completed
  one, so a PVC never loses its last good copy to a copy that later fails.
- The newest source snapshot of a PVC is always copied, however old. Any other snapshot
  that retention would prune as soon as the copies planned with it complete is not copied.
- Identity. A replica's volume is (namespace, PVC), else its PV, else its source volume id
  (`models.volume_key`); a replica whose volume cannot be identified is never aged out and
  never counts as a newer restore point of anything. A backup time later than `now` plus
  `CLOCK_SKEW` is reported (`warnings`) and never counts as protection: such a replica is
  neither aged out nor counted, such a source is copied but never outranks real ones.
- Duplicates (two replicas of one restore point, after a retried call) and replicas in
  `error` are cleanup: pruned, never held back by the guard. Duplicates agree on source
  snapshot, backup, namespace, PVC and backup time (`Replica.identity`); replicas that share
  a source id but disagree on the rest are all kept and reported.
- A replica under an unexpired snapshot lock is never pruned: its deletion moves to `kept`
  (reason `locked until <RFC3339>`) and is not counted by the guard (locking.py).
- The guard: if the retention prunes exceed `prune_max_fraction` of the scope's completed
  replicas, `guard_tripped` is set and the pruner holds the retention pass back.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime, timedelta
from itertools import zip_longest

from snapd.config import format_duration
from snapd.locking import hold_locked
from snapd.models import (
    CopyAction,
    Discovery,
    DiscoveryError,
    Plan,
    Policy,
    PruneAction,
    PruneKind,
    Replica,
    Skip,
    SourceSnapshot,
)

VolumeKey = tuple[str, str]

#: How far a backup time may lie ahead of our clock and still count (clocks drift apart).
CLOCK_SKEW = timedelta(minutes=10)


def in_future(moment: datetime | None, now: datetime) -> bool:
    """Whether a backup time lies beyond `now` plus `CLOCK_SKEW`: it protects nothing yet."""
    return moment is not None and moment > now + CLOCK_SKEW


MISSING_REASON = "source snapshot no longer exists in the source region"
#: The region part of a zone name: `eu-west-1` of `eu-west-1a` (or of `us-west-2-lax-1a`).
_ZONE_REGION = re.compile(r"^([a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d{1,2})(?=[a-z]|-)")


def plan(
    discovery: Discovery,
    replicas: Sequence[Replica],
    policy: Policy,
    now: datetime,
    *,
    in_progress: Collection[str] = (),
    copier_owned: Collection[str] = (),
    destination_region: str = "the destination region",
    source_region: str | None = None,
) -> Plan:
    """The whole plan of one cycle; see the module docstring for the rules.

    `in_progress` are source ids queued or pending in this process's copier (never planned
    again); `copier_owned` are replica ids the copier is watching — never pruned here, since
    the copier settles them itself (a copy ending in `error` is its to delete and retry).
    """
    live, cleanup, conflicts = split_cleanup(replicas)
    cleanup = [p for p in cleanup if p.replica.snapshot_id not in copier_owned]
    covered = {r.source_snapshot_id for r in live if r.source_snapshot_id} | set(in_progress)
    sources = unique_sources(discovery.snapshots)
    candidates, source_skips = copy_candidates(sources, covered, source_region)
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
        warnings=(*discovery.warnings, *future_warnings(sources, live, now), *conflicts),
        completed_replicas=completed,
        guard_tripped=tripped,
        kept=(*kept_cleanup, *kept_retention),
    )


def split_cleanup(
    replicas: Iterable[Replica],
) -> tuple[list[Replica], list[PruneAction], list[DiscoveryError]]:
    """Replicas worth keeping, cleanup prunes for `error` replicas and duplicates, and
    warnings for replicas that claim one source but disagree on what it is.

    Duplicates share `Replica.identity` (source, backup, namespace, PVC, backup time): a
    source id tag alone, edited by hand, must never turn another volume's only replica into
    a "duplicate". Of several duplicates the best is kept: completed over pending, then the
    oldest (its incremental chain is the one AWS already knows), then the smallest id.
    """
    cleanup: list[PruneAction] = []
    by_identity: dict[tuple[object, ...], list[Replica]] = defaultdict(list)
    live: list[Replica] = []
    for replica in replicas:
        identity = replica.identity
        if replica.state == "error":
            message = replica.state_message or "no StateMessage"
            cleanup.append(PruneAction(replica, PruneKind.ERROR, f"copy ended in error: {message}"))
        elif identity is not None:
            by_identity[identity].append(replica)
        else:
            live.append(replica)
    for group in by_identity.values():
        if len(group) == 1:  # the rule case: nothing to choose between, nothing to sort
            live.append(group[0])
            continue
        best, *others = sorted(group, key=_keep_order)
        live.append(best)
        cleanup.extend(
            PruneAction(r, PruneKind.DUPLICATE, f"duplicate of {best.snapshot_id}") for r in others
        )
    return live, cleanup, _conflicting_claims(live)


def _conflicting_claims(live: Iterable[Replica]) -> list[DiscoveryError]:
    """One warning per source id that kept replicas claim with different identities."""
    by_source: dict[str, list[Replica]] = defaultdict(list)
    for replica in live:
        if replica.source_snapshot_id:
            by_source[replica.source_snapshot_id].append(replica)
    warnings = []
    # A conflict takes two: the rest (nearly all) are dropped before sorting.
    conflicts = sorted((s, group) for s, group in by_source.items() if len(group) >= 2)
    for source_id, group in conflicts:
        ids = ", ".join(sorted(r.snapshot_id for r in group))
        warnings.append(
            DiscoveryError(
                group[0].backup or "-",
                f"replicas {ids} all claim source {source_id} but disagree on backup, "
                "namespace, PVC or backup time (a tag edited or removed by hand?): none is "
                "deleted as a duplicate; check their snapd.io/* tags",
                source_id,
            )
        )
    return warnings


def future_warnings(
    sources: Iterable[SourceSnapshot], live: Iterable[Replica], now: datetime
) -> list[DiscoveryError]:
    """One warning per backup whose time lies in the future: it protects nothing yet."""
    seen: dict[str, tuple[datetime, list[str]]] = {}
    for source in sources:
        if in_future(source.backup_time, now):
            seen.setdefault(source.backup, (source.backup_time, []))
    for replica in live:
        if replica.backup_time is not None and in_future(replica.backup_time, now):
            backup = replica.backup or "-"
            seen.setdefault(backup, (replica.backup_time, []))[1].append(replica.snapshot_id)
    warnings = []
    for backup, (moment, replica_ids) in sorted(seen.items()):
        held = f"; replicas {', '.join(sorted(replica_ids))}" if replica_ids else ""
        warnings.append(
            DiscoveryError(
                backup,
                f"backup time {moment.isoformat()} is in the future (a clock or an edited "
                f"velero-backup.json or snapd.io/backup-time tag){held}: its snapshots are "
                "copied and kept, but count as a restore point only from that time",
            )
        )
    return warnings


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
    sources: Iterable[SourceSnapshot], covered: Collection[str], source_region: str | None = None
) -> tuple[list[SourceSnapshot], list[Skip]]:
    """Sources without a replica that can be copied now, and skips for those that cannot."""
    uncovered = [s for s in sources if s.snapshot_id not in covered]
    missing_reason = source_region_hint(uncovered, source_region) or MISSING_REASON
    candidates: list[SourceSnapshot] = []
    skips: list[Skip] = []
    for source in uncovered:
        if source.state == "missing":
            reason = missing_reason
        elif source.state not in (None, "completed"):
            reason = f"source snapshot is {source.state}; it is copied once completed"
        else:
            candidates.append(source)
            continue
        skips.append(Skip(source.backup, reason, source.snapshot_id))
    return candidates, skips


def region_of_zone(zone: str | None) -> str | None:
    """`eu-west-1` for `eu-west-1a`; None for anything that is not a zone name."""
    match = _ZONE_REGION.match(zone or "")
    return match.group(1) if match else None


def source_region_hint(sources: Sequence[SourceSnapshot], source_region: str | None) -> str | None:
    """Why most sources are missing, when Velero's files say: they live in another region.

    A wrong `source_region` makes EC2 answer "no such snapshot" for every source, which
    alone reads like snapshots Velero deleted. When more than half of `sources` (the ones
    EC2 was asked about) are missing and Velero recorded zones of another region for them,
    the reason names that region and the setting to fix. None when that is not the case.
    """
    missing = [s for s in sources if s.state == "missing"]
    if not source_region or not missing or len(missing) * 2 <= len(sources):
        return None
    elsewhere = sorted(
        {
            region
            for s in missing
            if (region := region_of_zone(s.volume.availability_zone)) and region != source_region
        }
    )
    if not elsewhere:
        return None
    return (
        f"source snapshot not found in {source_region}, and Velero's files put the volumes "
        f"of most missing snapshots in {', '.join(elsewhere)}: check source_region "
        f"(SNAPD_SOURCE_REGION, --source-region)"
    )


def choose_copies(
    sources: Sequence[SourceSnapshot],
    candidates: Sequence[SourceSnapshot],
    live: Sequence[Replica],
    policy: Policy,
    now: datetime,
) -> tuple[list[CopyAction], list[Skip]]:
    """Copies worth making: the newest source of each PVC always, others unless doomed."""
    if not candidates:  # a steady cycle: nothing to choose, so nothing to count
        return [], []
    newest = newest_source_per_volume(sources, now)
    restore_points: dict[VolumeKey, list[datetime]] = defaultdict(list)
    for replica in live:
        key, moment = replica.volume_key, replica.backup_time
        if key is None or moment is None or in_future(moment, now):
            continue  # counts as no one's restore point (module docstring, "Identity")
        if replica.completed or replica.pending:
            restore_points[key].append(moment)
    cutoff = now - policy.max_age
    copies: list[CopyAction] = []
    skips: list[Skip] = []
    for source in sorted(candidates, key=lambda s: s.backup_time, reverse=True):
        key = source.volume_key
        if key is None or in_future(source.backup_time, now):
            copies.append(CopyAction(source, _uncounted_reason(key is None)))
            continue
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


def _uncounted_reason(unidentified: bool) -> str:
    if unidentified:
        return (
            "missing in {dest}; its volume is unknown (no namespace/PVC, PV or volume id), "
            "so retention never ages its replica out"
        )
    return (
        "missing in {dest}; its backup time is in the future, so its replica counts as a "
        "restore point only from then"
    )


def _doomed_reason(policy: Policy, newer: int) -> str:
    return (
        f"older than retention ({format_duration(policy.max_age)}) with {newer} newer "
        "restore point(s) of its volume: it would be pruned as soon as copied"
    )


def newest_source_per_volume(
    sources: Iterable[SourceSnapshot], now: datetime
) -> dict[VolumeKey, str]:
    """Snapshot id of the newest source snapshot of each identified volume (ties: larger
    id); a backup time in the future never makes a source the newest."""
    newest: dict[VolumeKey, SourceSnapshot] = {}
    for source in sources:
        key = source.volume_key
        if key is None or in_future(source.backup_time, now):
            continue
        best = newest.get(key)
        if best is None or (source.backup_time, source.snapshot_id) > (
            best.backup_time,
            best.snapshot_id,
        ):
            newest[key] = source
    return {key: s.snapshot_id for key, s in newest.items()}


def retention_prunes(live: Sequence[Replica], policy: Policy, now: datetime) -> list[PruneAction]:
    """Completed replicas past `max_age` with `keep_last` newer completed ones of their PVC.

    A replica that cannot be judged is never aged out and never counted as newer: its
    backup time tag unreadable or in the future, or its volume unidentified.
    """
    cutoff = now - policy.max_age
    by_volume: dict[VolumeKey, list[tuple[datetime, Replica]]] = defaultdict(list)
    for replica in live:
        key, moment = replica.volume_key, replica.backup_time
        if replica.completed and key is not None and moment and not in_future(moment, now):
            by_volume[key].append((moment, replica))
    prunes: list[PruneAction] = []
    for (namespace, pvc), group in sorted(by_volume.items()):
        if all(moment >= cutoff for moment, _ in group):
            continue  # none past its age: nothing of this volume to prune, no need to rank
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
        # An unidentified volume gets a lane of its own (a PV name never holds ":").
        lane = copy.source.volume_key or ("", f"unidentified:{copy.source.snapshot_id}")
        by_volume[lane].append(copy)
    lanes = [
        sorted(group, key=lambda c: (c.source.backup_time, c.source.snapshot_id))
        for _, group in sorted(by_volume.items())
    ]
    return [copy for row in zip_longest(*lanes) for copy in row if copy is not None]


def recovery_points(replicas: Iterable[Replica], now: datetime) -> dict[tuple[str, str], float]:
    """Backup time (Unix seconds) of the newest completed replica per (namespace, PVC).

    A backup time in the future (`in_future`) is no recovery point: it would read
    as fresh and silence `SnapdRecoveryPointTooOld`; the plan's `warnings` name it.
    """
    points: dict[tuple[str, str], float] = {}
    for replica in replicas:
        if not (replica.completed and replica.volume.pvc and replica.backup_time):
            continue
        if in_future(replica.backup_time, now):
            continue
        key = (replica.volume.namespace or "", replica.volume.pvc)
        points[key] = max(points.get(key, 0.0), replica.backup_time.timestamp())
    return points
