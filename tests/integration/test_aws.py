"""The AWS door's per-client tuning gives botocore's own answers, for less CPU per request.

Each tuning (snapd/aws.py, docs/aws-cpu.md) replaces work botocore redoes per request; these
tests hold each one to the answer untuned botocore gives: the same timestamps, the same
endpoint, the same User-Agent, against moto in server mode where a request is involved.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import gc
import re
from datetime import datetime
from typing import Any
from xml.etree import ElementTree

import boto3
import botocore.parsers
import botocore.session
import pytest
from botocore.awsrequest import AWSRequest
from botocore.context import ClientContext, reset_context, set_context
from botocore.handlers import (
    _handle_200_error,
    decode_list_object_v2,
    set_list_objects_encoding_type_url,
)
from botocore.utils import parse_timestamp

from simworld.moto_server import MotoWorld
from snapd.aws import (
    FAST_OUTPUTS,
    FORM_SIGN_EVENT,
    PAGE_KEY,
    RECALLED,
    AwsClients,
    ListingParsers,
    PageMemo,
    RelevantParameters,
    decode_listing,
    encode_form_once,
    fast_timestamp,
    page_key,
    remembering,
    rule_references,
    unread_parameters,
    volatile_agrees,
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
    assert aws.parsers.fast["ListObjectsV2Output"] == 1  # the listing took the compiled path
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


# ---------------------------------------------------------------------------------------------
# The listing parser (`ListingParsers`) against botocore's own parser, on moto's answers
# ---------------------------------------------------------------------------------------------


class Captured:
    """Every raw response a plain boto3 client received, with its output shape and protocol:
    fed to botocore's untuned parser and to snapd's, they must give the same dict."""

    def __init__(self) -> None:
        self.responses: list[tuple[str, dict[str, Any], Any]] = []

    def __call__(self, response_dict: dict[str, Any], operation_model: Any, **_: Any) -> None:
        protocol = operation_model.service_model.resolved_protocol
        self.responses.append((protocol, dict(response_dict), operation_model.output_shape))


def plain_client(moto: MotoWorld, service: str, *, url_keys: bool = True) -> tuple[Any, Captured]:
    """A boto3 client that records its raw responses; `url_keys=False` lists S3 without
    `EncodingType=url`, so keys come back XML-escaped rather than percent-encoded."""
    client = boto3.client(service, region_name=REGION, endpoint_url=moto.url)
    captured = Captured()
    client.meta.events.register("before-parse", captured)
    if not url_keys:
        client.meta.events.unregister(
            "before-parameter-build.s3.ListObjectsV2", set_list_objects_encoding_type_url
        )
    return client, captured


async def both_parsers(captured: Captured) -> ListingParsers:
    """Parse every captured response with untuned botocore and with snapd's parsers; they
    must agree on every one. Returns snapd's factory (its fast/fallback counts)."""
    ours = ListingParsers()
    ours.set_parser_defaults(timestamp_parser=fast_timestamp)
    assert captured.responses
    for protocol, response, shape in captured.responses:
        try:
            theirs = botocore.parsers.create_parser(protocol).parse(dict(response), shape)
        except (TypeError, ValueError) as refused:  # a document botocore cannot read
            with pytest.raises(type(refused)):
                await ours.create_parser(protocol).parse(dict(response), shape)
            continue
        got = await ours.create_parser(protocol).parse(dict(response), shape)
        assert _elements(got) == _elements(theirs)
        assert _types(got) == _types(theirs)
    return ours


def _elements(value: Any) -> Any:
    """The value with any XML element in it as (tag, text): botocore answers a member
    repeated against its model with the elements themselves, equal only by identity."""
    if isinstance(value, dict):
        return {k: _elements(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_elements(v) for v in value]
    if isinstance(value, ElementTree.Element):
        return (value.tag, value.text)
    return value


def _types(value: Any) -> Any:
    """The value with every leaf replaced by its type (and a datetime's offset): `==`
    alone would let `1 == True` or an aware/naive difference through."""
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_types(v) for v in value]
    if isinstance(value, datetime):
        return (datetime, value.utcoffset())
    return type(value)


