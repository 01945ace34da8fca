"""Where uploads enter: read, probe, and bind each recording to the bounded decode pool."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from gateway.core.audio.decode import decode_samples
from gateway.core.audio.limits import AudioLimits
from gateway.core.audio.probe import ProbeResult, probe, quick_pcm_wav
from gateway.core.audio.recording import Recording
from gateway.core.audio.uri import read_uri
from gateway.core.domain import AudioInput
from gateway.core.errors import InvalidInput


class AudioIntake:
    """Turns an :class:`AudioInput` into a probed :class:`Recording`.

    Owns the decode pool: a dedicated executor with ``decode_workers`` threads, so however many
    requests want samples at once, at most that many decodes run and the rest queue.
    """

    def __init__(self, limits: AudioLimits, uri_roots: Sequence[Path] = (), decode_workers: int = 2) -> None:
        self.limits = limits
        self._uri_roots = tuple(uri_roots)
        self._executor = ThreadPoolExecutor(max_workers=decode_workers, thread_name_prefix="audio-decode")
        self._decodes_started = 0

    @property
    def decodes_started(self) -> int:
        """How many recordings have been decoded (or are decoding): cache hits and cloud routes add none."""
        return self._decodes_started

    async def open(self, source: AudioInput) -> Recording:
        """Read ``source`` (content, or a file:// URI under the allowed roots) and probe it off the loop."""
        if source.uri is not None:
            data = await asyncio.to_thread(read_uri, source.uri, self._uri_roots, self.limits.max_bytes)
        elif source.content is not None:
            data = source.content
        else:
            raise InvalidInput("audio is missing: set audio.content (or audio.uri)")
        # A plain PCM WAV needs only its header read: no thread hop for the commonest upload.
        if (quick := quick_pcm_wav(data, self.limits)) is not None:
            return Recording(data, source.mime_type, quick, self._decode)
        return await asyncio.to_thread(self.recording, data, source.mime_type)

    def recording(self, data: bytes, mime_type: str = "") -> Recording:
        """Probe ``data`` in the calling thread (blocking; :meth:`open` runs it in a worker)."""
        return Recording(data, mime_type, probe(data, mime_type, self.limits), self._decode)

    async def _decode(self, data: bytes, probed: ProbeResult) -> np.ndarray:
        self._decodes_started += 1
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, decode_samples, data, probed, self.limits)

    def close(self) -> None:
        """Stop the decode pool: queued decodes are dropped, running ones finish on their own."""
        self._executor.shutdown(wait=False, cancel_futures=True)
