"""The EC2 simulator, seen the way snapd sees it: aioboto3 over HTTP to the moto server."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aioboto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto.ec2.models.tags import TagBackend

from simworld.ec2sim import (
    KMS_KEY_NOT_ACCESSIBLE,
    Ec2Simulator,
    ManualClock,
    MotoMismatchError,
)
from simworld.moto_server import MotoWorld
from snapd.aws import AwsClients
from snapd.errors import PermanentError, TransientError

SRC = "eu-west-1"
DST = "eu-central-1"
OTHER_ACCOUNT = "999999999999"

#: A few botocore attempts per call, so retry tests stay short.
pytestmark = pytest.mark.aws_max_attempts(3)


@pytest.fixture
def clock(ec2sim: Ec2Simulator) -> ManualClock:
    """Simulated time: copies and volumes move only when the test advances it."""
    manual = ManualClock()
    ec2sim.clock = manual
    return manual


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore retries at once: the retries still happen, the jittered waits do not."""
    from botocore.retries.standard import ExponentialBackoff

    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.0)


@pytest.fixture
async def raw_ec2(ec2sim: Ec2Simulator) -> AsyncIterator[Any]:
    """A destination-region client that never retries, to see each answer as sent."""
    config = Config(retries={"mode": "standard", "total_max_attempts": 1})
    async with aioboto3.Session().client("ec2", region_name=DST, config=config) as client:
        yield client


