"""locks.py against the simulator: batched lock look-ups, and the Recycle Bin verdict."""

from __future__ import annotations

import dataclasses
import math
from datetime import timedelta

import pytest
import structlog

from simworld.ec2sim import Ec2Simulator
from snapd import tags
from snapd.aws import AwsClients
from snapd.inventory import list_replicas
from snapd.locks import (
    LOCK_PAGE,
    LockInfo,
    LockMemo,
    RecycleBinWatch,
    read_locks,
    rule_covers,
    with_locks,
)
from snapd.metrics import Metrics
from snapd.models import Replica

DST = "eu-central-1"
SCOPE = "velero-bucket"


# botocore attempts per call for the shared `aws` fixture (tests/conftest.py).
pytestmark = pytest.mark.aws_max_attempts(1)


async def test_locks_are_read_in_pages_never_one_call_per_replica(
    ec2sim: Ec2Simulator, aws: AwsClients
) -> None:
    """2,100 replicas, 1,500 of them locked: ⌈2100/1000⌉ = 3 calls, every lock found."""
    ids = [ec2sim.add_snapshot(DST) for _ in range(2100)]
    for sid in ids[:1500]:
        ec2sim.put_lock(DST, sid, mode="compliance", days=3)
    ec2sim.put_lock(DST, ec2sim.add_snapshot(DST), days=3)  # not ours to ask about
    found = await read_locks(aws, DST, ids)
    assert set(found) == set(ids[:1500])
    assert {info.state for info in found.values()} == {"compliance"}
    assert ec2sim.calls["DescribeLockedSnapshots"] <= math.ceil(len(ids) / LOCK_PAGE) + 1


async def test_no_ids_no_call(ec2sim: Ec2Simulator, aws: AwsClients) -> None:
    assert await read_locks(aws, DST, []) == {}
    assert ec2sim.calls["DescribeLockedSnapshots"] == 0


@pytest.mark.parametrize(
    ("rule", "covers"),
    [
        ({"ResourceTags": [], "Status": "available"}, True),
        ({"ResourceTags": [{"ResourceTagKey": tags.CLUSTER, "ResourceTagValue": SCOPE}]}, True),
        ({"ResourceTags": [{"ResourceTagKey": tags.CLUSTER, "ResourceTagValue": "other"}]}, False),
        ({"ResourceTags": [{"ResourceTagKey": "team", "ResourceTagValue": "x"}]}, False),
        ({"ResourceTags": [], "ExcludeResourceTags": [{"ResourceTagKey": tags.CLUSTER}]}, False),
        ({"ResourceTags": [], "Status": "pending"}, False),
        ({"ResourceTags": [], "ResourceType": "EC2_IMAGE"}, False),
    ],
)
def test_which_rules_cover_our_replicas(rule: dict[str, object], covers: bool) -> None:
    assert rule_covers(rule, SCOPE) is covers


async def test_recycle_bin_gauge_is_1_0_or_minus_1_and_failure_logged_once(
    ec2sim: Ec2Simulator, aws: AwsClients
) -> None:
    metrics = Metrics()
    watch = RecycleBinWatch(aws, DST, SCOPE, metrics)
    assert await watch.check() is False
    assert metrics.recycle_bin_protected._value.get() == 0
    ec2sim.add_recycle_bin_rule(DST, resource_tags={"team": "x"})
    assert await watch.check() is False
    ec2sim.add_recycle_bin_rule(DST, resource_tags={tags.CLUSTER: SCOPE})
    assert await watch.check() is True
    assert metrics.recycle_bin_protected._value.get() == 1
    ec2sim.rbin.faults.extend([("ListRules", "AccessDeniedException", 403)] * 2)
    with structlog.testing.capture_logs() as logs:
        assert await watch.check() is None
        assert await watch.check() is None
    assert metrics.recycle_bin_protected._value.get() == -1
    assert [entry["event"] for entry in logs] == ["recycle_bin.unknown"]
    assert await watch.check() is True


async def test_a_lock_memo_sees_a_lock_extended_between_passes(
    ec2sim: Ec2Simulator, aws: AwsClients
) -> None:
    """A daemon's lock reads (`repeated`, `LockMemo`): an unchanged page hands back the very
    locks and locked replicas of the pass before; a lock extended in between is read anew
    and the replica carries its new expiry, as a read without the memo gives it."""
    ids = [ec2sim.add_snapshot(DST, tags={tags.CLUSTER: SCOPE}) for _ in range(3)]
    for sid in ids:
        ec2sim.put_lock(DST, sid, days=3)
    replicas = await list_replicas(aws, DST, SCOPE)
    memo = LockMemo()
    first = with_locks(replicas, await read_locks(aws, DST, ids, repeated=True), memo)
    second = with_locks(replicas, await read_locks(aws, DST, ids, repeated=True), memo)
    assert aws.parsers.remembered["DescribeLockedSnapshotsResult"] == 1
    assert all(a is b for a, b in zip(first, second, strict=True))

    ec2sim.put_lock(DST, ids[1], days=30)
    third = with_locks(replicas, await read_locks(aws, DST, ids, repeated=True), memo)
    assert third == with_locks(replicas, await read_locks(aws, DST, ids))
    before = {r.snapshot_id: r.lock_expires for r in first}
    after = {r.snapshot_id: r.lock_expires for r in third}
    assert after[ids[1]] > before[ids[1]] + timedelta(days=20)  # type: ignore[operator]
    assert after[ids[0]] == before[ids[0]]


def test_a_lock_memo_pairs_a_new_replica_record_anew() -> None:
    """The same lock on a replica record rebuilt (its tags changed): the locked replica is
    made from the new record, never the one paired before."""
    memo = LockMemo()
    info = LockInfo("governance", None)
    old = Replica("snap-1", DST, "completed", 100, SCOPE, "snap-s", backup="b1")
    assert memo.locked(old, info).backup == "b1"
    memo.end_pairing()
    new = dataclasses.replace(old, backup="b2")
    assert memo.locked(new, info).backup == "b2"
