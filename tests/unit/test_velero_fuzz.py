"""Fuzzing Velero's files: whatever the bucket holds, snapd reports it and carries on.

Realistic files from the bucket builder are truncated, bit-flipped, or have one JSON value
replaced by a value of another type. The pure parsers may only ever raise BackupReadError;
build_scan and a whole discovery (over an in-memory S3) must never raise at all.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import os
import tarfile
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simworld.velero_bucket import (
    BACKUP_FILE,
    CSI,
    CSI_CONTENTS,
    CSI_SNAPSHOTS,
    DATA_MOVER,
    FAILED,
    NATIVE,
    POD_VOLUME,
    SKIPPED,
    TARBALL,
    VOLUME_INFO,
    VOLUME_SNAPSHOTS,
    VeleroBucket,
    Volume,
)
from snapd.errors import BackupReadError, PermanentError
from snapd.models import BackupScan
from snapd.velero import VeleroReader, build_scan
from snapd.velero_files import (
    BackupFiles,
    parse_backup_document,
    parse_csi_volume_snapshot_contents,
    parse_csi_volume_snapshots,
    parse_tarball,
    parse_volume_info,
    parse_volume_snapshots,
)

NAME = "daily-20240615020031"
VERSIONS = ("1.9", "1.11", "1.12", "1.14", "1.17")
VOLUMES = [
    Volume("shop", "db", 20, "eu-west-1a", NATIVE, "io2", iops=4000),
    Volume("shop", "cache", 5, "eu-west-1b", CSI),
    Volume("shop", "broken", method=FAILED),
    Volume("shop", "uploads", method=POD_VOLUME),
    Volume("shop", "tmp", method=SKIPPED),
    Volume("billing", "ledger", 50, method=DATA_MOVER),
    Volume("legacy", "old", 8, "eu-west-1c", NATIVE, "gp2", in_tree=True, zone_in="label"),
]
PARSERS: dict[str, Callable[[bytes], object]] = {
    BACKUP_FILE: lambda raw: parse_backup_document(NAME, raw),
    VOLUME_SNAPSHOTS: parse_volume_snapshots,
    VOLUME_INFO: parse_volume_info,
    CSI_SNAPSHOTS: parse_csi_volume_snapshots,
    CSI_CONTENTS: parse_csi_volume_snapshot_contents,
    TARBALL: parse_tarball,
}
FUZZ = settings(
    # FUZZ_EXAMPLES=3000 for a deeper hunt; the default keeps `make test` fast.
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _bucket(version: str) -> VeleroBucket:
    bucket = VeleroBucket("velero", mode="memory")
    bucket.backup(NAME, schedule="daily", version=version, phase="PartiallyFailed", volumes=VOLUMES)
    return bucket


BUCKETS = {version: _bucket(version) for version in VERSIONS}
FILES = [
    (version, suffix)
    for version, bucket in BUCKETS.items()
    for suffix in PARSERS
    if bucket.key(NAME, suffix) in bucket.files
]


# -- mutations ---------------------------------------------------------------------------------

WRONG = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["snap-", "snap-xyz", "unknown", "10Qi", "9999-12-31T23:59:59-05:00", ""]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


def _paths(value: object, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every location inside a JSON value (the root included)."""
    found = [path]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*path, index))
    return found


def _replace(value: Any, path: tuple[Any, ...], new: object) -> Any:
    if not path:
        return new
    head, *rest = path
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[head] = _replace(value[head], tuple(rest), new)
    return copy


def _mutate_json(value: object, data: st.DataObject) -> object:
    paths = _paths(value)
    path = data.draw(st.sampled_from(paths), label="path")
    return _replace(value, path, data.draw(WRONG, label="new value"))


