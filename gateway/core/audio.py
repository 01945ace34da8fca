"""Decode, validate and encode audio with PyAV.

Every upload is decoded here, once, before any provider sees it: the duration
the gateway bills is the duration it decoded. Input is resampled to the 16 kHz
mono float32 that speech recognisers take; the original bytes are kept for
providers that want the file itself.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import av
import av.error
import numpy as np

from gateway.core.errors import InvalidInput, LimitExceeded, PermissionDenied, UnsupportedAudio, clip

ASR_SAMPLE_RATE = 16_000

# Container hints by MIME type; PyAV probes the bytes either way.
_FORMAT_HINTS = {
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/wave": "wav",
    "audio/flac": "flac",
    "audio/x-flac": "flac",
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/ogg": "ogg",
    "audio/opus": "ogg",
    "audio/webm": "webm",
    "audio/mp4": "mp4",
    "audio/m4a": "mp4",
    "audio/x-m4a": "mp4",
}

# A decode that yields less than the container declares is a truncated upload.
# Small differences are normal (encoder padding); MP3 durations are estimated
# from the bitrate, which VBR files without a Xing header get badly wrong.
_TRUNCATION_TOLERANCE = 0.05
_ESTIMATED_DURATION_TOLERANCE = 0.2
_TRUNCATION_MIN_GAP_S = 0.25
_STREAMED_WAV_SIZE = 0x7FFF0000


@dataclass(frozen=True)
class DecodedAudio:
    """Audio as the gateway decoded it."""

    samples: np.ndarray  # float32 mono in [-1, 1] at ASR_SAMPLE_RATE
    duration_s: float  # decoded duration: the billed duration
    source_sample_rate: int
    source_channels: int
    codec: str
    container: str
    original: bytes
    mime_type: str

    @property
    def sample_rate(self) -> int:
        return ASR_SAMPLE_RATE


@dataclass(frozen=True)
class AudioLimits:
    max_bytes: int
    max_duration_s: float


def decode(data: bytes, mime_type: str, limits: AudioLimits) -> DecodedAudio:
    """Decode ``data`` to 16 kHz mono, enforcing the limits while decoding.

    Raises InvalidInput / UnsupportedAudio for empty, corrupt, truncated or
    silent-length input and LimitExceeded for oversized input. Blocking and
    CPU-bound: call it from a worker thread.
    """
    if not data:
        raise InvalidInput("audio is empty: send the file's bytes in audio.content")
    if len(data) > limits.max_bytes:
        raise LimitExceeded(f"audio is {len(data)} bytes; the limit is {limits.max_bytes} bytes")

    hint = _FORMAT_HINTS.get(mime_type.split(";")[0].strip().lower()) if mime_type else None
    try:
        container = av.open(io.BytesIO(data), mode="r", format=hint)
    except (av.error.FFmpegError, ValueError) as exc:
        if hint is not None:
            # A wrong hint should not reject good audio: probe without it.
            try:
                container = av.open(io.BytesIO(data), mode="r")
            except (av.error.FFmpegError, ValueError):
                raise _not_audio(mime_type) from exc
        else:
            raise _not_audio(mime_type) from exc

    with container:
        if not container.streams.audio:
            raise UnsupportedAudio("the upload has no audio stream")
        stream = container.streams.audio[0]
        declared_s = _declared_duration_s(container, stream)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=ASR_SAMPLE_RATE)
        chunks: list[np.ndarray] = []
        source_samples = 0
        source_rate = stream.codec_context.sample_rate or 0
        max_source_samples: float | None = None
        try:
            for frame in container.decode(stream):
                if frame.sample_rate:
                    source_rate = frame.sample_rate
                    max_source_samples = limits.max_duration_s * source_rate
                source_samples += frame.samples
                if max_source_samples is not None and source_samples > max_source_samples:
                    raise LimitExceeded(
                        f"audio is longer than the {limits.max_duration_s:g} s limit; split it or raise "
                        "GATEWAY_LIMITS__MAX_AUDIO_S"
                    )
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as exc:
            raise UnsupportedAudio(
                f"the audio is corrupt or truncated and cannot be decoded ({exc.strerror})"
            ) from exc

        if source_samples == 0 or source_rate == 0:
            raise InvalidInput("the audio has zero length: it decodes to no samples")
        duration_s = source_samples / source_rate
        tolerance = _ESTIMATED_DURATION_TOLERANCE if container.format.name == "mp3" else _TRUNCATION_TOLERANCE
        if (
            declared_s is not None
            and duration_s < declared_s * (1 - tolerance)
            and declared_s - duration_s > _TRUNCATION_MIN_GAP_S
        ):
            raise UnsupportedAudio(
                f"the audio is truncated: its header declares {declared_s:.2f} s but only "
                f"{duration_s:.2f} s could be decoded"
            )
        structural = _structural_truncation(data, container.format.name)
        if structural:
            raise UnsupportedAudio(f"the audio is truncated: {structural}")
        samples = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
        return DecodedAudio(
            samples=samples,
            duration_s=duration_s,
            source_sample_rate=source_rate,
            source_channels=stream.codec_context.channels or 1,
            codec=stream.codec_context.name,
            container=container.format.name,
            original=data,
            mime_type=mime_type,
        )


def _not_audio(mime_type: str) -> UnsupportedAudio:
    given = f" (declared {mime_type})" if mime_type else ""
    return UnsupportedAudio(
        f"the upload is not decodable audio{given}; send wav, flac, mp3, ogg/opus, webm or m4a"
    )


def _declared_duration_s(
    container: av.container.InputContainer, stream: av.audio.AudioStream
) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _structural_truncation(data: bytes, container_name: str) -> str | None:
    """Truncation that the demuxers tolerate silently, read from the container's own framing."""
    if container_name == "wav":
        data_at = data.find(b"data", 12)
        if data_at >= 0 and data_at + 8 <= len(data):
            declared = int.from_bytes(data[data_at + 4 : data_at + 8], "little")
            present = len(data) - (data_at + 8)
            # Writers that stream (espeak-ng, sox, ffmpeg to a pipe) put 0 or a near-2^31/2^32
            # placeholder here because they never knew the size.
            if 0 < declared < _STREAMED_WAV_SIZE and present < declared:
                return f"its data chunk declares {declared} bytes but only {present} are present"
    elif container_name == "ogg":
        last_page = data.rfind(b"OggS")
        eos = last_page >= 0 and last_page + 5 < len(data) and data[last_page + 5] & 0x04
        if not eos:
            return "the Ogg stream ends without its end-of-stream page"
    return None


