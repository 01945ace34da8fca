"""The engines' worker pool: a bounded queue that refuses at once when full and frees every slot."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator

import pytest

from gateway.core.errors import ProviderBusy, ProviderTimeout
from providers.workers import Priority, WorkerPool


def blocker(started: threading.Event, release: threading.Event, value: str = "done"):
    def work() -> str:
        started.set()
        if not release.wait(10):
            raise RuntimeError("never released")
        return value

    return work


async def wait_until(event: threading.Event) -> None:
    assert await asyncio.to_thread(event.wait, 5)


async def drained(pool: WorkerPool) -> bool:
    """Abandoned work ends on its own thread; give it a moment."""
    for _ in range(100):
        if pool.outstanding == 0:
            return True
        await asyncio.sleep(0.01)
    return False


@contextlib.contextmanager
def pool_and_release(workers: int, max_queued: int) -> Iterator[tuple[WorkerPool, threading.Event]]:
    """A pool, and the event that lets blocked work finish (set on the way out whatever happened)."""
    pool = WorkerPool("engine", workers=workers, max_queued=max_queued)
    release = threading.Event()
    try:
        yield pool, release
    finally:
        release.set()
        pool.close()


async def test_a_full_queue_refuses_at_once_and_frees_up_as_work_finishes():
    running = threading.Event()
    with pool_and_release(workers=1, max_queued=2) as (pool, release):
        first = asyncio.create_task(pool.run(blocker(running, release, "first"), None))
        await wait_until(running)
        queued = [asyncio.create_task(pool.run(lambda i=i: f"queued {i}", None)) for i in range(2)]
        await asyncio.sleep(0.01)
        assert pool.outstanding == 3

        started = time.monotonic()
        with pytest.raises(ProviderBusy) as caught:
            await pool.run(lambda: "one too many", None)
        assert time.monotonic() - started < 0.05
        assert caught.value.provider == "engine"
        assert caught.value.retryable and caught.value.retry_after_s >= 0.1
        assert "1 workers are busy and 2 requests already wait" in str(caught.value)

        release.set()
        assert (await first).value == "first"
        assert [(await q).value for q in queued] == ["queued 0", "queued 1"]
        assert pool.outstanding == 0
        assert (await pool.run(lambda: "room again", None)).value == "room again"


async def test_no_queue_means_only_the_running_work():
    events = [threading.Event(), threading.Event()]
    with pool_and_release(workers=2, max_queued=0) as (pool, release):
        running = [asyncio.create_task(pool.run(blocker(e, release), None)) for e in events]
        for e in events:
            await wait_until(e)
        with pytest.raises(ProviderBusy):
            await pool.run(lambda: "no room", None)
        release.set()
        await asyncio.gather(*running)
        assert pool.outstanding == 0


async def test_work_abandoned_at_its_deadline_frees_its_slot_only_when_it_ends():
    running = threading.Event()
    with pool_and_release(workers=1, max_queued=1) as (pool, release):
        # The running job outlives its caller's deadline: it still holds the worker.
        with pytest.raises(ProviderTimeout):
            await pool.run(blocker(running, release), timeout_s=0.1)
        assert pool.outstanding == 1
        # A queued job whose caller gives up is dropped from the queue at once.
        with pytest.raises(ProviderTimeout):
            await pool.run(lambda: "never runs", timeout_s=0.1)
        assert pool.outstanding == 1

        held = asyncio.create_task(pool.run(lambda: "after", None))
        await asyncio.sleep(0.01)
        with pytest.raises(ProviderBusy):
            await pool.run(lambda: "no room", None)
        release.set()
        assert (await held).value == "after"
        assert await drained(pool)


async def test_failed_and_cancelled_work_frees_slots_and_the_hint_follows_job_length():
    def fail() -> None:
        raise ValueError("engine error")

    running = threading.Event()
    with pool_and_release(workers=1, max_queued=0) as (pool, release):
        for _ in range(3):
            with pytest.raises(ValueError, match="engine error"):
                await pool.run(fail, None)
        assert pool.outstanding == 0

        task = asyncio.create_task(pool.run(blocker(running, release), None))
        await wait_until(running)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        assert await drained(pool)

        for _ in range(20):
            await pool.run(lambda: time.sleep(0.02), None)
        # Jobs take ~20 ms now, so the hint shrinks to its floor.
        assert pool.retry_after_s() == 0.1


async def test_a_free_worker_takes_the_most_urgent_waiting_job_first():
    running = threading.Event()
    order: list[str] = []
    with pool_and_release(workers=1, max_queued=5) as (pool, release):
        busy = asyncio.create_task(pool.run(blocker(running, release), None))
        await wait_until(running)
        queued = [
            asyncio.create_task(pool.run(lambda name=name: order.append(name), None, priority))
            for name, priority in [
                ("interim 1", Priority.BACKGROUND),
                ("file", Priority.NORMAL),
                ("interim 2", Priority.BACKGROUND),
                ("final", Priority.URGENT),
            ]
        ]
        await asyncio.sleep(0.01)
        # A waiting job its caller gave up on is skipped, and frees its queue slot at once.
        abandoned = asyncio.create_task(pool.run(lambda: order.append("abandoned"), None, Priority.URGENT))
        await asyncio.sleep(0.01)
        assert pool.outstanding == 6
        abandoned.cancel()
        await asyncio.sleep(0.01)
        assert pool.outstanding == 5
        release.set()
        await busy
        await asyncio.gather(*queued)
    assert order == ["final", "file", "interim 1", "interim 2"]
    assert await drained(pool)
