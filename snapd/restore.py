"""`snapd restore`: a replica back as a Kubernetes volume — copy back → EBS volume → PV → pvc.yaml.

Owns the procedure of docs/contract.md#restore. This is the half that acts; every decision (which
replica, region, zone, ClientToken, tags, manifests) is made first, pure, in
`restore_plan.py`, so `--dry-run` and the tests see them without touching anything.

Here: look up what a previous run already made (copy-back and volume by their tags, PV by its
deterministic name — several PVCs by one LIST of PVs and one of PVCs per namespace; side by
side), then per PVC: copy back with the copier's own `copy_snapshot`, wait for it,
CreateVolume with the plan's ClientToken, wait for `available` (`waiting.BatchWaiter`: one
batched Describe per round for all PVCs), then side by side create the PV and delete every
copy-back of the restore (a refused delete is a warning naming what is left, never a PVC
without its PV), write `pvc.yaml` (the requests in order: docs/restore.md). One PVC failing
never stops the others (`--all`); the command then exits 1. A volume that ended in `error`
is left for inspection. Nothing is started for a PVC whose restore is blocked
(`restore_plan.blocker`: a foreign or Released PV, another KMS key, a missing
`--target-namespace`).

Must not: import botocore or kubernetes_asyncio (only `aws.py` and `kube.py` do), issue a
CopySnapshot of its own (the copier's is reused), or write anything in `--dry-run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sys
import tempfile
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import structlog

from snapd import copier, inventory, kube, manifests, render
from snapd.aws import AwsClients
from snapd.errors import (
    AwsError,
    ConfigError,
    KubeError,
    SnapdError,
    WorkFailedError,
    first_error,
)
from snapd.models import Replica
from snapd.restore_plan import (
    Found,
    Outcome,
    Refusal,
    RestorePlan,
    RestoreRequest,
    VolumeRecord,
    blocker,
    build_copy_back_description,
    build_copy_back_tags,
    build_manifests,
    build_volume_params,
    pick_volume,
    plan_restores,
    pv_conflict,
    pv_volume_id,
    pvc_file_problem,
    rival_pvs,
    select_replicas,
)
from snapd.tags import (
    CLUSTER,
    RESTORE_KEY,
    RESTORE_SCOPE,
)
from snapd.waiting import EARLIEST_LOOK, BatchLookup, BatchWaiter

log = structlog.get_logger("snapd.restore")

#: Longest wait for a copy-back (best effort copies of large volumes take hours) and for
#: a volume to leave `creating`.
COPY_TIMEOUT = 24 * 3600.0
VOLUME_TIMEOUT = 3600.0
#: Volumes are polled at this share of the poll interval: a volume is `available` within
#: seconds, a person is waiting, and one batched DescribeVolumes a round for every PVC costs
#: next to nothing.
VOLUME_POLL_SHARE = 0.25
#: Backoff cap while the target region's copy slots are all taken (ResourceLimitExceeded).
MAX_SLOT_BACKOFF = 300.0
#: ClientToken generations tried past the first before CreateVolume is given up: each
#: deleted volume of the same restore spends one.
MAX_TOKEN_GENERATIONS = 50


# --------------------------------------------------------------------------- AWS lookups


async def list_zones(aws: AwsClients, region: str) -> list[str]:
    """The region's availability zones (not Local/Wavelength zones), sorted."""
    answer = await aws.call("ec2", region, "DescribeAvailabilityZones")
    return sorted(
        str(z["ZoneName"])
        for z in answer.get("AvailabilityZones", [])
        if z.get("ZoneType", "availability-zone") == "availability-zone"
        and z.get("State", "available") == "available"
    )


async def find_copy_backs(
    aws: AwsClients, region: str, scope: str, keys: Iterable[str]
) -> dict[str, list[Replica]]:
    """Our copy-backs in `region` by the restore they belong to (`snapd.io/restore-key`).

    By restore key, not by replica: two restores of one replica each own their copy-back,
    and every copy-back of a restore is found — also a duplicate made when CopySnapshot's
    answer was lost, or by a run that was interrupted. Batched, paginated.
    """
    found: dict[str, list[Replica]] = defaultdict(list)
    for chunk in inventory.chunks(keys):
        async for page in aws.pages(
            "ec2",
            region,
            "DescribeSnapshots",
            OwnerIds=["self"],
            Filters=[
                {"Name": f"tag:{CLUSTER}", "Values": [scope]},
                {"Name": f"tag:{RESTORE_KEY}", "Values": chunk},
            ],
            PaginationConfig={"PageSize": inventory.PAGE_SIZE},
        ):
            for snapshot in page.get("Snapshots", []):
                record = inventory.build_replica_from_ec2(snapshot, region)
                key = dict(record.tags).get(RESTORE_KEY)
                if key:
                    found[key].append(record)
    return found


