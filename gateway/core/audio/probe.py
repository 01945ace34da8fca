"""Validate and measure an upload by demuxing it: container metadata and packet timestamps, no decoding.

The duration the gateway bills is the media actually present: for PCM in WAV, the data bytes in the
file divided by the size of one sample frame; otherwise the span of the packets' timestamps. A header's
own claim (a duration, a data size, a byte rate) is only ever used to refuse an upload, never to bill it.

A plain PCM WAV is measured from its header alone (:func:`quick_pcm_wav`): the standard library's
:mod:`wave` reads the format chunk, and the duration is the data present. That costs microseconds, so it
runs on the event loop; anything it does not recognise goes to the full probe, which demuxes with FFmpeg in
a worker thread.
"""

from __future__ import annotations

import io
import re
import time
import wave
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple

import av
import av.audio.codeccontext
import av.audio.stream
import av.container

from gateway.core.audio.containers import MEDIA_ERRORS, not_audio, open_input, reason
from gateway.core.audio.limits import AudioLimits
from gateway.core.errors import InvalidInput, LimitExceeded, UnsupportedAudio


@dataclass(frozen=True)
class ProbeResult:
    container: str  # FFmpeg's demuxer name, e.g. "wav" or "mov,mp4,m4a,3gp,3g2,mj2"
    codec: str
    sample_rate: int
    channels: int
    duration_s: float  # the billed duration: what is present, not what a header claims

    @property
    def demuxer(self) -> str:
        """The name that opens this container again without probing."""
        return self.container.split(",")[0]


# A measured duration shorter than the container declares is a truncated upload; small differences
# are encoder padding.
_TRUNCATION_TOLERANCE = 0.05
_TRUNCATION_MIN_GAP_S = 0.25
# Raw ADTS AAC states no length: FFmpeg estimates one from the first frame's bitrate.
_ESTIMATED_DURATIONS = frozenset({"aac"})
# The tags that state an MP3's frame count; without one, the duration is a bitrate estimate too.
_MP3_FRAME_COUNT_TAGS = (b"Xing", b"Info", b"VBRI")
# Writers that stream (espeak-ng, sox, ffmpeg to a pipe) put 0 or a near-2^31/2^32 placeholder in a
# WAV data chunk's size because they never knew it.
_STREAMED_WAV_SIZE = 0x7FFF0000
# Leading samples the decoder drops (Opus pre-skip, MP3 encoder delay) are not audio; a header may
# shave at most this much off the packets' span, so it cannot talk the bill down.
_MAX_LEADING_SKIP_S = 0.25
# How often the demux loop looks at the clock.
_CPU_CHECK_EVERY = 256
# Real WAV files carry a handful of chunks before their audio (fmt, fact, LIST, bext, JUNK): a file that
# needs more to reach its data is left to the FFmpeg probe, so no walk over crafted chunks is long.
_MAX_WAV_CHUNKS = 64
# How far past the end of the file a chunk other than the data may reach before it is called crafted.
_CHUNK_OVERRUN = 1 << 20
_FOURCC = re.compile(rb"[ -~]{4}")
# Sample widths FFmpeg has a PCM codec for (8 to 32 bits); others get its verdict.
_PCM_WIDTHS = frozenset({1, 2, 3, 4})
_PCM_CODEC = re.compile(r"pcm_[suf](8|16|24|32|64)(le|be)?")
_COMPANDED_PCM = frozenset({"pcm_alaw", "pcm_mulaw"})


class _Measured(NamedTuple):
    duration_s: float
    stream_bytes: int  # encoded audio bytes, for the bytes-per-second floor
    complete: bool = True  # False: reading stopped early, the duration is a lower bound
    longest_s: float = 0.0  # the longest packet


