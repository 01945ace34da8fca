"""ExplainRoute: the ranking behind a choice, with its numbers, and the choice the real call then makes."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import grpc
import pytest

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc as pb_grpc
from gateway.api.v1 import common_pb2 as common
from gateway.core.provider_types import LatencyModel, Locality
from gateway.grpc.server import GatewayServer
from gateway.money.pricing import UnitPrices
from providers.testing import FakeAnswerer, FakeTranscriber
from tests.audio_files import encode, tone
from tests.conftest import local_settings


def _fake(name: str, fixed_ms: float, rtf: float) -> FakeTranscriber:
    fake = FakeTranscriber(name=name, text=f"from {name}", locality=Locality.CLOUD)
    fake.capabilities = replace(fake.capabilities, latency_prior=LatencyModel(fixed_ms=fixed_ms, rtf=rtf))
    return fake


@pytest.fixture
async def stub():
    providers = [_fake("cheap-slow", 2000, 0.5), _fake("fast-pricey", 100, 0.05), FakeAnswerer()]
    prices = {
        ("cheap-slow", "fake-stt-1"): UnitPrices(per_audio_second=Decimal("0.0001")),
        ("fast-pricey", "fake-stt-1"): UnitPrices(per_audio_second=Decimal("0.001")),
    }
    server = GatewayServer(local_settings(), providers=providers, prices=prices)
    port = await server.start()
    await server.wait_ready(5)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield pb_grpc.AudioGatewayStub(channel)
    await server.stop(1)


def explain_request(objective: int) -> pb.ExplainRouteRequest:
    return pb.ExplainRouteRequest(
        operation=pb.OPERATION_TRANSCRIBE,
        audio_duration_s=10.0,
        routing=common.RoutingOptions(objective=objective),
    )


async def test_cost_and_latency_objectives_choose_differently_and_show_why(stub):
    by_cost = await stub.ExplainRoute(explain_request(common.OBJECTIVE_COST))
    by_latency = await stub.ExplainRoute(explain_request(common.OBJECTIVE_LATENCY))

    def eligible(reply):
        return [
            (c.provider, c.rank, c.estimated_cost_usd, c.estimated_latency_ms)
            for c in reply.candidates
            if c.eligible
        ]

    assert eligible(by_cost) == [("cheap-slow", 1, "0.001", 7000.0), ("fast-pricey", 2, "0.01", 600.0)]
    assert eligible(by_latency) == [("fast-pricey", 1, "0.01", 600.0), ("cheap-slow", 2, "0.001", 7000.0)]
    assert by_latency.objective == common.OBJECTIVE_LATENCY and by_cost.audio_duration_s == 10.0
    excluded = {c.provider: c.rejected_reason for c in by_cost.candidates if not c.eligible}
    assert excluded == {"fake-llm": "does not transcribe"}

    clip = common.Audio(content=encode(tone(10.0), 16_000, "flac"))
    for objective, expected, cost in [
        (common.OBJECTIVE_COST, "cheap-slow", "0.001"),
        (common.OBJECTIVE_LATENCY, "fast-pricey", "0.01"),
    ]:
        reply = await stub.Transcribe(
            pb.TranscribeRequest(audio=clip, routing=common.RoutingOptions(objective=objective))
        )
        assert (reply.route.provider, reply.text, reply.route.cost_usd) == (
            expected,
            f"from {expected}",
            cost,
        )


async def test_explain_applies_caps_and_privacy_like_a_real_request(stub):
    capped = explain_request(common.OBJECTIVE_COST)
    capped.routing.max_cost_usd = 0.005
    capped.routing.max_latency_ms = 5000
    reply = await stub.ExplainRoute(capped)
    reasons = {c.provider: c.rejected_reason for c in reply.candidates}
    assert reasons["fast-pricey"] == "estimated cost $0.010000 exceeds the cap $0.005"
    assert reasons["cheap-slow"] == "estimated latency 7000 ms exceeds the cap 5000 ms"
    private = explain_request(common.OBJECTIVE_COST)
    private.routing.privacy = common.PRIVACY_LOCAL_ONLY
    reply = await stub.ExplainRoute(private)
    assert reply.privacy == common.PRIVACY_LOCAL_ONLY
    assert not any(c.eligible for c in reply.candidates)


async def test_explain_understand_shows_the_transcription_step(stub):
    reply = await stub.ExplainRoute(
        pb.ExplainRouteRequest(operation=pb.OPERATION_UNDERSTAND, audio_duration_s=4)
    )
    assert [c.provider for c in reply.candidates if c.eligible] == ["fake-llm"]
    assert [c.provider for c in reply.transcription_candidates if c.eligible] == ["cheap-slow", "fast-pricey"]


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (pb.ExplainRouteRequest(), "operation is required"),
        (pb.ExplainRouteRequest(operation=pb.OPERATION_TRANSCRIBE, audio_duration_s=-1), "non-negative"),
        (
            pb.ExplainRouteRequest(
                operation=pb.OPERATION_TRANSCRIBE, audio=common.Audio(content=b"nope" * 20)
            ),
            "not decodable",
        ),
    ],
)
async def test_explain_rejects_bad_requests(stub, request_, message):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ExplainRoute(request_)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in caught.value.details()
