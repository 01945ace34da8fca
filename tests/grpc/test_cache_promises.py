"""The cache keeps the policy's promises: who produced a result decides who may be served it.

Each test drives the gateway through gRPC with fake providers and the real Redis cache.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from decimal import Decimal

import grpc
import pytest
import redis

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc as pb_grpc
from gateway.api.v1 import common_pb2 as common
from gateway.cache.results import _decode, _encode
from gateway.core.errors import ProviderUnavailable
from gateway.core.provider_types import Locality
from gateway.grpc.server import GatewayServer
from gateway.money.pricing import UnitPrices
from policies.loader import hash_key
from providers.testing import FakeAnswerer, FakeTranscriber
from tests.audio_files import encode, tone
from tests.conftest import local_settings

ACME = "acme-key"
QUESTION = "What is said?"


def with_wer(provider: FakeTranscriber, wer: float) -> FakeTranscriber:
    provider.capabilities = dataclasses.replace(provider.capabilities, published_wer=wer)
    return provider


@pytest.fixture
async def gateway(request, tmp_path, redis_url):
    policies = tmp_path / "policies.yaml"
    policies.write_text(
        "policies:\n"
        "  - name: default\n"
        "  - name: no-cloud-stt\n"
        "    deny_providers: [cloud-stt]\n"
        "tenants:\n"
        f"  - {{name: acme, key_sha256: {hash_key(ACME)}, default_policy: default,"
        " policies: [no-cloud-stt]}\n"
    )
    settings = local_settings()
    settings.redis.url = redis_url
    settings.redis.key_prefix = f"test:{uuid.uuid4().hex}:"
    settings.policies_file = policies
    settings.ledger.flush_interval_s = 0.05
    settings.limits.uri_roots = [tmp_path]
    for name, value in getattr(request, "param", {}).items():
        setattr(settings.cache, name, value)
    # Cheapest first: the local engines lead, the cloud ones are the fallback.
    local = with_wer(FakeTranscriber(name="local-stt", text="local words"), 0.2)
    cloud = with_wer(FakeTranscriber(name="cloud-stt", text="cloud words", locality=Locality.CLOUD), 0.05)
    llm = FakeAnswerer(name="local-llm")
    prices = {
        ("local-stt", local.model): UnitPrices(per_audio_second=Decimal("0.00001")),
        ("cloud-stt", cloud.model): UnitPrices(per_audio_second=Decimal("0.0001")),
    }
    server = GatewayServer(settings, providers=[local, cloud, llm], prices=prices)
    port = await server.start()
    await server.wait_ready(10)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield server, pb_grpc.AudioGatewayStub(channel), local, cloud, llm
    await server.stop(5)


def auth() -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {ACME}"),)


def clip(seconds: float = 2.0, hz: float = 440.0) -> common.Audio:
    return common.Audio(content=encode(tone(seconds, hz=hz), 16_000, "wav"))


def transcribe(audio: common.Audio, **routing: object) -> pb.TranscribeRequest:
    return pb.TranscribeRequest(audio=audio, routing=common.RoutingOptions(**routing))


async def test_a_cloud_fallback_result_is_never_served_to_an_on_prem_request(gateway):
    _, stub, local, cloud, _ = gateway
    audio = clip(hz=300.0)
    local.fail_with = ProviderUnavailable("local-stt", "engine crashed")
    fallback = await stub.Transcribe(transcribe(audio), metadata=auth())
    assert fallback.route.provider == "cloud-stt" and fallback.route.locality == common.LOCALITY_CLOUD
    local.fail_with = None

    private = await stub.Transcribe(transcribe(audio, privacy=common.PRIVACY_ON_PREM), metadata=auth())
    assert not private.route.cache_hit
    assert (private.route.provider, private.text) == ("local-stt", "local words")
    assert private.route.locality == common.LOCALITY_LOCAL

    # The fresh local result replaced the entry: an ordinary request now hits it.
    again = await stub.Transcribe(transcribe(audio), metadata=auth())
    assert again.route.cache_hit and again.route.provider == "local-stt"
    assert (local.calls, cloud.calls) == (2, 1)


async def test_a_pin_or_a_deny_list_refuses_a_cached_result_from_another_provider(gateway):
    _, stub, local, cloud, _ = gateway
    audio = clip(hz=350.0)
    first = await stub.Transcribe(transcribe(audio, provider="cloud-stt"), metadata=auth())
    assert first.route.provider == "cloud-stt"

    pinned = await stub.Transcribe(transcribe(audio, provider="local-stt"), metadata=auth())
    assert not pinned.route.cache_hit and pinned.route.provider == "local-stt"

    # Back to the cloud result, then ask under a policy that denies its producer.
    refresh = transcribe(audio, provider="cloud-stt", cache=common.CACHE_MODE_REFRESH)
    await stub.Transcribe(refresh, metadata=auth())
    denied = await stub.Transcribe(transcribe(audio, policy="no-cloud-stt"), metadata=auth())
    assert not denied.route.cache_hit and denied.route.provider == "local-stt"
    assert (local.calls, cloud.calls) == (2, 2)


async def test_the_quality_objective_recomputes_a_lesser_fallbacks_result(gateway):
    _, stub, _, cloud, _ = gateway
    audio = clip(hz=400.0)
    quality = {"objective": common.OBJECTIVE_QUALITY}
    cloud.fail_with = ProviderUnavailable("cloud-stt", "vendor outage")
    lesser = await stub.Transcribe(transcribe(audio, **quality), metadata=auth())
    assert lesser.route.provider == "local-stt"
    cloud.fail_with = None

    best = await stub.Transcribe(transcribe(audio, **quality), metadata=auth())
    assert not best.route.cache_hit and best.route.provider == "cloud-stt"
    # The cost objective takes whatever its ranking keeps: the better result is a hit.
    cheap = await stub.Transcribe(transcribe(audio), metadata=auth())
    assert cheap.route.cache_hit and cheap.route.provider == "cloud-stt"


async def test_an_understand_hit_reports_its_least_private_step(gateway):
    _, stub, local, _, llm = gateway
    local.fail_with = ProviderUnavailable("local-stt", "engine crashed")
    request = pb.UnderstandRequest(audio=clip(hz=450.0), question=QUESTION)
    first = await stub.Understand(request, metadata=auth())
    second = await stub.Understand(request, metadata=auth())
    assert first.route.locality == common.LOCALITY_CLOUD  # the transcript came from the cloud
    assert second.route.cache_hit and second.route.locality == common.LOCALITY_CLOUD
    assert llm.calls == 1

    # The transcript's producer is checked too: a local-only policy must not get that answer.
    local.fail_with = None
    private = pb.UnderstandRequest(
        audio=request.audio, question=QUESTION, routing=common.RoutingOptions(privacy=common.PRIVACY_ON_PREM)
    )
    fresh = await stub.Understand(private, metadata=auth())
    assert not fresh.route.cache_hit and fresh.route.locality == common.LOCALITY_LOCAL and llm.calls == 2


# What another deploy writes reaches a replica once its own copy in memory lapses: here it keeps none.
@pytest.mark.parametrize("gateway", [{"local_ttl_s": 0}], indirect=True)
async def test_an_entry_in_another_payload_format_is_a_miss_that_gets_overwritten(gateway):
    server, stub, local, _, _ = gateway
    audio = clip(hz=500.0)
    await stub.Transcribe(transcribe(audio), metadata=auth())
    prefix = server.settings.redis.key_prefix
    client = redis.Redis.from_url(server.settings.redis.url)
    try:
        (key,) = [k for k in client.scan_iter(f"{prefix}cache:acme:*") if not k.endswith(b":lock")]
        entry, _ = _decode(client.get(key))
        # What an older deploy wrote: no format version, another field name.
        old = json.dumps({"transcript": "stale", "lang": "en"}).encode()
        client.set(key, _encode(dataclasses.replace(entry, payload=old), writer=""))

        served = await stub.Transcribe(transcribe(audio), metadata=auth())
        assert not served.route.cache_hit and served.text == "local words" and local.calls == 2
        assert b'"v"' in _decode(client.get(key))[0].payload
    finally:
        client.close()
    assert (await stub.Transcribe(transcribe(audio), metadata=auth())).route.cache_hit


async def test_a_wait_for_an_identical_request_never_blames_the_provider(gateway):
    server, stub, local, _, _ = gateway
    audio = clip(hz=550.0)
    local.delay_s = 0.6
    leader = asyncio.ensure_future(stub.Transcribe(transcribe(audio), metadata=auth()))
    await asyncio.sleep(0.15)  # the leader's flight is under way
    with pytest.raises(grpc.aio.AioRpcError) as waited:
        await stub.Transcribe(transcribe(audio), metadata=auth(), timeout=0.2)
    assert waited.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED

    answered = await leader
    assert answered.route.provider == "local-stt" and [a.outcome for a in answered.route.attempts] == ["ok"]
    health = server.app.health.snapshot()["local-stt"]
    assert health.failures == 0 and health.consecutive_failures == 0
    assert local.calls == 1


async def test_a_filename_is_never_part_of_the_cache_identity(gateway, tmp_path):
    _, stub, local, _, _ = gateway
    audio = clip(hz=600.0).content
    (tmp_path / "a.wav").write_bytes(audio)
    (tmp_path / "b.wav").write_bytes(audio)

    def by_name(name: str) -> pb.TranscribeRequest:
        return pb.TranscribeRequest(audio=common.Audio(uri=(tmp_path / name).as_uri()))

    first = await stub.Transcribe(by_name("a.wav"), metadata=auth())
    renamed = await stub.Transcribe(by_name("b.wav"), metadata=auth())
    inline = await stub.Transcribe(transcribe(common.Audio(content=audio)), metadata=auth())
    assert (first.route.cache_hit, renamed.route.cache_hit, inline.route.cache_hit) == (False, True, True)
    assert local.calls == 1

    # Another recording under a name already seen is another result.
    (tmp_path / "a.wav").write_bytes(clip(hz=650.0).content)
    replaced = await stub.Transcribe(by_name("a.wav"), metadata=auth())
    assert not replaced.route.cache_hit and local.calls == 2
