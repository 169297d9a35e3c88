"""`snapd restore`, the pure half: which replica, region, zone, token, tags and manifests.

Everything here decides and nothing here does: no AWS, no Kubernetes, no files — so
`--dry-run` and the tests see every decision of a restore without touching anything
(`restore.py` is the half that acts on them). It starts from the `RestoreRequest` the CLI
built (names checked there, with `manifests.py`'s checks); every problem with the names it
is asked for is a `ConfigError` (exit 2) raised here, before anything is changed. What a
restore prints is made in `render.py`.

Re-running is safe because of what is decided here: the volume is found again by
`snapd.io/restore-key` (`build_restore_key`: a hash of scope, backup, namespace, PVC, target,
region and zone), and CreateVolume's ClientToken is derived from the same key
(`build_client_token`), so a crash between CreateVolume and its answer never makes a second
volume; a volume that ended in `error` bumps the token's generation, and a token EC2 calls
spent (its volume was deleted) makes the acting half try the next generation.

Tags. The copy-back carries `snapd.io/cluster` (the scope) plus the `snapd.io/restore-*`
keys, the restore key among them: copy-backs belong to one restore. Kubernetes names can be
longer than a tag value (256): such values are cut and end in a hash (`fit_tag_value`).
The restored *volume* deliberately does not carry `snapd.io/cluster` nor the replica keys
(`snapd.io/backup`, …): Velero copies a volume's tags onto every later snapshot of it, and
a DR-region Velero would then make snapshots that our inventory takes for replicas — and
the pruner would delete. The volume names its scope in `snapd.io/restore-scope`.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Any

import yaml

from snapd import manifests
from snapd.config import parse_duration
from snapd.errors import (
    ConfigError,
)
from snapd.models import Replica
from snapd.tags import (
    CLUSTER,
    MAX_VALUE_LENGTH,
    NAME,
    RESTORE_BACKUP,
    RESTORE_KEY,
    RESTORE_NAMESPACE,
    RESTORE_OF,
    RESTORE_PVC,
    RESTORE_SCOPE,
    RESTORE_TARGET,
)

#: Volume types that take provisioned IOPS, and the one that takes throughput (EC2 rules).
IOPS_TYPES = frozenset({"io1", "io2", "gp3"})
IOPS_REQUIRED = frozenset({"io1", "io2"})
THROUGHPUT_TYPES = frozenset({"gp3"})
#: CompletionDurationMinutes: 15-minute steps from 15 minutes to 48 hours
#: (docs/ebs.md#time-based-copies).
COMPLETION_STEP, COMPLETION_MIN, COMPLETION_MAX = 15, 15, 48 * 60
#: Volume states that hold a restore's data; `error` ones are counted, others ignored.
LIVE_VOLUME_STATES = ("available", "in-use", "creating")
#: The volume id the dry-run's PV shows: a real run puts the id of the volume it creates there.
PLACEHOLDER_VOLUME = "vol-TO-BE-CREATED"
#: How many names an error message lists before "… and N more".
LISTED = 30


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class RestoreRequest:
    """The command line, validated: every name checked, every flag combination allowed."""

    backup: str
    pvc: str | None
    namespace: str | None
    restore_all: bool
    target_region: str
    availability_zone: str | None
    target_namespace: str | None
    target_pvc: str | None
    kms_key_id: str | None
    completion_minutes: int | None
    keep_snapshot: bool
    context: str | None
    output: PurePath
    force: bool
    dry_run: bool
    scope: str
    source_region: str
    destination_region: str
    poll_interval: float
    concurrency: int

    @property
    def copy_back(self) -> bool:
        """Restoring anywhere but the destination region needs the replica copied there."""
        return self.target_region != self.destination_region


@dataclass(frozen=True, slots=True)
class Refusal:
    """A PVC that cannot be restored as asked, and why (exit 1)."""

    label: str
    reason: str


@dataclass(frozen=True, slots=True)
class Selection:
    """The replicas chosen for a restore (one per PVC) and the PVCs refused."""

    replicas: tuple[Replica, ...]
    refused: tuple[Refusal, ...] = ()


@dataclass(frozen=True, slots=True)
class RestorePlan:
    """Everything about restoring one replica, decided before any change."""

    replica: Replica
    backup: str
    source_namespace: str
    source_pvc: str
    target_namespace: str
    target_pvc: str
    region: str
    zone: str
    zone_note: str | None
    copy_back: bool
    pv_name: str
    key: str
    size_gib: int
    volume_type: str | None
    iops: int | None
    throughput: int | None
    encrypted: bool
    kms_key_id: str | None

    @property
    def label(self) -> str:
        return f"{self.source_namespace}/{self.source_pvc}"

    @property
    def target_label(self) -> str:
        return f"{self.target_namespace}/{self.target_pvc}"

    @property
    def beside(self) -> bool:
        """The restore targets another PVC than the one backed up."""
        return (self.target_namespace, self.target_pvc) != (
            self.source_namespace,
            self.source_pvc,
        )


@dataclass(frozen=True, slots=True)
class VolumeRecord:
    """One EBS volume as DescribeVolumes shows it."""

    volume_id: str
    state: str
    zone: str | None
    size_gib: int | None
    snapshot_id: str | None
    volume_type: str | None
    iops: int | None
    throughput: int | None
    create_time: datetime | None = None
    encrypted: bool = False
    kms_key_id: str | None = None


@dataclass(frozen=True, slots=True)
class Found:
    """What already exists of one restore (a previous run, or a crash half-way)."""

    copy_backs: tuple[Replica, ...] = ()
    volume: VolumeRecord | None = None
    failed_volumes: int = 0
    pv: Mapping[str, Any] | None = None
    pvc: Mapping[str, Any] | None = None
    bound_pv: Mapping[str, Any] | None = None
    kube_checked: bool = True
    #: Whether the target namespace exists (None: not known — not checked or not readable).
    namespace_exists: bool | None = None
    #: Other restored PVs already waiting for the target PVC (claimRef without a uid).
    rivals: tuple[str, ...] = ()

    @property
    def usable_volume(self) -> bool:
        return self.volume is not None and self.volume.state in ("available", "in-use")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one PVC, for the summary and the exit code."""

    plan: RestorePlan
    error: str | None = None
    already: bool = False
    copy_back_id: str | None = None
    copy_back_kept: bool = False
    volume: VolumeRecord | None = None
    found: Found = field(default_factory=Found)
    #: Copy-backs a failed DeleteSnapshot left in the target region: (snapshot id, why).
    left_behind: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None


