"""What the gateway adds to a cloud transcription, against calling the vendor's SDK directly.

Both sides send the same 5.8 s 16 kHz mono WAV (piper speech) to the same loopback fake of OpenAI's API,
which runs in a process of its own:

- direct: ``openai.AsyncOpenAI(base_url=<fake>).audio.transcriptions.create`` with the request the
  gateway's adapter sends (whisper-1, verbose_json, language en);
- gateway: gRPC Transcribe to ``audio-gateway serve`` (a subprocess) pinned to an ``openai`` provider
  declared in a providers file that points at the same fake, with cache mode BYPASS so every call reaches
  the fake, and the production-like defaults otherwise: Redis for ledger, budgets and breakers, metrics on,
  JSON logs at info.

At c=1 the two sides alternate call by call; at c=64 they alternate round by round. Prints the latency the
gateway adds (p50 and p99 of the gateway minus those of the direct calls) and the c=64 throughput ratio.

The gateway's adapter runs the SDK on its aiohttp transport (``openai.DefaultAioHttpClient``), which parses
HTTP in C; the goals are against the SDK as a caller gets it by default. A third side, "direct-aiohttp", the
SDK on that same transport, is measured in the same rounds and printed beside them, so what the gateway
itself costs is visible apart from what its transport saves.

Run: PYTHONPATH=. python bench/cloud_overhead.py [--quick] [--redis-url URL]
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
import openai

from bench import clips
from bench.harness import (
    OPENAI_KEY_ENV,
    OPENAI_PROVIDER,
    OPENAI_SECRETS,
    GatewayProcess,
    HelperServer,
    argument_parser,
    interleaved_latency,
    interleaved_throughput,
    median_ratio,
    openai_provider_settings,
    percentile_ms,
    report,
    report_added_latency,
)
from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc as pb_grpc
from gateway.api.v1 import common_pb2 as common

CLIP_SECONDS = 5.8
GOAL_ADDED_P50_MS = 2.5
GOAL_ADDED_P99_MS = 5.0
GOAL_THROUGHPUT_RATIO = 0.7
CONCURRENCY = 64


@dataclass(frozen=True)
class Plan:
    warmup: int
    latency_rounds: int
    throughput_rounds: int
    per_round: int


FULL = Plan(warmup=50, latency_rounds=1500, throughput_rounds=8, per_round=640)
QUICK = Plan(warmup=5, latency_rounds=30, throughput_rounds=2, per_round=64)


async def measure(plan: Plan, fake_url: str, gateway: GatewayProcess) -> None:
    clip = clips.speech_wav(CLIP_SECONDS)
    request = pb.TranscribeRequest(
        audio=common.Audio(content=clip, mime_type="audio/wav"),
        language="en",
        routing=common.RoutingOptions(provider=OPENAI_PROVIDER, cache=common.CACHE_MODE_BYPASS),
    )
    client = openai.AsyncOpenAI(
        api_key=OPENAI_SECRETS[OPENAI_KEY_ENV],
        base_url=fake_url,
        max_retries=0,
        timeout=60,
    )
    aiohttp_client = openai.AsyncOpenAI(
        api_key=OPENAI_SECRETS[OPENAI_KEY_ENV],
        base_url=fake_url,
        max_retries=0,
        timeout=60,
        http_client=openai.DefaultAioHttpClient(limits=openai.DEFAULT_CONNECTION_LIMITS),
    )
    options = [("grpc.max_send_message_length", 64 * 1024 * 1024)]
    async with grpc.aio.insecure_channel(gateway.target, options=options) as channel:
        stub = pb_grpc.AudioGatewayStub(channel)

        def direct_on(sdk: openai.AsyncOpenAI) -> Callable[[], Awaitable[None]]:
            async def direct() -> None:
                await sdk.audio.transcriptions.create(
                    file=("audio.wav", clip, "audio/wav"),
                    model="whisper-1",
                    language="en",
                    response_format="verbose_json",
                )

            return direct

        direct, direct_aiohttp = direct_on(client), direct_on(aiohttp_client)

        async def through_gateway() -> None:
            await stub.Transcribe(request, timeout=60)

        reply = await stub.Transcribe(request, timeout=60)
        if reply.route.provider != OPENAI_PROVIDER or reply.route.cache_hit:
            raise RuntimeError(f"the gateway did not call the fake: {reply.route}")
        for _ in range(plan.warmup):
            await direct()
            await direct_aiohttp()
            await through_gateway()
        sides = {"gateway": through_gateway, "direct": direct, "direct-aiohttp": direct_aiohttp}

        latency = await interleaved_latency(sides, plan.latency_rounds)
        report_added_latency(latency, {50: GOAL_ADDED_P50_MS, 99: GOAL_ADDED_P99_MS}, plan.latency_rounds)
        print(
            "  direct-aiohttp (the SDK on the gateway's transport): "
            f"p50 {percentile_ms(latency['direct-aiohttp'], 50):.2f} ms, "
            f"p99 {percentile_ms(latency['direct-aiohttp'], 99):.2f} ms; the gateway adds "
            f"{percentile_ms(latency['gateway'], 50) - percentile_ms(latency['direct-aiohttp'], 50):+.2f} / "
            f"{percentile_ms(latency['gateway'], 99) - percentile_ms(latency['direct-aiohttp'], 99):+.2f} ms "
            "over it"
        )

        await interleaved_throughput(sides, CONCURRENCY, CONCURRENCY, 1)  # open every connection first
        rps = await interleaved_throughput(sides, CONCURRENCY, plan.per_round, plan.throughput_rounds)
        ratio = median_ratio(rps["gateway"], rps["direct"])
        report(
            f"c={CONCURRENCY} throughput ratio gateway/direct",
            f"{ratio:.2f}",
            f">= {GOAL_THROUGHPUT_RATIO:g}",
            ratio >= GOAL_THROUGHPUT_RATIO,
            f"median of {plan.throughput_rounds} rounds of {plan.per_round} requests a side; best gateway "
            f"{max(rps['gateway']):.0f} req/s, best direct {max(rps['direct']):.0f} req/s",
        )
        print(
            "  direct-aiohttp (the SDK on the gateway's transport): gateway/direct-aiohttp "
            f"{median_ratio(rps['gateway'], rps['direct-aiohttp']):.2f}, best "
            f"{max(rps['direct-aiohttp']):.0f} req/s"
        )
    await client.close()
    await aiohttp_client.close()


def main() -> None:
    args = argument_parser(__doc__, "a few seconds of each measurement (a smoke run)").parse_args()
    plan = QUICK if args.quick else FULL
    with HelperServer("bench.fake_openai_server") as fake:
        settings = openai_provider_settings(fake.address)
        with GatewayProcess(settings, args.redis_url, secrets=OPENAI_SECRETS) as gateway:
            print(
                f"config: gateway subprocess with {gateway.describe()}; requests pin {OPENAI_PROVIDER} "
                f"(kind openai, whisper-1) with cache mode BYPASS; both sides call the fake OpenAI at "
                f"{fake.address} (own process, TCP_NODELAY, repeated uploads answered from a memo) with a "
                f"{CLIP_SECONDS} s 16 kHz mono WAV",
                flush=True,
            )
            asyncio.run(measure(plan, fake.address, gateway))


if __name__ == "__main__":
    main()
