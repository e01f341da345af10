"""What the JWKS and discovery caches share: one entry per URL with its fetch bookkeeping,
the TTL rule and the capped JSON fetch. Each cache keeps its own refresh rules and checks;
only the parts that were the same to the letter live here, so a fix to one (a body cap, a
race on first use) reaches both."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx

from transom.errors import UpstreamError
from transom.oidc.common import cache_ttl


@dataclass
class UrlEntry:
    """One URL's fetch state; a cache subclasses it with what it keeps of the document."""

    expires_at: float = 0.0
    #: monotonic time of the last fetch attempt (success or failure): the cooldown anchor
    last_attempt: float = -math.inf
    #: makes refetches of one URL single-flight
    lock: threading.Lock = field(default_factory=threading.Lock)
    fetches: int = 0


EntryT = TypeVar("EntryT", bound=UrlEntry)


class UrlCache(Generic[EntryT]):
    """Per-process entries keyed by URL, created on first use, with the settings both caches take."""

    def __init__(
        self,
        new_entry: Callable[[], EntryT],
        *,
        cooldown: float,
        default_ttl: float,
        min_ttl: float,
        max_ttl: float,
        max_bytes: int,
        clock: Callable[[], float],
    ) -> None:
        self.cooldown = cooldown
        self.default_ttl = default_ttl
        self.min_ttl = min_ttl
        self.max_ttl = max_ttl
        self.max_bytes = max_bytes
        self._clock = clock
        self._new_entry = new_entry
        self._entries: dict[str, EntryT] = {}
        self._entries_lock = threading.Lock()

    def fetch_count(self, url: str) -> int:
        """How many times the URL was fetched (for tests and the login trace)."""
        entry = self._entries.get(url)
        return entry.fetches if entry else 0

    def _entry(self, url: str) -> EntryT:
        # under a lock so that two first logins cannot each get an entry (and a fetch lock) of their own
        with self._entries_lock:
            entry = self._entries.get(url)
            if entry is None:
                entry = self._entries[url] = self._new_entry()
            return entry

    def _ttl(self, cache_control: str) -> float:
        return cache_ttl(cache_control, default=self.default_ttl, low=self.min_ttl, high=self.max_ttl)

    def _get_json(self, http: httpx.Client, url: str, fail: Callable[[str], UpstreamError]) -> tuple[Any, str]:
        """The parsed JSON body at ``url`` and its ``Cache-Control`` header; ``fail`` words every
        refusal. The body is read in chunks so a huge or endless one stops at ``max_bytes``, and
        redirects are not followed (the configured URL is the one trusted)."""
        try:
            with http.stream("GET", url, headers={"Accept": "application/json"}, follow_redirects=False) as response:
                if response.status_code != 200:
                    raise fail(f"HTTP {response.status_code}")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body.extend(chunk)
                    if len(body) > self.max_bytes:
                        raise fail(f"document over {self.max_bytes} bytes")
                cache_control = response.headers.get("cache-control", "")
        except httpx.HTTPError as exc:
            raise fail(type(exc).__name__) from None
        try:
            return json.loads(bytes(body)), cache_control
        except (ValueError, RecursionError):
            raise fail("not JSON") from None