# --------------------------------------------------------------------------- pure planning


def parse_completion_minutes(text: str | None) -> int | None:
    """`--completion-duration` → CompletionDurationMinutes (15-minute steps, 15 min–48 h)."""
    if text is None or text == "":
        return None
    try:
        seconds = parse_duration(text).total_seconds()
    except ValueError as error:
        raise ConfigError(f"invalid --completion-duration: {error}") from error
    minutes = seconds / 60
    if (
        minutes != int(minutes)
        or int(minutes) % COMPLETION_STEP
        or not COMPLETION_MIN <= minutes <= COMPLETION_MAX
    ):
        raise ConfigError(
            f"invalid --completion-duration {text!r}: EC2 takes a multiple of 15 minutes "
            "from 15m to 48h (e.g. 15m, 1h30m, 48h)"
        )
    return int(minutes)


def _listing(items: Iterable[str]) -> str:
    """`a, b, c` — at most LISTED names, then how many more."""
    names = list(items)
    shown = ", ".join(names[:LISTED])
    more = len(names) - LISTED
    return f"{shown} … and {more} more" if more > 0 else shown


def _newest_first(replicas: Iterable[Replica]) -> list[str]:
    """Backup names, newest backup first (the one an operator most likely wants)."""
    newest: dict[str, datetime] = {}
    floor = datetime.min.replace(tzinfo=UTC)
    for replica in replicas:
        if replica.backup:
            when = replica.backup_time or floor
            newest[replica.backup] = max(newest.get(replica.backup, floor), when)
    return sorted(newest, key=lambda name: (newest[name], name), reverse=True)