def tag_spec(tags: dict[str, str], kind: str = "snapshot") -> list[dict[str, Any]]:
    return [{"ResourceType": kind, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]


async def copy(aws: AwsClients, source_id: str, tags: dict[str, str] | None = None) -> str:
    params: dict[str, Any] = {"SourceRegion": SRC, "SourceSnapshotId": source_id}
    if tags:
        params["TagSpecifications"] = tag_spec(tags)
    answer = await aws.call("ec2", DST, "CopySnapshot", **params)
    return str(answer["SnapshotId"])


async def describe(aws: AwsClients, snapshot_id: str) -> dict[str, Any]:
    answer = await aws.call("ec2", DST, "DescribeSnapshots", SnapshotIds=[snapshot_id])
    return dict(answer["Snapshots"][0])


async def ids_with_status(aws: AwsClients, status: str) -> set[str]:
    filters = [{"Name": "status", "Values": [status]}]
    answer = await aws.call("ec2", DST, "DescribeSnapshots", OwnerIds=["self"], Filters=filters)
    return {s["SnapshotId"] for s in answer["Snapshots"]}


async def test_copy_is_pending_with_rising_progress_then_completed(
    ec2sim: Ec2Simulator, clock: ManualClock, aws: AwsClients
) -> None:
    """A copy is pending with rising Progress, then completed; describe and filter agree."""
    ec2sim.copy_duration = 10.0
    replica = await copy(aws, ec2sim.add_snapshot(SRC, size_gib=20))

    first = await describe(aws, replica)
    assert (first["State"], first["Progress"]) == ("pending", "0%")
    assert first["VolumeSize"] == 20
    assert await ids_with_status(aws, "pending") == {replica}
    clock.advance(4.0)
    assert (await describe(aws, replica))["Progress"] == "40%"
    clock.advance(5.99)
    assert (await describe(aws, replica))["Progress"] == "99%"
    clock.advance(0.01)

    done = await describe(aws, replica)
    assert (done["State"], done["Progress"]) == ("completed", "100%")
    assert await ids_with_status(aws, "pending") == set()
    assert await ids_with_status(aws, "completed") == {replica}


async def test_copy_completes_in_real_time_by_default(
    ec2sim: Ec2Simulator, aws: AwsClients
) -> None:
    """With the default monotonic clock a short copy completes on its own, within bounds."""
    ec2sim.copy_duration = 0.5
    replica = await copy(aws, ec2sim.add_snapshot(SRC))
    states = [(await describe(aws, replica))["State"]]
    async with asyncio.timeout(10):
        while states[-1] != "completed":
            await asyncio.sleep(0.05)
            states.append((await describe(aws, replica))["State"])
    assert states[0] == "pending"
    assert set(states) == {"pending", "completed"}


async def test_per_source_duration_overrides_the_default(
    ec2sim: Ec2Simulator, clock: ManualClock, aws: AwsClients
) -> None:
    """`copy_durations[source]` makes one source's copies slower than the rest."""
    ec2sim.copy_duration = 1.0
    slow_source, fast_source = ec2sim.add_snapshot(SRC), ec2sim.add_snapshot(SRC)
    ec2sim.copy_durations[slow_source] = 30.0
    slow, fast = await copy(aws, slow_source), await copy(aws, fast_source)
    clock.advance(2.0)
    assert (await describe(aws, fast))["State"] == "completed"
    assert (await describe(aws, slow))["State"] == "pending"


async def test_finish_pending_ends_every_pending_copy_as_planned(
    ec2sim: Ec2Simulator, clock: ManualClock, aws: AwsClients
) -> None:
    """`finish_pending` ends the region's pending copies now: completed, or `error` for one
    planned to fail; a copy already ended is not counted."""
    ec2sim.copy_duration = 600.0
    good_source, bad_source = ec2sim.add_snapshot(SRC), ec2sim.add_snapshot(SRC)
    ec2sim.fail_copies(bad_source)
    good, bad = await copy(aws, good_source), await copy(aws, bad_source)
    assert ec2sim.pending_count(DST) == 2

    assert ec2sim.finish_pending(DST) == 2
    assert ec2sim.pending_count(DST) == 0
    assert ((await describe(aws, good))["State"], (await describe(aws, bad))["State"]) == (
        "completed",
        "error",
    )
    assert ec2sim.finish_pending(DST) == 0


async def test_copy_reports_an_arbitrary_volume_id(ec2sim: Ec2Simulator, aws: AwsClients) -> None:
    """As in AWS, a copy's VolumeId is an arbitrary vol-ffffffff, not the source volume."""
    replica = await copy(aws, ec2sim.add_snapshot(SRC))
    assert (await describe(aws, replica))["VolumeId"] == "vol-ffffffff"


async def test_in_flight_limit_counts_foreign_copies(
    ec2sim: Ec2Simulator, clock: ManualClock, aws: AwsClients
) -> None:
    """Beyond 20 pending copies in the region (others' included) CopySnapshot is refused."""
    ec2sim.copy_duration = 10.0
    ec2sim.add_foreign_pending(DST, 18, duration=5.0)
    source = ec2sim.add_snapshot(SRC)
    await copy(aws, source)
    await copy(aws, source)
    assert ec2sim.pending_count(DST) == 20

    calls_before = ec2sim.calls["CopySnapshot"]
    with pytest.raises(TransientError) as refused:
        await copy(aws, source)
    assert refused.value.code == "ResourceLimitExceeded"
    assert "The limit is 20 for this destination region" in refused.value.message
    assert ec2sim.calls["CopySnapshot"] == calls_before + 1  # botocore did not retry it

    clock.advance(5.0)  # the foreign copies complete and free their slots
    assert ec2sim.pending_count(DST) == 2
    await copy(aws, source)


async def test_resource_limit_exceeded_is_http_400(ec2sim: Ec2Simulator, raw_ec2: Any) -> None:
    """The copy-limit refusal is an HTTP 400 with AWS's code and message."""
    ec2sim.copy_limit = 1
    source = ec2sim.add_snapshot(SRC)
    await raw_ec2.copy_snapshot(SourceRegion=SRC, SourceSnapshotId=source)
    with pytest.raises(ClientError) as refused:
        await raw_ec2.copy_snapshot(SourceRegion=SRC, SourceSnapshotId=source)
    error = refused.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error["Error"]["Code"] == "ResourceLimitExceeded"
    assert error["Error"]["Message"] == (
        "Too many snapshot copies in progress. The limit is 1 for this destination region."
    )


async def test_deleting_a_pending_copy_frees_its_slot(
    ec2sim: Ec2Simulator, aws: AwsClients
) -> None:
    """DeleteSnapshot of a pending copy takes it out of the in-flight count."""
    ec2sim.copy_duration = 60.0
    ec2sim.copy_limit = 1
    source = ec2sim.add_snapshot(SRC)
    first = await copy(aws, source)
    await aws.call("ec2", DST, "DeleteSnapshot", SnapshotId=first)
    assert ec2sim.pending_count(DST) == 0
    await copy(aws, source)


async def test_injected_resource_limit_is_a_transient_error(
    ec2sim: Ec2Simulator, aws: AwsClients
) -> None:
    """`inject(..., "ResourceLimitExceeded")` refuses once, not retried; the next call works."""
    source = ec2sim.add_snapshot(SRC)
    ec2sim.inject("CopySnapshot", "ResourceLimitExceeded", message="Too many snapshot copies")
    with pytest.raises(TransientError) as refused:
        await copy(aws, source)
    assert refused.value.code == "ResourceLimitExceeded"
    assert ec2sim.calls["CopySnapshot"] == 1
    await copy(aws, source)
    assert len(ec2sim.backend(DST).snapshots) == 1


async def test_refused_copies_are_http_403_and_create_nothing(
    ec2sim: Ec2Simulator, aws: AwsClients, raw_ec2: Any
) -> None:
    """`refuse_copies` answers CopySnapshot of the chosen source with UnauthorizedOperation
    (HTTP 403, AWS's message, not retried by botocore) until `allow_copies`; other sources
    copy, and no snapshot is created for a refused call — even with every slot taken."""
    ec2sim.copy_duration = 60.0
    refused_source, other_source = ec2sim.add_snapshot(SRC), ec2sim.add_snapshot(SRC)
    ec2sim.refuse_copies(refused_source)
    with pytest.raises(ClientError) as raw:
        await raw_ec2.copy_snapshot(SourceRegion=SRC, SourceSnapshotId=refused_source)
    assert raw.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert raw.value.response["Error"]["Code"] == "UnauthorizedOperation"
    assert raw.value.response["Error"]["Message"].startswith(
        "You are not authorized to perform this operation."
    )
    ec2sim.calls.clear()
    with pytest.raises(PermanentError) as refused:
        await copy(aws, refused_source)
    assert refused.value.code == "UnauthorizedOperation"
    assert ec2sim.calls["CopySnapshot"] == 1  # not retried
    await copy(aws, other_source)
    assert len(ec2sim.backend(DST).snapshots) == 1

    ec2sim.refuse_copies(code="InvalidParameterValue", message="no copies today")
    ec2sim.copy_limit = 1  # the one pending copy holds the only slot: refusal comes first
    with pytest.raises(PermanentError) as everyone:
        await copy(aws, other_source)
    assert (everyone.value.code, everyone.value.message) == (
        "InvalidParameterValue",
        "no copies today",
    )
    ec2sim.allow_copies()
    ec2sim.allow_copies(refused_source)
    ec2sim.copy_limit = 2
    await copy(aws, refused_source)
    assert len(ec2sim.backend(DST).snapshots) == 2


async def test_throttling_is_http_503_and_retried_by_botocore(
    ec2sim: Ec2Simulator, aws: AwsClients, raw_ec2: Any, no_backoff: None
) -> None:
    """RequestLimitExceeded comes back as HTTP 503, and botocore standard mode retries it."""
    ec2sim.inject("DescribeSnapshots", "RequestLimitExceeded", times=1)
    with pytest.raises(ClientError) as throttled:
        await raw_ec2.describe_snapshots(OwnerIds=["self"])
    assert throttled.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert throttled.value.response["Error"]["Code"] == "RequestLimitExceeded"

    ec2sim.calls.clear()
    ec2sim.inject("DescribeSnapshots", "RequestLimitExceeded", times=2)
    answer = await aws.call("ec2", DST, "DescribeSnapshots", OwnerIds=["self"])
    assert answer["ResponseMetadata"]["RetryAttempts"] == 2
    assert ec2sim.calls["DescribeSnapshots"] == 3


async def test_internal_error_is_http_500_and_retried(
    ec2sim: Ec2Simulator, aws: AwsClients, no_backoff: None
) -> None:
    """An InternalError (HTTP 500) is retried by botocore and the copy goes through."""
    ec2sim.inject("CopySnapshot", "InternalError", region=DST)
    replica = await copy(aws, ec2sim.add_snapshot(SRC))
    assert replica.startswith("snap-")
    assert ec2sim.calls["CopySnapshot"] == 2
    assert ec2sim.faults == []


async def test_faults_after_running_leave_a_duplicate_copy(
    ec2sim: Ec2Simulator, aws: AwsClients, no_backoff: None
) -> None:
    """`after_action`: the copy is made, the answer lost, botocore's retry makes a second."""
    source = ec2sim.add_snapshot(SRC)
    ec2sim.inject("CopySnapshot", "InternalError", after_action=True)
    await copy(aws, source, tags={"snapd.io/source-snapshot-id": source})
    filters = [{"Name": "tag:snapd.io/source-snapshot-id", "Values": [source]}]
    answer = await aws.call("ec2", DST, "DescribeSnapshots", Filters=filters)
    assert len(answer["Snapshots"]) == 2


async def test_persistent_throttling_fails_after_retries(
    ec2sim: Ec2Simulator, aws: AwsClients, no_backoff: None
) -> None:
    """Throttling that outlasts botocore's attempts surfaces as a TransientError."""
    ec2sim.inject("DeleteSnapshot", "RequestLimitExceeded", times=10)
    with pytest.raises(TransientError) as throttled:
        await aws.call("ec2", DST, "DeleteSnapshot", SnapshotId="snap-0123456789abcdef0")
    assert throttled.value.code == "RequestLimitExceeded"
    assert ec2sim.calls["DeleteSnapshot"] == 3


async def test_copy_can_end_in_error_then_succeed(
    ec2sim: Ec2Simulator, clock: ManualClock, aws: AwsClients
) -> None:
    """`fail_copies(source, times=1)`: the first copy ends in error with a StateMessage."""
    source = ec2sim.add_snapshot(SRC)
    ec2sim.fail_copies(source, times=1)
    failed = await copy(aws, source)
    assert (await describe(aws, failed))["State"] == "pending"
    clock.advance(ec2sim.copy_duration)
    snapshot = await describe(aws, failed)
    assert snapshot["State"] == "error"
    assert snapshot["StateMessage"] == KMS_KEY_NOT_ACCESSIBLE
    assert await ids_with_status(aws, "error") == {failed}

    retried = await copy(aws, source)
    clock.advance(ec2sim.copy_duration)
    assert (await describe(aws, retried))["State"] == "completed"
    assert "StateMessage" not in await describe(aws, retried)


async def test_kms_key_of_another_region_ends_in_error(
    ec2sim: Ec2Simulator, clock: ManualClock, aws: AwsClients
) -> None:
    """A KmsKeyId from the source region makes the copy fail asynchronously, as in AWS."""
    source = ec2sim.add_snapshot(SRC, encrypted=True)
    key = f"arn:aws:kms:{SRC}:123456789012:key/0c6fa0f4-1b0b-4c5f-9e54-3a6a3b0e9f10"
    answer = await aws.call(
        "ec2", DST, "CopySnapshot", SourceRegion=SRC, SourceSnapshotId=source, KmsKeyId=key
    )
    clock.advance(ec2sim.copy_duration)
    snapshot = await describe(aws, answer["SnapshotId"])
    assert (snapshot["State"], snapshot["StateMessage"]) == ("error", KMS_KEY_NOT_ACCESSIBLE)


async def test_pending_source_cannot_be_copied(ec2sim: Ec2Simulator, aws: AwsClients) -> None:
    """Copying a source that is still pending is refused with IncorrectState."""
    source = ec2sim.add_snapshot(SRC, pending_for=60.0)
    with pytest.raises(PermanentError) as refused:
        await copy(aws, source)
    assert refused.value.code == "IncorrectState"


async def test_fresh_copy_is_invisible_for_a_while(
    ec2sim: Ec2Simulator, clock: ManualClock, aws: AwsClients
) -> None:
    """`invisible_for`: right after CopySnapshot, DescribeSnapshots says NotFound."""
    ec2sim.invisible_for = 2.0
    replica = await copy(aws, ec2sim.add_snapshot(SRC))
    with pytest.raises(PermanentError) as missing:
        await describe(aws, replica)
    assert missing.value.code == "InvalidSnapshot.NotFound"
    assert await ids_with_status(aws, "pending") == set()
    assert ec2sim.pending_count(DST) == 1  # AWS still counts it against the limit

    clock.advance(2.0)
    assert (await describe(aws, replica))["SnapshotId"] == replica


async def test_aws_prefixed_tag_keys_are_refused(ec2sim: Ec2Simulator, aws: AwsClients) -> None:
    """An `aws:` key in TagSpecifications is InvalidParameterValue and no copy is made."""
    with pytest.raises(PermanentError) as refused:
        await copy(aws, ec2sim.add_snapshot(SRC), tags={"aws:backup:source": "x"})
    assert refused.value.code == "InvalidParameterValue"
    assert ec2sim.backend(DST).snapshots == {}


async def test_fifty_tags_pass_and_fifty_one_are_refused(
    ec2sim: Ec2Simulator, aws: AwsClients
) -> None:
    """50 tags are accepted; 51 are TagLimitExceeded with nothing half-created."""
    source = ec2sim.add_snapshot(SRC)
    fifty = {f"k{i}": "v" for i in range(50)}
    replica = await copy(aws, source, tags=fifty)
    assert len((await describe(aws, replica))["Tags"]) == 50

    with pytest.raises(PermanentError) as refused:
        await copy(aws, source, tags={**fifty, "k50": "v"})
    assert refused.value.code == "TagLimitExceeded"
    assert list(ec2sim.backend(DST).snapshots) == [replica]


async def test_tag_values_are_kept_exactly(ec2sim: Ec2Simulator, aws: AwsClients) -> None:
    """Tag values with spaces, slashes and unicode come back unchanged and filter exactly."""
    value = "shop/data-db-0 nightly-20240101 ü"
    replica = await copy(aws, ec2sim.add_snapshot(SRC), tags={"Name": value})
    filters = [{"Name": "tag:Name", "Values": [value]}]
    answer = await aws.call("ec2", DST, "DescribeSnapshots", Filters=filters)
    assert [s["SnapshotId"] for s in answer["Snapshots"]] == [replica]
    assert answer["Snapshots"][0]["Tags"] == [{"Key": "Name", "Value": value}]


async def test_tag_filter_is_fast_on_thousands_of_snapshots(
    ec2sim: Ec2Simulator, aws: AwsClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tag filter over 3000 tagged snapshots looks tags up by snapshot id: it never runs
    moto's scan of every tag in the region per snapshot (moto alone: over a minute)."""
    for i in range(3000):
        tags = {f"snapd.io/k{j}": str(j) for j in range(15)}
        tags["snapd.io/cluster"] = "ours" if i % 10 == 0 else "theirs"
        ec2sim.add_snapshot(DST, tags=tags)
    scans: list[object] = []
    region_scan = TagBackend.describe_tags

    def counted_scan(self: TagBackend, *args: Any, **kwargs: Any) -> Any:
        scans.append(kwargs.get("filters"))
        return region_scan(self, *args, **kwargs)

    monkeypatch.setattr(TagBackend, "describe_tags", counted_scan)
    found = [
        s["SnapshotId"]
        for page in [
            p
            async for p in aws.pages(
                "ec2",
                DST,
                "DescribeSnapshots",
                OwnerIds=["self"],
                Filters=[{"Name": "tag:snapd.io/cluster", "Values": ["ours"]}],
                PaginationConfig={"PageSize": 1000},
            )
        ]
        for s in page["Snapshots"]
    ]
    assert len(found) == 300
    assert scans == []


async def test_describe_snapshots_paginates(ec2sim: Ec2Simulator, aws: AwsClients) -> None:
    """MaxResults/NextToken give real pages: 12 snapshots in pages of 5 are 3 requests."""
    made = {ec2sim.add_snapshot(DST) for _ in range(12)}
    pages = [
        page
        async for page in aws.pages(
            "ec2", DST, "DescribeSnapshots", OwnerIds=["self"], PaginationConfig={"PageSize": 5}
        )
    ]
    assert [len(p["Snapshots"]) for p in pages] == [5, 5, 2]
    assert "NextToken" not in pages[-1]
    listed = [s["SnapshotId"] for p in pages for s in p["Snapshots"]]
    assert sorted(listed) == sorted(made)
    assert ec2sim.calls["DescribeSnapshots"] == 3


async def test_pagination_survives_a_deletion_between_pages(
    ec2sim: Ec2Simulator, aws: AwsClients
) -> None:
    """The token marks a position, so deleting a listed snapshot skips nothing."""
    made = sorted(ec2sim.add_snapshot(DST) for _ in range(10))
    first = await aws.call("ec2", DST, "DescribeSnapshots", MaxResults=5)
    await aws.call("ec2", DST, "DeleteSnapshot", SnapshotId=made[0])
    second = await aws.call(
        "ec2", DST, "DescribeSnapshots", MaxResults=5, NextToken=first["NextToken"]
    )
    assert [s["SnapshotId"] for s in second["Snapshots"]] == made[5:]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"MaxResults": 4}, "InvalidParameterValue"),
        ({"MaxResults": 5, "NextToken": "not-a-token"}, "InvalidParameterValue"),
        (
            {"MaxResults": 5, "SnapshotIds": ["snap-0123456789abcdef0"]},
            "InvalidParameterCombination",
        ),
    ],
    ids=["max-results-below-5", "garbage-token", "ids-with-max-results"],
)
async def test_bad_pagination_parameters_are_refused(
    ec2sim: Ec2Simulator, aws: AwsClients, params: dict[str, Any], code: str
) -> None:
    """Pagination parameters AWS refuses are refused with AWS's code."""
    with pytest.raises(PermanentError) as refused:
        await aws.call("ec2", DST, "DescribeSnapshots", **params)
    assert refused.value.code == code


