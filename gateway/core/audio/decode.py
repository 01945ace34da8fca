"""Decode audio to PCM with PyAV, with the work bounded by what the probe measured.

A decode runs in a worker thread, frame by frame: FFmpeg releases the GIL while it decodes and
resamples, and each Python step in between handles one frame, so no step holds the GIL for long.
"""

from __future__ import annotations

import time

import av
import av.audio.frame
import numpy as np

from gateway.core.audio.containers import MEDIA_ERRORS, open_input, reason
from gateway.core.audio.limits import ASR_SAMPLE_RATE, AudioLimits
from gateway.core.audio.probe import ProbeResult
from gateway.core.errors import InvalidInput, UnsupportedAudio

# A decode may yield a little more than the packets' timestamps span (a codec's last frame is
# decoded whole even where the container trims it); much more means the timestamps lie.
_SLACK_S = 0.5
_SLACK_RATIO = 0.05


class Converter:
    """Converts frames to one format, layout and rate, whatever each frame arrives as.

    PyAV's resampler takes its input settings from the first frame and refuses frames that differ,
    but an MP3 may switch between mono and stereo from one frame to the next: a change of input
    drains the current resampler and starts another.
    """

    def __init__(self, sample_format: str, layout: str, rate: int | None) -> None:
        self._format = sample_format
        self._layout = layout
        self._rate = rate  # None: the first frame's rate, kept for the whole stream
        self._resampler: av.AudioResampler | None = None
        self._input: tuple[str, str, int] | None = None

    def convert(self, frame: av.audio.frame.AudioFrame) -> list[np.ndarray]:
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        chunks: list[np.ndarray] = []
        if self._resampler is None or key != self._input:
            chunks = self.flush()
            self._rate = self._rate or frame.sample_rate
            self._resampler = av.AudioResampler(format=self._format, layout=self._layout, rate=self._rate)
            self._input = key
        return chunks + [out.to_ndarray().reshape(-1) for out in self._resampler.resample(frame)]

    @property
    def rate(self) -> int | None:
        return self._rate

    def flush(self) -> list[np.ndarray]:
        if self._resampler is None:
            return []
        chunks = [out.to_ndarray().reshape(-1) for out in self._resampler.resample(None)]
        self._resampler = None
        return chunks


def decode_samples(data: bytes, probed: ProbeResult, limits: AudioLimits) -> np.ndarray:
    """Decode a probed upload to read-only float32 mono samples in [-1, 1] at ASR_SAMPLE_RATE.

    The work is capped: no more samples than the probed duration allows (plus a little slack, and
    never over the duration limit), and no more CPU time than the limits budget for that duration.
    Refuses NaN or infinite samples. Raises InvalidInput / UnsupportedAudio, never PyAV's errors.
    Blocking: call it from a worker thread.
    """
    allowed_s = min(probed.duration_s * (1 + _SLACK_RATIO) + _SLACK_S, limits.max_duration_s)
    out = np.empty(int(allowed_s * ASR_SAMPLE_RATE), dtype=np.float32)
    filled = 0

    def take(chunks: list[np.ndarray]) -> None:
        nonlocal filled
        for chunk in chunks:
            if filled + chunk.size > out.size:
                raise UnsupportedAudio(
                    f"the audio decodes to more than {allowed_s:.1f} s although its container holds "
                    f"{probed.duration_s:.1f} s: the file is corrupt or crafted; re-encode it"
                )
            if not np.isfinite(chunk).all():
                raise InvalidInput(
                    "the audio contains NaN or infinite sample values; re-encode it from a clean source"
                )
            # Float formats may exceed full scale; engines expect [-1, 1].
            np.clip(chunk, -1.0, 1.0, out=out[filled : filled + chunk.size])
            filled += chunk.size

    budget_s = limits.decode_cpu_budget_s(probed.duration_s)
    started = time.thread_time()
    converter = Converter("flt", "mono", ASR_SAMPLE_RATE)
    try:
        with open_input(data, demuxer=probed.demuxer) as container:
            stream = container.streams.audio[0]  # the stream the probe measured
            for packet in container.demux(stream):
                if time.thread_time() - started > budget_s:
                    raise UnsupportedAudio(
                        f"decoding took over {budget_s:.1f} s of CPU for {probed.duration_s:.1f} s of audio, "
                        "far more than any recording needs; re-encode it as WAV or FLAC"
                    )
                for frame in stream.decode(packet):
                    limits.check_format(frame.sample_rate, frame.layout.nb_channels, "a frame has")
                    take(converter.convert(frame))
            take(converter.flush())
    except MEDIA_ERRORS as exc:
        raise UnsupportedAudio(f"the audio is corrupt and cannot be decoded ({reason(exc)})") from exc
    if filled == 0:
        raise InvalidInput("the audio has zero length: it decodes to no samples")
    samples = out[:filled]
    # Shared by every caller of Recording.samples(): nobody may change it under the others.
    samples.flags.writeable = False
    return samples


def decode_pcm16(data: bytes, mime_type: str = "") -> tuple[np.ndarray, int]:
    """Decode a provider's synthesized audio to mono int16 at its own (first) sample rate.

    Raises ValueError when the bytes are not audio; adapters map that to a retryable
    ProviderBadResponse.
    """
    converter = Converter("s16", "mono", None)
    chunks: list[np.ndarray] = []
    try:
        with open_input(data, mime_type) as container:
            if container.streams.audio and container.streams.audio[0].codec_context is not None:
                chunks = [c for frame in container.decode(audio=0) for c in converter.convert(frame)]
                chunks += converter.flush()
    except MEDIA_ERRORS as exc:
        raise ValueError(f"undecodable audio: {reason(exc)}") from exc
    rate = converter.rate
    if not chunks or not rate:
        raise ValueError("the audio has no samples")
    return np.concatenate(chunks).astype(np.int16, copy=False), rate
