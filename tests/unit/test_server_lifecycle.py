"""Health follows the engines: NOT_SERVING while they load, per operation, and during the drain."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc as pb_grpc
from gateway.grpc.server import GatewayServer
from providers.testing import FakeSynthesizer, FakeTranscriber
from tests.audio_files import encode, tone
from tests.conftest import local_settings

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def test_health_tracks_warm_up_per_operation():
    slow_stt = FakeTranscriber()
    slow_stt.start_delay_s = 0.8
    server = GatewayServer(local_settings(), providers=[FakeSynthesizer(), slow_stt])
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)

            async def status(name: str) -> int:
                return (await health.Check(health_pb2.HealthCheckRequest(service=name))).status

            await asyncio.sleep(0.3)
            assert await status("") == NOT_SERVING
            assert await status("gateway.api.v1.AudioGateway/Synthesize") == SERVING
            assert await status("gateway.api.v1.AudioGateway/Transcribe") == NOT_SERVING
            clip = encode(tone(1.0), 16_000, "wav")
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await pb_grpc.AudioGatewayStub(channel).Transcribe(
                    pb.TranscribeRequest(audio={"content": clip})
                )
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "still loading" in caught.value.details()
            await server.wait_ready(timeout_s=5)
            assert await status("") == SERVING
            assert await status("gateway.api.v1.AudioGateway/Transcribe") == SERVING
    finally:
        await server.stop(grace_s=1)


async def test_a_failed_engine_keeps_the_server_not_serving_but_up():
    broken = FakeTranscriber()
    broken.start_fail_with = RuntimeError("weights missing")
    server = GatewayServer(local_settings(), providers=[FakeSynthesizer(), broken])
    port = await server.start()
    try:
        await server.wait_ready(timeout_s=5)
        assert server.app.catalogue.failures == {"fake-stt": "RuntimeError: weights missing"}
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            overall = await health.Check(health_pb2.HealthCheckRequest(service=""))
            assert overall.status == NOT_SERVING
            reply = await pb_grpc.AudioGatewayStub(channel).Synthesize(pb.SynthesizeRequest(text="Hi."))
            assert reply.audio
    finally:
        await server.stop(grace_s=1)


async def test_a_second_server_cannot_take_the_same_port():
    first = GatewayServer(local_settings(), providers=[FakeSynthesizer()])
    port = await first.start()
    try:
        settings = local_settings()
        settings.server.port = port
        with pytest.raises(RuntimeError):
            await GatewayServer(settings, providers=[FakeSynthesizer()]).start()
    finally:
        await first.stop(grace_s=1)
