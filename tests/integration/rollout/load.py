"""A steady streamed chat load through the real gateway for the rollout tests: what users see during a rollout."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp


@dataclass(frozen=True)
class Answer:
    """One request's outcome: the model asked, the HTTP status (0: no response), the variant that answered
    (`X-Dialogue-Variant`), and when it ended (time.monotonic())."""

    model: str
    status: int
    variant: str
    at_s: float


class ChatLoad:
    """Closed-loop streamed chats (TTFT is measured on streams) through the gateway until stopped:
    `clients_per_model` clients per model, each pausing `pause_s` between its requests."""

    def __init__(
        self,
        gateway: str,
        models: list[str],
        *,
        clients_per_model: int = 1,
        pause_s: float = 0.05,
        log: Callable[[str], None] = print,
    ) -> None:
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._gateway, self._models, self._log = gateway, models, log
        self._clients, self._pause_s = clients_per_model, pause_s
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()

    async def _one(self, session: aiohttp.ClientSession, model: str, conv: str) -> Answer:
        body = {"model": model, "stream": True, "max_tokens": 8, "messages": [{"role": "user", "content": conv}]}
        try:
            async with session.post(f"{self._gateway}/v1/chat/completions", json=body) as resp:
                await resp.read()
                return Answer(model, resp.status, resp.headers.get("X-Dialogue-Variant", ""), time.monotonic())
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._log(f"request {conv} to {model} failed without a response: {type(exc).__name__}: {exc}")
            return Answer(model, 0, "", time.monotonic())

    async def _run(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:

            async def client(model: str, i: int) -> None:
                n = 0
                while not self._stop.is_set():
                    self.answers.append(await self._one(session, model, f"hello {model} {i}-{n}"))
                    n += 1
                    await asyncio.sleep(self._pause_s)

            await asyncio.gather(*(client(m, i) for m in self._models for i in range(self._clients)))

    def since(self, index: int) -> list[Answer]:
        """The answers after the first `index` (take `len(load.answers)` as a mark)."""
        return list(self.answers[index:])

    def stop(self) -> list[Answer]:
        """Stops the clients, waits for their last requests, and returns every answer."""
        self._stop.set()
        self._thread.join(150)
        assert not self._thread.is_alive(), "the load's requests did not finish"
        return list(self.answers)


def statuses(answers: list[Answer], model: str | None = None) -> list[int]:
    """The statuses of `answers` (to `model` only, when given)."""
    return [a.status for a in answers if model is None or a.model == model]
