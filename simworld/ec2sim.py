"""The EC2 simulator: what moto 5.2.5 lacks and snapd relies on, patched into moto's process.

moto completes copies at once, ignores limits, pagination, `OwnerIds` and ClientTokens, and
never fails (docs/ebs.md#what-moto-lacks-and-the-simulator-adds). `Ec2Simulator.install()`
patches moto's in-process EC2 backend and response classes, so every client of the moto
server — this process's aioboto3, or a `snapd` subprocess over HTTP — sees:

- copies that stay `pending` with rising `Progress` for `copy_duration` seconds, then end
  `completed` (or `error` with a StateMessage); the state is computed when read, so
  DescribeSnapshots, its `status` filter, the copy limit and DeleteSnapshot always agree;
- the per-region limit of `copy_limit` pending copies (`ResourceLimitExceeded`, HTTP 400),
  counting every pending snapshot of the account in the region, foreign ones too;
- standing refusals of CopySnapshot (`refuse_copies`: `UnauthorizedOperation` 403 by
  default, for one source or all), as an IAM policy or a KMS key policy refuses them,
  checked before the copy limit as AWS authorizes before it counts;
- queued faults for any EC2 action (`RequestLimitExceeded` 503, `InternalError` 500, …)
  answered over HTTP, so botocore's retry handler sees them as it would from AWS;
- `aws:` tag keys and more than 50 tags refused before anything is created;
- DescribeSnapshots/DescribeVolumes with `MaxResults`/`NextToken` pages and `OwnerIds`;
- CreateVolume with ClientToken idempotency (`IdempotentParameterMismatch` for a token
  sent with other parameters or whose volume was deleted), `IncorrectState` for a snapshot
  that is not `completed`, unknown AZs refused, and volumes that go `creating` →
  `available` | `error`;
- a count of every EC2 call by action (`calls`), to prove batching;
- EBS snapshot lock (LockSnapshot, UnlockSnapshot, DescribeLockedSnapshots, DeleteSnapshot
  refused under a lock) and Recycle Bin ListRules/GetRule on the `rbin` endpoint, which
  moto's server cannot route — see `simworld/snapshot_lock.py`. Locks run on wall-clock
  time (`wall_now()`), which `travel()` moves forward.
- time-based copies (CompletionDurationMinutes validated, recorded, and reported back by
  DescribeSnapshots as `TransferType` / `CompletionDurationMinutes`, which moto drops);

Use (the `ec2sim` pytest fixture does this around each test)::

    sim = Ec2Simulator.install()          # after the moto server started in this process
    sim.copy_duration = 2.0               # seconds a copy stays pending
    sim.inject("CopySnapshot", "RequestLimitExceeded", times=2)
    ...
    assert sim.calls["CopySnapshot"] <= 3 * copied
    sim.uninstall()

Time comes from `clock` (default `time.monotonic`); tests swap in a `ManualClock` and
advance it instead of sleeping. Simulator state that belongs to a snapshot, a volume or a
region backend is stored on that moto object, so moto's `/moto-api/reset` wipes it with the
backends; `reset()` clears the simulator's own queues and counters.

Must not: be imported by production code, or import moto at module import time (moto is in
the `testing` extra). It is pinned to moto 5.2.5 and checks the patched names and signatures
at `install()`, failing loudly if moto changed.
"""

from __future__ import annotations

import base64
import binascii
import inspect
import json
import threading
import time
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, ClassVar

from simworld.moto_server import ACCOUNT_ID
from simworld.snapshot_lock import (
    SNAPSHOT_LOCKED_CODE,
    LockError,
    LockRequest,
    RecycleBinApp,
    RecycleBinRule,
    SnapshotLock,
    filter_locks,
    is_rbin_request,
    lock_snapshot,
    locked_message,
    unlock_snapshot,
)

#: The moto release these patches were written and verified against.
MOTO_VERSION = "5.2.5"
#: AWS: concurrent snapshot copies per destination region, per account (not adjustable).
DEFAULT_COPY_LIMIT = 20
#: CopySnapshot's CompletionDurationMinutes: 15 to 2880 (48 h), in steps of 15.
COMPLETION_MINUTES_MAX = 2880
#: StateMessage of a copy whose KMS key cannot be used (docs/ebs.md#copysnapshot).
KMS_KEY_NOT_ACCESSIBLE = "Given key ID is not accessible"
#: AWS tag limits.
MAX_TAGS = 50
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 256
#: The HTTP status AWS answers with, for fault codes injected without an explicit status.
FAULT_STATUS = {
    "RequestLimitExceeded": 503,
    "ServiceUnavailable": 503,
    "Unavailable": 503,
    "InternalError": 500,
    "InternalFailure": 500,
    "UnauthorizedOperation": 403,
}
#: What EC2 answers when IAM denies an action (the encoded part is opaque).
UNAUTHORIZED_MESSAGE = (
    "You are not authorized to perform this operation. Encoded authorization failure "
    "message: ec2sim-encoded-denial"
)
DEFAULT_FAULT_MESSAGE = {
    "UnauthorizedOperation": UNAUTHORIZED_MESSAGE,
    "RequestLimitExceeded": "Request limit exceeded.",
    "InternalError": "An internal error has occurred.",
    "ServiceUnavailable": "The service is unavailable. Please try again shortly.",
}

_COPY = "_ec2sim_progress"  # attribute on a moto Snapshot or Volume: its _Progress
_TOKENS = "_ec2sim_client_tokens"  # attribute on a moto EC2 backend: ClientToken → volume
_LOCK = "_ec2sim_lock"  # attribute on a moto Snapshot: its SnapshotLock
_WILDCARDS = frozenset("*?[")


class MotoMismatchError(RuntimeError):
    """moto is not the release the simulator was written for, or its internals moved."""


