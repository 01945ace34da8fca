"""What every remote adapter shares: capabilities from its config entry, and HTTP status → error."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from gateway.core.errors import ProviderError, ProviderRejected, ProviderUnavailable
from gateway.core.provider_types import Capabilities, LatencyModel, Locality, Speech, Usage

if TYPE_CHECKING:
    from providers.config import ProviderConfig

_MAX_DETAIL = 200


def capabilities_from(
    config: ProviderConfig, features: frozenset[str], latency: LatencyModel
) -> Capabilities:
    """The adapter states what its API can do; the config entry may narrow or re-describe it."""
    prior = config.latency
    return Capabilities(
        operations=frozenset({config.operation}),
        locality=config.locality or Locality.CLOUD,
        retains_data=bool(config.retains_data),
        latency_prior=LatencyModel(prior.fixed_ms, prior.rtf, prior.ms_per_char) if prior else latency,
        region=config.region,
        languages=config.languages,
        features=config.features or features,
        max_audio_s=config.max_audio_s,
        published_wer=config.published_wer,
        timeout_s=config.timeout_s,
    )


def error_for_status(provider: str, status: int, detail: str = "") -> ProviderError:
    """408, 429 and 5xx may succeed elsewhere or later; other 4xx will not."""
    detail = " ".join(detail.split())[:_MAX_DETAIL]
    message = f"HTTP {status}" + (f": {detail}" if detail else "")
    if status in (408, 429) or status >= 500:
        return ProviderUnavailable(provider, message)
    if status in (401, 403):
        return ProviderRejected(provider, f"{message} (check the provider's api_key_env)")
    return ProviderRejected(provider, message)


class PcmPieces:
    """A streamed body of raw s16le mono PCM, cut into :class:`Speech` pieces as it arrives.

    The last 10 ms are always held back, so that the piece :meth:`finish` returns, which carries the
    sentence's characters (a piece only counts them once the vendor has spoken the whole sentence), is
    never empty; 10 ms delays nothing a listener notices. Network reads split samples anywhere; a piece
    holds whole samples only.
    """

    def __init__(self, sample_rate: int, voice: str) -> None:
        self._rate = sample_rate
        self._voice = voice
        self._hold = 2 * max(1, sample_rate // 100)
        self._pending = b""

    def push(self, data: bytes) -> Speech | None:
        self._pending += data
        cut = len(self._pending) - self._hold
        cut -= cut % 2
        if cut <= 0:
            return None
        piece, self._pending = self._pending[:cut], self._pending[cut:]
        return self._speech(piece, 0)

    def finish(self, characters: int) -> Speech:
        """The held-back tail, with the characters; ValueError when the body was empty or not whole
        samples."""
        if not self._pending or len(self._pending) % 2:
            raise ValueError(f"the audio ended with {len(self._pending)} bytes held, not whole samples")
        return self._speech(self._pending, characters)

    def _speech(self, data: bytes, characters: int) -> Speech:
        samples = np.frombuffer(data, dtype="<i2").astype(np.int16)
        usage = Usage(characters=characters, audio_seconds=len(samples) / self._rate)
        return Speech(samples=samples, sample_rate=self._rate, voice=self._voice, usage=usage)
