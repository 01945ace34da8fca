"""A probed upload, as providers receive it: the original bytes, what the probe measured, and samples
decoded on demand."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import numpy as np

from gateway.core.audio.probe import ProbeResult

# Runs the bounded decode of (original bytes, probe) somewhere other than the event loop.
Decode = Callable[[bytes, ProbeResult], Awaitable[np.ndarray]]


class Recording:
    """An upload the probe accepted. Cloud providers send ``original`` untouched; local engines await
    :meth:`samples`, which decodes once, on first use, and shares the result with every caller."""

    def __init__(self, original: bytes, mime_type: str, probed: ProbeResult, decode: Decode) -> None:
        self.original = original
        self.mime_type = mime_type
        self.probed = probed
        self.container = probed.container
        self.codec = probed.codec
        self.sample_rate = probed.sample_rate  # the upload's own; samples() are at ASR_SAMPLE_RATE
        self.channels = probed.channels
        self.duration_s = probed.duration_s  # the billed duration, as the probe measured it
        self._decode = decode
        self._decoding: asyncio.Future[np.ndarray] | None = None

    @property
    def decode_started(self) -> bool:
        """Whether anyone has asked for the samples (and so started the decode)."""
        return self._decoding is not None

    async def samples(self) -> np.ndarray:
        """16 kHz mono float32 in [-1, 1], read-only. Raises InvalidInput / UnsupportedAudio (the
        caller's input errors) when the audio cannot be decoded within its bounds."""
        if self._decoding is None:
            self._decoding = asyncio.ensure_future(self._decode(self.original, self.probed))
            # A failure nobody awaits any more (every caller timed out) is not worth a warning.
            self._decoding.add_done_callback(lambda done: done.cancelled() or done.exception())
        # Shielded: one caller giving up (its deadline) must not cancel the decode the others share.
        return await asyncio.shield(self._decoding)

    def __repr__(self) -> str:
        p = self.probed
        return (
            f"Recording({p.container}/{p.codec}, {p.sample_rate} Hz, {p.channels} ch, {p.duration_s:.2f} s, "
            f"{len(self.original)} bytes)"
        )
