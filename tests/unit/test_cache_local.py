"""The result cache's copy of hot entries in process memory: what it saves, and how far it may lag Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal

import pytest
import redis.asyncio

from gateway.cache.local import ENTRY_OVERHEAD_BYTES
from gateway.cache.results import CachedEntry, ResultCache, digest_text
from gateway.core.domain import CacheMode
from gateway.settings import CacheSettings
from tests.conftest import throwaway_redis


def entry(payload: bytes, created_at: float | None = None) -> CachedEntry:
    return CachedEntry(payload, Decimal("0.0042"), "vendor", "model-x", created_at or time.time())


def compute(payload: bytes) -> Callable[[], Awaitable[CachedEntry]]:
    async def run() -> CachedEntry:
        return entry(payload)

    return run


def key_for(cache: ResultCache, text: str = "hello") -> str:
    return cache.key("acme", "synthesize", digest_text(text), {"voice": "joe"})


async def test_a_hit_held_in_memory_needs_no_redis_read(redis_client: redis.asyncio.Redis, redis_prefix: str):
    cache = ResultCache(redis_client, redis_prefix, CacheSettings(timeout_s=2.0))
    key = key_for(cache)
    await cache.put(key, entry(b"kept"))
    await redis_client.delete(key)  # gone from Redis: only memory can still answer
    assert (await cache.get(key)).payload == b"kept"
    found, hit = await cache.single_flight(key, compute(b"fresh"))
    assert (found.payload, hit) == (b"kept", True)

    without = ResultCache(redis_client, redis_prefix, CacheSettings(timeout_s=2.0, local_max_bytes=0))
    await without.put(key, entry(b"kept"))
    await redis_client.delete(key)
    assert await without.get(key) is None


async def test_a_read_from_redis_is_kept_for_the_next_hit(
    redis_client: redis.asyncio.Redis, redis_prefix: str
):
    writer = ResultCache(redis_client, redis_prefix, CacheSettings(timeout_s=2.0, local_max_bytes=0))
    reader = ResultCache(redis_client, redis_prefix, CacheSettings(timeout_s=2.0))
    key = key_for(writer)
    await writer.put(key, entry(b"from-redis"))
    assert (await reader.get(key)).payload == b"from-redis"
    await redis_client.delete(key)
    assert (await reader.get(key)).payload == b"from-redis"


# Either bound ends the copy: local_ttl_s, or the entry's own Redis expiry (computed almost a TTL ago).
@pytest.mark.parametrize(
    ("local_ttl_s", "age_s"), [(0.5, 0.0), (30.0, 60 - 0.5)], ids=["local-ttl", "redis-ttl"]
)
async def test_memory_answers_no_longer_than_either_ttl(
    redis_client: redis.asyncio.Redis, redis_prefix: str, local_ttl_s: float, age_s: float
):
    settings = CacheSettings(timeout_s=2.0, ttl_s=60, local_ttl_s=local_ttl_s)
    cache = ResultCache(redis_client, redis_prefix, settings)
    key = key_for(cache)
    await cache.put(key, entry(b"kept", created_at=time.time() - age_s))
    await redis_client.delete(key)  # gone from Redis: only memory can still answer
    assert (await cache.get(key)).payload == b"kept"
    await asyncio.sleep(0.7)
    assert await cache.get(key) is None


async def test_memory_is_bounded_by_bytes_and_drops_the_least_recent(
    redis_client: redis.asyncio.Redis, redis_prefix: str
):
    size = 1000 + ENTRY_OVERHEAD_BYTES
    cache = ResultCache(redis_client, redis_prefix, CacheSettings(timeout_s=2.0, local_max_bytes=3 * size))
    keys = [key_for(cache, f"text {n}") for n in range(5)]
    for n, key in enumerate(keys):
        await cache.put(key, entry(bytes([n]) * 1000))
    huge = key_for(cache, "huge")
    await cache.put(huge, entry(b"x" * (4 * size)))  # larger than the whole bound: kept in Redis only
    await redis_client.delete(*keys, huge)
    held = [await cache.get(key) for key in keys]
    assert [e is not None for e in held] == [False, False, True, True, True]
    assert await cache.get(huge) is None


async def test_a_refresh_here_replaces_the_copy_in_memory(
    redis_client: redis.asyncio.Redis, redis_prefix: str
):
    cache = ResultCache(redis_client, redis_prefix, CacheSettings(timeout_s=2.0))
    key = key_for(cache)
    await cache.put(key, entry(b"old"))
    found, hit = await cache.single_flight(key, compute(b"new"), CacheMode.REFRESH)
    assert (found.payload, hit) == (b"new", False)
    await redis_client.delete(key)
    assert (await cache.get(key)).payload == b"new"


async def test_another_replicas_refresh_is_served_here_once_the_local_ttl_passes(
    redis_client: redis.asyncio.Redis, redis_prefix: str, redis_url: str
):
    other_client = redis.asyncio.Redis.from_url(redis_url)
    try:
        here = ResultCache(redis_client, redis_prefix, CacheSettings(timeout_s=2.0, local_ttl_s=1.0))
        there = ResultCache(other_client, redis_prefix, CacheSettings(timeout_s=2.0, local_ttl_s=1.0))
        key = key_for(here)
        await there.put(key, entry(b"old"))
        assert (await here.get(key)).payload == b"old"
        await there.single_flight(key, compute(b"new"), CacheMode.REFRESH)
        assert (await there.get(key)).payload == b"new"
        # The documented lag: this replica may answer the old result for up to local_ttl_s.
        assert (await here.get(key)).payload == b"old"
        await asyncio.sleep(1.1)
        assert (await here.get(key)).payload == b"new"
    finally:
        await other_client.aclose()


async def test_a_stalled_redis_still_serves_the_hits_held_in_memory():
    with throwaway_redis() as url:
        client = redis.asyncio.Redis.from_url(url)
        admin = redis.asyncio.Redis.from_url(url)
        try:
            cache = ResultCache(client, "test:", CacheSettings(timeout_s=0.3, down_backoff_s=5))
            key = key_for(cache)
            await cache.put(key, entry(b"kept"))
            await admin.execute_command("CLIENT", "PAUSE", 2000, "ALL")
            started = time.monotonic()
            assert (await cache.get(key)).payload == b"kept"
            assert time.monotonic() - started < 0.1  # answered without waiting on Redis
            # A result Redis did not take is not served from memory either: the next request computes.
            other = key_for(cache, "other")
            await cache.put(other, entry(b"unstored"))
            assert await cache.get(other) is None
        finally:
            await client.aclose()
            await admin.aclose()


async def test_without_a_working_redis_nothing_is_kept_in_memory():
    cache = ResultCache(None, "test:", CacheSettings())
    key = key_for(cache)
    await cache.put(key, entry(b"kept"))
    assert await cache.get(key) is None
    disabled = CacheSettings(enabled=False)
    client = redis.asyncio.Redis(host="127.0.0.1", port=1)
    try:
        off = ResultCache(client, "test:", disabled)
        await off.put(key, entry(b"kept"))
        assert await off.get(key) is None
    finally:
        await client.aclose()
