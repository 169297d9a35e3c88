"""The copy pool against moto and the EC2 simulator: limits, faults, retries, adoption."""

from __future__ import annotations

import asyncio
import math
import random
from datetime import UTC, datetime, timedelta

import pytest

from simworld.ec2sim import Ec2Simulator, ManualClock
from snapd import inventory, tags
from snapd.aws import AwsClients
from snapd.copier import SETTLED_MEMORY, START_CONCURRENCY, Copier, Tracked
from snapd.metrics import Metrics
from snapd.models import CopyAction, SnapshotMethod, SourceSnapshot, Volume

SRC, DST, SCOPE = "eu-west-1", "eu-central-1", "bucket"
NOW = datetime(2026, 11, 23, tzinfo=UTC)

#: A few botocore attempts per call, so retry tests stay short.
pytestmark = pytest.mark.aws_max_attempts(4)


def seed_sources(sim: Ec2Simulator, count: int, **extra_tags: str) -> list[SourceSnapshot]:
    """`count` completed source snapshots, one PVC each, as discovery would yield them."""
    sources = []
    for i in range(count):
        sid = sim.add_snapshot(SRC, tags={"velero.io/backup": f"b{i}", **extra_tags})
        sources.append(
            SourceSnapshot(
                snapshot_id=sid,
                backup=f"daily-2026112{i % 10}",
                schedule="daily",
                backup_time=NOW - timedelta(hours=i),
                phase="Completed",
                method=SnapshotMethod.NATIVE,
                volume=Volume(namespace="app", pvc=f"data-{i}"),
                state="completed",
                source_tags=tuple(extra_tags.items()),
            )
        )
    return sources


def make_copier(aws: AwsClients, metrics: Metrics | None = None, **overrides: object) -> Copier:
    options: dict[str, object] = {
        "scope": SCOPE,
        "source_region": SRC,
        "destination_region": DST,
        "max_in_flight": 5,
        "poll_interval": 0.05,
        "copy_retries": 3,
        "metrics": metrics or Metrics(),
        "rng": random.Random(7),
    }
    options.update(overrides)
    return Copier(aws, **options)  # type: ignore[arg-type]


async def run_until_settled(copier: Copier, sim: Ec2Simulator, seconds: float = 30) -> int:
    """Run the pool until idle; return the most of our copies ever pending at once."""
    stop = asyncio.Event()
    most = 0

    async def watch() -> None:
        nonlocal most
        while not stop.is_set():
            most = max(most, len(copier.active))
            await asyncio.sleep(0.005)

    pool = asyncio.create_task(copier.run(stop))
    watcher = asyncio.create_task(watch())
    try:
        await asyncio.wait_for(copier.wait_settled(), seconds)
    finally:
        stop.set()
        await asyncio.gather(pool, watcher)
    return most


async def test_copies_everything_with_exact_tags(aws: AwsClients, ec2sim: Ec2Simulator) -> None:
    """Every source gets one completed replica whose tags are exactly the contract's."""
    ec2sim.copy_duration = 0.2
    odd = "a:b=c, d ünï ✓"
    sources = seed_sources(ec2sim, 6, **{"team/owner": odd})
    copier = make_copier(aws)
    copier.enqueue(CopyAction(s, "missing") for s in sources)
    await run_until_settled(copier, ec2sim)
    replicas = await inventory.list_replicas(aws, DST, SCOPE)
    assert sorted(r.source_snapshot_id or "" for r in replicas) == sorted(
        s.snapshot_id for s in sources
    )
    assert all(r.completed for r in replicas)
    by_source = {s.snapshot_id: s for s in sources}
    for replica in replicas:
        expected = tags.build_copy_tags(by_source[replica.source_snapshot_id or ""], SCOPE, SRC)
        assert dict(replica.tags) == expected
        assert dict(replica.tags)["team/owner"] == odd


