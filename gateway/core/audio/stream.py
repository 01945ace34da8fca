"""Caller audio of a live stream, decoded chunk by chunk to the gateway's internal PCM.

Every provider stream receives s16le mono PCM at the stream's sample rate (:mod:`gateway.core.streaming`),
whatever the caller sends. A :class:`StreamDecoder` takes the caller's bytes as they arrive, in whatever
pieces the network cut them into, and returns the PCM they complete:

- LINEAR16 is already that format; an odd byte (half a sample) waits for the next chunk.
- MULAW goes through PyAV's ``pcm_mulaw`` decoder (every byte is one sample, so nothing waits).
- OGG_OPUS is split into Ogg pages here (the format is a few fixed fields and a lacing table), and the
  Opus packets go to PyAV's decoder, then a resampler to the stream's rate. Demuxing incrementally keeps
  the work per chunk proportional to the chunk: PyAV's demuxer wants a seekable whole file.

Work per chunk is bounded by the chunk's size (the caller's message limit) plus at most one Ogg page held
over. Bytes that cannot be what the config declared raise :class:`InvalidInput`, as INVALID_ARGUMENT.
"""

from __future__ import annotations

import struct

import av
import numpy as np

from gateway.core.errors import InvalidInput
from gateway.core.streaming import PCM_SAMPLE_WIDTH, AudioEncoding

MIN_STREAM_RATE = 8_000
MAX_STREAM_RATE = 48_000
OPUS_RATE = 48_000

_OGG_MAGIC = b"OggS"
_OGG_HEADER = struct.Struct("<4sBBqIIIB")  # magic, version, type, granule, serial, seqno, crc, segments
# A page holds at most 255 segments of 255 bytes after a header of 27 + 255 bytes.
_MAX_OGG_PAGE = _OGG_HEADER.size + 255 + 255 * 255
# A packet may span pages; one longer than this is no Opus packet (they are at most 120 ms of audio).
_MAX_OPUS_PACKET = 64 * 1024

MISMATCH = "audio that doesn't match the config"


def check_sample_rate(encoding: AudioEncoding, rate: int) -> None:
    if not MIN_STREAM_RATE <= rate <= MAX_STREAM_RATE:
        raise InvalidInput(
            f"sample_rate_hertz {rate} is outside {MIN_STREAM_RATE}..{MAX_STREAM_RATE}; "
            f"send the rate of the {encoding.name} audio"
        )


class StreamDecoder:
    """Turns one stream's caller audio into s16le mono PCM at ``sample_rate``, chunk by chunk."""

    def __init__(self, encoding: AudioEncoding, sample_rate: int) -> None:
        check_sample_rate(encoding, sample_rate)
        self.encoding = encoding
        self.sample_rate = sample_rate
        self._carry = b""
        self._mulaw: av.CodecContext | None = None
        self._ogg: _OggOpus | None = None
        if encoding is AudioEncoding.MULAW:
            codec = av.CodecContext.create("pcm_mulaw", "r")
            codec.sample_rate = sample_rate
            codec.layout = "mono"
            self._mulaw = codec
        elif encoding is AudioEncoding.OGG_OPUS:
            self._ogg = _OggOpus(sample_rate)

    def decode(self, chunk: bytes) -> bytes:
        """The PCM ``chunk`` completes (possibly none yet); InvalidInput for bytes of another format."""
        if self.encoding is AudioEncoding.LINEAR16:
            data = self._carry + chunk
            whole = len(data) - len(data) % PCM_SAMPLE_WIDTH
            self._carry = data[whole:]
            return data[:whole]
        if self._mulaw is not None:
            return _frames_pcm(self._mulaw.decode(av.Packet(chunk)))
        assert self._ogg is not None
        return self._ogg.feed(chunk)

    def seconds(self, pcm: bytes) -> float:
        return len(pcm) / PCM_SAMPLE_WIDTH / self.sample_rate

    def finish(self) -> None:
        """The caller sent its last byte: a partial Ogg page or packet left over is a truncated stream."""
        if self._ogg is not None:
            self._ogg.finish()


def _frames_pcm(frames: list[av.AudioFrame]) -> bytes:
    return b"".join(f.to_ndarray().astype("<i2", copy=False).tobytes() for f in frames)


class _OggOpus:
    """Ogg pages in, Opus packets decoded and resampled out."""

    def __init__(self, sample_rate: int) -> None:
        self._buffer = bytearray()
        self._packet = bytearray()  # a packet continued on the next page
        self._packets = 0
        self._decoder: av.CodecContext | None = None
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)

    def feed(self, chunk: bytes) -> bytes:
        self._buffer += chunk
        out: list[bytes] = []
        while len(self._buffer) >= _OGG_HEADER.size:
            magic, version, _type, _granule, _serial, _seq, _crc, count = _OGG_HEADER.unpack_from(
                self._buffer
            )
            if magic != _OGG_MAGIC or version != 0:
                raise InvalidInput(f"{MISMATCH}: OGG_OPUS audio must be an Ogg stream, and this is not one")
            if len(self._buffer) < _OGG_HEADER.size + count:
                break
            lacing = self._buffer[_OGG_HEADER.size : _OGG_HEADER.size + count]
            body = _OGG_HEADER.size + count
            if len(self._buffer) < body + sum(lacing):
                break
            offset = body
            for size in lacing:
                self._packet += self._buffer[offset : offset + size]
                offset += size
                if len(self._packet) > _MAX_OPUS_PACKET:
                    raise InvalidInput(f"{MISMATCH}: an Ogg packet longer than any Opus packet")
                if size < 255:
                    out.append(self._on_packet(bytes(self._packet)))
                    self._packet.clear()
            del self._buffer[:offset]
        if len(self._buffer) > _MAX_OGG_PAGE:
            raise InvalidInput(f"{MISMATCH}: an Ogg page longer than the format allows")
        return b"".join(out)

    def _on_packet(self, packet: bytes) -> bytes:
        self._packets += 1
        if self._packets == 1:
            if not packet.startswith(b"OpusHead"):
                raise InvalidInput(f"{MISMATCH}: the Ogg stream does not carry Opus (no OpusHead)")
            decoder = av.CodecContext.create("libopus", "r")
            decoder.extradata = packet
            decoder.sample_rate = OPUS_RATE
            self._decoder = decoder
            return b""
        if self._packets == 2 or not packet:
            return b""  # OpusTags: metadata, no audio
        assert self._decoder is not None
        try:
            frames = self._decoder.decode(av.Packet(packet))
        except av.FFmpegError as exc:
            raise InvalidInput(f"{MISMATCH}: an Opus packet does not decode ({exc.strerror})") from None
        pcm: list[bytes] = []
        for frame in frames:
            frame.pts = None
            pcm.append(_frames_pcm(self._resampler.resample(frame)))
        return b"".join(pcm)

    def finish(self) -> None:
        if self._buffer or self._packet:
            raise InvalidInput(f"{MISMATCH}: the Ogg stream ends in the middle of a page")


def pcm_rms(pcm: bytes) -> float:
    """Root mean square of s16le samples (0..32768), for telling speech from silence in fakes and tests."""
    if len(pcm) < PCM_SAMPLE_WIDTH:
        return 0.0
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2").astype(np.float32)
    return float(np.sqrt(np.mean(samples * samples)))