def _pick(replicas: Sequence[Replica]) -> Replica:
    """One replica of a PVC: a completed one (oldest first: duplicates are pruned later),
    else the one furthest along, so a refusal shows the most useful state."""
    floor = datetime.min.replace(tzinfo=UTC)
    completed = sorted(
        (r for r in replicas if r.completed),
        key=lambda r: (r.start_time or floor, r.snapshot_id),
    )
    if completed:
        return completed[0]
    return max(replicas, key=lambda r: (r.pending, r.progress, r.snapshot_id))


def refusal_reason(replica: Replica) -> str:
    """Why a replica that is not `completed` cannot be restored, with state and progress."""
    where = f"replica {replica.snapshot_id} in {replica.region}"
    if replica.pending:
        return (
            f"{where} is still pending ({replica.progress}% copied); wait until "
            f"`snapd list --backup {replica.backup}` shows it completed, then run the "
            "restore again"
        )
    message = f": {replica.state_message}" if replica.state_message else ""
    return (
        f"{where} is in state {replica.state} ({replica.progress}%){message}; it cannot be restored"
    )


def select_replicas(replicas: Sequence[Replica], request: RestoreRequest) -> Selection:
    """The replica of each PVC to restore; unknown or ambiguous names are ConfigError.

    Errors list what exists (the backups, the PVCs of the backup, the namespaces that have
    the PVC) so the next command can be typed from the message.
    """
    backup = request.backup
    of_backup = [r for r in replicas if r.backup == backup]
    if not of_backup:
        known = _newest_first(replicas)
        listing = (
            f"backups with replicas (newest first): {_listing(known)}"
            if known
            else "there are no replicas of this scope at all"
        )
        raise ConfigError(
            f"no replicas of backup {backup!r} in {request.destination_region} "
            f"(scope {request.scope}); {listing}"
        )
    pool = of_backup
    if request.namespace:
        pool = [r for r in of_backup if r.volume.namespace == request.namespace]
        if not pool:
            namespaces = sorted({r.volume.namespace or "-" for r in of_backup})
            raise ConfigError(
                f"backup {backup!r} has no replica in namespace {request.namespace!r}; "
                f"its namespaces: {_listing(namespaces)}"
            )
    if request.restore_all:
        named = [r for r in pool if r.volume.pvc and r.volume.namespace]
        refused = [
            Refusal(
                f"{r.volume.namespace or '-'}/{r.volume.pv or r.volume.volume_id or r.snapshot_id}",
                f"replica {r.snapshot_id} records no namespace/PVC, so no claim can be made for it",
            )
            for r in pool
            if not (r.volume.pvc and r.volume.namespace)
        ]
    else:
        named = [r for r in pool if r.volume.pvc == request.pvc and r.volume.namespace]
        if not named:
            pvcs = sorted({f"{r.volume.namespace or '-'}/{r.volume.pvc or '-'}" for r in pool})
            where = f" in namespace {request.namespace!r}" if request.namespace else ""
            raise ConfigError(
                f"backup {backup!r} has no replica of PVC {request.pvc!r}{where}; "
                f"its PVCs: {_listing(pvcs)}"
            )
        namespaces = sorted({r.volume.namespace or "" for r in named})
        if len(namespaces) > 1:
            raise ConfigError(
                f"PVC {request.pvc!r} of backup {backup!r} exists in several namespaces: "
                f"{_listing(namespaces)}; choose one with -n NAMESPACE"
            )
        refused = []
    groups: dict[tuple[str, str], list[Replica]] = defaultdict(list)
    for replica in named:
        groups[replica.volume.namespace or "", replica.volume.pvc or ""].append(replica)
    chosen: list[Replica] = []
    for (namespace, pvc), members in sorted(groups.items()):
        replica = _pick(members)
        if replica.completed:
            chosen.append(replica)
        else:
            refused.append(Refusal(f"{namespace}/{pvc}", refusal_reason(replica)))
    return Selection(tuple(chosen), tuple(refused))


_ZONE_LETTER = re.compile(r"^(?P<region>.*\d)(?P<letter>[a-z]+)$")