async def test_never_more_than_max_in_flight(aws: AwsClients, ec2sim: Ec2Simulator) -> None:
    """With 12 copies queued and a limit of 4, never more than 4 of ours are pending."""
    ec2sim.copy_duration = 0.3
    copier = make_copier(aws, max_in_flight=4)
    copier.enqueue(CopyAction(s, "missing") for s in seed_sources(ec2sim, 12))
    most = await run_until_settled(copier, ec2sim)
    assert most == 4
    assert copier.stats.completed == 12


async def test_foreign_copies_take_slots(aws: AwsClients, ec2sim: Ec2Simulator) -> None:
    """Other tools' pending copies fill the account's 20: ResourceLimitExceeded lowers our
    limit, nothing is counted as failed, and every copy still completes."""
    ec2sim.copy_duration = 0.3
    ec2sim.copy_limit = 6
    # Foreign copies outlast the whole run, however slowly the first client call starts.
    ec2sim.add_foreign_pending(DST, 3, 60.0)
    metrics = Metrics()
    copier = make_copier(aws, metrics, max_in_flight=5)
    copier.enqueue(CopyAction(s, "missing") for s in seed_sources(ec2sim, 10))
    most = await run_until_settled(copier, ec2sim)
    assert most <= 5
    assert copier.stats.completed == 10
    assert copier.stats.failed == 0
    assert metrics.copies_failed.labels(reason="rejected")._value.get() == 0
    assert ec2sim.calls["CopySnapshot"] > 10  # some were refused and tried again


async def test_foreign_copies_that_stay_cost_few_refusals(
    aws: AwsClients, ec2sim: Ec2Simulator
) -> None:
    """Foreign copies that hold slots all run long: the limit learnt from the first refusal
    is kept, and a climb refused at once multiplies the wait before the next, so refused
    CopySnapshot calls grow with the log of the run's length, not with its copies — while
    every slot AWS leaves us stays in use."""
    ec2sim.copy_duration = 0.2
    ec2sim.copy_limit = 6
    ec2sim.add_foreign_pending(DST, 3, 120.0)
    poll = 0.05
    copier = make_copier(aws, max_in_flight=5, poll_interval=poll)
    copier.enqueue(CopyAction(s, "missing") for s in seed_sources(ec2sim, 30))
    started = asyncio.get_running_loop().time()
    most = await run_until_settled(copier, ec2sim, seconds=60)
    elapsed = asyncio.get_running_loop().time() - started
    assert copier.stats.completed == 30
    assert most >= 3  # every slot AWS leaves us (more in our view: ours ended, unseen yet)
    refused = ec2sim.calls["CopySnapshot"] - 30
    # The first burst (starts in flight together), then at most one per doubling of the
    # quiet time (it grows faster than that).
    assert 1 <= refused <= START_CONCURRENCY + math.log2(elapsed / (2 * poll)) + 2


async def test_a_copy_started_between_polls_adds_no_describe(
    aws: AwsClients, ec2sim: Ec2Simulator
) -> None:
    """A start only moves the poller's next look: with no copy's duration known yet the
    first look comes at once, the next a quarter poll interval later, and finds all ten
    done (a slow machine may need one more look) — never a Describe per start."""
    ec2sim.copy_duration = 0.2
    copier = make_copier(aws, max_in_flight=10, poll_interval=3.0)
    copier.enqueue(CopyAction(s, "missing") for s in seed_sources(ec2sim, 10))
    await run_until_settled(copier, ec2sim)
    assert copier.stats.completed == 10
    assert 1 <= ec2sim.calls["DescribeSnapshots"] <= 3


