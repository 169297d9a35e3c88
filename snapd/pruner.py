"""Deleting replicas: exactly the plan's prunes, under the safety rules, nothing else.

Safety, in order (docs/contract.md#safety-rules, "Prune guard" and "Prune scope"):
- Only replicas the inventory found with `OwnerIds=self` and our scope tag reach a plan, and
  each is checked again here against the scope before its DeleteSnapshot.
- Cleanup (replicas in `error`, duplicates of one source) is always done.
- Retention prunes are held back as a whole when the plan tripped the guard, unless forced;
  that is counted (`snapd_prunes_total{result="held_back"}`), logged, and makes `sync` exit 1.
- `InvalidSnapshot.NotFound` counts as done; `InvalidSnapshot.InUse` (an AMI uses it) is
  reported and not retried in this pass; one failed delete never stops the others.
- A deletion refused because the snapshot is locked (someone locked it, or locks could not
  be read) is reported as locked — never counted as deleted, not a failure.
The caller never prunes after a failed bucket listing or inventory (no plan exists then).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog

from snapd.aws import AwsClients
from snapd.errors import AwsError
from snapd.fanout import each_bounded
from snapd.metrics import Metrics
from snapd.models import Plan, PruneAction

log = structlog.get_logger("snapd.pruner")

#: DeleteSnapshot refills at 5/s; a few at once is plenty.
DELETE_CONCURRENCY = 4


@dataclass
class PruneReport:
    """What one prune pass did."""

    deleted: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    held_back: int = 0
    #: DeleteSnapshot refused because someone locked the snapshot: not deleted, not a fault
    #: of ours; pruned by a later pass once the lock expires.
    locked: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.held_back


async def prune(
    aws: AwsClients,
    plan: Plan,
    *,
    scope: str,
    region: str,
    force: bool = False,
    metrics: Metrics | None = None,
) -> PruneReport:
    """Delete the plan's prunes; hold back the retention ones if the guard tripped."""
    metrics = metrics or Metrics()
    report = PruneReport()
    actions = list(plan.cleanup_prunes)
    retention = plan.retention_prunes
    if plan.guard_tripped and not force:
        report.held_back = len(retention)
        metrics.prunes.labels(result="held_back").inc(len(retention))
        log.error(
            "prune.held_back",
            would_delete=len(retention),
            completed_replicas=plan.completed_replicas,
            hint="more than prune_max_fraction of the completed replicas would go; "
            "check the retention settings and Velero, then run `snapd sync --force`",
        )
    else:
        actions.extend(retention)

    async def one(action: PruneAction) -> None:
        await _delete(
            aws, action=action, scope=scope, region=region, report=report, metrics=metrics
        )

    await each_bounded(actions, one, limit=DELETE_CONCURRENCY)
    return report


async def _delete(
    aws: AwsClients,
    *,
    action: PruneAction,
    scope: str,
    region: str,
    report: PruneReport,
    metrics: Metrics,
) -> None:
    replica = action.replica
    context = {
        "snapshot_id": replica.snapshot_id,
        "source_snapshot_id": replica.source_snapshot_id,
        "backup": replica.backup,
        "namespace": replica.volume.namespace,
        "pvc": replica.volume.pvc,
        "kind": action.kind.value,
    }
    if replica.scope != scope or replica.region != region:
        report.failed[replica.snapshot_id] = "not in our scope; refused"
        log.error("prune.refused", **context, scope=replica.scope)
        return
    try:
        await aws.call("ec2", region, "DeleteSnapshot", SnapshotId=replica.snapshot_id)
    except AwsError as error:
        if error.code == "InvalidSnapshot.NotFound":
            log.info("prune.already_gone", **context)
        elif is_lock_refusal(error):
            report.locked[replica.snapshot_id] = f"{error.code}: {error.message}"
            metrics.prunes.labels(result="locked").inc()
            log.warning("prune.locked", **context, code=error.code, error=error.message)
            return
        else:
            report.failed[replica.snapshot_id] = f"{error.code}: {error.message}"
            metrics.prunes.labels(result="failed").inc()
            log.error("prune.failed", **context, code=error.code, error=error.message)
            return
    report.deleted.append(replica.snapshot_id)
    metrics.prunes.labels(result="deleted").inc()
    log.info("prune.deleted", **context, reason=action.reason)


#: The error DeleteSnapshot answers for a snapshot under an unexpired lock.
SNAPSHOT_LOCKED = "SnapshotLocked"


def is_lock_refusal(error: AwsError) -> bool:
    """Whether DeleteSnapshot was refused because of a snapshot lock."""
    return error.code == SNAPSHOT_LOCKED or (
        error.code in ("IncorrectState", "OperationNotPermitted", "UnauthorizedOperation")
        and "locked" in error.message.lower()
    )