class ManualClock:
    """A clock that moves only when told: `clock.advance(1.5)`. Thread-safe enough for reads."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Fault:
    """An error answered instead of (or, with `after_action`, after doing) the next calls."""

    action: str
    code: str
    status: int
    message: str
    remaining: int
    region: str | None = None
    after_action: bool = False


@dataclass
class _Progress:
    """A snapshot copy or a volume on its way: `pending`/`creating` until `started+duration`."""

    started: float
    duration: float
    error: str | None = None  # set: ends in `error` (a copy's StateMessage)
    visible_at: float = 0.0  # before this, DescribeSnapshots does not see the snapshot

    def finished(self, now: float) -> bool:
        return now >= self.started + self.duration

    def percent(self, now: float) -> int:
        if self.duration <= 0:
            return 100
        return max(0, min(99, int(100 * (now - self.started) / self.duration)))


class _ArbitraryVolume:
    """The volume a copied snapshot points at: AWS reports an arbitrary `vol-ffffffff`."""

    def __init__(self, size: int, volume_id: str = "vol-ffffffff") -> None:
        self.id = volume_id
        self.size = size


@dataclass
class _Patch:
    owner: type
    name: str
    had_own: bool
    old: Any


class Ec2Simulator:
    """The installed simulator; one per process. Settings are plain attributes.

    `Ec2Simulator.install()` patches moto and returns the simulator; `uninstall()` restores
    moto (also as a context manager). `reset()` clears queued faults, failure plans,
    counters and restores the default settings (not the clock).
    """

    _active: ClassVar[Ec2Simulator | None] = None

    def __init__(self, clock: Callable[[], float] | None = None, account_id: str = ACCOUNT_ID):
        self.clock: Callable[[], float] = clock or time.monotonic
        self.account_id = account_id
        self._lock = threading.RLock()
        self._tls = threading.local()
        self._patches: list[_Patch] = []
        self.calls: Counter[str] = Counter()
        self.region_calls: Counter[tuple[str, str]] = Counter()
        #: How far simulated wall-clock time (locks, expiry) runs ahead of the real one.
        self.wall_offset = timedelta(0)
        #: The Recycle Bin endpoint (rules per region); `add_recycle_bin_rule` fills it.
        self.rbin = RecycleBinApp(account_id, self._lock)
        self._set_defaults()

    def _set_defaults(self) -> None:
        #: Seconds a copy stays `pending` (fractions welcome).
        self.copy_duration: float = 1.0
        #: Per source snapshot id: its copies take this long instead.
        self.copy_durations: dict[str, float] = {}
        #: Pending copies allowed per destination region (all of the account's, not only ours).
        self.copy_limit: int = DEFAULT_COPY_LIMIT
        #: Seconds a fresh copy is invisible to DescribeSnapshots (eventual consistency).
        self.invisible_for: float = 0.0
        #: Seconds a new volume stays `creating`.
        self.volume_duration: float = 0.05
        self.faults: list[Fault] = []
        self._copy_errors: dict[str, list[Any]] = {}  # source id → [remaining, message]
        #: Standing CopySnapshot refusals: source id (None = every source) → the answer.
        self._copy_refusals: dict[str | None, Fault] = {}
        self._volume_errors: dict[str, int] = {}  # snapshot id → remaining
        self._in_use: dict[str, str] = {}  # snapshot id → AMI id
        #: CopySnapshot's time-based copy, as asked: copy id → CompletionDurationMinutes.
        #: moto ignores the parameter; the simulator validates and records it.
        self.completion_minutes: dict[str, int] = {}

    # ----------------------------------------------------------------------- lifecycle

    @classmethod
    def install(
        cls, clock: Callable[[], float] | None = None, account_id: str = ACCOUNT_ID
    ) -> Ec2Simulator:
        """Check moto, patch it, and return the active simulator (one at a time)."""
        if cls._active is not None:
            raise RuntimeError("an Ec2Simulator is already installed; uninstall() it first")
        check_moto()
        sim = cls(clock, account_id)
        sim._patch_moto()
        cls._active = sim
        return sim

    def uninstall(self) -> None:
        """Restore moto's own behaviour; snapshots created meanwhile keep their stored state."""
        with self._lock:
            for patch in reversed(self._patches):
                if patch.had_own:
                    setattr(patch.owner, patch.name, patch.old)
                else:
                    delattr(patch.owner, patch.name)
            self._patches.clear()
            if Ec2Simulator._active is self:
                Ec2Simulator._active = None

    def __enter__(self) -> Ec2Simulator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.uninstall()

    def reset(self) -> None:
        """Forget faults, failure plans and call counts; default settings again."""
        with self._lock:
            self.calls.clear()
            self.region_calls.clear()
            self.wall_offset = timedelta(0)
            self.rbin.reset()
            self._set_defaults()

    # -------------------------------------------------------------------- test controls

    def inject(
        self,
        action: str,
        code: str,
        *,
        times: int = 1,
        status: int | None = None,
        message: str | None = None,
        region: str | None = None,
        after_action: bool = False,
    ) -> Fault:
        """Answer the next `times` calls of `action` (in `region`, or any) with `code`.

        The status defaults to AWS's for the code (`RequestLimitExceeded` 503,
        `InternalError` 500, anything else 400). With `after_action`, the call is carried
        out first and the error answered anyway — a CopySnapshot that made a copy but whose
        answer was lost, which botocore then retries.
        """
        fault = Fault(
            action=action,
            code=code,
            status=status or FAULT_STATUS.get(code, 400),
            message=message if message is not None else DEFAULT_FAULT_MESSAGE.get(code, code),
            remaining=times,
            region=region,
            after_action=after_action,
        )
        with self._lock:
            self.faults.append(fault)
        return fault

    def fail_copies(
        self, source_snapshot_id: str, *, times: int = 1, message: str = KMS_KEY_NOT_ACCESSIBLE
    ) -> None:
        """The next `times` copies of this source end in `error` with `message`."""
        with self._lock:
            self._copy_errors[source_snapshot_id] = [times, message]

    def refuse_copies(
        self,
        source_snapshot_id: str | None = None,
        *,
        code: str = "UnauthorizedOperation",
        message: str | None = None,
        status: int | None = None,
    ) -> None:
        """Refuse every CopySnapshot of this source (None: of any source) until
        `allow_copies`: nothing is created, the call answers `code` (HTTP 403 for
        `UnauthorizedOperation`, else AWS's status for the code, else 400)."""
        refusal = Fault(
            action="CopySnapshot",
            code=code,
            status=status or FAULT_STATUS.get(code, 400),
            message=message if message is not None else DEFAULT_FAULT_MESSAGE.get(code, code),
            remaining=0,
        )
        with self._lock:
            self._copy_refusals[source_snapshot_id] = refusal

    def allow_copies(self, source_snapshot_id: str | None = None) -> None:
        """Lift a standing refusal set by `refuse_copies` with the same argument."""
        with self._lock:
            self._copy_refusals.pop(source_snapshot_id, None)

    def fail_volumes_from(self, snapshot_id: str, *, times: int = 1) -> None:
        """The next `times` volumes created from this snapshot end in `error`."""
        with self._lock:
            self._volume_errors[snapshot_id] = times

    def fail_volume(self, region: str, volume_id: str) -> None:
        """This volume ends in `error` (at once if it is already past `creating`)."""
        volume = self.backend(region).get_volume(volume_id)
        progress = volume.__dict__.get(_COPY)
        if progress is None:
            progress = _Progress(started=self.clock(), duration=0.0)
            volume.__dict__[_COPY] = progress
        progress.error = "error"

    def mark_in_use(self, snapshot_id: str, ami_id: str = "ami-0123456789abcdef0") -> None:
        """DeleteSnapshot of this snapshot answers `InvalidSnapshot.InUse` (an AMI uses it)."""
        with self._lock:
            self._in_use[snapshot_id] = ami_id

    def add_snapshot(
        self,
        region: str,
        *,
        tags: dict[str, str] | None = None,
        owner_id: str | None = None,
        volume_id: str | None = None,
        size_gib: int = 8,
        encrypted: bool = False,
        kms_key_id: str | None = None,
        description: str = "",
        pending_for: float | None = None,
        ends_in_error: str | None = None,
        completion_minutes: int | None = None,
        started_ago: float = 0.0,
    ) -> str:
        """Put a snapshot straight into the backend (fast seeding); returns its id.

        `volume_id` names an existing volume in `region` (else an arbitrary one of
        `size_gib`); `owner_id` makes it another account's; `pending_for` keeps it pending
        that many seconds, like a copy in flight, and `ends_in_error` (a StateMessage) makes
        that pending copy end in `error` instead of `completed`. `completion_minutes` makes it
        a time-based copy, and `started_ago` moves its StartTime that many seconds back (a
        copy an earlier process started long ago).
        """
        from moto.ec2.models.elastic_block_store import Snapshot
        from moto.ec2.utils import random_snapshot_id

        backend = self.backend(region)
        volume = backend.get_volume(volume_id) if volume_id else _ArbitraryVolume(size_gib)
        snapshot = Snapshot(
            backend,
            random_snapshot_id(),
            volume=volume,
            description=description,
            encrypted=encrypted,
            kms_key_id=kms_key_id,
            owner_id=owner_id,
        )
        if started_ago:
            snapshot.start_time = snapshot.start_time - timedelta(seconds=started_ago)
        if completion_minutes is not None:
            snapshot.__dict__["transfer_type"] = "time-based"
            snapshot.__dict__["completion_duration_minutes"] = completion_minutes
        if pending_for is not None:
            now = self.clock()
            snapshot.__dict__[_COPY] = _Progress(
                started=now, duration=pending_for, error=ends_in_error
            )
        backend.snapshots[snapshot.id] = snapshot
        if tags:
            backend.create_tags([snapshot.id], dict(tags))
        return str(snapshot.id)

    def add_foreign_pending(
        self, region: str, count: int, duration: float | None = None
    ) -> list[str]:
        """`count` pending copies of other tools in this account; they hold copy slots."""
        seconds = self.copy_duration if duration is None else duration
        return [
            self.add_snapshot(region, description="copy by another tool", pending_for=seconds)
            for _ in range(count)
        ]

    def make_visible(self, region: str) -> None:
        """Every snapshot of `region` is visible to DescribeSnapshots from now on (EC2's
        eventual consistency caught up), whatever `invisible_for` said when it was made."""
        now = self.clock()
        with self._lock:
            for snapshot in list(self.backend(region).snapshots.values()):
                progress = snapshot.__dict__.get(_COPY)
                if progress is not None:
                    progress.visible_at = min(progress.visible_at, now)

    def finish_pending(self, region: str) -> int:
        """Every copy pending in `region` ends now (as it would have: `completed`, or `error`
        when it was planned to fail); returns how many. For tests that need copies to stay
        pending through an interruption and then to settle without waiting."""
        now = self.clock()
        finished = 0
        with self._lock:
            for snapshot in list(self.backend(region).snapshots.values()):
                progress = snapshot.__dict__.get(_COPY)
                if progress is not None and not progress.finished(now):
                    progress.duration = now - progress.started
                    finished += 1
        return finished

    def pending_count(self, region: str) -> int:
        """The account's pending snapshots in `region` — what the copy limit counts."""
        return self._pending_in(self.backend(region))

    def wall_now(self) -> datetime:
        """Simulated wall-clock time (UTC): real time plus `wall_offset`."""
        return datetime.now(UTC) + self.wall_offset

    def travel(self, delta: timedelta) -> None:
        """Move simulated wall-clock time forward: locks expire, cooling-off periods end."""
        with self._lock:
            self.wall_offset += delta

    def lock_of(self, region: str, snapshot_id: str) -> SnapshotLock | None:
        """The snapshot's lock (expired ones too), or None."""
        snapshot = self.backend(region).snapshots.get(snapshot_id)
        return None if snapshot is None else snapshot.__dict__.get(_LOCK)

    def put_lock(
        self, region: str, snapshot_id: str, *, mode: str = "governance", days: float = 7
    ) -> SnapshotLock:
        """Lock a snapshot straight in the backend (fast seeding of many locks)."""
        snapshot = self.backend(region).snapshots[snapshot_id]
        now = self.wall_now()
        lock = SnapshotLock(
            snapshot_id=snapshot_id,
            owner_id=snapshot.owner_id,
            mode=mode,
            created=now,
            duration_start=now,
            expires=now + timedelta(days=days),
        )
        snapshot.__dict__[_LOCK] = lock
        return lock

    def add_recycle_bin_rule(
        self,
        region: str,
        *,
        resource_tags: dict[str, str] | None = None,
        exclude_tags: dict[str, str] | None = None,
        resource_type: str = "EBS_SNAPSHOT",
        retention_days: int = 7,
        status: str = "available",
    ) -> str:
        """A Recycle Bin retention rule in `region`; region-level without `resource_tags`."""
        with self._lock:
            rules = self.rbin.rules.setdefault(region, [])
            identifier = f"rule-{len(rules) + 1:04d}{region.replace('-', '')[:6]}"
            rules.append(
                RecycleBinRule(
                    identifier=identifier,
                    resource_type=resource_type,
                    retention_days=retention_days,
                    resource_tags=list((resource_tags or {}).items()),
                    exclude_tags=list((exclude_tags or {}).items()),
                    status=status,
                )
            )
            return identifier

    def backend(self, region: str) -> Any:
        """moto's EC2 backend of this account and region."""
        from moto.ec2.models import ec2_backends

        return ec2_backends[self.account_id][region]

    # ------------------------------------------------------------------------ internals

    def _pending_in(self, backend: Any) -> int:
        return sum(
            1
            for snapshot in list(backend.snapshots.values())
            if snapshot.owner_id == backend.account_id and snapshot.status == "pending"
        )

    def _visible(self, snapshot: Any, now: float) -> bool:
        progress = snapshot.__dict__.get(_COPY)
        return progress is None or now >= progress.visible_at

    def _take_fault(self, action: str, region: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.action == action and fault.region in (None, region):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def _take_copy_error(self, source_snapshot_id: str) -> str | None:
        plan = self._copy_errors.get(source_snapshot_id)
        if not plan:
            return None
        plan[0] -= 1
        if plan[0] <= 0:
            del self._copy_errors[source_snapshot_id]
        return str(plan[1])

    def _take_volume_error(self, snapshot_id: str | None) -> bool:
        if not snapshot_id or not self._volume_errors.get(snapshot_id):
            return False
        self._volume_errors[snapshot_id] -= 1
        return True

    def _error(self, code: str, message: str, status: int = 400) -> Exception:
        """An EC2 error moto serialises; a non-400 status is applied by the call wrapper."""
        from moto.ec2.exceptions import EC2ClientError

        if status != 400:
            self._tls.status = status
        return EC2ClientError(code, message)

    def _set(self, owner: type, name: str, value: Any) -> None:
        self._patches.append(_Patch(owner, name, name in owner.__dict__, owner.__dict__.get(name)))
        setattr(owner, name, value)

    def _patch_moto(self) -> None:
        """Install every patch; each concern's builder (`_PATCH_BUILDERS`) says what it changes."""
        for build in _PATCH_BUILDERS:
            for owner, name, value in build(self):
                self._set(owner, name, value)


@dataclass(frozen=True)
class _ById:
    """Something `_paginate` can order and page by `id`."""

    id: str
    value: Any


def _optional_int(value: Any) -> int | None:
    return None if value is None or value == "" else int(value)


def _optional_time(value: Any) -> datetime | None:
    """A request timestamp (botocore sends ISO 8601) as an aware UTC datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _kms_region(key: str) -> str | None:
    """The region of a KMS key ARN (`arn:aws:kms:REGION:…`); None for ids and aliases."""
    parts = key.split(":")
    if len(parts) > 3 and parts[0] == "arn" and parts[2] == "kms":
        return parts[3]
    return None


def _literal(values: Iterable[str]) -> bool:
    return not any(_WILDCARDS & set(v) for v in values)


def _fast_filter(
    backend: Any,
    filters: dict[str, list[str]],
    objects: list[Any],
    is_filter_matching: Callable[[Any, str, Any], bool],
) -> list[Any]:
    """moto's `generic_filter` with set lookups where the values hold no wildcard.

    moto matches each string value against every filter value with fnmatch; for literal
    values that is equality, so a set gives the same answer without the per-value scan.
    Tag filters read the backend's tag dict of one resource instead of all tags.
    """
    tag_db = backend.tags
    for name, values in filters.items():
        if not isinstance(values, list) or not _literal(values):
            objects = [o for o in objects if is_filter_matching(o, name, values)]
        elif name.startswith("tag:"):
            key, wanted = name[4:], set(values)
            objects = [o for o in objects if tag_db.get(o.id, {}).get(key) in wanted]
        elif name == "tag-key":
            wanted = set(values)
            objects = [o for o in objects if wanted & tag_db.get(o.id, {}).keys()]
        else:
            wanted = set(values)
            kept = []
            for o in objects:
                value = o.get_filter_value(name)
                if isinstance(value, str):
                    if value in wanted:
                        kept.append(o)
                elif is_filter_matching(o, name, values):
                    kept.append(o)
            objects = kept
    return objects


def _encode_token(last_id: str) -> str:
    raw = json.dumps({"v": 1, "after": last_id}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_token(sim: Ec2Simulator, token: str) -> str:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        after = data["after"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise sim._error(
            "InvalidParameterValue", f"Invalid value '{token}' for parameter nextToken"
        ) from None
    if not isinstance(after, str):
        raise sim._error("InvalidParameterValue", f"Invalid value '{token}' for nextToken")
    return after


def _ids_or_page(
    sim: Ec2Simulator, response: Any, ids_param: str, set_name: str
) -> tuple[list[str], Any, str | None]:
    """A Describe request's ids and page (MaxResults, NextToken); AWS refuses both at once."""
    ids = response._get_param(ids_param, [])
    max_results = response._get_param("MaxResults")
    next_token = response._get_param("NextToken")
    if ids and (max_results is not None or next_token):
        raise sim._error(
            "InvalidParameterCombination",
            f"The parameter {set_name} cannot be used with the parameter maxResults",
        )
    return ids, max_results, next_token


def _page_result(key: str, items: list[Any], token: str | None) -> dict[str, Any]:
    """A Describe* answer: the page under `key`, and NextToken when there is a next page."""
    return {key: items, "NextToken": token} if token else {key: items}


def _paginate(
    sim: Ec2Simulator, items: list[Any], max_results: Any, next_token: str | None
) -> tuple[list[Any], str | None]:
    """One page in id order after the token's id; AWS allows MaxResults 5–1000."""
    if max_results is None and not next_token:
        return items, None
    if max_results is not None and int(max_results) < 5:
        raise sim._error(
            "InvalidParameterValue",
            f"Value ( {max_results} ) for parameter maxResults is invalid. "
            "Expecting a value greater than 5.",
        )
    size = min(int(max_results or 1000), 1000)
    ordered = sorted(items, key=lambda item: str(item.id))
    start = 0
    if next_token:
        after = _decode_token(sim, next_token)
        start = bisect_right([str(item.id) for item in ordered], after)
    page = ordered[start : start + size]
    more = start + size < len(ordered)
    return page, (_encode_token(str(page[-1].id)) if more and page else None)


#: (owner, attribute) → parameter names moto 5.2.5 has; `install()` refuses anything else.
_EXPECTED_SIGNATURES: dict[tuple[str, str], list[str]] = {
    ("BaseResponse", "call_action"): ["self"],
    ("EBSBackend", "copy_snapshot"): [
        "self",
        "source_snapshot_id",
        "source_region",
        "description",
        "kms_key_id",
    ],
    ("EBSBackend", "delete_snapshot"): ["self", "snapshot_id"],
    ("EBSBackend", "describe_snapshots"): ["self", "snapshot_ids", "filters"],
    ("EBSBackend", "describe_volumes"): ["self", "volume_ids", "filters"],
    ("EBSBackend", "get_volume"): ["self", "volume_id"],
    ("EC2Backend", "get_zone_by_name"): ["self", "name"],
    ("EC2Backend", "create_tags"): ["self", "resource_ids", "tags"],
    ("Snapshot", "__init__"): [
        "self",
        "ec2_backend",
        "snapshot_id",
        "volume",
        "description",
        "encrypted",
        "kms_key_id",
        "owner_id",
        "from_ami",
    ],
    ("TaggedEC2Resource", "get_tags"): ["self"],
    ("ElasticBlockStore", "describe_snapshots"): ["self"],
    ("ElasticBlockStore", "describe_volumes"): ["self"],
    ("ElasticBlockStore", "create_volume"): ["self"],
    ("ElasticBlockStore", "copy_snapshot"): ["self"],
    ("EC2BaseResponse", "_parse_tag_specification"): ["self", "expected_type"],
    ("EC2BaseResponse", "_filters_from_querystring"): ["self"],
    ("BaseResponse", "serialized"): ["self", "action_result"],
    ("BaseResponse", "_enrich_response"): ["headers", "body"],
    ("InvalidSnapshotInUse", "__init__"): ["self", "snapshot_id", "ami_id"],
    ("is_filter_matching", ""): ["obj", "_filter", "filter_value"],
    ("DomainDispatcherApplication", "get_application"): ["self", "environ"],
}


def _moto_backend_names() -> set[str]:
    from moto.backend_index import backend_url_patterns

    return {name for name, _ in backend_url_patterns}


def check_moto() -> None:
    """Raise `MotoMismatchError` unless moto is the release and shape the patches expect."""
    import moto

    problems: list[str] = []
    if moto.__version__ != MOTO_VERSION:
        problems.append(f"moto {moto.__version__} is installed, the simulator needs {MOTO_VERSION}")
    problems += _signature_problems()
    problems += _placement_problems()
    problems += _missing_action_problems()
    problems += _attribute_shape_problems()
    if problems:
        raise MotoMismatchError(
            "the EC2 simulator does not fit this moto; re-verify simworld/ec2sim.py "
            "against it and update MOTO_VERSION:\n  - " + "\n  - ".join(problems)
        )


def _signature_owners() -> dict[str, Any]:
    """The moto classes and functions `_EXPECTED_SIGNATURES` names, by those names."""
    from moto.core.responses import BaseResponse
    from moto.ec2.exceptions import InvalidSnapshotInUse
    from moto.ec2.models import EC2Backend
    from moto.ec2.models.core import TaggedEC2Resource
    from moto.ec2.models.elastic_block_store import EBSBackend, Snapshot
    from moto.ec2.responses._base_response import EC2BaseResponse
    from moto.ec2.responses.elastic_block_store import ElasticBlockStore
    from moto.ec2.utils import is_filter_matching
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    return {
        "DomainDispatcherApplication": DomainDispatcherApplication,
        "BaseResponse": BaseResponse,
        "EBSBackend": EBSBackend,
        "EC2Backend": EC2Backend,
        "Snapshot": Snapshot,
        "TaggedEC2Resource": TaggedEC2Resource,
        "ElasticBlockStore": ElasticBlockStore,
        "EC2BaseResponse": EC2BaseResponse,
        "InvalidSnapshotInUse": InvalidSnapshotInUse,
        "is_filter_matching": is_filter_matching,
    }


def _signature_problems() -> list[str]:
    """The patches call moto's functions positionally: a renamed or added parameter would
    shift every argument, so each signature must be the one the patches were written for."""
    owners = _signature_owners()
    problems: list[str] = []
    for (owner_name, attr), expected in _EXPECTED_SIGNATURES.items():
        target = owners[owner_name] if not attr else getattr(owners[owner_name], attr, None)
        if target is None:
            problems.append(f"{owner_name}.{attr} is gone")
            continue
        names = list(inspect.signature(target).parameters)
        if names != expected:
            problems.append(f"{owner_name}.{attr}{tuple(names)} != expected {tuple(expected)}")
    return problems


def _placement_problems() -> list[str]:
    """The patches replace these; each must be where the simulator puts its own, else a
    subclass's override would hide the patch and moto's own behaviour would answer."""
    from moto.core.responses import BaseResponse
    from moto.ec2.models import EC2Backend
    from moto.ec2.models.elastic_block_store import EBSBackend
    from moto.ec2.responses import EC2Response
    from moto.ec2.responses._base_response import EC2BaseResponse
    from moto.ec2.responses.elastic_block_store import ElasticBlockStore

    problems: list[str] = []
    for owner, attr, patched in (
        (EC2Response, "call_action", BaseResponse),
        (EC2Response, "describe_snapshots", ElasticBlockStore),
        (EC2Response, "describe_volumes", ElasticBlockStore),
        (EC2Response, "create_volume", ElasticBlockStore),
        (EC2Response, "_parse_tag_specification", EC2BaseResponse),
        (EC2Backend, "copy_snapshot", EBSBackend),
        (EC2Backend, "describe_snapshots", EBSBackend),
        (EC2Backend, "delete_snapshot", EBSBackend),
    ):
        defined_in = next((k for k in owner.__mro__ if attr in k.__dict__), None)
        if defined_in is not patched:
            where = defined_in.__name__ if defined_in else "nowhere"
            problems.append(f"{owner.__name__}.{attr} now comes from {where}")
    return problems


def _missing_action_problems() -> list[str]:
    """Actions the simulator adds must not exist in moto (else moto grew them: re-verify)."""
    from moto.ec2.responses import EC2Response

    problems: list[str] = []
    for attr in ("lock_snapshot", "unlock_snapshot", "describe_locked_snapshots"):
        if hasattr(EC2Response, attr):
            problems.append(f"moto now implements EC2 {attr}; compare it with the simulator's")
    if "rbin" in _moto_backend_names():
        problems.append("moto now has a Recycle Bin backend; compare it with the simulator's")
    return problems


def _attribute_shape_problems() -> list[str]:
    """`_state_patches` puts properties computed from the simulated clock on Snapshot and
    Volume: they stand in for moto's only while moto keeps `progress` and Volume `status`
    as properties and sets `status` (and `state_message`) on the instance."""
    from moto.ec2.models.elastic_block_store import Snapshot, Volume

    problems: list[str] = []
    if not isinstance(Snapshot.__dict__.get("progress"), property):
        problems.append("Snapshot.progress is no longer a property")
    if "status" in Snapshot.__dict__ or "state_message" in Snapshot.__dict__:
        problems.append("Snapshot now defines status/state_message on the class")
    if not isinstance(Volume.__dict__.get("status"), property):
        problems.append("Volume.status is no longer a property")
    init_source = inspect.getsource(Snapshot.__init__)
    if 'self.status = "completed"' not in init_source:
        problems.append("Snapshot.__init__ no longer sets self.status")
    return problems


# ------------------------------------------------------------- the patches of moto

#: One patch: the class, the attribute, and the simulator's replacement.
_Replacement = tuple[type, str, Any]


def _request_patches(sim: Ec2Simulator) -> list[_Replacement]:
    """Every EC2 request: count it, answer queued faults, apply non-400 statuses."""
    from moto.core.responses import ActionResult, BaseResponse
    from moto.ec2.responses import EC2Response

    base_call_action = BaseResponse.call_action

    def call_action(response: Any) -> Any:
        action = str(response._get_action())
        region = str(response.region)
        with sim._lock:
            sim.calls[action] += 1
            sim.region_calls[region, action] += 1
        fault = sim._take_fault(action, region)
        sim._tls.status = None
        if fault is not None and not fault.after_action:
            return _fault_response(response, fault)
        status, headers, body = base_call_action(response)
        if fault is not None:
            return _fault_response(response, fault)
        override = sim._tls.status
        if override is not None and status == 400:
            status = override
            headers["status"] = str(status)
        return status, headers, body

    def _fault_response(response: Any, fault: Fault) -> Any:
        from moto.ec2.exceptions import EC2ClientError

        _, headers, body = response.serialized(
            ActionResult(EC2ClientError(fault.code, fault.message))
        )
        headers["status"] = str(fault.status)
        headers, body = response._enrich_response(headers, body)
        return fault.status, headers, body

    return [
        (EC2Response, "call_action", call_action),
    ]


def _state_patches(sim: Ec2Simulator) -> list[_Replacement]:
    """Snapshot and volume states, computed from the simulated clock when read."""
    from moto.ec2.models.elastic_block_store import Snapshot, Volume

    def snapshot_status(snapshot: Any) -> str:
        progress = snapshot.__dict__.get(_COPY)
        if progress is None:
            return str(snapshot.__dict__.get("status", "completed"))
        if not progress.finished(sim.clock()):
            return "pending"
        return "error" if progress.error else "completed"

    def set_snapshot_status(snapshot: Any, value: str) -> None:
        snapshot.__dict__.pop(_COPY, None)  # a state set by hand wins over the progress
        snapshot.__dict__["status"] = value

    def snapshot_progress(snapshot: Any) -> str:
        progress = snapshot.__dict__.get(_COPY)
        if progress is None:
            return str(snapshot.__dict__.get("_ec2sim_percent", "100%"))
        now = sim.clock()
        if not progress.finished(now):
            return f"{progress.percent(now)}%"
        return "0%" if progress.error else "100%"

    def set_snapshot_progress(snapshot: Any, value: str) -> None:
        snapshot.__dict__["_ec2sim_percent"] = value

    def snapshot_state_message(snapshot: Any) -> str | None:
        progress = snapshot.__dict__.get(_COPY)
        if progress is not None and progress.error and progress.finished(sim.clock()):
            return str(progress.error)
        message = snapshot.__dict__.get("state_message")
        return None if message is None else str(message)

    def set_snapshot_state_message(snapshot: Any, value: str | None) -> None:
        snapshot.__dict__["state_message"] = value

    base_volume_status: Any = Volume.__dict__["status"]

    def volume_status(volume: Any) -> str:
        progress = volume.__dict__.get(_COPY)
        if progress is not None:
            if progress.error and progress.finished(sim.clock()):
                return "error"
            if not progress.finished(sim.clock()):
                return "creating"
        return str(base_volume_status.fget(volume))

    return [
        (Snapshot, "status", property(snapshot_status, set_snapshot_status)),
        (Snapshot, "progress", property(snapshot_progress, set_snapshot_progress)),
        (Snapshot, "state_message", property(snapshot_state_message, set_snapshot_state_message)),
        (Volume, "status", property(volume_status)),
    ]


def _tag_patches(sim: Ec2Simulator) -> list[_Replacement]:
    """Tags: a dict lookup instead of a scan of every tag in the region, and EC2's tag limits."""
    from moto.ec2.exceptions import TagLimitExceeded
    from moto.ec2.models.elastic_block_store import Snapshot, Volume
    from moto.ec2.responses._base_response import EC2BaseResponse
    from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix

    base_parse_tags = EC2BaseResponse._parse_tag_specification

    def get_tags(resource: Any) -> list[dict[str, str]]:
        tags = resource.ec2_backend.tags.get(resource.id)
        if not tags:
            return []
        kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(resource.id), "")
        return [
            {"resource_id": resource.id, "key": k, "value": v, "resource_type": kind}
            for k, v in list(tags.items())
        ]

    def parse_tag_specification(
        response: Any, expected_type: str | None = None
    ) -> dict[str, dict[str, str]]:
        parsed: dict[str, dict[str, str]] = base_parse_tags(response, expected_type)
        for tags in parsed.values():
            if len(tags) > MAX_TAGS:
                raise TagLimitExceeded()
            for key, value in tags.items():
                if key.lower().startswith("aws:"):
                    raise sim._error(
                        "InvalidParameterValue",
                        f"Value ( {key} ) for parameter key is invalid. "
                        "Tag keys starting with 'aws:' are reserved for internal use",
                    )
                if len(key) > MAX_TAG_KEY or (value is not None and len(value) > MAX_TAG_VALUE):
                    raise sim._error(
                        "InvalidParameterValue",
                        f"Tag key ( {key[:40]}… ) or its value is too long "
                        f"(at most {MAX_TAG_KEY} / {MAX_TAG_VALUE} characters)",
                    )
        return parsed

    return [
        (Snapshot, "get_tags", get_tags),
        (Volume, "get_tags", get_tags),
        (EC2BaseResponse, "_parse_tag_specification", parse_tag_specification),
    ]


