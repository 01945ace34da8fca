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

A third side, interleaved with those two, sends the same form to the fake with a minimal HTTP/1.1 client
(the body encoded once, written in one piece on a kept-alive connection). The SDK's direct calls less
these are what the ``openai`` SDK itself costs per call, and the gateway makes one such SDK call to its
provider per request. gRPC Transcribe's added latency (cloud_overhead.py) has the same SDK call inside
but a gRPC client outside, so its direct side's SDK cost cancels the gateway's; here the client is the SDK
on both sides and the gateway's own SDK call is part of what it adds.

Run: PYTHONPATH=. python bench/http_overhead.py [--quick] [--redis-url URL]
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import openai

from bench import clips
from bench.harness import (
    OPENAI_KEY_ENV,
    OPENAI_PROVIDER,
    OPENAI_SECRETS,
    Call,
    GatewayProcess,
    HelperServer,
    argument_parser,
    interleaved_latency,
    openai_provider_settings,
    percentile_ms,
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


def _form(fields: dict[str, str], clip: bytes) -> tuple[str, bytes]:
    """A multipart form with ``fields`` and the clip as ``file``; returns its content type and body."""
    boundary = secrets.token_hex(16)
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="speech.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n".encode()
        + clip
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return f"multipart/form-data; boundary={boundary}", b"".join(parts)


async def minimal_client(base_url: str, api_key: str, clip: bytes) -> tuple[Call, asyncio.StreamWriter]:
    """A transcription call with next to no client work: the request's bytes are made once, each call
    writes them and reads the reply by its Content-Length on one kept-alive connection."""
    url = urlsplit(base_url)
    assert url.hostname is not None and url.port is not None
    content_type, body = _form({"model": "whisper-1", "language": "en"}, clip)
    request = (
        f"POST {url.path.rstrip('/')}/audio/transcriptions HTTP/1.1\r\nHost: {url.netloc}\r\n"
        f"Authorization: Bearer {api_key}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def call() -> None:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200 "):
            raise RuntimeError(f"the minimal client was refused: {head[:200]!r}")
        length = next(
            int(line.partition(b":")[2])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)

    return call, writer


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
    minimal, minimal_writer = await minimal_client(fake_url, OPENAI_SECRETS[OPENAI_KEY_ENV], clip)
    for _ in range(plan.warmup):
        await direct()
        await through_gateway()
        await minimal()

    sides = {"gateway": through_gateway, "direct": direct, "minimal": minimal}
    latency = await interleaved_latency(sides, plan.rounds)
    report_added_latency(latency, {50: GOAL_ADDED_P50_MS, 99: GOAL_ADDED_P99_MS}, plan.rounds)
    sdk_ms, minimal_ms = percentile_ms(latency["direct"], 50), percentile_ms(latency["minimal"], 50)
    print(
        f"openai SDK's own cost per call, p50: {sdk_ms - minimal_ms:.2f} ms (SDK direct {sdk_ms:.2f} ms, "
        f"minimal client direct {minimal_ms:.2f} ms); the gateway makes one such call to its provider per "
        "request"
    )
    minimal_writer.close()
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
                f"repeated uploads answered from a memo), with a {CLIP_SECONDS} s 16 kHz mono WAV; a third "
                "side sends the same form to the fake with a minimal HTTP/1.1 client",
                flush=True,
            )
            asyncio.run(measure(plan, fake.address, gateway))


if __name__ == "__main__":
    main()
