"""EBS snapshot lock and Recycle Bin look-ups: the AWS half of immutable replicas.

The decisions live in `locking.py` (pure); this module reads locks in batches, applies the
LockSnapshot calls a pass decided on, and checks the Recycle Bin. Nothing here runs with
`lock_mode` off (the service does not call it), and nothing here ever unlocks: snapd's IAM
policy holds no `ec2:UnlockSnapshot`.

- Locks are read with DescribeLockedSnapshots for the scope's completed replicas, up to
  `LOCK_PAGE` ids a call (pages followed): ⌈replicas/1000⌉ calls, never one per replica.
- A failed LockSnapshot is logged and counted (`snapd_locks_total{result="failed"}`); the
  replica stays unlocked, is counted by `snapd_replicas_unlocked`, and the next pass tries
  again. It never fails a copy or a cycle.
- The Recycle Bin covers our replicas when an `available` rule for EBS snapshots is
  region-level (no resource tags) and does not exclude our scope tag, or tag-level with the
  tag `snapd.io/cluster=<scope>`. ListRules says which rules exist; GetRule gives each rule's
  tags (ListRules' summaries carry none).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from snapd import tags
from snapd.aws import AwsClients, PageMemo
from snapd.errors import AwsError
from snapd.fanout import each_bounded
from snapd.locking import LockAction, LockPolicy
from snapd.metrics import Metrics
from snapd.models import Replica

log = structlog.get_logger("snapd.locks")

#: Snapshot ids per DescribeLockedSnapshots call (AWS's page maximum).
LOCK_PAGE = 1000
#: Concurrent LockSnapshot calls (the mutating token bucket refills at 5/s).
LOCK_CONCURRENCY = 4


@dataclass(frozen=True, slots=True)
class LockInfo:
    """One snapshot's lock, as DescribeLockedSnapshots reports it."""

    state: str
    expires: datetime | None


@dataclass
class LockReport:
    """What one lock pass did."""

    locked: list[str] = field(default_factory=list)
    extended: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def chunked(values: Sequence[str], size: int = LOCK_PAGE) -> list[list[str]]:
    return [list(values[i : i + size]) for i in range(0, len(values), size)]


class LockMemo:
    """The replicas last paired with their locks, so that a warm cycle does not make them
    again: a replica that *is* the one last locked, with that very `LockInfo`, gives the
    same locked replica (`with_locks`). Identity, not equality — the inventory and the lock
    read (`read_locks(repeated=True)`) hand back the very objects of the last pass for
    what did not change, and anything that changed was built anew, and so is everything
    made from it. What a pairing does not meet again is forgotten at its end.
    """

    def __init__(self) -> None:
        self._locked: dict[str, tuple[Replica, LockInfo, Replica]] = {}
        self._next_locked: dict[str, tuple[Replica, LockInfo, Replica]] = {}

    def locked(self, replica: Replica, info: LockInfo) -> Replica:
        """`replica` with `info`'s lock, made once per (replica, lock) pair."""
        known = self._locked.get(replica.snapshot_id)
        if known is not None and known[0] is replica and known[1] is info:
            made = known[2]
        else:
            made = dataclasses.replace(replica, lock_state=info.state, lock_expires=info.expires)
        self._next_locked[replica.snapshot_id] = (replica, info, made)
        return made

    def end_pairing(self) -> None:
        """The replicas got their locks: keep the pairs made."""
        self._locked, self._next_locked = self._next_locked, {}


def lock_info(item: dict[str, Any]) -> LockInfo:
    """One DescribeLockedSnapshots record's lock."""
    expires = item.get("LockExpiresOn")
    return LockInfo(
        state=str(item.get("LockState")),
        expires=expires if isinstance(expires, datetime) else None,
    )


async def read_locks(
    aws: AwsClients, region: str, snapshot_ids: Iterable[str], *, repeated: bool = False
) -> dict[str, LockInfo]:
    """The lock of each snapshot that has one (expired ones too); unlocked ids are absent.

    `repeated` (a daemon's, reading the same locks every cycle): a page unchanged since the
    last read is not parsed, and its locks are the very `LockInfo`s of that read
    (`AwsClients.repeated_pages`), which lets `LockMemo` keep their locked replicas."""
    ids = list(dict.fromkeys(snapshot_ids))
    found: dict[str, LockInfo] = {}
    with aws.repeated_pages(f"locks:{region}") if repeated else contextlib.nullcontext() as memo:
        for batch in chunked(ids):
            await _read_batch(aws, region, batch, memo, found)
    return found


async def _read_batch(
    aws: AwsClients,
    region: str,
    batch: list[str],
    memo: PageMemo | None,
    found: dict[str, LockInfo],
) -> None:
    """One DescribeLockedSnapshots call of up to `LOCK_PAGE` ids, its pages followed."""
    token: str | None = None
    while True:
        params: dict[str, Any] = {"SnapshotIds": batch}
        if token:
            params["NextToken"] = token
        answer = await aws.call("ec2", region, "DescribeLockedSnapshots", **params)
        found.update(_page_locks(answer) if memo is None else memo.built(answer, _page_locks))
        token = answer.get("NextToken")
        if not token:
            return


def _page_locks(answer: dict[str, Any]) -> dict[str, LockInfo]:
    """One DescribeLockedSnapshots page's locks, by snapshot id."""
    return {item["SnapshotId"]: lock_info(item) for item in answer.get("Snapshots", [])}


