"""The copy pool and its poller: CopySnapshot under AWS's in-flight limit, polled to the end.

Shape. One *starter* task takes copies from an ordered queue and calls CopySnapshot while
fewer than the effective limit of our copies are pending or being started — up to
`START_CONCURRENCY` calls side by side, so a poll that frees several slots refills them
together. One *poller* task describes all pending copies in one batched DescribeSnapshots
`poll_interval` after its last poll, and sooner when a copy's measured progress says it is
due (`waiting.ProgressTrack`), never within a quarter poll interval of the last poll (every
look names every pending copy and starts the poll interval again); a copy
started meanwhile only moves that time, it never triggers a Describe of its own. A slot
frees the moment the poller sees a copy `completed`, and the starter is woken to start the
next queued copy at once — not at the next cycle. There are no per-copy polling loops.

Order. The planner hands copies over per volume oldest first, volumes interleaved
(`planner.order_copies`): oldest first keeps each later copy of a volume incremental in AWS,
interleaving lets every PVC's restore points advance together. It is queue order only — a
free slot is never held back waiting for a volume's previous copy.

Limits. At most `max_in_flight` of our copies are pending, counting pending replicas found
at start-up (adopted, polled, never copied again). Other tools share the account's 20 slots,
so `ResourceLimitExceeded` lowers the effective limit to what we hold now (our starts still
in flight included); the refused copy goes back to the head of the queue and waits for one
of ours to complete (or a jittered backoff when we hold none). The limit climbs back one
step on a completed copy once no refusal was seen for a quiet time, and one step at a time:
the next climb waits until a full poll shows more of ours pending than AWS allowed at the
refusal (an accepted CopySnapshot alone proves nothing: one of ours may have ended unseen).
The quiet time is two poll intervals at first, grows `PROBE_GROWTH`-fold each time a climb
is refused (the foreign copies are still there), capped at `MAX_BACKOFF`, and is two poll
intervals again once a climb holds. So foreign copies that stay cost a refused
CopySnapshot ever more rarely, not one per completed copy.
Throttling and 5xx are botocore's job (`aws.py`).

Failures. A copy that ends in `error` is logged with its StateMessage, counted, deleted, and
queued again after an exponential, jittered backoff, up to `copy_retries` tries per source;
a refused CopySnapshot (a permanent AWS error) counts as a try too. A source that used up its
tries is reported and given up until `GIVE_UP_COOLDOWN` has passed (the daemon keeps trying,
slowly; `snapd sync` reports it and exits 1). One failure never blocks the other copies.
A copy that EC2 does not show yet (eventual consistency) is tolerated for `NOT_FOUND_WINDOW`.
`unfinished()` names every source asked of the pool without a completed replica — given
up, queued (never started, and why; waiting to retry, and after what) or pending — so
`snapd sync` never reports success for a copy that never started. The pool reports itself
idle (`wait_settled`) the moment nothing queued, being started or pending is left.

Time-based copies. With `completion_minutes` every CopySnapshot asks EC2 to finish within
that many minutes (CompletionDurationMinutes). A copy the poller still sees pending after
its promise (its StartTime plus the duration, on the wall clock as EC2 reports it) is
counted once in `snapd_copies_overdue_total` and logged (`copy.overdue`); it is left to
finish — AWS keeps copying, it only broke its promise (README "Time-based copies").

Stale listings. A cycle plans from a replica listing that may be seconds (a cold discovery:
minutes) old by the time its copies are enqueued. So a source counts as busy from the moment
its CopySnapshot is sent, a failed copy's retry-or-give-up is decided before anything awaits,
and the copier remembers what it settled (`settled_since`) for `SETTLED_MEMORY`: a copy that
completed or failed after the listing was taken is neither adopted again nor planned again.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from snapd import inventory, tags
from snapd.aws import AwsClients
from snapd.errors import AwsError, PermanentError
from snapd.metrics import Metrics
from snapd.models import CopyAction, Replica, SourceSnapshot
from snapd.tags import format_time, to_tag_list
from snapd.waiting import EARLIEST_LOOK, NOT_FOUND_WINDOW, ProgressTrack

log = structlog.get_logger("snapd.copier")

GIVE_UP_COOLDOWN = 3600.0
MAX_BACKOFF = 900.0
#: CopySnapshot calls sent side by side when several slots are free (a poll that sees many
#: copies complete refills them together, not one round trip after another).
START_CONCURRENCY = 4
#: How much longer the quiet time before the next climb gets each time AWS refuses one.
PROBE_GROWTH = 4.0
#: Recent copy durations kept to predict when a copy not yet described may be done.
DURATIONS_KEPT = 20
#: How long settled copies are remembered; far longer than any cycle's listing can be stale.
SETTLED_MEMORY = 3600.0


class CopyEvents(Protocol):
    """What the copier tells the outside (the CLI's progress display, tests)."""

    def copy_event(self, event: str, copy: Tracked) -> None: ...


@dataclass(slots=True)
class Tracked:
    """One copy the poller watches: started by us, or adopted from a previous process."""

    replica_id: str
    source_id: str
    label: str
    started: float
    adopted: bool = False
    progress: int = 0
    source: SourceSnapshot | None = None
    #: Progress seen over time: when the copy should be done (the poller looks then).
    track: ProgressTrack = field(default_factory=ProgressTrack)
    #: Seen pending past its time-based promise (counted once).
    overdue: bool = False
    #: Described by the poller at least once.
    looked: bool = False


@dataclass(slots=True)
class Failure:
    """A source that used up its tries, with the last reason."""

    source_id: str
    label: str
    reason: str
    given_up_at: float


@dataclass(frozen=True, slots=True)
class _Settled:
    """A copy this process saw complete or fail, kept to see through stale listings."""

    source_id: str
    at: float


@dataclass(slots=True)
class _Queued:
    """A copy waiting for a slot; `why_waiting` says what held it back last (for reports)."""

    action: CopyAction
    not_before: float = 0.0
    why_waiting: str | None = None


@dataclass(frozen=True, slots=True)
class Unfinished:
    """A source the copier was asked to copy that has no completed replica (yet), and why.

    `state`: `failed` (given up), `pending` (a copy still running), `queued` (never
    started, or waiting to retry). `snapd sync` names each one in its summary.
    """

    source_id: str
    label: str
    state: str
    reason: str
    replica_id: str | None = None
    progress: int = 0


@dataclass
class CopyStats:
    """Counts for the cycle report and `snapd sync`'s exit code."""

    started: int = 0
    completed: int = 0
    failed: int = 0
    #: Adopted copies (started by an earlier process) that ended in `error`; their sources
    #: are only known again after a fresh plan, so `snapd sync` re-plans when this grows.
    adopted_failed: int = 0
    failures: dict[str, Failure] = field(default_factory=dict)


class Copier:
    """The pool: `enqueue` copies, `adopt` pending replicas, `run` the starter and poller."""

    def __init__(
        self,
        aws: AwsClients,
        *,
        scope: str,
        source_region: str,
        destination_region: str,
        max_in_flight: int,
        poll_interval: float,
        copy_retries: int,
        kms_key_id: str | None = None,
        completion_minutes: int | None = None,
        metrics: Metrics | None = None,
        events: CopyEvents | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
    ) -> None:
        self.aws = aws
        self.scope = scope
        self.source_region = source_region
        self.region = destination_region
        self.max_in_flight = max_in_flight
        self.limit = max_in_flight
        self.poll_interval = poll_interval
        self.copy_retries = copy_retries
        self.kms_key_id = kms_key_id
        self.completion_minutes = completion_minutes
        self.wall_clock = wall_clock
        self.metrics = metrics or Metrics()
        self.events = events
        self.clock = clock
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self.queue: deque[_Queued] = deque()
        self.active: dict[str, Tracked] = {}
        self.attempts: dict[str, int] = {}
        self.stats = CopyStats()
        #: Copies whose CopySnapshot is sent and not yet answered, by source.
        self._in_start: dict[str, _Queued] = {}
        self._settled_copies: dict[str, _Settled] = {}
        #: Adopted copies that ended in `error`, by source, until the source is queued again.
        self._adopted_failures: dict[str, Unfinished] = {}
        self._last_refusal = -1e18
        self._refusals_in_a_row = 0
        #: Quiet time after a ResourceLimitExceeded before the limit may climb again; it
        #: grows `PROBE_GROWTH`-fold each time a climb is refused at once (the foreign copies
        #: are still there).
        self._probe_wait = 2 * poll_interval
        self._probing = False
        self._refused_at = max_in_flight
        #: When the poller last described every pending copy, or first saw one pending after
        #: none were (None: none pending): the next full poll is `poll_interval` after it.
        self._full_anchor: float | None = None
        #: How long our recent copies took, start to seen completed (newest last).
        self._durations: deque[float] = deque(maxlen=DURATIONS_KEPT)
        #: When the poller last described any copy: the next look waits a quarter interval.
        self._last_look: float | None = None
        self._wake_starter = asyncio.Event()
        self._wake_poller = asyncio.Event()
        self._settled = asyncio.Event()
        self._settled.set()
        self._stopping = False
        self._starting = 0
        self.metrics.copies_in_flight_limit.set(self.limit)

    # ----------------------------------------------------------------- feeding the pool

    def busy_sources(self) -> set[str]:
        """Sources queued, being started or pending here; the planner must not plan them again."""
        return (
            {q.action.source.snapshot_id for q in self.queue}
            | set(self._in_start)
            | {t.source_id for t in self.active.values()}
        )

    def settled_since(self, moment: float) -> set[str]:
        """Sources whose copy completed or failed here at or after `moment` (this clock).

        A plan made from a listing taken before `moment` must treat them as covered: their
        replica is either complete but missing from the listing, or being retried here.
        """
        return {s.source_id for s in self._settled_copies.values() if s.at >= moment}

    def _remember_settled(self, tracked: Tracked, now: float) -> None:
        """Remember one settled copy; forget the oldest ones (kept in the order they came)."""
        self._settled_copies[tracked.replica_id] = _Settled(tracked.source_id, now)
        horizon = now - SETTLED_MEMORY
        while self._settled_copies:
            oldest_id, oldest = next(iter(self._settled_copies.items()))
            if oldest.at >= horizon:
                break
            del self._settled_copies[oldest_id]

    def enqueue(self, copies: Iterable[CopyAction]) -> int:
        """Append planned copies (already in queue order) that are not queued or pending."""
        busy = self.busy_sources()
        now = self.clock()
        added = 0
        for action in copies:
            source_id = action.source.snapshot_id
            if source_id in busy or self._given_up(source_id, now):
                continue
            self.queue.append(_Queued(action))
            self._adopted_failures.pop(source_id, None)
            busy.add(source_id)
            added += 1
        if added:
            self._changed()
        return added

    def adopt(self, replicas: Iterable[Replica]) -> int:
        """Track pending replicas found in EC2 (a previous process started them)."""
        known = set(self.active)
        adopted = 0
        for replica in replicas:
            if not replica.pending or replica.snapshot_id in known:
                continue
            if replica.snapshot_id in self._settled_copies:
                continue  # a stale listing: this process already saw it complete or fail
            if replica.scope != self.scope or not replica.source_snapshot_id:
                continue
            tracked = Tracked(
                replica_id=replica.snapshot_id,
                source_id=replica.source_snapshot_id,
                label=_label(replica.volume.namespace, replica.volume.pvc, replica.backup),
                started=self.clock(),
                adopted=True,
                progress=replica.progress,
            )
            tracked.track.see(tracked.started, replica.progress)
            self.active[replica.snapshot_id] = tracked
            log.info(
                "copy.adopted",
                snapshot_id=replica.snapshot_id,
                source_snapshot_id=replica.source_snapshot_id,
                progress=replica.progress,
            )
            adopted += 1
        if adopted:
            self._changed()
        return adopted

    def _given_up(self, source_id: str, now: float) -> bool:
        failure = self.stats.failures.get(source_id)
        if failure is None:
            return False
        if now - failure.given_up_at < GIVE_UP_COOLDOWN:
            return True
        del self.stats.failures[source_id]
        self.attempts.pop(source_id, None)
        return False

    @property
    def backlog(self) -> int:
        """Planned copies not yet completed: queued plus pending."""
        return len(self.queue) + len(self.active)

    @property
    def idle(self) -> bool:
        """Nothing queued, being started, or pending."""
        return not self.queue and not self.active and not self._starting

    def _changed(self) -> None:
        self.metrics.copies_in_flight.set(len(self.active))
        self.metrics.copies_in_flight_limit.set(self.limit)
        self.metrics.backlog.set(self.backlog)
        if self.idle:
            self._settled.set()
        else:
            self._settled.clear()
        self._wake_starter.set()

    async def wait_settled(self) -> None:
        """Until nothing is queued or pending (every copy completed or given up)."""
        await self._settled.wait()

    # ----------------------------------------------------------------- running

    async def run(self, stop: asyncio.Event) -> None:
        """Starter and poller until `stop` is set; copies keep going inside AWS after that.

        On the way out the queue and the tracked copies are forgotten: whoever works next
        (this process after regaining the Lease, or another instance) re-lists the replicas
        and plans afresh, so nothing queued here can be copied twice.
        """
        self._stopping = False
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._starter(stop), name="copier.starter")
                group.create_task(self._poller(stop), name="copier.poller")
                await stop.wait()
                self._stopping = True
                self._wake_starter.set()
                self._wake_poller.set()
        finally:
            log.info("copier.stopped", queued=len(self.queue), left_running_in_aws=len(self.active))
            self.queue.clear()
            self.active.clear()
            self._adopted_failures.clear()
            self._changed()

    async def _starter(self, stop: asyncio.Event) -> None:
        """Fill free slots from the queue, up to `START_CONCURRENCY` CopySnapshot calls at
        once; each start that ends wakes the loop again. Leaves only when the calls it sent
        have been answered (a copy AWS accepted is always tracked)."""
        async with asyncio.TaskGroup() as starts:
            while not stop.is_set():
                delay = self._next_start_delay()
                if delay is None:
                    await self._wait(self._wake_starter, None, stop)
                    continue
                if delay > 0:
                    await self._wait(self._wake_starter, delay, stop)
                    continue
                queued = self._pop_ready()
                if queued is not None:
                    self._begin_start(queued)
                    starts.create_task(self._start(queued), name="copier.start")

    def _free_slots(self) -> int:
        """Slots of the effective limit not held by a pending copy or a start in flight."""
        return self.limit - len(self.active) - self._starting

    def _next_start_delay(self) -> float | None:
        """0 to start now, seconds to wait, None to wait for a wake-up."""
        if (
            not self.queue
            or self._free_slots() <= 0
            or self._starting >= START_CONCURRENCY
            or self._stopping
        ):
            return None
        now = self.clock()
        if self.queue[0].not_before <= now:
            return 0.0
        ready = min(q.not_before for q in self.queue)
        return max(0.0, ready - now)

    async def _wait(self, event: asyncio.Event, seconds: float | None, stop: asyncio.Event) -> None:
        """Until `event`, `stop` or `seconds`. The event is cleared after waking, not before
        waiting: a wake-up sent while the task was busy (a copy started during a poll) is
        acted on at once instead of being lost until the next timer."""
        waiters = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            event.clear()
            for waiter in waiters:
                waiter.cancel()

    def _pop_ready(self) -> _Queued | None:
        now = self.clock()
        for index, queued in enumerate(self.queue):
            if queued.not_before <= now:
                del self.queue[index]
                return queued
        return None

    async def _start_next(self) -> None:
        """Start the next ready copy and wait for AWS's answer: one start, in order, for a
        caller that drives the pool by hand (the starter sends several side by side)."""
        queued = self._pop_ready()
        if queued is not None:
            self._begin_start(queued)
            await self._start(queued)

    def _begin_start(self, queued: _Queued) -> None:
        """Count the start before the task runs: the next free-slot check must see it."""
        self._starting += 1
        self._in_start[queued.action.source.snapshot_id] = queued

    async def _start(self, queued: _Queued) -> None:
        """One CopySnapshot (counted by `_begin_start`); track the copy or handle the refusal."""
        source = queued.action.source
        refusal: AwsError | None = None
        sent = self.clock()
        try:
            replica_id = await self.start_copy(source)
        except AwsError as error:
            refusal = error
        finally:
            self._starting -= 1
            self._in_start.pop(source.snapshot_id, None)
            self._wake_starter.set()
            self._wake_poller.set()  # it recomputes its next look (a burst of starts ended?)
        if refusal is not None:
            # Only now, with the start no longer counted, may `_changed` see the pool idle:
            # a copy refused and given up must end `snapd sync`'s wait at once.
            self._refused(queued, refusal)
            self._changed()
            return
        self._refusals_in_a_row = 0
        self.attempts[source.snapshot_id] = self.attempts.get(source.snapshot_id, 0) + 1
        tracked = Tracked(
            replica_id=replica_id,
            source_id=source.snapshot_id,
            label=_label(source.volume.namespace, source.volume.pvc, source.backup),
            started=self.clock(),
            source=source,
        )
        # A copy starts at 0% about when AWS handled the call, halfway through the round
        # trip: the rate from poll one, unbiased by how long the answer took to come back.
        tracked.track.see((sent + tracked.started) / 2, 0)
        self.active[replica_id] = tracked
        self.stats.started += 1
        self.metrics.copies_started.inc()
        self._changed()
        self._wake_poller.set()
        self._emit("started", tracked)
        log.info(
            "copy.started",
            snapshot_id=replica_id,
            source_snapshot_id=source.snapshot_id,
            backup=source.backup,
            namespace=source.volume.namespace,
            pvc=source.volume.pvc,
            in_flight=len(self.active),
            limit=self.limit,
        )

    async def start_copy(self, source: SourceSnapshot) -> str:
        """CopySnapshot of one source with every tag in TagSpecifications."""
        return await copy_snapshot(
            self.aws,
            source_region=self.source_region,
            destination_region=self.region,
            snapshot_id=source.snapshot_id,
            tags=tags.build_copy_tags(source, self.scope, self.source_region),
            description=f"snapd copy of {source.snapshot_id} ({source.backup})",
            kms_key_id=self.kms_key_id,
            completion_minutes=self.completion_minutes,
        )

    def _refused(self, queued: _Queued, error: AwsError) -> None:
        source = queued.action.source
        now = self.clock()
        if error.code == "ResourceLimitExceeded" or not isinstance(error, PermanentError):
            self._refusals_in_a_row += 1
            if error.code == "ResourceLimitExceeded":
                self._limit_refused(now)
            if not self.active or error.code != "ResourceLimitExceeded":
                queued.not_before = now + self._backoff(self._refusals_in_a_row)
            queued.why_waiting = _deferral_reason(error, self.region)
            self.queue.appendleft(queued)
            log.warning(
                "copy.deferred",
                source_snapshot_id=source.snapshot_id,
                code=error.code,
                effective_limit=self.limit,
                in_flight=len(self.active),
            )
            return
        self.metrics.copies_failed.labels(reason="rejected").inc()
        self.stats.failed += 1
        tries = self.attempts.get(source.snapshot_id, 0) + 1
        self.attempts[source.snapshot_id] = tries
        log.error(
            "copy.rejected",
            source_snapshot_id=source.snapshot_id,
            backup=source.backup,
            code=error.code,
            error=error.message,
            attempt=tries,
        )
        self._retry_or_give_up(queued.action, tries, f"CopySnapshot refused: {error}")

    def _limit_refused(self, now: float) -> None:
        """Learn the effective limit from a refusal: what we hold, counting our starts still
        in flight (AWS may accept them). A climb refused at once makes the quiet time
        before the next `PROBE_GROWTH` times longer, so foreign copies that stay cost a
        refused CopySnapshot ever more rarely (capped at `MAX_BACKOFF`) instead of one per
        completed copy."""
        if self._probing:
            self._probe_wait = min(MAX_BACKOFF, self._probe_wait * PROBE_GROWTH)
            self._probing = False
        self._last_refusal = now
        self.limit = max(1, len(self.active) + self._starting)
        self._refused_at = self.limit

    def _retry_or_give_up(self, action: CopyAction, tries: int, reason: str) -> None:
        source = action.source
        if tries >= self.copy_retries:
            label = _label(source.volume.namespace, source.volume.pvc, source.backup)
            self.stats.failures[source.snapshot_id] = Failure(
                source.snapshot_id, label, reason, self.clock()
            )
            log.error(
                "copy.given_up",
                source_snapshot_id=source.snapshot_id,
                backup=source.backup,
                tries=tries,
                reason=reason,
            )
            return
        delay = self._backoff(tries)
        why = f"waiting to retry (try {tries + 1} of {self.copy_retries}) after: {reason}"
        self.queue.append(_Queued(action, not_before=self.clock() + delay, why_waiting=why))
        log.info("copy.retry_scheduled", source_snapshot_id=source.snapshot_id, delay=delay)

    def _backoff(self, attempt: int) -> float:
        """Exponential from one poll interval, capped, with full jitter in [0.5, 1.0]."""
        base = min(MAX_BACKOFF, self.poll_interval * 2.0 ** max(0, attempt - 1))
        return base * self.rng.uniform(0.5, 1.0)

    async def _poller(self, stop: asyncio.Event) -> None:
        """Poll when `_next_poll_in` says; a wake-up (a copy started or adopted) only makes
        it recompute that time, it never polls early by itself."""
        while not stop.is_set():
            await self._wait(self._wake_poller, self._next_poll_in(), stop)
            if not self.active:
                self._full_anchor = self._last_look = None
                continue
            if self._full_anchor is None:
                # Copies pending again after none were: the poll interval counts from now.
                self._full_anchor = self.clock()
                continue
            ids = [] if stop.is_set() else self._to_look_at()
            if not ids:
                continue
            try:
                await self.poll_once(ids)
            except AwsError as error:
                log.warning("copy.poll_failed", code=error.code, error=error.message)

    def _next_poll_in(self) -> float:
        """Seconds to the next look: every pending copy `poll_interval` after the last full
        poll; sooner, the copies whose measured progress says they are done by then — but
        never within a quarter poll interval of the last look, so a slot is refilled early
        without a Describe per copy."""
        now = self.clock()
        ceiling = (now if self._full_anchor is None else self._full_anchor) + self.poll_interval
        predicted = [self._due_at(t) for t in self.active.values()]
        due = min((at for at in predicted if at is not None), default=None)
        if due is None:
            return max(0.0, ceiling - now)
        earliest = now if self._last_look is None else self._last_look + self._floor
        return max(0.0, min(ceiling, max(due, earliest)) - now)

    @property
    def _floor(self) -> float:
        return self.poll_interval * EARLIEST_LOOK

    def _due_at(self, tracked: Tracked) -> float | None:
        """When a copy should be looked at for being done: its measured progress says so;
        before its first look, the shortest duration of our recent copies says so — or, with
        none seen yet, as soon as no start is in flight (one look for a burst of starts; a
        copy that ends in seconds, or fails at once, is not left unseen for a whole poll
        interval); None when nothing predicts it (the full poll looks anyway)."""
        at = tracked.track.due_at()
        if at is not None or tracked.looked:
            return at
        if not self._durations:
            return None if self._starting else tracked.started
        return tracked.started + min(self._durations)

    def _to_look_at(self) -> list[str]:
        """The copies to describe now: every pending one, when the poll interval is up or a
        copy is predicted done (none before their time).

        A look always names every pending copy: it is one batched call whatever it names,
        so it also serves as the full poll and the poll interval starts again from it. A
        look that named only the copies due would leave the full poll to come on its own
        clock: a second call for what the first could have told.
        """
        now = self.clock()
        full_at = (now if self._full_anchor is None else self._full_anchor) + self.poll_interval
        if now < full_at:
            if self._last_look is not None and now < self._last_look + self._floor:
                return []
            if not any(
                (at := self._due_at(tracked)) is not None and at <= now
                for tracked in self.active.values()
            ):
                return []
        self._full_anchor = self._last_look = now
        return list(self.active)

    async def poll_once(self, ids: Collection[str] | None = None) -> None:
        """One batched DescribeSnapshots of the pending copies `ids` (default: all); settle
        the finished ones."""
        full = ids is None or len(ids) >= len(self.active)
        ids = list(self.active) if ids is None else [i for i in ids if i in self.active]
        sent = self.clock()
        found = await inventory.describe_replicas(self.aws, self.region, ids)
        now = self.clock()
        seen_at = (sent + now) / 2  # when EC2 answered, as well as we know it
        for replica_id in ids:
            tracked = self.active.get(replica_id)
            if tracked is None:
                continue
            replica = found.get(replica_id)
            tracked.looked = True
            if replica is None:
                if now - tracked.started > NOT_FOUND_WINDOW:
                    await self._failed(tracked, "copy vanished from EC2")
            elif replica.completed:
                self._completed(tracked, now)
            elif replica.state == "error":
                await self._failed(tracked, replica.state_message or "copy ended in error")
            else:
                self._progressed(tracked, replica.progress, seen_at)
                self._check_promise(tracked, replica)
        if full:
            self._confirm_climb()
        self._changed()

    def _confirm_climb(self) -> None:
        """After a full poll: more of ours still pending than when AWS last refused means a
        climb held (the foreign copies are fewer now), so the next may follow at once. An
        accepted CopySnapshot alone proves nothing: one of ours may have ended unseen."""
        if self._probing and len(self.active) > self._refused_at:
            self._probing = False
            self._refused_at = len(self.active)
            self._probe_wait = 2 * self.poll_interval

    def _check_promise(self, tracked: Tracked, replica: Replica) -> None:
        """Count a time-based copy once when it is still pending past its promise."""
        if tracked.overdue or not replica.overdue(self.wall_clock()):
            return
        tracked.overdue = True
        self.metrics.copies_overdue.inc()
        log.warning(
            "copy.overdue",
            snapshot_id=tracked.replica_id,
            source_snapshot_id=tracked.source_id,
            completion_minutes=replica.completion_minutes,
            promised_by=format_time(replica.promised_by) if replica.promised_by else None,
            progress=replica.progress,
        )

    def _progressed(self, tracked: Tracked, progress: int, now: float) -> None:
        tracked.track.see(now, progress)
        if progress != tracked.progress:
            tracked.progress = progress
            self._emit("progress", tracked)

    def _completed(self, tracked: Tracked, now: float) -> None:
        del self.active[tracked.replica_id]
        self._remember_settled(tracked, now)
        tracked.progress = 100
        self.stats.completed += 1
        self.metrics.copies_completed.inc()
        if not tracked.adopted:
            self.metrics.copy_duration.observe(now - tracked.started)
            self._durations.append(now - tracked.started)
        if (
            self.limit < self.max_in_flight
            and not self._probing
            and now - self._last_refusal > self._probe_wait
        ):
            self.limit += 1
            self._probing = self.limit > self._refused_at
        self._emit("completed", tracked)
        log.info(
            "copy.completed",
            snapshot_id=tracked.replica_id,
            source_snapshot_id=tracked.source_id,
            seconds=round(now - tracked.started, 1),
            adopted=tracked.adopted,
        )

    async def _failed(self, tracked: Tracked, message: str) -> None:
        del self.active[tracked.replica_id]
        self._remember_settled(tracked, self.clock())
        self.stats.failed += 1
        self.metrics.copies_failed.labels(reason="error_state").inc()
        self._emit("failed", tracked)
        log.error(
            "copy.failed",
            snapshot_id=tracked.replica_id,
            source_snapshot_id=tracked.source_id,
            state_message=message,
        )
        # Decide before the delete awaits: meanwhile a cycle may enqueue, and the source must
        # already be queued again or given up, or it would be copied twice.
        if tracked.source is None:
            # Adopted: the next cycle's plan queues it again, with the planner's reasons.
            self.stats.adopted_failed += 1
            self._adopted_failures[tracked.source_id] = Unfinished(
                tracked.source_id,
                tracked.label,
                "failed",
                f"copy {tracked.replica_id} left by an earlier run ended in error: {message}",
                tracked.replica_id,
            )
        else:
            tries = self.attempts.get(tracked.source_id, 1)
            self._retry_or_give_up(CopyAction(tracked.source, "retry"), tries, message)
        await self.delete_replica(tracked.replica_id)

    async def delete_replica(self, snapshot_id: str) -> None:
        """Delete a failed copy so it neither blocks a slot nor hides the source from plans."""
        try:
            await self.aws.call("ec2", self.region, "DeleteSnapshot", SnapshotId=snapshot_id)
        except AwsError as error:
            if error.code != "InvalidSnapshot.NotFound":
                log.warning("copy.cleanup_failed", snapshot_id=snapshot_id, code=error.code)

    def unfinished(self) -> list[Unfinished]:
        """Every source asked of this copier that has no completed replica, and why.

        Given up, adopted copies that failed (until queued again), queued (never started,
        or waiting to retry) and pending: nothing the copier holds is left out, so a caller
        that reports these never reports protection that is not there.
        """
        items = [
            Unfinished(f.source_id, f.label, "failed", f"gave up: {f.reason}")
            for f in self.stats.failures.values()
        ]
        items += self._adopted_failures.values()
        items += [self._queued_item(q) for q in self.queue]
        items += [self._starting_item(q) for q in self._in_start.values()]
        items += [
            Unfinished(
                t.source_id,
                t.label,
                "pending",
                f"copy {t.replica_id} still pending at {t.progress}%",
                t.replica_id,
                t.progress,
            )
            for t in self.active.values()
        ]
        return items

    def _queued_item(self, queued: _Queued) -> Unfinished:
        source = queued.action.source
        why = queued.why_waiting or (
            f"not started: waiting for a free copy slot ({len(self.active)} of ours pending, "
            f"limit {self.limit})"
        )
        return Unfinished(
            source.snapshot_id,
            _label(source.volume.namespace, source.volume.pvc, source.backup),
            "queued",
            why,
        )

    def _starting_item(self, queued: _Queued) -> Unfinished:
        """A copy whose CopySnapshot AWS has not answered yet: still not started, as far as
        anyone knows; the last refusal, if any, says why it waited."""
        source = queued.action.source
        return Unfinished(
            source.snapshot_id,
            _label(source.volume.namespace, source.volume.pvc, source.backup),
            "queued",
            queued.why_waiting or "starting: CopySnapshot sent, AWS has not answered yet",
        )

    def time_out(self) -> list[Unfinished]:
        """At `snapd sync --timeout`: what is unfinished; queued and pending ones count and
        log as timed out (a copy that never started did not complete in time either)."""
        items = self.unfinished()
        for item in items:
            if item.state == "failed":
                continue
            self.metrics.copies_failed.labels(reason="timeout").inc()
            log.error(
                "copy.timed_out",
                source_snapshot_id=item.source_id,
                snapshot_id=item.replica_id,
                state=item.state,
                reason=item.reason,
            )
        return items

    def _emit(self, event: str, tracked: Tracked) -> None:
        if self.events is not None:
            self.events.copy_event(event, tracked)