def _copy_patches(sim: Ec2Simulator) -> list[_Replacement]:
    """CopySnapshot: standing refusals, the in-flight limit, then a pending copy; and the
    time-based copy's CompletionDurationMinutes, which moto drops."""
    return [_copy_snapshot_patch(sim), _copy_snapshot_response_patch(sim)]


def _copy_snapshot_patch(sim: Ec2Simulator) -> _Replacement:
    """The backend's CopySnapshot: refused as AWS would (`_refuse_copy`), else moto's copy
    made a pending one that completes, or fails, on the simulated clock."""
    from moto.ec2.models.elastic_block_store import EBSBackend

    base_copy = EBSBackend.copy_snapshot

    def copy_snapshot(
        backend: Any,
        source_snapshot_id: str,
        source_region: str,
        description: str,
        kms_key_id: str | None,
    ) -> Any:
        with sim._lock:
            _refuse_copy(sim, backend, source_snapshot_id, source_region)
            snapshot = base_copy(
                backend, source_snapshot_id, source_region, description, kms_key_id
            )
            snapshot.volume = _ArbitraryVolume(int(snapshot.volume.size))
            snapshot.__dict__["transfer_type"] = "standard"  # read by moto's serializer
            error = sim._take_copy_error(source_snapshot_id)
            key_region = _kms_region(kms_key_id) if kms_key_id else None
            if error is None and key_region not in (None, backend.region_name):
                error = KMS_KEY_NOT_ACCESSIBLE
            now = sim.clock()
            snapshot.__dict__[_COPY] = _Progress(
                started=now,
                duration=sim.copy_durations.get(source_snapshot_id, sim.copy_duration),
                error=error,
                visible_at=now + sim.invisible_for,
            )
            return snapshot

    return (EBSBackend, "copy_snapshot", copy_snapshot)