KEYS = [
    "backups/b0/velero-backup.json",
    "backups/b0/b0-logs.gz",
    "backups/a&b<c>'d\"/velero-backup.json",
    "backups/ünïcødé ß/velero-backup.json",
    "backups/sp ace+plus%25/x.json",
    "backups/b1/velero-backup.json",
    "top-level.json",
]


def _bucket(moto: MotoWorld) -> Any:
    plain = boto3.client("s3", region_name=REGION, endpoint_url=moto.url)
    plain.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    for i, key in enumerate(KEYS):
        extra = {"ChecksumAlgorithm": "SHA256"} if i % 2 else {}
        plain.put_object(Bucket=BUCKET, Key=key, Body=b"x" * i, **extra)
    return plain


@pytest.mark.parametrize("url_keys", [True, False], ids=["url-encoded-keys", "xml-escaped-keys"])
async def test_listing_pages_parse_as_botocore_parses_them(
    ec2sim: Any, moto: MotoWorld, url_keys: bool
) -> None:
    """ListObjectsV2 in every shape a cycle meets: a full page, truncated pages with their
    continuation, prefixes with a delimiter, an empty page, owners and checksums, odd keys."""
    _bucket(moto)
    client, captured = plain_client(moto, "s3", url_keys=url_keys)
    client.list_objects_v2(Bucket=BUCKET)
    first = client.list_objects_v2(Bucket=BUCKET, Prefix="backups/", MaxKeys=2, FetchOwner=True)
    assert first["IsTruncated"]
    client.list_objects_v2(
        Bucket=BUCKET, Prefix="backups/", ContinuationToken=first["NextContinuationToken"]
    )
    client.list_objects_v2(Bucket=BUCKET, Prefix="backups/", Delimiter="/", MaxKeys=2)
    client.list_objects_v2(Bucket=BUCKET, Prefix="backups/", StartAfter="backups/b0/")
    client.list_objects_v2(Bucket=BUCKET, Prefix="nothing-here/")
    ours = await both_parsers(captured)
    assert ours.fast["ListObjectsV2Output"] == len(captured.responses) == 6
    assert not ours.fallback


def _snapshots(ec2: Any) -> list[str]:
    """Snapshots with many tags, one tag, none; a description or not; encrypted or not."""
    volumes = [
        ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=8, Encrypted=encrypted)["VolumeId"]
        for encrypted in (False, True)
    ]
    made = []
    for i in range(7):
        tags = [{"Key": f"k{j}&<{j}>", "Value": f"välue {j}"} for j in range(i * 4)]
        spec = [{"ResourceType": "snapshot", "Tags": tags}] if tags else []
        extra = {"Description": f"copy <{i}> & more"} if i % 2 else {}
        made.append(
            ec2.create_snapshot(VolumeId=volumes[i % 3 == 0], TagSpecifications=spec, **extra)[
                "SnapshotId"
            ]
        )
    return made


async def test_describe_snapshots_pages_parse_as_botocore_parses_them(
    ec2sim: Any, moto: MotoWorld
) -> None:
    """DescribeSnapshots: paged with NextToken, tags or none, optional fields, no match."""
    client, captured = plain_client(moto, "ec2")
    _snapshots(client)
    first = client.describe_snapshots(OwnerIds=["self"], MaxResults=5)
    client.describe_snapshots(OwnerIds=["self"], MaxResults=5, NextToken=first["NextToken"])
    client.describe_snapshots(Filters=[{"Name": "tag:nothing", "Values": ["x"]}])
    ours = await both_parsers(captured)
    assert ours.fast["DescribeSnapshotsResult"] == 3


async def test_describe_locked_snapshots_parse_as_botocore_parses_them(
    ec2sim: Any, moto: MotoWorld
) -> None:
    """DescribeLockedSnapshots (the simulator's): governance and compliance locks, none."""
    client, captured = plain_client(moto, "ec2")
    made = _snapshots(client)
    client.lock_snapshot(SnapshotId=made[0], LockMode="governance", LockDuration=3)
    client.lock_snapshot(SnapshotId=made[1], LockMode="compliance", LockDuration=3, CoolOffPeriod=2)
    captured.responses.clear()
    client.describe_locked_snapshots(SnapshotIds=made)
    client.describe_locked_snapshots(SnapshotIds=made[2:])
    ours = await both_parsers(captured)
    assert ours.fast["DescribeLockedSnapshotsResult"] == 2


