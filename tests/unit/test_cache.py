"""The result cache: keys, storage, single-flight within and across instances, and Redis failures.

Everything runs against a real Redis; tests that stop, pause or break it use a throwaway server.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal

import pytest
import redis.asyncio
from blake3 import blake3
from structlog.testing import capture_logs

from gateway.cache.results import (
    CachedEntry,
    ResultCache,
    _Unavailable,
    cache_key,
    digest_bytes,
    digest_text,
    lock_key,
)
from gateway.core.domain import CacheMode
from gateway.core.errors import WaitTimedOut
from gateway.core.provider_types import Operation
from gateway.settings import CacheSettings
from tests.conftest import throwaway_redis

D = Decimal
COST = D("0.0042")
AUDIO = b"RIFF\x00\x01fake-wav-bytes"
OPTIONS: dict[str, object] = {"language": "en", "word_timestamps": False, "speed": 1.0}
# Generous: the shared Redis may be busy with other suites; failure tests set their own short timeouts.
SETTINGS = CacheSettings(timeout_s=2.0)


class Boom(Exception):
    pass


class Compute:
    """A provider call that counts how often it really runs."""

    def __init__(
        self, payload: bytes = b"result", cost: Decimal = COST, delay_s: float = 0.2, error=None
    ) -> None:
        self.payload = payload
        self.cost = cost
        self.delay_s = delay_s
        self.error = error
        self.calls = 0

    async def __call__(self) -> CachedEntry:
        self.calls += 1
        await asyncio.sleep(self.delay_s)
        if self.error is not None:
            raise self.error
        return CachedEntry(self.payload, self.cost, "vendor", "model-x", time.time())


def entry(payload: bytes = b"payload", cost: Decimal = COST) -> CachedEntry:
    return CachedEntry(payload, cost, "vendor", "model-x", 1_700_000_000.5)


def key_of(**changes: object) -> str:
    args: dict[str, object] = {
        "tenant": "acme",
        "operation": "transcribe",
        "input_digest": digest_bytes(AUDIO),
        "options": OPTIONS,
    }
    args.update(changes)
    return cache_key(**args)  # type: ignore[arg-type]


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    pool = redis.asyncio.BlockingConnectionPool.from_url(redis_url, max_connections=20, timeout=5)
    client = redis.asyncio.Redis(connection_pool=pool)
    yield client
    await client.aclose()


@pytest.fixture
async def other_client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    """A second connection pool: what a second gateway replica would have."""
    pool = redis.asyncio.BlockingConnectionPool.from_url(redis_url, max_connections=20, timeout=5)
    client = redis.asyncio.Redis(connection_pool=pool)
    yield client
    await client.aclose()


@pytest.fixture
def prefix(redis_prefix: str) -> str:
    return redis_prefix


@pytest.fixture
def cache(redis_client: redis.asyncio.Redis, prefix: str) -> ResultCache:
    return ResultCache(redis_client, prefix, SETTINGS)


@pytest.fixture
def key(cache: ResultCache) -> str:
    return cache.key("acme", "transcribe", digest_bytes(AUDIO), OPTIONS)


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on: connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers: a Redis that hangs."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield server.getsockname()[1]


# -- keys ----------------------------------------------------------------------------------------------


def test_digests_are_blake3_of_the_content():
    assert digest_bytes(AUDIO) == blake3(AUDIO).hexdigest()
    assert digest_text("café") == blake3("café".encode()).hexdigest()
    assert digest_bytes(AUDIO) != digest_bytes(AUDIO + b"\x00")


def test_the_same_request_gets_the_same_key_whatever_the_option_order():
    reordered = dict(reversed(list(OPTIONS.items())))
    assert key_of() == key_of() == key_of(options=reordered)
    assert key_of(operation=Operation.TRANSCRIBE) == key_of(operation="transcribe")
    assert key_of(options={"mode": CacheMode.REFRESH}) == key_of(options={"mode": "refresh"})
    assert key_of(options={"price": D("1.50")}) == key_of(options={"price": D("1.5")})


def test_the_key_is_namespaced_by_tenant_and_prefix():
    key = key_of(tenant="acme")
    namespace, digest = key.rsplit(":", 1)
    assert namespace == "cache:acme"
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert cache_key("acme", "transcribe", "d", {}, prefix="gw:").startswith("gw:cache:acme:")
    # The digest itself depends on the tenant too, not just the namespace in front of it.
    assert key_of(tenant="acme").rsplit(":", 1)[1] != key_of(tenant="globex").rsplit(":", 1)[1]


@pytest.mark.parametrize(
    "change",
    [
        {"tenant": "globex"},
        {"operation": "understand"},
        {"input_digest": digest_bytes(AUDIO + b"!")},
        {"input_digest": digest_text("hello")},
        {"options": {**OPTIONS, "language": "fr"}},
        {"options": {**OPTIONS, "language": None}},
        {"options": {**OPTIONS, "word_timestamps": True}},
        {"options": {**OPTIONS, "speed": 1.25}},
        {"options": {**OPTIONS, "voice": "joe"}},
        {"options": {**OPTIONS, "question": "who spoke first?"}},
        {"options": {k: v for k, v in OPTIONS.items() if k != "speed"}},
        {"options": {**OPTIONS, "format": {"container": "wav", "rate": 16000}}},
    ],
    ids=lambda change: ",".join(change),
)
def test_changing_anything_that_changes_the_result_changes_the_key(change: dict[str, object]):
    assert key_of(**change) != key_of()


def test_questions_differing_in_one_character_get_different_keys():
    first = key_of(operation="understand", options={"question": "who spoke first?"})
    assert first != key_of(operation="understand", options={"question": "who spoke first!"})
    assert "who spoke" not in first  # hashed, never spelled out


@pytest.mark.parametrize("bad", [object(), b"raw bytes", {1: "int key"}, {1, 2}])
def test_options_without_a_stable_form_are_refused(bad: object):
    with pytest.raises(TypeError):
        key_of(options={"thing": bad})


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), D("NaN")])
def test_non_finite_numbers_are_refused(bad: object):
    with pytest.raises(ValueError, match="finite"):
        key_of(options={"speed": bad})


@pytest.mark.parametrize("field", ["tenant", "input_digest"])
def test_empty_key_parts_are_refused(field: str):
    with pytest.raises(ValueError, match=field):
        key_of(**{field: ""})


def test_an_entry_keeps_money_in_decimal():
    with pytest.raises(TypeError, match="Decimal"):
        CachedEntry(b"x", 0.1, "p", "m", 0.0)  # type: ignore[arg-type]


# -- get / put -----------------------------------------------------------------------------------------


async def test_put_then_get_round_trips_the_entry_and_its_exact_cost(cache: ResultCache, key: str):
    assert await cache.get(key) is None
    stored = entry(b"\x00\xffbinary\x00audio" * 100, D("0.000123400"))
    await cache.put(key, stored)
    found = await cache.get(key)
    assert found == stored
    assert isinstance(found.cost_usd, Decimal)
    assert str(found.cost_usd) == "0.000123400"


async def test_an_entry_keeps_the_audio_seconds_it_was_billed_for(
    redis_client: redis.asyncio.Redis, prefix: str, key: str
):
    cache = ResultCache(redis_client, prefix, CacheSettings(timeout_s=2.0))
    billed = CachedEntry(b"payload", Decimal("0.01"), "vendor", "model-x", 1.0, audio_s=5.8125)
    await cache.put(key, billed)
    found = await cache.get(key)
    assert found is not None and found.audio_s == 5.8125
    # An entry written before durations were stored reads back with none, never a made-up one.
    raw = await redis_client.get(key)
    header_at = raw.index(b"{")
    header_end = raw.index(b"}", header_at) + 1
    header = json.loads(raw[header_at:header_end])
    del header["audio_s"]
    old_header = json.dumps(header, separators=(",", ":")).encode()
    old = raw[: header_at - 4] + struct.pack(">I", len(old_header)) + old_header + raw[header_end:]
    await redis_client.set(key, old)
    found = await cache.get(key)
    assert found is not None and found.audio_s == 0.0 and found.payload == b"payload"


async def test_entries_expire_after_the_configured_ttl(
    redis_client: redis.asyncio.Redis, prefix: str, key: str
):
    cache = ResultCache(redis_client, prefix, CacheSettings(timeout_s=2.0, ttl_s=300))
    await cache.put(key, entry())
    assert 290 <= await redis_client.ttl(key) <= 300


async def test_entries_larger_than_the_maximum_are_not_stored(
    redis_client: redis.asyncio.Redis, prefix: str, key: str
):
    cache = ResultCache(redis_client, prefix, CacheSettings(timeout_s=2.0, max_entry_bytes=10))
    with capture_logs() as logs:
        await cache.put(key, entry(b"x" * 11))
    assert not await redis_client.exists(key)
    assert [e["event"] for e in logs] == ["cache.entry_too_large"]
    assert logs[0]["payload_bytes"] == 11
    await cache.put(key, entry(b"x" * 10))  # exactly at the limit: stored
    assert (await cache.get(key)).payload == b"x" * 10


async def test_an_oversize_result_is_still_served_just_not_kept(
    redis_client: redis.asyncio.Redis, prefix: str, key: str
):
    cache = ResultCache(redis_client, prefix, CacheSettings(timeout_s=2.0, max_entry_bytes=4))
    compute = Compute(payload=b"too long", delay_s=0)
    assert (await cache.single_flight(key, compute))[0].payload == b"too long"
    assert (await cache.single_flight(key, compute))[1] is False
    assert compute.calls == 2
    assert not await redis_client.exists(lock_key(key))


async def test_an_unreadable_value_is_a_miss_and_gets_overwritten(
    cache: ResultCache, redis_client: redis.asyncio.Redis, key: str
):
    await redis_client.set(key, b"not a cache entry")
    assert await cache.get(key) is None
    compute = Compute(delay_s=0)
    _, hit = await cache.single_flight(key, compute)
    assert not hit and compute.calls == 1
    assert (await cache.get(key)).payload == b"result"


async def test_a_client_that_decodes_responses_is_refused(redis_url: str):
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    try:
        with pytest.raises(ValueError, match="decode_responses"):
            ResultCache(client, "test:", SETTINGS)
    finally:
        await client.aclose()


async def test_a_disabled_cache_neither_reads_nor_writes(
    redis_client: redis.asyncio.Redis, prefix: str, key: str
):
    await redis_client.set(key, b"anything")
    cache = ResultCache(redis_client, prefix, CacheSettings(enabled=False))
    assert await cache.get(key) is None
    await redis_client.delete(key)
    compute = Compute(delay_s=0)
    assert (await cache.single_flight(key, compute))[1] is False
    assert (await cache.single_flight(key, compute))[1] is False
    await cache.put(key, entry())
    assert compute.calls == 2
    assert not await redis_client.exists(key)


# -- single-flight -------------------------------------------------------------------------------------


async def test_a_second_identical_request_is_a_hit_without_computing(cache: ResultCache, key: str):
    compute = Compute(cost=D("0.0042"))
    first, first_hit = await cache.single_flight(key, compute)
    second, second_hit = await cache.single_flight(key, compute)
    assert (first_hit, second_hit) == (False, True)
    assert compute.calls == 1
    assert second.payload == first.payload == b"result"
    assert second.cost_usd == D("0.0042")  # what the original call cost: the router's saved_usd
    assert (second.provider, second.model) == ("vendor", "model-x")


async def test_fifty_concurrent_identical_requests_compute_once(
    cache: ResultCache, redis_client: redis.asyncio.Redis, key: str
):
    compute = Compute()
    results = await asyncio.gather(*(cache.single_flight(key, compute) for _ in range(50)))
    assert compute.calls == 1
    assert all(e.payload == b"result" for e, _ in results)
    # Exactly one caller paid; the other 49 were served without a provider call.
    assert sorted(hit for _, hit in results) == [False] + [True] * 49
    assert (await cache.get(key)).payload == b"result"
    assert not await redis_client.exists(lock_key(key))


async def test_an_entry_the_caller_refuses_is_a_miss_and_is_overwritten(cache: ResultCache, key: str):
    await cache.single_flight(key, Compute(payload=b"from the cloud"))
    only_local = Compute(payload=b"from the engine")
    refuses_cloud = lambda e: e.payload != b"from the cloud"  # noqa: E731
    served, hit = await cache.single_flight(key, only_local, accept=refuses_cloud)
    assert (served.payload, hit, only_local.calls) == (b"from the engine", False, 1)
    assert (await cache.get(key)).payload == b"from the engine"


async def test_a_follower_refusing_the_flights_producer_computes_its_own(cache: ResultCache, key: str):
    leader, follower = Compute(payload=b"cloud"), Compute(payload=b"local", delay_s=0.0)
    results = await asyncio.gather(
        cache.single_flight(key, leader),
        cache.single_flight(key, follower, accept=lambda e: e.payload == b"local"),
    )
    assert [(e.payload, hit) for e, hit in results] == [(b"cloud", False), (b"local", False)]
    assert (leader.calls, follower.calls) == (1, 1)


async def test_only_the_wait_for_another_flight_is_bounded_by_the_deadline(cache: ResultCache, key: str):
    slow = Compute(delay_s=0.5)
    leader = asyncio.create_task(cache.single_flight(key, slow, deadline=time.monotonic() + 0.05))
    await asyncio.sleep(0.01)
    with pytest.raises(WaitTimedOut):
        await cache.single_flight(key, Compute(), deadline=time.monotonic() + 0.1)
    # The leader's own deadline passed too, but its computation is never cut short by the cache.
    entry, hit = await leader
    assert (entry.payload, hit, slow.calls) == (b"result", False, 1)


async def test_different_keys_do_not_share_a_flight(cache: ResultCache):
    one, two = Compute(payload=b"one"), Compute(payload=b"two")
    keys = [cache.key("acme", "synthesize", digest_text(t), {}) for t in ("hi", "bye")]
    results = await asyncio.gather(cache.single_flight(keys[0], one), cache.single_flight(keys[1], two))
    assert [e.payload for e, _ in results] == [b"one", b"two"]
    assert (one.calls, two.calls) == (1, 1)


async def test_two_replicas_compute_once_between_them(
    redis_client: redis.asyncio.Redis, other_client: redis.asyncio.Redis, prefix: str, key: str
):
    first = ResultCache(redis_client, prefix, SETTINGS)
    second = ResultCache(other_client, prefix, SETTINGS)
    compute = Compute(delay_s=0.3)
    results = await asyncio.gather(
        *(first.single_flight(key, compute) for _ in range(25)),
        *(second.single_flight(key, compute) for _ in range(25)),
    )
    assert compute.calls == 1
    assert all(e.payload == b"result" for e, _ in results)
    assert sum(not hit for _, hit in results) == 1


async def test_a_long_computation_keeps_its_lock(
    redis_client: redis.asyncio.Redis, other_client: redis.asyncio.Redis, prefix: str, key: str
):
    """A holder renews its lock while it works, so a slow provider is not called twice."""
    settings = CacheSettings(timeout_s=2.0, lock_ttl_s=0.3)
    first = ResultCache(redis_client, prefix, settings)
    second = ResultCache(other_client, prefix, settings)
    compute = Compute(delay_s=1.2)

    async def later() -> tuple[CachedEntry, bool]:
        await asyncio.sleep(0.1)
        return await second.single_flight(key, compute)

    (_, first_hit), (found, second_hit) = await asyncio.gather(first.single_flight(key, compute), later())
    assert compute.calls == 1
    assert (first_hit, second_hit) == (False, True)
    assert found.payload == b"result"


async def test_a_crashed_holder_blocks_only_until_its_lock_expires(
    cache: ResultCache, redis_client: redis.asyncio.Redis, key: str
):
    # A replica took the lock and died: it never writes the value nor releases the lock.
    await redis_client.set(lock_key(key), "crashed-replica", px=700)
    compute = Compute(delay_s=0)
    started = time.monotonic()
    found, hit = await cache.single_flight(key, compute)
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 3
    assert (found.payload, hit, compute.calls) == (b"result", False, 1)
    assert (await cache.get(key)).payload == b"result"
    assert not await redis_client.exists(lock_key(key))


async def test_a_waiter_takes_the_value_a_holder_writes(
    cache: ResultCache, redis_client: redis.asyncio.Redis, prefix: str, key: str
):
    await redis_client.set(lock_key(key), "other-replica", px=10_000)

    async def other_replica_finishes() -> None:
        await asyncio.sleep(0.3)
        await ResultCache(redis_client, prefix, SETTINGS).put(key, entry(b"theirs"))

    compute = Compute()
    (found, hit), _ = await asyncio.gather(cache.single_flight(key, compute), other_replica_finishes())
    assert (found.payload, hit, compute.calls) == (b"theirs", True, 0)


async def test_refresh_recomputes_and_overwrites(cache: ResultCache, key: str):
    await cache.put(key, entry(b"stale", D("1")))
    compute = Compute(payload=b"fresh", cost=D("0.5"))
    results = await asyncio.gather(*(cache.single_flight(key, compute, "refresh") for _ in range(10)))
    assert compute.calls == 1  # refreshes are single-flighted too
    assert all(e.payload == b"fresh" for e, _ in results)
    assert sorted(hit for _, hit in results) == [False] + [True] * 9
    stored = await cache.get(key)
    assert (stored.payload, stored.cost_usd) == (b"fresh", D("0.5"))
    # A default request afterwards is served the refreshed entry.
    assert (await cache.single_flight(key, Compute(), CacheMode.DEFAULT))[0].payload == b"fresh"


async def test_refresh_across_replicas_computes_once_and_nobody_gets_the_stale_entry(
    redis_client: redis.asyncio.Redis, other_client: redis.asyncio.Redis, prefix: str, key: str
):
    first = ResultCache(redis_client, prefix, SETTINGS)
    second = ResultCache(other_client, prefix, SETTINGS)
    await first.put(key, entry(b"stale"))
    compute = Compute(payload=b"fresh", delay_s=0.3)
    results = await asyncio.gather(
        *(first.single_flight(key, compute, CacheMode.REFRESH) for _ in range(5)),
        *(second.single_flight(key, compute, CacheMode.REFRESH) for _ in range(5)),
    )
    assert compute.calls == 1
    assert [e.payload for e, _ in results] == [b"fresh"] * 10


async def test_a_refresh_waiter_whose_holder_fails_computes_rather_than_take_the_stale_entry(
    redis_client: redis.asyncio.Redis, other_client: redis.asyncio.Redis, prefix: str, key: str
):
    first = ResultCache(redis_client, prefix, SETTINGS)
    second = ResultCache(other_client, prefix, SETTINGS)
    await first.put(key, entry(b"stale"))
    failing = Compute(error=Boom("provider failed"), delay_s=0.3)
    working = Compute(payload=b"fresh", delay_s=0)

    async def later() -> tuple[CachedEntry, bool]:
        await asyncio.sleep(0.1)  # the first replica holds the lock by now
        return await second.single_flight(key, working, "refresh")

    failed, (found, hit) = await asyncio.gather(
        first.single_flight(key, failing, "refresh"), later(), return_exceptions=True
    )
    assert isinstance(failed, Boom)
    assert (found.payload, hit, working.calls) == (b"fresh", False, 1)
    assert (await first.get(key)).payload == b"fresh"


async def test_a_bypass_is_not_a_cache_mode(cache: ResultCache, key: str):
    with pytest.raises(ValueError, match="bypass"):
        await cache.single_flight(key, Compute(), CacheMode.BYPASS)


async def test_a_compute_error_reaches_every_waiter_and_nothing_is_cached(
    cache: ResultCache, redis_client: redis.asyncio.Redis, key: str
):
    compute = Compute(error=Boom("provider failed"), delay_s=0.1)
    results = await asyncio.gather(
        *(cache.single_flight(key, compute) for _ in range(10)), return_exceptions=True
    )
    assert compute.calls == 1
    assert all(isinstance(r, Boom) for r in results)
    assert not await redis_client.exists(key)
    assert not await redis_client.exists(lock_key(key))  # released at once, not after lock_ttl_s
    # The next request tries again.
    retry = Compute(delay_s=0)
    assert (await cache.single_flight(key, retry))[0].payload == b"result"
    assert retry.calls == 1


async def test_when_a_holder_fails_the_other_replica_computes_for_itself(
    redis_client: redis.asyncio.Redis, other_client: redis.asyncio.Redis, prefix: str, key: str
):
    first = ResultCache(redis_client, prefix, SETTINGS)
    second = ResultCache(other_client, prefix, SETTINGS)
    failing = Compute(error=Boom("provider failed"), delay_s=0.3)
    working = Compute(payload=b"second's", delay_s=0.05)

    async def later() -> list[tuple[CachedEntry, bool]]:
        await asyncio.sleep(0.1)  # the first replica holds the lock by now
        return await asyncio.gather(*(second.single_flight(key, working) for _ in range(5)))

    started = time.monotonic()
    first_results, second_results = await asyncio.gather(
        asyncio.gather(*(first.single_flight(key, failing) for _ in range(5)), return_exceptions=True),
        later(),
    )
    assert all(isinstance(r, Boom) for r in first_results)
    assert [e.payload for e, _ in second_results] == [b"second's"] * 5
    assert (failing.calls, working.calls) == (1, 1)
    assert time.monotonic() - started < 5  # took over when the lock was released, not at its expiry


async def test_a_cancelled_leader_hands_the_flight_to_a_waiter(
    cache: ResultCache, redis_client: redis.asyncio.Redis, key: str
):
    compute = Compute(delay_s=0.4)
    leader = asyncio.create_task(cache.single_flight(key, compute))
    await asyncio.sleep(0.05)
    followers = [asyncio.create_task(cache.single_flight(key, compute)) for _ in range(5)]
    await asyncio.sleep(0.1)
    leader.cancel()
    started = time.monotonic()
    results = await asyncio.gather(*followers)
    assert leader.cancelled()
    assert compute.calls == 2  # the cancelled call's and the new leader's
    assert all(e.payload == b"result" for e, _ in results)
    assert sorted(hit for _, hit in results) == [False] + [True] * 4
    assert time.monotonic() - started < 2  # its lock was released, not left to expire (60 s)


async def test_a_cancelled_waiter_does_not_disturb_the_flight(cache: ResultCache, key: str):
    compute = Compute(delay_s=0.3)
    tasks = [asyncio.create_task(cache.single_flight(key, compute)) for _ in range(5)]
    await asyncio.sleep(0.1)
    tasks[3].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[3], asyncio.CancelledError)
    assert [r[0].payload for i, r in enumerate(results) if i != 3] == [b"result"] * 4
    assert compute.calls == 1


async def test_nothing_computed_or_stored_is_logged(
    redis_client: redis.asyncio.Redis, prefix: str, closed_port: int
):
    secret = b"SECRET transcript words"
    question = "SECRET question"
    with capture_logs() as logs:
        small = ResultCache(redis_client, prefix, CacheSettings(timeout_s=2.0, max_entry_bytes=4))
        k = small.key("acme", "understand", digest_bytes(AUDIO), {"question": question})
        await small.single_flight(k, Compute(payload=secret, delay_s=0))
        await redis_client.set(k, b"garbage " + secret)
        await small.get(k)
        down = redis.asyncio.Redis(host="127.0.0.1", port=closed_port)
        try:
            await ResultCache(down, prefix, CacheSettings()).single_flight(k, Compute(payload=secret))
        finally:
            await down.aclose()
    assert {e["event"] for e in logs} >= {
        "cache.entry_too_large",
        "cache.entry_unreadable",
        "cache.store_failed",
    }
    assert "SECRET" not in repr(logs)


# -- without Redis -------------------------------------------------------------------------------------


async def test_without_redis_identical_requests_still_compute_once(key: str):
    cache = ResultCache(None, "test:", CacheSettings())
    compute = Compute()
    results = await asyncio.gather(*(cache.single_flight(key, compute) for _ in range(20)))
    assert compute.calls == 1
    assert sorted(hit for _, hit in results) == [False] + [True] * 19
    assert await cache.get(key) is None
    await cache.put(key, entry())


async def test_a_refused_connection_degrades_to_computing(closed_port: int, key: str):
    client = redis.asyncio.Redis(host="127.0.0.1", port=closed_port)
    cache = ResultCache(client, "test:", CacheSettings())
    try:
        started = time.monotonic()
        assert await cache.get(key) is None
        await cache.put(key, entry())
        assert time.monotonic() - started < 1.0
        compute = Compute()
        results = await asyncio.gather(*(cache.single_flight(key, compute) for _ in range(20)))
        assert compute.calls == 1
        assert sorted(hit for _, hit in results) == [False] + [True] * 19
        found, hit = await cache.single_flight(key, compute)
        assert (found.payload, hit, compute.calls) == (b"result", False, 2)
    finally:
        await client.aclose()


async def test_a_hanging_redis_costs_at_most_one_timeout_per_backoff_window(silent_port: int, key: str):
    client = redis.asyncio.Redis(host="127.0.0.1", port=silent_port)
    cache = ResultCache(client, "test:", CacheSettings(timeout_s=0.25, down_backoff_s=30))
    try:
        started = time.monotonic()
        assert await cache.get(key) is None
        first = time.monotonic() - started
        assert 0.2 <= first < 1.0
        started = time.monotonic()
        await cache.put(key, entry())
        found, hit = await cache.single_flight(key, Compute(delay_s=0))
        assert (found.payload, hit) == (b"result", False)
        assert time.monotonic() - started < 0.1  # Redis is skipped while it is known to be down
    finally:
        await client.aclose()


async def test_a_call_left_waiting_by_a_busy_loop_does_not_count_as_redis_down(
    redis_client: redis.asyncio.Redis, prefix: str
):
    cache = ResultCache(redis_client, prefix, CacheSettings(timeout_s=0.2, down_backoff_s=30))
    k = cache.key("acme", "transcribe", digest_bytes(b"audio"), {})
    await cache.put(k, entry(b"kept"))

    async def read_too_late() -> None:
        # A call whose reply is not read within timeout_s: at saturation the event loop, not Redis, is late.
        await asyncio.sleep(1.0)

    late = asyncio.create_task(cache._call("get", read_too_late))
    await asyncio.sleep(0.05)
    assert (await cache.get(k)).payload == b"kept"  # Redis answers after the late call was sent
    with pytest.raises(_Unavailable):
        await late
    # Not skipped for down_backoff_s: the next hit is still served from Redis.
    found, hit = await cache.single_flight(k, Compute())
    assert (found.payload, hit) == (b"kept", True)


async def test_a_stopped_redis_degrades_and_a_paused_one_recovers():
    with throwaway_redis() as url:
        client = redis.asyncio.Redis.from_url(url)
        # Redis's own path: no copy in memory to answer from while it is away.
        settings = CacheSettings(timeout_s=0.2, down_backoff_s=0.3, local_max_bytes=0)
        cache = ResultCache(client, "test:", settings)
        k = cache.key("acme", "synthesize", digest_text("hello"), {"voice": "joe"})
        await cache.put(k, entry(b"before"))
        assert (await cache.get(k)).payload == b"before"

        # A Redis that stalls (here: paused for a second) is waited on for timeout_s at most.
        admin = redis.asyncio.Redis.from_url(url)
        await admin.execute_command("CLIENT", "PAUSE", 1000, "ALL")
        await admin.aclose()
        started = time.monotonic()
        assert await cache.get(k) is None
        assert time.monotonic() - started < 1.0
        found, hit = await cache.single_flight(k, Compute(payload=b"during", delay_s=0), "refresh")
        assert (found.payload, hit) == (b"during", False)
        await asyncio.sleep(1.2)  # the pause and the backoff are both over
        assert (await cache.get(k)).payload == b"before"
    # The server is stopped now.
    try:
        assert await cache.get(k) is None
        await cache.put(k, entry())
        compute = Compute()
        results = await asyncio.gather(*(cache.single_flight(k, compute) for _ in range(10)))
        assert compute.calls == 1
        assert all(e.payload == b"result" for e, _ in results)
    finally:
        await client.aclose()
