"""Leader election on a Lease in the fake API server: two electors, one injected clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from simworld.fake_kube import FakeKube
from snapd import kube, leader

LEASE = "snapd"
NAMESPACE = "backup-tools"
DURATION = timedelta(seconds=15)
RETRY = timedelta(milliseconds=10)  # real time between attempts; lease time is the fake clock
WAIT = 5.0  # bound on every wait, in real seconds


class FakeClock:
    """Wall-clock time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    """A stopped clock shared by every elector of a test."""
    return FakeClock()


class Counter:
    """Counts became-leader / lost-leadership callbacks."""

    def __init__(self) -> None:
        self.started = 0
        self.stopped = 0

    def on_started(self) -> None:
        self.started += 1

    def on_stopped(self) -> None:
        self.stopped += 1


def elector(
    kube_client: kube.KubeClient,
    clock: FakeClock,
    identity: str,
    counter: Counter | None = None,
) -> leader.LeaderElector:
    return leader.LeaderElector(
        kube_client,
        name=LEASE,
        namespace=NAMESPACE,
        duration=DURATION,
        identity=identity,
        retry_period=RETRY,
        clock=clock,
        on_started_leading=counter.on_started if counter else None,
        on_stopped_leading=counter.on_stopped if counter else None,
    )


class Running:
    """An elector's `run` task and its stop event."""

    def __init__(self, elector: leader.LeaderElector) -> None:
        self.elector = elector
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(elector.run(self.stop), name=f"elect-{elector.identity}")

    async def stop_and_wait(self) -> None:
        self.stop.set()
        async with asyncio.timeout(WAIT):
            await self.task


@asynccontextmanager
async def running(*electors: leader.LeaderElector) -> AsyncIterator[list[Running]]:
    runs = [Running(e) for e in electors]
    try:
        yield runs
    finally:
        for run in runs:
            if not run.task.done():
                run.task.cancel()
        await asyncio.gather(*(run.task for run in runs), return_exceptions=True)


async def until(predicate: Callable[[], bool]) -> None:
    """Wait (bounded) until `predicate()` holds, re-checking as the loop runs."""
    async with asyncio.timeout(WAIT):
        while not predicate():  # noqa: ASYNC110 - the state lives in the fake's thread too
            await asyncio.sleep(0.005)


async def leading(e: leader.LeaderElector) -> None:
    async with asyncio.timeout(WAIT):
        await e.leading.wait()


def lease(fake_kube: FakeKube) -> dict[str, Any]:
    found = fake_kube.get("Lease", LEASE, NAMESPACE)
    assert found is not None
    return found


def lease_gets(fake_kube: FakeKube) -> int:
    return sum(
        1 for r in fake_kube.requests if r.method == "GET" and r.path.endswith(f"/leases/{LEASE}")
    )


@contextmanager
def no_new_leader(fake_kube: FakeKube, holder: str) -> Iterator[None]:
    yield
    assert lease(fake_kube)["spec"]["holderIdentity"] == holder


async def test_one_leads_and_the_other_stands_by(
    kube_client: kube.KubeClient, clock: FakeClock, fake_kube: FakeKube
) -> None:
    """The first elector takes the Lease; the second keeps trying but never leads."""
    a, b = elector(kube_client, clock, "pod-a"), elector(kube_client, clock, "pod-b")
    async with running(a):
        await leading(a)
        async with running(b):
            seen = lease_gets(fake_kube)
            await until(lambda: lease_gets(fake_kube) >= seen + 6)
            assert a.is_leader
            assert not b.is_leader
            assert b.holder == "pod-a"
            spec = lease(fake_kube)["spec"]
            assert spec["holderIdentity"] == "pod-a"
            assert spec["leaseDurationSeconds"] == 15
            assert spec["renewTime"] == "2024-05-01T12:00:00.000000Z"


async def test_a_released_lease_is_taken_over_at_once(
    kube_client: kube.KubeClient, clock: FakeClock, fake_kube: FakeKube
) -> None:
    """When the leader stops cleanly the standby leads without waiting for expiry."""
    counter_a = Counter()
    a, b = elector(kube_client, clock, "pod-a", counter_a), elector(kube_client, clock, "pod-b")
    async with running(a) as (run_a,):
        await leading(a)
        async with running(b):
            await until(lambda: b.holder == "pod-a")
            await run_a.stop_and_wait()
            assert not a.is_leader
            assert counter_a.stopped == 1
            await leading(b)  # the clock never moved: no expiry involved
            spec = lease(fake_kube)["spec"]
            assert spec["holderIdentity"] == "pod-b"
            assert spec["leaseTransitions"] == 1


async def test_a_crashed_leader_is_replaced_only_after_the_lease_duration(
    kube_client: kube.KubeClient, clock: FakeClock, fake_kube: FakeKube
) -> None:
    """A leader that dies without releasing keeps the Lease until renewTime + duration."""
    a, b = elector(kube_client, clock, "pod-a"), elector(kube_client, clock, "pod-b")
    async with running(a) as (run_a,):
        await leading(a)
        async with running(b):
            await until(lambda: b.holder == "pod-a")
            run_a.task.cancel()  # a crash: no release
            with pytest.raises(asyncio.CancelledError):
                await run_a.task
            assert not a.is_leader
            with no_new_leader(fake_kube, "pod-a"):
                clock.advance(14)
                seen = lease_gets(fake_kube)
                await until(lambda: lease_gets(fake_kube) >= seen + 6)
                assert not b.is_leader
            clock.advance(2)
            await leading(b)
            assert lease(fake_kube)["spec"]["holderIdentity"] == "pod-b"