def _refuse_copy(
    sim: Ec2Simulator, backend: Any, source_snapshot_id: str, source_region: str
) -> None:
    """Raise what AWS answers a CopySnapshot it refuses, in its order: a standing refusal
    the test set, the destination's in-flight limit, a source that is not completed.
    Called under the simulator's lock, so the limit counts every copy made before."""
    from moto.ec2.models import ec2_backends

    refusal = sim._copy_refusals.get(source_snapshot_id) or sim._copy_refusals.get(None)
    if refusal is not None:
        raise sim._error(refusal.code, refusal.message, refusal.status)
    if sim._pending_in(backend) >= sim.copy_limit:
        raise sim._error(
            "ResourceLimitExceeded",
            "Too many snapshot copies in progress. "
            f"The limit is {sim.copy_limit} for this destination region.",
        )
    source_backend = ec2_backends[backend.account_id][source_region]
    source = source_backend.snapshots.get(source_snapshot_id)
    if source is not None and source.status != "completed":
        raise sim._error("IncorrectState", f"Snapshot is in invalid state - {source.status}")


def _copy_snapshot_response_patch(sim: Ec2Simulator) -> _Replacement:
    """The CopySnapshot request's CompletionDurationMinutes (a time-based copy), which moto
    drops: checked as AWS does, remembered, and reported back by DescribeSnapshots."""
    from moto.ec2.responses.elastic_block_store import ElasticBlockStore

    base_copy_response = ElasticBlockStore.copy_snapshot

    def copy_snapshot_response(response: Any) -> Any:
        minutes = response._get_param("CompletionDurationMinutes")
        if minutes is not None and (
            not 15 <= int(minutes) <= COMPLETION_MINUTES_MAX or int(minutes) % 15
        ):
            raise sim._error(
                "InvalidParameterValue",
                f"CompletionDurationMinutes {minutes} is invalid: it must be a multiple "
                f"of 15 between 15 and {COMPLETION_MINUTES_MAX}.",
            )
        answer = base_copy_response(response)
        if minutes is not None:
            copied: Any = answer.result  # moto's ActionResult of {"SnapshotId": …}
            with sim._lock:
                sim.completion_minutes[str(copied["SnapshotId"])] = int(minutes)
                made = response.ec2_backend.snapshots.get(str(copied["SnapshotId"]))
                if made is not None:  # DescribeSnapshots reports the promise back
                    made.transfer_type = "time-based"
                    made.completion_duration_minutes = int(minutes)
        return answer

    return (ElasticBlockStore, "copy_snapshot", copy_snapshot_response)


