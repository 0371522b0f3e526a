"""Conversation memory through the sessions API: Redis-backed across a gateway restart, trimmed, serialized."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.integration.gateway.conftest import AUTH, MODEL, Procs

pytestmark = pytest.mark.timeout(120)

BUDGET = 120
API = "/v1/dialogue/sessions"


async def post(session: aiohttp.ClientSession, url: str, body: dict[str, object]) -> dict[str, object]:
    async with session.post(url, json=body, headers=AUTH) as response:
        assert response.status in (200, 201), await response.text()
        return dict(await response.json())


@pytest.mark.redis
async def test_history_survives_a_gateway_restart_with_redis_and_is_trimmed(procs: Procs) -> None:
    redis = procs.redis()
    sim = procs.sim()
    extra = ("--redis-url", redis.url, "--static-history-budget", f"{MODEL}={BUDGET}")
    gateway = procs.gateway([sim.url], extra=extra)
    async with aiohttp.ClientSession() as client:
        created = await post(client, gateway.url + API, {"model": MODEL, "system": "You are terse."})
        sid = str(created["id"])
        for turn in range(8):
            reply = await post(
                client,
                f"{gateway.url}{API}/{sid}/messages",
                {"content": f"turn {turn}: " + "tell me more " * 5, "max_tokens": 8},
            )
            assert reply["message"]["content"]  # type: ignore[index]
            assert int(reply["history_tokens"]) <= BUDGET or reply["history_messages"] == 2  # type: ignore[arg-type]
        async with client.get(f"{gateway.url}{API}/{sid}", headers=AUTH) as response:
            before = await response.json()
        assert before["system"] == "You are terse."
        assert before["history_tokens"] <= BUDGET
        assert before["messages"][-2]["content"].startswith("turn 7")  # newest kept, oldest dropped
        assert not any(m["content"].startswith("turn 0") for m in before["messages"])
        assert [m["role"] for m in before["messages"]] == ["user", "assistant"] * (len(before["messages"]) // 2)

        gateway.stop()
        restarted = procs.gateway([sim.url], extra=extra, port=int(gateway.url.rsplit(":", 1)[1]))
        async with client.get(f"{restarted.url}{API}/{sid}", headers=AUTH) as response:
            assert response.status == 200
            after = await response.json()
        assert after["messages"] == before["messages"]
        reply = await post(client, f"{restarted.url}{API}/{sid}/messages", {"content": "still there?", "max_tokens": 8})
        assert reply["history_tokens"] <= BUDGET  # type: ignore[operator]

        async with client.delete(f"{restarted.url}{API}/{sid}", headers=AUTH) as response:
            assert response.status == 200
        async with client.get(f"{restarted.url}{API}/{sid}", headers=AUTH) as response:
            assert response.status == 404
            assert (await response.json())["error"]["code"] == "session_not_found"


@pytest.mark.redis
async def test_concurrent_messages_on_one_session_are_serialized_across_two_gateways(procs: Procs) -> None:
    redis = procs.redis()
    sim = procs.sim(extra=("--decode-tokens-per-s", "100"))
    gateways = [procs.gateway([sim.url], extra=("--redis-url", redis.url)).url for _ in range(2)]
    async with aiohttp.ClientSession() as client:
        sid = str((await post(client, gateways[0] + API, {"model": MODEL}))["id"])
        texts = [f"message {i}" for i in range(6)]
        await asyncio.gather(
            *(
                post(client, f"{gateways[i % 2]}{API}/{sid}/messages", {"content": t, "max_tokens": 8})
                for i, t in enumerate(texts)
            )
        )
        async with client.get(f"{gateways[1]}{API}/{sid}", headers=AUTH) as response:
            history = (await response.json())["messages"]
    assert [m["role"] for m in history] == ["user", "assistant"] * 6  # never two users in a row
    assert sorted(m["content"] for m in history if m["role"] == "user") == texts


async def test_streamed_session_reply_is_kept_and_other_keys_cannot_read_it(procs: Procs) -> None:
    sim = procs.sim()
    gateway = procs.gateway([sim.url], extra=("--static-api-key", f"{MODEL}=sk-gateway-test,sk-other")).url
    async with aiohttp.ClientSession() as client:
        sid = str((await post(client, gateway + API, {"model": MODEL}))["id"])
        async with client.post(
            f"{gateway}{API}/{sid}/messages",
            json={"content": "stream please", "stream": True, "max_tokens": 8},
            headers=AUTH,
        ) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
            streamed = await response.text()
        assert streamed.rstrip().endswith("data: [DONE]")
        async with client.get(f"{gateway}{API}/{sid}", headers=AUTH) as response:
            history = (await response.json())["messages"]
        assert [m["role"] for m in history] == ["user", "assistant"]
        assert history[1]["content"] and history[1]["content"].split()[0] in streamed
        async with client.get(f"{gateway}{API}/{sid}", headers={"Authorization": "Bearer sk-other"}) as response:
            assert response.status == 404
