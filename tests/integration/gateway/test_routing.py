"""Session-affinity routing with bounded load, agreement between gateway replicas, and failover under load.

Real processes: three simulated engines on loopback addresses and the real gateway process in front of them.
"""

from __future__ import annotations

import asyncio
import collections
import math
import re
import time

import aiohttp
import pytest
from dialogue_runtime.gateway.balancer import HashRing, replica_id

from tests.integration.gateway.conftest import AUTH, Procs, chat_body

pytestmark = pytest.mark.timeout(120)

EPSILON = 0.25
IN_FLIGHT_RE = re.compile(r'dialogue_gateway_endpoint_in_flight_requests\{[^}]*replica="(\w+)"[^}]*\} ([0-9.]+)')


@pytest.fixture(scope="module")
def cluster3(procs: Procs) -> tuple[list[str], str]:
    # Slow decode so that many requests overlap on each replica.
    sims = [procs.sim(extra=("--decode-tokens-per-s", "40")) for _ in range(3)]
    urls = [s.url for s in sims]
    gateway = procs.gateway(urls)
    return urls, gateway.url


def balanced_keys(urls: list[str], per_replica: int) -> list[str]:
    """Conversation keys whose home replicas are spread evenly, as thousands of real conversations are."""
    ring = HashRing(urls)
    chosen: dict[str, list[str]] = {u: [] for u in urls}
    for i in range(10_000):
        key = f"conv-{i}"
        home = ring.walk(f"h:{key}")[0]
        if len(chosen[home]) < per_replica:
            chosen[home].append(key)
        if all(len(v) == per_replica for v in chosen.values()):
            break
    # Interleaved, so that conversations of every replica start alike.
    return [k for group in zip(*chosen.values(), strict=True) for k in group]


async def test_conversations_stick_to_a_replica_within_the_load_bound(cluster3: tuple[list[str], str]) -> None:
    urls, gateway = cluster3
    keys = balanced_keys(urls, per_replica=12)
    turns = 6
    seen: dict[str, list[str]] = collections.defaultdict(list)
    samples: list[dict[str, float]] = []
    done = asyncio.Event()

    async def conversation(session: aiohttp.ClientSession, key: str, start_s: float) -> None:
        await asyncio.sleep(start_s)  # conversations begin over a second or so, not in the same millisecond
        messages = [{"role": "user", "content": f"Hello from {key}"}]
        for _ in range(turns):
            async with session.post(
                f"{gateway}/v1/chat/completions", json=chat_body(messages), headers={**AUTH, "X-Session-ID": key}
            ) as response:
                assert response.status == 200, await response.text()
                seen[key].append(response.headers["X-Dialogue-Replica"])
                answer = await response.json()
            messages += [answer["choices"][0]["message"], {"role": "user", "content": "Go on."}]

    async def sample(session: aiohttp.ClientSession) -> None:
        while not done.is_set():
            async with session.get(f"{gateway}/metrics") as response:
                text = await response.text()
            samples.append({m.group(1): float(m.group(2)) for m in IN_FLIGHT_RE.finditer(text)})
            await asyncio.sleep(0.05)

    async with aiohttp.ClientSession() as session:
        sampler = asyncio.create_task(sample(session))
        await asyncio.gather(*(conversation(session, k, i * 0.03) for i, k in enumerate(keys)))
        done.set()
        await sampler

    homes = {replica_id(u) for u in urls}
    stuck = sum(collections.Counter(v).most_common(1)[0][1] for v in seen.values())
    total = sum(len(v) for v in seen.values())
    assert stuck / total >= 0.95, f"only {stuck}/{total} turns reached their conversation's usual replica"
    assert {r for v in seen.values() for r in v} == homes  # every replica served

    busy = [s for s in samples if sum(s.values()) >= 6]
    assert len(busy) >= 5, f"too few loaded samples to judge the bound: {samples[:5]}"
    within = [s for s in busy if max(s.values()) <= math.ceil((1 + EPSILON) * (sum(s.values()) + 1) / 3)]
    assert len(within) / len(busy) >= 0.95, f"busiest replica over the bound in {len(busy) - len(within)} samples"


async def test_two_gateway_replicas_route_a_conversation_identically(
    procs: Procs, cluster3: tuple[list[str], str]
) -> None:
    urls, first = cluster3
    second = procs.gateway(list(reversed(urls))).url
    async with aiohttp.ClientSession() as session:
        for i in range(20):
            replicas = set()
            for gateway in (first, second):
                body = chat_body(
                    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"Q{i}"}], max_tokens=2
                )
                async with session.post(f"{gateway}/v1/chat/completions", json=body, headers=AUTH) as response:
                    assert response.status == 200
                    replicas.add(response.headers["X-Dialogue-Replica"])
            assert len(replicas) == 1, f"conversation {i} went to different replicas through the two gateways"


async def test_killed_upstream_fails_no_request_that_had_not_started_streaming(procs: Procs) -> None:
    sims = [procs.sim(extra=("--decode-tokens-per-s", "200")) for _ in range(3)]
    gateway = procs.gateway([s.url for s in sims]).url
    failures: list[str] = []
    midstream = 0
    completed = 0
    deadline = time.monotonic() + 6.0

    async def client(session: aiohttp.ClientSession, index: int) -> None:
        nonlocal midstream, completed
        turn = 0
        while time.monotonic() < deadline:
            turn += 1
            stream = index % 2 == 0
            body = chat_body([{"role": "user", "content": f"client {index} turn {turn}"}], max_tokens=20, stream=stream)
            started = False
            try:
                async with session.post(f"{gateway}/v1/chat/completions", json=body, headers=AUTH) as response:
                    if response.status != 200:
                        failures.append(f"HTTP {response.status}: {await response.text()}")
                        continue
                    if not stream:
                        await response.json()
                    else:
                        text = b""
                        async for chunk in response.content.iter_any():
                            started = True
                            text += chunk
                        if b"upstream_midstream" in text:
                            midstream += 1
                            continue
                        assert text.rstrip().endswith(b"data: [DONE]"), text[-200:]
                    completed += 1
            except aiohttp.ClientError as exc:
                if started:
                    midstream += 1
                else:
                    failures.append(f"{type(exc).__name__} before any byte: {exc}")

    async def killer() -> None:
        await asyncio.sleep(2.0)
        sims[1].popen.kill()  # SIGKILL: no graceful drain, connections reset

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(killer(), *(client(session, i) for i in range(12)))

    assert failures == [], failures[:5]
    assert completed > 20
    assert midstream <= 12  # only streams that were under way on the killed replica may break off


async def test_client_leaving_mid_stream_frees_its_slot(cluster3: tuple[list[str], str]) -> None:
    _, gateway = cluster3
    in_flight_re = re.compile(r"dialogue_gateway_in_flight_requests\{[^}]*\} ([0-9.]+)")
    body = chat_body([{"role": "user", "content": "a long story"}], max_tokens=1500, stream=True)  # ~37 s
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{gateway}/v1/chat/completions", json=body, headers=AUTH) as response:
            assert response.status == 200
            await response.content.readany()  # the first chunk, then the client hangs up
        for _ in range(100):
            async with session.get(f"{gateway}/metrics") as metrics:
                values = [float(v) for v in in_flight_re.findall(await metrics.text())]
            if values and sum(values) == 0:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"the abandoned stream still counts as in flight: {values}")
