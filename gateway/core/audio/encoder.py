"""Encode synthesized speech into the caller's format, incrementally.

An :class:`Encoder` takes 16-bit mono PCM chunks (at any rate; it resamples) and returns the bytes of the
requested encoding that are ready so far; ``flush`` returns the rest. Joined, the outputs are one file
that plays as a whole: Ogg pages for Opus, MP3 frames, AAC in ADTS frames (each with its own header, so
any run of them plays), a FLAC stream, a WAV header with an open length when streaming. The whole-file
case is the same encoder run once (:func:`encode_all`), so a cached Synthesize and a joined
StreamSynthesize hold the same kind of audio.

Every encoding goes through PyAV (FFmpeg): libopus, libmp3lame, FFmpeg's aac, flac and pcm_mulaw. WAV and
raw PCM16 need no codec; their bytes are the resampled samples themselves.
"""

from __future__ import annotations

import contextlib
import struct
from dataclasses import dataclass

import av
import numpy as np

from gateway.core.audio.encode import MAX_FRAME_SAMPLES
from gateway.core.domain import OutputFormat
from gateway.core.errors import InvalidInput

# Rates each codec accepts; None: any rate the request may ask for (8..48 kHz).
_OPUS_RATES = (8_000, 12_000, 16_000, 24_000, 48_000)
_MP3_RATES = (8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000)
_MULAW_RATES = (8_000,)
# AAC's sampling-frequency table, within the 8..48 kHz a request may ask for.
_AAC_RATES = (8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000)
# Ogg pages are flushed after this much audio (microseconds), so a streamed chunk leaves at once instead
# of waiting for the muxer's default one-second page.
_OGG_PAGE_US = 20_000
# The data length a streamed WAV header claims: "until the end of the stream", as FFmpeg and browsers read it.
_OPEN_LENGTH = 0xFFFFFFFF


@dataclass(frozen=True)
class EncodingSpec:
    format: OutputFormat
    rates: tuple[int, ...] | None
    codec: str | None  # the PyAV encoder; None for PCM written directly
    container: str | None  # the PyAV muxer; None when the codec's packets are the stream
    mime: str  # "{rate}" is replaced by the sample rate


SPECS: dict[OutputFormat, EncodingSpec] = {
    OutputFormat.WAV: EncodingSpec(OutputFormat.WAV, None, None, None, "audio/wav"),
    OutputFormat.PCM16: EncodingSpec(OutputFormat.PCM16, None, None, None, "audio/L16;rate={rate}"),
    OutputFormat.MP3: EncodingSpec(OutputFormat.MP3, _MP3_RATES, "libmp3lame", "mp3", "audio/mpeg"),
    OutputFormat.OGG_OPUS: EncodingSpec(
        OutputFormat.OGG_OPUS, _OPUS_RATES, "libopus", "ogg", "audio/ogg;codecs=opus"
    ),
    OutputFormat.FLAC: EncodingSpec(OutputFormat.FLAC, None, "flac", "flac", "audio/flac"),
    OutputFormat.MULAW: EncodingSpec(OutputFormat.MULAW, _MULAW_RATES, "pcm_mulaw", None, "audio/basic"),
    OutputFormat.AAC: EncodingSpec(OutputFormat.AAC, _AAC_RATES, "aac", "adts", "audio/aac"),
}


def check_rate(fmt: OutputFormat, rate: int | None) -> None:
    """INVALID_ARGUMENT when the caller asked for a rate the encoding cannot carry."""
    spec = SPECS[fmt]
    if rate and spec.rates is not None and rate not in spec.rates:
        choices = ", ".join(str(r) for r in spec.rates)
        raise InvalidInput(
            f"sample_rate {rate} is not supported by {fmt.value}; use one of {choices} Hz "
            "(or 0 for the format's default)"
        )


def output_rate(fmt: OutputFormat, requested: int | None, native: int) -> int:
    """The rate to encode at: the one asked for, else the voice's own when the codec takes it, else the
    nearest the codec takes above it (so nothing is lost), else its highest."""
    check_rate(fmt, requested)
    if requested:
        return requested
    rates = SPECS[fmt].rates
    if rates is None or native in rates:
        return native
    return next((r for r in rates if r >= native), rates[-1])


def mime_type(fmt: OutputFormat, rate: int) -> str:
    return SPECS[fmt].mime.format(rate=rate)