async def test_answer_headers_parse_as_botocore_parses_them(ec2sim: Any, moto: MotoWorld) -> None:
    """Every S3 answer's header members (GetObject's some 60, a user's metadata, checksums,
    ranges, a missing object's 404) are read from a plain dict: the same dict as botocore's."""
    plain = _bucket(moto)
    plain.put_object(
        Bucket=BUCKET,
        Key="meta.json",
        Body=b"{}",
        Metadata={"Velero-Owner": "x", "lower": "y"},
        ContentType="application/json",
        ChecksumAlgorithm="CRC32",
    )
    client, captured = plain_client(moto, "s3")
    client.get_object(Bucket=BUCKET, Key="meta.json", ChecksumMode="ENABLED")
    client.get_object(Bucket=BUCKET, Key=KEYS[3], Range="bytes=0-1")
    client.head_object(Bucket=BUCKET, Key="meta.json")
    client.put_object(Bucket=BUCKET, Key="new.json", Body=b"x", ChecksumAlgorithm="SHA256")
    with pytest.raises(client.exceptions.NoSuchKey):
        client.get_object(Bucket=BUCKET, Key="absent.json")
    await both_parsers(captured)
    metadata = [r for _, r, _ in captured.responses if "x-amz-meta-velero-owner" in r["headers"]]
    assert metadata, "no answer carried the user metadata the test means to compare"


async def test_errors_and_other_operations_go_to_botocore(ec2sim: Any, moto: MotoWorld) -> None:
    """An error answer, and any operation outside the listings, is botocore's to parse."""
    s3, s3_captured = plain_client(moto, "s3")
    ec2, ec2_captured = plain_client(moto, "ec2")
    with pytest.raises(s3.exceptions.NoSuchBucket):
        s3.list_objects_v2(Bucket="no-such-bucket")
    with pytest.raises(ec2.exceptions.ClientError):
        ec2.describe_snapshots(SnapshotIds=["snap-0123456789abcdef0"])
    ec2.describe_volumes()
    s3.list_buckets()
    ours = await both_parsers(s3_captured)
    ours_ec2 = await both_parsers(ec2_captured)
    for factory in (ours, ours_ec2):
        assert not factory.fast
        assert not factory.fallback


LISTING_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    "<Name>b</Name><Prefix></Prefix><KeyCount>1</KeyCount><MaxKeys>1000</MaxKeys>"
    "<IsTruncated>false</IsTruncated>{extra}"
    "<Contents><Key>k</Key><LastModified>2024-01-01T02:00:00.000Z</LastModified>"
    "<ETag>&quot;e&quot;</ETag><Size>3</Size>{inner}</Contents>"
    "</ListBucketResult>"
)


@pytest.mark.parametrize(
    ("extra", "inner", "fast"),
    [
        pytest.param("", "", True, id="plain"),
        pytest.param("<NewElement>x</NewElement>", "<Other/>", True, id="unknown-elements-skipped"),
        pytest.param("<Name>again</Name>", "", False, id="repeated-scalar"),
        pytest.param("<KeyCount>many</KeyCount>", "", False, id="repeated-bad-integer"),
        pytest.param("", "<Size>big</Size>", False, id="repeated-size"),
        pytest.param("", "<Owner><ID>i</ID></Owner><Owner/>", False, id="repeated-structure"),
    ],
)
async def test_documents_the_plan_does_not_cover_go_to_botocore(
    extra: str, inner: str, fast: bool
) -> None:
    """A drift guard: elements the model does not know are skipped as botocore skips them;
    anything the compiled plan cannot read exactly (a member repeated where the model has no
    list) is handed to botocore, and the answer is botocore's either way."""
    shape = botocore.session.get_session().get_service_model("s3")
    output = shape.operation_model("ListObjectsV2").output_shape
    body = LISTING_XML.format(extra=extra, inner=inner).encode()
    response = {"status_code": 200, "headers": {"x-amz-request-id": "r"}, "body": body}
    captured = Captured()
    captured.responses.append(("rest-xml", response, output))
    ours = await both_parsers(captured)
    assert ours.fast["ListObjectsV2Output"] == int(fast)
    assert ours.fallback["ListObjectsV2Output"] == int(not fast)