async def test_a_lost_write_race_is_a_clean_loss(
    kube_client: kube.KubeClient, clock: FakeClock, fake_kube: FakeKube
) -> None:
    """When another instance writes between our read and our write we get False, no error."""
    a, b = elector(kube_client, clock, "pod-a"), elector(kube_client, clock, "pod-b")
    await a.acquire_once()
    await a.release()
    # pod-b's write lands between pod-a's read and pod-a's write.
    taken = lease(fake_kube)
    taken["spec"]["holderIdentity"] = "pod-b"
    taken["spec"]["renewTime"] = "2024-05-01T12:00:00.000000Z"
    taken["spec"]["leaseDurationSeconds"] = 15
    fake_kube.before("PUT", f"/leases/{LEASE}", lambda: fake_kube.put(taken))
    assert await a.try_acquire_or_renew() is False
    assert not a.is_leader
    conflicts = [r for r in fake_kube.requests if r.method == "PUT" and r.status == 409]
    assert len(conflicts) == 1
    assert await b.try_acquire_or_renew() is True
    assert lease(fake_kube)["spec"]["holderIdentity"] == "pod-b"


async def test_a_leader_whose_renewal_conflicts_stops_leading_at_once(
    kube_client: kube.KubeClient, clock: FakeClock, fake_kube: FakeKube
) -> None:
    """A renewal that loses to another writer ends leadership on the spot; run goes on."""
    counter = Counter()
    a = elector(kube_client, clock, "pod-a", counter)
    async with running(a) as (run_a,):
        await leading(a)
        taken = lease(fake_kube)
        taken["spec"]["holderIdentity"] = "pod-b"
        fake_kube.before("PUT", f"/leases/{LEASE}", lambda: fake_kube.put(taken))
        async with asyncio.timeout(WAIT):
            await a.not_leading.wait()
        assert counter.stopped == 1
        assert not run_a.task.done()
        assert lease(fake_kube)["spec"]["holderIdentity"] == "pod-b"


async def test_failing_renewals_end_leadership_before_the_lease_expires(
    kube_client: kube.KubeClient, clock: FakeClock, fake_kube: FakeKube
) -> None:
    """With the API failing the leader steps down after renew_deadline, then comes back."""
    counter = Counter()
    a = elector(kube_client, clock, "pod-a", counter)
    async with running(a):
        await leading(a)
        fake_kube.fail("*", f"/leases/{LEASE}", code=503, reason="ServiceUnavailable", times=10**6)
        clock.advance(9)
        seen = len(fake_kube.requests)
        await until(lambda: len(fake_kube.requests) >= seen + 5)
        assert a.is_leader  # still within renew_deadline (10s of 15s)
        clock.advance(2)
        async with asyncio.timeout(WAIT):
            await a.not_leading.wait()
        assert counter.stopped == 1
        fake_kube.clear_faults()
        await leading(a)  # the Lease still names pod-a and has not lapsed
        assert counter.started == 2


async def test_acquire_once_names_the_holder_when_the_lease_is_taken(
    kube_client: kube.KubeClient, clock: FakeClock
) -> None:
    """`snapd sync` beside a working `snapd run` fails with the holder in the message."""
    a = elector(kube_client, clock, "pod-a")
    async with running(a):
        await leading(a)
        with pytest.raises(leader.LeaseHeldError, match="held by pod-a") as caught:
            await leader.acquire_once(
                kube_client, name=LEASE, namespace=NAMESPACE, duration=DURATION, clock=clock
            )
        assert caught.value.holder == "pod-a"
        assert caught.value.status == 409


async def test_acquire_once_takes_a_free_or_lapsed_lease(
    kube_client: kube.KubeClient, clock: FakeClock, fake_kube: FakeKube
) -> None:
    """acquire_once creates a missing Lease and takes one whose holder stopped renewing."""
    first = await leader.acquire_once(
        kube_client,
        name=LEASE,
        namespace=NAMESPACE,
        duration=DURATION,
        identity="sync-1",
        clock=clock,
    )
    assert first.is_leader
    assert lease(fake_kube)["spec"]["holderIdentity"] == "sync-1"
    clock.advance(16)
    second = await leader.acquire_once(
        kube_client,
        name=LEASE,
        namespace=NAMESPACE,
        duration=DURATION,
        identity="sync-2",
        clock=clock,
    )
    assert second.is_leader
    spec = lease(fake_kube)["spec"]
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("sync-2", 1)


async def test_stopping_a_standby_returns_promptly_and_leaves_the_lease_alone(
    kube_client: kube.KubeClient, clock: FakeClock, fake_kube: FakeKube
) -> None:
    """A standby's run ends as soon as stop is set and does not touch the leader's Lease."""
    a, b = elector(kube_client, clock, "pod-a"), elector(kube_client, clock, "pod-b")
    async with running(a):
        await leading(a)
        async with running(b) as (run_b,):
            await until(lambda: b.holder == "pod-a")
            with no_new_leader(fake_kube, "pod-a"):
                await run_b.stop_and_wait()
            assert a.is_leader


async def test_cancelling_run_propagates_cancellation(
    kube_client: kube.KubeClient, clock: FakeClock
) -> None:
    """run never swallows CancelledError (shutdown and task groups rely on it)."""
    a = elector(kube_client, clock, "pod-a")
    task = asyncio.create_task(a.run(asyncio.Event()))
    await leading(a)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert a.not_leading.is_set()


def test_default_identity_is_the_pod_name_plus_a_random_suffix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two processes of one pod name still get different holder identities."""
    monkeypatch.setenv("POD_NAME", "snapd-7d9f-abcde")
    first, second = leader.default_identity(), leader.default_identity()
    assert first.startswith("snapd-7d9f-abcde-")
    assert second.startswith("snapd-7d9f-abcde-")
    assert first != second
