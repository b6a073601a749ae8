"""Work in order per key, different keys at once: the trigger's per-key ordering.

A key is idle, ready (has items, waits for a worker) or busy (a worker holds one of its items;
more may wait). `get` hands out the oldest item of a ready key and makes the key busy; `done`
makes it ready again if more items wait. So a key's items are taken one at a time, in order,
while any number of keys are busy at once. Ready keys are served round-robin.

>>> import asyncio
>>> async def demo():
...     queue = KeyedQueue()
...     for key, item in (("a", 1), ("a", 2), ("b", 3)):
...         queue.put(key, item)
...     first, second = await queue.get(), await queue.get()
...     queue.done("a")
...     return first, second, await queue.get()
>>> asyncio.run(demo())
(('a', 1), ('b', 3), ('a', 2))
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class KeyedQueue(Generic[T]):
    def __init__(self) -> None:
        self._waiting: dict[Hashable, deque[T]] = {}
        self._ready: set[Hashable] = set()
        self._busy: set[Hashable] = set()
        # Ready keys in turn; may hold keys no longer ready (after `drop`), which get skips.
        self._turns: asyncio.Queue[Hashable] = asyncio.Queue()

    def put(self, key: Hashable, item: T) -> None:
        waiting = self._waiting.get(key)
        if waiting is not None:
            waiting.append(item)
            return
        self._waiting[key] = deque((item,))
        if key not in self._busy:
            self._make_ready(key)

    async def get(self) -> tuple[Hashable, T]:
        """The oldest item of the next ready key; the key stays busy until `done(key)`."""
        while True:
            key = await self._turns.get()
            if key not in self._ready:
                continue  # its items were dropped
            self._ready.discard(key)
            waiting = self._waiting[key]
            item = waiting.popleft()
            if not waiting:
                del self._waiting[key]
            self._busy.add(key)
            return key, item

    def done(self, key: Hashable) -> None:
        self._busy.discard(key)
        if key in self._waiting:
            self._make_ready(key)

    def drop(self, matches: Callable[[T], bool]) -> list[T]:
        """Removes and returns the waiting items that match; busy items are not touched."""
        dropped: list[T] = []
        for key, waiting in list(self._waiting.items()):
            kept = deque(item for item in waiting if not matches(item))
            dropped += [item for item in waiting if matches(item)]
            if kept:
                self._waiting[key] = kept
            else:
                del self._waiting[key]
                self._ready.discard(key)
        return dropped

    @property
    def busy(self) -> int:
        """Items being worked on."""
        return len(self._busy)

    def _make_ready(self, key: Hashable) -> None:
        self._ready.add(key)
        self._turns.put_nowait(key)