async def test_a_body_that_is_not_xml_fails_as_botocore_fails() -> None:
    """A truncated page is botocore's to refuse, with its own error."""
    model = botocore.session.get_session().get_service_model("ec2")
    output = model.operation_model("DescribeSnapshots").output_shape
    response = {"status_code": 200, "headers": {}, "body": b"<DescribeSnapshotsResponse><snap"}
    ours = ListingParsers()
    with pytest.raises(botocore.parsers.ResponseParserError, match="invalid XML"):
        await ours.create_parser("ec2").parse(response, output)
    assert ours.fallback["DescribeSnapshotsResult"] == 1


def test_every_listing_shape_compiles() -> None:
    """Each output shape named in FAST_OUTPUTS exists in botocore's model and compiles; a
    botocore upgrade that changes one fails here rather than silently falling back."""
    session = botocore.session.get_session()
    operations = {
        "ListObjectsV2Output": ("s3", "ListObjectsV2"),
        "DescribeSnapshotsResult": ("ec2", "DescribeSnapshots"),
        "DescribeLockedSnapshotsResult": ("ec2", "DescribeLockedSnapshots"),
    }
    factory = ListingParsers()
    for protocol, names in FAST_OUTPUTS.items():
        for name in names:
            service, operation = operations[name]
            shape = session.get_service_model(service).operation_model(operation).output_shape
            assert shape.name == name
            assert factory.plan_for(shape, protocol, fast_timestamp) is not None


@pytest.mark.parametrize("enabled", [True, False], ids=["collector-on", "collector-off"])
async def test_the_collector_is_left_as_it_was_found(enabled: bool) -> None:
    """The parser holds the cyclic collector off while it builds a page, and leaves it on
    or off as it found it — also when the page goes to botocore."""
    model = botocore.session.get_session().get_service_model("s3")
    output = model.operation_model("ListObjectsV2").output_shape
    ours = ListingParsers()
    was = gc.isenabled()
    try:
        if not enabled:
            gc.disable()
        for body in (LISTING_XML.format(extra="", inner="").encode(), b"<ListBucketResult"):
            response = {"status_code": 200, "headers": {}, "body": body}
            with contextlib.suppress(botocore.parsers.ResponseParserError):
                await ours.create_parser("rest-xml").parse(response, output)
            assert gc.isenabled() is enabled
    finally:
        if was:
            gc.enable()
    assert ours.fast["ListObjectsV2Output"] == 1
    assert ours.fallback["ListObjectsV2Output"] == 1


def _operation(service: str, name: str) -> Any:
    return botocore.session.get_session().get_service_model(service).operation_model(name)


@pytest.mark.parametrize(
    ("operation", "status", "body"),
    [
        pytest.param("ListObjectsV2", 200, LISTING_XML.format(extra="", inner=""), id="page"),
        pytest.param("ListObjectsV2", 200, "<Error><Code>InternalError</Code></Error>", id="error"),
        pytest.param("ListObjectsV2", 200, "<ListBucketResult><Contents>", id="cut-off"),
        pytest.param("ListObjectsV2", 200, "", id="empty"),
        pytest.param("ListObjectsV2", 503, "<Error><Code>SlowDown</Code></Error>", id="503"),
        pytest.param("ListBuckets", 200, "<Error><Code>InternalError</Code></Error>", id="other"),
        pytest.param("ListBuckets", 200, "<ListAllMyBucketsResult>", id="other-cut-off"),
    ],
)
def test_s3_200_errors_are_caught_as_botocore_catches_them(
    operation: str, status: int, body: str
) -> None:
    """The listing's own 200-error check turns the same answers into a 500 (retried) as
    botocore's `_handle_200_error`, and keeps the tree only of a page it will parse."""
    model = _operation("s3", operation)
    theirs = {"status_code": status, "body": body.encode(), "headers": {}, "context": {}}
    ours = {**theirs, "context": {}}
    _handle_200_error(operation_model=model, response_dict=theirs)
    ListingParsers().check_s3_200_error(model, ours)
    assert ours["status_code"] == theirs["status_code"]
    kept = bool(ours["context"])
    assert kept is (operation == "ListObjectsV2" and ours["status_code"] == 200 and bool(body))


