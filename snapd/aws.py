"""The only door to AWS: one aioboto3 session, one client per (service, region), typed errors.

Every module that talks to AWS goes through `AwsClients.call` / `AwsClients.pages`, so
retries, error mapping and call counting live in one place:

- botocore's `standard` retry mode retries throttling (`RequestLimitExceeded`) and 5xx with
  jittered backoff; snapd adds nothing on top for those.
- A `ClientError` left after retries becomes a `TransientError` (worth trying again later:
  throttling, 5xx, `ResourceLimitExceeded`) or a `PermanentError` (the request itself is
  wrong or forbidden), carrying botocore's operation name and the AWS error code.
- Endpoints and credentials come from the standard chain (`AWS_ENDPOINT_URL…`, IRSA,
  profiles); `region_name` is always passed explicitly, since snapd talks to two regions.

A cold discovery cycle makes one S3 request per backup file, so botocore's fixed cost per
request is most of snapd's CPU there. Three pieces of it are redone per request for the same
answer, and each client is tuned once at creation (docs/aws-cpu.md):

- timestamps (every `LastModified` of a listing, every `Last-Modified` header) are parsed by
  `fast_timestamp` (the C `fromisoformat`/`parsedate_to_datetime`) instead of dateutil;
- the endpoint rules are evaluated with only the parameters they read
  (`RelevantParameters`), so botocore's own endpoint cache answers every GetObject instead of
  missing on each new `Key`;
- the User-Agent string, the same for every request with the same feature ids, is built once
  per set of ids (`_cache_user_agent`).

A warm cycle makes few requests but lists everything: the Velero bucket (1,000 objects a
page), the replica inventory and its locks (1,000 snapshots with their tags a page). Those
pages are read by `ListingParsers`, a parser compiled from botocore's own model that gives
botocore's answer in a fraction of its CPU; S3's check for an error inside a 200 reuses the
listing page's tree instead of parsing it a second time, and only keys with `%` or `+` are
url-decoded (docs/aws-cpu.md, "Listing pages"). The replica inventory and its locks are
listed inside `AwsClients.repeated_pages`: an EC2 page whose body is the one of the pass
before (its request id and next token aside) is not parsed, and what was built from it then
(the replicas, the locks) is used again (`PageMemo`).

Integrity checks stay: botocore still validates the CRC of every GetObject body that carries
one (`response_checksum_validation` is left at `when_supported`; CRC32 in C costs little).
"""

from __future__ import annotations

import contextlib
import email.utils
import gc
import hashlib
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import unquote_plus
from xml.etree import ElementTree

import aioboto3
from aiobotocore.parsers import AioEC2QueryParser, AioResponseParserFactory, AioRestXMLParser
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.context import get_context
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.handlers import _handle_200_error, decode_list_object_v2
from botocore.utils import parse_timestamp

from snapd.errors import AwsError, PermanentError, TransientError

#: AWS error codes that say "not now" rather than "never": retry later.
TRANSIENT_CODES = frozenset(
    {
        "RequestLimitExceeded",
        "Throttling",
        "ThrottlingException",
        "SlowDown",
        "ResourceLimitExceeded",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "Unavailable",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
    }
)

_SNAKE = re.compile(r"(?<!^)(?=[A-Z])")

#: Called with (operation, code) for every AWS error left after retries (the service counts
#: them in `snapd_aws_errors_total`).
ErrorHook = Callable[[str, str], None]


def snake_case(operation: str) -> str:
    """`DescribeSnapshots` → `describe_snapshots` (botocore's client method name)."""
    return _SNAKE.sub("_", operation).lower()