def _volume_record(volume: Mapping[str, Any]) -> VolumeRecord:
    created = volume.get("CreateTime")
    return VolumeRecord(
        volume_id=str(volume["VolumeId"]),
        state=str(volume.get("State", "creating")),
        zone=volume.get("AvailabilityZone"),
        size_gib=volume.get("Size"),
        snapshot_id=volume.get("SnapshotId") or None,
        volume_type=volume.get("VolumeType"),
        iops=volume.get("Iops"),
        throughput=volume.get("Throughput"),
        create_time=created if isinstance(created, datetime) else None,
        encrypted=bool(volume.get("Encrypted")),
        kms_key_id=volume.get("KmsKeyId") or None,
    )


async def describe_volume_records(
    aws: AwsClients, region: str, filters: list[dict[str, Any]]
) -> list[tuple[VolumeRecord, dict[str, str]]]:
    """DescribeVolumes by filter, paginated: each volume with its tags."""
    found: list[tuple[VolumeRecord, dict[str, str]]] = []
    async for page in aws.pages(
        "ec2",
        region,
        "DescribeVolumes",
        Filters=filters,
        PaginationConfig={"PageSize": inventory.PAGE_SIZE},
    ):
        for volume in page.get("Volumes", []):
            tags = {t["Key"]: t.get("Value", "") for t in volume.get("Tags") or [] if "Key" in t}
            found.append((_volume_record(volume), tags))
    return found


async def find_volumes(
    aws: AwsClients, region: str, scope: str, keys: Iterable[str]
) -> dict[str, list[VolumeRecord]]:
    """The volumes earlier runs made, by restore key (`snapd.io/restore-key`), batched."""
    found: dict[str, list[VolumeRecord]] = defaultdict(list)
    for chunk in inventory.chunks(keys):
        filters = [
            {"Name": f"tag:{RESTORE_SCOPE}", "Values": [scope]},
            {"Name": f"tag:{RESTORE_KEY}", "Values": chunk},
        ]
        for record, tags in await describe_volume_records(aws, region, filters):
            found[tags.get(RESTORE_KEY, "")].append(record)
    return found


async def describe_volumes_by_id(
    aws: AwsClients, region: str, volume_ids: Collection[str]
) -> dict[str, VolumeRecord]:
    """The volumes EC2 shows of these ids, one DescribeVolumes per 200 (the waiter's poll)."""
    records: dict[str, VolumeRecord] = {}
    for chunk in inventory.chunks(volume_ids):
        filters = [{"Name": "volume-id", "Values": chunk}]
        for record, _ in await describe_volume_records(aws, region, filters):
            records[record.volume_id] = record
    return records


@dataclass
class Waiters:
    """The batched waits (and the cleanup's look-up) of a restore run, shared by every PVC
    of `--all`."""

    copy_backs: BatchWaiter[Replica]
    volumes: BatchWaiter[VolumeRecord]
    #: Every copy-back of a restore key, looked up again once this run asked for its volume
    #: (PVCs whose volumes were asked for within a volume poll share one DescribeSnapshots).
    copy_backs_again: BatchLookup[Sequence[Replica]]

    @classmethod
    def for_region(cls, aws: AwsClients, region: str, poll_interval: float, scope: str) -> Waiters:
        """Copy-backs polled at the poll interval, sooner when their progress says they are
        about done; volumes, which take seconds and say nothing of their progress, at a
        `VOLUME_POLL_SHARE` of it."""
        return cls(
            copy_backs=BatchWaiter(
                partial(inventory.describe_replicas, aws, region),
                done=lambda r: r.state in ("completed", "error"),
                progress=lambda r: r.progress,
                what="copy-back",
                poll_interval=poll_interval,
                min_interval=poll_interval * EARLIEST_LOOK,
            ),
            volumes=BatchWaiter(
                partial(describe_volumes_by_id, aws, region),
                done=lambda v: v.state in ("available", "in-use", "error"),
                what="volume",
                poll_interval=poll_interval * VOLUME_POLL_SHARE,
            ),
            copy_backs_again=BatchLookup(
                partial(find_copy_backs, aws, region, scope),
                missing=(),
                linger=poll_interval * VOLUME_POLL_SHARE,
            ),
        )

    async def close(self) -> None:
        await self.copy_backs.close()
        await self.volumes.close()
        await self.copy_backs_again.close()


