"""Audio the benchmarks send: a real recording from the shared speech set, in containers written by PyAV.

Recorded, not synthesized: piper's voice differs a little from one synthesis to the next, so a seeded fuzz
over it did not send the same bytes twice."""

from __future__ import annotations

import functools

import numpy as np

from gateway.core.audio import encode_wav, resample_pcm16
from tests import speech
from tests.audio_files import encode

CONTAINERS = ("wav", "flac", "mp3", "ogg")


# One reader, 7.1 s of speech at 16 kHz (../shared/speech; its README gives the licence).
RECORDING = "librivox_sense_sensibility_0870"


@functools.cache
def _speech(rate: int) -> np.ndarray:
    clip = speech.real_clip(RECORDING)
    return resample_pcm16(clip.samples.astype(np.int16, copy=False), clip.rate, rate)


def _cut(seconds: float, rate: int) -> np.ndarray:
    samples, length = _speech(rate), round(seconds * rate)
    return np.pad(samples[:length], (0, max(0, length - samples.size)))


def speech_wav(seconds: float, rate: int = 16_000) -> bytes:
    """Mono 16-bit WAV of exactly ``seconds`` of speech (cut, or padded with silence)."""
    return encode_wav(_cut(seconds, rate), rate)


def speech_in_containers(seconds: float, rate: int = 16_000) -> dict[str, bytes]:
    """``seconds`` of speech encoded as wav, flac, mp3 and ogg/opus."""
    return {kind: encode(_cut(seconds, rate), rate, kind) for kind in CONTAINERS}
