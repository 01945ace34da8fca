"""Decode what the gateway encodes, twice over: with PyAV in-process and with the ffmpeg command line.

Headerless encodings (raw PCM16, mu-law) carry no format, so both decoders are told it, as a caller would.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import wave

import av
import numpy as np

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.core.audio import encode_wav

# The proto format → (FFmpeg demuxer to force for headerless audio or None, expected mime prefix).
FORMATS: dict[int, tuple[str | None, str]] = {
    pb.AUDIO_FORMAT_WAV: (None, "audio/wav"),
    pb.AUDIO_FORMAT_PCM16: ("s16le", "audio/L16;rate="),
    pb.AUDIO_FORMAT_MP3: (None, "audio/mpeg"),
    pb.AUDIO_FORMAT_OGG_OPUS: (None, "audio/ogg;codecs=opus"),
    pb.AUDIO_FORMAT_FLAC: (None, "audio/flac"),
    pb.AUDIO_FORMAT_MULAW: ("mulaw", "audio/basic"),
    pb.AUDIO_FORMAT_AAC: (None, "audio/aac"),
}
# What FFmpeg's probe calls each container (checked, so an MP3 labelled as Ogg would fail).
CONTAINERS = {
    pb.AUDIO_FORMAT_WAV: "wav",
    pb.AUDIO_FORMAT_PCM16: "s16le",
    pb.AUDIO_FORMAT_MP3: "mp3",
    pb.AUDIO_FORMAT_OGG_OPUS: "ogg",
    pb.AUDIO_FORMAT_FLAC: "flac",
    pb.AUDIO_FORMAT_MULAW: "mulaw",
    pb.AUDIO_FORMAT_AAC: "aac",
}


def slack_s(fmt: int, rate: int) -> float:
    """How far a decoded length may stray from the audio encoded: MP3's encoder delay and last-frame padding
    (no gapless header on a stream) stay within 0.1 s; AAC in ADTS also has no way to say it primed the
    decoder with 1024 samples, and pads its last 1024-sample frame, which at 16 kHz is up to 0.128 s."""
    if fmt == pb.AUDIO_FORMAT_AAC:
        return max(0.1, 2048 / rate + 0.01)
    return 0.1


def decode_pyav(data: bytes, fmt: int, rate: int) -> tuple[np.ndarray, int, str]:
    """Mono int16 samples, their rate, and the container name PyAV found."""
    forced, _ = FORMATS[fmt]
    options = {"sample_rate": str(rate), "ch_layout": "mono"} if forced else {}
    with av.open(io.BytesIO(data), format=forced, options=options) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=stream.sample_rate)
        parts = [
            f.to_ndarray().reshape(-1)
            for frame in container.decode(stream)
            for f in resampler.resample(frame)
        ]
        parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
        name = container.format.name
        return np.concatenate(parts).astype(np.int16), stream.sample_rate, name


def decode_ffmpeg(data: bytes, fmt: int, rate: int) -> bytes:
    """A 16 kHz mono WAV made by the ffmpeg binary from ``data`` (fed on stdin, as a pipe would)."""
    binary = shutil.which("ffmpeg")
    if binary is None:
        raise RuntimeError("ffmpeg is not installed: apt-get install ffmpeg (.ci/run does)")
    forced, _ = FORMATS[fmt]
    source = ["-f", forced, "-ar", str(rate), "-ac", "1"] if forced else []
    result = subprocess.run(
        [binary, "-v", "error", *source, "-i", "pipe:0", "-ar", "16000", "-ac", "1", "-f", "s16le", "pipe:1"],
        input=data,
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    errors = result.stderr.decode(errors="replace").splitlines()
    if fmt == pb.AUDIO_FORMAT_WAV:
        # A streamed WAV's open length makes FFmpeg flag its last, short read as "corrupt" although it
        # delivers every sample (callers check the sample count); that is how it reads any live WAV.
        errors = [line for line in errors if not line.endswith("corrupt input packet in stream 0")]
    assert not errors, errors
    # Raw out, wrapped here: ffmpeg cannot go back to fill in a WAV header's lengths on a pipe.
    return encode_wav(np.frombuffer(result.stdout, dtype="<i2"), 16_000)


def wav_seconds(data: bytes) -> float:
    with wave.open(io.BytesIO(data)) as w:
        return w.getnframes() / w.getframerate()
