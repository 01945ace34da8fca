"""A worker pool for in-process engines, so inference never blocks the event loop.

The engines (CTranslate2, onnxruntime, llama.cpp) release the GIL while they
compute, so threads give real parallelism and keep health checks responsive.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from gateway.core.errors import ProviderTimeout

T = TypeVar("T")


@dataclass(frozen=True)
class Timed(Generic[T]):
    value: T
    compute_s: float  # wall time the work held a worker (what the node is billed for)


class WorkerPool:
    def __init__(self, name: str, workers: int) -> None:
        self._name = name
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)

    async def run(self, fn: Callable[[], T], timeout_s: float | None) -> Timed[T]:
        """Run ``fn`` on a worker. Work still queued when the deadline passes is skipped;
        work already running cannot be interrupted and finishes in the background."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s

        def call() -> Timed[T]:
            if deadline is not None and time.monotonic() >= deadline:
                raise ProviderTimeout(self._name, "the deadline passed while the request was queued")
            started = time.perf_counter()
            value = fn()
            return Timed(value, time.perf_counter() - started)

        future = asyncio.get_running_loop().run_in_executor(self._executor, call)
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError as exc:
            raise ProviderTimeout(self._name, f"no result within {timeout_s:.1f} s") from exc

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
