"""Windows of concurrent requests decoded together: who is batched with whom, what each request gets back,
and what a request that gives up leaves behind. A stand-in decoder (no model) that can be held mid-call."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest

from providers.window_batches import WindowBatcher
from providers.workers import WorkerPool


class Decoder:
    """Names each window by its first sample; the first call can be held until released."""

    def __init__(self, hold_first: bool = False) -> None:
        self.calls: list[tuple[str, list[int]]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        if not hold_first:
            self.release.set()

    def __call__(self, key: str, audios: Sequence[np.ndarray]) -> list[str]:
        self.calls.append((key, [int(a[0]) for a in audios]))
        self.started.set()
        if not self.release.wait(10):
            raise RuntimeError("never released")
        return [f"{key}:{int(a[0])}" for a in audios]


def audio(tag: int, seconds: float = 1.0) -> np.ndarray:
    return np.full(int(16_000 * seconds), tag, dtype=np.float32)


@pytest.fixture
def pool():
    pool = WorkerPool("test", 2, 0)
    yield pool
    pool.close()


async def _held(decoder: Decoder, batcher: WindowBatcher[str, str]) -> asyncio.Task[object]:
    """A first request whose call is on the worker, held there."""
    first = asyncio.create_task(batcher.decode("en", [audio(0)]))
    assert await asyncio.to_thread(decoder.started.wait, 5)
    return first


async def test_a_lone_request_is_decoded_at_once_in_one_call(pool):
    decoder = Decoder()
    batcher = WindowBatcher(pool, decoder, batch_size=8)
    shares = await asyncio.wait_for(batcher.decode("en", [audio(1), audio(2), audio(3)]), 5)
    assert [s.value for s in shares] == ["en:1", "en:2", "en:3"]
    assert decoder.calls == [("en", [1, 2, 3])] and batcher.calls == 1


async def test_windows_that_arrive_while_the_worker_is_busy_share_the_next_call(pool):
    decoder = Decoder(hold_first=True)
    batcher = WindowBatcher(pool, decoder, batch_size=8)
    first = await _held(decoder, batcher)
    others = [asyncio.create_task(batcher.decode("en", [audio(tag)])) for tag in (1, 2, 3, 4)]
    two_windows = asyncio.create_task(batcher.decode("en", [audio(5), audio(6)]))
    await asyncio.sleep(0.05)
    decoder.release.set()
    results = await asyncio.wait_for(asyncio.gather(first, *others, two_windows), 5)
    # Six requests, two model calls; each request gets its own windows' results, in order.
    assert decoder.calls == [("en", [0]), ("en", [1, 2, 3, 4, 5, 6])]
    assert [[s.value for s in shares] for shares in results] == [
        ["en:0"],
        ["en:1"],
        ["en:2"],
        ["en:3"],
        ["en:4"],
        ["en:5", "en:6"],
    ]


async def test_a_batch_holds_at_most_batch_size_windows_of_one_key(pool):
    decoder = Decoder(hold_first=True)
    batcher = WindowBatcher(pool, decoder, batch_size=2)
    first = await _held(decoder, batcher)
    english = asyncio.create_task(batcher.decode("en", [audio(1), audio(2), audio(3)]))
    french = asyncio.create_task(batcher.decode("fr", [audio(4)]))
    await asyncio.sleep(0.05)
    decoder.release.set()
    await asyncio.wait_for(asyncio.gather(first, english, french), 5)
    # The oldest window's key goes first, its kin with it; another language waits for a call of its own.
    assert decoder.calls == [("en", [0]), ("en", [1, 2]), ("en", [3]), ("fr", [4])]


async def test_a_request_that_gives_up_leaves_its_queued_windows_out_and_the_others_unharmed(pool):
    decoder = Decoder(hold_first=True)
    batcher = WindowBatcher(pool, decoder, batch_size=8)
    first = await _held(decoder, batcher)
    kept = asyncio.create_task(batcher.decode("en", [audio(1)]))
    given_up = asyncio.create_task(batcher.decode("en", [audio(2), audio(3)]))
    await asyncio.sleep(0.05)
    given_up.cancel()
    await asyncio.sleep(0.05)
    decoder.release.set()
    assert [s.value for s in await asyncio.wait_for(kept, 5)] == ["en:1"]
    await first
    assert decoder.calls == [("en", [0]), ("en", [1])]
    with pytest.raises(asyncio.CancelledError):
        await given_up


async def test_a_request_cancelled_during_its_batch_does_not_break_the_others(pool):
    decoder = Decoder(hold_first=True)
    batcher = WindowBatcher(pool, decoder, batch_size=8)
    cancelled = asyncio.create_task(batcher.decode("en", [audio(0)]))
    assert await asyncio.to_thread(decoder.started.wait, 5)
    # Its window is on the worker now, in a batch that cannot be interrupted.
    cancelled.cancel()
    later = asyncio.create_task(batcher.decode("en", [audio(1)]))
    decoder.release.set()
    assert [s.value for s in await asyncio.wait_for(later, 5)] == ["en:1"]
    with pytest.raises(asyncio.CancelledError):
        await cancelled


async def test_a_batch_s_worker_time_is_shared_out_by_audio(pool):
    decoder = Decoder(hold_first=True)
    batcher = WindowBatcher(pool, decoder, batch_size=8)
    first = await _held(decoder, batcher)
    short = asyncio.create_task(batcher.decode("en", [audio(1, seconds=1.0)]))
    long = asyncio.create_task(batcher.decode("en", [audio(2, seconds=3.0)]))
    await asyncio.sleep(0.05)
    decoder.release.set()
    await first
    (short_share,), (long_share,) = await asyncio.wait_for(asyncio.gather(short, long), 5)
    assert long_share.compute_s == pytest.approx(3 * short_share.compute_s)
    assert short_share.compute_s > 0


async def test_a_failed_call_fails_its_windows_and_the_next_call_still_runs(pool):
    calls: list[list[int]] = []

    def decode(key: str, audios: Sequence[np.ndarray]) -> list[str]:
        calls.append([int(a[0]) for a in audios])
        if int(audios[0][0]) == 9:
            raise ValueError("the engine failed")
        return [str(int(a[0])) for a in audios]

    batcher = WindowBatcher(pool, decode, batch_size=1)
    failing = asyncio.create_task(batcher.decode("en", [audio(9)]))
    fine = asyncio.create_task(batcher.decode("en", [audio(1)]))
    with pytest.raises(ValueError):
        await asyncio.wait_for(failing, 5)
    assert [s.value for s in await asyncio.wait_for(fine, 5)] == ["1"]


async def test_results_are_told_as_they_arrive(pool):
    told: list[tuple[int, str]] = []
    batcher = WindowBatcher(pool, Decoder(), batch_size=1)
    await asyncio.wait_for(
        batcher.decode("en", [audio(1), audio(2)], lambda i, share: told.append((i, share.value))), 5
    )
    assert told == [(0, "en:1"), (1, "en:2")]


async def test_waiting_windows_are_shared_among_the_free_workers(pool):
    both_busy = threading.Barrier(2, timeout=5)
    calls: list[list[int]] = []

    def decoder(key: str, audios: Sequence[np.ndarray]) -> list[str]:
        calls.append([int(a[0]) for a in audios])
        both_busy.wait()  # decodes take seconds: both calls run side by side
        return [f"{key}:{int(a[0])}" for a in audios]

    batcher = WindowBatcher(pool, decoder, batch_size=8, takers=2, gather_s=5)
    with contextlib.ExitStack() as planning:
        arrivals = [planning.enter_context(batcher.planning()) for _ in range(8)]
        requests = [
            asyncio.create_task(batcher.decode("en", [audio(tag)], arrived=arrived))
            for tag, arrived in enumerate(arrivals)
        ]
        started = time.monotonic()
        results = await asyncio.wait_for(asyncio.gather(*requests), 5)
    # Eight windows, two free workers: four each, at once, not eight on one and none on the other.
    assert sorted(len(tags) for tags in calls) == [4, 4]
    assert sorted(tag for tags in calls for tag in tags) == list(range(8))
    assert [s.value for shares in results for s in shares] == [f"en:{tag}" for tag in range(8)]
    assert time.monotonic() - started < 2  # the last arrival ended the gathering, not the 5 s limit


async def test_a_free_worker_waits_for_windows_still_being_found(pool):
    decoder = Decoder()
    batcher = WindowBatcher(pool, decoder, batch_size=8, takers=2, gather_s=5)
    with batcher.planning() as arrived:
        first = asyncio.create_task(batcher.decode("en", [audio(1)]))
        await asyncio.sleep(0.2)
        assert decoder.calls == []  # another request's speech is still being found
        second = asyncio.create_task(batcher.decode("en", [audio(2)], arrived=arrived))
        await asyncio.wait_for(asyncio.gather(first, second), 5)
    assert [tags for _, tags in decoder.calls] in ([[1], [2]], [[2], [1]])


async def test_a_request_whose_planning_fails_releases_the_waiting_workers(pool):
    decoder = Decoder()
    batcher = WindowBatcher(pool, decoder, batch_size=8, gather_s=5)
    with contextlib.suppress(ValueError), batcher.planning():
        first = asyncio.create_task(batcher.decode("en", [audio(1)]))
        await asyncio.sleep(0.05)
        raise ValueError("no speech could be found")
    started = time.monotonic()
    await asyncio.wait_for(first, 5)
    assert time.monotonic() - started < 2
    assert decoder.calls == [("en", [1])]


async def test_gathering_gives_up_after_its_limit(pool):
    decoder = Decoder()
    batcher = WindowBatcher(pool, decoder, batch_size=8, gather_s=0.2)
    with batcher.planning():  # a request whose windows never come
        started = time.monotonic()
        await asyncio.wait_for(batcher.decode("en", [audio(1)]), 5)
        waited = time.monotonic() - started
    assert 0.15 <= waited < 2
    assert decoder.calls == [("en", [1])]


async def test_nothing_waits_when_no_request_is_being_planned(pool):
    decoder = Decoder()
    batcher = WindowBatcher(pool, decoder, batch_size=8, takers=2, gather_s=5)
    started = time.monotonic()
    await asyncio.wait_for(batcher.decode("en", [audio(1), audio(2)]), 5)
    assert time.monotonic() - started < 2
    assert sorted(tag for _, tags in decoder.calls for tag in tags) == [1, 2]


async def test_a_taker_cancelled_while_gathering_gives_its_place_back(pool):
    decoder = Decoder()
    batcher = WindowBatcher(pool, decoder, batch_size=8, gather_s=5)
    with batcher.planning():
        waiting = asyncio.create_task(batcher.decode("en", [audio(1)]))
        await asyncio.sleep(0.05)
        for task in list(batcher._tasks):  # what a loop shutting down does to it
            task.cancel()
        await asyncio.sleep(0.05)
        waiting.cancel()
    # The cancelled taker left no phantom behind: the next request gets a taker and is decoded.
    assert [s.value for s in await asyncio.wait_for(batcher.decode("en", [audio(2)]), 5)] == ["en:2"]
