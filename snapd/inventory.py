"""What EC2 holds: our replicas in the destination region, and details of source snapshots.

All lookups are batched: DescribeSnapshots with a `snapshot-id` *filter* (one missing id
must not fail the call, as `SnapshotIds` would) in chunks of ≤200 values, and paginated
listings with `OwnerIds=self` plus the scope tag filter, so only our own replicas of our
own scope are ever seen — and therefore ever touched. No per-snapshot calls (the bash tool
this replaces made two per snapshot). Raw EC2 dicts stop here; callers get records.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from snapd import tags
from snapd.aws import AwsClients
from snapd.errors import first_error
from snapd.models import Replica, SnapshotMethod, SourceSnapshot

#: AWS accepts up to 200 values in one filter.
FILTER_CHUNK = 200
#: DescribeSnapshots page size (AWS allows 5..1000).
PAGE_SIZE = 1000
#: Concurrent chunked Describe calls; keeps us well inside the 100/20 token bucket.
DESCRIBE_CONCURRENCY = 4

MISSING = "missing"


@dataclass(frozen=True, slots=True)
class VolumeDetails:
    """What DescribeVolumes tells about a source volume that Velero did not record."""

    volume_id: str
    availability_zone: str | None
    volume_type: str | None
    iops: int | None
    throughput: int | None
    size_gib: int | None


def chunks(values: Iterable[str], size: int = FILTER_CHUNK) -> Iterator[list[str]]:
    """Unique values in order, `size` at a time."""
    batch: list[str] = []
    for value in dict.fromkeys(values):
        batch.append(value)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def parse_progress(value: str | None) -> int:
    """EC2's `"42%"` → 42; a missing or odd value is 0."""
    try:
        return max(0, min(100, int((value or "0").rstrip("%") or 0)))
    except ValueError:
        return 0


def build_replica_from_ec2(snapshot: dict[str, Any], region: str) -> Replica:
    """A Replica from one DescribeSnapshots entry of the destination region."""
    start = snapshot.get("StartTime")
    return tags.build_replica(
        snapshot_id=snapshot["SnapshotId"],
        region=region,
        state=snapshot.get("State", "pending"),
        progress=parse_progress(snapshot.get("Progress")),
        tags=tags.from_tag_list(snapshot.get("Tags")),
        size_gib=snapshot.get("VolumeSize"),
        encrypted=bool(snapshot.get("Encrypted")),
        kms_key_id=snapshot.get("KmsKeyId"),
        start_time=start if isinstance(start, datetime) else None,
        state_message=snapshot.get("StateMessage"),
        completion_minutes=_completion_minutes(snapshot),
    )


def _completion_minutes(snapshot: dict[str, Any]) -> int | None:
    """A time-based copy's CompletionDurationMinutes; None for a standard copy."""
    minutes = snapshot.get("CompletionDurationMinutes")
    if snapshot.get("TransferType") != "time-based" or not isinstance(minutes, int):
        return None
    return minutes


async def list_replicas(
    aws: AwsClients, region: str, scope: str, *, repeated: bool = False
) -> list[Replica]:
    """Every snapshot we own in `region` whose `snapd.io/cluster` tag is exactly `scope`.

    The tag filter narrows the listing, but EC2 treats `*` and `?` in filter values as
    wildcards: the filter alone is never trusted, each replica's tag must equal the scope
    (configuration refuses such scopes too; this holds whatever reaches here). `repeated`
    (a daemon's, listing the same region and scope every cycle): a page unchanged since the
    last listing is neither parsed nor built again — its replicas are the very objects of
    the last listing (`AwsClients.repeated_pages`); any change on a page builds it anew.
    """
    replicas: list[Replica] = []

    def build(page: dict[str, Any]) -> list[Replica]:
        return [build_replica_from_ec2(s, region) for s in page.get("Snapshots", [])]

    family = f"replicas:{region}:{scope}"
    with aws.repeated_pages(family) if repeated else contextlib.nullcontext() as memo:
        async for page in aws.pages(
            "ec2",
            region,
            "DescribeSnapshots",
            OwnerIds=["self"],
            Filters=[{"Name": f"tag:{tags.CLUSTER}", "Values": [scope]}],
            PaginationConfig={"PageSize": PAGE_SIZE},
        ):
            built = build(page) if memo is None else memo.built(page, build)
            replicas.extend(r for r in built if r.scope == scope)
    return replicas


