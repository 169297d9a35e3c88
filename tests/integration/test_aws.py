"""The AWS door's per-client tuning gives botocore's own answers, for less CPU per request.

Each tuning (snapd/aws.py, docs/aws-cpu.md) replaces work botocore redoes per request; these
tests hold each one to the answer untuned botocore gives: the same timestamps, the same
endpoint, the same User-Agent, against moto in server mode where a request is involved.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.context import ClientContext, reset_context, set_context
from botocore.utils import parse_timestamp

from simworld.moto_server import MotoWorld
from snapd.aws import (
    AwsClients,
    RelevantParameters,
    fast_timestamp,
    rule_references,
    unread_parameters,
)

REGION = "eu-west-1"
BUCKET = "velero-backups"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("2024-01-01T02:00:00.000Z", id="s3-listing"),
        pytest.param("2024-01-01T02:00:00Z", id="iso-no-fraction"),
        pytest.param("2024-02-29T23:59:59.999999+02:00", id="iso-offset"),
        pytest.param("Mon, 01 Jan 2024 02:00:00 GMT", id="http-date"),
        pytest.param("Mon, 01 Jan 2024 02:00:00 -0000", id="http-date-minus-zero"),
        pytest.param("2024-01-01T02:00:00", id="naive-iso-goes-to-botocore"),
        pytest.param("2024-01-01", id="date-only-goes-to-botocore"),
        pytest.param("1700000000", id="epoch-string"),
        pytest.param(1700000000.5, id="epoch-number"),
    ],
)
def test_timestamps_parse_as_botocore_parses_them(value: Any) -> None:
    """Same instant and same offset (or same naivety) as botocore's dateutil parser."""
    ours, theirs = fast_timestamp(value), parse_timestamp(value)
    assert ours == theirs
    assert ours.utcoffset() == theirs.utcoffset()
    assert ours.isoformat() == theirs.isoformat()


def test_a_timestamp_botocore_refuses_is_refused() -> None:
    """Garbage still raises botocore's ValueError, not a wrong date."""
    with pytest.raises(ValueError, match="Invalid timestamp"):
        fast_timestamp("not a time")


def test_rule_references_finds_refs_and_templates() -> None:
    """Both ways a rule reads a parameter: `{"ref": …}` and `{Name}` in a URL template."""
    rules = [
        {
            "conditions": [{"fn": "isSet", "argv": [{"ref": "Region"}]}],
            "endpoint": {"url": "https://{Bucket}.s3.{Region#name}.example"},
        }
    ]
    assert rule_references(rules) == {"Region", "Bucket"}


def test_s3_rules_never_read_the_object_key() -> None:
    """S3's ruleset declares `Key` and `Prefix` (GetObject and ListObjectsV2 pass them) but no
    rule reads them; the bucket, region and endpoint are read. A required parameter is never
    dropped."""
    ruleset = botocore.session.get_session().get_component("data_loader")
    s3 = ruleset.load_service_model("s3", "endpoint-rule-set-1")
    unread = unread_parameters(s3)
    assert {"Key", "Prefix"} <= unread
    assert not {"Bucket", "Region", "Endpoint", "ForcePathStyle"} & unread
    assert not any(s3["parameters"][name].get("required") for name in unread)


def test_relevant_parameters_give_the_same_endpoint_for_every_key() -> None:
    """The provider answers as before, and a new key no longer costs a rules evaluation."""
    session = botocore.session.get_session()
    client = session.create_client("s3", region_name=REGION)
    provider = client._ruleset_resolver._provider
    ruleset = session.get_component("data_loader").load_service_model("s3", "endpoint-rule-set-1")
    tuned = RelevantParameters(provider, unread_parameters(ruleset))
    evaluations = 0
    evaluate = provider.ruleset.evaluate

    def counted(params: dict[str, Any]) -> Any:
        nonlocal evaluations
        evaluations += 1
        return evaluate(params)

    provider.ruleset.evaluate = counted
    base = {"Bucket": BUCKET, "Region": REGION, "UseFIPS": False, "UseDualStack": False}
    answers = [
        tuned.resolve_endpoint(**base, Key=f"backups/b{i}/velero-backup.json") for i in range(5)
    ]
    assert evaluations == 1
    provider.ruleset.evaluate = evaluate
    untuned = provider.resolve_endpoint(**base, Key="backups/other/velero-backup.json")
    assert {a.url for a in answers} == {untuned.url}
    assert tuned.ruleset is provider.ruleset  # everything else is the provider's own


async def test_tuned_client_reads_what_untuned_boto3_reads(
    aws: AwsClients, moto: MotoWorld
) -> None:
    """Listing and GETs through the tuned client return exactly what plain boto3 returns
    (keys, sizes, ETags, LastModified to the microsecond, bodies), and the S3 client's
    endpoint provider is the tuned one."""
    plain = boto3.client("s3", region_name=REGION, endpoint_url=moto.url)
    plain.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    for i in range(3):
        plain.put_object(Bucket=BUCKET, Key=f"backups/b{i}/velero-backup.json", Body=b"{}" * i)
    listed = await aws.call("s3", REGION, "ListObjectsV2", Bucket=BUCKET, Prefix="backups/")
    expected = await asyncio.to_thread(plain.list_objects_v2, Bucket=BUCKET, Prefix="backups/")
    assert listed["Contents"] == expected["Contents"]
    assert all(isinstance(item["LastModified"], datetime) for item in listed["Contents"])
    for item in expected["Contents"]:
        got = await aws.call("s3", REGION, "GetObject", Bucket=BUCKET, Key=item["Key"])
        async with got["Body"] as body:
            data = await body.read()
        want = await asyncio.to_thread(plain.get_object, Bucket=BUCKET, Key=item["Key"])
        assert data == want["Body"].read()
        assert got["LastModified"] == want["LastModified"]
        assert got["LastModified"].utcoffset() == want["LastModified"].utcoffset()
    client = await aws.client("s3", REGION)
    assert isinstance(client._ruleset_resolver._provider, RelevantParameters)


async def test_user_agent_is_built_once_per_feature_set(aws: AwsClients) -> None:
    """The cached User-Agent is the string botocore would build, for each feature set."""
    client = await aws.client("s3", REGION)
    creator = client._user_agent_creator
    for features in (set(), {"C"}, {"C", "E"}):
        context = ClientContext()
        context.features = set(features)
        token = set_context(context)
        try:
            assert creator.to_string() == type(creator).to_string(creator)
            assert creator.to_string() is creator.to_string()
        finally:
            reset_context(token)