async def test_starts_side_by_side_never_pass_the_limit_in_ec2(
    aws: AwsClients, ec2sim: Ec2Simulator
) -> None:
    """Starts in flight count against the limit: EC2 never holds more than `max_in_flight`
    of our copies pending, however many CopySnapshot calls are out at once."""
    ec2sim.copy_duration = 0.15
    copier = make_copier(aws, max_in_flight=6)
    copier.enqueue(CopyAction(s, "missing") for s in seed_sources(ec2sim, 24))
    stop = asyncio.Event()
    most_in_ec2 = 0
    most_starting = 0

    async def watch() -> None:
        nonlocal most_in_ec2, most_starting
        while not stop.is_set():
            most_in_ec2 = max(most_in_ec2, ec2sim.pending_count(DST))
            most_starting = max(most_starting, copier._starting)
            await asyncio.sleep(0.002)

    watcher = asyncio.create_task(watch())
    try:
        await run_until_settled(copier, ec2sim)
    finally:
        stop.set()
        await watcher
    assert copier.stats.completed == 24
    assert most_in_ec2 <= 6
    assert 1 < most_starting <= START_CONCURRENCY


async def test_throttling_is_retried_by_botocore(aws: AwsClients, ec2sim: Ec2Simulator) -> None:
    """RequestLimitExceeded (503) on CopySnapshot is retried and the copy still happens."""
    ec2sim.copy_duration = 0.1
    ec2sim.inject("CopySnapshot", "RequestLimitExceeded", times=2)
    copier = make_copier(aws)
    copier.enqueue(CopyAction(s, "missing") for s in seed_sources(ec2sim, 1))
    await run_until_settled(copier, ec2sim)
    assert copier.stats.completed == 1
    assert len(await inventory.list_replicas(aws, DST, SCOPE)) == 1


async def test_error_copies_retried_then_given_up(aws: AwsClients, ec2sim: Ec2Simulator) -> None:
    """A copy ending in `error` is deleted and retried; after copy_retries it is given up,
    counted, and the other copies are not held back."""
    ec2sim.copy_duration = 0.1
    good, flaky, broken = seed_sources(ec2sim, 3)
    ec2sim.fail_copies(flaky.snapshot_id, times=1)
    ec2sim.fail_copies(broken.snapshot_id, times=10)
    metrics = Metrics()
    copier = make_copier(aws, metrics, copy_retries=3)
    copier.enqueue(CopyAction(s, "missing") for s in (good, flaky, broken))
    await run_until_settled(copier, ec2sim)
    replicas = await inventory.list_replicas(aws, DST, SCOPE)
    assert sorted(r.source_snapshot_id or "" for r in replicas) == sorted(
        [good.snapshot_id, flaky.snapshot_id]
    )
    assert all(r.completed for r in replicas)  # error replicas were deleted
    assert set(copier.stats.failures) == {broken.snapshot_id}
    assert metrics.copies_failed.labels(reason="error_state")._value.get() == 4
    assert "Given key ID is not accessible" in copier.stats.failures[broken.snapshot_id].reason


async def test_pending_replicas_adopted_not_copied_again(
    aws: AwsClients, ec2sim: Ec2Simulator
) -> None:
    """A copy left pending by a previous process is polled to completion, never re-copied."""
    (source,) = seed_sources(ec2sim, 1)
    own = tags.build_copy_tags(source, SCOPE, SRC)
    clock = ManualClock()  # pending until the test says so, however slow the machine
    ec2sim.clock = clock
    ec2sim.add_snapshot(DST, tags=own, pending_for=4.0)
    copier = make_copier(aws)
    assert copier.adopt(await inventory.list_replicas(aws, DST, SCOPE)) == 1
    clock.advance(4.0)
    copier.enqueue([CopyAction(source, "missing")])  # the planner would not, but be sure
    await run_until_settled(copier, ec2sim)
    assert ec2sim.calls["CopySnapshot"] == 0
    assert copier.stats.completed == 1


async def test_polls_are_batched(aws: AwsClients, ec2sim: Ec2Simulator) -> None:
    """All pending copies are polled in one DescribeSnapshots, not one call per copy."""
    ec2sim.copy_duration = 0.4
    copier = make_copier(aws, max_in_flight=10, poll_interval=0.1)
    copier.enqueue(CopyAction(s, "missing") for s in seed_sources(ec2sim, 10))
    await run_until_settled(copier, ec2sim)
    assert copier.stats.completed == 10
    assert ec2sim.calls["DescribeSnapshots"] < 10 * 3
    calls = sum(ec2sim.calls.values())
    assert calls / 10 <= 3