def _describe_patches(sim: Ec2Simulator) -> list[_Replacement]:
    """DescribeSnapshots and DescribeVolumes: the visibility window and fast filters (backend
    level), pagination and OwnerIds (response level: these are request parameters)."""
    from moto.core.responses import ActionResult
    from moto.ec2.models.elastic_block_store import EBSBackend
    from moto.ec2.responses.elastic_block_store import ElasticBlockStore
    from moto.ec2.utils import is_filter_matching

    def describe_snapshots(
        backend: Any, snapshot_ids: list[str] | None = None, filters: Any = None
    ) -> list[Any]:
        now = sim.clock()
        matches = [s for s in list(backend.snapshots.values()) if sim._visible(s, now)]
        if snapshot_ids:
            wanted = set(snapshot_ids)
            matches = [s for s in matches if s.id in wanted]
            missing = wanted - {s.id for s in matches}
            if missing:
                raise sim._error(
                    "InvalidSnapshot.NotFound",
                    f"The snapshot '{sorted(missing)[0]}' does not exist.",
                )
        if filters:
            matches = _fast_filter(backend, filters, matches, is_filter_matching)
        return matches

    def describe_snapshots_response(response: Any) -> Any:
        filters = response._filters_from_querystring()
        snapshot_ids, max_results, next_token = _ids_or_page(
            sim, response, "SnapshotIds", "snapshotSet"
        )
        owner_ids = response._get_param("OwnerIds", [])
        backend = response.ec2_backend
        snapshots = backend.describe_snapshots(snapshot_ids=snapshot_ids, filters=filters)
        if owner_ids:
            owners = {backend.account_id if o == "self" else o for o in owner_ids}
            snapshots = [s for s in snapshots if s.owner_id in owners]
        page, token = _paginate(sim, snapshots, max_results, next_token)
        return ActionResult(_page_result("Snapshots", page, token))

    def describe_volumes_response(response: Any) -> Any:
        filters = response._filters_from_querystring()
        volume_ids, max_results, next_token = _ids_or_page(sim, response, "VolumeIds", "volumeSet")
        volumes = response.ec2_backend.describe_volumes(volume_ids=volume_ids, filters=filters)
        page, token = _paginate(sim, volumes, max_results, next_token)
        return ActionResult(_page_result("Volumes", page, token))

    return [
        (EBSBackend, "describe_snapshots", describe_snapshots),
        (ElasticBlockStore, "describe_snapshots", describe_snapshots_response),
        (ElasticBlockStore, "describe_volumes", describe_volumes_response),
    ]


