"""Opening uploaded bytes as a media container with PyAV, and what PyAV raises on bad media."""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import re
from pathlib import Path

import av
import av.container
import av.error
import structlog

from gateway.core.errors import UnsupportedAudio, clip

# FFmpeg sizes some allocations by what a header declares, before reading what it describes: a WAV's
# LIST/INFO entry is zeroed at its declared size (up to 2 GB), so a 66 KB upload took 400 MB of RSS and
# 1.5 s of CPU. No allocation an audio demuxer, decoder or resampler makes for a real recording comes
# near this cap (a resampled minute of 48 kHz PCM is 5.5 MB); past it FFmpeg reports ENOMEM, which is
# bad media like any other error.
MAX_FFMPEG_ALLOCATION = 64 * 1024 * 1024


def _libavutil() -> ctypes.CDLL | None:
    """The libavutil PyAV loaded (its wheel bundles its own), or the system's."""
    maps = Path("/proc/self/maps")
    if maps.exists():
        found = re.search(r"(/\S*libavutil[^/\s]*\.so[^/\s]*)", maps.read_text())
        if found:
            return ctypes.CDLL(found.group(1))
    name = ctypes.util.find_library("avutil")
    return ctypes.CDLL(name) if name else None


def cap_ffmpeg_allocations(limit: int = MAX_FFMPEG_ALLOCATION) -> bool:
    """Make FFmpeg refuse any single allocation over ``limit`` bytes, process-wide. False if the
    library could not be found (the cap is then FFmpeg's own, 2 GB)."""
    try:
        library = _libavutil()
        if library is None:
            return False
        library.av_max_alloc(ctypes.c_size_t(limit))
    except (OSError, AttributeError):
        return False
    return True


if not cap_ffmpeg_allocations():
    structlog.get_logger(__name__).warning(
        "ffmpeg_allocation_cap_unavailable", limit_bytes=MAX_FFMPEG_ALLOCATION
    )

# What reading hostile media can raise: FFmpeg's own errors (some are also OSError or ValueError),
# and the errors PyAV raises itself when a header describes nonsense (a layout it cannot name, a
# time base that divides by zero, a sample count that overflows).
MEDIA_ERRORS: tuple[type[Exception], ...] = (
    av.error.FFmpegError,
    ValueError,
    OSError,
    EOFError,
    ArithmeticError,
    IndexError,
    RuntimeError,
)

# Container hints by MIME type; FFmpeg probes the bytes either way.
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

ACCEPTED = "wav, flac, mp3, ogg/opus, webm or m4a"


def format_hint(mime_type: str) -> str | None:
    return _FORMAT_HINTS.get(mime_type.split(";")[0].strip().lower()) if mime_type else None


# FFmpeg's stream analysis reads (and for some codecs decodes) up to 5 MB or 5 s of media before it
# returns, which made opening a 6 s WAV cost 9 ms. Headers carry what a probe needs for most files; a
# caller that finds a parameter missing reopens with the full analysis.
_QUICK_ANALYSIS = {"probesize": "4096", "analyzeduration": "0"}


def open_input(
    data: bytes, mime_type: str = "", demuxer: str | None = None, *, quick: bool = False
) -> av.container.InputContainer:
    """Open ``data`` for reading; ``demuxer`` forces one, else the MIME type hints and FFmpeg probes.

    A wrong MIME hint does not reject good audio: without a forced demuxer, a failed open is retried
    with FFmpeg's own probing. ``quick`` limits FFmpeg's stream analysis to the first few KB.
    """
    hint = demuxer or format_hint(mime_type)
    options = _QUICK_ANALYSIS if quick else {}
    try:
        return av.open(io.BytesIO(data), mode="r", format=hint, metadata_errors="replace", options=options)
    except MEDIA_ERRORS:
        if hint is None or demuxer is not None:
            raise
    return av.open(io.BytesIO(data), mode="r", metadata_errors="replace", options=options)


def not_audio(mime_type: str) -> UnsupportedAudio:
    given = f" (declared {clip(mime_type)!r})" if mime_type else ""
    return UnsupportedAudio(f"the upload is not decodable audio{given}; send {ACCEPTED}")


def reason(exc: BaseException) -> str:
    """FFmpeg's own words for a failure (never a path or payload), else the exception's type."""
    if isinstance(exc, av.error.FFmpegError) and exc.strerror:
        return str(exc.strerror)
    return type(exc).__name__