class _Sink:
    """A write-only file for the muxer: no ``seek``, so FFmpeg never goes back to patch a header."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def write(self, data: bytes) -> int:
        self._buffer += data
        return len(data)

    def take(self) -> bytes:
        out = bytes(self._buffer)
        self._buffer.clear()
        return out


class Encoder:
    """One output stream: ``push`` PCM16 chunks, get the encoded bytes ready so far; ``flush`` at the end.

    ``streaming=False`` (the whole-file case) lets WAV write exact lengths in its header, which it can only
    do once every sample is in: it then returns everything from ``flush``.
    """

    def __init__(self, fmt: OutputFormat, rate: int, *, streaming: bool = True) -> None:
        check_rate(fmt, rate)
        self.format = fmt
        self.sample_rate = rate
        self.mime_type = mime_type(fmt, rate)
        self.samples_out = 0
        self._streaming = streaming
        self._spec = SPECS[fmt]
        self._resampler: av.AudioResampler | None = None
        self._resampler_rate = 0
        self._held: list[np.ndarray] = []  # whole-file WAV: samples until the length is known
        self._header_sent = False
        self._sink = _Sink()
        self._container: av.container.OutputContainer | None = None
        self._stream: av.audio.stream.AudioStream | None = None
        self._codec: av.CodecContext | None = None
        self._pts = 0
        if self._spec.container is not None:
            options = {"page_duration": str(_OGG_PAGE_US)} if self._spec.container == "ogg" else {}
            self._container = av.open(self._sink, "w", format=self._spec.container, options=options)
            self._stream = self._container.add_stream(self._spec.codec, rate=rate, layout="mono")
            if fmt is OutputFormat.MP3:
                self._stream.bit_rate = 64_000 if rate >= 32_000 else 32_000
            elif fmt is OutputFormat.AAC:
                # Plenty for mono speech; AAC-LC carries at most 6 bits a sample, which caps it at 8 kHz.
                self._stream.bit_rate = min(64_000, 6 * rate)
        elif self._spec.codec is not None:
            codec = av.CodecContext.create(self._spec.codec, "w")
            codec.sample_rate, codec.layout, codec.format = rate, "mono", "s16"
            codec.open()
            self._codec = codec

    @property
    def duration_s(self) -> float:
        return self.samples_out / self.sample_rate

    def push(self, samples: np.ndarray, rate: int) -> bytes:
        """Mono int16 samples at ``rate``; the bytes that are ready (possibly none)."""
        # Frame by frame: a whole long utterance in one frame would pass FFmpeg's allocation cap.
        return b"".join(
            self._encode(self._resample(samples[start : start + MAX_FRAME_SAMPLES], rate))
            for start in range(0, max(samples.size, 1), MAX_FRAME_SAMPLES)
        )

    def flush(self) -> bytes:
        """Everything still held: the resampler's tail, the codec's delay, the container's trailer."""
        out = self._encode(self._drain_resampler())
        if self._container is not None and self._stream is not None:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
            self._container = None
            out += self._sink.take()
        elif self._codec is not None:
            out += b"".join(bytes(p) for p in self._codec.encode(None))
        if self.format is OutputFormat.WAV and not self._streaming:
            held = np.concatenate(self._held) if self._held else np.zeros(0, np.int16)
            self._held.clear()
            out = _wav_header(self.sample_rate, held.size * 2) + held.astype("<i2", copy=False).tobytes()
        elif self.format is OutputFormat.WAV and not self._header_sent:
            self._header_sent = True
            out = _wav_header(self.sample_rate, _OPEN_LENGTH) + out
        return out

    def close(self) -> None:
        """Drop an unfinished stream (the caller left): frees FFmpeg's state without a trailer."""
        if self._container is not None:
            # An encoder that never got a frame may refuse to write its trailer: nothing to keep anyway.
            with contextlib.suppress(av.FFmpegError, ValueError):
                self._container.close()
            self._container = None

    # -- steps --------------------------------------------------------------------------------------------

    def _resample(self, samples: np.ndarray, rate: int) -> np.ndarray:
        if samples.size == 0:
            return np.zeros(0, np.int16)
        if rate == self.sample_rate and self._resampler is None:
            return samples.astype(np.int16, copy=False)
        parts: list[np.ndarray] = []
        if self._resampler is not None and rate != self._resampler_rate:
            # Another voice at another rate (a fallback mid-stream): finish the old one's tail first.
            parts.append(self._drain_resampler())
        if rate == self.sample_rate:
            return np.concatenate([*parts, samples.astype(np.int16, copy=False)])
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=self.sample_rate)
            self._resampler_rate = rate
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples, dtype=np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = rate
        parts += [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        return np.concatenate(parts).astype(np.int16, copy=False) if parts else np.zeros(0, np.int16)

    def _drain_resampler(self) -> np.ndarray:
        if self._resampler is None:
            return np.zeros(0, np.int16)
        parts = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(None)]
        self._resampler = None
        return np.concatenate(parts).astype(np.int16, copy=False) if parts else np.zeros(0, np.int16)

    def _encode(self, samples: np.ndarray) -> bytes:
        self.samples_out += samples.size
        if self.format is OutputFormat.PCM16:
            return samples.astype("<i2", copy=False).tobytes()
        if self.format is OutputFormat.WAV:
            if not self._streaming:
                self._held.append(samples)
                return b""
            body = samples.astype("<i2", copy=False).tobytes()
            if self._header_sent:
                return body
            self._header_sent = True
            return _wav_header(self.sample_rate, _OPEN_LENGTH) + body
        if samples.size == 0:
            return b""
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples, dtype=np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = self.sample_rate
        frame.pts = self._pts
        self._pts += samples.size
        if self._codec is not None:
            return b"".join(bytes(p) for p in self._codec.encode(frame))
        assert self._container is not None and self._stream is not None
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        return self._sink.take()


def encode_all(samples: np.ndarray, rate: int, fmt: OutputFormat, out_rate: int) -> tuple[bytes, Encoder]:
    """The whole utterance at once: the streaming encoder run once, with exact WAV lengths."""
    encoder = Encoder(fmt, out_rate, streaming=False)
    body = encoder.push(samples, rate)
    return body + encoder.flush(), encoder


def _wav_header(rate: int, data_bytes: int) -> bytes:
    riff = _OPEN_LENGTH if data_bytes == _OPEN_LENGTH else 36 + data_bytes
    return (
        b"RIFF"
        + struct.pack("<I", riff)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )
