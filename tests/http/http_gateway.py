"""A gateway serving gRPC and the OpenAI-compatible HTTP API, routing to OpenAI's wire fake through the
real SDK, with tenants, a budget and Redis: what the HTTP tests run against."""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import openai
import pytest
import yaml

from gateway.grpc.server import GatewayServer
from gateway.http.server import HttpDoor, http_doors
from policies.loader import hash_key
from tests.audio_files import encode, tone
from tests.conftest import local_settings
from tests.fakes.openai_server import FakeOpenAI

KEY_ENV = "AUDIO_GATEWAY_TEST_HTTP_OPENAI_KEY"
VENDOR_KEY = "sk-vendor-http-test"
# Tenants: acme may use the default policy and "private"; globex only "private" (which admits no provider
# here); frugal has a budget no request fits; ops reads everyone's ledger.
ACME, GLOBEX, FRUGAL, ADMIN = "acme-http-key", "globex-http-key", "frugal-http-key", "ops-http-key"
AUDIO_LIMIT = 400_000

_tones = itertools.count()


def fresh_clip(seconds: float = 1.5, kind: str = "wav") -> bytes:
    """Audio no earlier test sent (a tone of its own pitch), so the result cache never answers it."""
    return encode(tone(seconds, hz=300.0 + 7.0 * next(_tones)), 16_000, kind)


@dataclass
class HttpGateway:
    server: GatewayServer
    fake: FakeOpenAI
    channel: grpc.aio.Channel
    stopped: bool = False

    async def stop(self, grace_s: float) -> None:
        self.stopped = True
        await self.server.stop(grace_s)

    @property
    def door(self) -> HttpDoor:
        door = self.server.doors[0]
        assert isinstance(door, HttpDoor)
        return door

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.door.port}/v1"

    def client(self, api_key: str = ACME, **options: object) -> openai.AsyncOpenAI:
        """The official SDK pointed at the gateway; no retries unless asked, so each call is one request."""
        options.setdefault("max_retries", 0)
        return openai.AsyncOpenAI(base_url=self.base_url, api_key=api_key, **options)  # type: ignore[arg-type]


def write_config(directory: Path, fake_url: str) -> tuple[Path, Path]:
    providers = directory / "providers.yaml"
    common = {"kind": "openai", "base_url": fake_url, "api_key_env": KEY_ENV, "operation": "transcribe"}
    providers.write_text(
        yaml.safe_dump(
            {
                "providers": [
                    {"name": "openai-whisper", "model": "whisper-1", **common},
                    # No segments, words or translations: what a translation must never be routed to.
                    {"name": "openai-mini", "model": "gpt-4o-mini-transcribe", **common},
                ]
            }
        ),
        encoding="utf-8",
    )
    policies = directory / "policies.yaml"
    tenant = "{{name: {0}, key_sha256: {1}, default_policy: {2}{3}}}"
    acme_may = ", policies: [private, mini-only, cheapest]"
    policies.write_text(
        "policies:\n"
        "  - name: default\n"
        "    deny_providers: [openai-mini]\n"
        "  - name: cheapest\n"
        "  - name: private\n"
        "    privacy: local_only\n"
        "  - name: mini-only\n"
        "    allow_providers: [openai-mini]\n"
        "tenants:\n"
        f"  - {tenant.format('acme', hash_key(ACME), 'default', acme_may)}\n"
        f"  - {tenant.format('globex', hash_key(GLOBEX), 'private', '')}\n"
        f"  - {tenant.format('frugal', hash_key(FRUGAL), 'default', ', monthly_budget_usd: 0.0000001')}\n"
        f"  - {tenant.format('ops', hash_key(ADMIN), 'default', ', admin: true')}\n",
        encoding="utf-8",
    )
    return providers, policies


@contextlib.asynccontextmanager
async def http_gateway(
    directory: Path, redis_url: str, admission_transcribe: int = 4
) -> AsyncIterator[HttpGateway]:
    with FakeOpenAI() as fake:
        settings = local_settings(max_audio_bytes=AUDIO_LIMIT)
        settings.whisper.enabled = settings.piper.enabled = settings.llama.enabled = False
        settings.http.host, settings.http.port = "127.0.0.1", 0
        settings.providers_file, settings.policies_file = write_config(directory, fake.base_url)
        settings.redis.url = redis_url
        settings.redis.key_prefix = f"test-http:{uuid.uuid4().hex}:"
        settings.ledger.flush_interval_s = 0.05
        settings.admission.transcribe = admission_transcribe
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(KEY_ENV, VENDOR_KEY)
            server = GatewayServer(settings, doors=http_doors(settings))
        port = await server.start()
        await server.wait_ready(30)
        assert not server.app.catalogue.failures, server.app.catalogue.failures
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            gateway = HttpGateway(server, fake, channel)
            yield gateway
        if not gateway.stopped:
            await gateway.stop(2)
