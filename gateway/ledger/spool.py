"""A local append-only spool for ledger records that could not reach Redis.

Records are JSON lines in segment files. Each :class:`Spool` writes only its own segments, under an owner id
unique to the instance::

    {owner}.lock                 held with flock(LOCK_EX) for as long as the owner lives
    {owner}.{seq:08d}.jsonl      its segments, oldest first; the highest is the one being appended to
    rejected.jsonl               lines that could not be parsed, kept for a person to look at

An append writes whole lines and fsyncs once. A segment is never rewritten: replay reads a sealed segment,
sends it, and deletes the file, so a crash in between sends it again (the ledger's store ignores records it
has seen). A failed write is truncated away and its segment sealed, so a half-written line can only ever be
the last bytes of a file, where readers drop it.

Several gateway processes may share one directory. A segment whose owner's lock is free belongs to a process
that has stopped or crashed; any other instance adopts it (taking that lock) and replays it. Lock files
appear already locked (created aside, locked, then hard-linked into place), so a live owner's segments are
never taken. Own segments sealed at close stay on disk for the next instance to adopt.

Blocking file I/O, meant for a worker thread (``asyncio.to_thread``). Methods are serialized by a lock, so a
writer cancelled mid-append cannot interleave with the final flush that follows it.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import secrets
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

__all__ = ["Segment", "SegmentContents", "Spool"]

_SUFFIX = ".jsonl"
P = ParamSpec("P")
R = TypeVar("R")
_REJECTED = "rejected.jsonl"


def _serialized(method: Callable[Concatenate[Spool, P], R]) -> Callable[Concatenate[Spool, P], R]:
    @functools.wraps(method)
    def locked(self: Spool, *args: P.args, **kwargs: P.kwargs) -> R:
        with self._mutex:
            return method(self, *args, **kwargs)

    return locked


@dataclass
class Segment:
    path: Path
    owner: str
    records: int


@dataclass(frozen=True)
class SegmentContents:
    lines: list[str]
    # The file ended mid-line: a write that never completed (and was never acknowledged as spooled).
    torn_tail: bool


class Spool:
    def __init__(self, directory: Path, *, fsync: bool = True, segment_records: int = 10_000) -> None:
        self.directory = directory
        self.owner = f"{time.time_ns():x}-{os.getpid()}-{secrets.token_hex(4)}"
        self._fsync = fsync
        self._segment_records = segment_records
        self._locks: dict[str, int] = {}
        self._pending: deque[Segment] = deque()
        self._active: Segment | None = None
        self._active_fd = -1
        self._active_size = 0
        self._seq = 0
        self._depth = 0
        self._mutex = threading.RLock()

    @property
    def depth(self) -> int:
        """Records on disk that this instance owns or has adopted and not yet replayed."""
        return self._depth

    @_serialized
    def append(self, lines: Sequence[str]) -> None:
        """Write the lines durably (one fsync), or raise OSError having written nothing that counts."""
        if not lines:
            return
        self._own()
        if self._active is None or self._active.records >= self._segment_records:
            self.seal()
            self._open_segment()
        assert self._active is not None
        data = "".join(f"{line}\n" for line in lines).encode()
        try:
            _write_all(self._active_fd, data)
            if self._fsync:
                os.fsync(self._active_fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._active_fd, self._active_size)
            self.seal()
            raise
        self._active.records += len(lines)
        self._active_size += len(data)
        self._depth += len(lines)

    @_serialized
    def seal(self) -> None:
        """Close the segment being appended to, making it replayable; the next append starts another."""
        if self._active is None:
            return
        segment, self._active = self._active, None
        os.close(self._active_fd)
        self._active_fd = -1
        if segment.records:
            self._pending.append(segment)
        else:
            segment.path.unlink(missing_ok=True)

    @_serialized
    def next_segment(self) -> Segment | None:
        """The oldest sealed segment (own first, then adopted ones)."""
        return self._pending[0] if self._pending else None

    @_serialized
    def read(self, segment: Segment) -> SegmentContents:
        try:
            parts = segment.path.read_bytes().split(b"\n")
        except FileNotFoundError:
            # Deleted behind our back (by hand): nothing left to replay, and remove() forgets it.
            return SegmentContents([], torn_tail=False)
        tail = parts.pop()
        lines = [p.decode("utf-8", errors="replace") for p in parts if p.strip()]
        return SegmentContents(lines, torn_tail=bool(tail.strip()))

    @_serialized
    def remove(self, segment: Segment) -> None:
        """Delete a segment whose records are all stored elsewhere now."""
        segment.path.unlink(missing_ok=True)
        self._pending.remove(segment)
        self._depth -= segment.records
        if segment.owner != self.owner and not any(s.owner == segment.owner for s in self._pending):
            self._release(segment.owner, delete=True)

    @_serialized
    def reject(self, lines: Sequence[str]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / _REJECTED, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            _write_all(fd, "".join(f"{line}\n" for line in lines).encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    @_serialized
    def adopt_orphans(self) -> int:
        """Take over the segments of owners that are gone; returns how many records were adopted."""
        if not self.directory.is_dir():
            return 0
        with_segments: set[str] = set()
        with_locks: set[str] = set()
        for path in self.directory.iterdir():
            name = path.name
            if name.endswith(".lock") and not name.startswith("."):
                with_locks.add(name.removesuffix(".lock"))
            elif (parsed := _parse_segment_name(name)) is not None:
                with_segments.add(parsed[0])
        held = self._locks.keys() | {self.owner}
        adopted = 0
        for owner in sorted(with_segments - held):
            fd = self._claim(owner)
            if fd is None:
                continue
            self._locks[owner] = fd
            # Listed afresh under the lock: another adopter may have finished with them meanwhile.
            for path in self._segments_of(owner):
                try:
                    records = path.read_bytes().count(b"\n")
                except FileNotFoundError:
                    continue
                self._pending.append(Segment(path, owner, records))
                self._depth += records
                adopted += records
            if not any(s.owner == owner for s in self._pending):
                self._release(owner, delete=True)
        for owner in sorted(with_locks - with_segments - held):
            # A lock left by an owner that died after deleting its last segment.
            fd = self._claim(owner)
            if fd is not None:
                self._locks[owner] = fd
                self._release(owner, delete=True)
        return adopted

    @_serialized
    def close(self) -> None:
        """Seal and let go: remaining segments stay on disk for whichever instance adopts them next."""
        self.seal()
        for owner in list(self._locks):
            own_left = owner == self.owner and any(s.owner == owner for s in self._pending)
            self._release(owner, delete=owner == self.owner and not own_left)
        self._pending.clear()
        self._depth = 0

    # -- files ----------------------------------------------------------------------------------------

    def _own(self) -> None:
        if self.owner in self._locks:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = self._claim(self.owner)
        if fd is None:
            raise OSError(f"cannot lock the spool owner file for {self.owner} in {self.directory}")
        self._locks[self.owner] = fd

    def _open_segment(self) -> None:
        path = self.directory / f"{self.owner}.{self._seq:08d}{_SUFFIX}"
        self._seq += 1
        self._active_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        self._active_size = 0
        self._active = Segment(path, self.owner, 0)
        if self._fsync:
            _fsync_dir(self.directory)

    def _segments_of(self, owner: str) -> list[Path]:
        found = []
        for path in self.directory.iterdir():
            parsed = _parse_segment_name(path.name)
            if parsed is not None and parsed[0] == owner:
                found.append((parsed[1], path))
        return [path for _, path in sorted(found)]

    def _lock_path(self, owner: str) -> Path:
        return self.directory / f"{owner}.lock"

    def _claim(self, owner: str) -> int | None:
        """Hold ``owner``'s lock, creating it if missing; None while a live process holds it."""
        path = self._lock_path(owner)
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return self._create_lock(path)
        if _try_flock(fd) and _same_file(fd, path):
            return fd
        # Held by a live owner, or unlinked by the adopter that finished with it after we opened it.
        os.close(fd)
        return None

    def _create_lock(self, path: Path) -> int | None:
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".lock-")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.link(tmp, path)
        except FileExistsError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        finally:
            Path(tmp).unlink(missing_ok=True)
        if self._fsync:
            _fsync_dir(self.directory)
        return fd

    def _release(self, owner: str, *, delete: bool) -> None:
        fd = self._locks.pop(owner)
        path = self._lock_path(owner)
        try:
            # Unlinked while still held, so nobody can lock it between our unlink and close.
            if delete and _same_file(fd, path):
                path.unlink(missing_ok=True)
        finally:
            os.close(fd)


def _parse_segment_name(name: str) -> tuple[str, int] | None:
    if not name.endswith(_SUFFIX) or name.startswith("."):
        return None
    owner, _, seq = name.removesuffix(_SUFFIX).rpartition(".")
    if not owner or not seq.isdigit():
        return None
    return owner, int(seq)


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (on_disk.st_dev, on_disk.st_ino)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_dir(directory: Path) -> None:
    # The new name must survive a crash as well as the bytes behind it.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
