"""simworld.s3index answers ListObjectsV2 exactly as moto does, only without walking the bucket.

Generated buckets (nested names, delete markers, checksummed objects) and generated queries
(prefix, delimiter, StartAfter, MaxKeys), paged to the end through the continuation tokens:
the indexed listing must give moto's own pages, and the HTTP answer moto's own bytes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simworld import s3index
from simworld.moto_server import ACCOUNT_ID

_names = st.text(alphabet="ab/-", min_size=1, max_size=5)
_bucket_numbers = itertools.count()

_AUTH = {
    "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request, "
    "SignedHeaders=host, Signature=x",
    "Host": "s3.amazonaws.com",
}


@pytest.fixture(scope="module")
def backend() -> Any:
    import moto.s3.models

    s3index.install()
    return moto.s3.models.s3_backends[ACCOUNT_ID]["global"]


def _new_bucket(backend: Any, names: list[str], deleted: set[str], checksummed: set[str]) -> Any:
    """A bucket of `names`, versioned, `deleted` ones behind a delete marker."""
    name = f"s3index-{next(_bucket_numbers)}"
    backend.create_bucket(name, "us-east-1")
    backend.put_bucket_versioning(name, "Enabled")
    for key in names:
        backend.put_object(
            name, key, key.encode(), checksum_value="AAAAAA==" if key in checksummed else None
        )
        if key in checksummed:
            backend.get_object(name, key).checksum_algorithm = "CRC32"
    for key in deleted:
        backend.delete_object(name, key)
    return backend.buckets[name]


def _pages(lister: Any, backend: Any, bucket: Any, query: dict[str, Any]) -> Iterator[Any]:
    """Every page of a listing, as the names in it and its truncation and token."""
    token = None
    for _ in range(200):
        items, truncated, token = lister(
            backend,
            bucket,
            query["prefix"],
            query["delimiter"],
            token,
            query["start_after"],
            query["max_keys"],
        )
        yield [getattr(item, "name", item) for item in items], truncated, token
        if not truncated:
            return
    raise AssertionError("the listing did not end in 200 pages")


_queries = st.fixed_dictionaries(
    {
        "prefix": st.one_of(st.none(), st.text(alphabet="ab/-", max_size=2)),
        "delimiter": st.sampled_from([None, "/", "-"]),
        "start_after": st.one_of(st.none(), _names),
        "max_keys": st.sampled_from([0, 1, 2, 3, 1000]),
    }
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    names=st.lists(_names, max_size=25, unique=True),
    deleted_at=st.sets(st.integers(0, 24)),
    checksummed_at=st.sets(st.integers(0, 24)),
    queries=st.lists(_queries, min_size=1, max_size=4),
)
def test_indexed_pages_are_motos_pages(
    backend: Any,
    names: list[str],
    deleted_at: set[int],
    checksummed_at: set[int],
    queries: list[Any],
) -> None:
    deleted = {names[i] for i in deleted_at if i < len(names)}
    checksummed = {names[i] for i in checksummed_at if i < len(names)}
    bucket = _new_bucket(backend, names, deleted, checksummed)
    for query in queries:
        moto_pages = list(_pages(s3index.moto_list_objects_v2(), backend, bucket, query))
        indexed_pages = list(_pages(type(backend).list_objects_v2, backend, bucket, query))
        assert indexed_pages == moto_pages, query


def test_a_listing_sees_every_change_to_the_bucket(backend: Any) -> None:
    bucket = _new_bucket(backend, ["a/1", "a/2", "b"], set(), set())
    query = {"prefix": None, "delimiter": None, "start_after": None, "max_keys": 1000}

    def listed() -> list[str]:
        return [
            name
            for page, _, _ in _pages(type(backend).list_objects_v2, backend, bucket, query)
            for name in page
        ]

    assert listed() == ["a/1", "a/2", "b"]
    backend.put_object(bucket.name, "a/15", b"x")
    assert listed() == ["a/1", "a/15", "a/2", "b"]
    backend.delete_object(bucket.name, "a/2")
    assert listed() == ["a/1", "a/15", "b"]
    backend.put_object(bucket.name, "a/2", b"again")
    backend.delete_object(bucket.name, "b", version_id=bucket.keys.getlist("b")[0].version_id)
    assert listed() == ["a/1", "a/15", "a/2"]


@pytest.mark.parametrize(
    "query",
    [
        "list-type=2",
        "list-type=2&max-keys=2",
        "list-type=2&delimiter=/",
        "list-type=2&prefix=a/&start-after=a/x",
        "list-type=2&fetch-owner=true",
        "list-type=2&encoding-type=url",
        "list-type=2&prefix=zz",
    ],
)
def test_the_http_answer_is_motos_byte_for_byte(
    backend: Any, monkeypatch: pytest.MonkeyPatch, query: str
) -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from moto.s3.responses import S3Response
    from werkzeug.test import Client

    bucket = _new_bucket(backend, ["a/x&<y>", "a/z", "b c", "c/d/e", "é"], {"c/d/e"}, {"b c"})
    client = Client(DomainDispatcherApplication(create_backend_app))

    def answer() -> tuple[int, bytes, dict[str, str]]:
        got = client.get(f"/{bucket.name}?{query}", headers=_AUTH)
        headers = {k: v for k, v in got.headers.items() if k.lower() != "x-amzn-requestid"}
        return got.status_code, got.data, headers

    indexed = answer()
    monkeypatch.setattr(S3Response, "serialized", s3index.moto_serialized())
    assert indexed == answer()
    assert indexed[0] == 200