# --------------------------------------------------------------------------- Kubernetes


KubeState = tuple[dict[str, Any] | None, dict[str, Any] | None, dict[str, Any] | None, bool | None]


async def inspect_kube(
    client: kube.KubeClient, plan: RestorePlan, namespace_exists: Awaitable[bool | None]
) -> KubeState:
    """The PV of the target's name, the target PVC now, the PV that PVC is bound to, and
    whether the target namespace exists (None when the credentials may not read it; the
    caller looks each namespace up once for all PVCs and passes that look-up in)."""
    pv, pvc, namespace = await asyncio.gather(
        client.get_pv(plan.pv_name),
        client.get_pvc(plan.target_namespace, plan.target_pvc),
        namespace_exists,
    )
    bound_pv = None
    volume_name = ((pvc or {}).get("spec") or {}).get("volumeName")
    if volume_name and volume_name != plan.pv_name:
        bound_pv = await client.get_pv(str(volume_name))
    return pv, pvc, bound_pv, namespace


async def _namespace_exists(client: kube.KubeClient, name: str) -> bool | None:
    """Whether namespace `name` exists; None when reading namespaces is forbidden."""
    try:
        return await client.get_namespace(name) is not None
    except KubeError as error:
        if error.status == 403:
            return None
        raise


async def _kube_state_by_name(
    client: kube.KubeClient, plan: RestorePlan
) -> tuple[list[KubeState], list[dict[str, Any]]]:
    """One PVC: its PV, PVC and namespace each by name, and the PVs snapd restored (rivals)
    by label — a few small GETs, whatever the size of the cluster."""
    async with asyncio.TaskGroup() as group:
        state = group.create_task(
            inspect_kube(client, plan, _namespace_exists(client, plan.target_namespace))
        )
        restored = group.create_task(
            client.list_pvs(manifests.label_selector({manifests.MANAGED_BY: "snapd"}))
        )
    return [state.result()], restored.result()


async def _kube_state_listed(
    client: kube.KubeClient, plans: Sequence[RestorePlan]
) -> tuple[list[KubeState], list[dict[str, Any]]]:
    """Several PVCs (`--all`): every PV in one LIST, each target namespace's PVCs in one LIST
    and the namespace in one GET — a few requests for the whole restore, not two per PVC.

    The PV list answers all three PV questions: the PV of each target's name (a foreign one
    blocks the restore), the PV each target PVC is bound to, and the PVs snapd restored
    (rivals, by the label `list_pvs` would select them by).
    """
    namespaces = sorted({p.target_namespace for p in plans})
    async with asyncio.TaskGroup() as group:
        every_pv = group.create_task(client.list_pvs())
        claims = {name: group.create_task(client.list_pvcs(name)) for name in namespaces}
        exists = {name: group.create_task(_namespace_exists(client, name)) for name in namespaces}
    pvs = {_name_of(pv): pv for pv in every_pv.result()}
    pvcs = {
        (namespace, _name_of(pvc)): pvc
        for namespace, task in claims.items()
        for pvc in task.result()
    }
    states: list[KubeState] = []
    for plan in plans:
        pvc = pvcs.get((plan.target_namespace, plan.target_pvc))
        volume_name = ((pvc or {}).get("spec") or {}).get("volumeName")
        bound_pv = (
            pvs.get(str(volume_name)) if volume_name and volume_name != plan.pv_name else None
        )
        states.append(
            (pvs.get(plan.pv_name), pvc, bound_pv, exists[plan.target_namespace].result())
        )
    restored = [
        pv
        for pv in pvs.values()
        if ((pv.get("metadata") or {}).get("labels") or {}).get(manifests.MANAGED_BY) == "snapd"
    ]
    return states, restored


def _name_of(resource: Mapping[str, Any]) -> str:
    return str((resource.get("metadata") or {}).get("name") or "")


# --------------------------------------------------------------------------- doing


