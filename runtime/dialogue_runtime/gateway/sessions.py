"""Conversation memory stores: in-memory (one gateway replica) and Redis (several), with a TTL and a lock per session.

A session is one JSON document: id, model reference, owner (the key id that created it), system prompt, messages
(already trimmed to the model's history budget) and timestamps. `lock(id)` serializes the messages of one
session: an asyncio lock in memory, a Redis lock (SET NX with expiry, released by token) across replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import redis.asyncio as redis_asyncio
from redis.exceptions import LockError

from dialogue_runtime.gateway.errors import Unavailable

KEY_PREFIX = "dialogue:session:"
LOCK_PREFIX = "dialogue:session-lock:"


@dataclass
class Session:
    """One conversation kept by the gateway."""

    id: str
    model: str  # registry reference (namespace/name)
    owner: str  # key id of the creator ("anonymous" for open models)
    system: str | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    created_s: float = 0.0
    updated_s: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Session:
        return cls(**json.loads(text))

    def prompt_messages(self) -> list[dict[str, Any]]:
        """System prompt (if any) followed by the kept history."""
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.messages


def new_session_id() -> str:
    return "sess_" + secrets.token_urlsafe(18)


class SessionStore(Protocol):
    async def get(self, session_id: str) -> Session | None: ...
    async def save(self, session: Session) -> None: ...
    async def delete(self, session_id: str) -> bool: ...
    def lock(self, session_id: str) -> contextlib.AbstractAsyncContextManager[None]: ...
    async def close(self) -> None: ...


class MemorySessionStore:
    """Sessions in this process; expired ones are dropped on access and by `sweep()`."""

    def __init__(self, ttl_s: int, clock: Callable[[], float] = time.time) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._data: dict[str, tuple[float, str]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, session_id: str) -> Session | None:
        entry = self._data.get(session_id)
        if entry is None:
            return None
        if entry[0] <= self.clock():
            self._data.pop(session_id, None)
            return None
        return Session.from_json(entry[1])

    async def save(self, session: Session) -> None:
        self._data[session.id] = (self.clock() + self.ttl_s, session.to_json())

    async def delete(self, session_id: str) -> bool:
        self._locks.pop(session_id, None)
        return self._data.pop(session_id, None) is not None

    @contextlib.asynccontextmanager
    async def lock(self, session_id: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(session_id, asyncio.Lock())
        async with lock:
            yield

    def sweep(self) -> int:
        """Drop expired sessions; returns how many."""
        now = self.clock()
        expired = [k for k, (deadline, _) in self._data.items() if deadline <= now]
        for key in expired:
            self._data.pop(key, None)
            self._locks.pop(key, None)
        return len(expired)

    async def close(self) -> None:
        return None


class RedisSessionStore:
    """Sessions in Redis (`redis.asyncio`), shared by every gateway replica; Redis expires them after the TTL."""

    def __init__(self, url: str, ttl_s: int, lock_timeout_s: float) -> None:
        self.ttl_s = ttl_s
        self.lock_timeout_s = lock_timeout_s
        self.client: Any = redis_asyncio.from_url(url)

    async def get(self, session_id: str) -> Session | None:
        raw = await self.client.get(KEY_PREFIX + session_id)
        return None if raw is None else Session.from_json(raw)

    async def save(self, session: Session) -> None:
        await self.client.set(KEY_PREFIX + session.id, session.to_json(), ex=self.ttl_s)

    async def delete(self, session_id: str) -> bool:
        return bool(await self.client.delete(KEY_PREFIX + session_id))

    @contextlib.asynccontextmanager
    async def lock(self, session_id: str) -> AsyncIterator[None]:
        # The lock expires on its own if a gateway dies holding it; blocking_timeout bounds the wait.
        lock = self.client.lock(
            LOCK_PREFIX + session_id, timeout=self.lock_timeout_s, blocking_timeout=self.lock_timeout_s, sleep=0.02
        )
        acquired = await lock.acquire()
        if not acquired:
            raise Unavailable(
                f"Session {session_id!r} is busy with another message; try again.",
                code="session_busy",
                retry_after_s=5,
            )
        try:
            yield
        finally:
            with contextlib.suppress(LockError):  # an expired lock cannot be released; the message still counts
                await lock.release()

    async def ping(self) -> None:
        await self.client.ping()

    async def close(self) -> None:
        await self.client.aclose()
