from __future__ import annotations

import contextlib
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from uuid import uuid4

import grpc
import pytest
import redis.asyncio

from gateway.api.v1 import audio_gateway_pb2_grpc
from gateway.grpc.server import GatewayServer
from gateway.http.server import http_doors
from gateway.settings import Settings
from tests.redis_servers import redis_server_binary


def local_settings(**limits: object) -> Settings:
    settings = Settings()
    settings.server.host = "127.0.0.1"
    settings.server.port = 0
    settings.metrics.host, settings.metrics.port = "127.0.0.1", 0
    settings.ledger.spool_dir = Path(tempfile.mkdtemp(prefix="gw-spool-"))
    for key, value in limits.items():
        setattr(settings.limits, key, value)
    return settings


@pytest.fixture(scope="session")
async def engine_server() -> AsyncIterator[GatewayServer]:
    """The gateway with its real local engines, loaded once for the whole session; its HTTP door too."""
    uploads = Path(tempfile.mkdtemp(prefix="gw-uploads-"))
    settings = local_settings(
        max_audio_s=120.0, max_audio_bytes=4_000_000, max_text_chars=2000, uri_roots=[uploads]
    )
    async with serving_with_http(settings) as server:
        yield server


@contextlib.asynccontextmanager
async def serving_with_http(settings: Settings) -> AsyncIterator[GatewayServer]:
    """The gateway and its HTTP door on free ports, once every engine is warm (none may fail to load)."""
    settings.http.host, settings.http.port = "127.0.0.1", 0
    server = GatewayServer(settings, doors=http_doors(settings))
    await server.start()
    try:
        await server.wait_ready(timeout_s=300)
        assert not server.app.catalogue.failures, server.app.catalogue.failures
        yield server
    finally:
        await server.stop(grace_s=5)


@pytest.fixture(scope="session")
def uploads_dir(engine_server: GatewayServer) -> Path:
    """The directory the engine server reads `Audio.uri` (file://) from."""
    return engine_server.app.settings.limits.uri_roots[0]


@pytest.fixture(scope="session")
async def channel(engine_server: GatewayServer) -> AsyncIterator[grpc.aio.Channel]:
    options = [("grpc.max_send_message_length", 64 * 1024 * 1024)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{engine_server.port}", options=options) as ch:
        yield ch


@pytest.fixture(scope="session")
def stub(channel: grpc.aio.Channel) -> audio_gateway_pb2_grpc.AudioGatewayStub:
    return audio_gateway_pb2_grpc.AudioGatewayStub(channel)


def _redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The machine's Redis when it answers, else a throwaway redis-server on a free port.

    Tests namespace their keys (unique prefixes) so they never disturb other users of a shared server.
    """
    shared = "redis://127.0.0.1:6379/0"
    if _redis_answers(shared):
        yield shared
        return
    with throwaway_redis() as url:
        yield url


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def redis_prefix(redis_client: redis.asyncio.Redis) -> AsyncIterator[str]:
    """A key prefix of the test's own, whose keys are deleted afterwards."""
    prefix = f"test:{uuid4().hex}:"
    yield prefix
    async for key in redis_client.scan_iter(match=f"{prefix}*"):
        await redis_client.delete(key)


@contextlib.contextmanager
def throwaway_redis() -> Iterator[str]:
    """A private redis-server for tests that stop or break Redis (never the shared one)."""
    binary = redis_server_binary()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while not _redis_answers(url):
            if time.monotonic() > deadline:
                raise RuntimeError("throwaway redis-server did not start")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
