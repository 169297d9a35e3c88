"""The simulator's EBS snapshot lock and Recycle Bin, seen by a plain boto3 client over HTTP.

These pin the rules the EC2 API reference documents for LockSnapshot, UnlockSnapshot and
DescribeLockedSnapshots, DeleteSnapshot's refusal under a lock, and the `rbin` endpoint
that moto's server cannot route by itself.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from simworld.ec2sim import Ec2Simulator
from simworld.snapshot_lock import LOCK_STATE_CODE, SNAPSHOT_LOCKED_CODE

DST = "eu-central-1"
NO_RETRY = Config(retries={"mode": "standard", "total_max_attempts": 1})


@pytest.fixture
def ec2(ec2sim: Ec2Simulator) -> Any:
    return boto3.client("ec2", region_name=DST, config=NO_RETRY)


@pytest.fixture
def rbin(ec2sim: Ec2Simulator) -> Any:
    return boto3.client("rbin", region_name=DST, config=NO_RETRY)


def code_of(error: pytest.ExceptionInfo[ClientError]) -> str:
    return str(error.value.response["Error"]["Code"])


def test_a_governance_lock_blocks_delete_until_unlocked(ec2sim: Ec2Simulator, ec2: Any) -> None:
    sid = ec2sim.add_snapshot(DST)
    answer = ec2.lock_snapshot(SnapshotId=sid, LockMode="governance", LockDuration=3)
    assert answer["LockState"] == "governance"
    assert answer["LockDuration"] == 3
    with pytest.raises(ClientError) as refused:
        ec2.delete_snapshot(SnapshotId=sid)
    assert code_of(refused) == SNAPSHOT_LOCKED_CODE
    assert sid in refused.value.response["Error"]["Message"]
    ec2.unlock_snapshot(SnapshotId=sid)
    ec2.delete_snapshot(SnapshotId=sid)
    assert ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"] == []


def test_governance_allows_any_change_including_shorter_and_to_compliance(
    ec2sim: Ec2Simulator, ec2: Any
) -> None:
    sid = ec2sim.add_snapshot(DST)
    ec2.lock_snapshot(SnapshotId=sid, LockMode="governance", LockDuration=10)
    shorter = ec2.lock_snapshot(SnapshotId=sid, LockMode="governance", LockDuration=2)
    assert shorter["LockDuration"] == 2
    upgraded = ec2.lock_snapshot(SnapshotId=sid, LockMode="compliance", LockDuration=2)
    assert upgraded["LockState"] == "compliance"


def test_compliance_cooloff_allows_changes_and_unlock_then_compliance_only_extends(
    ec2sim: Ec2Simulator, ec2: Any
) -> None:
    sid = ec2sim.add_snapshot(DST)
    first = ec2.lock_snapshot(
        SnapshotId=sid, LockMode="compliance", LockDuration=5, CoolOffPeriod=2
    )
    assert first["LockState"] == "compliance-cooloff"
    assert first["CoolOffPeriod"] == 2
    ec2.lock_snapshot(SnapshotId=sid, LockMode="compliance", LockDuration=3, CoolOffPeriod=2)
    ec2sim.travel(timedelta(hours=3))  # the cooling-off period lapses
    state = ec2.describe_locked_snapshots(SnapshotIds=[sid])["Snapshots"][0]
    assert state["LockState"] == "compliance"
    for forbidden in (
        {"LockMode": "governance", "LockDuration": 30},
        {"LockMode": "compliance", "LockDuration": 1},
        {"LockMode": "compliance", "LockDuration": 30, "CoolOffPeriod": 1},
    ):
        with pytest.raises(ClientError) as refused:
            ec2.lock_snapshot(SnapshotId=sid, **forbidden)
        assert code_of(refused) == LOCK_STATE_CODE, forbidden
    with pytest.raises(ClientError) as unlock:
        ec2.unlock_snapshot(SnapshotId=sid)
    assert code_of(unlock) == LOCK_STATE_CODE
    extended = ec2.lock_snapshot(SnapshotId=sid, LockMode="compliance", LockDuration=30)
    assert extended["LockState"] == "compliance"
    with pytest.raises(ClientError) as refused:
        ec2.delete_snapshot(SnapshotId=sid)
    assert code_of(refused) == SNAPSHOT_LOCKED_CODE


def test_unlock_during_cooloff_works(ec2sim: Ec2Simulator, ec2: Any) -> None:
    sid = ec2sim.add_snapshot(DST)
    ec2.lock_snapshot(SnapshotId=sid, LockMode="compliance", LockDuration=5, CoolOffPeriod=1)
    ec2.unlock_snapshot(SnapshotId=sid)
    assert ec2.describe_locked_snapshots(SnapshotIds=[sid])["Snapshots"] == []
    with pytest.raises(ClientError) as again:
        ec2.unlock_snapshot(SnapshotId=sid)
    assert code_of(again) == LOCK_STATE_CODE


def test_expiry_by_date_then_expired_state_allows_delete_and_relock(
    ec2sim: Ec2Simulator, ec2: Any
) -> None:
    sid = ec2sim.add_snapshot(DST)
    until = ec2sim.wall_now() + timedelta(days=1, hours=2)
    answer = ec2.lock_snapshot(SnapshotId=sid, LockMode="compliance", ExpirationDate=until)
    assert answer["LockExpiresOn"] == until.replace(microsecond=0)
    assert "LockDuration" not in answer
    ec2sim.travel(timedelta(days=1, hours=3))
    state = ec2.describe_locked_snapshots(SnapshotIds=[sid])["Snapshots"][0]
    assert state["LockState"] == "expired"
    relocked = ec2.lock_snapshot(SnapshotId=sid, LockMode="governance", LockDuration=1)
    assert relocked["LockState"] == "governance"
    ec2.unlock_snapshot(SnapshotId=sid)
    ec2.delete_snapshot(SnapshotId=sid)


# (Out-of-range LockDuration and CoolOffPeriod never leave botocore: it checks the model's
# ranges itself, so they need no server-side test.)
@pytest.mark.parametrize(
    "params",
    [
        {"LockMode": "governance"},  # neither duration nor date
        {"LockMode": "governance", "LockDuration": 2, "ExpirationDate": datetime(2099, 1, 1)},
        {"LockMode": "governance", "LockDuration": 2, "CoolOffPeriod": 1},
        {"LockMode": "compliance", "ExpirationDate": datetime.now(UTC) + timedelta(hours=2)},
    ],
)
def test_bad_lock_requests_are_refused(ec2sim: Ec2Simulator, ec2: Any, params: Any) -> None:
    sid = ec2sim.add_snapshot(DST)
    with pytest.raises(ClientError) as refused:
        ec2.lock_snapshot(SnapshotId=sid, **params)
    assert code_of(refused) in ("InvalidParameterValue", "InvalidParameterCombination")
    assert ec2.describe_locked_snapshots()["Snapshots"] == []


def test_lock_of_unknown_or_foreign_snapshot_is_refused(ec2sim: Ec2Simulator, ec2: Any) -> None:
    with pytest.raises(ClientError) as unknown:
        ec2.lock_snapshot(
            SnapshotId="snap-00000000000000000", LockMode="governance", LockDuration=1
        )
    assert code_of(unknown) == "InvalidSnapshot.NotFound"
    foreign = ec2sim.add_snapshot(DST, owner_id="999999999999")
    with pytest.raises(ClientError) as refused:
        ec2.lock_snapshot(SnapshotId=foreign, LockMode="governance", LockDuration=1)
    assert code_of(refused) == "UnauthorizedOperation"


def test_describe_locked_snapshots_filters_and_pages(ec2sim: Ec2Simulator, ec2: Any) -> None:
    ids = [ec2sim.add_snapshot(DST) for _ in range(12)]
    unlocked = ec2sim.add_snapshot(DST)
    for sid in ids[:7]:
        ec2.lock_snapshot(SnapshotId=sid, LockMode="governance", LockDuration=3)
    for sid in ids[7:]:
        ec2.lock_snapshot(SnapshotId=sid, LockMode="compliance", LockDuration=1)
    ec2sim.travel(timedelta(days=2))  # the compliance locks of one day expire
    by_state = ec2.describe_locked_snapshots(
        Filters=[{"Name": "lock-state", "Values": ["expired"]}]
    )
    assert {s["SnapshotId"] for s in by_state["Snapshots"]} == set(ids[7:])
    seen: list[str] = []
    calls = 0
    kwargs: dict[str, Any] = {"MaxResults": 5}
    while True:
        page = ec2.describe_locked_snapshots(**kwargs)
        calls += 1
        seen.extend(s["SnapshotId"] for s in page["Snapshots"])
        if not page.get("NextToken"):
            break
        kwargs["NextToken"] = page["NextToken"]
    assert sorted(seen) == sorted(ids)
    assert calls == 3
    chosen = ec2.describe_locked_snapshots(SnapshotIds=[ids[0], unlocked, "snap-0000000000000dead"])
    assert [s["SnapshotId"] for s in chosen["Snapshots"]] == [ids[0]]
    for bad in ({"Filters": [{"Name": "owner-id", "Values": ["x"]}]},):
        with pytest.raises(ClientError) as refused:
            ec2.describe_locked_snapshots(**bad)
        assert code_of(refused) == "InvalidParameterValue"


def test_recycle_bin_rules_are_listed_and_read(ec2sim: Ec2Simulator, rbin: Any) -> None:
    assert rbin.list_rules(ResourceType="EBS_SNAPSHOT")["Rules"] == []
    region_rule = ec2sim.add_recycle_bin_rule(DST)
    tag_rule = ec2sim.add_recycle_bin_rule(DST, resource_tags={"snapd.io/cluster": "velero"})
    ec2sim.add_recycle_bin_rule(DST, resource_type="EC2_IMAGE")
    ec2sim.add_recycle_bin_rule("us-east-1")
    listed = rbin.list_rules(ResourceType="EBS_SNAPSHOT")["Rules"]
    assert {r["Identifier"] for r in listed} == {region_rule, tag_rule}
    tagged = rbin.list_rules(
        ResourceType="EBS_SNAPSHOT",
        ResourceTags=[{"ResourceTagKey": "snapd.io/cluster", "ResourceTagValue": "velero"}],
    )["Rules"]
    assert [r["Identifier"] for r in tagged] == [tag_rule]
    detail = rbin.get_rule(Identifier=tag_rule)
    assert detail["ResourceTags"] == [
        {"ResourceTagKey": "snapd.io/cluster", "ResourceTagValue": "velero"}
    ]
    assert rbin.get_rule(Identifier=region_rule)["ResourceTags"] == []
    first = rbin.list_rules(ResourceType="EBS_SNAPSHOT", MaxResults=1)
    second = rbin.list_rules(
        ResourceType="EBS_SNAPSHOT", MaxResults=1, NextToken=first["NextToken"]
    )
    assert {first["Rules"][0]["Identifier"], second["Rules"][0]["Identifier"]} == {
        region_rule,
        tag_rule,
    }
    assert "NextToken" not in second


def test_recycle_bin_errors(ec2sim: Ec2Simulator, rbin: Any) -> None:
    ec2sim.rbin.faults.append(("ListRules", "InternalServerException", 500))
    with pytest.raises(ClientError) as failed:
        rbin.list_rules(ResourceType="EBS_SNAPSHOT")
    assert code_of(failed) == "InternalServerException"
    with pytest.raises(ClientError) as missing:
        rbin.get_rule(Identifier="nope")
    assert code_of(missing) == "ResourceNotFoundException"
