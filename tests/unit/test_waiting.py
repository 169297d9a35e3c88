"""The batched waiter restore uses for copy-backs and volumes (driven by a scripted EC2)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass, field

import pytest

from snapd.errors import PermanentError, TransientError, WorkFailedError
from snapd.waiting import BatchLookup, BatchWaiter, ProgressTrack, SiblingPace


@dataclass
class Thing:
    state: str
    progress: int = 0


@dataclass
class ScriptedEc2:
    """Answers Describe from a script: each id's records in turn, the last one repeated
    (None: EC2 does not show the id in that answer)."""

    script: dict[str, list[Thing | None]]
    calls: list[list[str]] = field(default_factory=list)
    fail_with: Exception | None = None

    async def describe(self, ids: Collection[str]) -> Mapping[str, Thing]:
        self.calls.append(sorted(ids))
        if self.fail_with is not None:
            raise self.fail_with
        found = {}
        for resource_id in ids:
            records = self.script.get(resource_id, [])
            record = (records.pop(0) if len(records) > 1 else records[0]) if records else None
            if record is not None:
                found[resource_id] = record
        return found


#: Every waiter a test makes, closed after the test as restore closes its own.
_made: list[BatchWaiter[Thing]] = []


@pytest.fixture(autouse=True)
async def close_waiters() -> AsyncIterator[None]:
    """Stop each test's pollers, so none outlives its test (the leak guard would fail it)."""
    yield
    while _made:
        await _made.pop().close()


def made(batch: BatchWaiter[Thing]) -> BatchWaiter[Thing]:
    _made.append(batch)
    return batch


def waiter(ec2: ScriptedEc2, **options: float) -> BatchWaiter[Thing]:
    return made(
        BatchWaiter(
            ec2.describe,
            done=lambda t: t.state in ("completed", "error"),
            progress=lambda t: t.progress,
            what="copy-back",
            poll_interval=options.get("poll_interval", 0.01),
            min_interval=options.get("min_interval", 0.001),
            not_found_window=options.get("not_found_window", 60.0),
        )
    )


async def test_many_waits_share_one_describe_per_round() -> None:
    """Ten resources in flight: each round is one Describe naming all that are still awaited."""
    ids = [f"snap-{i}" for i in range(10)]
    script: dict[str, list[Thing | None]] = {
        rid: [*[Thing("pending")] * (i % 3 + 1), Thing("completed")] for i, rid in enumerate(ids)
    }
    ec2 = ScriptedEc2(script)
    batch = waiter(ec2)
    results = await asyncio.gather(*(batch.wait(rid) for rid in ids))
    assert [r.state for r in results] == ["completed"] * 10
    assert len(ec2.calls) <= 4  # the slowest needs 4 sightings
    assert ec2.calls[0] == sorted(ids)
    assert all(set(later) <= set(ids) for later in ec2.calls)


async def test_updates_seen_and_final_error_returned() -> None:
    """Every sighting reaches `on_update`; a final `error` is a result, not an exception."""
    ec2 = ScriptedEc2({"snap-1": [Thing("pending", 10), Thing("pending", 60), Thing("error")]})
    seen: list[int] = []
    final = await waiter(ec2).wait("snap-1", lambda t: seen.append(t.progress))
    assert final.state == "error"
    assert seen == [10, 60, 0]


async def test_missing_past_the_window_fails() -> None:
    """A resource EC2 never shows fails its waiter with a message naming it."""
    batch = waiter(ScriptedEc2({}), not_found_window=0.02)
    with pytest.raises(WorkFailedError, match="copy-back snap-gone vanished from EC2"):
        await asyncio.wait_for(batch.wait("snap-gone"), 5)


async def test_missing_for_a_moment_is_tolerated() -> None:
    """Eventual consistency: not shown at first, then shown and completed."""
    ec2 = ScriptedEc2({"snap-late": [None, None, Thing("completed")]})
    assert (await asyncio.wait_for(waiter(ec2).wait("snap-late"), 5)).state == "completed"
    assert len(ec2.calls) == 3


async def test_permanent_describe_error_fails_every_waiter() -> None:
    """A Describe refused for good (after botocore's retries) reaches each waiting PVC."""
    ec2 = ScriptedEc2({"a": [Thing("pending")], "b": [Thing("pending")]})
    ec2.fail_with = PermanentError("DescribeSnapshots", "UnauthorizedOperation", "denied")
    batch = waiter(ec2)
    results = await asyncio.gather(batch.wait("a"), batch.wait("b"), return_exceptions=True)
    assert [type(r) for r in results] == [PermanentError, PermanentError]
    assert len(ec2.calls) == 1


