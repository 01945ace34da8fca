"""Reading ``Audio.uri`` (``file://``) from the directories the server allows, and nothing else."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlparse

from gateway.core.errors import InvalidInput, LimitExceeded, PermissionDenied, clip

_LOCAL_HOSTS = ("", "localhost")


def read_uri(uri: str, roots: Sequence[Path], max_bytes: int) -> bytes:
    """Read a ``file://`` URI that lies under one of the configured roots.

    Only regular files are read (a FIFO or device under a root would block or never end), at most
    ``max_bytes`` of them. Messages echo at most a clipped part of the caller's name.
    """
    try:
        parsed = urlparse(uri)
    except ValueError as exc:
        raise InvalidInput(f"audio.uri {clip(uri)!r} is not a valid URI") from exc
    if parsed.scheme != "file":
        scheme = clip(parsed.scheme) or "(none)"
        raise InvalidInput(f"audio.uri scheme {scheme!r} is not supported; use file:// or send content")
    if parsed.netloc not in _LOCAL_HOSTS:
        raise InvalidInput(
            f"audio.uri names host {clip(parsed.netloc)!r}; only files on this server (file:///path) are read"
        )
    if not roots:
        raise PermissionDenied("audio.uri is disabled on this server; send the bytes in audio.content")
    name = unquote(parsed.path)
    shown = clip(name)
    if "\0" in name:
        raise InvalidInput(f"audio.uri {shown!r} contains a NUL byte (%00), which no file name can")
    try:
        path = Path(name).resolve()
        allowed = any(path.is_relative_to(root.resolve()) for root in roots)
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
        raise InvalidInput(f"audio.uri {shown!r} cannot be resolved to a file") from exc
    if not allowed:
        raise PermissionDenied(f"audio.uri {shown!r} is outside the allowed roots")
    try:
        # Non-blocking, so that opening a FIFO returns at once (and is then refused as not a file);
        # no-follow, so that a link swapped in after resolving cannot lead outside the roots.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise _open_failure(exc, shown) from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InvalidInput(f"audio.uri {shown!r} is not a regular file (a directory, device or pipe)")
        if info.st_size > max_bytes:
            raise LimitExceeded(f"audio is {info.st_size} bytes; the limit is {max_bytes} bytes")
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as file:
        try:
            # One byte over the limit tells a file that grew since fstat from one that fits.
            data = file.read(max_bytes + 1)
        except OSError as exc:
            raise InvalidInput(f"audio.uri {shown!r} could not be read ({exc.strerror})") from exc
    if len(data) > max_bytes:
        raise LimitExceeded(f"audio is over {max_bytes} bytes; the limit is {max_bytes} bytes")
    return data


def _open_failure(exc: OSError, shown: str) -> InvalidInput | PermissionDenied:
    if isinstance(exc, PermissionError):
        return PermissionDenied(f"the server may not read audio.uri {shown!r} (permission denied)")
    if exc.errno == errno.ENAMETOOLONG:
        return InvalidInput(f"audio.uri {shown!r} is too long a file name for this server's file system")
    if isinstance(exc, FileNotFoundError | NotADirectoryError):
        return InvalidInput(f"audio.uri {shown!r} does not name an existing file")
    if exc.errno == errno.ELOOP:
        return InvalidInput(f"audio.uri {shown!r} is a symbolic link that changed while it was opened")
    return InvalidInput(f"audio.uri {shown!r} cannot be opened ({exc.strerror})")
