"""Cache reads that share round trips: a GET issued while another is in flight waits and leaves with the
other waiting GETs as one MGET.

Alone (one request at a time) a read is a plain GET, sent at once. Under concurrency, every GET sent is a
write that wakes Redis and a reply that wakes the gateway; at 64 cache hits in flight those wake-ups, not
Redis's work, were most of what a hit cost. Queued reads wait at most for the round trip in flight, and
then share one.

Errors (a timeout included) reach every read of the batch that failed. A read whose caller gave up (its
timeout, its cancellation) is simply not answered; the others are.
"""

from __future__ import annotations

import asyncio
import contextlib

from redis.asyncio import Redis


class CoalescedReads:
    def __init__(self, redis: Redis, timeout_s: float) -> None:
        self._redis = redis
        # Bounds each shared MGET: its callers time out on their own, but the queue must not stall on a
        # Redis that stopped answering.
        self._timeout_s = timeout_s
        self._busy = False
        self._queued: dict[str, list[asyncio.Future[bytes | None]]] = {}
        self._server: asyncio.Task[None] | None = None

    async def get(self, key: str) -> bytes | None:
        if self._busy:
            waiter: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
            self._queued.setdefault(key, []).append(waiter)
            return await waiter
        self._busy = True
        try:
            value: bytes | None = await self._redis.get(key)
            return value
        finally:
            if self._queued:
                # Still busy: the queue is served by a task of its own, so this caller returns now.
                self._server = asyncio.create_task(self._serve_queue())
            else:
                self._busy = False

    async def _serve_queue(self) -> None:
        try:
            while self._queued:
                batch, self._queued = self._queued, {}
                try:
                    async with asyncio.timeout(self._timeout_s):
                        values = await self._redis.mget(list(batch))
                except Exception as exc:
                    for waiters in batch.values():
                        _fail(waiters, exc)
                    continue
                except BaseException:
                    for waiters in (*batch.values(), *self._queued.values()):
                        for waiter in waiters:
                            waiter.cancel()
                    self._queued = {}
                    raise
                for waiters, value in zip(batch.values(), values, strict=True):
                    for waiter in waiters:
                        if not waiter.done():
                            waiter.set_result(value)
        finally:
            self._busy = False
            self._server = None


def _fail(waiters: list[asyncio.Future[bytes | None]], exc: Exception) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_exception(exc)
            # Marked retrieved: a waiter whose caller already left must not warn when collected.
            with contextlib.suppress(BaseException):
                waiter.exception()
