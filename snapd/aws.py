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
- Timestamps in answers are parsed by `parse_aws_time`: ISO 8601 ones (every S3 listing's
  LastModified, every snapshot's StartTime) without dateutil's general parser, which cost
  two thirds of the client CPU of a warm cycle's 1000-object listing pages.
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection
from datetime import datetime
from types import TracebackType
from typing import Any

import aioboto3
from aiobotocore.session import get_session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.utils import parse_timestamp as botocore_parse_timestamp

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


#: `2024-01-01T02:00:00.000Z` and its kin: the timestamps AWS writes in XML and JSON bodies.
_ISO_8601 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


def parse_aws_time(value: str) -> datetime:
    """A timestamp of an AWS answer, read exactly as botocore's own parser reads it: ISO
    8601 by `datetime.fromisoformat` (a C function), anything else (HTTP-date headers,
    epoch seconds) by botocore's general parser."""
    if isinstance(value, str) and _ISO_8601.match(value):
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(value)
    parsed: datetime = botocore_parse_timestamp(value)
    return parsed


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
        botocore_session = get_session()
        parsers = botocore_session.get_component("response_parser_factory")
        parsers.set_parser_defaults(timestamp_parser=parse_aws_time)
        self._session = aioboto3.Session(botocore_session=botocore_session)
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
            self._clients[key] = await self._stack.enter_async_context(factory)
        return self._clients[key]

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