def choose_zone(
    region: str, recorded: str | None, requested: str | None, zones: Sequence[str]
) -> tuple[str, str | None]:
    """The AZ of the new volume and, when it is not the recorded one, a note saying which.

    `--availability-zone` wins (checked against the region's zones); else the recorded AZ
    when the region has it (the source region); else the recorded AZ's letter in this
    region (`eu-west-1b` → `eu-central-1b`); else ConfigError listing the region's zones.
    """
    available = ", ".join(zones) or "none reported"
    if requested:
        if requested not in zones:
            raise ConfigError(
                f"--availability-zone {requested} is not a zone of {region}; its zones: {available}"
            )
        return requested, None
    if not recorded:
        raise ConfigError(
            f"the replica records no availability zone; choose one of {region} with "
            f"--availability-zone: {available}"
        )
    if recorded in zones:
        return recorded, None
    match = _ZONE_LETTER.match(recorded)
    candidate = f"{region}{match.group('letter')}" if match else None
    if candidate is not None and candidate in zones:
        return candidate, f"using {candidate} (same letter as recorded {recorded})"
    raise ConfigError(
        f"{region} has no zone like the recorded {recorded}; choose one with "
        f"--availability-zone: {available}"
    )


def build_restore_key(
    *,
    scope: str,
    backup: str,
    namespace: str,
    pvc: str,
    target_namespace: str,
    target_pvc: str,
    region: str,
    zone: str,
) -> str:
    """The identity of one restore: 40 hex of sha256 over what makes it *this* restore.

    The target is part of it so that restoring the same PVC beside the original (another
    `--target-pvc`) makes its own volume instead of handing one volume to two PVs.
    """
    parts = (scope, backup, namespace, pvc, target_namespace, target_pvc, region, zone)
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:40]


def build_client_token(key: str, generation: int = 0) -> str:
    """CreateVolume's ClientToken (≤64 ASCII): the restore key plus the attempt generation.

    Generation = volumes of this restore that ended in `error`; a re-run after a crash sees
    the same generation and so the same token — EC2 answers with the volume it already
    made instead of making a second one.
    """
    return f"snapd-{key}-{generation}"


def fit_tag_value(value: str) -> str:
    """`value` as an EC2 tag value (≤256 characters): kept when it fits, else cut + hash.

    Kubernetes names can be longer than a tag takes (a 63-character namespace, `/` and a
    253-character PVC is 317). A value that does not fit keeps its first characters and
    ends in `~` and 16 hex of its sha256: deterministic and distinct, still readable.
    """
    if len(value) <= MAX_VALUE_LENGTH:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:16]
    return f"{value[: MAX_VALUE_LENGTH - 17]}~{digest}"


#: Tags looked up by exact value: never cut (a scope too long for a tag fails the plan).
_EXACT_TAGS = frozenset({CLUSTER, RESTORE_SCOPE})


def _fitted(tags: Mapping[str, str]) -> dict[str, str]:
    return {
        key: value if key in _EXACT_TAGS else fit_tag_value(value) for key, value in tags.items()
    }


def check_tags(plan: RestorePlan, scope: str) -> None:
    """ValueError when a tag of the copy-back or volume would be refused by EC2.

    Run while planning, so `--dry-run` fails whatever CreateVolume would fail, and a real
    run fails before any copy-back is made.
    """
    for tags in (build_copy_back_tags(plan, scope), build_volume_tags(plan, scope)):
        for key, value in tags.items():
            if len(value) > MAX_VALUE_LENGTH:
                raise ValueError(
                    f"tag {key} would be {len(value)} characters; EC2 takes at most "
                    f"{MAX_VALUE_LENGTH}"
                )


def _name_tag(prefix: str, plan: RestorePlan) -> str:
    return f"{prefix} {plan.label} {plan.backup}"[:MAX_VALUE_LENGTH]


def _restore_of(plan: RestorePlan) -> dict[str, str]:
    """The tags that name what a restore came from (replica, backup, namespace, PVC)."""
    return {
        RESTORE_OF: plan.replica.snapshot_id,
        RESTORE_BACKUP: plan.backup,
        RESTORE_NAMESPACE: plan.source_namespace,
        RESTORE_PVC: plan.source_pvc,
    }


