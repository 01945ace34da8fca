"""The embedded Valkey: one gateway per directory, restarted when it dies, and never a reason not to start."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import structlog

from gateway.embedded_store import EmbeddedStore, EmbeddedStoreError, embedded_state
from gateway.settings import NO_REDIS, Settings


@pytest.fixture
def directory() -> Iterator[Path]:
    # Short, unlike tmp_path: the socket's path must fit a unix socket address.
    path = Path(tempfile.mkdtemp(prefix="gw-", dir="/tmp"))
    yield path / "valkey"
    shutil.rmtree(path, ignore_errors=True)


def _client(store: EmbeddedStore) -> redis.Redis:
    return redis.Redis.from_url(store.url, socket_timeout=2)


async def test_the_store_sets_the_url_and_keeps_an_append_only_file(directory):
    settings = Settings()
    settings.redis.embedded_dir = directory
    async with embedded_state(settings):
        assert settings.redis.url == f"unix://{directory / 'valkey.sock'}"
        client = redis.Redis.from_url(settings.redis.url, socket_timeout=2)
        client.set("gw:test", "kept")
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("port") == {"port": "0"}  # no TCP listener
        client.close()
    assert not (directory / "valkey.sock").exists()
    assert any((directory / "appendonlydir").iterdir())


async def test_a_configured_url_is_left_alone(directory):
    settings = Settings()
    settings.redis.url = NO_REDIS
    settings.redis.embedded_dir = directory
    async with embedded_state(settings):
        assert settings.redis.url == NO_REDIS
    assert not directory.exists()


async def test_a_store_that_cannot_start_leaves_the_gateway_without_redis(tmp_path):
    settings = Settings()
    settings.redis.embedded_dir = tmp_path / ("deep" * 30)
    with structlog.testing.capture_logs() as logs:
        async with embedded_state(settings):
            assert settings.redis.url == NO_REDIS
    (event,) = [e for e in logs if e["event"] == "state.embedded_unavailable"]
    assert "longer than a unix socket allows" in event["reason"]
    assert "GATEWAY_REDIS__EMBEDDED_DIR" in event["reason"]


def test_two_gateways_cannot_share_a_directory(directory):
    first = EmbeddedStore(directory)
    first.start()
    try:
        with pytest.raises(EmbeddedStoreError, match="another gateway already runs the embedded store"):
            EmbeddedStore(directory).start()
        assert _client(first).ping()
    finally:
        first.stop()
    second = EmbeddedStore(directory)  # free once the first has stopped
    second.start()
    second.stop()


async def test_a_store_that_dies_is_restarted_with_its_data(directory):
    store = EmbeddedStore(directory, check_interval_s=0.1)
    await asyncio.to_thread(store.start)
    stopping = asyncio.Event()
    supervisor = asyncio.create_task(store.supervise(stopping))
    try:
        client = _client(store)
        client.set("gw:survives", "yes")
        with structlog.testing.capture_logs() as logs:
            client.shutdown()  # the server exits (flushing its append-only file, as a crash would not)
            deadline = asyncio.get_running_loop().time() + 20
            while True:
                try:
                    restarted = any(e["event"] == "state.embedded_restarted" for e in logs)
                    if restarted and _client(store).get("gw:survives") == b"yes":
                        break
                except redis.ConnectionError:
                    pass
                assert asyncio.get_running_loop().time() < deadline, "the store was not restarted"
                await asyncio.sleep(0.1)
        assert [e["event"] for e in logs if e["event"].startswith("state.")] == [
            "state.embedded_down",
            "state.embedded_restarted",
        ]
    finally:
        stopping.set()
        await supervisor
        await asyncio.to_thread(store.stop)
