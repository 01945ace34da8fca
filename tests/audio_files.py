"""Encode test audio into real containers with PyAV, so decoding is tested on real files."""

from __future__ import annotations

import io

import av
import numpy as np

from gateway.core.audio import AudioIntake, AudioLimits, Recording

# One intake (and decode pool) for every test that needs a Recording built from bytes.
_INTAKE = AudioIntake(AudioLimits(max_bytes=10_000_000, max_duration_s=600.0))

# container format, codec, sample rate the codec accepts
FORMATS: dict[str, tuple[str, str, int]] = {
    "wav": ("wav", "pcm_s16le", 22_050),
    "flac": ("flac", "flac", 22_050),
    "mp3": ("mp3", "libmp3lame", 22_050),
    "ogg": ("ogg", "libopus", 48_000),
    "webm": ("webm", "libopus", 48_000),
    "m4a": ("mp4", "aac", 22_050),
}

MIME = {
    "wav": "audio/wav",
    "flac": "audio/flac",
    "mp3": "audio/mpeg",
    "ogg": "audio/ogg",
    "webm": "audio/webm",
    "m4a": "audio/mp4",
}


def encode(
    samples: np.ndarray, rate: int, kind: str, codec_rate: int | None = None, layout: str = "mono"
) -> bytes:
    """Encode mono int16 ``samples`` at ``rate`` into the container ``kind`` (at the codec's usual rate,
    or ``codec_rate``), upmixed to ``layout``."""
    fmt, codec, usual_rate = FORMATS[kind]
    codec_rate = codec_rate or usual_rate
    buffer = io.BytesIO()
    # Bit-exact: the same samples give the same bytes in every process (Ogg's stream serial is random
    # otherwise), so a seeded fuzz over these files can be run again.
    with av.open(buffer, mode="w", format=fmt, options={"fflags": "+bitexact"}) as out:
        stream = out.add_stream(codec, rate=codec_rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(
            samples.astype(np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = rate
        resampler = av.AudioResampler(format=stream.codec_context.format, layout=layout, rate=codec_rate)
        frames = list(resampler.resample(frame)) + list(resampler.resample(None))
        for f in frames:
            for packet in stream.encode(f):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()


def tone(seconds: float, rate: int = 16_000, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * hz * t) * 12_000).astype(np.int16)


def recording(data: bytes, mime_type: str = "") -> Recording:
    """``data`` probed into a Recording, as the router hands it to providers."""
    return _INTAKE.recording(data, mime_type)
