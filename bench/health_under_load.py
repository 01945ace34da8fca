"""Health-check latency idle versus during concurrent transcriptions, and concurrent versus serial throughput.

Run: python bench/health_under_load.py [--calls 10]
Prints ratios measured side by side in one run; absolute times on a shared box mean little.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc as pb_grpc
from gateway.api.v1 import common_pb2 as common
from gateway.grpc.server import GatewayServer
from gateway.settings import Settings
from tests import speech


async def probe(health: health_pb2_grpc.HealthStub, stop: asyncio.Event | None, count: int) -> list[float]:
    latencies: list[float] = []
    while (stop is None and len(latencies) < count) or (stop is not None and not stop.is_set()):
        started = time.perf_counter()
        await health.Check(health_pb2.HealthCheckRequest(service="gateway.api.v1.AudioGateway"))
        latencies.append(time.perf_counter() - started)
        await asyncio.sleep(0.05)
    return latencies


async def main(calls: int) -> None:
    settings = Settings()
    settings.server.host, settings.server.port = "127.0.0.1", 0
    server = GatewayServer(settings)
    port = await server.start()
    await server.wait_ready()
    clip = speech.piper_wav(" ".join(speech.SENTENCES[:3]))
    request = pb.TranscribeRequest(audio=common.Audio(content=clip))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub, health = pb_grpc.AudioGatewayStub(channel), health_pb2_grpc.HealthStub(channel)
        idle = await probe(health, None, 40)

        started = time.perf_counter()
        for _ in range(calls):
            await stub.Transcribe(request)
        serial_s = time.perf_counter() - started

        stop = asyncio.Event()
        prober = asyncio.create_task(probe(health, stop, 0))
        started = time.perf_counter()
        await asyncio.gather(*(stub.Transcribe(request) for _ in range(calls)))
        concurrent_s = time.perf_counter() - started
        stop.set()
        loaded = await prober
    await server.stop(1)

    def p(values: list[float], q: float) -> float:
        return statistics.quantiles(values, n=100)[int(q) - 1] * 1000

    print(
        f"health p50 idle {p(idle, 50):.2f} ms, under {calls} transcriptions {p(loaded, 50):.2f} ms "
        f"(ratio {p(loaded, 50) / p(idle, 50):.1f}x); "
        f"p95 under load {p(loaded, 95):.1f} ms over {len(loaded)} probes"
    )
    print(
        f"{calls} transcriptions: serial {serial_s:.2f} s, concurrent {concurrent_s:.2f} s "
        f"(speed-up {serial_s / concurrent_s:.2f}x)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=10)
    asyncio.run(main(parser.parse_args().calls))