async def test_owner_ids_self_hides_other_owners(
    ec2sim: Ec2Simulator, aws: AwsClients, raw_ec2: Any
) -> None:
    """OwnerIds=self lists only our snapshots; another owner's cannot be deleted (403)."""
    ours = ec2sim.add_snapshot(DST, tags={"snapd.io/cluster": "a"})
    theirs = ec2sim.add_snapshot(DST, tags={"snapd.io/cluster": "a"}, owner_id=OTHER_ACCOUNT)
    filters = [{"Name": "tag:snapd.io/cluster", "Values": ["a"]}]
    mine = await aws.call("ec2", DST, "DescribeSnapshots", OwnerIds=["self"], Filters=filters)
    assert [s["SnapshotId"] for s in mine["Snapshots"]] == [ours]
    everyone = await aws.call("ec2", DST, "DescribeSnapshots", Filters=filters)
    assert {s["SnapshotId"] for s in everyone["Snapshots"]} == {ours, theirs}
    by_id = await aws.call("ec2", DST, "DescribeSnapshots", OwnerIds=[OTHER_ACCOUNT])
    assert [s["SnapshotId"] for s in by_id["Snapshots"]] == [theirs]

    with pytest.raises(PermanentError) as refused:
        await aws.call("ec2", DST, "DeleteSnapshot", SnapshotId=theirs)
    assert refused.value.code == "UnauthorizedOperation"
    with pytest.raises(ClientError) as forbidden:
        await raw_ec2.delete_snapshot(SnapshotId=theirs)
    assert forbidden.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert theirs in ec2sim.backend(DST).snapshots


