"""Concurrent cache reads share round trips, and each still gets its own answer or error."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
import redis
import redis.asyncio

from gateway.cache.reads import CoalescedReads
from tests.conftest import throwaway_redis


@pytest.fixture
async def private_redis() -> AsyncIterator[redis.asyncio.Redis]:
    """A Redis of this test's own, so its command counts are this test's."""
    with throwaway_redis() as url:
        client = redis.asyncio.Redis.from_url(url)
        yield client
        await client.aclose()


async def _commands(client: redis.asyncio.Redis) -> dict[str, int]:
    stats = await client.info("commandstats")
    return {name: stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("get", "mget")}


async def test_reads_issued_together_leave_as_one_get_and_one_mget_with_their_own_answers(
    private_redis: redis.asyncio.Redis,
):
    client = private_redis
    await client.mset({f"k{i}": f"v{i}".encode() for i in range(0, 20, 2)})  # odd keys missing
    await client.config_resetstat()
    reads = CoalescedReads(client, 2.0)
    keys = [f"k{i}" for i in range(20)] + ["k4"]  # one key asked twice
    values = await asyncio.gather(*(reads.get(k) for k in keys))
    assert values == [f"v{i}".encode() if i % 2 == 0 else None for i in range(20)] + [b"v4"]
    # The first read goes alone; the twenty queued behind it share one MGET.
    assert await _commands(client) == {"get": 1, "mget": 1}
    # Alone, a read is a plain GET.
    assert await reads.get("k2") == b"v2"
    assert await _commands(client) == {"get": 2, "mget": 1}


async def test_a_failure_reaches_every_read_and_the_next_reads_try_again():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: connections are refused
    client = redis.asyncio.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
    reads = CoalescedReads(client, 2.0)
    try:
        results = await asyncio.gather(*(reads.get(f"k{i}") for i in range(5)), return_exceptions=True)
        # The first read's own error; the queued ones share the MGET's (its retries may outlast its bound).
        assert isinstance(results[0], redis.ConnectionError), results
        assert all(isinstance(r, redis.ConnectionError | TimeoutError) for r in results[1:]), results
        with pytest.raises(redis.ConnectionError):
            await reads.get("k0")
    finally:
        await client.aclose()


async def test_a_read_whose_caller_left_does_not_disturb_the_others(private_redis: redis.asyncio.Redis):
    await private_redis.mset({"a": b"1", "b": b"2"})
    reads = CoalescedReads(private_redis, 2.0)
    first = asyncio.create_task(reads.get("a"))
    await asyncio.sleep(0)  # the first read is in flight: the next ones queue
    left = asyncio.create_task(reads.get("a"))
    stays = asyncio.create_task(reads.get("b"))
    await asyncio.sleep(0)
    left.cancel()
    assert await first == b"1"
    assert await stays == b"2"
    assert left.cancelled()


async def test_a_redis_that_stops_answering_does_not_stall_the_queued_reads():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # connections are accepted by the kernel and never answered
        client = redis.asyncio.Redis(host="127.0.0.1", port=silent.getsockname()[1])
        reads = CoalescedReads(client, 0.2)
        try:
            # The first read is bounded by its caller, as every cache call is.
            first = asyncio.create_task(asyncio.wait_for(reads.get("a"), 0.2))
            await asyncio.sleep(0.05)
            started = asyncio.get_running_loop().time()
            queued = asyncio.create_task(reads.get("b"))
            with pytest.raises(TimeoutError):
                await first
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(queued, 5)
            # The shared MGET gave up after its own 0.2 s, not when the caller's patience ran out.
            assert asyncio.get_running_loop().time() - started < 2
        finally:
            await client.aclose()
