"""Driving a provider's TranscriptionStream in tests: PCM to send, and the events that come back."""

from __future__ import annotations

import asyncio
import math

import numpy as np

from gateway.core.streaming import SpeechEvent, SpeechEventKind, StreamEvent, StreamResult
from providers.base import TranscriptionStream

RATE = 16_000


def pcm(seconds: float, rate: int = RATE) -> bytes:
    """A quiet tone: the fakes hear their script by the amount of audio, not by what it sounds like."""
    t = np.arange(math.ceil(seconds * rate)) / rate
    return (np.sin(2 * np.pi * 220.0 * t) * 3_000).astype("<i2").tobytes()


def chunks(audio: bytes, seconds: float = 0.1, rate: int = RATE) -> list[bytes]:
    size = int(seconds * rate) * 2
    return [audio[i : i + size] for i in range(0, len(audio), size)]


async def send_all(stream: TranscriptionStream, audio: bytes, chunk_s: float = 0.1) -> None:
    """As fast as the socket takes it: real-time pacing belongs in bench/."""
    for chunk in chunks(audio, chunk_s):
        await stream.send(chunk)
        await asyncio.sleep(0)


class Collector:
    """Iterates ``events()`` on its own task, as the gateway does while it keeps sending."""

    def __init__(self, stream: TranscriptionStream) -> None:
        self.events: list[StreamEvent] = []
        self.error: BaseException | None = None
        self._arrived = asyncio.Event()
        self.task = asyncio.create_task(self._run(stream))

    async def _run(self, stream: TranscriptionStream) -> None:
        try:
            async for event in stream.events():
                self.events.append(event)
                self._arrived.set()
        except Exception as exc:
            self.error = exc

    async def finished(self, within_s: float = 10.0) -> list[StreamEvent]:
        await asyncio.wait_for(self.task, within_s)
        return self.events

    async def until_final(self, count: int = 1, within_s: float = 10.0) -> list[StreamResult]:
        async def wait() -> None:
            while len(self.finals) < count:
                if self.task.done():
                    raise AssertionError(f"the stream ended after {self.finals!r} ({self.error!r})")
                self._arrived.clear()
                arrival = asyncio.ensure_future(self._arrived.wait())
                await asyncio.wait({self.task, arrival}, return_when=asyncio.FIRST_COMPLETED)
                arrival.cancel()

        await asyncio.wait_for(wait(), within_s)
        return self.finals

    @property
    def finals(self) -> list[StreamResult]:
        return [e for e in self.events if isinstance(e, StreamResult) and e.is_final]

    @property
    def interims(self) -> list[StreamResult]:
        return [e for e in self.events if isinstance(e, StreamResult) and not e.is_final]

    @property
    def speech(self) -> list[tuple[SpeechEventKind, float]]:
        return [(e.kind, round(e.at_s, 3)) for e in self.events if isinstance(e, SpeechEvent)]
