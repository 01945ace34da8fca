"""What the gateway adds to each live-transcription result, against streaming to the vendor's SDK directly.

Both sides stream the same tone-word recording (three utterances, 7.2 s) to the same loopback fake of
OpenAI's Realtime transcription sessions (tests/fakes/openai_realtime_server.py), which runs in a process of
its own and answers as the audio arrives: a delta per word while an item is spoken, the completed transcript
when its VAD hears the end of the item.

- direct: ``openai.AsyncOpenAI(base_url=<fake>).realtime.connect(intent=transcription)``, the session the
  gateway's adapter configures, 24 kHz PCM appends (resampled once, before the run);
- gateway: gRPC StreamTranscribe to ``audio-gateway serve`` (a subprocess) with one provider, an
  ``openai`` entry in a providers file pointing at the same fake, LINEAR16 at 16 kHz, with Redis for the
  ledger and budgets, metrics on and JSON logs at info.

Audio goes in 100 ms chunks every 20 ms (5× real time; far longer than either side takes to answer, so each
result belongs to the chunk sent last). A result's latency is its arrival time less the send time of the
latest chunk. Streams alternate side by side, round by round. Prints the p50 and p90 latency the gateway adds
per result event (gateway percentile minus direct percentile).

Run: PYTHONPATH=. python bench/stream_vendor_latency.py [--quick] [--redis-url URL]
"""

from __future__ import annotations

import asyncio
import base64
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import av
import grpc
import numpy as np
import openai
import yaml

from bench.harness import ENGINES_OFF, GatewayProcess, HelperServer, argument_parser, percentile_ms, report
from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc as pb_grpc
from gateway.api.v1 import common_pb2 as common
from providers.testing import tone_words_pcm

GOAL_ADDED_P50_MS = 5.0
KEY_ENV = "BENCH_OPENAI_REALTIME_KEY"
SECRETS = {KEY_ENV: "sk-bench-fake"}
PROVIDER = "openai-live"
MODEL = "gpt-4o-mini-transcribe"
RATE, WIRE_RATE = 16_000, 24_000
CHUNK_MS = 100
PACE_S = 0.02
WORDS = ["alpha", "bravo", "charlie"] * 3
ITEMS = 3
END_WAIT_S = 5.0  # for the last completed transcript after the last chunk


@dataclass(frozen=True)
class Plan:
    warmup: int
    rounds: int


FULL = Plan(warmup=3, rounds=30)
QUICK = Plan(warmup=1, rounds=3)


def recording() -> tuple[list[bytes], list[bytes]]:
    """The same audio as 100 ms chunks at 16 kHz (for the gateway) and at 24 kHz (for the vendor)."""
    pcm = tone_words_pcm(WORDS, RATE, word_s=0.3, gap_s=0.15, pause_after=(2, 5, 8))
    frame = av.AudioFrame.from_ndarray(
        np.frombuffer(pcm, dtype="<i2").reshape(1, -1), format="s16", layout="mono"
    )
    frame.sample_rate = RATE
    resampler = av.AudioResampler(format="s16", layout="mono", rate=WIRE_RATE)
    wire = b"".join(
        f.to_ndarray().astype("<i2").tobytes()
        for f in [*resampler.resample(frame), *resampler.resample(None)]
    )
    narrow, wide = RATE * 2 * CHUNK_MS // 1000, WIRE_RATE * 2 * CHUNK_MS // 1000
    return (
        [pcm[i : i + narrow] for i in range(0, len(pcm), narrow)],
        [wire[i : i + wide] for i in range(0, len(wire), wide)],
    )


class Clock:
    """When the latest chunk left, and how long after it each result arrived."""

    def __init__(self) -> None:
        self.sent_at = 0.0
        self.latencies: list[float] = []
        self.finals = 0

    def sent(self) -> None:
        self.sent_at = time.perf_counter()

    def result(self, final: bool) -> None:
        self.latencies.append(time.perf_counter() - self.sent_at)
        self.finals += final


async def paced(chunks: list[bytes], clock: Clock) -> AsyncIterator[bytes]:
    start = time.perf_counter()
    for index, chunk in enumerate(chunks):
        delay = start + index * PACE_S - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        clock.sent()
        yield chunk