def _mutate_document(suffix: str, raw: bytes, data: st.DataObject) -> bytes:
    """Replace one JSON value anywhere in the file (in one tar member for the tarball)."""
    if suffix == BACKUP_FILE:
        return json.dumps(_mutate_json(json.loads(raw), data)).encode()
    if suffix != TARBALL:
        return gzip.compress(
            json.dumps(_mutate_json(json.loads(gzip.decompress(raw)), data)).encode()
        )
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as archive:
        members = [(m, archive.extractfile(m).read()) for m in archive.getmembers()]  # type: ignore[union-attr]
    target = data.draw(
        st.sampled_from([i for i, (m, _) in enumerate(members) if m.name.endswith(".json")])
    )
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for index, (member, original) in enumerate(members):
            content = original
            if index == target:
                content = json.dumps(_mutate_json(json.loads(original), data)).encode()
                member.size = len(content)
            archive.addfile(member, io.BytesIO(content))
    return out.getvalue()


def _mutate(suffix: str, raw: bytes, data: st.DataObject) -> bytes:
    kind = data.draw(st.sampled_from(["truncate", "flip", "json"]), label="kind")
    if kind == "truncate":
        return raw[: data.draw(st.integers(0, max(0, len(raw) - 1)), label="cut")]
    if kind == "flip":
        mutated = bytearray(raw)
        for _ in range(data.draw(st.integers(1, 4), label="flips")):
            position = data.draw(st.integers(0, len(raw) - 1), label="position")
            mutated[position] ^= data.draw(st.integers(1, 255), label="mask")
        return bytes(mutated)
    return _mutate_document(suffix, raw, data)


def _mutated_file(data: st.DataObject) -> tuple[VeleroBucket, str, bytes]:
    version, suffix = data.draw(st.sampled_from(FILES), label="file")
    bucket = BUCKETS[version]
    return bucket, suffix, _mutate(suffix, bucket.files[bucket.key(NAME, suffix)], data)


# -- properties --------------------------------------------------------------------------------


@FUZZ
@given(st.data())
def test_parsers_only_raise_backup_read_error(data: st.DataObject) -> None:
    """Whatever a file holds, its parser returns records or a reason — never a crash."""
    _, suffix, raw = _mutated_file(data)
    reason = "parsed"
    try:
        PARSERS[suffix](raw)
    except BackupReadError as exc:
        reason = str(exc)
    assert reason


def _files_of(bucket: VeleroBucket, override: dict[str, bytes]) -> tuple[Any, BackupFiles] | None:
    """Parse a backup's files as discovery does, problems collected instead of raised."""
    raw = {s: override.get(s, bucket.files.get(bucket.key(NAME, s))) for s in PARSERS}
    try:
        document = parse_backup_document(NAME, raw[BACKUP_FILE] or b"")
    except BackupReadError:
        return None
    parsed: dict[str, Any] = {}
    problems: list[str] = []
    for suffix, data in raw.items():
        if data is None or suffix == BACKUP_FILE:
            continue
        try:
            parsed[suffix] = PARSERS[suffix](data)
        except BackupReadError as exc:
            problems.append(str(exc))
    files = BackupFiles(
        native_snapshots_completed=document.native_snapshots_completed,
        volume_snapshots=parsed.get(VOLUME_SNAPSHOTS),
        volume_info=parsed.get(VOLUME_INFO),
        csi_snapshots=parsed.get(CSI_SNAPSHOTS),
        csi_contents=parsed.get(CSI_CONTENTS),
        tarball=parsed.get(TARBALL),
        problems=tuple(problems),
    )
    return document.backup, files


@FUZZ
@given(st.data(), st.booleans())
def test_build_scan_never_raises(data: st.DataObject, copy_failed: bool) -> None:
    """Any mix of readable and corrupt files becomes a scan; unique snapshot ids, no crash."""
    bucket, suffix, raw = _mutated_file(data)
    result = _files_of(bucket, {suffix: raw})
    if result is None:
        return
    backup, files = result
    scan = build_scan(backup, files, schedules=("daily",), copy_failed_backups=copy_failed)
    assert isinstance(scan, BackupScan)
    ids = [s.snapshot_id for s in scan.snapshots]
    assert len(ids) == len(set(ids))
    if files.problems and scan.backup is not None:
        assert not scan.backup.files_complete