async def test_late_visibility_tolerated(aws: AwsClients, ec2sim: Ec2Simulator) -> None:
    """A copy EC2 does not show for a moment (eventual consistency) is not failed."""
    ec2sim.copy_duration = 0.2
    ec2sim.invisible_for = 0.3
    copier = make_copier(aws)
    copier.enqueue(CopyAction(s, "missing") for s in seed_sources(ec2sim, 2))
    await run_until_settled(copier, ec2sim)
    assert copier.stats.completed == 2
    assert copier.stats.failed == 0


# ------------------------------------------------------------- stale listings (daemon cycles)
# A daemon cycle plans from a replica listing taken while the copier keeps working; these pin
# the copier's side of "nothing is copied twice, nothing is counted twice".


async def test_source_is_busy_while_its_copy_is_being_started(
    aws: AwsClients, ec2sim: Ec2Simulator
) -> None:
    """Between sending CopySnapshot and its answer, a cycle must not plan the source again."""
    ec2sim.copy_duration = 0.1
    (first,) = seed_sources(ec2sim, 1)
    copier = make_copier(aws)
    busy_during_call: list[set[str]] = []
    requeued_during_call: list[int] = []
    send = copier.start_copy

    async def watched_start(source: SourceSnapshot) -> str:
        busy_during_call.append(copier.busy_sources())
        requeued_during_call.append(copier.enqueue([CopyAction(source, "missing")]))
        return await send(source)

    copier.start_copy = watched_start  # type: ignore[method-assign]
    copier.enqueue([CopyAction(first, "missing")])
    await run_until_settled(copier, ec2sim)
    assert busy_during_call == [{first.snapshot_id}]
    assert requeued_during_call == [0]
    assert ec2sim.calls["CopySnapshot"] == 1


async def test_a_copy_being_started_is_named_unfinished(
    aws: AwsClients, ec2sim: Ec2Simulator
) -> None:
    """`snapd sync --timeout` may end while a CopySnapshot is sent and not yet answered: that
    source is neither queued nor pending, and must still be named as not protected."""
    ec2sim.copy_duration = 0.1
    (first,) = seed_sources(ec2sim, 1)
    copier = make_copier(aws)
    unfinished_during_call: list[list[tuple[str, str, str]]] = []
    send = copier.start_copy

    async def watched_start(source: SourceSnapshot) -> str:
        unfinished_during_call.append(
            [(u.source_id, u.state, u.reason) for u in copier.unfinished()]
        )
        return await send(source)

    copier.start_copy = watched_start  # type: ignore[method-assign]
    copier.enqueue([CopyAction(first, "missing")])
    await run_until_settled(copier, ec2sim)
    assert unfinished_during_call == [
        [(first.snapshot_id, "queued", "starting: CopySnapshot sent, AWS has not answered yet")]
    ]
    assert copier.unfinished() == []


async def test_failed_copy_is_queued_or_given_up_before_its_delete(
    aws: AwsClients, ec2sim: Ec2Simulator
) -> None:
    """While a failed copy is being deleted, enqueueing its source again adds nothing: the
    retry (or give-up) is already decided, so the source is never copied twice at once."""
    ec2sim.copy_duration = 0.1
    (source,) = seed_sources(ec2sim, 1)
    ec2sim.fail_copies(source.snapshot_id, times=10)
    metrics = Metrics()
    copier = make_copier(aws, metrics, copy_retries=2)
    added_during_delete: list[int] = []
    delete = copier.delete_replica

    async def watched_delete(snapshot_id: str) -> None:
        added_during_delete.append(copier.enqueue([CopyAction(source, "missing")]))
        await delete(snapshot_id)

    copier.delete_replica = watched_delete  # type: ignore[method-assign]
    copier.enqueue([CopyAction(source, "missing")])
    await run_until_settled(copier, ec2sim)
    assert added_during_delete == [0, 0]
    assert ec2sim.calls["CopySnapshot"] == 2
    assert metrics.copies_failed.labels(reason="error_state")._value.get() == 2
    assert set(copier.stats.failures) == {source.snapshot_id}


