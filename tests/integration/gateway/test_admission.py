"""Holding at zero and refusing bad requests: real gateway and simulated-engine processes."""

from __future__ import annotations

import asyncio
import json
import re
import uuid

import aiohttp
import pytest

from tests.integration.gateway.conftest import AUTH, KEY, MODEL, Procs, chat_body, free_port, loopback_host

pytestmark = pytest.mark.timeout(120)

HELD_RE = re.compile(r'dialogue_gateway_held_requests\{model="smol",namespace=""\} ([0-9.]+)')


async def test_requests_at_zero_are_held_and_answered_once_a_replica_is_ready(procs: Procs) -> None:
    host = loopback_host()
    port = free_port(host)
    gateway = procs.gateway([f"http://{host}:{port}"]).url  # nothing listens there yet: zero replicas
    async with aiohttp.ClientSession() as session:

        async def ask(i: int) -> tuple[int, str]:
            body = chat_body([{"role": "user", "content": f"held {i}"}], stream=i % 2 == 0)
            async with session.post(f"{gateway}/v1/chat/completions", json=body, headers=AUTH) as response:
                return response.status, await response.text()

        requests = [asyncio.create_task(ask(i)) for i in range(8)]
        held = 0.0
        for _ in range(300):
            async with session.get(f"{gateway}/metrics") as response:
                match = HELD_RE.search(await response.text())
            held = float(match.group(1)) if match else 0.0
            if held == 8:
                break
            await asyncio.sleep(0.05)
        assert held == 8, "the held requests are not exported"
        assert not any(r.done() for r in requests)
        procs.sim(host=host, port=port, wait=False)  # a replica starts
        results = await asyncio.gather(*requests)
    assert [status for status, _ in results] == [200] * 8, results
    assert all("data: [DONE]" in text for i, (_, text) in enumerate(results) if i % 2 == 0)


async def test_hold_times_out_with_503_and_retry_after(procs: Procs) -> None:
    host = loopback_host()
    gateway = procs.gateway([f"http://{host}:{free_port(host)}"], extra=("--hold-timeout-s", "0.5")).url
    async with aiohttp.ClientSession() as session:
        body = chat_body([{"role": "user", "content": "anyone?"}])
        async with session.post(f"{gateway}/v1/chat/completions", json=body, headers=AUTH) as response:
            assert response.status == 503
            assert response.headers["Retry-After"].isdigit()
            assert (await response.json())["error"]["code"] == "no_ready_replica"


async def test_hold_queue_is_bounded(procs: Procs) -> None:
    host = loopback_host()
    gateway = procs.gateway([f"http://{host}:{free_port(host)}"], extra=("--max-held-per-model", "2")).url
    async with aiohttp.ClientSession() as session:

        async def ask() -> tuple[int, dict[str, object]]:
            body = chat_body([{"role": "user", "content": "anyone?"}])
            async with session.post(f"{gateway}/v1/chat/completions", json=body, headers=AUTH) as response:
                return response.status, await response.json()

        held = [asyncio.create_task(ask()) for _ in range(2)]
        for _ in range(300):
            async with session.get(f"{gateway}/metrics") as response:
                match = HELD_RE.search(await response.text())
            if match and float(match.group(1)) == 2:
                break
            await asyncio.sleep(0.05)
        status, body = await ask()  # the third finds the queue full: refused at once
        assert status == 503
        assert body["error"]["code"] == "hold_queue_full"  # type: ignore[index]
        assert not any(t.done() for t in held)
        for task in held:
            task.cancel()


@pytest.fixture(scope="module")
def strict_gateway(procs: Procs) -> str:
    sim = procs.sim()
    limits = ("--max-body-bytes", "20000", "--max-messages", "4", "--max-tokens-cap", "64")
    return procs.gateway(
        [sim.url], extra=(*limits, "--requests-per-minute", "3", "--static-api-key", f"{MODEL}={KEY},sk-limited")
    ).url


def message(text: str = "hi") -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


