"""Batched waits: many callers wait on EC2 resources, one Describe per round answers them all.

Restore waits on copy-backs and on volumes — one of each per PVC with `--all`. A loop per
resource would make N Describe calls a round (the N+1 pattern the copier's poller avoids);
here each `wait(id)` parks a future, and one poller task describes every awaited id together
and settles those that reached a final state.

When to look again. `poll_interval` bounds how stale an answer can be. A person is watching a
restore, so a resource that reports progress (a snapshot copy's `Progress`) is looked at again
when its measured rate says it should be done — never sooner than `min_interval`, never later
than `poll_interval`. A resource without progress (a volume `creating`) is polled every
`poll_interval`; the caller picks a short one when the wait is short (volumes: seconds).

Siblings. Resources of one kind started together (`--all`: ten volumes from ten
copy-backs) tend to take about as long as each other, and without progress nothing else says
when one is due. So once one is seen done, its time from `wait` to that sighting predicts the
others': each still awaited gets one look at its own start plus that time (never sooner than
`SOONEST_LOOK` after the last), instead of the next poll interval — the volume registered
30 ms after its sibling is looked at 30 ms after the sighting, not a whole interval later.
A prediction is used once; a resource that is slower than its sibling is back on the
normal cadence.

A resource EC2 does not show yet (eventual consistency right after it was made) is tolerated
for `not_found_window` seconds; after that its waiter fails. A Describe that fails with a
transient error (throttling, 5xx, a dropped connection — after botocore's own retries) is
tried again each poll interval for `transient_window` seconds: a copy-back that takes hours
is not lost to a minute of AWS trouble. A permanent error, or a transient one that outlasts
the window, fails every waiter of that round: the caller reports it per PVC.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import structlog

from snapd.errors import SnapdError, TransientError, WorkFailedError

T = TypeVar("T")
V = TypeVar("V")
log = structlog.get_logger("snapd.waiting")

#: How long a resource may be missing from Describe right after it was made.
NOT_FOUND_WINDOW = 120.0
#: The soonest a progress-predicted look may come, as a share of the poll interval.
EARLIEST_LOOK = 0.25
#: The soonest a sibling-predicted look may follow the last one (seconds).
SOONEST_LOOK = 0.02
#: How long Describe may keep failing with transient errors before the waits fail.
TRANSIENT_WINDOW = 300.0


@dataclass
class ProgressTrack:
    """The first and latest (time, percent) seen of one resource: when should it be done?

    The rate between the two sightings predicts the end; `due_in` clamps that to
    [floor, ceiling] so a wrong guess (EC2's Progress is coarse and uneven) costs at most a
    few extra Describe calls near the end, and no guess ever delays a look past the ceiling.
    """

    first: tuple[float, int] | None = None
    latest: tuple[float, int] | None = None

    def see(self, now: float, percent: int) -> None:
        self.latest = (now, percent)
        if self.first is None:
            self.first = self.latest

    def remaining(self) -> float | None:
        """Seconds left at the measured rate, from the latest sighting; None without a rate."""
        if self.first is None or self.latest is None:
            return None
        (t0, p0), (t1, p1) = self.first, self.latest
        if p1 <= p0 or t1 <= t0:
            return None
        return (100 - p1) * (t1 - t0) / (p1 - p0)

    def due_at(self) -> float | None:
        """When the resource should be done at the measured rate; None without a rate."""
        remaining = self.remaining()
        if remaining is None or self.latest is None:
            return None
        return self.latest[0] + remaining

    def due_in(self, now: float, *, floor: float, ceiling: float) -> float:
        """Seconds until the next look: the predicted end, within [floor, ceiling]."""
        remaining = self.remaining()
        if remaining is None or self.latest is None:
            return ceiling
        left = remaining - (now - self.latest[0])
        return max(floor, min(ceiling, left))


@dataclass
class SiblingPace:
    """The quickest time from `wait` to seen done among resources of one kind: when should
    the others be looked at? (See "Siblings" above.)"""

    quickest: float | None = None

    def saw_done(self, took: float) -> None:
        self.quickest = took if self.quickest is None else min(self.quickest, took)

    def due_in(self, since: float, now: float) -> float | None:
        """Seconds until a resource awaited since `since` should be done if it is as quick
        as its quickest sibling; None without a sibling seen done or when that time is past
        (the resource is slower)."""
        if self.quickest is None:
            return None
        due = since + self.quickest - now
        return due if due > 0 else None


@dataclass
class _Waiter(Generic[T]):
    """One awaited resource: its future, when it was registered, the progress seen of it."""

    future: asyncio.Future[T]
    since: float
    on_update: Callable[[T], None] | None = None
    track: ProgressTrack = field(default_factory=ProgressTrack)
    #: Whether the look its siblings predicted (`BatchWaiter._sibling_due`) was made.
    sibling_look_made: bool = False


class BatchWaiter(Generic[T]):
    """Waits for many resources of one kind with one batched Describe per round.

    `describe(ids)` returns what EC2 shows of those ids (missing ids are absent); `done(x)`
    says whether `x` is final; `progress(x)`, when given, is its percent complete.
    """

    def __init__(
        self,
        describe: Callable[[Collection[str]], Awaitable[Mapping[str, T]]],
        *,
        done: Callable[[T], bool],
        what: str,
        poll_interval: float,
        min_interval: float | None = None,
        progress: Callable[[T], int | None] | None = None,
        not_found_window: float = NOT_FOUND_WINDOW,
        transient_window: float = TRANSIENT_WINDOW,
    ) -> None:
        self.describe = describe
        self.done = done
        self.what = what
        self.poll_interval = poll_interval
        self.min_interval = poll_interval if min_interval is None else min_interval
        self.progress = progress
        self.not_found_window = not_found_window
        self.transient_window = transient_window
        self._waiting: dict[str, _Waiter[T]] = {}
        self._task: asyncio.Task[None] | None = None
        self._pace = SiblingPace()

    async def wait(self, resource_id: str, on_update: Callable[[T], None] | None = None) -> T:
        """The resource's final record; `on_update` sees every record polled on the way."""
        loop = asyncio.get_running_loop()
        waiter = _Waiter[T](loop.create_future(), loop.time(), on_update)
        self._waiting[resource_id] = waiter
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._poll(), name=f"wait.{self.what}")
        try:
            return await waiter.future
        finally:
            if self._waiting.get(resource_id) is waiter:
                del self._waiting[resource_id]

    async def close(self) -> None:
        """Stop the poller (when every wait ended early, e.g. on a timeout)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            # asyncio.wait never raises the task's CancelledError, and never swallows ours.
            await asyncio.wait([self._task])

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        failing_since: float | None = None
        while True:
            waiting = {rid: w for rid, w in self._waiting.items() if not w.future.done()}
            if not waiting:
                return
            try:
                seen = await self.describe(list(waiting))
            except TransientError as error:
                failing_since = loop.time() if failing_since is None else failing_since
                if loop.time() - failing_since > self.transient_window:
                    _fail(waiting.values(), error)
                    return
                log.warning(
                    "wait.describe_failed", what=self.what, code=error.code, error=error.message
                )
                await asyncio.sleep(self.poll_interval)
                continue
            except SnapdError as error:
                _fail(waiting.values(), error)
                return
            failing_since = None
            now = loop.time()
            for resource_id, waiter in waiting.items():
                self._settle(resource_id, waiter, seen.get(resource_id), now)
            await asyncio.sleep(self._next_delay(waiting.values(), now))

    def _settle(self, resource_id: str, waiter: _Waiter[T], record: T | None, now: float) -> None:
        if waiter.future.done():
            return
        if record is None:
            if now - waiter.since > self.not_found_window:
                waiter.future.set_exception(
                    WorkFailedError(f"{self.what} {resource_id} vanished from EC2")
                )
            return
        if waiter.on_update is not None:
            waiter.on_update(record)
        if self.done(record):
            waiter.future.set_result(record)
            self._pace.saw_done(now - waiter.since)
            return
        percent = self.progress(record) if self.progress is not None else None
        if percent is not None:
            waiter.track.see(now, percent)

    def _next_delay(self, waiters: Collection[_Waiter[T]], now: float) -> float:
        """The soonest any awaited resource should be looked at again."""
        return min(
            (self._delay_for(w, now) for w in waiters if not w.future.done()),
            default=self.poll_interval,
        )

    def _delay_for(self, waiter: _Waiter[T], now: float) -> float:
        delay = waiter.track.due_in(now, floor=self.min_interval, ceiling=self.poll_interval)
        sibling = self._sibling_due(waiter, now)
        return delay if sibling is None else min(delay, max(SOONEST_LOOK, sibling))

    def _sibling_due(self, waiter: _Waiter[T], now: float) -> float | None:
        """Seconds until the one look its siblings predict; None once that look was made
        (a look at or after the predicted time found the waiter still going)."""
        if waiter.sibling_look_made:
            return None
        due = self._pace.due_in(waiter.since, now)
        if due is None and self._pace.quickest is not None:
            waiter.sibling_look_made = True
        return due


def _fail(waiters: Iterable[_Waiter[Any]], error: SnapdError) -> None:
    for waiter in waiters:
        if not waiter.future.done():
            waiter.future.set_exception(error)


class BatchLookup(Generic[V]):
    """One-shot lookups by key: every key asked for within `linger` seconds of the first
    (by default: in the same event-loop turn) is answered by one batched call.

    Restore's cleanup looks again for the copy-backs of each PVC; with `--all` the PVCs
    whose volumes were requested within a moment of each other all ask, and one
    DescribeSnapshots answers them (not one per PVC). `ask` starts the lookup and returns its
    future at once, so a caller can start it early — while it waits for something else —
    and `get` it later; a `get` of a key still lingering sends its batch at once (nobody
    waits for the rest of the window). A key is looked up once; asking again returns the
    same answer.
    """

    def __init__(
        self,
        fetch: Callable[[Collection[str]], Awaitable[Mapping[str, V]]],
        *,
        missing: V,
        linger: float = 0.0,
    ) -> None:
        self.fetch = fetch
        self.missing = missing
        self.linger = linger
        self._asked: dict[str, asyncio.Future[V]] = {}
        self._unsent: dict[str, asyncio.Future[V]] = {}
        self._timer: asyncio.Handle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def ask(self, key: str) -> asyncio.Future[V]:
        """The future answer for `key`, joining the batch being gathered."""
        if key in self._asked:
            return self._asked[key]
        loop = asyncio.get_running_loop()
        future: asyncio.Future[V] = loop.create_future()
        # An answer nobody collects (its restore failed first) is not an unhandled error.
        future.add_done_callback(_retrieve)
        self._asked[key] = future
        if not self._unsent:
            self._timer = (
                loop.call_later(self.linger, self._send)
                if self.linger > 0
                else loop.call_soon(self._send)
            )
        self._unsent[key] = future
        return future

    async def get(self, key: str) -> V:
        """The answer for `key`: the one asked for earlier, else a new lookup."""
        future = self.ask(key)
        if key in self._unsent and self.linger > 0:
            self._send()
        return await future

    async def close(self) -> None:
        """Stop lookups still in flight or still gathering (their futures are cancelled)."""
        if self._timer is not None:
            self._timer.cancel()
        for future in self._unsent.values():
            future.cancel()
        self._unsent = {}
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    def _send(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._unsent = self._unsent, {}
        if not batch:
            return
        task = asyncio.create_task(self._answer(batch), name="lookup.batch")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, batch: Mapping[str, asyncio.Future[V]]) -> None:
        try:
            found = await self.fetch(list(batch))
            for key, future in batch.items():
                if not future.done():
                    future.set_result(found.get(key, self.missing))
        except SnapdError as error:
            for future in batch.values():
                if not future.done():
                    future.set_exception(error)
        finally:
            # Cancelled (or a bug): no caller may wait for an answer that never comes.
            for future in batch.values():
                future.cancel()


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a failed future's error as seen (its owner reports the error where it awaits)."""
    if not future.cancelled():
        future.exception()