def _delete_patches(sim: Ec2Simulator) -> list[_Replacement]:
    """DeleteSnapshot: other owners' snapshots, snapshots in use and locked ones are refused."""
    from moto.ec2.exceptions import InvalidSnapshotInUse
    from moto.ec2.models.elastic_block_store import EBSBackend

    base_delete = EBSBackend.delete_snapshot

    def delete_snapshot(backend: Any, snapshot_id: str) -> Any:
        snapshot = backend.snapshots.get(snapshot_id)
        if snapshot is not None:
            if snapshot.owner_id != backend.account_id:
                raise sim._error(
                    "UnauthorizedOperation",
                    "You are not authorized to perform this operation.",
                    403,
                )
            ami_id = sim._in_use.get(snapshot_id)
            if ami_id:
                raise InvalidSnapshotInUse(snapshot_id, ami_id)
            lock = snapshot.__dict__.get(_LOCK)
            now = sim.wall_now()
            if lock is not None and lock.blocks_delete(now):
                raise sim._error(SNAPSHOT_LOCKED_CODE, locked_message(snapshot_id, lock, now))
        return base_delete(backend, snapshot_id)

    return [
        (EBSBackend, "delete_snapshot", delete_snapshot),
    ]


def _lock_patches(sim: Ec2Simulator) -> list[_Replacement]:
    """EBS snapshot lock: LockSnapshot, UnlockSnapshot and DescribeLockedSnapshots, which moto
    does not have."""
    return [
        _lock_snapshot_patch(sim),
        _unlock_snapshot_patch(sim),
        _describe_locked_snapshots_patch(sim),
    ]