# -- discovery over an in-memory S3 ------------------------------------------------------------


class _Body:
    """An aiobotocore StreamingBody stand-in: async read, async context manager."""

    def __init__(self, data: bytes) -> None:
        self._stream = io.BytesIO(data)

    async def __aenter__(self) -> _Body:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def read(self, amt: int | None = None) -> bytes:
        return self._stream.read(-1 if amt is None else amt)


class FakeS3:
    """Just enough of S3 (ListObjectsV2 with delimiter and paging, GetObject) for discovery."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects
        self.calls: Counter[str] = Counter()

    async def call(self, service: str, region: str, operation: str, **params: Any) -> Any:
        self.calls[operation] += 1
        data = self.objects.get(params["Key"])
        if data is None:
            raise PermanentError(operation, "NoSuchKey", "The specified key does not exist.")
        return {"ContentLength": len(data), "Body": _Body(data)}

    async def pages(
        self, service: str, region: str, operation: str, **params: Any
    ) -> AsyncIterator[dict[str, Any]]:
        prefix, delimiter = params["Prefix"], params.get("Delimiter")
        size = params.get("PaginationConfig", {}).get("PageSize", 1000)
        entries: list[tuple[str, bool]] = []
        for key in sorted(k for k in self.objects if k.startswith(prefix)):
            rest = key[len(prefix) :]
            if delimiter and delimiter in rest:
                common = prefix + rest.split(delimiter, 1)[0] + delimiter
                if not entries or entries[-1] != (common, True):
                    entries.append((common, True))
            else:
                entries.append((key, False))
        for start in range(0, max(1, len(entries)), size):
            self.calls[operation] += 1
            chunk = entries[start : start + size]
            yield {
                "CommonPrefixes": [{"Prefix": k} for k, common in chunk if common] or None,
                "Contents": [{"Key": k, "Size": len(self.objects[k])} for k, c in chunk if not c],
            }


@FUZZ
@given(st.data())
def test_discovery_never_raises(data: st.DataObject) -> None:
    """A corrupt file in one backup is that backup's error; discovery itself carries on."""
    bucket, suffix, raw = _mutated_file(data)
    objects = dict(bucket.files)
    objects[bucket.key(NAME, suffix)] = raw
    good = VeleroBucket("velero", mode="memory")
    good.backup("daily-20240616020031", schedule="daily", volumes=[Volume("shop", "db")])
    objects.update(good.files)

    async def run() -> Any:
        return await VeleroReader().discover(
            FakeS3(objects),
            bucket="velero",
            prefix="",
            region="eu-west-1",
            schedules=["daily"],
            copy_failed_backups=False,
        )

    discovery = asyncio.run(run())
    good_ids = set(good.backups["daily-20240616020031"].snapshot_ids)
    assert good_ids <= {s.snapshot_id for s in discovery.snapshots}
    assert all(e.backup == NAME for e in discovery.errors)


def test_fake_s3_pages_like_s3() -> None:
    """The in-memory S3 rolls prefixes up and pages them like S3 does (so the fuzzing is fair)."""

    async def run() -> list[dict[str, Any]]:
        s3 = FakeS3({"backups/a/x": b"", "backups/b/y": b"", "backups/c": b""})
        return [
            p
            async for p in s3.pages(
                "s3",
                "r",
                "ListObjectsV2",
                Prefix="backups/",
                Delimiter="/",
                PaginationConfig={"PageSize": 2},
            )
        ]

    pages = asyncio.run(run())
    assert [p["CommonPrefixes"] for p in pages] == [
        [{"Prefix": "backups/a/"}, {"Prefix": "backups/b/"}],
        None,
    ]
    assert pages[1]["Contents"] == [{"Key": "backups/c", "Size": 0}]


@pytest.mark.parametrize("version", VERSIONS)
def test_unmutated_fixtures_parse_cleanly(version: str) -> None:
    """The fuzzing starts from valid files: each parses without a problem."""
    result = _files_of(BUCKETS[version], {})
    assert result is not None
    assert result[1].problems == ()
