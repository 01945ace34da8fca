"""The real in-process server with fake providers: malformed requests are INVALID_ARGUMENT for every
caller, calls past a cap are RESOURCE_EXHAUSTED with a retry hint, and the server keeps serving."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc as pb_grpc
from gateway.api.v1 import common_pb2 as common
from gateway.api.v1 import cost_reports_pb2 as reports_pb
from gateway.core.errors import ProviderBusy
from gateway.grpc.interceptors import REQUEST_ID_HEADER, RETRY_PUSHBACK_HEADER
from gateway.grpc.server import SERVICE_NAME, GatewayServer
from policies.loader import hash_key
from providers.testing import FakeAnswerer, FakeSynthesizer, FakeTranscriber
from tests.audio_files import encode, tone
from tests.conftest import local_settings

KEY = "acme-key"
AUTH = (("authorization", f"Bearer {KEY}"),)
MARK = "QQQQ"  # a string field's value, turned into invalid UTF-8 on the wire


@dataclass
class Gateway:
    server: GatewayServer
    channel: grpc.aio.Channel
    stt: FakeTranscriber

    def raw(self, method: str) -> grpc.aio.UnaryUnaryMultiCallable:
        # No serializer: the test sends exactly the bytes it built.
        return self.channel.unary_unary(method)


@pytest.fixture(scope="module")
async def gateway(tmp_path_factory) -> AsyncIterator[Gateway]:
    policies = tmp_path_factory.mktemp("policies") / "policies.yaml"
    policies.write_text(
        "policies:\n  - name: default\n"
        f"tenants:\n  - {{name: acme, key_sha256: {hash_key(KEY)}, default_policy: default}}\n"
    )
    settings = local_settings()
    settings.policies_file = policies
    settings.admission.transcribe = 1
    settings.admission.retry_after_s = 0.25
    stt = FakeTranscriber()
    server = GatewayServer(settings, providers=[stt, FakeSynthesizer(), FakeAnswerer()])
    port = await server.start()
    await server.wait_ready(10)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield Gateway(server, channel, stt)
    await server.stop(1)


@pytest.fixture(autouse=True)
def _reset(gateway: Gateway) -> None:
    gateway.stt.delay_s, gateway.stt.fail_with = 0.0, None


def _routing() -> common.RoutingOptions:
    return common.RoutingOptions(policy=MARK)


# Each method, with a request whose only string to break is nested in RoutingOptions or top level.
REQUESTS: dict[str, Message] = {
    f"/{SERVICE_NAME}/Transcribe": pb.TranscribeRequest(
        audio=common.Audio(content=b"\x00" * 64), routing=_routing()
    ),
    f"/{SERVICE_NAME}/Synthesize": pb.SynthesizeRequest(text=MARK),
    f"/{SERVICE_NAME}/Understand": pb.UnderstandRequest(question=MARK),
    f"/{SERVICE_NAME}/ExplainRoute": pb.ExplainRouteRequest(routing=_routing()),
    "/gateway.api.v1.CostReports/GetCostReport": reports_pb.GetCostReportRequest(since=MARK),
}


def bad_utf8(message: Message) -> bytes:
    wire = message.SerializeToString()
    assert wire.count(MARK.encode()) == 1
    return wire.replace(MARK.encode(), b"Q\xffQQ")


CORRUPT = b"\x0a\xff\xff\xff\xff\xff\xff"  # field 1, length-delimited, with an impossible length


@pytest.mark.parametrize("method", list(REQUESTS))
@pytest.mark.parametrize("with_key", [False, True], ids=["no key", "key"])
async def test_corrupt_bytes_and_bad_utf8_are_invalid_argument_with_or_without_a_key(
    gateway: Gateway, method: str, with_key: bool
):
    name = REQUESTS[method].DESCRIPTOR.full_name
    metadata = AUTH if with_key else ()
    for body, reason in ((CORRUPT, "Wire format was corrupt"), (bad_utf8(REQUESTS[method]), "bad UTF-8")):
        call = gateway.raw(method)(body, metadata=metadata, timeout=5)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
        assert f"the request is not a valid {name}: " in caught.value.details()
        assert reason in caught.value.details()
        # The call still got its request id, so the caller can quote it.
        assert REQUEST_ID_HEADER in dict(caught.value.trailing_metadata())


async def test_a_well_formed_request_without_a_key_is_still_unauthenticated(gateway: Gateway):
    body = pb.SynthesizeRequest(text="hello").SerializeToString()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.raw(f"/{SERVICE_NAME}/Synthesize")(body, timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    reply = pb.SynthesizeResponse.FromString(
        await gateway.raw(f"/{SERVICE_NAME}/Synthesize")(body, metadata=AUTH, timeout=5)
    )
    assert reply.audio and reply.route.provider == "fake-tts"


async def test_health_and_reflection_keep_working_and_a_corrupt_probe_is_invalid_argument(gateway: Gateway):
    health = health_pb2_grpc.HealthStub(gateway.channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING

    watch = health.Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5)
    first = await watch.read()
    assert first.status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()

    reflection = reflection_pb2_grpc.ServerReflectionStub(gateway.channel)
    stream = reflection.ServerReflectionInfo(timeout=5)
    await stream.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    listed = await stream.read()
    await stream.done_writing()
    names = {s.name for s in listed.list_services_response.service}
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= names

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.raw("/grpc.health.v1.Health/Check")(CORRUPT, timeout=5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "grpc.health.v1.HealthCheckRequest" in caught.value.details()


def transcribe_request() -> pb.TranscribeRequest:
    clip = encode(tone(1.0), 16_000, "wav")
    return pb.TranscribeRequest(audio=common.Audio(content=clip, mime_type="audio/wav"))


def retry_delay_ms(error: grpc.aio.AioRpcError) -> int:
    """The RetryInfo in the status details, read the way grpcio-status clients read it."""
    status = rpc_status.from_call(error)
    assert status is not None, "no google.rpc.Status in the trailers"
    assert status.code == error.code().value[0]
    assert status.message == error.details()
    (detail,) = status.details
    info = error_details_pb2.RetryInfo()
    assert detail.Unpack(info)
    return info.retry_delay.ToMilliseconds()


async def test_calls_over_the_cap_are_refused_with_retry_info_and_the_server_keeps_serving(gateway: Gateway):
    stub = pb_grpc.AudioGatewayStub(gateway.channel)
    gateway.stt.delay_s = 0.5
    calls = [stub.Transcribe(transcribe_request(), metadata=AUTH, timeout=10) for _ in range(4)]
    outcomes = await asyncio.gather(*calls, return_exceptions=True)

    served = [o for o in outcomes if isinstance(o, pb.TranscribeResponse)]
    refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(served) == 1 and len(refused) == 3, outcomes
    for error in refused:
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "limit of 1 transcribe calls; retry in 0.25 s" in error.details()
        assert retry_delay_ms(error) == 250
        trailers = dict(error.trailing_metadata())
        assert trailers[RETRY_PUSHBACK_HEADER] == "250"
        # The retry hint does not push the request id out of the trailers.
        assert trailers[REQUEST_ID_HEADER]
    assert gateway.stt.calls == 1

    # Nothing stuck: the slot is free again and everything else still answers.
    gateway.stt.delay_s = 0.0
    assert (await stub.Transcribe(transcribe_request(), metadata=AUTH, timeout=5)).text
    synth = await stub.Synthesize(pb.SynthesizeRequest(text="still here"), metadata=AUTH, timeout=5)
    assert synth.audio
    health = health_pb2_grpc.HealthStub(gateway.channel)
    assert (await health.Check(health_pb2.HealthCheckRequest(), timeout=5)).status == 1
    app = gateway.server.app
    assert app.admission.in_flight("transcribe") == 0
    metrics = app.metrics.registry
    refused_count = metrics.get_sample_value(
        "audio_gateway_admissions_refused_total", {"operation": "transcribe", "reason": "concurrency"}
    )
    assert refused_count is not None and refused_count >= 3
    assert metrics.get_sample_value("audio_gateway_in_flight", {"operation": "transcribe"}) == 0


async def test_every_engine_busy_is_resource_exhausted_with_the_engines_hint(gateway: Gateway):
    stub = pb_grpc.AudioGatewayStub(gateway.channel)
    gateway.stt.fail_with = ProviderBusy(
        "fake-stt", "all 2 workers are busy and 4 requests already wait", 0.7
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Transcribe(transcribe_request(), metadata=AUTH, timeout=5)
    error = caught.value
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "every provider for this request is busy" in error.details()
    assert "fake-stt: all 2 workers are busy" in error.details()
    assert retry_delay_ms(error) == 700
    assert dict(error.trailing_metadata())[RETRY_PUSHBACK_HEADER] == "700"


async def test_errors_without_a_retry_hint_carry_no_retry_details(gateway: Gateway):
    stub = pb_grpc.AudioGatewayStub(gateway.channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Synthesize(pb.SynthesizeRequest(text=""), metadata=AUTH, timeout=5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "text is empty" in caught.value.details()
    assert rpc_status.from_call(caught.value) is None
    assert RETRY_PUSHBACK_HEADER not in dict(caught.value.trailing_metadata() or ())


async def test_a_long_voice_name_is_clipped_in_the_error(gateway: Gateway):
    stub = pb_grpc.AudioGatewayStub(gateway.channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Synthesize(pb.SynthesizeRequest(text="hi", voice="v" * 50_000), metadata=AUTH, timeout=5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "v" * 99 + "…" in caught.value.details()
    assert len(caught.value.details()) < 1000
