"""Redis dies mid-load: no request fails. Redis returns: the ledger holds every request exactly once."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import grpc

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc as pb_grpc
from gateway.api.v1 import common_pb2 as common
from gateway.core.provider_types import Locality
from gateway.grpc.server import GatewayServer
from gateway.money.pricing import UnitPrices
from providers.testing import FakeTranscriber
from tests.audio_files import encode, tone
from tests.conftest import local_settings
from tests.redis_servers import free_port, redis_server, stop_server


async def test_requests_survive_a_redis_outage_and_the_ledger_catches_up(tmp_path):
    port = free_port()
    settings = local_settings()
    settings.redis.url = f"redis://127.0.0.1:{port}/0"
    settings.redis.timeout_s = 0.2
    settings.ledger.flush_interval_s = 0.05
    settings.ledger.replay_interval_s = 0.2
    settings.breaker.sync_interval_s = 0.2
    fake = FakeTranscriber(name="cloud-stt", locality=Locality.CLOUD, delay_s=0.02)
    prices = {("cloud-stt", fake.model): UnitPrices(per_audio_second=Decimal("0.0001"))}
    clips = [common.Audio(content=encode(tone(0.5, hz=200.0 + i), 16_000, "wav")) for i in range(8)]
    request_ids: list[str] = []
    failures: list[grpc.StatusCode] = []

    with redis_server(port, tmp_path / "redis") as first:
        server = GatewayServer(settings, providers=[fake], prices=prices)
        grpc_port = await server.start()
        await server.wait_ready(10)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}")
        stub = pb_grpc.AudioGatewayStub(channel)
        stop_load = asyncio.Event()

        async def load() -> None:
            n = 0
            while not stop_load.is_set():
                try:
                    reply = await stub.Transcribe(
                        pb.TranscribeRequest(audio=clips[n % len(clips)]), timeout=10
                    )
                    request_ids.append(reply.route.request_id)
                except grpc.aio.AioRpcError as exc:
                    failures.append(exc.code())
                n += 1

        workers = [asyncio.create_task(load()) for _ in range(4)]
        await asyncio.sleep(1.0)
        before_outage = len(request_ids)
        stop_server(first)  # Redis gone, mid-load
        await asyncio.sleep(1.5)
        during_outage = len(request_ids) - before_outage
        assert server.app.ledger.spool_depth() > 0, "records made during the outage should wait in the spool"

    with redis_server(port, tmp_path / "redis"):
        await asyncio.sleep(1.0)
        stop_load.set()
        await asyncio.gather(*workers)
        await channel.close()
        await server.stop(5)
        assert not failures, failures
        assert before_outage > 0 and during_outage > 0

        # A fresh gateway against the restored Redis reads the ledger back.
        reader = GatewayServer(
            settings, providers=[FakeTranscriber(name="cloud-stt", locality=Locality.CLOUD)]
        )
        deadline = time.monotonic() + 20
        while True:
            records = await reader.app.ledger.request_records(0, time.time() + 60)
            if len(records) >= len(request_ids) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        await reader.app.close()
    stored = [r.request_id for r in records]
    assert len(stored) == len(set(stored)), "duplicated ledger records"
    assert set(stored) == set(request_ids)
