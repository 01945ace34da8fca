"""Encode and resample 16-bit PCM: synthesized speech on its way out, WAV for vendors that need it."""

from __future__ import annotations

import io
import wave

import av
import numpy as np

# Samples per frame handed to FFmpeg (a few seconds): its allocations are capped
# (containers.MAX_FFMPEG_ALLOCATION), and a frame's buffers grow with its length.
MAX_FRAME_SAMPLES = 1 << 17


def resample_pcm16(samples: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """Resample mono int16 samples; a no-op when the rates match."""
    if rate == target_rate or samples.size == 0:
        return samples
    resampler = av.AudioResampler(format="s16", layout="mono", rate=target_rate)
    out: list[np.ndarray] = []
    for start in range(0, samples.size, MAX_FRAME_SAMPLES):
        piece = np.ascontiguousarray(samples[start : start + MAX_FRAME_SAMPLES]).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(piece, format="s16", layout="mono")
        frame.sample_rate = rate
        out += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(out).astype(np.int16, copy=False) if out else np.zeros(0, np.int16)


def encode_wav(samples: np.ndarray, sample_rate: int) -> bytes:
    """Mono 16-bit WAV; float samples in [-1, 1] are scaled to full range first."""
    if samples.dtype.kind == "f":
        samples = np.clip(np.round(samples * 32767.0), -32768, 32767)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(samples.astype("<i2", copy=False).tobytes())
    return buffer.getvalue()


def encode_pcm16(samples: np.ndarray) -> bytes:
    return samples.astype("<i2", copy=False).tobytes()
