"""EBS snapshot lock and Recycle Bin rules, as AWS documents them; moto 5.2.5 has neither.

`Ec2Simulator` wires this in: LockSnapshot, UnlockSnapshot and DescribeLockedSnapshots are
answered by moto's EC2 response class (the patch adds the three actions), DeleteSnapshot of a
locked snapshot is refused, and the `rbin` endpoint — which moto's server cannot route — is
served by `RecycleBinApp`.

The rules (EC2 API reference, LockSnapshot / UnlockSnapshot / DescribeLockedSnapshots):

- LockSnapshot takes `LockMode` (`governance` | `compliance`) and exactly one of
  `LockDuration` (days, 1–36500) or `ExpirationDate`; `CoolOffPeriod` (hours, 1–72) only
  with compliance mode.
- The state is computed when read: `expired` once the expiry passed; `compliance-cooloff`
  while a compliance lock's cooling-off period runs; else the mode.
- Allowed modifications by state: `governance` and `compliance-cooloff` — anything (mode,
  duration or date, up or down); `compliance` — only a later expiry, in compliance mode,
  without a cooling-off period; `expired` — a new lock.
- UnlockSnapshot works in `governance` and `compliance-cooloff` only.
- DeleteSnapshot of a snapshot whose lock has not expired is refused with
  `SNAPSHOT_LOCKED_CODE` (HTTP 400).

Time is wall-clock (`datetime`), from the simulator's `wall_now()`, which tests move with
`Ec2Simulator.travel()` — a lock of a day expires without waiting a day.

Must not: be imported by production code.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

#: The error DeleteSnapshot answers for a snapshot under an unexpired lock.
SNAPSHOT_LOCKED_CODE = "SnapshotLocked"
#: The error LockSnapshot/UnlockSnapshot answer for a change the lock's state forbids.
LOCK_STATE_CODE = "IncorrectState"
LOCK_STATES = ("compliance-cooloff", "governance", "compliance", "expired")
LOCK_DURATION_DAYS = (1, 36500)
COOL_OFF_HOURS = (1, 72)
#: An ExpirationDate must lie at least this far ahead (AWS: the shortest lock is one day).
MIN_LOCK = timedelta(days=1)
#: Slack for the request's own travel time when checking the one-day minimum.
MIN_LOCK_SLACK = timedelta(minutes=5)


class LockError(Exception):
    """An EC2 client error of the lock API (code, message), mapped by the caller."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class SnapshotLock:
    """One snapshot's lock, as AWS keeps it."""

    snapshot_id: str
    owner_id: str
    mode: str
    created: datetime
    duration_start: datetime
    expires: datetime
    duration_days: int | None = None
    cool_off_hours: int | None = None
    cool_off_expires: datetime | None = None

    def state(self, now: datetime) -> str:
        if now >= self.expires:
            return "expired"
        if self.mode == "compliance" and self.cool_off_expires and now < self.cool_off_expires:
            return "compliance-cooloff"
        return self.mode

    def blocks_delete(self, now: datetime) -> bool:
        return self.state(now) != "expired"

    def describe(self, now: datetime) -> dict[str, Any]:
        """The LockedSnapshotsInfo / LockSnapshot result shape."""
        info: dict[str, Any] = {
            "OwnerId": self.owner_id,
            "SnapshotId": self.snapshot_id,
            "LockState": self.state(now),
            "LockCreatedOn": self.created,
            "LockDurationStartTime": self.duration_start,
            "LockExpiresOn": self.expires,
        }
        if self.duration_days is not None:
            info["LockDuration"] = self.duration_days
        if self.cool_off_hours is not None:
            info["CoolOffPeriod"] = self.cool_off_hours
            info["CoolOffPeriodExpiresOn"] = self.cool_off_expires
        return info


@dataclass(frozen=True)
class LockRequest:
    """LockSnapshot's parameters, parsed."""

    mode: str | None
    duration_days: int | None = None
    expiration: datetime | None = None
    cool_off_hours: int | None = None