async def test_delete_unknown_and_in_use_snapshots(ec2sim: Ec2Simulator, aws: AwsClients) -> None:
    """DeleteSnapshot: unknown id is NotFound; a snapshot marked in use is InvalidSnapshot.InUse."""
    with pytest.raises(PermanentError) as missing:
        await aws.call("ec2", DST, "DeleteSnapshot", SnapshotId="snap-0123456789abcdef0")
    assert missing.value.code == "InvalidSnapshot.NotFound"

    used = ec2sim.add_snapshot(DST)
    ec2sim.mark_in_use(used, "ami-0abc")
    with pytest.raises(PermanentError) as in_use:
        await aws.call("ec2", DST, "DeleteSnapshot", SnapshotId=used)
    assert in_use.value.code == "InvalidSnapshot.InUse"
    assert "ami-0abc" in in_use.value.message


async def create_volume(aws: AwsClients, snapshot_id: str, **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"AvailabilityZone": f"{DST}a", "SnapshotId": snapshot_id}
    return dict(await aws.call("ec2", DST, "CreateVolume", **params | extra))


async def volume_state(aws: AwsClients, volume_id: str) -> str:
    answer = await aws.call("ec2", DST, "DescribeVolumes", VolumeIds=[volume_id])
    return str(answer["Volumes"][0]["State"])