def probe(data: bytes, mime_type: str, limits: AudioLimits) -> ProbeResult:
    """Validate ``data`` and measure its duration without decoding it.

    Raises InvalidInput / UnsupportedAudio for what no recording looks like (empty, not audio, an
    unknown codec, an absurd sample rate or channel count, a duration the bytes cannot hold, a
    truncated file) and LimitExceeded for size and duration over the limits. Blocking, with its CPU
    time bounded by ``limits.probe_cpu_s``: call it from a worker thread.
    """
    if not data:
        raise InvalidInput("audio is empty: send the file's bytes in audio.content")
    if len(data) > limits.max_bytes:
        raise LimitExceeded(f"audio is {len(data)} bytes; the limit is {limits.max_bytes} bytes")
    _check_riff_chunks(data)
    for quick in (True, False):
        try:
            container = open_input(data, mime_type, quick=quick)
        except MEDIA_ERRORS as exc:
            if quick:
                continue
            raise not_audio(mime_type) from exc
        try:
            with container:
                if quick and not _header_complete(container):
                    continue
                return _measure(container, data, limits)
        except MEDIA_ERRORS as exc:
            raise UnsupportedAudio(f"the audio is corrupt and cannot be read ({reason(exc)})") from exc
    raise AssertionError("unreachable: the full analysis either measures or raises")


def _header_complete(container: av.container.InputContainer) -> bool:
    """Whether a quick open found the parameters a probe checks (else the full analysis must run)."""
    audio = container.streams.audio
    if not audio:
        return False
    ctx = audio[0].codec_context
    return ctx is not None and bool(ctx.sample_rate) and bool(ctx.channels) and bool(ctx.name)


def _measure(container: av.container.InputContainer, data: bytes, limits: AudioLimits) -> ProbeResult:
    if not container.streams.audio:
        raise UnsupportedAudio("the upload has no audio stream")
    stream = container.streams.audio[0]
    ctx = stream.codec_context
    name = container.format.name
    if ctx is None:
        # FFmpeg found no decoder: an unknown format tag, or a PCM header with 0 bits per sample.
        raise UnsupportedAudio(
            f"the {name} file's audio codec is unknown or its header is invalid (e.g. 0 bits per sample "
            "or an unrecognised format tag); re-encode it as 16-bit PCM WAV, FLAC, MP3 or Opus"
        )
    limits.check_format(ctx.sample_rate, ctx.channels, "the header declares")

    frame_bytes = _pcm_frame_bytes(ctx) if name == "wav" else None
    chunk = _wav_data_chunk(data) if frame_bytes else None
    if frame_bytes and chunk:
        measured = _pcm_duration(data, chunk, frame_bytes, ctx.sample_rate)
    else:
        measured = _packet_duration(container, stream, limits)
        if measured.complete:
            measured = _reconcile_declared(container, stream, data, measured)
    if name == "ogg" and not _ogg_ends(data):
        raise UnsupportedAudio("the audio is truncated: the Ogg stream ends without its end-of-stream page")
    return _checked(name, ctx.name, ctx.sample_rate, ctx.channels, measured, limits)


def quick_pcm_wav(data: bytes, limits: AudioLimits) -> ProbeResult | None:
    """The probe of a plain PCM WAV from its header alone, or None for anything else.

    Bounded work (a few chunk headers), so it may run on the event loop. None means "not recognised",
    never "invalid": the full :func:`probe` then decides, with its precise errors.
    """
    if not data.startswith(b"RIFF") or data[8:12] != b"WAVE" or len(data) > limits.max_bytes:
        return None
    _check_riff_chunks(data)
    chunk = _wav_data_chunk(data)
    if chunk is None:
        return None
    try:
        # Up to the data chunk's header: wave stops there, and never reads the audio.
        with wave.open(io.BytesIO(data[: chunk[0]])) as header:
            channels, width, rate = header.getnchannels(), header.getsampwidth(), header.getframerate()
    except (wave.Error, EOFError, ValueError):
        return None  # not format 1 PCM (float, extensible, companded), or a header only FFmpeg judges
    if width not in _PCM_WIDTHS:
        return None
    codec = "pcm_u8" if width == 1 else f"pcm_s{8 * width}le"
    limits.check_format(rate, channels, "the header declares")
    return _checked("wav", codec, rate, channels, _pcm_duration(data, chunk, channels * width, rate), limits)