async def test_transient_describe_errors_are_ridden_out_within_the_window() -> None:
    """A minute of AWS trouble does not lose a copy-back that takes hours: transient errors
    are retried each poll; only errors that outlast `transient_window` fail the waits."""
    trouble = TransientError("DescribeSnapshots", "RequestLimitExceeded", "slow down")

    class Flaky(ScriptedEc2):
        failures = 3

        async def describe(self, ids: Collection[str]) -> Mapping[str, Thing]:
            self.fail_with = trouble if self.failures > 0 else None
            self.failures -= 1
            return await super().describe(ids)

    ec2 = Flaky({"a": [Thing("completed")]})
    assert (await asyncio.wait_for(waiter(ec2).wait("a"), 5)).state == "completed"
    assert len(ec2.calls) == 4

    stuck = ScriptedEc2({"a": [Thing("completed")]}, fail_with=trouble)
    batch = made(
        BatchWaiter(
            stuck.describe,
            done=lambda t: t.state == "completed",
            what="volume",
            poll_interval=0.01,
            transient_window=0.05,
        )
    )
    with pytest.raises(TransientError):
        await asyncio.wait_for(batch.wait("a"), 5)
    assert len(stuck.calls) > 1


async def test_close_stops_the_poller_when_waits_were_abandoned() -> None:
    ec2 = ScriptedEc2({"a": [Thing("pending")]})
    batch = waiter(ec2, poll_interval=0.01)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(batch.wait("a"), 0.05)
    await batch.close()
    calls = len(ec2.calls)
    await asyncio.sleep(0.05)
    assert len(ec2.calls) == calls


# ------------------------------------------------------------------ when to look again


def sighted(*points: tuple[float, int]) -> ProgressTrack:
    track = ProgressTrack()
    for when, percent in points:
        track.see(when, percent)
    return track


@pytest.mark.parametrize(
    ("points", "now", "expected"),
    [
        pytest.param([(0.0, 0)], 0.0, 30.0, id="no rate yet: the poll interval"),
        pytest.param([(0.0, 10), (10.0, 10)], 10.0, 30.0, id="no progress: the poll interval"),
        pytest.param([(0.0, 0), (10.0, 50)], 10.0, 10.0, id="half done in 10 s: 10 s more"),
        pytest.param([(0.0, 0), (10.0, 50)], 15.0, 5.0, id="time since the sighting counts"),
        pytest.param([(0.0, 0), (10.0, 10)], 10.0, 30.0, id="far off: never beyond the poll"),
        pytest.param([(0.0, 0), (10.0, 99)], 10.0, 2.0, id="about done: never below the floor"),
    ],
)
def test_next_look_follows_the_measured_rate(
    points: list[tuple[float, int]], now: float, expected: float
) -> None:
    due = sighted(*points).due_in(now, floor=2.0, ceiling=30.0)
    assert due == pytest.approx(expected)


def test_due_at_is_the_predicted_end_and_none_without_a_rate() -> None:
    assert ProgressTrack().due_at() is None
    assert sighted((10.0, 40)).due_at() is None  # one sighting: no rate
    assert sighted((10.0, 40), (10.0, 50)).due_at() is None  # no time passed
    assert sighted((0.0, 0), (30.0, 60)).due_at() == pytest.approx(50.0)


@pytest.mark.parametrize(
    ("quickest", "since", "now", "expected"),
    [
        pytest.param(None, 0.0, 1.0, None, id="no sibling seen done: no prediction"),
        pytest.param(1.0, 0.03, 1.0, 0.03, id="started 30 ms after it: 30 ms after the sighting"),
        pytest.param(1.0, 0.0, 1.0, None, id="started with it and still going: slower, spent"),
        pytest.param(1.0, -0.2, 1.0, None, id="started before it: slower, spent"),
    ],
)
def test_a_sibling_seen_done_predicts_the_others(
    quickest: float | None, since: float, now: float, expected: float | None
) -> None:
    pace = SiblingPace()
    if quickest is not None:
        pace.saw_done(quickest + 0.5)
        pace.saw_done(quickest)  # the quickest sibling sets the pace
    due = pace.due_in(since, now)
    assert due == (None if expected is None else pytest.approx(expected))


def volume_waiter(ec2: ScriptedEc2) -> BatchWaiter[Thing]:
    """No progress and a 30 s poll interval: only a sibling's pace can bring a look sooner."""
    return made(
        BatchWaiter(
            ec2.describe, done=lambda t: t.state == "completed", what="volume", poll_interval=30.0
        )
    )


async def test_a_resource_is_looked_at_when_its_quicker_sibling_says() -> None:
    """`a` is seen done at the first look; `b`, awaited just after it, is looked at once
    `a`'s time says it is due — not a whole 30 s poll interval later."""
    ec2 = ScriptedEc2({"a": [Thing("completed")], "b": [Thing("pending"), Thing("completed")]})
    batch = volume_waiter(ec2)
    a, b = await asyncio.wait_for(asyncio.gather(batch.wait("a"), batch.wait("b")), 5)
    assert (a.state, b.state) == ("completed", "completed")
    assert ec2.calls == [["a", "b"], ["b"]]


