"""Uploads that no recording looks like, built byte by byte: the inputs that once crashed or stalled
the gateway."""

from __future__ import annotations

import io
import struct

import av
import numpy as np

from tests.audio_files import tone

WAVE_FORMAT_PCM = 1
WAVE_FORMAT_IEEE_FLOAT = 3
WAVE_FORMAT_EXTENSIBLE = 0xFFFE


def wav(
    data: bytes,
    *,
    tag: int = WAVE_FORMAT_PCM,
    channels: int = 1,
    rate: int = 16_000,
    bits: int = 16,
    block_align: int | None = None,
) -> bytes:
    """A RIFF/WAVE file with exactly the header fields given, consistent or not."""
    align = block_align if block_align is not None else channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, (rate * align) & 0xFFFFFFFF, align, bits)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def pcm16(seconds: float, rate: int = 16_000) -> bytes:
    return tone(seconds, rate).astype("<i2").tobytes()


def gigahertz_wav() -> bytes:
    """32 KB whose header claims 1,962,950,272 Hz: resampling it held the GIL ~14 s and took 2 GB."""
    return wav(pcm16(1.0)[:32_000], rate=1_962_950_272)


def one_hertz_wav() -> bytes:
    """3.6 KB at 1 Hz: 1,800 samples that "decoded" to 1,799 s of audio."""
    return wav(pcm16(1.0)[:3_600], rate=1)


def zero_bits_wav() -> bytes:
    return wav(pcm16(1.0), bits=0, block_align=2)


def extensible_wav() -> bytes:
    """Format tag 0xFFFE without the extension that names the real format: FFmpeg finds no codec."""
    return wav(pcm16(1.0), tag=WAVE_FORMAT_EXTENSIBLE)


def float_wav(samples: np.ndarray, rate: int = 16_000) -> bytes:
    return wav(samples.astype("<f4").tobytes(), tag=WAVE_FORMAT_IEEE_FLOAT, bits=32, rate=rate)


def nan_wav(seconds: float = 1.0, clean_s: float = 0.0) -> bytes:
    """Float samples that are NaN after ``clean_s`` seconds of a clean tone."""
    clean = tone(clean_s).astype(np.float32) / 32768
    return float_wav(np.concatenate([clean, np.full(int(seconds * 16_000), np.nan, np.float32)]))


def _mp3(samples: np.ndarray, layout: str, rate: int = 22_050) -> bytes:
    # No ID3 tag and no Xing frame: the two halves join into one plain run of MPEG frames.
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp3", options={"id3v2_version": "0", "write_xing": "0"}) as out:
        stream = out.add_stream("libmp3lame", rate=rate, layout=layout)
        channels = 1 if layout == "mono" else 2
        interleaved = np.repeat(samples.astype(np.int16), channels).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(interleaved, format="s16", layout=layout)
        frame.sample_rate = rate
        resampler = av.AudioResampler(format=stream.codec_context.format, layout=layout, rate=rate)
        for converted in resampler.resample(frame) + resampler.resample(None):
            out.mux(stream.encode(converted))
        out.mux(stream.encode(None))
    return buffer.getvalue()


def layout_switching_mp3(seconds: float = 1.0, switches: int = 1) -> bytes:
    """MPEG frames that switch between mono and stereo mid-stream ("Frame does not match
    AudioResampler setup")."""
    part = tone(seconds / (switches + 1), 22_050)
    return b"".join(_mp3(part, "mono" if i % 2 == 0 else "stereo") for i in range(switches + 1))


def info_bomb_wav(claimed: int = 400_000_000) -> bytes:
    """A LIST/INFO chunk whose entry claims ``claimed`` bytes: FFmpeg zeroed that much before reading it
    (66 KB took 400 MB of RSS and 1.5 s of CPU)."""
    plain = wav(pcm16(1.0))
    fmt_end = 12 + 8 + int.from_bytes(plain[16:20], "little")
    entry = b"INAM" + struct.pack("<I", claimed - 12) + b"x" * 64
    chunk = b"LIST" + struct.pack("<I", claimed) + b"INFO" + entry
    body = plain[12:fmt_end] + chunk + plain[fmt_end:]
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body