def _lock_snapshot_patch(sim: Ec2Simulator) -> _Replacement:
    """LockSnapshot: a new lock or a change to the snapshot's lock, by the rules of
    `snapshot_lock.lock_snapshot`; answers the lock as DescribeLockedSnapshots would,
    without OwnerId (as AWS does)."""
    from moto.core.responses import ActionResult
    from moto.ec2.responses.elastic_block_store import ElasticBlockStore

    def lock_snapshot_response(response: Any) -> Any:
        response.error_on_dryrun()
        snapshot = _owned_snapshot(sim, response)
        request = LockRequest(
            mode=response._get_param("LockMode"),
            duration_days=_optional_int(response._get_param("LockDuration")),
            expiration=_optional_time(response._get_param("ExpirationDate")),
            cool_off_hours=_optional_int(response._get_param("CoolOffPeriod")),
        )
        now = sim.wall_now()
        with sim._lock:
            try:
                lock = lock_snapshot(
                    snapshot.__dict__.get(_LOCK),
                    request,
                    snapshot_id=snapshot.id,
                    owner_id=snapshot.owner_id,
                    now=now,
                )
            except LockError as error:
                raise sim._error(error.code, error.message) from None
            snapshot.__dict__[_LOCK] = lock
        info = lock.describe(now)
        info.pop("OwnerId")
        return ActionResult(info)

    return (ElasticBlockStore, "lock_snapshot", lock_snapshot_response)


