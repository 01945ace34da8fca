"""Hot cache entries kept in this process's memory, in front of Redis.

A hit served from here costs no Redis round trip and no decode: at high load that round trip's client work
on the event loop is a large part of what a hit costs. Entries are the decoded ``(entry, writer)`` pairs
the Redis reads return, bounded by bytes (least recently used go first) and by time:

- never past the entry's own Redis expiry (``created_at + ttl_s``), so memory never serves what Redis
  has already dropped by TTL;
- never longer than ``local_ttl_s``, which bounds how long a replica keeps serving a result after another
  replica refreshed it (a refresh in this process replaces the local entry at once).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from cachetools import TLRUCache

if TYPE_CHECKING:
    from gateway.cache.results import CachedEntry
    from gateway.settings import CacheSettings

Found = tuple["CachedEntry", str]

# What an entry holds besides its payload (the key, the entry object, its strings), counted against the
# byte bound so many tiny results cannot grow memory past it.
ENTRY_OVERHEAD_BYTES = 512


class LocalEntries:
    def __init__(self, settings: CacheSettings, *, enabled: bool = True) -> None:
        self._ttl_s = settings.local_ttl_s
        self._redis_ttl_s = settings.ttl_s
        self._max_bytes = settings.local_max_bytes
        enabled = enabled and settings.enabled and self._max_bytes > 0 and self._ttl_s > 0
        self._entries: TLRUCache[str, Found] | None = (
            TLRUCache(maxsize=self._max_bytes, ttu=self._expires, getsizeof=_size) if enabled else None
        )

    def get(self, key: str) -> Found | None:
        return None if self._entries is None else self._entries.get(key)

    def put(self, key: str, found: Found) -> None:
        if self._entries is None:
            return
        if _size(found) > self._max_bytes or self._redis_left_s(found) <= 0:
            self.drop(key)  # an older value must not outlive its replacement
            return
        self._entries[key] = found

    def drop(self, key: str) -> None:
        if self._entries is not None:
            self._entries.pop(key, None)

    def _expires(self, _key: str, found: Found, now: float) -> float:
        return now + min(self._ttl_s, self._redis_left_s(found))

    def _redis_left_s(self, found: Found) -> float:
        return found[0].created_at + self._redis_ttl_s - time.time()


def _size(found: Found) -> int:
    return len(found[0].payload) + ENTRY_OVERHEAD_BYTES