def lock_snapshot(
    current: SnapshotLock | None,
    request: LockRequest,
    *,
    snapshot_id: str,
    owner_id: str,
    now: datetime,
) -> SnapshotLock:
    """The lock after LockSnapshot, or LockError when the request or the state forbids it."""
    _validate(request, now)
    state = current.state(now) if current else None
    if current is not None and state == "compliance":
        _check_compliance_change(current, request, now)
    expires = (
        request.expiration
        if request.expiration is not None
        else now + timedelta(days=request.duration_days or 0)
    )
    mode = str(request.mode)
    cool_off_hours = request.cool_off_hours if mode == "compliance" else None
    cool_off_expires = now + timedelta(hours=cool_off_hours) if cool_off_hours else None
    if current is not None and state == "compliance-cooloff" and cool_off_hours is None:
        # A change during the cooling-off period leaves the period running.
        cool_off_hours, cool_off_expires = current.cool_off_hours, current.cool_off_expires
    return SnapshotLock(
        snapshot_id=snapshot_id,
        owner_id=owner_id,
        mode=mode,
        created=current.created if current and state != "expired" else now,
        duration_start=now,
        expires=expires,
        duration_days=request.duration_days,
        cool_off_hours=cool_off_hours,
        cool_off_expires=cool_off_expires,
    )


def _validate(request: LockRequest, now: datetime) -> None:
    if request.mode not in ("governance", "compliance"):
        raise LockError(
            "InvalidParameterValue",
            f"Value ({request.mode}) for parameter LockMode is invalid. "
            "Valid values: governance, compliance",
        )
    if (request.duration_days is None) == (request.expiration is None):
        raise LockError(
            "InvalidParameterCombination",
            "Specify either LockDuration or ExpirationDate, but not both.",
        )
    low, high = LOCK_DURATION_DAYS
    if request.duration_days is not None and not low <= request.duration_days <= high:
        raise LockError(
            "InvalidParameterValue",
            f"Value ({request.duration_days}) for parameter LockDuration is invalid. "
            f"It must be between {low} and {high} days.",
        )
    if request.expiration is not None:
        if request.expiration < now + MIN_LOCK - MIN_LOCK_SLACK:
            raise LockError(
                "InvalidParameterValue",
                "Value for parameter ExpirationDate is invalid. "
                "It must be at least 1 day in the future.",
            )
        if request.expiration > now + timedelta(days=high):
            raise LockError(
                "InvalidParameterValue",
                f"Value for parameter ExpirationDate is invalid. It must be within {high} days.",
            )
    if request.cool_off_hours is not None:
        if request.mode != "compliance":
            raise LockError(
                "InvalidParameterCombination",
                "CoolOffPeriod can be specified only with LockMode compliance.",
            )
        low_h, high_h = COOL_OFF_HOURS
        if not low_h <= request.cool_off_hours <= high_h:
            raise LockError(
                "InvalidParameterValue",
                f"Value ({request.cool_off_hours}) for parameter CoolOffPeriod is invalid. "
                f"It must be between {low_h} and {high_h} hours.",
            )


def _check_compliance_change(current: SnapshotLock, request: LockRequest, now: datetime) -> None:
    """In `compliance` after the cooling-off period only a later expiry is allowed."""
    sid = current.snapshot_id
    if request.mode != "compliance":
        raise LockError(
            LOCK_STATE_CODE,
            f"The snapshot {sid} is locked in compliance mode and its cooling-off period "
            "has expired; the lock mode cannot be changed.",
        )
    if request.cool_off_hours is not None:
        raise LockError(
            LOCK_STATE_CODE,
            f"The snapshot {sid} is locked in compliance mode and its cooling-off period "
            "has expired; omit CoolOffPeriod.",
        )
    new_expiry = (
        request.expiration
        if request.expiration is not None
        else now + timedelta(days=request.duration_days or 0)
    )
    if new_expiry < current.expires:
        raise LockError(
            LOCK_STATE_CODE,
            f"The snapshot {sid} is locked in compliance mode and its cooling-off period "
            "has expired; the lock duration can only be increased.",
        )


def unlock_snapshot(current: SnapshotLock | None, snapshot_id: str, now: datetime) -> None:
    """Raise LockError unless UnlockSnapshot may remove this lock."""
    state = current.state(now) if current else None
    if state is None:
        raise LockError(LOCK_STATE_CODE, f"The snapshot {snapshot_id} is not locked.")
    if state == "compliance":
        raise LockError(
            LOCK_STATE_CODE,
            f"The snapshot {snapshot_id} is locked in compliance mode and its cooling-off "
            "period has expired; it cannot be unlocked.",
        )


