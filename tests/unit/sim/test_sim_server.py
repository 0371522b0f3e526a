"""The simulated engine over HTTP: OpenAI shapes, streaming, auth, startup, and metrics that move under load."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp.test_utils import TestClient, TestServer
from dialogue_runtime.engine.config import SimProfile
from dialogue_runtime.sim.server import SimEngine, build_app
from dialogue_runtime.vllm_metrics import parse_engine_metrics

FAST = SimProfile(prefill_tokens_per_s=1e6, decode_tokens_per_s=5000.0, max_decode_tokens_per_s=1e6)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def make_client(engine: SimEngine, api_key: str | None = None) -> TestClient[object, object]:
    client: TestClient[object, object] = TestClient(TestServer(build_app(engine, api_key=api_key)))
    await client.start_server()
    return client


@pytest.fixture
async def fast_client() -> AsyncIterator[TestClient[object, object]]:
    client = await make_client(SimEngine(FAST, "chat-a", tick_s=0.005))
    yield client
    await client.close()


async def chat(client: TestClient[object, object], content: str, **extra: object) -> dict[str, object]:
    body = {"model": "chat-a", "messages": [{"role": "user", "content": content}], **extra}
    resp = await client.post("/v1/chat/completions", json=body)
    assert resp.status == 200, await resp.text()
    data: dict[str, object] = await resp.json()
    return data


async def test_chat_completion_has_openai_shape_and_deterministic_text(fast_client: TestClient[object, object]) -> None:
    first = await chat(fast_client, "What is the capital of France?")
    again = await chat(fast_client, "What is the capital of France?")
    assert first["object"] == "chat.completion" and first["model"] == "chat-a"
    choice = first["choices"][0]  # type: ignore[index]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] == "stop"
    assert choice["message"]["content"] == again["choices"][0]["message"]["content"]  # type: ignore[index]
    usage = first["usage"]
    assert usage["completion_tokens"] == len(choice["message"]["content"].split())  # type: ignore[index]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]  # type: ignore[index]


async def test_max_tokens_bounds_the_answer(fast_client: TestClient[object, object]) -> None:
    data = await chat(fast_client, "Tell me a long story", max_tokens=5)
    assert data["usage"]["completion_tokens"] == 5  # type: ignore[index]
    assert data["choices"][0]["finish_reason"] == "length"  # type: ignore[index]


async def test_later_turns_of_a_conversation_hit_the_prefix_cache(fast_client: TestClient[object, object]) -> None:
    history = [{"role": "system", "content": "You are a helpful assistant. " * 20}, {"role": "user", "content": "Hi"}]
    first = await chat(fast_client, "unused", messages=history)
    history += [first["choices"][0]["message"], {"role": "user", "content": "And then?"}]  # type: ignore[index]
    second = await chat(fast_client, "unused", messages=history)
    assert first["usage"]["prompt_tokens_details"]["cached_tokens"] == 0  # type: ignore[index]
    assert second["usage"]["prompt_tokens_details"]["cached_tokens"] >= 100  # type: ignore[index]


async def test_streamed_completion_sends_one_chunk_per_token_then_usage_and_done(
    fast_client: TestClient[object, object],
) -> None:
    body = {"prompt": "Once upon a time", "max_tokens": 7, "stream": True, "stream_options": {"include_usage": True}}
    resp = await fast_client.post("/v1/completions", json=body)
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    lines = [ln for ln in (await resp.text()).split("\n\n") if ln]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(ln.removeprefix("data: ")) for ln in lines[:-1]]
    texts = [c["choices"][0]["text"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"] is None]
    assert len(texts) == 7
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["usage"]["completion_tokens"] == 7 and chunks[-1]["choices"] == []


async def test_streamed_chat_starts_with_the_role(fast_client: TestClient[object, object]) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": 3}
    resp = await fast_client.post("/v1/chat/completions", json=body)
    lines = [ln for ln in (await resp.text()).split("\n\n") if ln]
    chunks = [json.loads(ln.removeprefix("data: ")) for ln in lines[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks).count(" ") == 3


async def test_models_and_errors_look_like_vllm(fast_client: TestClient[object, object]) -> None:
    models = await (await fast_client.get("/v1/models")).json()
    assert [m["id"] for m in models["data"]] == ["chat-a"]
    resp = await fast_client.post("/v1/chat/completions", json={"model": "other", "messages": [{"role": "user"}]})
    assert resp.status == 404
    assert "does not exist" in (await resp.json())["error"]["message"]
    resp = await fast_client.post("/v1/completions", json={"prompt": "x " * 2040, "max_tokens": 100})
    assert resp.status == 400
    assert "maximum context length is 2048" in (await resp.json())["error"]["message"]


async def test_api_key_guards_v1_but_not_health_or_metrics() -> None:
    client = await make_client(SimEngine(FAST, "chat-a"), api_key="s3cret")
    try:
        assert (await client.get("/v1/models")).status == 401
        ok = await client.get("/v1/models", headers={"Authorization": "Bearer s3cret"})
        assert ok.status == 200
        assert (await client.get("/health")).status == 200
        assert (await client.get("/metrics")).status == 200
    finally:
        await client.close()


async def test_health_is_503_until_startup_has_passed() -> None:
    clock = FakeClock()
    client = await make_client(SimEngine(SimProfile(startup_s=30), "chat-a", clock=clock))
    try:
        assert (await client.get("/health")).status == 503
        assert (await client.get("/v1/models")).status == 503
        clock.now += 30
        assert (await client.get("/health")).status == 200
    finally:
        await client.close()


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    for _ in range(int(timeout_s / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_metrics_move_like_vllms_under_load() -> None:
    clock = FakeClock()
    profile = SimProfile(max_batch=2, decode_tokens_per_s=10.0, prefill_tokens_per_s=1000.0, kv_cache_tokens=4096)
    engine = SimEngine(profile, "chat-a", clock=clock, tick_s=0.005)
    client = await make_client(engine)
    try:
        body = {"prompt": "word " * 100, "max_tokens": 20}
        tasks = [asyncio.create_task(client.post("/v1/completions", json=body)) for _ in range(6)]
        await wait_until(lambda: engine.model.num_running + engine.model.num_waiting == 6)
        loaded = parse_engine_metrics(await (await client.get("/metrics")).text(), model_name="chat-a")
        assert loaded.num_requests_running == 2
        assert loaded.num_requests_waiting == 4
        assert loaded.kv_cache_usage_ratio is not None and loaded.kv_cache_usage_ratio > 0
        for _ in range(200):  # 20 simulated seconds in steps
            clock.now += 0.1
            await asyncio.sleep(0.002)
            if all(t.done() for t in tasks):
                break
        responses = [await t for t in tasks]
        assert [r.status for r in responses] == [200] * 6
        after = parse_engine_metrics(await (await client.get("/metrics")).text(), model_name="chat-a")
        assert after.num_requests_running == 0 and after.num_requests_waiting == 0
        assert after.kv_cache_usage_ratio == 0
        assert after.request_success_total == 6
        assert after.generation_tokens_total == 120
        assert after.prompt_tokens_total == 600
        assert after.time_to_first_token_s.count == 6
        assert after.prefix_cache_hits_total and after.prefix_cache_hits_total > 0  # same prompt six times
        queue_p90 = after.request_queue_time_s.quantile(0.9)
        assert queue_p90 is not None and queue_p90 > 1.0  # the last pairs waited for the first to finish
    finally:
        await client.close()


async def test_a_client_that_goes_away_aborts_its_request() -> None:
    clock = FakeClock()
    engine = SimEngine(SimProfile(decode_tokens_per_s=1.0), "chat-a", clock=clock, tick_s=0.005)
    client = await make_client(engine)
    try:
        task = asyncio.create_task(client.post("/v1/completions", json={"prompt": "hi", "max_tokens": 50}))
        await wait_until(lambda: engine.model.num_running == 1)
        task.cancel()
        await wait_until(lambda: engine.model.num_running == 0)
        metrics = parse_engine_metrics(await (await client.get("/metrics")).text())
        assert metrics.request_success_total == 1  # counted under finished_reason="abort"
        assert 'finished_reason="abort"' in await (await client.get("/metrics")).text()
    finally:
        await client.close()


async def test_a_scrape_sees_kv_usage_grow_during_a_non_streamed_request() -> None:
    clock = FakeClock()
    profile = SimProfile(decode_tokens_per_s=10.0, prefill_tokens_per_s=1e5, kv_cache_tokens=1600)
    engine = SimEngine(profile, "chat-a", clock=clock)
    client = await make_client(engine)
    try:
        task = asyncio.create_task(client.post("/v1/completions", json={"prompt": "word " * 160, "max_tokens": 300}))
        await wait_until(lambda: engine.model.num_running == 1)
        clock.now += 1.0
        early = parse_engine_metrics(await (await client.get("/metrics")).text()).kv_cache_usage_ratio
        clock.now += 10.0
        later = parse_engine_metrics(await (await client.get("/metrics")).text()).kv_cache_usage_ratio
        assert early is not None and later is not None
        assert early == pytest.approx(11 / 100) and later == pytest.approx(17 / 100)  # 160+10 and 160+110 tokens
        task.cancel()
    finally:
        await client.close()
