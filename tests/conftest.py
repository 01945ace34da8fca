from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from gateway.api.v1 import audio_gateway_pb2_grpc
from gateway.grpc.server import GatewayServer
from gateway.settings import Settings


def local_settings(**limits: object) -> Settings:
    settings = Settings()
    settings.server.host = "127.0.0.1"
    settings.server.port = 0
    for key, value in limits.items():
        setattr(settings.limits, key, value)
    return settings


@pytest.fixture(scope="session")
async def engine_server() -> AsyncIterator[GatewayServer]:
    """The gateway with its real local engines, loaded once for the whole session."""
    server = GatewayServer(local_settings(max_audio_s=120.0, max_audio_bytes=4_000_000, max_text_chars=2000))
    await server.start()
    await server.wait_ready(timeout_s=300)
    assert not server.app.catalogue.failures, server.app.catalogue.failures
    yield server
    await server.stop(grace_s=5)


@pytest.fixture(scope="session")
async def channel(engine_server: GatewayServer) -> AsyncIterator[grpc.aio.Channel]:
    options = [("grpc.max_send_message_length", 64 * 1024 * 1024)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{engine_server.port}", options=options) as ch:
        yield ch


@pytest.fixture(scope="session")
def stub(channel: grpc.aio.Channel) -> audio_gateway_pb2_grpc.AudioGatewayStub:
    return audio_gateway_pb2_grpc.AudioGatewayStub(channel)