async def direct_stream(client: openai.AsyncOpenAI, chunks: list[bytes]) -> Clock:
    clock = Clock()
    connection = await client.realtime.connect(extra_query={"intent": "transcription"}).enter()
    try:
        session = {
            "type": "transcription",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": WIRE_RATE},
                    "transcription": {"model": MODEL},
                    "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
                }
            },
        }
        await connection.session.update(session=session)  # type: ignore[arg-type]
        while getattr(await connection.recv(), "type", None) != "session.updated":
            pass

        async def receive() -> None:
            while clock.finals < ITEMS:
                event = await connection.recv()
                kind = getattr(event, "type", "")
                if kind.endswith("input_audio_transcription.delta"):
                    clock.result(False)
                elif kind.endswith("input_audio_transcription.completed"):
                    clock.result(True)

        receiver = asyncio.create_task(receive())
        async for chunk in paced(chunks, clock):
            await connection.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
        await asyncio.wait_for(receiver, END_WAIT_S)
    finally:
        await connection.close()
    return clock


async def gateway_stream(stub: pb_grpc.AudioGatewayStub, chunks: list[bytes]) -> Clock:
    clock = Clock()
    config = pb.StreamTranscribeConfig(
        encoding=pb.STREAM_ENCODING_LINEAR16,
        sample_rate_hertz=RATE,
        interim_results=True,
        routing=common.RoutingOptions(provider=PROVIDER),
    )

    async def requests() -> AsyncIterator[pb.StreamTranscribeRequest]:
        yield pb.StreamTranscribeRequest(config=config)
        async for chunk in paced(chunks, clock):
            yield pb.StreamTranscribeRequest(audio=chunk)

    async for response in stub.StreamTranscribe(requests(), timeout=60):
        if response.HasField("result"):
            clock.result(response.result.is_final)
        if response.HasField("route_info") and response.route_info.provider != PROVIDER:
            raise RuntimeError(f"the gateway did not stream to the fake: {response.route_info}")
    return clock


async def measure(plan: Plan, fake_url: str, gateway: GatewayProcess) -> None:
    narrow, wide = recording()
    client = openai.AsyncOpenAI(api_key=SECRETS[KEY_ENV], base_url=fake_url, max_retries=0, timeout=30)
    async with grpc.aio.insecure_channel(gateway.target) as channel:
        stub = pb_grpc.AudioGatewayStub(channel)
        sides = {
            "gateway": lambda: gateway_stream(stub, narrow),
            "direct": lambda: direct_stream(client, wide),
        }
        for _ in range(plan.warmup):
            for side in sides.values():
                await side()
        latencies: dict[str, list[float]] = {name: [] for name in sides}
        events: dict[str, int] = dict.fromkeys(sides, 0)
        names = list(sides)
        for index in range(plan.rounds):
            for name in names if index % 2 == 0 else reversed(names):
                clock = await sides[name]()
                if clock.finals != ITEMS:
                    raise RuntimeError(f"{name}: {clock.finals} final results, not {ITEMS}")
                latencies[name].extend(clock.latencies)
                events[name] += len(clock.latencies)
    await client.close()
    for q, goal in ((50, GOAL_ADDED_P50_MS), (90, None)):
        gateway_ms, direct_ms = percentile_ms(latencies["gateway"], q), percentile_ms(latencies["direct"], q)
        added = gateway_ms - direct_ms
        detail = (
            f"gateway {gateway_ms:.2f} ms over {events['gateway']} results, direct {direct_ms:.2f} ms over "
            f"{events['direct']}; {plan.rounds} streams a side"
        )
        if goal is None:
            print(f"added latency per result p{q}: {added:+.2f} ms  ({detail})")
        else:
            report(
                f"added latency per result p{q}", f"{added:+.2f} ms", f"<= {goal:g} ms", added <= goal, detail
            )


def providers_settings(base_url: str) -> dict[str, str]:
    entry = {
        "name": PROVIDER,
        "kind": "openai",
        "operation": "transcribe",
        "model": MODEL,
        "base_url": base_url,
        "api_key_env": KEY_ENV,
    }
    path = Path(tempfile.mkdtemp(prefix="gw-bench-providers-")) / "providers.yaml"
    path.write_text(yaml.safe_dump({"providers": [entry]}), encoding="utf-8")
    return {**ENGINES_OFF, "GATEWAY_PROVIDERS_FILE": str(path)}


def main() -> None:
    args = argument_parser(__doc__, "a few streams a side (a smoke run)").parse_args()
    plan = QUICK if args.quick else FULL
    with (
        HelperServer("bench.fake_openai_realtime_server") as fake,
        GatewayProcess(providers_settings(fake.address), args.redis_url, secrets=SECRETS) as gateway,
    ):
        print(
            f"config: gateway subprocess with {gateway.describe()}; streams pin {PROVIDER} (kind openai, "
            f"{MODEL}, Realtime transcription session); both sides stream to the fake OpenAI Realtime at "
            f"{fake.address} (own process, TCP_NODELAY) {CHUNK_MS} ms chunks every {PACE_S * 1000:g} ms",
            flush=True,
        )
        asyncio.run(measure(plan, fake.address, gateway))


if __name__ == "__main__":
    main()