class ProgressPrinter:
    """Copy-back progress on stderr, one line each time EC2's `Progress` moves."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.last: dict[str, tuple[str, int]] = {}

    def __call__(self, label: str, replica: Replica) -> None:
        now = (replica.state, replica.progress)
        if self.last.get(replica.snapshot_id) == now:
            return
        self.last[replica.snapshot_id] = now
        self.stream.write(render.copy_back_progress_line(label, replica))
        self.stream.flush()


@dataclass
class Restorer:
    """The I/O half: runs plans against AWS and Kubernetes, one `restore_one` per PVC."""

    aws: AwsClients
    kube: kube.KubeClient
    request: RestoreRequest
    waiters: Waiters
    progress: ProgressPrinter = field(default_factory=ProgressPrinter)
    rng: random.Random = field(default_factory=random.Random)  # jitter, not cryptography
    limit: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        # Bounds the PVCs whose copy-back and volume are in progress at once (`--all`).
        self.limit = asyncio.Semaphore(self.request.concurrency)

    async def restore_one(self, plan: RestorePlan, found: Found) -> Outcome:
        """Copy back, volume, then PV and cleanup for one PVC; every failure becomes its outcome.

        A cleanup that fails (an SCP denying DeleteSnapshot) is a warning naming what is left
        behind, never a restore that stops short of its PV (`_pv_and_cleanup`).
        """
        bound = log.bind(backup=plan.backup, namespace=plan.source_namespace, pvc=plan.source_pvc)
        try:
            refusal = blocker(plan, found, self.request)
            if refusal:
                raise WorkFailedError(refusal)
            async with self.limit:
                copy_back_id, volume = await self._volume(plan, found)
            kept, left_behind = await self._pv_and_cleanup(plan, found, copy_back_id, volume)
        except SnapdError as error:
            bound.error("restore.failed", error=str(error))
            return Outcome(plan, error=str(error), found=found)
        already = found.usable_volume and found.pv is not None
        bound.info(
            "restore.completed",
            volume_id=volume.volume_id,
            pv=plan.pv_name,
            already_restored=already,
        )
        return Outcome(
            plan,
            already=already,
            copy_back_id=(copy_back_id or volume.snapshot_id) if plan.copy_back else None,
            copy_back_kept=kept,
            volume=volume,
            found=found,
            left_behind=left_behind,
        )

    async def _volume(self, plan: RestorePlan, found: Found) -> tuple[str | None, VolumeRecord]:
        """The restored volume: reused when a previous run made it, else made now."""
        copy_back_id: str | None = None
        volume = found.volume
        if volume is None:
            snapshot_id = plan.replica.snapshot_id
            if plan.copy_back:
                copy_back_id = await self._copy_back(plan, found.copy_backs)
                snapshot_id = copy_back_id
            volume_id = await self._create_volume(plan, snapshot_id, found.failed_volumes)
            if copy_back_id:
                # Cleanup's second look starts now, batched with the PVCs whose volumes were
                # requested alongside, and is answered while the volume is being made: off
                # the path a person waits on, and after the burst of CreateVolume calls.
                self.waiters.copy_backs_again.ask(plan.key)
            volume = await self._wait_volume(plan, volume_id)
        elif volume.state == "creating":
            log.info("restore.volume_adopted", volume_id=volume.volume_id)
            volume = await self._wait_volume(plan, volume.volume_id)
        if volume.state == "error":
            raise WorkFailedError(
                f"volume {volume.volume_id} in {volume.zone} ended in state error; it is left "
                "for inspection (delete it with `aws ec2 delete-volume --region "
                f"{plan.region} --volume-id {volume.volume_id}` once the restore succeeded); "
                "run the restore again to make a new one"
            )
        return copy_back_id, volume

    async def _copy_back(self, plan: RestorePlan, existing: Sequence[Replica]) -> str:
        """A completed copy-back of the replica in the target region (reused or made)."""
        # Copy-backs that ended in error are deleted with the others once the PV exists.
        usable = sorted(
            (c for c in existing if c.state in ("completed", "pending")),
            key=lambda c: (not c.completed, -c.progress, c.snapshot_id),
        )
        timeout = COPY_TIMEOUT
        if self.request.completion_minutes:
            timeout = max(timeout, self.request.completion_minutes * 60 + 3600.0)
        last: list[Replica] = []

        def on_progress(replica: Replica) -> None:
            last[:] = [replica]
            self.progress(plan.label, replica)

        snapshot_id = usable[0].snapshot_id if usable else None
        try:
            async with asyncio.timeout(timeout):
                if snapshot_id is None:
                    snapshot_id = await self._start_copy_back(plan)
                else:
                    log.info("restore.copy_back_adopted", snapshot_id=snapshot_id)
                final = await self.waiters.copy_backs.wait(snapshot_id, on_progress)
        except TimeoutError:
            progress = f" ({last[0].progress}%)" if last else ""
            raise WorkFailedError(
                f"copy-back {snapshot_id or '(not started)'} is not completed after "
                f"{timeout / 3600:g}h{progress}; run the restore again later: it picks the "
                "copy up where it is"
            ) from None
        if not final.completed:
            why = await self._try_delete(plan.region, snapshot_id)
            fate = (
                "it was deleted"
                if why is None
                else f"deleting it failed ({why}): delete it with `aws ec2 delete-snapshot "
                f"--region {plan.region} --snapshot-id {snapshot_id}`"
            )
            raise WorkFailedError(
                f"copy-back {snapshot_id} ended in state {final.state}: "
                f"{final.state_message or 'no message'}; {fate} — run the restore again to retry"
            )
        log.info("restore.copy_back_completed", snapshot_id=snapshot_id)
        return snapshot_id

    async def _start_copy_back(self, plan: RestorePlan) -> str:
        """CopySnapshot (the copier's) back to the target region; waits for a free slot."""
        replica = plan.replica
        attempt = 0
        while True:
            try:
                snapshot_id = await copier.copy_snapshot(
                    self.aws,
                    source_region=replica.region,
                    destination_region=plan.region,
                    snapshot_id=replica.snapshot_id,
                    tags=build_copy_back_tags(plan, self.request.scope),
                    description=build_copy_back_description(plan),
                    kms_key_id=self.request.kms_key_id,
                    completion_minutes=self.request.completion_minutes,
                )
            except AwsError as error:
                if error.code != "ResourceLimitExceeded":
                    raise
                attempt += 1
                delay = min(MAX_SLOT_BACKOFF, self.request.poll_interval * 2.0**attempt)
                delay *= self.rng.uniform(0.5, 1.0)
                sys.stderr.write(render.copy_slots_taken_line(plan.label, plan.region, delay))
                sys.stderr.flush()
                await asyncio.sleep(delay)
                continue
            log.info(
                "restore.copy_back_started",
                snapshot_id=snapshot_id,
                replica=replica.snapshot_id,
                region=plan.region,
            )
            return snapshot_id

    async def _create_volume(self, plan: RestorePlan, snapshot_id: str, generation: int) -> str:
        """CreateVolume with the plan's ClientToken; a token already spent moves on.

        EC2 answers `IdempotentParameterMismatch` for a token whose volume was deleted (the
        operator deleted the restored volume to redo the restore) or that was sent with
        another snapshot (a new copy-back). The next generations are tried in order, so a
        re-run after a crash walks the same tokens and gets the volume it already made.
        """
        for attempt in range(generation, generation + MAX_TOKEN_GENERATIONS):
            params = build_volume_params(plan, snapshot_id, self.request.scope, attempt)
            try:
                answer = await self.aws.call("ec2", plan.region, "CreateVolume", **params)
            except AwsError as error:
                if error.code != "IdempotentParameterMismatch":
                    raise
                log.info("restore.client_token_spent", token=params["ClientToken"])
                continue
            volume_id = str(answer["VolumeId"])
            log.info(
                "restore.volume_created",
                volume_id=volume_id,
                zone=plan.zone,
                snapshot_id=snapshot_id,
                volume_type=plan.volume_type,
            )
            return volume_id
        raise WorkFailedError(
            f"CreateVolume refused {MAX_TOKEN_GENERATIONS} ClientTokens of this restore as "
            "already used; delete the volumes tagged snapd.io/restore-key="
            f"{plan.key} in {plan.region} that are no longer wanted and run the restore again"
        )

    async def _wait_volume(self, plan: RestorePlan, volume_id: str) -> VolumeRecord:
        try:
            async with asyncio.timeout(VOLUME_TIMEOUT):
                record = await self.waiters.volumes.wait(volume_id)
        except TimeoutError:
            raise WorkFailedError(
                f"volume {volume_id} is still creating after {VOLUME_TIMEOUT / 60:g} minutes; "
                "run the restore again later: it picks the volume up"
            ) from None
        if record.state != "error":
            log.info("restore.volume_available", volume_id=volume_id, zone=record.zone)
        return record

    async def _pv_and_cleanup(
        self, plan: RestorePlan, found: Found, made: str | None, volume: VolumeRecord
    ) -> tuple[bool, tuple[tuple[str, str], ...]]:
        """Create the PV and delete the copy-backs side by side, once the volume is available.

        Both need only that volume: from then on no copy-back is needed (a re-run finds the
        volume by its tags), so the two no longer wait on each other on the path a person
        waits on. A refused delete never stops the PV (it is returned as left behind). When
        the PV fails, that is the outcome, and the cleanup still runs to its end (whatever
        it could not delete carries the restore's tags: the re-run deletes it).
        Returns (kept, left behind), as `_clean_copy_backs`.
        """
        cleanup = asyncio.create_task(
            self._clean_copy_backs(plan, found, made, volume), name=f"cleanup {plan.label}"
        )
        try:
            await self._pv(plan, found, volume)
        except BaseException as error:
            if not isinstance(error, SnapdError):
                cleanup.cancel()  # Ctrl-C (or a bug): stop, as everything else stops
            await asyncio.wait([cleanup])
            if not cleanup.cancelled() and cleanup.exception() is not None:
                log.warning("restore.cleanup_failed", error=str(cleanup.exception()))
            raise
        return await cleanup

    async def _clean_copy_backs(
        self, plan: RestorePlan, found: Found, made: str | None, volume: VolumeRecord
    ) -> tuple[bool, tuple[tuple[str, str], ...]]:
        """Delete every copy-back of this restore once its volume is available.

        Every one: those found at the start, the one used, and — when this run made a
        copy-back — those found again once its volume was asked for (a CopySnapshot whose
        answer was lost and was retried, or an interrupted run, makes one the start could not
        see; both exist before this run's copy-back completes). With `--keep-snapshot` the one
        the volume was made from is kept and only duplicates go. A refused DeleteSnapshot is
        returned as left behind (id, why), never raised. Returns (kept, left behind).
        """
        if not plan.copy_back:
            return False, ()
        ids = {c.snapshot_id for c in found.copy_backs} | ({made} if made else set())
        if made:
            again = await self.waiters.copy_backs_again.get(plan.key)
            ids |= {c.snapshot_id for c in again}
        kept = False
        if self.request.keep_snapshot:
            used = made or volume.snapshot_id
            kept = used in ids
            ids.discard(used or "")
        left: list[tuple[str, str]] = []
        for snapshot_id in sorted(ids):
            why = await self._try_delete(plan.region, snapshot_id)
            if why is None:
                log.info("restore.copy_back_deleted", snapshot_id=snapshot_id, pv=plan.pv_name)
                continue
            log.warning("restore.copy_back_left_behind", snapshot_id=snapshot_id, error=why)
            left.append((snapshot_id, why))
        return kept, tuple(left)

    async def _delete_snapshot(self, region: str, snapshot_id: str) -> None:
        try:
            await self.aws.call("ec2", region, "DeleteSnapshot", SnapshotId=snapshot_id)
        except AwsError as error:
            if error.code != "InvalidSnapshot.NotFound":
                raise

    async def _try_delete(self, region: str, snapshot_id: str) -> str | None:
        """DeleteSnapshot; None when it is gone, else why it could not be deleted."""
        try:
            await self._delete_snapshot(region, snapshot_id)
        except AwsError as error:
            return str(error)
        return None

    async def _pv(self, plan: RestorePlan, found: Found, volume: VolumeRecord) -> None:
        """Create the PV (or accept the one a previous run made for this volume)."""
        if found.pv is not None:
            return
        try:
            pv, _ = build_manifests(plan, volume.volume_id, self.request.scope, volume.size_gib)
        except ValueError as error:
            raise WorkFailedError(f"cannot build the PersistentVolume: {error}") from error
        try:
            await self.kube.create_pv(pv)
        except KubeError as error:
            if error.status != 409:
                raise
            existing = await self.kube.get_pv(plan.pv_name)
            if existing is None or pv_volume_id(existing) != volume.volume_id:
                raise WorkFailedError(
                    pv_conflict(plan, Found(pv=existing or {}, volume=volume))
                    or f"PersistentVolume {plan.pv_name} appeared meanwhile"
                ) from error
        log.info("restore.pv_created", pv=plan.pv_name, volume_id=volume.volume_id)


async def discover(
    aws: AwsClients,
    client: kube.KubeClient | None,
    plans: Sequence[RestorePlan],
    request: RestoreRequest,
) -> dict[str, Found]:
    """What already exists of every planned restore, read-only: AWS by tags, Kubernetes by name.

    The three lookups are independent and run side by side (a person waits on them).
    Kubernetes is read by name for one PVC and by LIST for several (`_kube_state_listed`)."""

    async def copy_backs_of() -> dict[str, list[Replica]]:
        if not (request.copy_back and plans):
            return {}
        keys = (p.key for p in plans)
        return await find_copy_backs(aws, request.target_region, request.scope, keys)

    async def kube_state_of() -> tuple[list[KubeState], list[dict[str, Any]]]:
        if client is None or not plans:
            return [(None, None, None, None)] * len(plans), []
        if len(plans) == 1:
            return await _kube_state_by_name(client, plans[0])
        return await _kube_state_listed(client, plans)

    try:
        async with asyncio.TaskGroup() as group:
            copy_backs_task = group.create_task(copy_backs_of())
            volumes_task = group.create_task(
                find_volumes(aws, request.target_region, request.scope, (p.key for p in plans))
            )
            kube_task = group.create_task(kube_state_of())
    except ExceptionGroup as group_error:
        raise first_error(group_error) from group_error
    copy_backs, volumes, (kube_state, restored) = (
        copy_backs_task.result(),
        volumes_task.result(),
        kube_task.result(),
    )
    result: dict[str, Found] = {}
    for index, plan in enumerate(plans):
        volume, failed = pick_volume(volumes.get(plan.key, []))
        pv, pvc, bound_pv, namespace_exists = kube_state[index]
        result[plan.key] = Found(
            copy_backs=tuple(copy_backs.get(plan.key, [])),
            volume=volume,
            failed_volumes=failed,
            pv=pv,
            pvc=pvc,
            bound_pv=bound_pv,
            kube_checked=client is not None,
            namespace_exists=namespace_exists,
            rivals=rival_pvs(plan, restored),
        )
    return result


def write_pvc_file(path: Path, text: str, *, force: bool) -> None:
    """Write pvc.yaml: never over an existing file without `force`; atomic when replacing."""
    if not force:
        with path.open("x", encoding="utf-8") as handle:
            handle.write(text)
        return
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        Path(temporary).chmod(0o644)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


async def _connect(request: RestoreRequest) -> kube.KubeClient | None:
    """The Kubernetes client; in `--dry-run` an unreachable cluster only skips the PV checks."""
    try:
        client = await kube.connect(context=request.context)
        if request.dry_run:
            await client.get_version()
    except KubeError as error:
        if not request.dry_run:
            raise
        sys.stderr.write(render.restore_line(f"{error}; PVs are not checked"))
        return None
    return client


async def _start_up_done(aws: AwsClients, request: RestoreRequest) -> None:
    """Make the EC2 clients of both regions, then freeze what start-up made out of the
    cyclic garbage collector's reach.

    Imports, botocore's service models and the clients are a few hundred thousand objects
    that live as long as the command. Left to the collector, the first full collection
    scans all of them — 0.1 to 0.5 s of CPU on a shared machine — and it came during the
    burst of CopySnapshot calls a person waits on. Frozen (`gc.freeze`), they are never
    scanned; what the restore itself makes is still collected.
    """
    await aws.settle({("ec2", request.destination_region), ("ec2", request.target_region)})


async def _replicas_and_zones(
    aws: AwsClients, request: RestoreRequest
) -> tuple[list[Replica], list[str]]:
    """The replicas (destination region) and the target region's zones, side by side."""
    try:
        async with asyncio.TaskGroup() as group:
            replicas = group.create_task(
                inventory.list_replicas(aws, request.destination_region, request.scope)
            )
            zones = group.create_task(list_zones(aws, request.target_region))
    except ExceptionGroup as group_error:
        raise first_error(group_error) from group_error
    return replicas.result(), zones.result()


@contextlib.asynccontextmanager
async def _kube_connecting(
    request: RestoreRequest,
) -> AsyncIterator[asyncio.Task[kube.KubeClient | None]]:
    """Connect to Kubernetes while AWS is being read; close whatever came of it at the end.

    When the command stops before it needs the client (an unknown backup, say), a failed
    connection is not reported: the first problem the operator sees is the real one.
    """
    task = asyncio.create_task(_connect(request), name="restore.kube_connect")
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.wait([task])
        if not task.cancelled() and task.exception() is None:
            client = task.result()
            if client is not None:
                await client.close()


async def cmd_restore(request: RestoreRequest) -> int:
    """`snapd restore`: exit 0 done (or already restored), 1 a PVC failed, 2 usage error."""
    async with AwsClients() as aws, _kube_connecting(request) as connecting:
        await _start_up_done(aws, request)
        replicas, zones = await _replicas_and_zones(aws, request)
        selection = select_replicas(replicas, request)
        if not request.restore_all and selection.refused:
            refusal = selection.refused[0]
            sys.stderr.write(render.restore_line(f"{refusal.label}: {refusal.reason}"))
            return 1
        plans, unbuildable = plan_restores(selection.replicas, request, zones)
        refused = [*selection.refused, *unbuildable]
        client = await connecting
        target = kube_target(client)
        if not request.dry_run and client is not None:
            # Said before anything is made: a PV in the wrong cluster is the costliest mistake.
            sys.stderr.write(render.restore_line(f"PersistentVolumes go to {target}"))
            sys.stderr.flush()
        found = await discover(aws, client, plans, request)
        if request.dry_run or client is None:
            output_exists = await asyncio.to_thread(Path(request.output).exists)
            sys.stdout.write(
                render.dry_run_output(
                    plans, found, request, refused, target=target, output_exists=output_exists
                )
            )
            conflicts = [p for p in plans if blocker(p, found[p.key], request)]
            return 1 if refused or conflicts else 0
        return await _run(
            aws=aws,
            client=client,
            request=request,
            plans=plans,
            found=found,
            refused=refused,
            target=target,
        )


def kube_target(client: kube.KubeClient | None) -> str:
    """`kube context prod (API server https://…)`: where the PVs of this restore go."""
    if client is None:
        return "no Kubernetes cluster (not reachable; nothing is checked there)"
    context = f"kube context {client.context}" if client.context else "the in-cluster API"
    return f"{context} (API server {client.host})"


async def _run(
    *,
    aws: AwsClients,
    client: kube.KubeClient,
    request: RestoreRequest,
    plans: Sequence[RestorePlan],
    found: Mapping[str, Found],
    refused: Sequence[Refusal],
    target: str,
) -> int:
    """The real run: refuse an existing pvc.yaml before any change, restore, write, report."""
    # Deleting a leftover copy-back is cleanup, not a new restore: it does not count here.
    needs_work = [
        p
        for p in plans
        if not (found[p.key].usable_volume and found[p.key].pv is not None)
        and not blocker(p, found[p.key], request)
    ]
    output_exists = await asyncio.to_thread(Path(request.output).exists)
    if needs_work and output_exists and not request.force:
        raise ConfigError(
            f"{request.output} exists; it is never overwritten without --force "
            "(or choose another file with --output)"
        )
    waiters = Waiters.for_region(aws, request.target_region, request.poll_interval, request.scope)
    restorer = Restorer(aws, client, request, waiters)
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(restorer.restore_one(p, found[p.key]), name=f"restore {p.label}")
                for p in plans
            ]
    finally:
        await waiters.close()
    outcomes = [task.result() for task in tasks]
    done = [o for o in outcomes if o.ok]
    stale_file: str | None = None
    wrote = False
    if done:
        if output_exists and not request.force:
            stale_file = await _existing_pvc_file_problem(Path(request.output), done)
        else:
            text = render.render_pvc_file(done, request.scope)
            await asyncio.to_thread(write_pvc_file, Path(request.output), text, force=request.force)
            wrote = True
    report, warnings = render.restore_report(
        outcomes, refused, request, target=target, wrote=wrote, stale_file=stale_file
    )
    sys.stdout.write(report)
    sys.stderr.write(warnings)
    failures = [o for o in outcomes if not o.ok]
    return 1 if failures or refused else 0


async def _existing_pvc_file_problem(path: Path, done: Sequence[Outcome]) -> str | None:
    """Why the existing PVC file is not the one these restores need (None: it is)."""
    try:
        text = await asyncio.to_thread(path.read_text, encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        return f"it cannot be read ({error})"
    return pvc_file_problem(text, done)
