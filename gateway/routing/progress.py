"""A call followed as it runs: the progress its engine reports, then its result.

The call itself is unchanged (the same pipeline, cache, ledger and billing); it only runs with a reporter
installed (:mod:`gateway.core.progress`). Reports may come from worker threads: they are handed to the
event loop, coalesced (a slow reader gets the latest, not a backlog) and passed on only when they move
forward, so the caller sees the audio done rise and never fall.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TypeVar

from gateway.core.progress import AudioProgress, context_with

T = TypeVar("T")


async def followed(call: Callable[[], Awaitable[T]]) -> AsyncGenerator[AudioProgress | T, None]:
    """Progress reports while ``call`` runs, then its result (its error, if it fails)."""
    loop = asyncio.get_running_loop()
    reports: asyncio.Queue[AudioProgress] = asyncio.Queue()

    def report(update: AudioProgress) -> None:
        # A report after the loop closed has nobody left to tell.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(reports.put_nowait, update)

    async def run() -> T:
        return await call()

    task = asyncio.create_task(run(), context=context_with(report))
    done_s = 0.0
    try:
        while not task.done():
            waiting = asyncio.ensure_future(reports.get())
            await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
            if not waiting.done():
                waiting.cancel()
                break
            latest = waiting.result()
            while not reports.empty():
                latest = max(latest, reports.get_nowait(), key=lambda update: update.done_s)
            if latest.done_s > done_s:
                done_s = latest.done_s
                yield AudioProgress(min(done_s, latest.total_s), latest.total_s)
        result = await task
    finally:
        if not task.done():
            # The caller went away: the call is cancelled as a unary call would be.
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    yield result
