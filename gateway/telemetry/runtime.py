"""The process's own stalls: event-loop lag and garbage-collection pauses.

Health checks, cache hits and cloud proxying share one event loop. Anything that holds it delays all of
them at once: a callback that runs long, a worker thread that keeps the GIL, a full collection. These two
histograms (in :class:`gateway.telemetry.metrics.Metrics`) make such stalls visible::

    event_loop_lag_seconds         how late a timer armed every ``interval_s`` fired
    gc_pause_seconds{generation}   how long each collection held the interpreter

:func:`freeze_startup_objects` takes what start-up built (modules, settings, the engines' Python objects,
about 80,000 objects) out of the collector's reach, so that a full collection under load scans only what
requests made since.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import structlog

log = structlog.get_logger(__name__)

__all__ = ["GcPauseTimer", "freeze_startup_objects", "watch_loop_lag"]


class GcPauseTimer:
    """Times every collection through ``gc.callbacks`` while installed (``with`` or install/remove)."""

    def __init__(self, observe: Any) -> None:
        # ``observe(generation, seconds)``; called under the GIL, from whichever thread collected.
        self._observe = observe
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started:
            self._observe(info["generation"], time.perf_counter() - self._started)
            self._started = 0.0

    def install(self) -> None:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def remove(self) -> None:
        # Collections are not re-entrant, so no pause is left half-measured between start and stop.
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def __enter__(self) -> GcPauseTimer:
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


async def watch_loop_lag(observe: Any, stop: asyncio.Event, interval_s: float = 0.1) -> None:
    """Observe, every ``interval_s``, how much later than asked the loop woke this task, until ``stop``."""
    while not stop.is_set():
        asked = time.perf_counter()
        try:
            await asyncio.wait_for(stop.wait(), interval_s)
        except TimeoutError:
            observe(max(0.0, time.perf_counter() - asked - interval_s))


def freeze_startup_objects() -> int:
    """Collect once, then move every surviving object to the permanent generation; returns their count.

    Call it once the engines have loaded. Frozen objects are never scanned again, and never freed if they
    later become cyclic garbage: what start-up built lives as long as the process anyway.
    """
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("runtime.gc_frozen", objects=frozen)
    return frozen
