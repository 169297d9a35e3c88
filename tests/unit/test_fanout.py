"""each_bounded: every item once, never more than `limit` at once, failures propagate."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from snapd.fanout import each_bounded


class Gauge:
    """Counts calls in flight and the most seen at once; each call yields twice."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0
        self.started: list[int] = []
        self.done: list[int] = []

    async def work(self, item: int) -> None:
        self.started.append(item)
        self.now += 1
        self.most = max(self.most, self.now)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        self.now -= 1
        self.done.append(item)


@pytest.mark.parametrize(("items", "limit", "most"), [(10, 4, 4), (3, 4, 3), (5, 1, 1)])
def test_every_item_runs_once_and_never_more_than_the_limit_at_once(
    items: int, limit: int, most: int
) -> None:
    gauge = Gauge()
    asyncio.run(each_bounded(range(items), gauge.work, limit=limit))
    assert sorted(gauge.done) == list(range(items))
    assert gauge.started == list(range(items))  # in the order given
    assert gauge.most == most


def test_a_generator_is_consumed_lazily_by_the_workers() -> None:
    """No task per item: the workers pull from the iterator as they free up."""
    pulled: list[int] = []
    gauge = Gauge()

    def items() -> Iterator[int]:
        for i in range(6):
            pulled.append(i)
            yield i

    async def check() -> None:
        task = asyncio.create_task(each_bounded(items(), gauge.work, limit=2))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert len(pulled) == 2
        await task

    asyncio.run(check())
    assert pulled == list(range(6))


def test_no_items_returns_at_once() -> None:
    gauge = Gauge()
    asyncio.run(each_bounded([], gauge.work, limit=4))
    assert gauge.done == []


def test_a_raising_call_cancels_the_rest_and_propagates() -> None:
    finished: list[int] = []

    async def work(item: int) -> None:
        if item == 1:
            raise RuntimeError("boom")
        if item == 0:
            await asyncio.Event().wait()  # only the failure of item 1 ends this (cancelled)
        finished.append(item)

    with pytest.raises(ExceptionGroup) as raised:
        asyncio.run(each_bounded(range(4), work, limit=2))
    assert raised.group_contains(RuntimeError, match="boom")
    assert finished == []  # item 0 cancelled; items 2 and 3 never started


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        asyncio.run(each_bounded([1], Gauge().work, limit=0))