async def test_stale_listing_neither_adopts_nor_replans_settled_copies(
    aws: AwsClients, ec2sim: Ec2Simulator
) -> None:
    """A listing taken while a copy was pending, used after it completed: the copy is not
    adopted (and counted) again, and its source counts as covered for that listing."""
    clock = ManualClock()  # the copy stays pending until the listing was taken
    ec2sim.clock = clock
    ec2sim.copy_duration = 0.3
    (source,) = seed_sources(ec2sim, 1)
    metrics = Metrics()
    started = asyncio.Event()

    class OnStart:
        def copy_event(self, event: str, copy: Tracked) -> None:
            if event == "started":
                started.set()

    copier = make_copier(aws, metrics, events=OnStart())
    copier.enqueue([CopyAction(source, "missing")])
    stop = asyncio.Event()
    pool = asyncio.create_task(copier.run(stop))
    try:
        await asyncio.wait_for(started.wait(), 30)
        listing_started = copier.clock()
        stale = await inventory.list_replicas(aws, DST, SCOPE)
        assert [r.pending for r in stale] == [True]
        clock.advance(0.3)
        await asyncio.wait_for(copier.wait_settled(), 30)
        assert copier.settled_since(listing_started) == {source.snapshot_id}
        assert copier.settled_since(copier.clock() + 1) == set()
        assert copier.adopt(stale) == 0
        assert copier.idle
    finally:
        stop.set()
        await pool
    assert metrics.copies_completed._value.get() == 1


async def test_poller_looks_when_progress_says_a_copy_is_due(aws: AwsClients) -> None:
    """Between polls the next look comes at the predicted end of the soonest copy, never
    sooner than a quarter of the poll interval after the last look nor later than the poll
    interval."""
    now = [100.0]
    copier = make_copier(aws, poll_interval=20.0, clock=lambda: now[0])
    assert copier._next_poll_in() == 20.0  # nothing pending

    def pending(replica_id: str, started: float, seen: list[tuple[float, int]]) -> None:
        tracked = Tracked(replica_id, f"src-{replica_id}", "app/data b", started=started)
        tracked.track.see(started, 0)
        for when, percent in seen:
            tracked.track.see(when, percent)
        copier.active[replica_id] = tracked

    pending("slow", 0.0, [(100.0, 10)])  # 900 s to go
    assert copier._next_poll_in() == 20.0
    pending("soon", 60.0, [(100.0, 80)])  # 80 % in 40 s: due in 10 s
    assert copier._next_poll_in() == pytest.approx(10.0)
    now[0] = 109.0
    assert copier._next_poll_in() == pytest.approx(1.0)  # no look yet: at the predicted end
    copier._last_look = 108.0
    assert copier._next_poll_in() == pytest.approx(4.0)  # a quarter interval after the last


