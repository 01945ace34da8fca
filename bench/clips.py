"""Audio the benchmarks send: real speech from piper, in real containers written by PyAV."""

from __future__ import annotations

import functools

import numpy as np

from gateway.core.audio import decode_pcm16, encode_wav, resample_pcm16
from tests import speech
from tests.audio_files import encode

CONTAINERS = ("wav", "flac", "mp3", "ogg")


@functools.cache
def _speech(rate: int) -> np.ndarray:
    # Loading the piper voice takes seconds: synthesize once per process.
    samples, source_rate = decode_pcm16(speech.piper_wav(" ".join(speech.SENTENCES[:2])))
    return resample_pcm16(samples, source_rate, rate)


def _cut(seconds: float, rate: int) -> np.ndarray:
    samples, length = _speech(rate), round(seconds * rate)
    return np.pad(samples[:length], (0, max(0, length - samples.size)))


def speech_wav(seconds: float, rate: int = 16_000) -> bytes:
    """Mono 16-bit WAV of exactly ``seconds`` of speech (cut, or padded with silence)."""
    return encode_wav(_cut(seconds, rate), rate)


def speech_in_containers(seconds: float, rate: int = 16_000) -> dict[str, bytes]:
    """``seconds`` of speech encoded as wav, flac, mp3 and ogg/opus."""
    return {kind: encode(_cut(seconds, rate), rate, kind) for kind in CONTAINERS}