def locked_message(snapshot_id: str, lock: SnapshotLock, now: datetime) -> str:
    """DeleteSnapshot's refusal."""
    return (
        f"The snapshot {snapshot_id} is locked in {lock.state(now)} mode until "
        f"{lock.expires.strftime('%Y-%m-%dT%H:%M:%S.000Z')} and can't be deleted."
    )


def filter_locks(
    locks: Iterable[SnapshotLock],
    now: datetime,
    *,
    snapshot_ids: list[str],
    filters: dict[str, list[str]],
) -> list[SnapshotLock]:
    """DescribeLockedSnapshots' selection: by ids (unknown or unlocked ids are omitted) and
    the `lock-state` filter; any other filter name is refused."""
    for name, values in filters.items():
        if name != "lock-state":
            raise LockError(
                "InvalidParameterValue", f"The filter '{name}' is invalid; use lock-state."
            )
        for value in values:
            if value not in LOCK_STATES:
                raise LockError(
                    "InvalidParameterValue",
                    f"Value ({value}) for filter lock-state is invalid. "
                    f"Valid values: {', '.join(LOCK_STATES)}",
                )
    wanted = set(snapshot_ids)
    states = set(filters.get("lock-state", []))
    return sorted(
        (
            lock
            for lock in locks
            if (not wanted or lock.snapshot_id in wanted)
            and (not states or lock.state(now) in states)
        ),
        key=lambda lock: lock.snapshot_id,
    )


# ------------------------------------------------------------------------- Recycle Bin


@dataclass
class RecycleBinRule:
    """A Recycle Bin retention rule: region-level without `resource_tags`, else tag-level."""

    identifier: str
    resource_type: str = "EBS_SNAPSHOT"
    retention_days: int = 7
    resource_tags: list[tuple[str, str]] = field(default_factory=list)
    exclude_tags: list[tuple[str, str]] = field(default_factory=list)
    status: str = "available"
    lock_state: str | None = None
    description: str = ""

    def summary(self, region: str, account_id: str) -> dict[str, Any]:
        """ListRules' RuleSummary."""
        item: dict[str, Any] = {
            "Identifier": self.identifier,
            "Description": self.description,
            "RetentionPeriod": {
                "RetentionPeriodValue": self.retention_days,
                "RetentionPeriodUnit": "DAYS",
            },
            "RuleArn": f"arn:aws:rbin:{region}:{account_id}:rule/{self.identifier}",
        }
        if self.lock_state:
            item["LockState"] = self.lock_state
        return item

    def detail(self, region: str, account_id: str) -> dict[str, Any]:
        """GetRule's answer."""
        item = self.summary(region, account_id)
        item.update(
            {
                "ResourceType": self.resource_type,
                "ResourceTags": [
                    {"ResourceTagKey": k, "ResourceTagValue": v} for k, v in self.resource_tags
                ],
                "Status": self.status,
            }
        )
        if self.exclude_tags:
            item["ExcludeResourceTags"] = [
                {"ResourceTagKey": k, "ResourceTagValue": v} for k, v in self.exclude_tags
            ]
        return item