async def test_every_look_describes_every_pending_copy_and_restarts_the_interval(
    aws: AwsClients,
) -> None:
    """Every copy is described at least once per poll interval; sooner when one copy's
    progress says it is done, no sooner than a quarter interval after the last look. Each
    look names every pending copy (one batched call whatever it names) and the poll
    interval counts again from it, so no full poll follows a look on a clock of its own."""
    now = [100.0]
    copier = make_copier(aws, poll_interval=20.0, clock=lambda: now[0])

    def pending(replica_id: str, started: float, seen: list[tuple[float, int]]) -> None:
        tracked = Tracked(replica_id, f"src-{replica_id}", "app/data b", started=started)
        tracked.track.see(started, 0)
        for when, percent in seen:
            tracked.track.see(when, percent)
        tracked.looked = bool(seen)
        copier.active[replica_id] = tracked

    everyone = ["slow", "soon", "new"]
    pending("slow", 0.0, [(100.0, 10)])  # done at 1000
    pending("soon", 60.0, [(100.0, 80)])  # done at 110
    pending("new", 100.0, [])  # never looked at: no copy seen done yet, so due at once
    copier._full_anchor = copier._last_look = 100.0
    assert copier._due_at(copier.active["new"]) == 100.0
    copier._durations.append(30.0)  # our copies took 30 s: due at 130
    assert copier._due_at(copier.active["new"]) == 130.0
    now[0] = 105.0
    assert copier._to_look_at() == []  # nothing due yet
    now[0] = 111.0
    assert copier._to_look_at() == everyone  # "soon" is due: one look at all of them
    assert copier._full_anchor == 111.0
    assert copier._next_poll_in() == pytest.approx(5.0)  # still due: a quarter interval on
    copier.active["soon"].track.see(111.0, 97)  # not quite: due again at ~112.6
    now[0] = 113.0
    assert copier._to_look_at() == []  # within a quarter interval of the last look
    now[0] = 116.0
    assert copier._to_look_at() == everyone
    assert copier._full_anchor == 116.0
    del copier.active["soon"]  # seen completed
    copier.active["new"].looked = True
    copier.active["new"].track.see(116.0, 20)  # done at ~180: nothing due before 136
    now[0] = 135.0
    assert copier._to_look_at() == []
    assert copier._next_poll_in() == pytest.approx(1.0)  # the poll interval from 116
    now[0] = 136.0
    assert copier._to_look_at() == ["slow", "new"]


async def test_settled_copies_are_forgotten_after_an_hour(aws: AwsClients) -> None:
    """The memory that sees through stale listings stays bounded in a long-running daemon."""
    now = [0.0]
    copier = make_copier(aws, clock=lambda: now[0])
    for index in range(3):
        now[0] = index * 1000.0
        copier._remember_settled(Tracked(f"snap-r{index}", f"snap-s{index}", "x", 0.0), now[0])
    assert copier.settled_since(0.0) == {"snap-s0", "snap-s1", "snap-s2"}
    now[0] = SETTLED_MEMORY + 1500.0
    copier._remember_settled(Tracked("snap-r3", "snap-s3", "x", 0.0), now[0])
    assert copier.settled_since(0.0) == {"snap-s2", "snap-s3"}


async def test_unfinished_names_an_adopted_copy_that_failed_until_queued_again(
    aws: AwsClients, ec2sim: Ec2Simulator
) -> None:
    """An adopted copy that ends in `error` leaves its source unprotected, and the copier
    says so (a sync that cannot re-plan it must not report success); queued again, the
    source is reported as queued, no longer as failed."""
    sim_clock = ManualClock()
    ec2sim.clock = sim_clock  # the orphan stays pending until the test moves time on
    (source,) = seed_sources(ec2sim, 1)
    orphan = ec2sim.add_snapshot(
        DST,
        tags=tags.build_copy_tags(source, SCOPE, SRC),
        pending_for=1.0,
        ends_in_error="Given key ID is not accessible",
    )
    copier = make_copier(aws)
    assert copier.adopt(await inventory.list_replicas(aws, DST, SCOPE)) == 1
    sim_clock.advance(2.0)
    stop = asyncio.Event()
    pool = asyncio.create_task(copier.run(stop))
    try:
        await asyncio.wait_for(copier.wait_settled(), 30)
        unfinished_after_failure = copier.unfinished()
        copier.enqueue([CopyAction(source, "missing")])
        unfinished_after_requeue = copier.unfinished()
    finally:
        stop.set()
        await pool
    assert copier.unfinished() == []  # a stopped pool forgets; the next plan starts afresh
    (failed,) = unfinished_after_failure
    assert (failed.source_id, failed.state, failed.replica_id) == (
        source.snapshot_id,
        "failed",
        orphan,
    )
    assert "left by an earlier run ended in error: Given key ID is not accessible" in (
        failed.reason
    )
    (queued,) = unfinished_after_requeue
    assert (queued.source_id, queued.state) == (source.snapshot_id, "queued")
