"""moto's S3 ListObjectsV2, answered from a sorted index of each bucket's key names.

moto 5.2 answers every ListObjectsV2 page by walking every key of the bucket in Python,
sorting them all, and scanning to the continuation token: about 0.5 s of moto CPU per page
at 50,000 objects, so the 50 pages of a 10,000-backup Velero bucket cost 25 s, where S3
answers each page in tens of milliseconds. That cost lands on the wall-clock figures of
`make bench` and on the CPU the tests share, and says nothing about snapd.

Then it spends another 0.5 ms per listed object serializing the page through its generic,
shape-driven serializer (a dateutil parse of every LastModified among it).

`install()` keeps, per bucket, the sorted names of its keys, dropped whenever the bucket's key
store changes, and answers each page from the first name past the token or `StartAfter`:
O(page + log n). The pages are moto's own, item for item: the same keys and common prefixes
in the same order, delete markers left out but still holding their common prefix, the same
truncation and continuation tokens (registered where moto looks them up). Each page's
`<Contents>` elements are written directly and set where moto's serializer puts them; the
rest of the answer (status, headers, every other element) is still moto's own.
`tests/integration/test_s3index.py` holds both to moto's own answers, byte for byte, on
generated buckets.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable
from typing import Any
from xml.sax.saxutils import escape

from simworld.ec2sim import MOTO_VERSION, MotoMismatchError

#: The methods through which moto changes a bucket's key store; each drops the index.
_MUTATORS = (
    "__setitem__",
    "__delitem__",
    "pop",
    "popitem",
    "setlist",
    "update",
    "clear",
    "setdefault",
)

#: moto's `S3Backend.list_objects_v2` parameters, as the replacement expects them.
_LIST_PARAMETERS = [
    "self",
    "bucket",
    "prefix",
    "delimiter",
    "continuation_token",
    "start_after",
    "max_keys",
]

#: The fields of a listed object that `_contents_xml` writes, in the order moto writes them.
_CONTENT_FIELDS = ("Key", "LastModified", "ETag", "ChecksumAlgorithm", "Size", "StorageClass")

_install_lock = threading.Lock()
#: moto's own methods that `install()` replaced, by name, for the fallbacks and the tests.
_MOTO: dict[str, Callable[..., Any]] = {}


def install() -> None:
    """Patch moto (once per process) to answer ListObjectsV2 from the index."""
    with _install_lock:
        if _MOTO:
            return
        from moto.s3.models import S3Backend
        from moto.s3.responses import S3Response
        from moto.s3.utils import _VersionedKeyStore

        _check_moto(S3Backend, _VersionedKeyStore)
        for name in _MUTATORS:
            setattr(_VersionedKeyStore, name, _dropping_index(getattr(_VersionedKeyStore, name)))
        replacements: tuple[tuple[type, str, Callable[..., Any]], ...] = (
            (S3Response, "serialized", _serialized),
            (S3Backend, "list_objects_v2", _indexed_list_objects_v2),
        )
        for owner, name, replacement in replacements:
            _MOTO[name] = getattr(owner, name)
            setattr(owner, name, replacement)


def moto_list_objects_v2() -> Callable[..., Any]:
    """moto's own `S3Backend.list_objects_v2` (for the tests); needs `install()`."""
    return _moto("list_objects_v2")


def moto_serialized() -> Callable[..., Any]:
    """moto's own `S3Response.serialized` (for the tests); needs `install()`."""
    return _moto("serialized")


def _moto(name: str) -> Callable[..., Any]:
    if name not in _MOTO:
        raise RuntimeError("simworld.s3index.install() has not run")
    return _MOTO[name]


def _check_moto(backend: type, store: type) -> None:
    import inspect

    import moto

    problems = []
    if moto.__version__ != MOTO_VERSION:
        problems.append(f"moto {moto.__version__} is installed, the index needs {MOTO_VERSION}")
    names = list(inspect.signature(backend.list_objects_v2).parameters)  # type: ignore[attr-defined]
    if names != _LIST_PARAMETERS:
        problems.append(f"S3Backend.list_objects_v2{tuple(names)} != {tuple(_LIST_PARAMETERS)}")
    if not issubclass(store, dict):
        problems.append("_VersionedKeyStore is no longer a dict")
    if problems:
        raise MotoMismatchError(
            "the S3 listing index does not fit this moto; re-verify simworld/s3index.py:\n  - "
            + "\n  - ".join(problems)
        )


def _dropping_index(method: Callable[..., Any]) -> Callable[..., Any]:
    """`method`, then a new version of the store, so no listing uses names from before.

    The version moves after the change: a listing that read the new version sees the change
    in the names it copies; one that read the old version stored them under a version that
    is already stale, and the next listing builds them again.
    """

    def changed(store: Any, *args: Any, **kwargs: Any) -> Any:
        result = method(store, *args, **kwargs)
        store.__dict__["_index_version"] = store.__dict__.get("_index_version", 0) + 1
        return result

    changed.__name__ = method.__name__
    changed.__doc__ = method.__doc__
    return changed