async def copy_snapshot(
    aws: AwsClients,
    *,
    source_region: str,
    destination_region: str,
    snapshot_id: str,
    tags: Mapping[str, str],
    description: str,
    kms_key_id: str | None = None,
    completion_minutes: int | None = None,
) -> str:
    """One CopySnapshot, tags in TagSpecifications (never a later CreateTags, so a crash can
    never leave an untagged copy); returns the new snapshot id. Shared with restore."""
    params: dict[str, Any] = {
        "SourceRegion": source_region,
        "SourceSnapshotId": snapshot_id,
        "Description": description[:255],
        "TagSpecifications": [{"ResourceType": "snapshot", "Tags": to_tag_list(tags)}],
    }
    if kms_key_id:
        params |= {"Encrypted": True, "KmsKeyId": kms_key_id}
    if completion_minutes:
        params["CompletionDurationMinutes"] = completion_minutes
    response = await aws.call("ec2", destination_region, "CopySnapshot", **params)
    return str(response["SnapshotId"])


def _deferral_reason(error: AwsError, region: str) -> str:
    """Why a copy waits after a refusal that is worth trying again."""
    if error.code == "ResourceLimitExceeded":
        return (
            f"not started: every copy slot in {region} is taken (ResourceLimitExceeded: "
            "pending copies of other tools count against the account's 20)"
        )
    return f"not started: CopySnapshot refused for now ({error.code}: {error.message})"


def _label(namespace: str | None, pvc: str | None, backup: str | None) -> str:
    return f"{namespace or '-'}/{pvc or '-'} {backup or '-'}"
