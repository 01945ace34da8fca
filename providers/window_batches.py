"""Windows of audio from concurrent requests, decoded together in one batched model call.

Whisper's beam search goes one small step at a time; a batch of windows takes those steps together.
Each request hands its windows here and waits for their results; a worker that comes free takes its share
of the waiting windows that can share its model call, and each result goes back to its own request.

- **Shares.** The waiting windows are divided among the workers that are about to take some, up to
  ``batch_size`` each: eight windows on two free workers go four and four, not eight and none. The
  encoder, most of the work, gains nothing from a batch, while two workers keep both cores busy.
- **Gathering.** A burst of requests reaches the batcher one by one, as each request's speech is found
  (VAD, tens of ms each, one after the other). While requests are still being planned, a free worker
  waits for their windows, up to ``gather_s``, rather than decoding the first window alone and the rest
  in one batch behind it. With nobody planning, nothing waits: a lone request starts at once.

On 2 cores, eight concurrent 10 s requests took 2.05 s instead of 2.5 s this way (against 3.9 s one after
the other straight from faster-whisper; docs/providers.md has the figures).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from providers.workers import Timed, WorkerPool

K = TypeVar("K")  # what windows must share to be decoded in one call (language, task, ...)
R = TypeVar("R")  # one window's result


@dataclass(frozen=True)
class Share(Generic[R]):
    """One window's result and its share of the worker time of the call that decoded it."""

    value: R
    compute_s: float


@dataclass(eq=False)
class _Window(Generic[K, R]):
    key: K
    audio: np.ndarray
    future: asyncio.Future[Share[R]]
    # Set on the event loop when the request stops waiting (cancelled, timed out); read by workers.
    abandoned: bool = False


@dataclass
class _Taken(Generic[K, R]):
    windows: list[_Window[K, R]] = field(default_factory=list)


# Decodes windows that share a key, one result per window, in order (runs on a worker).
BatchDecoder = Callable[[K, Sequence[np.ndarray]], list[R]]


class WindowBatcher(Generic[K, R]):
    def __init__(
        self,
        pool: WorkerPool,
        decode: BatchDecoder[K, R],
        batch_size: int,
        takers: int = 1,
        gather_s: float = 0.0,
    ) -> None:
        self._pool = pool
        self._decode = decode
        self._batch_size = batch_size
        # Batches on workers at once. One alone leaves a core idle while a lone window decodes (a single
        # window's small matrices spread badly over threads); the engine runs one per worker.
        self._max_takers = takers
        self._takers = 0
        self._decoding = 0  # takers that hold windows; the others are about to take their share
        self._gather_s = gather_s
        self._planning = 0  # requests whose windows are still being found
        self._waiting: list[asyncio.Future[None]] = []  # free workers gathering, woken by arrivals
        self._pending: list[_Window[K, R]] = []
        self._lock = threading.Lock()  # pending is read by workers
        self._tasks: set[asyncio.Task[None]] = set()
        self.calls = 0  # model calls made, for tests and metrics

    @contextlib.contextmanager
    def planning(self) -> Iterator[Callable[[], None]]:
        """Around finding a request's windows: free workers gather them rather than start without them.

        Yields ``arrived``, to pass to :meth:`decode` so that the windows count as there the moment they
        are queued; leaving the block without it (no speech, an error) counts the same.
        """
        self._planning += 1
        pending = True

        def arrived() -> None:
            nonlocal pending
            if pending:
                pending = False
                self._planning -= 1
                self._wake()

        try:
            yield arrived
        finally:
            arrived()

    async def decode(
        self,
        key: K,
        audios: Sequence[np.ndarray],
        done: Callable[[int, Share[R]], None] | None = None,
        arrived: Callable[[], None] | None = None,
    ) -> list[Share[R]]:
        """Each window's result, in order. ``done`` is told of each one as it arrives (on the loop);
        ``arrived`` (from :meth:`planning`) is called once the windows are queued."""
        loop = asyncio.get_running_loop()
        windows: list[_Window[K, R]] = [_Window(key, audio, loop.create_future()) for audio in audios]
        if done is not None:
            for index, window in enumerate(windows):
                window.future.add_done_callback(functools.partial(_tell, done, index))
        with self._lock:
            self._pending.extend(windows)
        if arrived is not None:
            arrived()
        self._wake()
        self._start_takers()
        try:
            return [await window.future for window in windows]
        finally:
            # A request that stopped waiting leaves its queued windows to nobody: drop them.
            with self._lock:
                for window in windows:
                    window.abandoned = True
                self._pending = [w for w in self._pending if not w.abandoned]
            for window in windows:
                # One failed window fails the request; the others' failures are the same news.
                if window.future.done() and not window.future.cancelled():
                    window.future.exception()

    def _start_takers(self) -> None:
        with self._lock:
            wanted = min(self._max_takers - self._takers, len(self._pending))
            self._takers += max(0, wanted)
        for _ in range(wanted):
            task = asyncio.get_running_loop().create_task(self._take())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _grab(self, taken: _Taken[K, R]) -> None:
        """On a worker that has just come free: the oldest waiting window and those after it that can share
        its call."""
        with self._lock:
            live = [w for w in self._pending if not w.abandoned]
            if live:
                key = live[0].key
                share = math.ceil(len(live) / max(1, self._takers - self._decoding))
                taken.windows = [w for w in live if w.key == key][: min(share, self._batch_size)]
            chosen = {id(w) for w in taken.windows}
            self._pending = [w for w in live if id(w) not in chosen]
            self.calls += bool(taken.windows)
            self._decoding += bool(taken.windows)

    async def _gather(self) -> None:
        """Wait, up to ``gather_s``, while requests are still finding windows that would fill a batch."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._gather_s
        while self._planning and len(self._pending) < self._batch_size * self._max_takers:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            arrival = loop.create_future()
            self._waiting.append(arrival)
            try:
                await asyncio.wait_for(arrival, remaining)
            except TimeoutError:
                return
            finally:
                self._waiting.remove(arrival)

    def _wake(self) -> None:
        for arrival in self._waiting:
            if not arrival.done():
                arrival.set_result(None)

    async def _take(self) -> None:
        taken: _Taken[K, R] = _Taken()

        def work() -> list[R]:
            self._grab(taken)
            if not taken.windows:
                return []
            return self._decode(taken.windows[0].key, [w.audio for w in taken.windows])

        try:
            # Inside the try: a taker cancelled while it gathers still gives its place back (finally).
            if self._gather_s:
                await self._gather()
            # The requests were admitted when they came in; their windows are not refused now.
            timed: Timed[list[R]] = await self._pool.run(work, None, admitted=True)
        except Exception as exc:
            for window in taken.windows:
                if not window.future.done():
                    window.future.set_exception(exc)
            if not taken.windows:  # the job never ran (the pool is closed): nobody will take the rest
                self._fail_pending(exc)
        else:
            total = sum(w.audio.size for w in taken.windows) or 1
            for window, value in zip(taken.windows, timed.value, strict=True):
                if not window.future.done():
                    # Each request is billed its audio's share of the call's worker time.
                    window.future.set_result(Share(value, timed.compute_s * window.audio.size / total))
        finally:
            with self._lock:
                self._takers -= 1
                self._decoding -= bool(taken.windows)
            self._start_takers()

    def _fail_pending(self, exc: Exception) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for window in pending:
            if not window.future.done():
                window.future.set_exception(exc)


def _tell(done: Callable[[int, Share[R]], None], index: int, future: asyncio.Future[Share[R]]) -> None:
    if not future.cancelled() and future.exception() is None:
        done(index, future.result())