def _sorted_names(store: Any) -> list[str]:
    """The store's key names in order, built once per version of the store."""
    version = store.__dict__.get("_index_version", 0)
    cached = store.__dict__.get("_index")
    if cached is not None and cached[0] == version:
        names: list[str] = cached[1]
        return names
    names = sorted(dict.keys(store))
    store.__dict__["_index"] = (version, names)
    return names


def _indexed_list_objects_v2(  # noqa: PLR0917 (moto's signature, called positionally)
    self: Any,
    bucket: Any,
    prefix: str | None,
    delimiter: str | None,
    continuation_token: str | None,
    start_after: str | None,
    max_keys: int,
) -> tuple[list[Any], bool, str | None]:
    """moto's `S3Backend.list_objects_v2`, one page's worth of work instead of the bucket's."""
    from moto.s3.models import FakeTableStorageBucket

    if isinstance(bucket, FakeTableStorageBucket):
        moto_page: tuple[list[Any], bool, str | None] = moto_list_objects_v2()(
            self, bucket, prefix, delimiter, continuation_token, start_after, max_keys
        )
        return moto_page
    after = None
    if continuation_token or start_after:
        after = (
            self._pagination_tokens.get(continuation_token) if continuation_token else start_after
        )
    wanted = 0 if max_keys == 0 else max_keys + 1
    items = _page(bucket.keys, prefix or "", delimiter, after, wanted)
    if max_keys == 0 or len(items) <= max_keys:
        return items[: max(max_keys, 0)], False, None
    page = items[:max_keys]
    return page, True, _continuation_token(self, page[-1])


def _continuation_token(backend: Any, last: Any) -> str:
    """moto's token for a page ending at `last`, registered where moto resolves it."""
    from moto.s3.models import FakeKey
    from moto.utilities.utils import md5_hash

    name = last.name if isinstance(last, FakeKey) else last
    token: str = md5_hash(name.encode("utf-8")).hexdigest()
    backend._pagination_tokens[token] = name
    return token


def _page(
    store: Any, prefix: str, delimiter: str | None, after: str | None, wanted: int
) -> list[Any]:
    """Up to `wanted` items past `after`: live keys, and common prefixes (as strings)."""
    from moto.s3.models import FakeDeleteMarker

    names = _sorted_names(store)
    index = bisect.bisect_left(names, prefix)
    if after is not None:
        index = max(index, bisect.bisect_right(names, after))
    items: list[Any] = []
    while index < len(names) and len(items) < wanted:
        name = names[index]
        if not name.startswith(prefix):
            break
        rest = name[len(prefix) :]
        if delimiter and delimiter in rest:
            folder = prefix + rest.split(delimiter)[0] + delimiter
            index = _past(names, index, folder)
            if after is None or folder > after:
                items.append(folder)
            continue
        index += 1
        versions = dict.get(store, name)
        if versions and not isinstance(versions[-1], FakeDeleteMarker):
            items.append(versions[-1])
    return items


def _past(names: list[str], index: int, folder: str) -> int:
    """The index of the first name from `index` on that does not start with `folder`."""
    while index < len(names) and names[index].startswith(folder):
        index += 1
    return index


def _serialized(response: Any, action_result: Any) -> Any:
    """moto's answer, with a ListObjectsV2 page's `<Contents>` written directly.

    moto serializes the page without its objects, then they go in after `</IsTruncated>`, the
    element moto's serializer writes just before them. A page with fields this writer does not
    know (the owners of `FetchOwner`) goes through moto's serializer whole.
    """
    result = action_result.result
    contents = result.get("Contents") if isinstance(result, dict) else None
    if response.data.get("Action") != "ListObjectsV2" or not contents:
        return moto_serialized()(response, action_result)
    if any(not _CONTENT_FIELDS_SET.issuperset(item) for item in contents):
        return moto_serialized()(response, action_result)
    status, headers, body = moto_serialized()(
        response, type(action_result)({**result, "Contents": []})
    )
    marker = "</IsTruncated>"
    at = body.index(marker) + len(marker)
    return status, headers, body[:at] + _contents_xml(contents) + body[at:]


_CONTENT_FIELDS_SET = frozenset(_CONTENT_FIELDS)


def _contents_xml(contents: list[dict[str, Any]]) -> str:
    """The `<Contents>` elements of a page, as moto's rest-xml serializer writes them."""
    parts: list[str] = []
    for item in contents:
        parts.append("<Contents>")
        for field in _CONTENT_FIELDS:
            value = item.get(field)
            if value is None:
                continue
            for text in value if isinstance(value, list) else (value,):
                parts.append(f"<{field}>{escape(str(text))}</{field}>")
        parts.append("</Contents>")
    return "".join(parts)