def resample_pcm16(samples: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """Resample mono int16 samples; a no-op when the rates match."""
    if rate == target_rate or samples.size == 0:
        return samples
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="s16", layout="mono", rate=target_rate)
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(out).astype(np.int16, copy=False) if out else np.zeros(0, np.int16)


def encode_wav(samples: np.ndarray, sample_rate: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(samples.astype("<i2", copy=False).tobytes())
    return buffer.getvalue()


def encode_pcm16(samples: np.ndarray) -> bytes:
    return samples.astype("<i2", copy=False).tobytes()


def read_uri(uri: str, roots: Sequence[Path], max_bytes: int) -> bytes:
    """Read a ``file://`` URI that lies under one of the configured roots."""
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        raise InvalidInput(
            f"audio.uri scheme {clip(parsed.scheme) or '(none)'!r} is not supported; "
            "use file:// or send content"
        )
    if not roots:
        raise PermissionDenied("audio.uri is disabled on this server; send the bytes in audio.content")
    path = Path(unquote(parsed.path)).resolve()
    if not any(path.is_relative_to(root.resolve()) for root in roots):
        raise PermissionDenied(f"audio.uri {clip(str(path))} is outside the allowed roots")
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise LimitExceeded(f"audio is {size} bytes; the limit is {max_bytes} bytes")
        return path.read_bytes()
    except (FileNotFoundError, IsADirectoryError) as exc:
        raise InvalidInput(f"audio.uri {clip(str(path))} does not name a readable file") from exc


def decode_pcm16(data: bytes, mime_type: str = "") -> tuple[np.ndarray, int]:
    """Decode a provider's synthesized audio to mono int16 at its own sample rate.

    Raises ValueError when the bytes are not audio; adapters map that to a
    retryable ProviderBadResponse.
    """
    hint = _FORMAT_HINTS.get(mime_type.split(";")[0].strip().lower()) if mime_type else None
    try:
        with av.open(io.BytesIO(data), mode="r", format=hint) as container:
            if not container.streams.audio:
                raise ValueError("no audio stream")
            stream = container.streams.audio[0]
            rate = stream.codec_context.sample_rate
            resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
            chunks = [
                f.to_ndarray().reshape(-1)
                for frame in container.decode(stream)
                for f in resampler.resample(frame)
            ]
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    except av.error.FFmpegError as exc:
        raise ValueError(f"undecodable audio: {exc.strerror}") from exc
    if not chunks or not rate:
        raise ValueError("the audio has no samples")
    return np.concatenate(chunks).astype(np.int16, copy=False), rate