def map_error(operation: str, exc: BaseException) -> AwsError:
    """Translate a botocore exception into snapd's tree, keeping operation and code."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "Unknown")
        message = str(error.get("Message") or "")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in TRANSIENT_CODES or status >= 500:
            return TransientError(operation, code, message)
        return PermanentError(operation, code, message)
    if isinstance(exc, NoCredentialsError):
        return PermanentError(
            operation, "NoCredentials", "no AWS credentials found (IRSA, env or profile)"
        )
    network = (
        EndpointConnectionError,
        ConnectTimeoutError,
        ReadTimeoutError,
        ConnectionClosedError,
    )
    if isinstance(exc, network):
        return TransientError(operation, type(exc).__name__, str(exc))
    if isinstance(exc, BotoCoreError):
        return PermanentError(operation, type(exc).__name__, str(exc))
    return TransientError(operation, type(exc).__name__, str(exc))


def fast_timestamp(value: Any) -> datetime:
    """botocore's timestamp parser for the two forms AWS sends, without dateutil.

    ISO 8601 (`2024-01-01T02:00:00.000Z`, in XML and JSON bodies) and the HTTP date
    (`Mon, 01 Jan 2024 02:00:00 GMT`, in headers) parse in C; anything else, or a time
    without a zone, goes to botocore's own `parse_timestamp`, so the answer is always the
    one botocore would give (the same instant and offset). dateutil's tokenizer was a
    fifth of snapd's CPU on a cold discovery cycle.
    """
    if isinstance(value, str):
        parsed = _iso_or_http_date(value)
        if parsed is not None:
            return parsed
    answer: datetime = parse_timestamp(value)
    return answer


def _iso_or_http_date(text: str) -> datetime | None:
    """An aware datetime from ISO 8601 or an HTTP date; None for anything else."""
    try:
        if text[:4].isdigit() and text[4:5] == "-":
            parsed = datetime.fromisoformat(text)
        else:
            parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo is not None else None


def rule_references(ruleset: Any) -> frozenset[str]:
    """Every parameter an endpoint ruleset reads: `{"ref": name}` and `{name}` in templates."""
    names: set[str] = set()
    for node in _walk(ruleset):
        if isinstance(node, dict) and isinstance(node.get("ref"), str):
            names.add(node["ref"])
        elif isinstance(node, str):
            names.update(_TEMPLATE_REF.findall(node))
    return frozenset(names)


_TEMPLATE_REF = re.compile(r"\{([A-Za-z][A-Za-z0-9_]*)[}#]")


def _walk(node: Any) -> Iterator[Any]:
    """Every value of a JSON document, depth first."""
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        yield from _walk(child)


def unread_parameters(ruleset: dict[str, Any]) -> frozenset[str]:
    """Optional parameters a ruleset declares but no rule reads (S3's `Key`, `Prefix`)."""
    read = rule_references(ruleset.get("rules", []))
    declared = ruleset.get("parameters", {})
    return frozenset(
        name for name, spec in declared.items() if name not in read and not spec.get("required")
    )


T = TypeVar("T")


class RelevantParameters:
    """An endpoint provider that passes on only the parameters its rules read.

    botocore caches endpoint answers by every parameter, and S3's GetObject passes the
    object `Key`, which no rule reads: each new key missed the cache and evaluated the whole
    S3 ruleset again. Dropping what no rule reads cannot change an answer.
    """

    def __init__(self, provider: Any, unread: Collection[str]) -> None:
        self._provider = provider
        self._unread = frozenset(unread)

    def resolve_endpoint(self, **params: Any) -> Any:
        relevant = {k: v for k, v in params.items() if k not in self._unread}
        return self._provider.resolve_endpoint(**relevant)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._provider, name)


def _tune_client(
    client: Any, unread: Callable[[], Collection[str]], parsers: ListingParsers
) -> None:
    """Per-client tuning done once at creation (see the module docstring); `unread` gives
    the endpoint parameters no rule of the client's service reads."""
    resolver: Any = getattr(client, "_ruleset_resolver", None)
    provider = getattr(resolver, "_provider", None)
    if provider is not None and not isinstance(provider, RelevantParameters):
        resolver._provider = RelevantParameters(provider, unread())
    _cache_user_agent(client)
    if client.meta.service_model.service_name == "ec2":
        client.meta.events.register(FORM_SIGN_EVENT, encode_form_once)
    if client.meta.service_model.service_name == "s3":
        events = client.meta.events
        events.unregister(S3_200_ERROR_EVENT, _handle_200_error)
        events.register_first(S3_200_ERROR_EVENT, parsers.check_s3_200_error)
        events.unregister(LISTING_DECODE_EVENT, decode_list_object_v2)
        events.register(LISTING_DECODE_EVENT, decode_listing)


#: Where botocore checks S3's 200 answers for an error document (`check_s3_200_error`).
S3_200_ERROR_EVENT = "before-parse.s3.*"
#: Where botocore url-decodes a ListObjectsV2 answer (`decode_listing`).
LISTING_DECODE_EVENT = "after-call.s3.ListObjectsV2"


#: Where an EC2 request is about to be signed (`encode_form_once`).
FORM_SIGN_EVENT = "before-sign.ec2"


def encode_form_once(request: Any, signature_version: Any = None, **kwargs: Any) -> None:
    """Form-encode an EC2 request's parameters once, before it is signed in its header.

    botocore keeps a query request's body as a dict and form-encodes it each time the body
    is read: once to hash it for the signature, once more to send it. DescribeLockedSnapshots
    names 1,000 snapshot ids, so each encoding is 2,000 `quote_plus` calls. The body is
    replaced by its encoding, made by botocore's own preparer: the same bytes are signed
    and sent. A retry builds its request afresh from the parameters. Only for SigV4 in the
    header: a presigned URL (CopySnapshot's, `v4-query`) moves the body's parameters into
    the URL and needs them as a dict."""
    if signature_version == SIGV4 and isinstance(request.data, dict):
        request.data = AWSRequest(data=request.data).prepare().body


#: The header-signed SigV4 of EC2's requests (`encode_form_once`).
SIGV4 = "v4"