async def test_the_checked_tree_is_the_one_parsed() -> None:
    """The tree built by the 200-error check is read by the parser (no second parse) and
    taken out of the response; a tree of another body is ignored."""
    model = _operation("s3", "ListObjectsV2")
    body = LISTING_XML.format(extra="", inner="").encode()
    factory = ListingParsers()
    response = {"status_code": 200, "body": body, "headers": {}, "context": {}}
    factory.check_s3_200_error(model, response)
    assert response["context"]
    expected = botocore.parsers.create_parser("rest-xml").parse(dict(response), model.output_shape)
    got = await factory.create_parser("rest-xml").parse(response, model.output_shape)
    assert got == expected
    assert not response["context"]
    stale = {**response, "context": {}}
    factory.check_s3_200_error(model, stale)
    stale["body"] = LISTING_XML.format(extra="", inner="<StorageClass>S</StorageClass>").encode()
    got = await factory.create_parser("rest-xml").parse(stale, model.output_shape)
    assert got["Contents"][0]["StorageClass"] == "S"
    assert got == botocore.parsers.create_parser("rest-xml").parse(stale, model.output_shape)


async def test_s3_clients_check_200_errors_once(aws: AwsClients) -> None:
    """snapd's S3 clients run the listing's 200-error check in place of botocore's (pinned:
    a botocore that renames or moves the handler fails here); EC2 clients are untouched."""
    s3 = await aws.client("s3", REGION)
    handlers = list(s3.meta.events._emitter._handlers.prefix_search("before-parse.s3.Op"))
    assert _handle_200_error not in handlers
    assert handlers[0] == aws.parsers.check_s3_200_error


ENCODED = [
    "backups%2Fa%26b",
    "sp+ace",
    "%C3%BCn%C3%AFc%C3%B8d%C3%A9",
    "plain/key.json",
    "100%25+x",
    "",
]


@pytest.mark.parametrize(
    ("encoding", "auto_set"),
    [("url", True), ("url", False), (None, True)],
    ids=["decoded", "caller-asked-for-url", "not-encoded"],
)
def test_listing_keys_are_decoded_as_botocore_decodes_them(
    encoding: str | None, auto_set: bool
) -> None:
    """`decode_listing` gives botocore's `decode_list_object_v2` answer: every key, prefix,
    delimiter and start key, with or without `%` and `+`, only when botocore set the
    encoding itself."""
    parsed: dict[str, Any] = {
        "Prefix": "backups%2F",
        "Delimiter": "%2F",
        "StartAfter": "a+b",
        "Contents": [{"Key": key, "Size": 1} for key in ENCODED],
        "CommonPrefixes": [{"Prefix": key} for key in ENCODED],
    }
    if encoding:
        parsed["EncodingType"] = encoding
    context = {"encoding_type_auto_set": True} if auto_set else {}
    theirs, ours = copy.deepcopy(parsed), copy.deepcopy(parsed)
    decode_list_object_v2(theirs, dict(context))
    decode_listing(ours, dict(context))
    assert ours == theirs


async def test_odd_keys_list_as_untuned_boto3_lists_them(aws: AwsClients, moto: MotoWorld) -> None:
    """Through snapd's tuned S3 client (compiled parser, one 200-error parse, its own key
    decoding), a listing of keys with `&<>'"`, unicode, spaces, `+` and `%` is the one plain
    boto3 returns, with and without a delimiter, page by page."""
    plain = _bucket(moto)
    for extra in ({}, {"Delimiter": "/"}):
        ours = [
            {k: v for k, v in page.items() if k != "ResponseMetadata"}
            async for page in aws.pages(
                "s3",
                REGION,
                "ListObjectsV2",
                Bucket=BUCKET,
                PaginationConfig={"PageSize": 3},
                **extra,
            )
        ]
        paginator = plain.get_paginator("list_objects_v2")
        theirs = [
            {k: v for k, v in page.items() if k != "ResponseMetadata"}
            for page in paginator.paginate(Bucket=BUCKET, PaginationConfig={"PageSize": 3}, **extra)
        ]
        assert ours == theirs
    assert {item["Key"] for page in ours for item in page.get("Contents", [])} | {
        p["Prefix"] for page in ours for p in page.get("CommonPrefixes", [])
    } == {"top-level.json", "backups/"}
    assert aws.parsers.fast["ListObjectsV2Output"] >= 4
    s3 = await aws.client("s3", REGION)
    after_call = list(
        s3.meta.events._emitter._handlers.prefix_search("after-call.s3.ListObjectsV2")
    )
    assert decode_list_object_v2 not in after_call
    assert decode_listing in after_call


