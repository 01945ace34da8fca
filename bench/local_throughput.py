"""Local transcription throughput: the gateway's engine against faster-whisper called one request at a time.

Real recorded speech from the shared speech set (``../shared/speech``): every recording, joined in order
with 0.5 s of silence between them, is the material both sides get, as 16 kHz 16-bit WAV.

- **Concurrent requests.** Eight distinct 10 s cuts of that material sent at once to ``Transcribe`` on
  ``audio-gateway serve`` (a subprocess, gRPC over loopback, local only, cache bypassed, its defaults),
  against the same eight transcribed one after the other by ``faster_whisper.WhisperModel.transcribe``
  (beam 5, English, the gateway's compute type and its thread count) in this process. Goal: ≥ 2× the
  requests per second.
- **A long recording.** The material repeated to 10 minutes, sent once to the gateway, against one
  direct call on the same samples. Goal: the gateway's real-time factor ≥ 1.3× direct's (audio seconds per
  wall second, over direct's).

The sides take turns, round after round, the first side alternating; the machine may be shared, so the
ratio of the medians is what the run reports, with the load average beside it.

Run: PYTHONPATH=. python bench/local_throughput.py [--quick] [--rounds N]
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable

import grpc
import numpy as np

from bench.harness import GatewayProcess, argument_parser, report
from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc as pb_grpc
from gateway.api.v1 import common_pb2 as common
from gateway.core.audio import encode_wav
from gateway.settings import WhisperSettings
from providers.faster_whisper import default_model_dir
from tests import speech
from tests.audio_files import recording

RATE = 16_000
GAP_S = 0.5
CUTS = 8
CUT_S = 10.0
LONG_S = 600.0
GOAL_CONCURRENT = 2.0
GOAL_LONG = 1.3
GATEWAY_SETTINGS = {"GATEWAY_PIPER__ENABLED": "false", "GATEWAY_LLAMA__ENABLED": "false"}


async def material() -> np.ndarray:
    """Every recording of the set as float samples at 16 kHz, in manifest order, 0.5 s apart."""
    gap = np.zeros(int(GAP_S * RATE), dtype=np.float32)
    parts: list[np.ndarray] = []
    for clip_id, entry in speech.manifest().items():
        if entry["subset"] != "short":
            continue  # the long ones are joins of the short ones
        clip = speech.real_clip(clip_id)
        parts += [await recording(encode_wav(clip.samples, clip.rate)).samples(), gap]
    return np.concatenate(parts)


def repeated(samples: np.ndarray, seconds: float) -> np.ndarray:
    count = int(seconds * RATE)
    return np.resize(samples, count)


class Direct:
    def __init__(self) -> None:
        from faster_whisper import WhisperModel

        settings = WhisperSettings()
        self._model = WhisperModel(
            str(default_model_dir()),
            device="cpu",
            compute_type=settings.compute_type,
            cpu_threads=settings.cpu_threads,
        )

    def transcribe(self, samples: np.ndarray) -> str:
        segments, _ = self._model.transcribe(samples, beam_size=5, language="en")
        return " ".join(s.text for s in segments)


async def gateway_call(stub: pb_grpc.AudioGatewayStub, wav: bytes) -> str:
    request = pb.TranscribeRequest(
        audio=common.Audio(content=wav, mime_type="audio/wav"),
        language="en",
        routing=common.RoutingOptions(privacy=common.PRIVACY_LOCAL_ONLY, cache=common.CACHE_MODE_BYPASS),
    )
    return (await stub.Transcribe(request, timeout=1800)).text


async def timed(run: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await run()
    return time.perf_counter() - started


async def measure(
    stub: pb_grpc.AudioGatewayStub, direct: Direct, cuts: list[np.ndarray], long: np.ndarray, rounds: int
) -> dict[str, list[float]]:
    cut_wavs = [encode_wav(c, RATE) for c in cuts]
    long_wav = encode_wav(long, RATE)

    async def gateway_cuts() -> None:
        await asyncio.gather(*(gateway_call(stub, wav) for wav in cut_wavs))

    async def direct_cuts() -> None:
        for cut in cuts:
            await asyncio.to_thread(direct.transcribe, cut)

    async def gateway_long() -> None:
        await gateway_call(stub, long_wav)

    async def direct_long() -> None:
        await asyncio.to_thread(direct.transcribe, long)

    plans = {
        "cuts": [("gateway cuts", gateway_cuts), ("direct cuts", direct_cuts)],
        "long": [("gateway long", gateway_long), ("direct long", direct_long)],
    }
    walls: dict[str, list[float]] = {name: [] for pair in plans.values() for name, _ in pair}
    for index in range(rounds):
        for pair in plans.values():
            for name, run in pair if index % 2 == 0 else list(reversed(pair)):
                walls[name].append(await timed(run))
                print(f"  round {index + 1}: {name} {walls[name][-1]:.1f} s", flush=True)
    return walls


async def run(rounds: int, long_s: float, redis_url: str) -> None:
    joined = await material()
    step = int(CUT_S * RATE)
    cuts = [joined[i * step : (i + 1) * step] for i in range(CUTS)]
    long = repeated(joined, long_s)
    direct = Direct()
    with GatewayProcess(GATEWAY_SETTINGS, redis_url) as gateway:
        print(f"config: gateway subprocess with {gateway.describe()}", flush=True)
        async with grpc.aio.insecure_channel(gateway.target) as channel:
            stub = pb_grpc.AudioGatewayStub(channel)
            await gateway_call(stub, encode_wav(cuts[0], RATE))  # both sides warm
            await asyncio.to_thread(direct.transcribe, cuts[0])
            walls = await measure(stub, direct, cuts, long, rounds)
    median = {name: statistics.median(values) for name, values in walls.items()}
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    ratio = median["direct cuts"] / median["gateway cuts"]
    report(
        f"{CUTS} concurrent {CUT_S:g} s requests, throughput ratio gateway/direct sequential",
        f"{ratio:.2f}",
        f">= {GOAL_CONCURRENT:g}",
        ratio >= GOAL_CONCURRENT,
        f"medians of {rounds} round(s): gateway {median['gateway cuts']:.1f} s, direct "
        f"{median['direct cuts']:.1f} s; load average {load}",
    )
    ratio = median["direct long"] / median["gateway long"]
    report(
        f"{long_s / 60:g}-minute recording, real-time factor ratio gateway/direct",
        f"{ratio:.2f}",
        f">= {GOAL_LONG:g}",
        ratio >= GOAL_LONG,
        f"medians of {rounds} round(s): gateway {median['gateway long']:.1f} s "
        f"(RTF {long_s / median['gateway long']:.1f}x real time), direct {median['direct long']:.1f} s "
        f"(RTF {long_s / median['direct long']:.1f}x); load average {load}",
    )


def main() -> None:
    parser = argument_parser(__doc__, "one round, a 1-minute long recording")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each side")
    args = parser.parse_args()
    rounds, long_s = (1, 60.0) if args.quick else (args.rounds, LONG_S)
    asyncio.run(run(rounds, long_s, args.redis_url))


if __name__ == "__main__":
    main()