async def test_create_volume_client_token_is_idempotent(
    ec2sim: Ec2Simulator, aws: AwsClients
) -> None:
    """The same ClientToken returns the same volume; other parameters with it are refused."""
    snapshot = ec2sim.add_snapshot(DST, size_gib=10)
    first = await create_volume(aws, snapshot, ClientToken="restore-shop-db")
    again = await create_volume(aws, snapshot, ClientToken="restore-shop-db")
    assert again["VolumeId"] == first["VolumeId"]
    assert len(ec2sim.backend(DST).volumes) == 1

    with pytest.raises(PermanentError) as mismatch:
        await create_volume(aws, snapshot, ClientToken="restore-shop-db", Size=20)
    assert mismatch.value.code == "IdempotentParameterMismatch"
    other = await create_volume(aws, snapshot, ClientToken="another-token")
    assert other["VolumeId"] != first["VolumeId"]

    # AWS: a token whose volume was deleted is spent; it never makes a second volume.
    await aws.call("ec2", DST, "DeleteVolume", VolumeId=first["VolumeId"])
    with pytest.raises(PermanentError) as deleted:
        await create_volume(aws, snapshot, ClientToken="restore-shop-db")
    assert deleted.value.code == "IdempotentParameterMismatch"


async def test_create_volume_refuses_a_pending_snapshot(
    ec2sim: Ec2Simulator, clock: ManualClock, aws: AwsClients
) -> None:
    """A volume from a snapshot that is not completed is IncorrectState, until it completes."""
    replica = await copy(aws, ec2sim.add_snapshot(SRC))
    with pytest.raises(PermanentError) as refused:
        await create_volume(aws, replica)
    assert refused.value.code == "IncorrectState"
    clock.advance(ec2sim.copy_duration)
    assert (await create_volume(aws, replica))["SnapshotId"] == replica