async def test_settle_makes_the_cycles_clients_then_freezes_the_start_up_heap(
    moto: MotoWorld,
) -> None:
    """`snapd run` and `sync` make the clients every cycle uses before the work starts and
    freeze what start-up made, so no full garbage collection rescans botocore's models in
    the middle of a cycle's requests."""
    from snapd.config import Settings
    from snapd.service import start_up_clients

    settings = Settings(source_region="eu-west-1", destination_region="eu-central-1")
    frozen = gc.get_freeze_count()
    try:
        async with AwsClients() as aws:
            await aws.settle(start_up_clients(settings))
            assert sorted(aws._clients) == [
                ("ec2", "eu-central-1"),
                ("ec2", "eu-west-1"),
                ("s3", "eu-west-1"),
            ]
            assert gc.get_freeze_count() > frozen
    finally:
        gc.unfreeze()


def _with_volatile(body: bytes, request_id: str, next_token: str | None) -> bytes:
    """The body as another answer to the same request would be: its own request id and,
    when the page has one, its own next token."""
    text = re.sub(
        rb"<requestId>[^<]*</requestId>", f"<requestId>{request_id}</requestId>".encode(), body
    )
    if next_token is not None:
        text = re.sub(
            rb"<nextToken>[^<]*</nextToken>", f"<nextToken>{next_token}</nextToken>".encode(), text
        )
    return text


async def test_a_page_read_again_answers_as_botocore_parses_it(
    ec2sim: Any, moto: MotoWorld
) -> None:
    """Inside `repeated_pages`, a DescribeSnapshots page whose body differs from the last
    pass's only in its request id and next token is not parsed again: its answer carries
    the new id and token and what the caller built from the page before (`PageMemo.built`);
    any other difference is parsed afresh, as botocore parses it."""
    client, captured = plain_client(moto, "ec2")
    _snapshots(client)
    client.describe_snapshots(OwnerIds=["self"], MaxResults=5)
    captured.responses.clear()
    client.describe_snapshots(OwnerIds=["self"], MaxResults=5)
    ((protocol, response, shape),) = captured.responses
    assert b"<nextToken>" in response["body"]
    listed = re.search(rb"<snapshotId>([^<]+)</snapshotId>", response["body"])
    assert listed is not None
    ours = ListingParsers()
    ours.set_parser_defaults(timestamp_parser=fast_timestamp)
    memo = PageMemo()
    bodies = [
        response["body"],
        _with_volatile(response["body"], "another-request", "another-token"),
        _with_volatile(response["body"], "third-request", None).replace(
            listed.group(1), b"snap-0aaaaaaaaaaaaaaaa"
        ),
    ]

    def build(page: dict[str, Any]) -> list[str]:
        return [s["SnapshotId"] for s in page["Snapshots"]]

    answers, built = [], []
    for body in bodies:
        with remembering(memo):
            answer = await ours.create_parser(protocol).parse({**response, "body": body}, shape)
            built.append(memo.built(answer, build))
        answers.append(answer)
        theirs = botocore.parsers.create_parser(protocol).parse({**response, "body": body}, shape)
        if RECALLED not in answer:
            fresh = {k: v for k, v in answer.items() if k != PAGE_KEY}
            assert _elements(fresh) == _elements(theirs)
            assert _types(fresh) == _types(theirs)
            assert built[-1] == build(theirs)
    assert ours.remembered["DescribeSnapshotsResult"] == 1  # the second body only
    assert set(answers[1]) == {RECALLED, "NextToken", "ResponseMetadata"}
    assert answers[1]["NextToken"] == "another-token"
    assert answers[1]["ResponseMetadata"]["RequestId"] == "another-request"
    assert built[1] is built[0]
    assert RECALLED not in answers[2]
    assert built[2] is not built[0]
    assert built[2][0] == "snap-0aaaaaaaaaaaaaaaa"


