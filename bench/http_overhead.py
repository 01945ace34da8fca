"""What the gateway's OpenAI-compatible HTTP API adds to a transcription, against the same SDK call direct.

Both sides make the same call with the official ``openai`` SDK, ``audio.transcriptions.create`` of the
same 5.8 s 16 kHz mono WAV (piper speech), whisper-1, language en:

- direct: ``openai.AsyncOpenAI(base_url=<fake>)``, straight to the loopback fake of OpenAI's API, which
  runs in a process of its own with TCP_NODELAY;
- gateway: ``openai.AsyncOpenAI(base_url=<gateway>/v1)``, to ``audio-gateway serve`` (a subprocess) whose
  one provider is an ``openai`` provider pointed at the same fake; its default policy has the cache off,
  so every call reaches the fake, and everything else is production-like: Redis for ledger, budgets and
  breakers, metrics on, JSON logs at info.

The two sides alternate call by call (c=1). Prints the latency the gateway adds: p50 and p99 of the
gateway's calls minus those of the direct calls, each with both sides' figures.

Run: PYTHONPATH=. python bench/http_overhead.py [--quick] [--redis-url URL]
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from pathlib import Path

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
    openai_provider_settings,
    report_added_latency,
)

CLIP_SECONDS = 5.8
GOAL_ADDED_P50_MS = 2.5
GOAL_ADDED_P99_MS = 5.0


@dataclass(frozen=True)
class Plan:
    warmup: int
    rounds: int


FULL = Plan(warmup=50, rounds=1500)
QUICK = Plan(warmup=5, rounds=30)


def _uncached_policies() -> Path:
    path = Path(tempfile.mkdtemp(prefix="gw-bench-policies-")) / "policies.yaml"
    path.write_text("policies:\n  - name: default\n    cache: false\n", encoding="utf-8")
    return path


async def measure(plan: Plan, fake_url: str, gateway: GatewayProcess) -> None:
    clip = clips.speech_wav(CLIP_SECONDS)
    options = {"max_retries": 0, "timeout": 60}
    direct_client = openai.AsyncOpenAI(api_key=OPENAI_SECRETS[OPENAI_KEY_ENV], base_url=fake_url, **options)
    gateway_client = openai.AsyncOpenAI(api_key="sk-bench", base_url=gateway.http_base_url, **options)

    request = {"file": ("speech.wav", clip, "audio/wav"), "model": "whisper-1", "language": "en"}

    async def direct() -> None:
        await direct_client.audio.transcriptions.create(**request)

    async def through_gateway() -> None:
        await gateway_client.audio.transcriptions.create(**request)

    raw = await gateway_client.audio.transcriptions.with_raw_response.create(**request)
    if raw.headers.get("x-gateway-provider") != OPENAI_PROVIDER or raw.headers.get("x-gateway-cache-hit") != (
        "false"
    ):
        raise RuntimeError(f"the gateway did not call the fake: {dict(raw.headers)}")
    for _ in range(plan.warmup):
        await direct()
        await through_gateway()

    latency = await interleaved_latency({"gateway": through_gateway, "direct": direct}, plan.rounds)
    report_added_latency(latency, {50: GOAL_ADDED_P50_MS, 99: GOAL_ADDED_P99_MS}, plan.rounds)
    await direct_client.close()
    await gateway_client.close()


def main() -> None:
    args = argument_parser(__doc__, "a few seconds of measurement (a smoke run)").parse_args()
    plan = QUICK if args.quick else FULL
    with HelperServer("bench.fake_openai_server") as fake:
        settings = {
            **openai_provider_settings(fake.address),
            "GATEWAY_POLICIES_FILE": str(_uncached_policies()),
            # The one benchmark that measures the HTTP door (the harness leaves it off by default).
            "GATEWAY_HTTP__ENABLED": "true",
        }
        with GatewayProcess(settings, args.redis_url, secrets=OPENAI_SECRETS) as gateway:
            print(
                f"config: gateway subprocess with {gateway.describe()}; the openai SDK calls its HTTP API "
                f"(whisper-1, default policy with the cache off, routed to {OPENAI_PROVIDER}) and, "
                f"alternately, the fake OpenAI at {fake.address} directly (own process, TCP_NODELAY, "
                f"repeated uploads answered from a memo), with a {CLIP_SECONDS} s 16 kHz mono WAV",
                flush=True,
            )
            asyncio.run(measure(plan, fake.address, gateway))


if __name__ == "__main__":
    main()