async def test_volume_is_creating_then_available(
    ec2sim: Ec2Simulator, clock: ManualClock, aws: AwsClients
) -> None:
    """A new volume is `creating` for `volume_duration`, then `available`."""
    ec2sim.volume_duration = 3.0
    volume = await create_volume(aws, ec2sim.add_snapshot(DST))
    assert volume["State"] == "creating"
    assert await volume_state(aws, volume["VolumeId"]) == "creating"
    filters = [{"Name": "status", "Values": ["creating"]}]
    creating = await aws.call("ec2", DST, "DescribeVolumes", Filters=filters)
    assert [v["VolumeId"] for v in creating["Volumes"]] == [volume["VolumeId"]]
    clock.advance(3.0)
    assert await volume_state(aws, volume["VolumeId"]) == "available"


async def test_chosen_volumes_end_in_error(
    ec2sim: Ec2Simulator, clock: ManualClock, aws: AwsClients
) -> None:
    """`fail_volumes_from` and `fail_volume` make chosen volumes end in `error`."""
    snapshot = ec2sim.add_snapshot(DST)
    ec2sim.fail_volumes_from(snapshot, times=1)
    failing = await create_volume(aws, snapshot)
    healthy = await create_volume(aws, snapshot)
    clock.advance(ec2sim.volume_duration)
    assert await volume_state(aws, failing["VolumeId"]) == "error"
    assert await volume_state(aws, healthy["VolumeId"]) == "available"
    ec2sim.fail_volume(DST, healthy["VolumeId"])
    assert await volume_state(aws, healthy["VolumeId"]) == "error"


