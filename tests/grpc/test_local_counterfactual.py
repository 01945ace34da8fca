"""The all-local counterfactual of traffic that ran locally is what it really cost there, never more."""

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
from gateway.cli.report_render import report_html
from gateway.core.provider_types import Locality
from gateway.grpc.server import GatewayServer
from gateway.money.pricing import UnitPrices
from providers.testing import FakeTranscriber
from tests.audio_files import encode, tone
from tests.conftest import local_settings

PER_SECOND = Decimal("0.0001")


@pytest.fixture
async def gateway(redis_url):
    settings = local_settings()
    settings.redis.url = redis_url
    settings.redis.key_prefix = f"test:{uuid.uuid4().hex}:"
    settings.ledger.flush_interval_s = 0.05
    # The fake reports 1 ms of compute; its declared latency model expects far more (5 ms + 1% of the audio):
    # an estimate from the model would price the same work higher than it cost.
    local = FakeTranscriber(name="local-stt", locality=Locality.LOCAL)
    cloud = FakeTranscriber(name="cloud-stt", locality=Locality.CLOUD)
    server = GatewayServer(
        settings,
        providers=[local, cloud],
        prices={("cloud-stt", cloud.model): UnitPrices(per_audio_second=PER_SECOND)},
    )
    port = await server.start()
    await server.wait_ready(10)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel, local
    await server.stop(5)


async def _report(channel: grpc.aio.Channel, requests: int) -> reports_pb.CostReport:
    stub = reports_grpc.CostReportsStub(channel)
    for _ in range(200):
        reply = await stub.GetCostReport(
            reports_pb.GetCostReportRequest(group_by=[reports_pb.GROUP_BY_PROVIDER])
        )
        if reply.total.requests >= requests:
            return reply
        await asyncio.sleep(0.05)
    raise AssertionError("the ledger never caught up")


async def test_all_local_traffic_counts_its_measured_compute(gateway):
    channel, local = gateway
    stub = pb_grpc.AudioGatewayStub(channel)
    replies = []
    for seconds in (1.0, 4.0, 9.0):
        clip = common.Audio(content=encode(tone(seconds), 16_000, "wav"))
        replies.append(await stub.Transcribe(pb.TranscribeRequest(audio=clip)))
    assert {r.route.provider for r in replies} == {"local-stt"} and local.calls == 3
    actual = sum(Decimal(r.route.cost_usd) for r in replies)
    assert actual > 0

    total = (await _report(channel, 3)).total
    assert Decimal(total.cost_usd) == actual
    assert Decimal(total.counterfactual_local_usd) == actual, "the same work, priced as it was measured"
    assert Decimal(total.counterfactual_cloud_usd) == PER_SECOND * 14


async def test_a_cache_hit_of_local_work_counts_what_the_original_cost(gateway):
    channel, _ = gateway
    stub = pb_grpc.AudioGatewayStub(channel)
    clip = common.Audio(content=encode(tone(2.0), 16_000, "wav"))
    first = await stub.Transcribe(pb.TranscribeRequest(audio=clip))
    again = await stub.Transcribe(pb.TranscribeRequest(audio=clip))
    assert again.route.cache_hit and Decimal(again.route.saved_usd) == Decimal(first.route.cost_usd)

    report = await _report(channel, 2)
    total = report.total
    spent, saved = Decimal(total.cost_usd), Decimal(total.saved_usd)
    assert Decimal(total.counterfactual_local_usd) == spent + saved
    page = report_html(report)
    assert "Both counterfactuals price cache hits as if they were computed again" in page