def with_locks(
    replicas: Sequence[Replica], locks: dict[str, LockInfo], memo: LockMemo | None = None
) -> list[Replica]:
    """The replicas with `lock_state` and `lock_expires` filled in (by the `memo`, made
    once per replica and lock, when given)."""
    out: list[Replica] = []
    for replica in replicas:
        info = locks.get(replica.snapshot_id)
        if info is None:
            out.append(replica)
        elif memo is not None:
            out.append(memo.locked(replica, info))
        else:
            out.append(
                dataclasses.replace(replica, lock_state=info.state, lock_expires=info.expires)
            )
    if memo is not None:
        memo.end_pairing()
    return out


async def apply(
    aws: AwsClients,
    region: str,
    actions: Sequence[LockAction],
    locks: LockPolicy,
    metrics: Metrics,
) -> LockReport:
    """Make the pass's LockSnapshot calls, a few at once; failures are reported, not raised."""
    report = LockReport()

    async def one(action: LockAction) -> None:
        await _lock(aws, region, action, locks=locks, metrics=metrics, report=report)

    await each_bounded(actions, one, limit=LOCK_CONCURRENCY)
    return report


async def _lock(
    aws: AwsClients,
    region: str,
    action: LockAction,
    *,
    locks: LockPolicy,
    metrics: Metrics,
    report: LockReport,
) -> None:
    replica = action.replica
    params: dict[str, Any] = {
        "SnapshotId": replica.snapshot_id,
        "LockMode": action.mode,
        "ExpirationDate": action.expires,
    }
    if locks.cool_off_hours and action.mode == "compliance" and not action.extend:
        params["CoolOffPeriod"] = locks.cool_off_hours
    context = {
        "snapshot_id": replica.snapshot_id,
        "backup": replica.backup,
        "namespace": replica.volume.namespace,
        "pvc": replica.volume.pvc,
        "mode": action.mode,
        "until": tags.format_time(action.expires),
        "reason": action.reason,
    }
    try:
        await aws.call("ec2", region, "LockSnapshot", **params)
    except AwsError as error:
        report.failed[replica.snapshot_id] = f"{error.code}: {error.message}"
        metrics.locks.labels(result="failed").inc()
        log.error(
            "lock.failed",
            **context,
            code=error.code,
            error=error.message,
            hint="retried next cycle; the replica counts in snapd_replicas_unlocked",
        )
        return
    if action.extend:
        report.extended.append(replica.snapshot_id)
        metrics.locks.labels(result="extended").inc()
        log.info("lock.extended", **context)
    else:
        report.locked.append(replica.snapshot_id)
        metrics.locks.labels(result="locked").inc()
        log.info("lock.locked", **context)


# --------------------------------------------------------------------------- Recycle Bin


def _tag_pairs(items: Any) -> list[tuple[str, str | None]]:
    return [(str(t.get("ResourceTagKey")), t.get("ResourceTagValue")) for t in items or []]


def rule_covers(rule: dict[str, Any], scope: str) -> bool:
    """Whether one GetRule answer retains our replicas (tag `snapd.io/cluster=<scope>`)."""
    if rule.get("ResourceType", "EBS_SNAPSHOT") != "EBS_SNAPSHOT":
        return False
    if rule.get("Status", "available") != "available":
        return False
    ours = (tags.CLUSTER, scope)
    wanted = _tag_pairs(rule.get("ResourceTags"))
    if wanted:
        return any(key == ours[0] and value in (None, "", scope) for key, value in wanted)
    excluded = _tag_pairs(rule.get("ExcludeResourceTags"))
    return not any(key == ours[0] and value in (None, "", scope) for key, value in excluded)


async def recycle_bin_protected(aws: AwsClients, region: str, scope: str) -> bool:
    """Whether a Recycle Bin rule of `region` retains our deleted replicas; AwsError if unknown."""
    identifiers: list[str] = []
    async for page in aws.pages("rbin", region, "ListRules", ResourceType="EBS_SNAPSHOT"):
        identifiers.extend(str(rule["Identifier"]) for rule in page.get("Rules", []))
    for identifier in identifiers:
        rule = await aws.call("rbin", region, "GetRule", Identifier=identifier)
        if rule_covers(rule, scope):
            return True
    return False


class RecycleBinWatch:
    """Keeps `snapd_recycle_bin_protected` current; a failure is logged once per streak."""

    def __init__(self, aws: AwsClients, region: str, scope: str, metrics: Metrics) -> None:
        self.aws = aws
        self.region = region
        self.scope = scope
        self.metrics = metrics
        self.protected: bool | None = None
        self._failing = False

    async def check(self) -> bool | None:
        """Look again; True/False, or None when ListRules/GetRule failed (gauge -1)."""
        try:
            self.protected = await recycle_bin_protected(self.aws, self.region, self.scope)
        except AwsError as error:
            self.protected = None
            self.metrics.recycle_bin_protected.set(-1)
            if not self._failing:
                log.warning(
                    "recycle_bin.unknown",
                    code=error.code,
                    error=error.message,
                    hint="needs rbin:ListRules and rbin:GetRule; snapd_recycle_bin_protected is -1",
                )
            self._failing = True
            return None
        self._failing = False
        self.metrics.recycle_bin_protected.set(1 if self.protected else 0)
        if not self.protected:
            log.info("recycle_bin.not_protected", region=self.region, scope=self.scope)
        return self.protected
