"""In-memory, single-use, short-lived state of the development IdP (pending sign-in
requests, authorization codes).

Memory is enough here: the dev IdP exists only inside ``transom demo``, which runs one
process. A real IdP would keep this in shared storage.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from typing import Generic, TypeVar

T = TypeVar("T")


class TtlStore(Generic[T]):
    """Random keys to values that expire after ``ttl_seconds``; ``take`` removes. Holds at
    most ``max_entries`` (the oldest go first), so a flood of requests cannot grow it."""

    def __init__(self, *, ttl_seconds: float, max_entries: int = 1000) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._items: OrderedDict[str, tuple[float, T]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, value: T) -> str:
        key = secrets.token_urlsafe(32)
        with self._lock:
            self._sweep()
            self._items[key] = (time.monotonic() + self._ttl, value)
            while len(self._items) > self._max:
                self._items.popitem(last=False)
        return key

    def peek(self, key: str) -> T | None:
        with self._lock:
            self._sweep()
            item = self._items.get(key)
        return item[1] if item else None

    def take(self, key: str) -> T | None:
        with self._lock:
            self._sweep()
            item = self._items.pop(key, None)
        return item[1] if item else None

    def _sweep(self) -> None:
        now = time.monotonic()
        for key in [k for k, (expires, _) in self._items.items() if expires <= now]:
            del self._items[key]