def _checked(
    container: str, codec: str, rate: int, channels: int, measured: _Measured, limits: AudioLimits
) -> ProbeResult:
    """Refuse what no recording looks like, and what is over the limits; else the probe's result."""
    duration_s, stream_bytes = measured.duration_s, measured.stream_bytes
    if duration_s <= 0:
        raise InvalidInput("the audio has zero length: it holds no samples")
    if stream_bytes < duration_s * limits.min_bytes_per_s:
        raise UnsupportedAudio(
            f"the audio's timestamps claim {duration_s:.1f} s but it holds only {stream_bytes} bytes of "
            f"encoded audio (under {limits.min_bytes_per_s:g} bytes per second): the file is corrupt or "
            "crafted; re-encode it"
        )
    if not measured.complete:
        raise LimitExceeded(
            f"audio runs past the {limits.max_duration_s:g} s limit (reading stopped at {duration_s:.1f} s); "
            "split it into shorter recordings"
        )
    if duration_s > limits.max_duration_s:
        raise LimitExceeded(
            f"audio is {duration_s:.1f} s long, over the {limits.max_duration_s:g} s limit; "
            "split it into shorter recordings"
        )
    return ProbeResult(
        container=container, codec=codec, sample_rate=rate, channels=channels, duration_s=duration_s
    )


def _pcm_frame_bytes(ctx: av.audio.codeccontext.AudioCodecContext) -> int | None:
    """Bytes of one sample frame (all channels) for plain PCM, from the codec, not the header's claim."""
    if ctx.name in _COMPANDED_PCM:
        return ctx.channels
    match = _PCM_CODEC.fullmatch(ctx.name)
    return ctx.channels * int(match.group(1)) // 8 if match else None


def _wav_data_chunk(data: bytes) -> tuple[int, int] | None:
    """Offset and declared size of a RIFF file's data chunk, walking the first chunks from the start."""
    at = 12
    for _ in range(_MAX_WAV_CHUNKS):
        if at + 8 > len(data):
            return None
        size = int.from_bytes(data[at + 4 : at + 8], "little")
        if data[at : at + 4] == b"data":
            return at + 8, size
        at += 8 + size + (size & 1)
    return None


def _check_riff_chunks(data: bytes) -> None:
    """Refuse a WAV chunk that declares far more bytes than the file holds after it.

    FFmpeg allocates some chunks (LIST/INFO entries) at their declared size before reading them, so
    such a claim would cost memory the upload never brings. The data chunk is exempt: streaming
    writers leave its size open, and :func:`_pcm_duration` judges a truncated one. A metadata chunk
    cut short by a truncated copy (a small overrun) is left to FFmpeg, and so are bytes whose tag is no
    chunk name (audio past a data chunk that declares too little), which FFmpeg skips unread.
    """
    if not (data.startswith(b"RIFF") and data[8:12] == b"WAVE"):
        return
    at = 12
    for _ in range(_MAX_WAV_CHUNKS):
        if at + 8 > len(data):
            return
        tag, size = data[at : at + 4], int.from_bytes(data[at + 4 : at + 8], "little")
        remaining = len(data) - at - 8
        if tag == b"data":
            if not 0 < size < _STREAMED_WAV_SIZE or size > remaining:
                return
        elif size > remaining + _CHUNK_OVERRUN and _FOURCC.fullmatch(tag):
            raise UnsupportedAudio(
                f"the WAV file's {tag.decode('ascii')!r} chunk declares {size} bytes but only {remaining} "
                "follow it: the file is truncated or crafted; re-encode it"
            )
        at += 8 + size + (size & 1)