CASES = [
    ("malformed JSON", b'{"model": "smol", "messages": [', AUTH, 400, "invalid_json"),
    ("unknown model", {"model": "gpt-17", "messages": message()}, AUTH, 404, "model_not_found"),
    ("missing key", chat_body(message()), {}, 401, "missing_api_key"),
    ("wrong key", chat_body(message()), {"Authorization": "Bearer sk-wrong"}, 401, "invalid_api_key"),
    ("oversized body", chat_body(message("x" * 30000)), AUTH, 413, "body_too_large"),
    ("too many messages", chat_body(message() * 5), AUTH, 400, "too_many_messages"),
    ("max_tokens over cap", chat_body(message(), max_tokens=65), AUTH, 400, "max_tokens_over_cap"),
    ("no messages", {"model": MODEL}, AUTH, 400, "invalid_messages"),
    ("not an object", b"[1, 2]", AUTH, 400, "invalid_json"),
    # both answered 500 "Internal error in the gateway" before (the surrogate when the body was encoded upstream)
    ("lone surrogate", b'{"model": "smol", "messages": [{"role": "user", "content": "\\ud800"}]}', AUTH, 400,
     "invalid_json"),
    ("5,000-deep nesting", b'{"model": "smol", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}", AUTH, 400, "invalid_json"),
    ("65-deep nesting", b'{"model": "smol", "x": ' + b"[" * 65 + b"]" * 65 + b"}", AUTH, 400, "invalid_json"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "body", "headers", "status", "code"), CASES, ids=[c[0] for c in CASES])
async def test_bad_request_gets_its_4xx_in_openai_format(
    strict_gateway: str, what: str, body: object, headers: dict[str, str], status: int, code: str
) -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{strict_gateway}/v1/chat/completions", data=data, headers=headers) as response,
    ):
        assert response.status == status, (what, await response.text())
        error = (await response.json())["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    assert KEY not in error["message"] and "sk-wrong" not in error["message"]


async def test_an_open_model_limit_holds_against_invented_tokens(procs: Procs) -> None:
    """On a model without keys a token proves nothing: 6 requests with 6 fresh tokens share one bucket of 3."""
    sim = procs.sim(extra=("--served-model-name", "open"))
    extra = ("--static-model", f"open={sim.url}", "--requests-per-minute", "3")
    gateway = procs.gateway([sim.url], extra=extra).url
    statuses = []
    async with aiohttp.ClientSession() as session:
        for i in range(6):
            body = {**chat_body(message()), "model": "open"}
            headers = {"Authorization": f"Bearer sk-invented-{i}-{uuid.uuid4().hex}"}
            async with session.post(f"{gateway}/v1/chat/completions", json=body, headers=headers) as response:
                statuses.append(response.status)
    assert statuses == [200, 200, 200, 429, 429, 429], statuses


async def test_key_over_its_rate_limit_gets_429_and_others_are_unaffected(strict_gateway: str) -> None:
    limited = {"Authorization": "Bearer sk-limited"}
    statuses = []
    async with aiohttp.ClientSession() as session:
        for _ in range(4):
            async with session.post(
                f"{strict_gateway}/v1/chat/completions", json=chat_body(message()), headers=limited
            ) as response:
                statuses.append(response.status)
                body = await response.json()
        assert statuses == [200, 200, 200, 429]
        assert body["error"]["type"] == "rate_limit_error"
        async with session.post(
            f"{strict_gateway}/v1/chat/completions", json=chat_body(message()), headers=AUTH
        ) as response:
            assert response.status == 200
        async with session.get(f"{strict_gateway}/metrics") as response:
            metrics = await response.text()
    assert 'code="5' not in metrics  # never a 5xx
    assert "sk-limited" not in metrics and KEY not in metrics


async def test_models_lists_what_the_key_may_use_and_completions_work(strict_gateway: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{strict_gateway}/v1/models", headers=AUTH) as response:
            assert [m["id"] for m in (await response.json())["data"]] == [MODEL]
        async with session.get(f"{strict_gateway}/v1/models") as response:
            assert (await response.json())["data"] == []
        body = {"model": MODEL, "prompt": "The capital of France is", "max_tokens": 4}
        async with session.post(f"{strict_gateway}/v1/completions", json=body, headers=AUTH) as response:
            assert response.status == 200
            assert (await response.json())["choices"][0]["text"]