async def test_create_volume_in_an_unknown_az_is_refused(
    ec2sim: Ec2Simulator, aws: AwsClients
) -> None:
    """An availability zone that the region does not have is InvalidParameterValue."""
    with pytest.raises(PermanentError) as refused:
        await create_volume(aws, ec2sim.add_snapshot(DST), AvailabilityZone=f"{SRC}a")
    assert refused.value.code == "InvalidParameterValue"
    assert ec2sim.backend(DST).volumes == {}


async def test_calls_are_counted_by_action_and_region(
    ec2sim: Ec2Simulator, aws: AwsClients
) -> None:
    """Every EC2 request is counted by action (and by region and action)."""
    replica = await copy(aws, ec2sim.add_snapshot(SRC))
    await describe(aws, replica)
    await aws.call("ec2", SRC, "DescribeSnapshots", OwnerIds=["self"])
    await aws.call("ec2", DST, "DeleteSnapshot", SnapshotId=replica)
    assert ec2sim.calls == {"CopySnapshot": 1, "DescribeSnapshots": 2, "DeleteSnapshot": 1}
    assert ec2sim.region_calls[SRC, "DescribeSnapshots"] == 1
    assert ec2sim.region_calls[DST, "DescribeSnapshots"] == 1


async def test_reset_forgets_faults_and_counts(ec2sim: Ec2Simulator, aws: AwsClients) -> None:
    """`reset()` drops queued faults, failure plans, counts and custom settings."""
    ec2sim.copy_limit = 0
    ec2sim.inject("DescribeSnapshots", "InternalError", times=5)
    ec2sim.fail_copies("snap-0123456789abcdef0")
    await aws.call("ec2", DST, "DescribeVolumes")
    ec2sim.reset()
    assert (ec2sim.calls, ec2sim.faults, ec2sim.copy_limit) == ({}, [], 20)
    await aws.call("ec2", DST, "DescribeSnapshots")
    await copy(aws, ec2sim.add_snapshot(SRC))


async def test_moto_reset_wipes_simulated_state(
    ec2sim: Ec2Simulator, moto: MotoWorld, aws: AwsClients
) -> None:
    """moto's /moto-api/reset clears pending copies and ClientTokens with the backends."""
    ec2sim.copy_duration = 60.0
    await copy(aws, ec2sim.add_snapshot(SRC))
    await create_volume(aws, ec2sim.add_snapshot(DST), ClientToken="t")
    moto.reset()
    assert ec2sim.pending_count(DST) == 0
    volume = await create_volume(aws, ec2sim.add_snapshot(DST), ClientToken="t")
    assert volume["VolumeId"].startswith("vol-")


async def test_uninstall_restores_moto(moto: MotoWorld) -> None:
    """After uninstall moto behaves as before: copies complete at once, no limit."""
    sim = Ec2Simulator.install()
    try:
        with pytest.raises(RuntimeError, match="already installed"):
            Ec2Simulator.install()
        source = sim.add_snapshot(SRC)
    finally:
        sim.uninstall()
    async with AwsClients() as aws:
        replica = await copy(aws, source)
        assert (await describe(aws, replica))["State"] == "completed"
    assert sim.calls == {}