def _pcm_duration(data: bytes, chunk: tuple[int, int], frame_bytes: int, rate: int) -> _Measured:
    offset, declared = chunk
    present = len(data) - offset
    if 0 < declared < _STREAMED_WAV_SIZE:
        if present < declared:
            raise UnsupportedAudio(
                f"the audio is truncated: its data chunk declares {declared} bytes but only {present} "
                "are present"
            )
        present = declared
    return _Measured((present // frame_bytes) / rate, present)


def _packet_duration(
    container: av.container.InputContainer, stream: av.audio.stream.AudioStream, limits: AudioLimits
) -> _Measured:
    """The span of the packets' timestamps and the bytes they carry.

    Reading stops early once the span is over the duration limit: the upload is refused either way.
    """
    time_base = stream.time_base
    if not time_base:
        raise UnsupportedAudio("the audio stream has no time base, so its duration cannot be measured")
    over_limit = Fraction(limits.max_duration_s) / time_base
    first: int | None = None
    end = longest = stream_bytes = 0
    started = time.thread_time()
    for count, packet in enumerate(container.demux(stream), start=1):
        if count % _CPU_CHECK_EVERY == 0 and time.thread_time() - started > limits.probe_cpu_s:
            raise UnsupportedAudio(
                f"reading the container took over {limits.probe_cpu_s:g} s of CPU: it holds far more "
                "packets than a recording of its length; re-encode it"
            )
        stream_bytes += packet.size
        stamp = packet.pts if packet.pts is not None else packet.dts
        if stamp is None:
            continue
        length = max(packet.duration or 0, 0)
        if first is None:
            first, end = stamp, stamp + length
        first, end, longest = min(first, stamp), max(end, stamp + length), max(longest, length)
        if end - first > over_limit:
            return _Measured(float((end - first) * time_base), stream_bytes, complete=False)
    if first is None:
        return _Measured(0.0, stream_bytes)
    skip = 0
    if stream.start_time is not None and first < stream.start_time < end:
        skip = min(stream.start_time - first, int(_MAX_LEADING_SKIP_S / time_base))
    return _Measured(
        float((end - first - skip) * time_base), stream_bytes, longest_s=float(longest * time_base)
    )


def _reconcile_declared(
    container: av.container.InputContainer,
    stream: av.audio.stream.AudioStream,
    data: bytes,
    measured: _Measured,
) -> _Measured:
    """Refuse a file shorter than its header declares; otherwise the measured duration, or the declared
    one where it only trims the padding of the last packet (an MP3's LAME header says how much)."""
    name = container.format.name
    if name in _ESTIMATED_DURATIONS or (name == "mp3" and not _mp3_counts_frames(data)):
        return measured
    if stream.duration is not None and stream.time_base:
        declared_s = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        declared_s = container.duration / av.time_base
    else:
        return measured
    measured_s = measured.duration_s
    if (
        measured_s < declared_s * (1 - _TRUNCATION_TOLERANCE)
        and declared_s - measured_s > _TRUNCATION_MIN_GAP_S
    ):
        raise UnsupportedAudio(
            f"the audio is truncated: its header declares {declared_s:.2f} s but only {measured_s:.2f} s "
            "are present"
        )
    if measured_s - measured.longest_s <= declared_s < measured_s:
        return measured._replace(duration_s=declared_s)
    return measured


def _mp3_counts_frames(data: bytes) -> bool:
    """Whether the first MPEG frame (after any ID3v2 tag) is a Xing/Info/VBRI frame-count header."""
    start = 0
    if data[:3] == b"ID3" and len(data) >= 10:
        # The tag's size is four 7-bit ("syncsafe") bytes, plus a 10-byte footer when flagged.
        b = data[6:10]
        size = (b[0] & 0x7F) << 21 | (b[1] & 0x7F) << 14 | (b[2] & 0x7F) << 7 | (b[3] & 0x7F)
        start = 10 + size + (10 if data[5] & 0x10 else 0)
    head = data[start : start + 192]
    return any(tag in head for tag in _MP3_FRAME_COUNT_TAGS)


def _ogg_ends(data: bytes) -> bool:
    """Whether the last Ogg page carries the end-of-stream flag (demuxers accept a cut file silently)."""
    last_page = data.rfind(b"OggS")
    return last_page >= 0 and last_page + 5 < len(data) and bool(data[last_page + 5] & 0x04)