def _unlock_snapshot_patch(sim: Ec2Simulator) -> _Replacement:
    """UnlockSnapshot: removes the snapshot's lock when `snapshot_lock.unlock_snapshot`
    allows it (governance mode, or compliance still in its cooling-off period)."""
    from moto.core.responses import ActionResult
    from moto.ec2.responses.elastic_block_store import ElasticBlockStore

    def unlock_snapshot_response(response: Any) -> Any:
        response.error_on_dryrun()
        snapshot = _owned_snapshot(sim, response)
        with sim._lock:
            try:
                unlock_snapshot(snapshot.__dict__.get(_LOCK), snapshot.id, sim.wall_now())
            except LockError as error:
                raise sim._error(error.code, error.message) from None
            snapshot.__dict__.pop(_LOCK, None)
        return ActionResult({"SnapshotId": snapshot.id})

    return (ElasticBlockStore, "unlock_snapshot", unlock_snapshot_response)


def _describe_locked_snapshots_patch(sim: Ec2Simulator) -> _Replacement:
    """DescribeLockedSnapshots: the region's locks on the caller's own snapshots, chosen by
    ids and filters (`snapshot_lock.filter_locks`), paginated as the other Describes are."""
    from moto.core.responses import ActionResult
    from moto.ec2.responses.elastic_block_store import ElasticBlockStore

    def describe_locked_snapshots_response(response: Any) -> Any:
        response.error_on_dryrun()
        backend = response.ec2_backend
        now = sim.wall_now()
        locks = [
            s.__dict__[_LOCK]
            for s in list(backend.snapshots.values())
            if _LOCK in s.__dict__ and s.owner_id == backend.account_id
        ]
        try:
            chosen = filter_locks(
                locks,
                now,
                snapshot_ids=list(response._get_param("SnapshotIds", []) or []),
                filters=dict(response._filters_from_querystring() or {}),
            )
        except LockError as error:
            raise sim._error(error.code, error.message) from None
        page, token = _paginate(
            sim,
            [_ById(lock.snapshot_id, lock) for lock in chosen],
            response._get_param("MaxResults"),
            response._get_param("NextToken"),
        )
        return ActionResult(
            _page_result("Snapshots", [item.value.describe(now) for item in page], token)
        )

    return (ElasticBlockStore, "describe_locked_snapshots", describe_locked_snapshots_response)


def _volume_patches(sim: Ec2Simulator) -> list[_Replacement]:
    """CreateVolume (ClientToken, IncorrectState, the AZ check, `creating` for a while) and the
    `rbin` endpoint, for which moto's dispatcher has no backend."""
    from moto.core.responses import ActionResult
    from moto.ec2.responses.elastic_block_store import ElasticBlockStore
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    base_create_volume = ElasticBlockStore.create_volume
    base_get_application = DomainDispatcherApplication.get_application

    def get_application(dispatcher: Any, environ: dict[str, Any]) -> Any:
        if is_rbin_request(environ):
            return sim.rbin
        return base_get_application(dispatcher, environ)

    def create_volume_response(response: Any) -> Any:
        response.error_on_dryrun()
        backend = response.ec2_backend
        token = response._get_param("ClientToken")
        zone = response._get_param("AvailabilityZone")
        snapshot_id = response._get_param("SnapshotId")
        request = {k: v for k, v in dict(response.params).items() if k != "ClientToken"}
        fingerprint = json.dumps(request, sort_keys=True, default=str)
        with sim._lock:
            tokens: dict[str, tuple[str, str]] = backend.__dict__.setdefault(_TOKENS, {})
            if token and token in tokens:
                seen_fingerprint, volume_id = tokens[token]
                # AWS: a token whose volume was deleted, or sent with other parameters.
                if seen_fingerprint != fingerprint or volume_id not in backend.volumes:
                    raise sim._error(
                        "IdempotentParameterMismatch",
                        "The client token you have provided is associated with a resource "
                        "that is already deleted or has different parameters.",
                    )
                return ActionResult(backend.volumes[volume_id])
            if zone is not None and backend.get_zone_by_name(zone) is None:
                raise sim._error("InvalidParameterValue", f"Invalid availability zone: [{zone}]")
            if snapshot_id:
                snapshot = backend.snapshots.get(snapshot_id)
                if snapshot is not None and snapshot.status != "completed":
                    raise sim._error(
                        "IncorrectState", f"Snapshot is in invalid state - {snapshot.status}"
                    )
            result = base_create_volume(response)
            volume: Any = result.result
            volume.__dict__[_COPY] = _Progress(
                started=sim.clock(),
                duration=sim.volume_duration,
                error="error" if sim._take_volume_error(snapshot_id) else None,
            )
            if token:
                tokens[token] = (fingerprint, volume.id)
            return result

    return [
        (ElasticBlockStore, "create_volume", create_volume_response),
        (DomainDispatcherApplication, "get_application", get_application),
    ]


def _owned_snapshot(sim: Ec2Simulator, response: Any) -> Any:
    """The request's SnapshotId, which must exist and belong to this account."""
    snapshot_id = response._get_param("SnapshotId")
    backend = response.ec2_backend
    snapshot = backend.snapshots.get(snapshot_id)
    if snapshot is None:
        raise sim._error(
            "InvalidSnapshot.NotFound", f"The snapshot '{snapshot_id}' does not exist."
        )
    if snapshot.owner_id != backend.account_id:
        raise sim._error(
            "UnauthorizedOperation",
            "You are not authorized to perform this operation.",
            403,
        )
    return snapshot


_PATCH_BUILDERS: tuple[Callable[[Ec2Simulator], list[_Replacement]], ...] = (
    _request_patches,
    _state_patches,
    _tag_patches,
    _copy_patches,
    _describe_patches,
    _delete_patches,
    _lock_patches,
    _volume_patches,
)