class RecycleBinApp:
    """A WSGI app for the `rbin` REST-JSON API: ListRules and GetRule, per region.

    moto 5.2.5 has no Recycle Bin backend, and its server cannot route the `rbin` signing
    name; the simulator hands such requests here. `faults` answers the next ListRules with
    an error (for the `-1` gauge), like `Ec2Simulator.inject` does for EC2.
    """

    def __init__(self, account_id: str, lock: Any) -> None:
        self.account_id = account_id
        self._lock = lock
        self.rules: dict[str, list[RecycleBinRule]] = {}
        self.calls: dict[str, int] = {}
        self.faults: list[tuple[str, str, int]] = []  # (operation, code, status)

    def reset(self) -> None:
        with self._lock:
            self.rules.clear()
            self.calls.clear()
            self.faults.clear()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        region = _region_from_auth(environ.get("HTTP_AUTHORIZATION", ""))
        size = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(size) if size else b""
        try:
            body = json.loads(raw or b"{}")
            status, answer = self._dispatch(method, path, region, body)
        except (ValueError, TypeError) as error:
            status, answer = 400, _rbin_error("ValidationException", f"malformed request: {error}")
        data = json.dumps(answer).encode()
        start_response(
            f"{status} {'OK' if status == 200 else 'Error'}",
            [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
        )
        return [data]

    def _dispatch(
        self, method: str, path: str, region: str, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        if method == "POST" and path.rstrip("/") == "/list-rules":
            operation = "ListRules"
        elif method == "GET" and path.startswith("/rules/"):
            operation = "GetRule"
        else:
            return 404, _rbin_error("ResourceNotFoundException", f"no route {method} {path}")
        with self._lock:
            self.calls[operation] = self.calls.get(operation, 0) + 1
            for fault in self.faults:
                if fault[0] == operation:
                    self.faults.remove(fault)
                    return fault[2], _rbin_error(fault[1], f"{fault[1]} (injected)")
            rules = list(self.rules.get(region, []))
        if operation == "GetRule":
            identifier = path.split("/rules/", 1)[1].strip("/")
            for rule in rules:
                if rule.identifier == identifier:
                    return 200, rule.detail(region, self.account_id)
            return 404, _rbin_error("ResourceNotFoundException", f"rule {identifier} not found")
        return self._list_rules(region, rules, body)

    def _list_rules(
        self, region: str, rules: list[RecycleBinRule], body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        resource_type = body.get("ResourceType")
        if resource_type not in ("EBS_SNAPSHOT", "EC2_IMAGE", "EBS_VOLUME"):
            return 400, _rbin_error(
                "ValidationException",
                f"1 validation error detected: Value '{resource_type}' at 'resourceType' "
                "failed to satisfy constraint: Member must satisfy enum value set: "
                "[EBS_SNAPSHOT, EC2_IMAGE, EBS_VOLUME]",
            )
        wanted_tags = _tag_pairs(body.get("ResourceTags"))
        lock_state = body.get("LockState")
        selected = [
            r
            for r in rules
            if r.resource_type == resource_type
            and (not wanted_tags or wanted_tags & set(r.resource_tags))
            and (lock_state is None or r.lock_state == lock_state)
        ]
        selected.sort(key=lambda r: r.identifier)
        max_results = int(body.get("MaxResults") or 1000)
        if not 1 <= max_results <= 1000:
            return 400, _rbin_error("ValidationException", "MaxResults must be 1..1000")
        start = 0
        if body.get("NextToken"):
            try:
                after = base64.b64decode(str(body["NextToken"])).decode()
            except (binascii.Error, UnicodeDecodeError):
                return 400, _rbin_error("ValidationException", "invalid NextToken")
            start = sum(1 for r in selected if r.identifier <= after)
        page = selected[start : start + max_results]
        answer: dict[str, Any] = {"Rules": [r.summary(region, self.account_id) for r in page]}
        if start + max_results < len(selected) and page:
            answer["NextToken"] = base64.b64encode(page[-1].identifier.encode()).decode()
        return 200, answer


def _tag_pairs(tags: Any) -> set[tuple[str, str]]:
    if not tags:
        return set()
    return {(str(t["ResourceTagKey"]), str(t.get("ResourceTagValue", ""))) for t in tags}


def _rbin_error(code: str, message: str) -> dict[str, Any]:
    return {"__type": code, "message": message, "Message": message}


def _region_from_auth(auth: str) -> str:
    """The region of a SigV4 credential scope (`Credential=KEY/DATE/REGION/rbin/aws4_request`)."""
    try:
        scope = auth.split(",", maxsplit=1)[0].split()[1]
        return scope.split("/")[2]
    except IndexError:
        return "us-east-1"


def is_rbin_request(environ: dict[str, Any]) -> bool:
    """Whether a request is signed for the `rbin` service (what moto cannot route)."""
    auth = str(environ.get("HTTP_AUTHORIZATION", ""))
    try:
        return auth.split(",", maxsplit=1)[0].split()[1].split("/")[3] == "rbin"
    except IndexError:
        return False
