"""The process's stall metrics: a blocked loop shows as lag, a collection as a GC pause, freezing holds."""

from __future__ import annotations

import asyncio
import gc
import time

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.telemetry.metrics import Metrics
from gateway.telemetry.runtime import GcPauseTimer, freeze_startup_objects, watch_loop_lag


def bucket_counts(metrics: Metrics, name: str) -> dict[tuple[str, str], float]:
    """(generation label or "", le) -> cumulative count, as a scraper reads it."""
    text = generate_latest(metrics.registry).decode()
    return {
        (s.labels.get("generation", ""), s.labels["le"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == f"audio_gateway_{name}_bucket"
    }


async def test_a_blocked_loop_shows_as_lag_of_about_the_time_it_was_blocked() -> None:
    metrics, stop = Metrics(), asyncio.Event()
    watcher = asyncio.create_task(watch_loop_lag(metrics.observe_loop_lag, stop, interval_s=0.02))
    await asyncio.sleep(0.1)
    # What a callback that runs long does to everything else on the loop.
    asyncio.get_running_loop().call_soon(time.sleep, 0.3)
    await asyncio.sleep(0.1)
    stop.set()
    await asyncio.wait_for(watcher, 1)

    counts = bucket_counts(metrics, "event_loop_lag_seconds")
    total = counts[("", "+Inf")]
    assert total >= 5
    assert total - counts[("", "0.25")] >= 1  # the timer that was due while the loop was blocked
    assert counts[("", "0.1")] >= 3  # the others, on time or nearly


async def test_the_lag_watch_ends_promptly_when_asked() -> None:
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_loop_lag(lambda _: None, stop, interval_s=60))
    await asyncio.sleep(0)
    stop.set()
    await asyncio.wait_for(watcher, 1)


def test_collections_are_timed_by_generation_while_installed_only() -> None:
    metrics = Metrics()
    with GcPauseTimer(metrics.observe_gc_pause):
        gc.collect()
        gc.collect(0)
    counts = bucket_counts(metrics, "gc_pause_seconds")
    assert counts[("2", "+Inf")] >= 1
    assert counts[("0", "+Inf")] >= 1

    before = dict(counts)
    gc.collect()
    assert bucket_counts(metrics, "gc_pause_seconds") == before


def test_a_timer_installs_once_and_removes_cleanly() -> None:
    timer = GcPauseTimer(lambda generation, seconds: None)
    callbacks = len(gc.callbacks)
    timer.install()
    timer.install()
    assert len(gc.callbacks) == callbacks + 1
    timer.remove()
    timer.remove()
    assert len(gc.callbacks) == callbacks


def test_freezing_moves_live_objects_out_of_the_collectors_reach() -> None:
    try:
        frozen = freeze_startup_objects()
        assert frozen == gc.get_freeze_count() > 1000
        # What the collector still scans is only what was made after the freeze.
        assert len(gc.get_objects()) < frozen
    finally:
        gc.unfreeze()
