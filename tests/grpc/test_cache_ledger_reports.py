"""Cache, ledger and cost reports end to end: real server, real Redis, fake providers with known prices."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import grpc
import pytest

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc as pb_grpc
from gateway.api.v1 import common_pb2 as common
from gateway.api.v1 import cost_reports_pb2 as reports_pb
from gateway.api.v1 import cost_reports_pb2_grpc as reports_grpc
from gateway.core.provider_types import Locality
from gateway.grpc.server import GatewayServer
from gateway.money.pricing import UnitPrices
from policies.loader import hash_key
from providers.testing import FakeSynthesizer, FakeTranscriber
from tests.audio_files import encode, tone
from tests.conftest import local_settings

PER_SECOND = Decimal("0.0001")  # transcription, per decoded second
PER_CHAR = Decimal("0.00003")  # synthesis, per character
ACME, GLOBEX, ADMIN = "acme-key", "globex-key", "admin-key"


@pytest.fixture
async def gateway(tmp_path, redis_url):
    policies = tmp_path / "policies.yaml"
    policies.write_text(
        "policies:\n  - name: default\n"
        "tenants:\n"
        f"  - {{name: acme, key_sha256: {hash_key(ACME)}, default_policy: default}}\n"
        f"  - {{name: globex, key_sha256: {hash_key(GLOBEX)}, default_policy: default}}\n"
        f"  - {{name: ops, key_sha256: {hash_key(ADMIN)}, default_policy: default, admin: true}}\n"
    )
    settings = local_settings()
    settings.redis.url = redis_url
    settings.redis.key_prefix = f"test:{uuid.uuid4().hex}:"
    settings.policies_file = policies
    settings.ledger.flush_interval_s = 0.05
    # Fifty identical calls at once are the point of one test here, not load to refuse.
    settings.admission.transcribe = 0
    stt = FakeTranscriber(name="cloud-stt", locality=Locality.CLOUD, delay_s=0.2)
    tts = FakeSynthesizer(name="cloud-tts", locality=Locality.CLOUD)
    prices = {
        ("cloud-stt", stt.model): UnitPrices(per_audio_second=PER_SECOND),
        ("cloud-tts", tts.model): UnitPrices(per_character=PER_CHAR),
    }
    server = GatewayServer(settings, providers=[stt, tts], prices=prices)
    port = await server.start()
    await server.wait_ready(10)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield server, channel, stt, tts
    await server.stop(5)


def key(api_key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {api_key}"),)


async def report(channel, api_key: str, **request) -> reports_pb.CostReport:
    return await reports_grpc.CostReportsStub(channel).GetCostReport(
        reports_pb.GetCostReportRequest(**request), metadata=key(api_key)
    )


async def settled(channel, expected_requests: int) -> reports_pb.CostReport:
    """The ledger writes off the request path: wait until every request is in the rollups."""
    for _ in range(200):
        total = (await report(channel, ADMIN)).total
        if total.requests >= expected_requests:
            return await report(channel, ADMIN)
        await asyncio.sleep(0.05)
    raise AssertionError(f"the ledger holds {total.requests} of {expected_requests} requests")


async def test_repeats_are_cache_hits_that_save_what_the_first_call_cost(gateway):
    _, channel, stt, tts = gateway
    stub = pb_grpc.AudioGatewayStub(channel)
    clip = common.Audio(content=encode(tone(3.0), 16_000, "flac"))
    first = await stub.Transcribe(pb.TranscribeRequest(audio=clip), metadata=key(ACME))
    second = await stub.Transcribe(pb.TranscribeRequest(audio=clip), metadata=key(ACME))
    assert stt.calls == 1
    assert (first.route.cache_hit, second.route.cache_hit) == (False, True)
    assert Decimal(first.route.cost_usd) == PER_SECOND * 3 and second.route.cost_usd == "0"
    assert Decimal(second.route.saved_usd) == Decimal(first.route.cost_usd) > 0
    assert second.text == first.text and second.route.provider == "cloud-stt" and not second.route.attempts

    # Another tenant shares nothing; a changed option is a different result; bypass skips the cache.
    other = await stub.Transcribe(pb.TranscribeRequest(audio=clip), metadata=key(GLOBEX))
    worded = await stub.Transcribe(pb.TranscribeRequest(audio=clip, word_timestamps=True), metadata=key(ACME))
    bypass = pb.TranscribeRequest(audio=clip, routing=common.RoutingOptions(cache=common.CACHE_MODE_BYPASS))
    await stub.Transcribe(bypass, metadata=key(ACME))
    assert not other.route.cache_hit and not worded.route.cache_hit and stt.calls == 4

    text = "Cache this sentence, please."
    spoken = [await stub.Synthesize(pb.SynthesizeRequest(text=text), metadata=key(ACME)) for _ in range(2)]
    assert tts.calls == 1 and spoken[1].route.cache_hit and spoken[1].audio == spoken[0].audio
    assert Decimal(spoken[1].route.saved_usd) == PER_CHAR * len(text)


async def test_fifty_identical_concurrent_requests_reach_the_provider_once(gateway):
    _, channel, stt, _ = gateway
    stub = pb_grpc.AudioGatewayStub(channel)
    clip = common.Audio(content=encode(tone(2.0, hz=523.0), 16_000, "wav"))
    replies = await asyncio.gather(
        *(stub.Transcribe(pb.TranscribeRequest(audio=clip), metadata=key(ACME)) for _ in range(50))
    )
    assert stt.calls == 1
    assert sum(not r.route.cache_hit for r in replies) == 1
    assert {r.text for r in replies} == {replies[0].text}


async def test_report_totals_match_a_hand_calculation_to_the_cent(gateway):
    _, channel, _, _ = gateway
    stub = pb_grpc.AudioGatewayStub(channel)
    plan = [(ACME, 1.5), (ACME, 2.5), (GLOBEX, 4.0), (ACME, 1.5)]  # the last repeats the first: a hit
    for api_key, seconds in plan:
        clip = common.Audio(content=encode(tone(seconds), 16_000, "wav"))
        await stub.Transcribe(pb.TranscribeRequest(audio=clip), metadata=key(api_key))
    await stub.Synthesize(pb.SynthesizeRequest(text="Twelve chars"), metadata=key(GLOBEX))

    by_tenant = await settled(channel, 5)
    rows = {
        (r.tenant, r.operation, r.provider): r
        for r in (
            await report(
                channel,
                ADMIN,
                group_by=[
                    reports_pb.GROUP_BY_TENANT,
                    reports_pb.GROUP_BY_OPERATION,
                    reports_pb.GROUP_BY_PROVIDER,
                ],
            )
        ).rows
    }
    acme = rows[("acme", "transcribe", "cloud-stt")]
    assert (acme.requests, acme.cache_hits) == (3, 1)
    assert Decimal(acme.cost_usd) == PER_SECOND * Decimal("4.0")  # 1.5 s + 2.5 s; the hit is free
    assert Decimal(acme.saved_usd) == PER_SECOND * Decimal("1.5")
    assert acme.units.audio_seconds == pytest.approx(5.5)
    globex_tts = rows[("globex", "synthesize", "cloud-tts")]
    assert Decimal(globex_tts.cost_usd) == PER_CHAR * 12
    expected_total = PER_SECOND * Decimal("8.0") + PER_CHAR * 12
    assert Decimal(by_tenant.total.cost_usd) == expected_total
    assert by_tenant.total.requests == 5 and by_tenant.total.attempts == 4
    # The only provider is the cloud one, so its counterfactual is what the traffic would cost there,
    # hits included (a hit saved a cloud call).
    assert Decimal(by_tenant.total.counterfactual_cloud_usd) == PER_SECOND * Decimal("9.5") + PER_CHAR * 12

    # A tenant sees only itself; naming another tenant needs an admin key.
    mine = await report(channel, GLOBEX)
    assert mine.total.requests == 2 and Decimal(mine.total.cost_usd) == PER_SECOND * 4 + PER_CHAR * 12
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await report(channel, GLOBEX, tenant="acme")
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert (await report(channel, ADMIN, tenant="acme")).total.requests == 3
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await report(channel, ADMIN, since="2026-13-01")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_local_only_results_are_not_cached_by_default(gateway):
    server, channel, _, _ = gateway
    local = FakeTranscriber(name="local-stt")
    await local.start()
    server.app.catalogue._providers["local-stt"] = local
    server.app.catalogue._ready.add("local-stt")
    stub = pb_grpc.AudioGatewayStub(channel)
    clip = common.Audio(content=encode(tone(1.0, hz=700.0), 16_000, "wav"))
    private = pb.TranscribeRequest(
        audio=clip, routing=common.RoutingOptions(privacy=common.PRIVACY_LOCAL_ONLY)
    )
    replies = [
        await stub.Transcribe(private, metadata=(("authorization", f"Bearer {ACME}"),)) for _ in range(2)
    ]
    assert local.calls == 2 and not any(r.route.cache_hit for r in replies)
