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


def engine_calls(server: GatewayServer) -> float:
    """Calls the local transcription engine has made, from the gateway's own metrics."""
    count = server.app.metrics.registry.get_sample_value(
        "audio_gateway_attempt_latency_seconds_count",
        {"provider": "faster-whisper", "operation": "transcribe"},
    )
    return count or 0.0


async def main(calls: int) -> None:
    settings = Settings()
    settings.server.host, settings.server.port = "127.0.0.1", 0
    server = GatewayServer(settings)
    port = await server.start()
    await server.wait_ready()
    clip = speech.piper_wav(" ".join(speech.SENTENCES[:3]))
    # A distinct clip per call, and different ones for the serial and the concurrent runs: identical
    # requests are merged into one engine call or answered from the cache, which would fake the speed-up.
    requests = [
        pb.TranscribeRequest(audio=common.Audio(content=speech.padded(clip, 0.02 * n)))
        for n in range(2 * calls)
    ]
    serial_requests, concurrent_requests = requests[:calls], requests[calls:]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub, health = pb_grpc.AudioGatewayStub(channel), health_pb2_grpc.HealthStub(channel)
        idle = await probe(health, None, 40)

        before = engine_calls(server)
        started = time.perf_counter()
        for request in serial_requests:
            await stub.Transcribe(request)
        serial_s = time.perf_counter() - started
        serial_calls = engine_calls(server) - before

        stop = asyncio.Event()
        prober = asyncio.create_task(probe(health, stop, 0))
        before = engine_calls(server)
        started = time.perf_counter()
        await asyncio.gather(*(stub.Transcribe(request) for request in concurrent_requests))
        concurrent_s = time.perf_counter() - started
        concurrent_calls = engine_calls(server) - before
        stop.set()
        loaded = await prober
    await server.stop(1)
    if serial_calls != calls or concurrent_calls != calls:
        raise SystemExit(
            f"expected {calls} engine calls per run, saw {serial_calls:.0f} serial and "
            f"{concurrent_calls:.0f} concurrent: the speed-up would not compare like with like"
        )

    def p(values: list[float], q: float) -> float:
        return statistics.quantiles(values, n=100)[int(q) - 1] * 1000

    print(
        f"health p50 idle {p(idle, 50):.2f} ms, under {calls} transcriptions {p(loaded, 50):.2f} ms "
        f"(ratio {p(loaded, 50) / p(idle, 50):.1f}x); "
        f"p95 under load {p(loaded, 95):.1f} ms over {len(loaded)} probes"
    )
    print(
        f"{calls} transcriptions of distinct clips ({calls} engine calls each way): serial {serial_s:.2f} s, "
        f"concurrent {concurrent_s:.2f} s (speed-up {serial_s / concurrent_s:.2f}x)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=10)
    asyncio.run(main(parser.parse_args().calls))