def test_install_refuses_a_changed_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    """If moto's internals moved, install() fails loudly and names what changed."""
    from moto.ec2.models.elastic_block_store import EBSBackend

    def copy_snapshot(self: Any, source_snapshot_id: str, source_region: str) -> None:
        raise AssertionError

    monkeypatch.setattr(EBSBackend, "copy_snapshot", copy_snapshot)
    with pytest.raises(MotoMismatchError, match=r"EBSBackend\.copy_snapshot"):
        Ec2Simulator.install()
    assert Ec2Simulator._active is None


SUBPROCESS_SCRIPT = """
import json, sys, boto3
from botocore.config import Config
from botocore.exceptions import ClientError
config = Config(retries={"mode": "standard", "total_max_attempts": 3})
ec2 = boto3.client("ec2", region_name=sys.argv[1], config=config)
copy = ec2.copy_snapshot(SourceRegion=sys.argv[2], SourceSnapshotId=sys.argv[3])
described = ec2.describe_snapshots(SnapshotIds=[copy["SnapshotId"]])
state = described["Snapshots"][0]["State"]
try:
    ec2.copy_snapshot(SourceRegion=sys.argv[2], SourceSnapshotId=sys.argv[3])
    limit = None
except ClientError as e:
    limit = e.response["Error"]["Code"]
retries = described["ResponseMetadata"]["RetryAttempts"]
print(json.dumps({"state": state, "limit": limit, "retries": retries}))
"""


async def test_a_subprocess_client_sees_the_simulation(
    ec2sim: Ec2Simulator, moto: MotoWorld
) -> None:
    """A separate process (as `snapd` runs in e2e tests) sees pending copies, limits, faults."""
    ec2sim.copy_duration = 60.0
    ec2sim.copy_limit = 1
    ec2sim.inject("DescribeSnapshots", "RequestLimitExceeded", times=1, region=DST)
    source = ec2sim.add_snapshot(SRC)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SUBPROCESS_SCRIPT,
        DST,
        SRC,
        source,
        env={**os.environ, **moto.env()},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    assert json.loads(out) == {"state": "pending", "limit": "ResourceLimitExceeded", "retries": 1}
    assert ec2sim.calls["CopySnapshot"] == 2


async def test_time_based_copy_is_recorded_and_validated(
    ec2sim: Ec2Simulator, raw_ec2: Any
) -> None:
    """moto drops CompletionDurationMinutes: the simulator records it, and refuses what AWS
    refuses (not a multiple of 15 minutes, or beyond 48 hours)."""
    source = ec2sim.add_snapshot(SRC)
    timed = await raw_ec2.copy_snapshot(
        SourceRegion=SRC, SourceSnapshotId=source, CompletionDurationMinutes=90
    )
    plain = await raw_ec2.copy_snapshot(SourceRegion=SRC, SourceSnapshotId=source)
    assert ec2sim.completion_minutes == {timed["SnapshotId"]: 90}
    assert plain["SnapshotId"] not in ec2sim.completion_minutes
    for minutes in (10, 2895):
        with pytest.raises(ClientError, match="InvalidParameterValue"):
            await raw_ec2.copy_snapshot(
                SourceRegion=SRC, SourceSnapshotId=source, CompletionDurationMinutes=minutes
            )


async def test_describe_reports_the_transfer_type_and_promise(
    ec2sim: Ec2Simulator, raw_ec2: Any
) -> None:
    """DescribeSnapshots says which copies are time-based and their promise, as AWS does."""
    source = ec2sim.add_snapshot(SRC)
    timed = await raw_ec2.copy_snapshot(
        SourceRegion=SRC, SourceSnapshotId=source, CompletionDurationMinutes=45
    )
    plain = await raw_ec2.copy_snapshot(SourceRegion=SRC, SourceSnapshotId=source)
    seeded = ec2sim.add_snapshot(DST, pending_for=60, completion_minutes=15, started_ago=3600)
    found = {
        s["SnapshotId"]: s
        for s in (await raw_ec2.describe_snapshots(OwnerIds=["self"]))["Snapshots"]
    }
    assert found[timed["SnapshotId"]]["TransferType"] == "time-based"
    assert found[timed["SnapshotId"]]["CompletionDurationMinutes"] == 45
    assert found[plain["SnapshotId"]]["TransferType"] == "standard"
    assert "CompletionDurationMinutes" not in found[plain["SnapshotId"]]
    assert found[seeded]["CompletionDurationMinutes"] == 15
    age = datetime.now(UTC) - found[seeded]["StartTime"]
    assert timedelta(minutes=59) < age < timedelta(minutes=70), "StartTime an hour back"