@pytest.mark.parametrize(
    "body",
    [
        b"<R><requestId>a</requestId><x/><requestId>b</requestId></R>",
        b"<R><nextToken>a&amp;b</nextToken></R>",
        "<R><nextToken>é</nextToken></R>".encode(),
    ],
    ids=["repeated", "entity", "not-ascii"],
)
def test_a_page_without_a_safe_key_is_parsed_as_always(body: bytes) -> None:
    """A volatile element repeated, or one whose text needs XML unescaping or decoding: no
    key, no memo."""
    assert page_key("DescribeSnapshotsResult", body) is None


def test_page_keys_leave_out_request_id_and_token_only() -> None:
    """Two answers that differ in request id and token share a key; any other byte differs."""
    body = b"<R><requestId>r1</requestId><set><item>1</item></set><nextToken>t1</nextToken></R>"
    other = body.replace(b"r1", b"r2").replace(b"t1", b"t2")
    key, same = page_key("S", body), page_key("S", other)
    assert key is not None
    assert same is not None
    assert key.content == same.content
    assert (same.request_id, same.next_token) == ("r2", "t2")
    changed = page_key("S", body.replace(b"<item>1", b"<item>2"))
    assert changed is not None
    assert changed.content != key.content
    assert page_key("T", body).content != key.content  # type: ignore[union-attr]


def test_a_page_whose_token_the_key_missed_is_not_kept() -> None:
    """`<nextToken/>` is no element the key strips, yet the parse holds a NextToken: what
    is built from such a page is not kept (a recall would lose or invent the token)."""
    key = page_key("S", b"<R><nextToken/><requestId>r</requestId></R>")
    assert key is not None
    assert key.next_token is None
    assert not volatile_agrees({"NextToken": "", "ResponseMetadata": {}}, key)
    assert volatile_agrees({"ResponseMetadata": {}}, key)


def test_a_memo_recalls_only_what_a_caller_built_and_forgets_after_a_pass() -> None:
    """`PageMemo.built` keeps what it built from a page with a key; a page without one (not
    safely keyed, or not agreeing with its key) is built every time; a pass that does not
    meet a page again ends its memory of it."""
    memo = PageMemo()
    content = ("S", b"digest")
    made = memo.built({PAGE_KEY: content, "Snapshots": [1]}, lambda page: list(page["Snapshots"]))
    assert memo.recall(content) is made
    unkeyed = memo.built({"Snapshots": [2]}, lambda page: list(page["Snapshots"]))
    assert unkeyed == [2]
    assert memo.recall(("S", b"other")) is not made
    memo.end_pass()
    assert memo.recall(content) is made  # met again in this pass: kept for the next
    memo.end_pass()
    memo.end_pass()
    assert memo.recall(content) is not made


def test_an_ec2_form_encoded_once_is_the_form_botocore_sends() -> None:
    """`encode_form_once` leaves the body botocore signs and sends, and its length, as
    botocore would make them from the parameters; a body already encoded is left alone."""
    params = {
        "Action": "DescribeLockedSnapshots",
        **{f"SnapshotId.{i}": f"snap-{i:017x}" for i in range(1, 4)},
        "Odd.1": "välue & more+/=?",
        "Version": "2016-11-15",
    }
    theirs = AWSRequest(method="POST", url="https://ec2.example/", data=dict(params))
    ours = AWSRequest(method="POST", url="https://ec2.example/", data=dict(params))
    encode_form_once(ours, signature_version="v4")
    assert isinstance(ours.data, str)
    assert ours.body == theirs.body
    assert ours.prepare().headers == theirs.prepare().headers
    encoded = ours.data
    encode_form_once(ours, signature_version="v4")
    assert ours.data is encoded
    presigned = AWSRequest(method="POST", url="https://ec2.example/", data=dict(params))
    encode_form_once(presigned, signature_version="v4-query")  # its signer needs the dict
    assert presigned.data == params


async def test_ec2_clients_encode_their_form_once(aws: AwsClients) -> None:
    """An EC2 call made through snapd's clients is signed with its form already encoded."""
    ec2 = await aws.client("ec2", REGION)
    seen: list[type] = []
    ec2.meta.events.register_last(
        FORM_SIGN_EVENT, lambda request, **_: seen.append(type(request.data))
    )
    await aws.call("ec2", REGION, "DescribeAvailabilityZones")
    assert seen == [str]
