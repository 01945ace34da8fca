"""Cache hits through the gateway, against a gRPC server that does nothing.

- gateway: ``audio-gateway serve`` (a subprocess) with the Redis result cache on, answering Transcribe of
  the same 5.8 s 16 kHz mono WAV from the cache after one warming miss (served by an ``openai`` provider
  pointed at the loopback fake of OpenAI's API);
- no-op: a ``grpc.aio`` server in a process of its own with the same Transcribe method and server options,
  answering that very cache-hit response (so the same request and response sizes) without doing anything.

At c=1 and c=64 the two sides alternate round by round. Prints requests/s gateway ÷ no-op at each.

Run: PYTHONPATH=. python bench/cache_hits.py [--quick] [--redis-url URL]
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from pathlib import Path

import grpc

from bench import clips
from bench.harness import (
    OPENAI_SECRETS,
    GatewayProcess,
    HelperServer,
    argument_parser,
    interleaved_throughput,
    median_ratio,
    openai_provider_settings,
    report,
)
from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc as pb_grpc
from gateway.api.v1 import common_pb2 as common

CLIP_SECONDS = 5.8
GOAL_RATIO = 0.4
# Past this share of misses the cache is broken, not degrading under load. A smoke run shares two cores
# with the other benchmarks, where Redis calls past GATEWAY_CACHE__TIMEOUT_S are common.
MAX_MISS_SHARE = {"full": 0.05, "quick": 0.5}
MAX_MESSAGE = [("grpc.max_send_message_length", 64 * 1024 * 1024)]


@dataclass(frozen=True)
class Plan:
    rounds: int
    per_round: dict[int, int]  # concurrency → requests per side per round
    max_miss_share: float


FULL = Plan(rounds=8, per_round={1: 300, 64: 1280}, max_miss_share=MAX_MISS_SHARE["full"])
QUICK = Plan(rounds=2, per_round={1: 20, 64: 128}, max_miss_share=MAX_MISS_SHARE["quick"])


async def warm(target: str, request: pb.TranscribeRequest) -> pb.TranscribeResponse:
    """One miss fills the cache; the next call must be a hit, and its response is the no-op's answer."""
    async with grpc.aio.insecure_channel(target, options=MAX_MESSAGE) as channel:
        stub = pb_grpc.AudioGatewayStub(channel)
        first = await stub.Transcribe(request, timeout=60)
        hit = await stub.Transcribe(request, timeout=60)
    if first.route.cache_hit or not hit.route.cache_hit:
        raise RuntimeError(
            f"expected a miss then a hit, got {first.route.cache_hit} then {hit.route.cache_hit}"
        )
    return hit


async def measure(plan: Plan, gateway_target: str, noop_target: str, request: pb.TranscribeRequest) -> None:
    async with (
        grpc.aio.insecure_channel(gateway_target, options=MAX_MESSAGE) as gateway_channel,
        grpc.aio.insecure_channel(noop_target, options=MAX_MESSAGE) as noop_channel,
    ):
        gateway, noop = pb_grpc.AudioGatewayStub(gateway_channel), pb_grpc.AudioGatewayStub(noop_channel)

        calls = misses = 0

        async def through_gateway() -> None:
            nonlocal calls, misses
            reply = await gateway.Transcribe(request, timeout=60)
            calls += 1
            # A miss is the cache degrading (Redis slower than GATEWAY_CACHE__TIMEOUT_S on a loaded box): it
            # is served by the provider, which only lowers the gateway's rate. Many of them mean a bug.
            misses += not reply.route.cache_hit

        async def no_op() -> None:
            await noop.Transcribe(request, timeout=60)

        sides = {"gateway": through_gateway, "no-op": no_op}
        for concurrency, per_round in plan.per_round.items():
            await interleaved_throughput(sides, concurrency, concurrency * 2, 1)  # warm both paths
            calls = misses = 0
            rps = await interleaved_throughput(sides, concurrency, per_round, plan.rounds)
            if misses > plan.max_miss_share * calls:
                raise RuntimeError(f"{misses} of {calls} gateway calls missed the cache")
            ratio = median_ratio(rps["gateway"], rps["no-op"])
            report(
                f"c={concurrency} cache-hit throughput ratio gateway/no-op",
                f"{ratio:.2f}",
                f">= {GOAL_RATIO:g}",
                ratio >= GOAL_RATIO,
                f"median of {plan.rounds} rounds of {per_round} requests a side; best gateway "
                f"{max(rps['gateway']):.0f} req/s, best no-op {max(rps['no-op']):.0f} req/s; "
                f"{misses} of {calls} gateway calls missed",
            )


def main() -> None:
    args = argument_parser(__doc__, "a few seconds of each measurement (a smoke run)").parse_args()
    clip = clips.speech_wav(CLIP_SECONDS)
    request = pb.TranscribeRequest(audio=common.Audio(content=clip, mime_type="audio/wav"), language="en")
    with HelperServer("bench.fake_openai_server") as fake:
        settings = openai_provider_settings(fake.address)
        with GatewayProcess(settings, args.redis_url, secrets=OPENAI_SECRETS) as gateway:
            hit = asyncio.run(warm(gateway.target, request))
            response_file = Path(tempfile.mkdtemp(prefix="gw-bench-noop-")) / "response.pb"
            response_file.write_bytes(hit.SerializeToString())
            with HelperServer("bench.noop_gateway_server", str(response_file)) as noop:
                print(
                    f"config: gateway subprocess with {gateway.describe()} (result cache on); Transcribe of "
                    f"one {CLIP_SECONDS} s 16 kHz mono WAV ({request.ByteSize()} bytes) after one warming "
                    f"miss; no-op grpc.aio server (own process) answering the same {hit.ByteSize()}-byte "
                    "response",
                    flush=True,
                )
                asyncio.run(measure(QUICK if args.quick else FULL, gateway.target, noop.address, request))


if __name__ == "__main__":
    main()
