"""What the websocket streaming adapters share: the event channel a stream's ``events()`` reads.

A vendor's socket is read by a task of the adapter, which puts results and speech events here; a failure
(the socket dropped, an error message, a refused session) is put here too, and :meth:`LiveEvents.iterate`
raises it to whoever iterates ``events()``: a failure is never swallowed, and the first one wins.

A vendor that hangs does not close anything, so it is caught by a watchdog: while the vendor *owes* an
answer (audio it answers continuously, or a flush it was asked for), it must say something within
``stall_s`` of the last thing it said, or the stream fails with :class:`ProviderTimeout` and the socket
is dropped. Answers to older audio keep the wait going; only the adapter knows when the vendor has caught
up, and says so with :meth:`LiveEvents.settle`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from gateway.core.errors import ProviderError, ProviderTimeout
from gateway.core.streaming import StreamEvent

# The default for how long a vendor may leave an owed answer unsaid (`stream_stall_s` in `options:`).
DEFAULT_STALL_S = 5.0
# Option keys the streaming adapters read themselves; never sent to a vendor.
STREAM_OPTIONS = frozenset({"stream_stall_s", "streaming_url", "streaming_model"})


class _Wake:
    """Wakes the iterator so it re-reads the watchdog's deadline (something became owed)."""


_WAKE = _Wake()
_END = None


def stall_seconds(options: dict[str, str | bool | int | float], provider: str) -> float:
    value = options.get("stream_stall_s", DEFAULT_STALL_S)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"provider {provider!r}: stream_stall_s must be a positive number of seconds")
    return float(value)


class LiveEvents:
    def __init__(self, provider: str, stall_s: float) -> None:
        self._provider = provider
        self._stall_s = stall_s
        self._queue: asyncio.Queue[StreamEvent | ProviderError | _Wake | None] = asyncio.Queue()
        self._owed_since: float | None = None
        self._finished = False
        self._reached_s = 0.0

    @property
    def acknowledged_s(self) -> float:
        """The furthest point on the audio timeline the vendor's messages have reached."""
        return self._reached_s

    def reached(self, at_s: float) -> None:
        """The vendor said something about the audio up to ``at_s``: it heard that much."""
        self._reached_s = max(self._reached_s, at_s)

    @property
    def finished(self) -> bool:
        """True once the stream ended or failed: nothing more will be put."""
        return self._finished

    def owe(self) -> None:
        """The vendor owes an answer from now on (audio sent, a flush asked for)."""
        if self._owed_since is None and not self._finished:
            self._owed_since = time.monotonic()
            self._queue.put_nowait(_WAKE)

    def heard(self) -> None:
        """The vendor said something: it is alive, so the wait for what it still owes starts again."""
        if self._owed_since is not None:
            self._owed_since = time.monotonic()

    def settle(self) -> None:
        """The vendor has answered everything it owed."""
        self._owed_since = None

    def put(self, event: StreamEvent) -> None:
        if not self._finished:
            self._queue.put_nowait(event)

    def fail(self, error: ProviderError) -> None:
        if not self._finished:
            self._finished = True
            self._queue.put_nowait(error)

    def end(self) -> None:
        if not self._finished:
            self._finished = True
            self._queue.put_nowait(_END)

    async def iterate(self, on_stall: Callable[[], Awaitable[None]]) -> AsyncIterator[StreamEvent]:
        while True:
            timeout = None
            if self._owed_since is not None and not self._finished:
                timeout = max(self._owed_since + self._stall_s - time.monotonic(), 0.0)
            try:
                item = await asyncio.wait_for(self._queue.get(), timeout)
            except TimeoutError:
                if self._owed_since is None or self._finished:
                    continue
                waited = time.monotonic() - self._owed_since
                if waited < self._stall_s:
                    continue
                self.fail(ProviderTimeout(self._provider, f"the stream went silent for {waited:.1f} s"))
                await on_stall()
                continue
            if isinstance(item, _Wake):
                continue
            if item is _END:
                return
            if isinstance(item, ProviderError):
                raise item
            yield item