async def test_a_slower_sibling_gets_one_predicted_look_then_the_poll_interval() -> None:
    ec2 = ScriptedEc2({"a": [Thing("completed")], "b": [Thing("pending")]})
    batch = volume_waiter(ec2)
    a = asyncio.ensure_future(batch.wait("a"))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(batch.wait("b"), 0.5)
    assert (await a).state == "completed"
    assert ec2.calls == [["a", "b"], ["b"]]


# ------------------------------------------------------------------ one-shot batched look-ups


@dataclass
class KeyedEc2:
    """Answers a batched look-up by key; records each call's keys."""

    answers: dict[str, int]
    calls: list[list[str]] = field(default_factory=list)
    fail_with: Exception | None = None

    async def fetch(self, keys: Collection[str]) -> Mapping[str, int]:
        self.calls.append(sorted(keys))
        await asyncio.sleep(0)
        if self.fail_with is not None:
            raise self.fail_with
        return {k: self.answers[k] for k in keys if k in self.answers}


async def test_keys_asked_together_are_one_call_and_each_gets_its_answer() -> None:
    ec2 = KeyedEc2({"a": 1, "b": 2})
    lookup = BatchLookup(ec2.fetch, missing=0)
    answers = await asyncio.gather(*(lookup.get(k) for k in ("a", "b", "c")))
    assert answers == [1, 2, 0]  # `c` has nothing: the `missing` answer
    assert ec2.calls == [["a", "b", "c"]]


async def test_an_early_ask_is_answered_once_and_kept_for_the_get() -> None:
    """Cleanup asks when the copy-back completes and collects the answer later."""
    ec2 = KeyedEc2({"a": 1})
    lookup = BatchLookup(ec2.fetch, missing=0)
    lookup.ask("a")
    await asyncio.sleep(0.01)
    assert ec2.calls == [["a"]]
    assert await lookup.get("a") == 1
    assert ec2.calls == [["a"]]


async def test_a_failed_look_up_reaches_every_key_of_its_batch() -> None:
    ec2 = KeyedEc2({}, fail_with=PermanentError("DescribeSnapshots", "UnauthorizedOperation", "no"))
    lookup = BatchLookup(ec2.fetch, missing=0)
    results = await asyncio.gather(lookup.get("a"), lookup.get("b"), return_exceptions=True)
    assert [type(r) for r in results] == [PermanentError, PermanentError]
    assert ec2.calls == [["a", "b"]]


async def test_close_cancels_a_look_up_in_flight() -> None:
    started = asyncio.Event()

    async def never(keys: Collection[str]) -> Mapping[str, int]:
        started.set()
        await asyncio.Event().wait()
        return {}

    lookup = BatchLookup(never, missing=0)
    answer = lookup.ask("a")
    await asyncio.wait_for(started.wait(), 5)
    await lookup.close()
    assert answer.cancelled()


async def test_keys_asked_within_the_linger_are_one_call() -> None:
    """Restore asks as each CreateVolume is answered, moments apart: one DescribeSnapshots."""
    ec2 = KeyedEc2({"a": 1, "b": 2, "c": 3})
    lookup = BatchLookup(ec2.fetch, missing=0, linger=0.2)
    first = lookup.ask("a")
    await asyncio.sleep(0.01)
    second = lookup.ask("b")
    await asyncio.sleep(0.01)
    assert ec2.calls == []  # still gathering
    assert list(await asyncio.wait_for(asyncio.gather(first, second), 5)) == [1, 2]
    assert ec2.calls == [["a", "b"]]
    assert await lookup.get("c") == 3  # after the batch went: a batch of its own
    assert ec2.calls == [["a", "b"], ["c"]]


async def test_a_get_of_a_lingering_key_sends_its_batch_at_once() -> None:
    """A volume that is ready before the linger ends never waits for the rest of it."""
    ec2 = KeyedEc2({"a": 1, "b": 2})
    lookup = BatchLookup(ec2.fetch, missing=0, linger=3600.0)
    other = lookup.ask("b")
    assert await asyncio.wait_for(lookup.get("a"), 5) == 1
    assert await asyncio.wait_for(other, 5) == 2
    assert ec2.calls == [["a", "b"]]


async def test_close_cancels_a_batch_still_gathering_without_a_call() -> None:
    ec2 = KeyedEc2({"a": 1})
    lookup = BatchLookup(ec2.fetch, missing=0, linger=3600.0)
    answer = lookup.ask("a")
    await lookup.close()
    assert answer.cancelled()
    await asyncio.sleep(0.01)
    assert ec2.calls == []