def build_copy_back_tags(plan: RestorePlan, scope: str) -> dict[str, str]:
    """Tags of a copy-back (TagSpecifications of CopySnapshot).

    Found again by `snapd.io/restore-key`, never by the replica alone: two restores of one
    replica (the original PVC and one beside it) each have their own copy-back, and neither
    deletes the other's.
    """
    return _fitted(
        {
            CLUSTER: scope,
            **_restore_of(plan),
            RESTORE_TARGET: plan.target_label,
            RESTORE_KEY: plan.key,
            NAME: _name_tag("snapd copy-back of", plan),
        }
    )


#: EC2 takes snapshot descriptions of at most 255 characters.
MAX_DESCRIPTION = 255


def build_copy_back_description(plan: RestorePlan) -> str:
    """CopySnapshot's Description, cut to what EC2 takes (long names would not fit)."""
    return f"snapd restore of {plan.label} ({plan.backup})"[:MAX_DESCRIPTION]


def build_volume_tags(plan: RestorePlan, scope: str) -> dict[str, str]:
    """Tags of the restored volume; no `snapd.io/cluster` (see the module docstring)."""
    return _fitted(
        {
            RESTORE_SCOPE: scope,
            **_restore_of(plan),
            RESTORE_TARGET: plan.target_label,
            RESTORE_KEY: plan.key,
            NAME: _name_tag("snapd restore of", plan),
        }
    )


def build_volume_params(
    plan: RestorePlan, snapshot_id: str, scope: str, generation: int = 0
) -> dict[str, Any]:
    """CreateVolume's parameters: the recorded type, IOPS, throughput, size, encryption.

    IOPS only for io1/io2/gp3 and throughput only for gp3 (EC2 refuses them elsewhere).
    Deterministic for a given plan, snapshot and generation: EC2 compares a repeated
    ClientToken's parameters.
    """
    params: dict[str, Any] = {
        "AvailabilityZone": plan.zone,
        "SnapshotId": snapshot_id,
        "Size": plan.size_gib,
        "ClientToken": build_client_token(plan.key, generation),
        "TagSpecifications": [
            {
                "ResourceType": "volume",
                "Tags": [{"Key": k, "Value": v} for k, v in build_volume_tags(plan, scope).items()],
            }
        ],
    }
    if plan.volume_type:
        params["VolumeType"] = plan.volume_type
        if plan.volume_type in IOPS_TYPES and plan.iops:
            params["Iops"] = plan.iops
        if plan.volume_type in THROUGHPUT_TYPES and plan.throughput:
            params["Throughput"] = plan.throughput
    if plan.kms_key_id:
        params |= {"Encrypted": True, "KmsKeyId": plan.kms_key_id}
    elif plan.encrypted:
        params["Encrypted"] = True
    return params


def _check_volume_settings(replica: Replica) -> None:
    """io1/io2 need IOPS; a replica that records the type but not the IOPS cannot be rebuilt."""
    if replica.volume.volume_type in IOPS_REQUIRED and not replica.volume.iops:
        raise ValueError(
            f"the recorded volume type {replica.volume.volume_type} needs IOPS, which the replica "
            "does not record"
        )
    if not replica.volume.size_gib:
        raise ValueError("the replica reports no volume size")


def plan_restores(
    replicas: Sequence[Replica], request: RestoreRequest, zones: Sequence[str]
) -> tuple[list[RestorePlan], list[Refusal]]:
    """One RestorePlan per replica; clashing targets are ConfigError.

    A zone problem is ConfigError when one PVC is restored, and a refusal of that PVC alone
    with `--all`. A replica whose recorded settings cannot make a volume (io2 without IOPS,
    no size) or whose names do not fit EC2's tags is a refusal of that PVC alone (exit 1);
    the others go ahead.
    """
    plans: list[RestorePlan] = []
    refused: list[Refusal] = []
    for replica in replicas:
        planned = _plan_one(replica, request, zones)
        if isinstance(planned, Refusal):
            refused.append(planned)
        else:
            plans.append(planned)
    plans, unbuildable = _buildable(plans, request.scope)
    clashes = _clashing_targets(plans)
    if clashes:
        raise ConfigError("; ".join(clashes))
    return plans, refused + unbuildable


