"""Leader election on a `coordination.k8s.io/v1` Lease: one snapd works, the others stand by.

`LeaderElector` holds a Lease with optimistic concurrency (`resourceVersion`; a 409 Conflict
means another instance won the race). A holder's Lease is taken over only once
`renewTime + leaseDurationSeconds` has passed by our clock, so the replicas' clocks must agree
to well within the lease duration (NTP on every node). `acquire_once` is `snapd sync`'s
single attempt: take the Lease or say who holds it.

Talks to the API server only through `kube.KubeClient` (the one door to Kubernetes); decides
nothing about cycles — the service stops and starts work on `leading`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from snapd import tags
from snapd.errors import ConfigError, KubeError
from snapd.kube import KubeClient

log = structlog.get_logger("snapd.leader")

LEASE_API_VERSION = "coordination.k8s.io/v1"
Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def default_identity() -> str:
    """`<pod name or hostname>-<8 hex>`: unique per process, readable in `kubectl get lease`."""
    base = os.environ.get("POD_NAME") or socket.gethostname() or "snapd"
    return f"{base}-{secrets.token_hex(4)}"


def format_micro_time(value: datetime) -> str:
    """Kubernetes MicroTime: RFC3339 UTC with microseconds."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_micro_time(value: object) -> datetime | None:
    """A Lease time back as an aware datetime; anything unreadable is None."""
    return tags.parse_time(value) if isinstance(value, str) else None


@dataclass(frozen=True)
class LeaseRecord:
    """What a Lease says about its holder, read from the API's JSON."""

    holder: str | None
    duration: timedelta
    acquire_time: datetime | None
    renew_time: datetime | None
    transitions: int
    resource_version: str | None

    @classmethod
    def parse(cls, lease: Mapping[str, Any]) -> LeaseRecord:
        spec = lease.get("spec") or {}
        seconds = spec.get("leaseDurationSeconds")
        return cls(
            holder=spec.get("holderIdentity") or None,
            duration=timedelta(seconds=seconds if isinstance(seconds, int) else 0),
            acquire_time=parse_micro_time(spec.get("acquireTime")),
            renew_time=parse_micro_time(spec.get("renewTime")),
            transitions=int(spec.get("leaseTransitions") or 0),
            resource_version=(lease.get("metadata") or {}).get("resourceVersion"),
        )

    def expires_at(self) -> datetime | None:
        """When the holder's claim lapses: `renewTime + leaseDurationSeconds` (None: free)."""
        if not self.holder or self.renew_time is None:
            return None
        return self.renew_time + self.duration

    def is_held(self, now: datetime) -> bool:
        """Someone holds it and their last renewal has not yet lapsed at `now`."""
        expires = self.expires_at()
        return expires is not None and now < expires


class LeaseHeldError(KubeError):
    """The Lease is held by another live instance (`snapd sync` while `snapd run` works)."""

    def __init__(self, message: str, holder: str, expires_at: datetime | None) -> None:
        super().__init__(message, status=409, reason="LeaseHeld")
        self.holder = holder
        self.expires_at = expires_at