async def describe_snapshots(
    aws: AwsClients, region: str, snapshot_ids: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """DescribeSnapshots of many ids by filter, ≤200 a call; unknown ids are simply absent."""
    found = await _describe_by_filter(
        lambda ids: aws.pages(
            "ec2",
            region,
            "DescribeSnapshots",
            OwnerIds=["self"],
            Filters=[{"Name": "snapshot-id", "Values": ids}],
            PaginationConfig={"PageSize": PAGE_SIZE},
        ),
        "Snapshots",
        snapshot_ids,
    )
    return {s["SnapshotId"]: s for s in found}


async def describe_replicas(
    aws: AwsClients, region: str, snapshot_ids: Iterable[str]
) -> dict[str, Replica]:
    """Current state of chosen replicas (the copier's poll), batched."""
    found = await describe_snapshots(aws, region, snapshot_ids)
    return {sid: build_replica_from_ec2(s, region) for sid, s in found.items()}


async def describe_volumes(
    aws: AwsClients, region: str, volume_ids: Iterable[str]
) -> dict[str, VolumeDetails]:
    """Type, IOPS, throughput and AZ of source volumes that still exist, batched."""
    volumes = await _describe_by_filter(
        lambda ids: aws.pages(
            "ec2",
            region,
            "DescribeVolumes",
            Filters=[{"Name": "volume-id", "Values": ids}],
            PaginationConfig={"PageSize": PAGE_SIZE},
        ),
        "Volumes",
        volume_ids,
    )
    return {
        v["VolumeId"]: VolumeDetails(
            volume_id=v["VolumeId"],
            availability_zone=v.get("AvailabilityZone"),
            volume_type=v.get("VolumeType"),
            iops=v.get("Iops"),
            throughput=v.get("Throughput"),
            size_gib=v.get("Size"),
        )
        for v in volumes
    }


async def _describe_by_filter(
    pages: Callable[[list[str]], AsyncIterator[dict[str, Any]]],
    result_key: str,
    values: Iterable[str],
) -> list[dict[str, Any]]:
    """Run a paginated, filtered Describe* (`pages(ids)`) over ≤200-value chunks, a few at
    once, and concatenate `result_key`: a filter, not `SnapshotIds`/`VolumeIds`, so one
    unknown id cannot fail the call."""
    limit = asyncio.Semaphore(DESCRIBE_CONCURRENCY)

    async def one_chunk(ids: list[str]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        async with limit:
            async for page in pages(ids):
                found.extend(page.get(result_key, []))
        return found

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one_chunk(ids)) for ids in chunks(values)]
    except ExceptionGroup as failed:
        raise first_error(failed) from failed
    return [item for task in tasks for item in task.result()]


async def add_source_details(
    aws: AwsClients, region: str, sources: Sequence[SourceSnapshot]
) -> list[SourceSnapshot]:
    """Sources with EC2 state, size, encryption and tags, plus volume details Velero lacks.

    A source EC2 no longer knows gets `state="missing"`. DescribeVolumes is asked for every
    source volume (batched; a deleted volume simply is not answered): Velero's CSI records
    lack type, IOPS and throughput, and its native records have type and zone but never
    throughput — without it a gp3 volume is restored at AWS's default 125 MiB/s. What
    Velero recorded wins; the volume fills in the rest.
    """
    snapshots = await describe_snapshots(aws, region, (s.snapshot_id for s in sources))
    needs_volume = sorted({s.volume.volume_id for s in sources if s.volume.volume_id})
    volumes = await describe_volumes(aws, region, needs_volume) if needs_volume else {}
    return [_with_details(s, snapshots.get(s.snapshot_id), volumes) for s in sources]


def _with_details(
    source: SourceSnapshot,
    snapshot: dict[str, Any] | None,
    volumes: dict[str, VolumeDetails],
) -> SourceSnapshot:
    if snapshot is None:
        return source.with_details(state=MISSING)
    known = source.volume
    volume_id = known.volume_id or _real_volume_id(snapshot.get("VolumeId"))
    volume = volumes.get(volume_id or "")
    source_tags = tags.from_tag_list(snapshot.get("Tags"))
    filled: dict[str, object] = {
        "size_gib": known.size_gib or snapshot.get("VolumeSize"),
        "volume_id": volume_id,
    }
    filled |= claim_from_tags(source, source_tags)
    if volume is not None:
        filled |= {
            "availability_zone": known.availability_zone or volume.availability_zone,
            "volume_type": known.volume_type or volume.volume_type,
            "iops": known.iops or _volume_iops(volume),
            "throughput": known.throughput or volume.throughput,
        }
    return source.with_details(
        state=snapshot.get("State"),
        encrypted=bool(snapshot.get("Encrypted")),
        source_tags=tuple(sorted(source_tags.items())),
        volume=known.with_values(**filled),
    )


#: Tags the EBS provisioners put on a volume, which Velero's AWS plugin copies onto a native
#: snapshot (docs/velero-files.md#tags-on-the-ebs-snapshots).
CREATED_FOR_NAMESPACE = "kubernetes.io/created-for/pvc/namespace"
CREATED_FOR_PVC = "kubernetes.io/created-for/pvc/name"
CREATED_FOR_PV = "kubernetes.io/created-for/pv/name"


def claim_from_tags(source: SourceSnapshot, source_tags: dict[str, str]) -> dict[str, object]:
    """Namespace, PVC and PV from a native snapshot's own tags, when no file named them.

    The last resort when the tarball is missing and volumeinfo does not list the volume: the
    provisioner's `created-for` tags, copied from the volume by Velero's AWS plugin. CSI
    snapshots carry no such tags. Namespace and PVC are taken only as a pair.
    """
    if source.method is not SnapshotMethod.NATIVE:
        return {}
    found: dict[str, object] = {}
    namespace, pvc = source_tags.get(CREATED_FOR_NAMESPACE), source_tags.get(CREATED_FOR_PVC)
    if not source.volume.pvc and namespace and pvc:
        found |= {"namespace": namespace, "pvc": pvc}
    pv = source_tags.get(CREATED_FOR_PV) or source_tags.get("velero.io/pv")
    if not source.volume.pv and pv:
        found["pv"] = pv
    return found


def _volume_iops(volume: VolumeDetails) -> int | None:
    """IOPS worth recording: provisioned ones (io1/io2/gp3); gp2's are implied by size."""
    return volume.iops if volume.volume_type in {"io1", "io2", "gp3"} else None


def _real_volume_id(value: str | None) -> str | None:
    """Copies carry the arbitrary `vol-ffffffff`; that id means nothing."""
    if not value or value.strip("vol-f") == "":
        return None
    return value
