"""Bounded fan-out: run one coroutine per item, at most `limit` at once, all to the end.

The mutating EC2 calls a pass makes one per replica (DeleteSnapshot in the pruner,
LockSnapshot in the lock pass) draw on a token bucket that refills at a few calls a second,
so they go out a few at a time rather than all at once or one by one. Each call records
its own outcome (the passes report failures per replica, they never raise them), so this
helper only bounds and waits; an exception a call does raise still cancels the others and
propagates, as a TaskGroup does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


async def each_bounded(
    items: Iterable[T], work: Callable[[T], Awaitable[None]], *, limit: int
) -> None:
    """`work(item)` for every item, at most `limit` running at once; returns when all ended."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    # `limit` workers share one iterator: no more tasks than calls in flight, however many
    # items (a retention pass may delete thousands), and items start in their given order.
    pending = iter(items)

    async def worker() -> None:
        for item in pending:
            await work(item)

    async with asyncio.TaskGroup() as group:
        for _ in range(limit):
            group.create_task(worker())
