"""A vendor that hangs is a timeout attempt, counts towards its breaker, and the fallback still answers.

Two OpenAI-format TTS providers from a providers file, each pointed at its own wire fake; the cheaper one
stalls before answering. Run with the result cache on (Redis) and off (bypass): either way each hang is one
``timeout`` attempt in RouteInfo and in the ledger, never a deadline blamed on the cache.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
import yaml

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc
from gateway.api.v1 import common_pb2 as common
from gateway.grpc.server import GatewayServer
from tests.conftest import local_settings
from tests.fakes.openai_server import FakeOpenAI

KEY_ENV = "AUDIO_GATEWAY_TEST_DEADLINE_KEY"
THRESHOLD = 2
DEADLINE_S = 4.0


@pytest.fixture(scope="module")
def hanging() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(scope="module")
def backup() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(hanging: FakeOpenAI, backup: FakeOpenAI) -> None:
    hanging.reset()
    backup.reset()


def providers_file(directory: Path, hanging_url: str, backup_url: str) -> Path:
    def entry(name: str, url: str, per_character: str) -> dict[str, object]:
        return {
            "name": name,
            "kind": "openai",
            "operation": "synthesize",
            "model": "tts-1",
            "base_url": url,
            "api_key_env": KEY_ENV,
            # Longer than the request's deadline: only the attempt's share of it can end a hang.
            "timeout_s": 60,
            "prices": {"per_character": per_character},
        }

    # The hanging vendor is the cheaper one, so the cost objective tries it first.
    entries = [entry("tts-cheap", hanging_url, "0.000001"), entry("tts-backup", backup_url, "0.00003")]
    path = directory / "providers.yaml"
    path.write_text(yaml.safe_dump({"providers": entries}), encoding="utf-8")
    return path


@pytest.fixture
async def gateway(
    hanging: FakeOpenAI, backup: FakeOpenAI, redis_url: str, tmp_path: Path
) -> AsyncIterator[tuple[GatewayServer, audio_gateway_pb2_grpc.AudioGatewayStub]]:
    settings = local_settings()
    settings.whisper.enabled = settings.piper.enabled = settings.llama.enabled = False
    settings.providers_file = providers_file(tmp_path, hanging.base_url, backup.base_url)
    settings.redis.url = redis_url
    settings.redis.key_prefix = f"test:{uuid.uuid4().hex}:"
    settings.breaker.failure_threshold = THRESHOLD
    settings.breaker.cooldown_s = 600.0
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEY_ENV, "sk-deadline-test")
        server = GatewayServer(settings)
    await server.start()
    await server.wait_ready(timeout_s=60)
    assert not server.app.catalogue.failures, server.app.catalogue.failures
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield server, audio_gateway_pb2_grpc.AudioGatewayStub(channel)
    await server.stop(grace_s=1)


@pytest.mark.parametrize("cache", ["on", "off"])
async def test_a_hanging_vendor_fails_over_within_the_deadline_and_opens_its_breaker(gateway, hanging, cache):
    server, stub = gateway
    mode = common.CACHE_MODE_UNSPECIFIED if cache == "on" else common.CACHE_MODE_BYPASS
    hanging.delay_s = 30.0  # far past the request's deadline
    began = time.time()
    request_ids = []
    for n in range(THRESHOLD):
        started = time.monotonic()
        reply = await stub.Synthesize(
            # A different text each time: no cache hit may stand in for the fallback.
            pb.SynthesizeRequest(
                text=f"Hang number {n} for {cache}.", routing=common.RoutingOptions(cache=mode)
            ),
            timeout=DEADLINE_S,
        )
        took = time.monotonic() - started
        assert took < DEADLINE_S
        assert reply.route.provider == "tts-backup" and not reply.route.cache_hit
        assert [(a.provider, a.outcome) for a in reply.route.attempts] == [
            ("tts-cheap", "timeout"),
            ("tts-backup", "ok"),
        ]
        # The hang was cut at its share of the deadline, which left the backup the other half.
        assert reply.route.attempts[0].latency_ms == pytest.approx(DEADLINE_S / 2 * 1000, rel=0.2)
        assert float(reply.route.attempts[0].cost_usd) == 0
        request_ids.append(reply.route.request_id)
    assert len(hanging.requests) == THRESHOLD

    assert server.app.health.snapshot()["tts-cheap"].state.value == "open"
    started = time.monotonic()
    reply = await stub.Synthesize(
        pb.SynthesizeRequest(text=f"After the hangs, {cache}.", routing=common.RoutingOptions(cache=mode)),
        timeout=DEADLINE_S,
    )
    # The open breaker keeps the hanging vendor out: no wait at all.
    assert time.monotonic() - started < 1.0
    assert [(a.provider, a.outcome) for a in reply.route.attempts] == [("tts-backup", "ok")]
    assert len(hanging.requests) == THRESHOLD

    records = await server.app.ledger.records(began - 1, time.time() + 1, kind="attempt")
    timeouts = [(r.request_id, r.provider) for r in records if r.outcome == "timeout"]
    assert sorted(timeouts) == sorted((rid, "tts-cheap") for rid in request_ids)
    served = [r.request_id for r in records if r.outcome == "ok" and r.provider == "tts-backup"]
    assert sorted(served) == sorted([*request_ids, reply.route.request_id])


async def test_a_hang_on_the_only_candidate_is_its_timeout_not_the_caches(gateway, hanging):
    server, stub = gateway
    hanging.delay_s = 30.0
    began = time.time()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Synthesize(
            pb.SynthesizeRequest(
                text="Only the cheap one.", routing=common.RoutingOptions(provider="tts-cheap")
            ),
            timeout=2.0,
        )
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The attempt's own limit ends it just before the caller's deadline, so the server's answer (when it
    # beats the caller's own timer) names the provider; it never blames the cache wait.
    assert "cache" not in (caught.value.details() or "")
    records = await server.app.ledger.records(began - 1, time.time() + 1, kind="attempt")
    assert [(r.provider, r.outcome) for r in records] == [("tts-cheap", "timeout")]
    assert server.app.health.snapshot()["tts-cheap"].consecutive_failures == 1