def decode_listing(parsed: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
    """botocore's `decode_list_object_v2`, for less CPU per page.

    botocore asks S3 for url-encoded keys (`EncodingType=url`, which it sets itself) and
    decodes every key of the answer with `unquote_plus`; a value without `%` or `+` is its
    own decoding, and almost every key has neither, so only the others are decoded. Same
    keys, same conditions, same answer.
    """
    if parsed.get("EncodingType") != "url" or not context.get("encoding_type_auto_set"):
        return
    for key in ("Delimiter", "Prefix", "StartAfter"):
        if key in parsed:
            parsed[key] = _url_decoded(parsed[key])
    for top, child in (("Contents", "Key"), ("CommonPrefixes", "Prefix")):
        if top in parsed:
            for member in parsed[top]:
                member[child] = _url_decoded(member[child])


def _url_decoded(value: str) -> str:
    return unquote_plus(value) if "%" in value or "+" in value else value


def _cache_user_agent(client: Any) -> None:
    """Build each distinct User-Agent string once (botocore rebuilds it twice per request).

    The string depends on the client's fixed settings and on the feature ids of the call
    (retry mode, paginator, checksums…), so it is cached by the set of feature ids.
    """
    creator = getattr(client, "_user_agent_creator", None)
    if creator is None:
        return
    build = creator.to_string
    built: dict[frozenset[str], str] = {}

    def to_string() -> str:
        context = get_context()
        features = frozenset(context.features) if context is not None else frozenset()
        key = features | frozenset(creator._client_features or ())
        if key not in built:
            built[key] = build()
        return built[key]

    creator.to_string = to_string


class AwsClients:
    """Owns the session and the clients; use as `async with AwsClients() as aws:`.

    Clients are created on first use and closed together at exit. `calls` counts every
    request by operation, which the benchmark and the tests read to prove batching.
    """

    def __init__(
        self,
        *,
        max_attempts: int = 5,
        retry_mode: str = "standard",
        connect_timeout: float = 10,
        read_timeout: float = 60,
        on_error: ErrorHook | None = None,
    ) -> None:
        self._session = aioboto3.Session()
        botocore_session = self._session._session
        self.parsers = ListingParsers()
        self.parsers.set_parser_defaults(timestamp_parser=fast_timestamp)
        botocore_session.register_component("response_parser_factory", self.parsers)
        self._loader = botocore_session.get_component("data_loader")
        self._unread: dict[str, frozenset[str]] = {}
        self._config = Config(
            retries={"mode": retry_mode, "total_max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=50,
        )
        self._stack = contextlib.AsyncExitStack()
        self._clients: dict[tuple[str, str], Any] = {}
        self._on_error = on_error or _ignore_error
        self.calls: Counter[str] = Counter()
        self._memos: dict[str, PageMemo] = {}

    async def __aenter__(self) -> AwsClients:
        await self._stack.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._clients.clear()
        await self._stack.__aexit__(exc_type, exc, tb)

    async def client(self, service: str, region: str) -> Any:
        """The one client of `service` in `region`, created on first use."""
        key = (service, region)
        if key not in self._clients:
            factory = self._session.client(service, region_name=region, config=self._config)
            client = await self._stack.enter_async_context(factory)
            _tune_client(client, lambda: self._unread_parameters(service), self.parsers)
            self._clients[key] = client
        return self._clients[key]

    async def settle(self, clients: Collection[tuple[str, str]]) -> None:
        """Make these (service, region) clients now, then freeze what start-up made.

        Imports, botocore's service models and the clients are a few hundred thousand
        objects that live as long as the process. Left to the cyclic garbage collector,
        every full collection scans all of them again (0.1 s and more of CPU each, in the
        middle of a burst of requests). Frozen (`gc.freeze`), they are never scanned; what
        the work makes afterwards is collected as before.
        """
        for service, region in sorted(clients):
            await self.client(service, region)
        gc.freeze()

    @contextlib.contextmanager
    def repeated_pages(self, family: str) -> Iterator[PageMemo]:
        """One pass over a listing read again every cycle (`family` names it: the replica
        inventory of a region and scope, their locks): an EC2 listing page parsed inside,
        in this task, whose body is the one of the family's previous pass is not parsed,
        and `PageMemo.built` gives what the caller built from it then."""
        with remembering(self._memos.setdefault(family, PageMemo())) as memo:
            yield memo

    def _unread_parameters(self, service: str) -> frozenset[str]:
        """`unread_parameters` of a service's endpoint rules, worked out once per service."""
        if service not in self._unread:
            ruleset = self._loader.load_service_model(service, "endpoint-rule-set-1")
            self._unread[service] = unread_parameters(ruleset)
        return self._unread[service]

    async def call(
        self,
        service: str,
        region: str,
        operation: str,
        *,
        expected_codes: Collection[str] = (),
        **params: Any,
    ) -> Any:
        """One AWS call; botocore retries inside, what is left becomes a snapd error.

        `expected_codes` are answers the caller handles as a normal outcome (S3's
        `NoSuchKey` for a backup Velero is deleting): still raised, never counted as errors.
        """
        client = await self.client(service, region)
        self.calls[operation] += 1
        try:
            return await getattr(client, snake_case(operation))(**params)
        except (ClientError, BotoCoreError, OSError) as exc:
            error = map_error(operation, exc)
            if error.code not in expected_codes:
                self._on_error(operation, error.code)
            raise error from exc

    async def pages(
        self, service: str, region: str, operation: str, **params: Any
    ) -> AsyncIterator[dict[str, Any]]:
        """Every page of a paginated call, each a separate request counted in `calls`."""
        client = await self.client(service, region)
        paginator = client.get_paginator(snake_case(operation))
        iterator = paginator.paginate(**params).__aiter__()
        while True:
            self.calls[operation] += 1
            try:
                page = await iterator.__anext__()
            except StopAsyncIteration:
                self.calls[operation] -= 1
                return
            except (ClientError, BotoCoreError, OSError) as exc:
                error = map_error(operation, exc)
                self._on_error(operation, error.code)
                raise error from exc
            yield page


def _ignore_error(operation: str, code: str) -> None:
    """Default hook: commands that export no metrics still get the typed error."""


# ---------------------------------------------------------------------------------------------
# Listing responses: a compiled parser for the pages every cycle reads
# ---------------------------------------------------------------------------------------------

#: Output shapes parsed by `ListingParsers`, by protocol: the pages every cycle lists
#: (the Velero bucket, the DR location, the replica inventory, the replicas' locks).
FAST_OUTPUTS: dict[str, frozenset[str]] = {
    "rest-xml": frozenset({"ListObjectsV2Output"}),
    "ec2": frozenset({"DescribeSnapshotsResult", "DescribeLockedSnapshotsResult"}),
}

# How a member's element becomes a value (the second field of a `_Member`); a _TEXTS is a
# structure of text members only (EC2's Tag), read by a shorter loop.
_TEXT, _CONVERT, _STRUCT, _LIST, _FLAT, _TEXTS = range(6)
#: Member locations botocore reads from the HTTP response, not the body.
_NOT_BODY = frozenset({"header", "headers", "statusCode"})
#: Scalar types and how botocore turns their text into a value.
_SCALARS: dict[str, Callable[[str], Any]] = {
    "integer": int,
    "long": int,
    "float": float,
    "double": float,
    "boolean": lambda text: text == "true",
}

#: (member name, how, detail): detail is the converter, the structure's plan, or the
#: (how, detail) of a list's items.
_Member = tuple[str, int, Any]
#: A structure's body members by element name (without namespace).
_Plan = dict[str, _Member]


class _NotCoveredError(Exception):
    """A shape or a document the compiled parser does not handle: botocore parses it."""


def compile_plan(shape: Any, timestamp: Callable[[str], Any]) -> _Plan:
    """The plan of a structure shape, read from botocore's model once: which element is
    which member, and how its text becomes a value — the same decisions botocore's XML
    parser takes for every element of every page (`_member_key_name`, `_parse_shape`).
    Raises `_NotCoveredError` for anything beyond structures, lists and plain scalars."""
    how, detail = _compile(shape, timestamp)
    if how not in (_STRUCT, _TEXTS):
        raise _NotCoveredError(shape.name)
    plan: _Plan = detail
    return plan


def _compile(shape: Any, timestamp: Callable[[str], Any]) -> tuple[int, Any]:
    """(how, detail) of one shape; see `_Member`."""
    kind = shape.type_name
    if shape.serialization.get("jsonvalue"):
        raise _NotCoveredError(shape.name)
    if kind in ("string", "character"):
        return _TEXT, None
    if kind == "timestamp":
        return _CONVERT, _repeats_remembered(timestamp)
    if kind in _SCALARS:
        return _CONVERT, _SCALARS[kind]
    if kind == "list":
        item = _compile(shape.member, timestamp)
        if item[0] in (_LIST, _FLAT):
            raise _NotCoveredError(shape.name)
        return (_FLAT if shape.serialization.get("flattened") else _LIST), item
    if kind == "structure":
        plan = _compile_structure(shape, timestamp)
        texts_only = all(how == _TEXT for _, how, _ in plan.values())
        return (_TEXTS if texts_only else _STRUCT), plan
    raise _NotCoveredError(f"{shape.name} ({kind})")


def _compile_structure(shape: Any, timestamp: Callable[[str], Any]) -> _Plan:
    if shape.metadata.get("exception") or shape.is_tagged_union:
        raise _NotCoveredError(shape.name)
    plan: _Plan = {}
    for name, member in shape.members.items():
        serialization = member.serialization
        if serialization.get("location") in _NOT_BODY or serialization.get("eventheader"):
            continue
        if serialization.get("xmlAttribute") or serialization.get("eventstream"):
            raise _NotCoveredError(f"{shape.name}.{name}")
        element = _element_name(member, name)
        if element in plan:
            raise _NotCoveredError(f"{shape.name}.{name}")
        how, detail = _compile(member, timestamp)
        plan[element] = (name, how, detail)
    return plan


def _repeats_remembered(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """`convert`, answering a text equal to the previous one with the previous value.

    S3 lists times to the second and a backup's files, adjacent in the listing, are
    mostly written within the same second; a datetime is immutable, so sharing it is safe.
    """
    last: list[tuple[str, Any]] = [("", None)]

    def converted(text: str) -> Any:
        previous = last[0]
        if text == previous[0] and previous[1] is not None:
            return previous[1]
        value = convert(text)
        last[0] = (text, value)
        return value

    return converted


def _element_name(member: Any, name: str) -> str:
    """The element a member is read from: botocore's `_member_key_name`."""
    if member.type_name == "list" and member.serialization.get("flattened"):
        item_name = member.member.serialization.get("name")
        if item_name is not None:
            return str(item_name)
    return str(member.serialization.get("name") or name)


def parse_xml(body: bytes) -> Any:
    """The element tree of a body, parsed as botocore parses it (expat, UTF-8); raises
    `_NotCoveredError` when it is not XML (botocore then reports it its own way)."""
    try:
        # The same expat parse botocore makes of the same AWS answer (defusedxml would add
        # nothing botocore's own parse of it does not already expose).
        parser = ElementTree.XMLParser(  # noqa: S314
            target=ElementTree.TreeBuilder(), encoding="utf-8"
        )
        parser.feed(body)
        return parser.close()
    except ElementTree.ParseError as error:
        raise _NotCoveredError("not XML") from error


def parse_structure(node: Any, plan: _Plan) -> dict[str, Any]:
    """A structure element as botocore's XML parser reads it, in one pass over its children.

    Unknown elements are skipped (botocore skips them too); a member repeated where the
    model has no flattened list, or a value a converter refuses, raises `_NotCoveredError`.
    Keys follow the document's order, not the model's (a dict compares equal either way).
    """
    parsed: dict[str, Any] = {}
    for child in node:
        member = plan.get(child.tag) or _learn_tag(plan, child.tag)
        if member is None:
            continue
        name, how, detail = member
        if how == _FLAT:
            value = _value(child, *detail)
            if name in parsed:
                parsed[name].append(value)
            else:
                parsed[name] = [value]
            continue
        if name in parsed:
            raise _NotCoveredError(f"{name} repeated")
        if how == _TEXT:
            text = child.text
            parsed[name] = "" if text is None else text
        else:
            parsed[name] = _value(child, how, detail)
    return parsed


#: Namespaced tags a plan learns (`{ns}Key` for `Key`): AWS answers in one namespace per
#: service, so a handful; the bound only keeps a strange answer from growing a plan.
_LEARNED_TAGS = 64


def _learn_tag(plan: _Plan, tag: str) -> _Member | None:
    """The member of a namespaced tag (botocore drops the `{namespace}`), remembered in the
    plan so that the next element with the same tag is one dict look-up."""
    member = plan.get(_local_name(tag))
    if member is not None and len(plan) < _LEARNED_TAGS:
        plan[tag] = member
    return member


def parse_texts(node: Any, plan: _Plan) -> dict[str, str]:
    """`parse_structure` of a structure whose members are all text (EC2's Tag, 25 to a
    snapshot): the same answer, with fewer steps per element."""
    parsed: dict[str, str] = {}
    for child in node:
        member = plan.get(child.tag) or _learn_tag(plan, child.tag)
        if member is None:
            continue
        name = member[0]
        if name in parsed:
            raise _NotCoveredError(f"{name} repeated")
        text = child.text
        parsed[name] = "" if text is None else text
    return parsed


def _value(node: Any, how: int, detail: Any) -> Any:
    """One element's value; an empty element's text is `""`, as in botocore."""
    if how == _STRUCT:
        return parse_structure(node, detail)
    if how == _TEXTS:
        return parse_texts(node, detail)
    if how == _TEXT:
        text = node.text
        return "" if text is None else text
    if how == _CONVERT:
        text = node.text
        try:
            return detail("" if text is None else text)
        except (TypeError, ValueError) as error:
            raise _NotCoveredError(str(error)) from error
    if how == _LIST:
        item_how, item_detail = detail
        if item_how == _STRUCT:
            return [parse_structure(item, item_detail) for item in node]
        if item_how == _TEXTS:
            return [parse_texts(item, item_detail) for item in node]
        return [_value(item, item_how, item_detail) for item in node]
    raise _NotCoveredError("list of lists")


def _local_name(tag: str) -> str:
    return tag[tag.rfind("}") + 1 :]


# ---------------------------------------------------------------------------------------------
# Listing pages read again: the previous pass's parse of a body that did not change
# ---------------------------------------------------------------------------------------------

#: Elements of an EC2 answer that differ in every answer (AWS names each request) or may
#: (an opaque token), whatever the page holds: left out of a page's digest, read afresh.
_VOLATILE = ("requestId", "nextToken")


@dataclass(frozen=True, slots=True)
class _PageKey:
    """What identifies an EC2 page: `content` (its shape and the digest of its body without
    the `_VOLATILE` elements), and those elements' own texts (None: absent)."""

    content: tuple[str, bytes]
    request_id: str | None
    next_token: str | None


def page_key(shape: str, body: bytes) -> _PageKey | None:
    """The key of a page, or None when it cannot be told safely (a volatile element
    repeated, or holding an entity reference or anything but ASCII): then the page is
    parsed as always."""
    digest = hashlib.sha256()
    texts: dict[str, str | None] = {}
    spans = []
    for name in _VOLATILE:
        opening, closing = f"<{name}>".encode(), f"</{name}>".encode()
        start = body.find(opening)
        end = body.find(closing, start) if start >= 0 else -1
        if start < 0 or end < 0:
            texts[name] = None
            continue
        text = body[start + len(opening) : end]
        if body.find(opening, start + 1) >= 0 or b"&" in text or not text.isascii():
            return None
        texts[name] = text.decode("ascii")
        spans.append((start, end + len(closing)))
    position = 0
    for start, end in sorted(spans):
        if start < position:
            return None
        digest.update(body[position:start])
        position = end
    digest.update(body[position:])
    return _PageKey((shape, digest.digest()), texts["requestId"], texts["nextToken"])


#: Member of a parsed page naming its `page_key` content (a page a consumer may keep).
PAGE_KEY = "SnapdPageKey"
#: Member of a page answered from a `PageMemo`: what the consumer built from it last pass.
RECALLED = "SnapdRecalled"
_ABSENT = object()


class PageMemo:
    """What a consumer built from each page of one listing family's last pass, by the
    page's `page_key` content — not the page's records, which are garbage once built from
    (about 9 KB a snapshot with its tags: keeping them would cost a daemon with 50,000
    replicas some 450 MB).

    A page whose body is byte for byte one of the last pass (request id and next token
    aside) has the same parse, so what was built from it holds: the parser answers it
    unparsed with that object under `RECALLED`, and `built` hands it back. Only pages a
    consumer built from through `built` are ever recalled, so a recalled page always has
    its object. What a pass does not meet again is forgotten at its end.
    """

    def __init__(self) -> None:
        self._previous: dict[tuple[str, bytes], Any] = {}
        self._current: dict[tuple[str, bytes], Any] = {}

    def recall(self, content: tuple[str, bytes]) -> Any:
        """What was built from a page of this content (`_ABSENT` when nothing)."""
        made = self._current.get(content, _ABSENT)
        if made is _ABSENT:
            made = self._previous.get(content, _ABSENT)
            if made is not _ABSENT:
                self._current[content] = made
        return made

    def built(self, page: dict[str, Any], build: Callable[[dict[str, Any]], T]) -> T:
        """`build(page)`, or what it gave for this page's content in the last pass. The
        object is shared between passes: callers read it, never change it."""
        if RECALLED in page:
            recalled: T = page[RECALLED]
            return recalled
        made = build(page)
        content = page.get(PAGE_KEY)
        if content is not None:
            self._current[content] = made
        return made

    def end_pass(self) -> None:
        """The pass is over: what it read is what the next pass may find again."""
        self._previous, self._current = self._current, {}


def _recalled_answer(key: _PageKey, made: Any) -> dict[str, Any]:
    """The answer to a page recalled from a `PageMemo`: the object built from its content,
    and this body's own next token and request id (what `_ec2_answer` reads of them)."""
    answer: dict[str, Any] = {RECALLED: made}
    if key.next_token is not None:
        answer["NextToken"] = key.next_token
    if key.request_id is not None:
        answer["ResponseMetadata"] = {"RequestId": key.request_id or None}
    return answer


def volatile_agrees(parsed: dict[str, Any], key: _PageKey) -> bool:
    """Whether the parse holds the volatile members exactly where the key found them: a
    `<nextToken/>` the key does not strip, yet parsed as a NextToken, makes a page that
    is never kept (a recall would lose or invent the token)."""
    return ("NextToken" in parsed) == (key.next_token is not None) and (
        "ResponseMetadata" in parsed
    ) == (key.request_id is not None)


def _memo_key(memo: PageMemo | None, shape: str, body: Any) -> _PageKey | None:
    """A page's `page_key` when a `repeated_pages` pass is running and the body is bytes."""
    if memo is None or not isinstance(body, bytes):
        return None
    return page_key(shape, body)


#: The memo of the `repeated_pages` pass running in this task, if any.
_PAGE_MEMO: ContextVar[PageMemo | None] = ContextVar("snapd_page_memo", default=None)


@contextlib.contextmanager
def remembering(memo: PageMemo) -> Iterator[PageMemo]:
    """One pass of `memo`: EC2 listing pages parsed inside, in this task (a context
    variable, so other tasks' calls are untouched), are recalled from it and kept in it;
    leaving ends the pass."""
    token = _PAGE_MEMO.set(memo)
    try:
        yield memo
    finally:
        _PAGE_MEMO.reset(token)
        memo.end_pass()


class ListingParsers(AioResponseParserFactory):  # type: ignore[misc]
    """botocore's response-parser factory, whose rest-xml and ec2 parsers read the listing
    pages in `FAST_OUTPUTS` with a plan compiled from the model (`compile_plan`).

    botocore's XML parser re-derives every element's member and handler from the model,
    element by element (about 45 ms of CPU for a page of 1,000 S3 objects); the plan walks
    the same tree once. Only successful answers of those shapes take this path: errors,
    other operations, and any document the plan does not cover (`_NotCoveredError`) go to
    botocore's own parser. `fast` and `fallback` count each path by shape name.
    """

    def __init__(self) -> None:
        super().__init__()
        self._plans: dict[int, tuple[Any, Callable[[str], Any], _Plan | None]] = {}
        self.fast: Counter[str] = Counter()
        self.fallback: Counter[str] = Counter()
        #: Pages answered from a `PageMemo`, unparsed, by shape name.
        self.remembered: Counter[str] = Counter()

    def create_parser(self, protocol_name: str) -> Any:
        parser_class = _LISTING_PARSERS.get(protocol_name)
        if parser_class is None:
            return super().create_parser(protocol_name)
        parser = parser_class(**self._defaults)
        parser.listings = self
        return parser

    def plan_for(self, shape: Any, protocol: str, timestamp: Callable[[str], Any]) -> _Plan | None:
        """The compiled plan of a listing's output shape; None for any other shape."""
        if shape is None or shape.name not in FAST_OUTPUTS.get(protocol, ()):
            return None
        cached = self._plans.get(id(shape))
        if cached is not None and cached[0] is shape and cached[1] is timestamp:
            return cached[2]
        try:
            plan: _Plan | None = compile_plan(shape, timestamp)
        except _NotCoveredError:
            plan = None
        self._plans[id(shape)] = (shape, timestamp, plan)
        return plan

    def check_s3_200_error(
        self, operation_model: Any, response_dict: dict[str, Any] | None, **kwargs: Any
    ) -> None:
        """botocore's `_handle_200_error`, without a second parse of every listing page.

        S3 may answer a request with a 200 whose body is an `<Error>` document, or cut off;
        botocore parses each S3 body to catch those and turns them into a 500 (retried).
        For a listing page the tree built here is the one the parser then reads (kept in
        the response's context): the same check, one parse instead of two. Every other
        answer gets botocore's own handler.
        """
        shape = getattr(operation_model, "output_shape", None)
        body = (response_dict or {}).get("body")
        if (
            response_dict is None
            or shape is None
            or shape.name not in FAST_OUTPUTS["rest-xml"]
            or response_dict.get("status_code") != 200
            or not isinstance(body, bytes)
            or not body
        ):
            _handle_200_error(operation_model=operation_model, response_dict=response_dict)
            return
        try:
            with _collector_paused():
                root = parse_xml(body)
        except _NotCoveredError:
            response_dict["status_code"] = 500  # cut off: botocore retries it
            return
        if root.tag == "Error":
            response_dict["status_code"] = 500
            return
        response_dict.setdefault("context", {})[_PARSED_TREE] = (body, root)

    def parse(self, parser: Any, response: dict[str, Any], shape: Any) -> dict[str, Any] | None:
        """The parsed answer, or None when botocore's parser must read this one."""
        protocol = "ec2" if isinstance(parser, AioEC2QueryParser) else "rest-xml"
        plan = self.plan_for(shape, protocol, parser._timestamp_parser)
        if plan is None:
            return None
        memo = _PAGE_MEMO.get() if protocol == "ec2" else None
        key = _memo_key(memo, shape.name, response.get("body"))
        if memo is not None and key is not None:
            made = memo.recall(key.content)
            if made is not _ABSENT:
                self.remembered[shape.name] += 1
                return _recalled_answer(key, made)
        try:
            with _collector_paused():
                root = _checked_tree(response) or parse_xml(response["body"])
                if protocol == "ec2":
                    parsed = _ec2_answer(root, plan)
                else:
                    parsed = _rest_xml_answer(parser, response, shape, root, plan)
        except _NotCoveredError:
            self.fallback[shape.name] += 1
            return None
        self.fast[shape.name] += 1
        if key is not None and volatile_agrees(parsed, key):
            parsed[PAGE_KEY] = key.content
        return parsed


#: Where `check_s3_200_error` leaves a listing page's tree for the parser: (body, root).
_PARSED_TREE = "snapd_parsed_tree"


def _checked_tree(response: dict[str, Any]) -> Any:
    """The tree `check_s3_200_error` built of this very body, if it did (taken once)."""
    context = response.get("context")
    kept = context.pop(_PARSED_TREE, None) if isinstance(context, dict) else None
    if kept is None or kept[0] is not response.get("body"):
        return None
    return kept[1]


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector held off while a page's tree and dicts are built.

    A page of 1,000 snapshots is some 40,000 elements and 25,000 dicts, none of them in a
    cycle; each 700 allocations the collector would walk them all again (and, in a daemon
    holding thousands of cached backups, now and then the whole heap): measured, that was
    three quarters of the time to build a DescribeSnapshots page's tree. The collector
    runs as usual afterwards; it is switched back on only if it was on.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _rest_xml_answer(
    parser: Any, response: dict[str, Any], shape: Any, root: Any, plan: _Plan
) -> dict[str, Any]:
    """botocore's rest-xml `_do_parse`: metadata and header members (its own code), then
    the body's members."""
    parsed: dict[str, Any] = {"ResponseMetadata": parser._populate_response_metadata(response)}
    parser._parse_non_payload_attrs(response, shape, shape.members, parsed)
    parsed.update(parse_structure(root, plan))
    return parsed


def _ec2_answer(root: Any, plan: _Plan) -> dict[str, Any]:
    """botocore's ec2 `_do_parse`: the root's members, then its `requestId` as metadata."""
    parsed = parse_structure(root, plan)
    request_ids = [child for child in root if _local_name(child.tag) == "requestId"]
    if len(request_ids) > 1:
        raise _NotCoveredError("requestId repeated")
    if request_ids:
        parsed["ResponseMetadata"] = {"RequestId": request_ids[0].text}
    return parsed


class _RestXmlListingParser(AioRestXMLParser):  # type: ignore[misc]
    listings: ListingParsers

    def _do_parse(self, response: dict[str, Any], shape: Any) -> Any:
        parsed = self.listings.parse(self, response, shape)
        return parsed if parsed is not None else super()._do_parse(response, shape)

    def _parse_non_payload_attrs(
        self,
        response: dict[str, Any],
        shape: Any,
        member_shapes: Any,
        final_parsed: dict[str, Any],
    ) -> None:
        """botocore's, with the answer's headers looked up in a plain dict.

        botocore asks the case-insensitive header map for each of an output's header
        members: some 60 for GetObject, nearly all absent, each miss a KeyError raised and
        caught inside the map. That was a fifth of the CPU of a cold cycle's GetObject.
        Here the dozen headers the answer has are lowercased once and each member is a
        plain look-up; the members are visited in the model's order, as botocore does.
        """
        headers = response["headers"]
        present = {name.lower(): headers[name] for name in headers}
        for name, member_shape, location, header in _header_members(member_shapes):
            if location == "header":
                if header in present:
                    final_parsed[name] = self._parse_shape(member_shape, present[header])
            elif location == "statusCode":
                final_parsed[name] = self._parse_shape(member_shape, response["status_code"])
            else:
                final_parsed[name] = self._parse_header_map(member_shape, headers)


#: Per output shape (by its members mapping): its members outside the body, in the model's
#: order, as (name, shape, location, lowercased header name).
_HEADER_MEMBERS: dict[int, tuple[Any, list[tuple[str, Any, str, str]]]] = {}


def _header_members(member_shapes: Any) -> list[tuple[str, Any, str, str]]:
    """The members botocore's `_parse_non_payload_attrs` reads, worked out once per shape."""
    cached = _HEADER_MEMBERS.get(id(member_shapes))
    if cached is not None and cached[0] is member_shapes:
        return cached[1]
    members = []
    for name, member_shape in member_shapes.items():
        location = member_shape.serialization.get("location")
        if location in {"header", "headers", "statusCode"}:
            header = member_shape.serialization.get("name", name).lower()
            members.append((name, member_shape, location, header))
    _HEADER_MEMBERS[id(member_shapes)] = (member_shapes, members)
    return members


class _Ec2ListingParser(AioEC2QueryParser):  # type: ignore[misc]
    listings: ListingParsers

    def _do_parse(self, response: dict[str, Any], shape: Any) -> Any:
        parsed = self.listings.parse(self, response, shape)
        return parsed if parsed is not None else super()._do_parse(response, shape)


_LISTING_PARSERS: dict[str, type[Any]] = {
    "rest-xml": _RestXmlListingParser,
    "ec2": _Ec2ListingParser,
}