class LeaderElector:
    """Take and keep one Lease; `leading` is set exactly while this instance may work.

    `run(stop)` tries to acquire every `retry_period` (default duration/3) while standing by
    and renews at the same pace while leading. Leadership is dropped at once — `leading`
    cleared, `not_leading` set, `on_stopped_leading` called — when a renewal finds another
    holder or loses a write race (409 Conflict), or when renewals have failed for
    `renew_deadline` (default 2/3 of the duration, so we stop before others may take over).
    When `stop` is set, `run` releases the Lease (clears `holderIdentity`) so a standby takes
    over at once. Cancelling `run` does not release: the Lease lapses after its duration, as
    after a crash. `clock` (aware UTC datetimes) is injectable for tests.
    """

    def __init__(
        self,
        client: KubeClient,
        *,
        name: str,
        namespace: str,
        duration: timedelta,
        identity: str | None = None,
        retry_period: timedelta | None = None,
        renew_deadline: timedelta | None = None,
        clock: Clock = _utcnow,
        on_started_leading: Callable[[], None] | None = None,
        on_stopped_leading: Callable[[], None] | None = None,
    ) -> None:
        if duration < timedelta(seconds=1):
            raise ConfigError(f"lease duration must be at least 1s, got {duration}")
        self._client = client
        self.name = name
        self.namespace = namespace
        self.duration = duration
        self.identity = identity or default_identity()
        self.retry_period = retry_period or duration / 3
        self.renew_deadline = renew_deadline or duration * 2 / 3
        self._clock = clock
        self._on_started = on_started_leading
        self._on_stopped = on_stopped_leading
        self.leading = asyncio.Event()
        self.not_leading = asyncio.Event()
        self.not_leading.set()
        self.observed: LeaseRecord | None = None
        self._last_renew: datetime | None = None
        self._renewed_at: datetime | None = None
        self._log = log.bind(lease=f"{namespace}/{name}", identity=self.identity)

    @property
    def is_leader(self) -> bool:
        return self.leading.is_set()

    @property
    def holder(self) -> str | None:
        """The holder named by the Lease when we last read or wrote it."""
        return self.observed.holder if self.observed else None

    def _set_leading(self, leading: bool, why: str = "") -> None:
        if leading == self.leading.is_set():
            return
        if leading:
            self.not_leading.clear()
            self.leading.set()
            self._log.info("lease.acquired")
            if self._on_started:
                self._on_started()
        else:
            self.leading.clear()
            self.not_leading.set()
            self._last_renew = None
            if why == "release":
                self._log.info("lease.stepped_down")
            else:
                self._log.warning("lease.lost", reason=why, holder=self.holder)
            if self._on_stopped:
                self._on_stopped()

    def _spec(self, previous: LeaseRecord | None, now: datetime) -> dict[str, Any]:
        ours = previous is not None and previous.holder == self.identity
        acquired = previous.acquire_time if ours and previous and previous.acquire_time else now
        transitions = previous.transitions if previous else 0
        if previous is not None and not ours:
            transitions += 1  # as client-go: every change of holder, also after a release
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.duration.total_seconds())),
            "acquireTime": format_micro_time(acquired),
            "renewTime": format_micro_time(now),
            "leaseTransitions": transitions,
        }

    def _body(self, spec: Mapping[str, Any], resource_version: str | None) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if resource_version:
            metadata["resourceVersion"] = resource_version
        return {
            "apiVersion": LEASE_API_VERSION,
            "kind": "Lease",
            "metadata": metadata,
            "spec": dict(spec),
        }

    async def try_acquire_or_renew(self) -> bool:
        """One attempt: True when we now hold the Lease, False when another instance does.

        A lost write race (409 AlreadyExists on create, 409 Conflict on update) is False, not
        an error. Other API failures raise KubeError; leadership state is not changed here.
        """
        now = self._clock()
        lease = await self._client.get_lease(self.namespace, self.name)
        if lease is None:
            body = self._body(self._spec(None, now), None)
            try:
                created = await self._client.create_lease(self.namespace, body)
            except KubeError as exc:
                if exc.status == 409:
                    self._log.info("lease.race_lost", reason=exc.reason)
                    return False
                raise
            self.observed = LeaseRecord.parse(created)
            self._renewed_at = now
            return True
        record = LeaseRecord.parse(lease)
        self.observed = record
        if record.holder != self.identity and record.is_held(now):
            return False
        body = self._body(self._spec(record, now), record.resource_version)
        try:
            updated = await self._client.replace_lease(self.namespace, self.name, body)
        except KubeError as exc:
            if exc.status == 409:
                self._log.info("lease.race_lost", reason=exc.reason, holder=record.holder)
                return False
            raise
        self.observed = LeaseRecord.parse(updated)
        self._renewed_at = now
        return True

    async def acquire_once(self) -> None:
        """Take the Lease now or raise LeaseHeldError naming its holder (`snapd sync`).

        On success `leading` is set; keep it by running `run(stop)` while the work lasts.
        """
        if await self.try_acquire_or_renew():
            self._last_renew = self._renewed_at
            self._set_leading(True)
            return
        holder = self.holder or "another instance"
        expires = self.observed.expires_at() if self.observed else None
        until = f" until {format_micro_time(expires)} unless renewed" if expires else ""
        raise LeaseHeldError(
            f"Lease {self.namespace}/{self.name} is held by {holder}{until}; "
            "another snapd is working on this scope — stop it or wait, then try again",
            holder=holder,
            expires_at=expires,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Acquire and renew until `stop` is set, then release. Never raises KubeError."""
        try:
            while not stop.is_set():
                await self._tick()
                await _wait(stop, self._pause())
        except BaseException:
            # Cancelled (or a bug): stop working at once, but leave the Lease to lapse.
            self._set_leading(False, "cancelled")
            raise
        await self.release()

    def _deadline(self) -> datetime | None:
        if self._last_renew is None or not self.leading.is_set():
            return None
        return self._last_renew + self.renew_deadline

    def _pause(self) -> float:
        pause = self.retry_period.total_seconds()
        deadline = self._deadline()
        if deadline is not None:
            pause = min(pause, max(0.0, (deadline - self._clock()).total_seconds()))
        return pause

    async def _tick(self) -> None:
        deadline = self._deadline()
        budget = self.renew_deadline.total_seconds()
        if deadline is not None:
            budget = min(budget, (deadline - self._clock()).total_seconds())
        outcome: bool | None = None
        if budget > 0:
            try:
                async with asyncio.timeout(budget):
                    outcome = await self.try_acquire_or_renew()
            except TimeoutError:
                self._log.warning("lease.renew_failed", error=f"no answer within {budget:g}s")
            except KubeError as exc:
                self._log.warning("lease.renew_failed", error=str(exc), status=exc.status)
        if outcome:
            self._last_renew = self._renewed_at
            self._set_leading(True)
        elif outcome is False:
            self._set_leading(False, "held by another instance")
        elif deadline is not None and self._clock() >= deadline:
            self._set_leading(False, "renew deadline passed")

    async def release(self) -> None:
        """Give the Lease up (clear `holderIdentity`) so a standby takes over at once.

        Does nothing unless we hold it (or last saw ourselves named as holder). Leadership
        ends before the API call; a failed release is logged and left to lapse.
        """
        held = self.leading.is_set() or self.holder == self.identity
        self._set_leading(False, "release")
        if not held:
            return
        try:
            async with asyncio.timeout(self.renew_deadline.total_seconds()):
                lease = await self._client.get_lease(self.namespace, self.name)
                if lease is None:
                    return
                record = LeaseRecord.parse(lease)
                if record.holder != self.identity:
                    return
                now = self._clock()
                spec = {
                    "leaseDurationSeconds": 1,
                    "acquireTime": format_micro_time(now),
                    "renewTime": format_micro_time(now),
                    "leaseTransitions": record.transitions,
                }
                released = await self._client.replace_lease(
                    self.namespace, self.name, self._body(spec, record.resource_version)
                )
                self.observed = LeaseRecord.parse(released)
                self._log.info("lease.released")
        except TimeoutError:
            self._log.warning("lease.release_failed", error="timed out")
        except KubeError as exc:
            self._log.warning("lease.release_failed", error=str(exc), status=exc.status)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds` unless `stop` is set first (shutdown must not wait for a timer)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()


async def acquire_once(
    client: KubeClient,
    *,
    name: str,
    namespace: str,
    duration: timedelta,
    identity: str | None = None,
    clock: Clock = _utcnow,
) -> LeaderElector:
    """A LeaderElector that holds the Lease now, or LeaseHeldError naming the holder.

    For `snapd sync`: run `elector.run(stop)` beside the work to keep renewing, and stop the
    work when `elector.not_leading` is set.
    """
    elector = LeaderElector(
        client, name=name, namespace=namespace, duration=duration, identity=identity, clock=clock
    )
    await elector.acquire_once()
    return elector