def _plan_one(
    replica: Replica, request: RestoreRequest, zones: Sequence[str]
) -> RestorePlan | Refusal:
    """The plan for one replica, or why that PVC alone cannot be restored."""
    namespace, pvc = replica.volume.namespace or "", replica.volume.pvc or ""
    label = f"{namespace}/{pvc}"
    try:
        zone, note = choose_zone(
            request.target_region,
            replica.volume.availability_zone,
            request.availability_zone,
            zones,
        )
    except ConfigError as error:
        if not request.restore_all:
            raise
        # With --all, one PVC's zone is that PVC's problem: the others go ahead.
        return Refusal(label, str(error))
    try:
        _check_volume_settings(replica)
    except ValueError as error:
        return Refusal(label, str(error))
    target_namespace = request.target_namespace or namespace
    target_pvc = request.target_pvc or pvc
    key = build_restore_key(
        scope=request.scope,
        backup=request.backup,
        namespace=namespace,
        pvc=pvc,
        target_namespace=target_namespace,
        target_pvc=target_pvc,
        region=request.target_region,
        zone=zone,
    )
    return RestorePlan(
        replica=replica,
        backup=request.backup,
        source_namespace=namespace,
        source_pvc=pvc,
        target_namespace=target_namespace,
        target_pvc=target_pvc,
        region=request.target_region,
        zone=zone,
        zone_note=note,
        copy_back=request.copy_back,
        pv_name=manifests.build_pv_name(target_namespace, target_pvc, request.backup),
        key=key,
        size_gib=int(replica.volume.size_gib or 0),
        volume_type=replica.volume.volume_type,
        iops=replica.volume.iops,
        throughput=replica.volume.throughput,
        encrypted=replica.encrypted,
        kms_key_id=request.kms_key_id,
    )


def _buildable(plans: list[RestorePlan], scope: str) -> tuple[list[RestorePlan], list[Refusal]]:
    """The plans whose PV/PVC and tags can be built; a refusal for each of the others."""
    buildable: list[RestorePlan] = []
    refused: list[Refusal] = []
    for plan in plans:
        try:
            build_manifests(plan, PLACEHOLDER_VOLUME, scope)
        except ValueError as error:
            refused.append(Refusal(plan.label, f"cannot build its PV/PVC: {error}"))
            continue
        try:
            check_tags(plan, scope)
        except ValueError as error:
            refused.append(Refusal(plan.label, f"cannot tag its copy-back or volume: {error}"))
            continue
        buildable.append(plan)
    return buildable, refused


def _clashing_targets(plans: list[RestorePlan]) -> list[str]:
    """One problem per target PVC that more than one plan would restore into."""
    targets: dict[str, list[str]] = defaultdict(list)
    for plan in plans:
        targets[plan.target_label].append(plan.label)
    return [
        f"{', '.join(sources)} would all be restored into {target}"
        for target, sources in sorted(targets.items())
        if len(sources) > 1
    ]


