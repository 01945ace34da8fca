"""A worker pool for in-process engines, so inference never blocks the event loop.

The engines (CTranslate2, onnxruntime, llama.cpp) release the GIL while they
compute, so threads give real parallelism and keep health checks responsive.

The queue in front of the workers is bounded (``max_queued``): past it a call
fails at once with :class:`ProviderBusy`, so the router can try another
candidate instead of leaving the caller behind a growing backlog. A free worker
takes the waiting job of the highest :class:`Priority` first: a live stream's
final result does not wait behind other streams' interim steps.
"""

from __future__ import annotations

import asyncio
import enum
import heapq
import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from gateway.core.errors import ProviderBusy, ProviderTimeout

T = TypeVar("T")

# Before any work has finished, assume a job takes this long (it only shapes the first retry hints).
_FIRST_GUESS_S = 1.0
# Weight of the newest job in the typical duration.
_ALPHA = 0.2
_MIN_RETRY_S = 0.1


class Priority(enum.IntEnum):
    """Which waiting job a free worker takes first (then the oldest)."""

    URGENT = 0  # someone is waiting for this now: a live stream's final result
    NORMAL = 1
    BACKGROUND = 2  # superseded soon anyway: a live stream's interim step


@dataclass(frozen=True)
class Timed(Generic[T]):
    value: T
    compute_s: float  # wall time the work held a worker (what the node is billed for)


@dataclass(order=True)
class _Job:
    priority: int
    seq: int
    call: Callable[[], Any] = field(compare=False)
    future: Future[Any] = field(compare=False)


class WorkerPool:
    def __init__(self, name: str, workers: int, max_queued: int) -> None:
        self._name = name
        self._workers = workers
        self._max_queued = max_queued
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        # Jobs submitted and not finished, running or queued. Work abandoned at its deadline still
        # counts until it ends: it holds a worker all the same.
        self._outstanding = 0
        # Jobs on a worker. Only that many are handed to the executor; the rest wait here, in priority
        # order, so a job that matters now is not stuck behind a queue of ones that do not.
        self._running = 0
        self._waiting: list[_Job] = []
        self._seq = itertools.count()
        self._typical_s = _FIRST_GUESS_S
        self._lock = threading.Lock()

    @property
    def outstanding(self) -> int:
        return self._outstanding

    def retry_after_s(self) -> float:
        """Roughly when a queue slot frees: one of the workers finishing its current job."""
        return max(_MIN_RETRY_S, round(self._typical_s / self._workers, 1))

    async def run(
        self,
        fn: Callable[[], T],
        timeout_s: float | None,
        priority: Priority = Priority.NORMAL,
        *,
        admitted: bool = False,
    ) -> Timed[T]:
        """Run ``fn`` on a worker. Raises :class:`ProviderBusy` when ``max_queued`` jobs already wait,
        unless the caller has ``admitted`` the work already (it counts its requests itself, and a refusal
        now would strand ones it let in).

        Waiting jobs start in ``priority`` order, oldest first within one priority. Work still queued
        when the deadline passes is skipped; work already running cannot be interrupted and finishes
        in the background."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s

        def call() -> Timed[T]:
            if deadline is not None and time.monotonic() >= deadline:
                raise ProviderTimeout(self._name, "the deadline passed while the request was queued")
            started = time.perf_counter()
            value = fn()
            elapsed = time.perf_counter() - started
            with self._lock:
                self._typical_s += _ALPHA * (elapsed - self._typical_s)
            return Timed(value, elapsed)

        job = _Job(int(priority), next(self._seq), call, Future())
        with self._lock:
            if not admitted and self._outstanding >= self._workers + self._max_queued:
                raise ProviderBusy(
                    self._name,
                    f"all {self._workers} workers are busy and {self._max_queued} requests already wait",
                    self.retry_after_s(),
                )
            self._outstanding += 1
            if self._running < self._workers:
                self._running += 1
                start = job.future.set_running_or_notify_cancel()
            else:
                heapq.heappush(self._waiting, job)
                start = False
        # Runs when the job ends, or is cancelled while it waits, whoever was waiting for it.
        job.future.add_done_callback(self._finished)
        if start:
            self._submit(job)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(job.future), timeout_s)
        except TimeoutError as exc:
            raise ProviderTimeout(self._name, f"no result within {timeout_s:.1f} s") from exc

    def _submit(self, job: _Job) -> None:
        try:
            self._executor.submit(self._execute, job)
        except BaseException as exc:  # the pool was closed
            job.future.set_exception(exc)
            self._next()

    def _execute(self, job: _Job) -> None:
        try:
            job.future.set_result(job.call())
        except BaseException as exc:
            job.future.set_exception(exc)
        finally:
            self._next()

    def _next(self) -> None:
        """A worker is free: hand it the first waiting job that was not given up on."""
        with self._lock:
            while self._waiting:
                job = heapq.heappop(self._waiting)
                if job.future.set_running_or_notify_cancel():
                    break
            else:
                self._running -= 1
                return
        self._submit(job)

    def _finished(self, _job: Future[object] | None) -> None:
        with self._lock:
            self._outstanding -= 1

    def close(self) -> None:
        with self._lock:
            waiting, self._waiting = self._waiting, []
        for job in waiting:
            job.future.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)
