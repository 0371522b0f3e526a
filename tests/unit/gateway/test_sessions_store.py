"""The in-memory session store (TTL, per-session lock), the SSE reply collector and metric label cleanup."""

import asyncio

from dialogue_runtime.gateway.metrics import GatewayMetrics
from dialogue_runtime.gateway.sessions import MemorySessionStore, Session, new_session_id
from dialogue_runtime.gateway.sessions_api import SseText


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


async def test_sessions_expire_after_the_ttl() -> None:
    clock = FakeClock()
    store = MemorySessionStore(ttl_s=60, clock=clock)
    session = Session(id=new_session_id(), model="m", owner="anonymous", system="s")
    await store.save(session)
    clock.now_s += 59
    fetched = await store.get(session.id)
    assert fetched is not None and fetched.prompt_messages() == [{"role": "system", "content": "s"}]
    clock.now_s += 2
    assert await store.get(session.id) is None
    await store.save(session)
    clock.now_s += 61
    assert store.sweep() == 1
    assert await store.delete(session.id) is False


async def test_lock_serializes_one_session_not_others() -> None:
    store = MemorySessionStore(ttl_s=60)
    entered, release = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with store.lock("a"):
            entered.set()
            await release.wait()

    async def enter(session_id: str) -> None:
        async with store.lock(session_id):
            return

    holder = asyncio.create_task(first())
    await entered.wait()
    second = asyncio.create_task(enter("a"))
    await asyncio.wait_for(enter("b"), timeout=5)  # another session is not blocked
    assert not second.done()
    release.set()
    await asyncio.wait_for(asyncio.gather(holder, second), timeout=5)


def test_sse_collector_joins_deltas_across_chunk_boundaries() -> None:
    collector = SseText()
    stream = (
        b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n'
        b'data: {"choices":[{"delta":{"content":"Hel"}}]}\n\ndata: {"choices":[{"delta":{"content":"lo"}}]}\n\n'
        b'data: {"choices":[],"usage":{"completion_tokens":2}}\n\ndata: [DONE]\n\n'
    )
    for i in range(0, len(stream), 7):
        collector.feed(stream[i : i + 7])
    assert collector.text == "Hello"
    assert collector.usage == {"completion_tokens": 2}


def test_forget_model_removes_its_series_only() -> None:
    metrics = GatewayMetrics()
    metrics.requests.labels("ns", "gone", "base", "200").inc()
    metrics.held.labels("ns", "gone").set(2)
    metrics.requests.labels("ns", "kept", "base", "200").inc()
    metrics.set_endpoints("ns", "gone", {"base": 1}, {"r1"})
    metrics.forget_model("ns", "gone")
    text = metrics.exposition().decode()
    assert 'model="gone"' not in text
    assert 'model="kept"' in text