def build_manifests(
    plan: RestorePlan, volume_id: str, scope: str, size_gib: int | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The PV of the restored volume and the proposed PVC that binds it (ValueError if bad)."""
    replica = plan.replica
    size = size_gib or plan.size_gib
    pv = manifests.build_pv(
        name=plan.pv_name,
        volume_id=volume_id,
        size_gib=size,
        availability_zone=plan.zone,
        claim_namespace=plan.target_namespace,
        claim_name=plan.target_pvc,
        backup=plan.backup,
        source_namespace=plan.source_namespace,
        source_pvc=plan.source_pvc,
        scope=scope,
        storage_class=replica.volume.storage_class,
        fs_type=replica.volume.fs_type,
        access_modes=replica.volume.access_modes or ("ReadWriteOnce",),
        volume_mode=replica.volume.volume_mode,
        annotations={RESTORE_OF: replica.snapshot_id},
    )
    identity = manifests.restore_labels(
        backup=plan.backup, namespace=plan.source_namespace, pvc=plan.source_pvc
    )
    pvc = manifests.build_pvc(
        name=plan.target_pvc,
        namespace=plan.target_namespace,
        volume_name=plan.pv_name,
        size_gib=size,
        storage_class=replica.volume.storage_class,
        access_modes=replica.volume.access_modes or ("ReadWriteOnce",),
        volume_mode=replica.volume.volume_mode,
        labels=identity,
        annotations={**identity, RESTORE_OF: replica.snapshot_id},
    )
    return pv, pvc


def pv_volume_id(pv: Mapping[str, Any]) -> str | None:
    """The EBS volume a PV points at (CSI handle, or the in-tree `aws://zone/vol-…`)."""
    spec = pv.get("spec") or {}
    handle = (spec.get("csi") or {}).get("volumeHandle")
    if handle:
        return str(handle)
    legacy = (spec.get("awsElasticBlockStore") or {}).get("volumeID")
    return str(legacy).rsplit("/", 1)[-1] if legacy else None


def rival_pvs(plan: RestorePlan, pvs: Iterable[Mapping[str, Any]]) -> tuple[str, ...]:
    """Restored PVs, other than this restore's, that already claim the target PVC.

    A PV pre-bound to a PVC (a `claimRef` without a uid) waits for that PVC; two of them
    race for it when it is created, and either may win. A claimRef with a uid belongs to a
    PVC that was bound (it goes Released with that PVC), so it never competes.
    """
    rivals = []
    for pv in pvs:
        name = str((pv.get("metadata") or {}).get("name") or "")
        claim = (pv.get("spec") or {}).get("claimRef") or {}
        if (
            name
            and name != plan.pv_name
            and not claim.get("uid")
            and (claim.get("namespace"), claim.get("name"))
            == (plan.target_namespace, plan.target_pvc)
        ):
            rivals.append(name)
    return tuple(sorted(rivals))


def pv_conflict(plan: RestorePlan, found: Found) -> str | None:
    """Why an existing PV stops this restore (None: no conflict).

    Either a PV of the target's name points at another volume, or another restored PV
    already claims the target PVC.
    """
    if found.rivals and found.pv is None:
        rivals = ", ".join(found.rivals)
        return (
            f"PVC {plan.target_label} is already claimed by PersistentVolume {rivals} "
            "(restored earlier, waiting for that PVC); a second PV claiming it would race "
            f"for the binding. Restore beside it with --target-pvc NAME, or delete that PV "
            f"if it is no longer wanted (kubectl delete pv {found.rivals[0]}; its EBS volume "
            "stays, the reclaim policy is Retain)"
        )
    if found.pv is None:
        return None
    points_at = pv_volume_id(found.pv) or "no EBS volume"
    if found.volume is not None and points_at == found.volume.volume_id:
        return None
    ours = (
        f"this restore's volume {found.volume.volume_id}"
        if found.volume
        else f"a volume of this restore in {plan.zone}"
    )
    return (
        f"PersistentVolume {plan.pv_name} exists and points at {points_at}, not at {ours}; "
        f"check it (kubectl get pv {plan.pv_name} -o yaml) and delete it if it is stale"
    )


def released_claim(plan: RestorePlan, found: Found) -> str | None:
    """Why this restore's PV cannot be bound again: its claim was deleted (it is Released).

    The PV keeps `claimRef.uid` of the PVC it was bound to; once that PVC is gone no new
    PVC can bind it, whatever its name. None when the PV is free or bound to the PVC there.
    """
    if found.pv is None or not found.kube_checked:
        return None
    claim = (found.pv.get("spec") or {}).get("claimRef") or {}
    uid = claim.get("uid")
    if not uid:
        return None
    current = ((found.pvc or {}).get("metadata") or {}).get("uid")
    if current == uid:
        return None
    volume = pv_volume_id(found.pv) or "its volume"
    return (
        f"PersistentVolume {plan.pv_name} is Released: the PVC {plan.target_label} it was "
        f"bound to (uid {uid}) was deleted, so no new PVC can bind it; {volume} may hold data "
        "written since the restore. To use that volume as it is now: kubectl patch pv "
        f'{plan.pv_name} --type json -p \'[{{"op":"remove","path":"/spec/claimRef/uid"}},'
        f'{{"op":"remove","path":"/spec/claimRef/resourceVersion"}}]\'. To restore the '
        f"backup afresh: kubectl delete pv {plan.pv_name}; aws ec2 delete-volume --region "
        f"{plan.region} --volume-id {volume}; then run the restore again"
    )


def encryption_mismatch(plan: RestorePlan, found: Found) -> str | None:
    """Why an existing volume of this restore is not what `--kms-key-id` asks for.

    A re-run reuses the volume it finds; a key it was not made with is refused, never
    silently ignored. Aliases cannot be compared without KMS: only ids and ARNs are.
    """
    volume, wanted = found.volume, plan.kms_key_id
    if volume is None or not wanted:
        return None
    actual = volume.kms_key_id or ""
    same = actual == wanted or actual.endswith(f"/{wanted}") or wanted.startswith("alias/")
    if volume.encrypted and same:
        return None
    has = f"encrypted with {actual}" if volume.encrypted else "not encrypted"
    return (
        f"volume {volume.volume_id} of this restore exists and is {has}, not encrypted with "
        f"{wanted}; run again without --kms-key-id to keep it, or delete it (and its PV "
        f"{plan.pv_name}, if any) to restore with the new key: aws ec2 delete-volume "
        f"--region {plan.region} --volume-id {volume.volume_id}"
    )


def missing_namespace(plan: RestorePlan, found: Found, request: RestoreRequest) -> str | None:
    """Why `--target-namespace` cannot be used: the namespace does not exist (a typo?)."""
    if request.target_namespace and found.namespace_exists is False:
        return (
            f"namespace {plan.target_namespace} (--target-namespace) does not exist in the "
            f"cluster; create it first (kubectl create namespace {plan.target_namespace}) or "
            "choose another --target-namespace"
        )
    return None


def blocker(plan: RestorePlan, found: Found, request: RestoreRequest) -> str | None:
    """Why this PVC's restore must not start (None: go ahead); checked before any change."""
    return (
        missing_namespace(plan, found, request)
        or pv_conflict(plan, found)
        or released_claim(plan, found)
        or encryption_mismatch(plan, found)
    )


def beside_name(pvc: str) -> str:
    """A valid PVC name for restoring beside `pvc`: `<pvc>-restored`, cut to fit 253.

    The cut never leaves a trailing `-`/`.` and the result is never `pvc` itself.
    """
    suffix = "-restored"
    name = f"{pvc[: 253 - len(suffix)].rstrip('-.')}{suffix}"
    if name == pvc:
        suffix = "-restored-2"
        name = f"{pvc[: 253 - len(suffix)].rstrip('-.')}{suffix}"
    return name


def pvc_file_problem(text: str, outcomes: Sequence[Outcome]) -> str | None:
    """Why an existing PVC file is not the one these restores need (None: it is).

    The file must hold, for every restored PVC, a PVC of that namespace and name bound
    (`spec.volumeName`) to this restore's PV; a file written for another backup binds
    other PVs and must not be handed to `kubectl create -f`.
    """
    try:
        docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    except yaml.YAMLError as error:
        return f"it is not valid YAML ({str(error).splitlines()[0]})"
    binds = {
        (
            (d.get("metadata") or {}).get("namespace"),
            (d.get("metadata") or {}).get("name"),
        ): (d.get("spec") or {}).get("volumeName")
        for d in docs
        if d.get("kind") == "PersistentVolumeClaim"
    }
    wrong = []
    for outcome in outcomes:
        plan = outcome.plan
        bound = binds.get((plan.target_namespace, plan.target_pvc))
        if bound != plan.pv_name:
            has = f"binds PV {bound}" if bound else "has no such PVC"
            wrong.append(f"PVC {plan.target_label} {has}, not {plan.pv_name}")
    return "; ".join(wrong) or None


def pick_volume(volumes: Sequence[VolumeRecord]) -> tuple[VolumeRecord | None, int]:
    """The volume to reuse (ready before creating, then oldest) and how many ended in error."""
    floor = datetime.min.replace(tzinfo=UTC)
    live = sorted(
        (v for v in volumes if v.state in LIVE_VOLUME_STATES),
        key=lambda v: (v.state == "creating", v.create_time or floor, v.volume_id),
    )
    failed = sum(1 for v in volumes if v.state == "error")
    return (live[0] if live else None), failed
