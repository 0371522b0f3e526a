"""A de-duplicating work queue: each model is reconciled by one worker at a time, never queued twice (asyncio)."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    """Keys wait at most once; a key added while being processed is processed again afterwards."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[K] = asyncio.Queue()
        self._pending: set[K] = set()
        self._active: set[K] = set()
        self._dirty: set[K] = set()

    def add(self, key: K) -> None:
        """Ask for `key` to be processed (soon, once)."""
        if key in self._active:
            self._dirty.add(key)
        elif key not in self._pending:
            self._pending.add(key)
            self._queue.put_nowait(key)

    def add_after(self, key: K, delay_s: float) -> None:
        """Ask for `key` to be processed after `delay_s` (retries with back-off)."""
        asyncio.get_running_loop().call_later(delay_s, self.add, key)

    async def get(self) -> K:
        """The next key; the caller must call `done(key)` when finished."""
        key = await self._queue.get()
        self._pending.discard(key)
        self._active.add(key)
        return key

    def done(self, key: K) -> None:
        """Finish `key`; requeue it if it was added meanwhile."""
        self._active.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def __len__(self) -> int:
        return len(self._pending)
