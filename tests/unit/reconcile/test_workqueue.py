"""The work queue processes each model once at a time and never loses a request made during processing."""

from __future__ import annotations

import asyncio

from dialogue_operator.workqueue import WorkQueue


async def test_duplicates_collapse_and_requeue_after_done() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    queue.add("a")
    queue.add("b")
    assert len(queue) == 2
    key = await queue.get()
    assert key == "a"
    queue.add("a")  # changed while being reconciled: must run again, but not concurrently
    assert await queue.get() == "b"
    queue.done("b")
    assert queue._queue.empty()  # "a" is not handed out while still active
    queue.done("a")
    assert await asyncio.wait_for(queue.get(), timeout=1) == "a"
    queue.done("a")
    assert len(queue) == 0


async def test_add_after_delays_a_retry() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add_after("a", 0.01)
    assert len(queue) == 0
    assert await asyncio.wait_for(queue.get(), timeout=1) == "a"
