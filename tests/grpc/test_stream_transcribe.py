"""StreamTranscribe through gRPC: a real server, the streaming fake, real Redis for budgets and the ledger.

The fake hears "tone words" (providers.testing.tone_words_pcm): what it transcribes depends only on the
audio it was sent, so a failover that lost or repeated audio would show up as lost or repeated words.
Audio is streamed as fast as the server takes it.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import grpc
import pytest

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc as pb_grpc
from gateway.api.v1 import common_pb2 as common
from gateway.core.provider_types import Locality
from gateway.grpc.server import GatewayServer
from gateway.money.pricing import UnitPrices
from gateway.settings import Settings
from policies.loader import hash_key
from providers.base import Provider
from providers.testing import FakeStreamingTranscriber, tone_words_pcm
from tests.conftest import local_settings

KEY = "stream-tenant-key"
RATE = 16_000
CHUNK = RATE * 2 // 10  # 100 ms of LINEAR16
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india"]
PAUSES = (2, 5, 8)  # an utterance ends after every third word


def linear16(**overrides: object) -> pb.StreamTranscribeConfig:
    fields: dict[str, object] = {
        "encoding": pb.STREAM_ENCODING_LINEAR16,
        "sample_rate_hertz": RATE,
        "interim_results": True,
        "word_timestamps": True,
    }
    fields.update(overrides)
    return pb.StreamTranscribeConfig(**fields)  # type: ignore[arg-type]


def audio_messages(pcm: bytes, chunk: int = CHUNK) -> list[pb.StreamTranscribeRequest]:
    return [pb.StreamTranscribeRequest(audio=pcm[i : i + chunk]) for i in range(0, len(pcm), chunk)]


@dataclass
class Outcome:
    responses: list[pb.StreamTranscribeResponse] = field(default_factory=list)
    code: grpc.StatusCode = grpc.StatusCode.OK
    details: str = ""

    @property
    def finals(self) -> list[pb.StreamResult]:
        return [r.result for r in self.responses if r.HasField("result") and r.result.is_final]

    @property
    def interims(self) -> list[pb.StreamResult]:
        return [r.result for r in self.responses if r.HasField("result") and not r.result.is_final]

    @property
    def transcript(self) -> list[str]:
        return " ".join(f.alternatives[0].text for f in self.finals).split()

    @property
    def summary(self) -> pb.StreamTranscribeResponse:
        last = self.responses[-1]
        assert last.HasField("route_info"), last
        return last

    def events(self, kind: int) -> list[pb.StreamTranscribeResponse]:
        return [r for r in self.responses if r.HasField("event") and r.event.type == kind]


@dataclass
class Gateway:
    server: GatewayServer
    stub: pb_grpc.AudioGatewayStub

    async def stream(
        self,
        messages: Sequence[pb.StreamTranscribeRequest | float],
        metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {KEY}"),),
    ) -> Outcome:
        """Send ``messages`` (a float is a pause in seconds) and collect every response and the status."""

        async def requests() -> AsyncIterator[pb.StreamTranscribeRequest]:
            for message in messages:
                if isinstance(message, float):
                    await asyncio.sleep(message)
                else:
                    yield message

        outcome = Outcome()
        call = self.stub.StreamTranscribe(requests(), metadata=metadata, timeout=30)
        try:
            async for response in call:
                outcome.responses.append(response)
        except grpc.aio.AioRpcError as exc:
            outcome.code, outcome.details = exc.code(), exc.details() or ""
        return outcome

    async def records(self, request_id: str) -> list:
        for _ in range(100):
            found = await self.server.app.ledger.find("acme", request_id)
            if any(r.kind == "request" for r in found):
                return found
            await asyncio.sleep(0.05)
        raise AssertionError(f"no ledger records for {request_id}")


@asynccontextmanager
async def gateway(
    tmp_path: Path,
    providers: list[Provider],
    *,
    redis_url: str = "",
    prices: dict[tuple[str, str], UnitPrices] | None = None,
    budget_usd: str | None = None,
    tune: object = None,
) -> AsyncIterator[Gateway]:
    budget = f', monthly_budget_usd: "{budget_usd}"' if budget_usd else ""
    policies = tmp_path / "policies.yaml"
    policies.write_text(
        "policies:\n  - {name: default}\n"
        f"tenants:\n  - {{name: acme, key_sha256: {hash_key(KEY)}, default_policy: default{budget}}}\n"
    )
    settings: Settings = local_settings()
    settings.policies_file = policies
    settings.ledger.flush_interval_s = 0.05
    if redis_url:
        settings.redis.url = redis_url
        settings.redis.key_prefix = f"test:{uuid.uuid4().hex}:"
    if callable(tune):
        tune(settings)
    server = GatewayServer(settings, providers=providers, prices=prices)
    port = await server.start()
    await server.wait_ready(10)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield Gateway(server, pb_grpc.AudioGatewayStub(channel))
    finally:
        await server.stop(5)


def speech(words: Sequence[str] = WORDS, pauses: Sequence[int] = PAUSES) -> bytes:
    return tone_words_pcm(words, RATE, pause_after=pauses)


# -- the contract ------------------------------------------------------------------------------------------


async def test_interim_and_final_results_on_the_callers_timeline(tmp_path):
    fake = FakeStreamingTranscriber()
    async with gateway(tmp_path, [fake]) as gw:
        pcm = speech()
        out = await gw.stream([pb.StreamTranscribeRequest(config=linear16()), *audio_messages(pcm)])
    assert out.code == grpc.StatusCode.OK, out.details
    first = out.responses[0]
    assert first.route.provider == "fake-stream" and first.route.locality == common.LOCALITY_LOCAL
    assert out.transcript == WORDS
    assert len(out.finals) == 3 and len(out.interims) >= 9
    assert all(0 < i.stability < 1 for i in out.interims)
    words = [w for f in out.finals for w in f.alternatives[0].words]
    assert [w.text for w in words] == WORDS
    assert all(a.end_s <= b.start_s for a, b in itertools.pairwise(words))
    assert len(out.events(pb.SPEECH_EVENT_SPEECH_BEGIN)) == 3
    assert len(out.events(pb.SPEECH_EVENT_END_OF_UTTERANCE)) == 3
    summary = out.summary
    assert summary.billed_seconds == pytest.approx(len(pcm) / 2 / RATE)
    assert [a.outcome for a in summary.route_info.attempts] == ["ok"]
    assert summary.route_info.provider == "fake-stream"


async def test_odd_byte_chunks_lose_no_audio(tmp_path):
    fake = FakeStreamingTranscriber()
    async with gateway(tmp_path, [fake]) as gw:
        pcm = speech()
        out = await gw.stream([pb.StreamTranscribeRequest(config=linear16()), *audio_messages(pcm, 3201)])
    assert out.code == grpc.StatusCode.OK, out.details
    assert out.transcript == WORDS
    assert fake.streams[0].received_samples * 2 == len(pcm)


async def test_finalize_flushes_what_was_heard(tmp_path):
    fake = FakeStreamingTranscriber()
    async with gateway(tmp_path, [fake]) as gw:
        pcm = tone_words_pcm(["kilo", "lima"], RATE, gap_s=0.1)[: -RATE // 20]  # no endpointing pause
        finalize = pb.StreamTranscribeRequest(control=pb.STREAM_CONTROL_FINALIZE)
        out = await gw.stream([pb.StreamTranscribeRequest(config=linear16()), *audio_messages(pcm), finalize])
    assert out.code == grpc.StatusCode.OK, out.details
    assert out.transcript == ["kilo", "lima"]
    assert fake.streams[0].finalized == 1


async def test_mulaw_and_ogg_opus_are_decoded_for_the_provider(tmp_path):
    from tests.stream_audio import ogg_opus, to_mulaw

    fake = FakeStreamingTranscriber()
    async with gateway(tmp_path, [fake]) as gw:
        narrow = tone_words_pcm(["bravo", "golf"], 8_000, pause_after=(1,))
        out = await gw.stream(
            [
                pb.StreamTranscribeRequest(
                    config=linear16(encoding=pb.STREAM_ENCODING_MULAW, sample_rate_hertz=8_000)
                ),
                *audio_messages(to_mulaw(narrow), 800),
            ]
        )
        assert out.code == grpc.StatusCode.OK, out.details
        assert out.transcript == ["bravo", "golf"]
        wide = tone_words_pcm(["charlie", "hotel"], 48_000, pause_after=(1,))
        out = await gw.stream(
            [
                pb.StreamTranscribeRequest(
                    config=linear16(encoding=pb.STREAM_ENCODING_OGG_OPUS, sample_rate_hertz=16_000)
                ),
                *audio_messages(ogg_opus(wide), 997),
            ]
        )
        assert out.code == grpc.StatusCode.OK, out.details
        assert out.transcript == ["charlie", "hotel"]


@pytest.mark.parametrize(
    ("messages", "needle"),
    [
        ([pb.StreamTranscribeRequest(audio=b"\0\0")], "first message"),
        ([], "first message"),
        (
            [pb.StreamTranscribeRequest(config=linear16()), pb.StreamTranscribeRequest(config=linear16())],
            "config sent twice",
        ),
        ([pb.StreamTranscribeRequest(config=linear16(encoding=0))], "encoding"),
        ([pb.StreamTranscribeRequest(config=linear16(sample_rate_hertz=0))], "sample_rate_hertz"),
        ([pb.StreamTranscribeRequest(config=linear16(sample_rate_hertz=200_000))], "sample_rate_hertz"),
        ([pb.StreamTranscribeRequest(config=linear16(language="not a language"))], "language"),
        (
            [
                pb.StreamTranscribeRequest(
                    config=linear16(endpointing=pb.Endpointing(silence_ms=2000, max_turn_silence_ms=1000))
                )
            ],
            "max_turn_silence_ms",
        ),
        (
            [
                pb.StreamTranscribeRequest(config=linear16(encoding=pb.STREAM_ENCODING_OGG_OPUS)),
                pb.StreamTranscribeRequest(audio=b"RIFF" + b"\0" * 200),
            ],
            "doesn't match the config",
        ),
        (
            [pb.StreamTranscribeRequest(config=linear16()), pb.StreamTranscribeRequest(control=0)],
            "control",
        ),
    ],
)
async def test_bad_streams_are_invalid_argument(tmp_path, messages, needle):
    fake = FakeStreamingTranscriber()
    async with gateway(tmp_path, [fake]) as gw:
        out = await gw.stream(messages)
    assert out.code == grpc.StatusCode.INVALID_ARGUMENT, (out.code, out.details)
    assert needle in out.details


async def test_providers_without_streaming_are_not_candidates(tmp_path):
    from providers.testing import FakeTranscriber

    async with gateway(tmp_path, [FakeTranscriber()]) as gw:
        out = await gw.stream([pb.StreamTranscribeRequest(config=linear16()), *audio_messages(speech())])
    assert out.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "streaming" in out.details


# -- failover ----------------------------------------------------------------------------------------------


async def test_a_provider_that_drops_at_3_s_fails_over_with_no_lost_words(tmp_path, redis_url):
    first = FakeStreamingTranscriber(name="first", fail_after_s=3.0)
    second = FakeStreamingTranscriber(name="second")
    async with gateway(tmp_path, [first, second], redis_url=redis_url) as gw:
        pcm = speech(WORDS * 2, (2, 5, 8, 11, 14, 17))
        request_id = f"stream-{uuid.uuid4().hex[:8]}"
        metadata = (("authorization", f"Bearer {KEY}"), ("x-request-id", request_id))
        out = await gw.stream([pb.StreamTranscribeRequest(config=linear16()), *audio_messages(pcm)], metadata)
        assert out.code == grpc.StatusCode.OK, out.details
        assert out.transcript == WORDS * 2
        changed = out.events(pb.SPEECH_EVENT_PROVIDER_CHANGED)
        assert len(changed) == 1 and changed[0].route.provider == "second"
        # The replay started at the last final's end, before the drop: the second provider's words are
        # timed on the caller's timeline, after the first provider's.
        assert 0 < changed[0].event.time_s < 3.0
        finals_times = [f.result_start_time_s for f in out.finals]
        assert finals_times == sorted(finals_times)
        attempts = out.summary.route_info.attempts
        assert [(a.provider, a.outcome) for a in attempts] == [("first", "unavailable"), ("second", "ok")]
        assert out.summary.billed_seconds == pytest.approx(len(pcm) / 2 / RATE)
        assert first.streams[0].received_s == pytest.approx(3.0, abs=0.11)
        records = await gw.records(request_id)
    assert sorted(r.kind for r in records) == ["attempt", "attempt", "request"]
    request = next(r for r in records if r.kind == "request")
    assert request.provider == "second" and request.outcome == "ok"


async def test_a_stalled_provider_is_replaced(tmp_path):
    first = FakeStreamingTranscriber(name="first", stall_after_s=2.0)
    second = FakeStreamingTranscriber(name="second")

    def tune(settings: Settings) -> None:
        settings.streams.stall_audio_s = 1.0

    async with gateway(tmp_path, [first, second], tune=tune) as gw:
        out = await gw.stream([pb.StreamTranscribeRequest(config=linear16()), *audio_messages(speech())])
    assert out.code == grpc.StatusCode.OK, out.details
    assert out.transcript == WORDS
    attempts = out.summary.route_info.attempts
    assert [(a.provider, a.outcome) for a in attempts] == [("first", "timeout"), ("second", "ok")]


async def test_every_candidate_failing_is_unavailable(tmp_path):
    from gateway.core.errors import ProviderUnavailable

    first = FakeStreamingTranscriber(name="first", fail_after_s=1.0)
    second = FakeStreamingTranscriber(name="second", open_fail_with=ProviderUnavailable("second", "down"))
    async with gateway(tmp_path, [first, second]) as gw:
        out = await gw.stream([pb.StreamTranscribeRequest(config=linear16()), *audio_messages(speech())])
    assert out.code == grpc.StatusCode.UNAVAILABLE, out.details
    assert "first" in out.details and "second" in out.details


# -- money, privacy, limits --------------------------------------------------------------------------------

PER_SECOND = Decimal("0.001")
QUANTUM = Decimal("0.000000001")


async def test_budget_running_out_flushes_then_ends_resource_exhausted(tmp_path, redis_url):
    cloud = FakeStreamingTranscriber(name="cloud-stream", locality=Locality.CLOUD)
    prices = {("cloud-stream", cloud.model): UnitPrices(per_audio_second=PER_SECOND)}

    def tune(settings: Settings) -> None:
        settings.streams.budget_increment_s = 2.0

    async with gateway(
        tmp_path, [cloud], redis_url=redis_url, prices=prices, budget_usd="0.005", tune=tune
    ) as gw:
        pcm = speech(WORDS * 2, (2, 5, 8, 11, 14, 17))  # about 13 s, $0.013
        request_id = f"budget-{uuid.uuid4().hex[:8]}"
        metadata = (("authorization", f"Bearer {KEY}"), ("x-request-id", request_id))
        out = await gw.stream([pb.StreamTranscribeRequest(config=linear16()), *audio_messages(pcm)], metadata)
        assert out.code == grpc.StatusCode.RESOURCE_EXHAUSTED, out.details
        assert "budget" in out.details
        summary = out.summary  # the flushed finals and the route come before the status
        assert 4.8 <= summary.billed_seconds <= 5.0
        assert Decimal(summary.route_info.cost_usd) <= Decimal("0.005")
        assert cloud.streams[0].closed  # flushed, not dropped
        assert out.transcript and out.transcript == (WORDS * 2)[: len(out.transcript)]
        records = await gw.records(request_id)
    request = next(r for r in records if r.kind == "request")
    # Every budget refusal is recorded alike, whichever step ran out of money.
    assert request.outcome == "budget_exceeded"
    assert request.units.audio_seconds == pytest.approx(summary.billed_seconds)
    assert request.cost_usd == Decimal(summary.route_info.cost_usd)


def acknowledged_before_switch(responses: Sequence[pb.StreamTranscribeResponse]) -> float:
    """How far the first provider's results and speech events reached, as the caller saw them."""
    reached = 0.0
    for r in responses:
        if r.HasField("event") and r.event.type == pb.SPEECH_EVENT_PROVIDER_CHANGED:
            return reached
        if r.HasField("result"):
            reached = max(reached, r.result.result_end_time_s)
        elif r.HasField("event"):
            reached = max(reached, r.event.time_s)
    raise AssertionError("the provider never changed")


async def test_a_stalled_vendor_is_billed_only_for_the_audio_it_acknowledged(tmp_path, redis_url):
    first = FakeStreamingTranscriber(name="first", locality=Locality.CLOUD, stall_after_s=3.0)
    second = FakeStreamingTranscriber(name="second", locality=Locality.CLOUD)
    prices = {
        ("first", first.model): UnitPrices(per_audio_second=PER_SECOND),
        ("second", second.model): UnitPrices(per_audio_second=PER_SECOND * 2),
    }

    def tune(settings: Settings) -> None:
        settings.streams.stall_audio_s = 1.0

    async with gateway(tmp_path, [first, second], redis_url=redis_url, prices=prices, tune=tune) as gw:
        pcm = speech(WORDS * 2, (2, 5, 8, 11, 14, 17))
        request_id = f"stall-{uuid.uuid4().hex[:8]}"
        metadata = (("authorization", f"Bearer {KEY}"), ("x-request-id", request_id))
        out = await gw.stream([pb.StreamTranscribeRequest(config=linear16()), *audio_messages(pcm)], metadata)
        assert out.code == grpc.StatusCode.OK, out.details
        assert out.transcript == WORDS * 2
        records = await gw.records(request_id)

    stalled, served = out.summary.route_info.attempts
    assert (stalled.provider, stalled.outcome, served.provider, served.outcome) == (
        "first",
        "timeout",
        "second",
        "ok",
    )
    # The gateway went on sending into the stalled vendor until it noticed, far past its last answer.
    sent_s = first.streams[0].received_s
    acknowledged_s = acknowledged_before_switch(out.responses)
    assert 2.0 < acknowledged_s <= 3.0 < sent_s - 1.0
    # Billed: what its answers reached. The rest may or may not be on its bill: kept apart.
    assert Decimal(stalled.cost_usd) == (PER_SECOND * Decimal(repr(acknowledged_s))).quantize(QUANTUM)
    assert stalled.billing_unknown
    unacknowledged = PER_SECOND * (Decimal(repr(sent_s)) - Decimal(repr(acknowledged_s)))
    assert Decimal(stalled.possibly_billed_usd) == pytest.approx(unacknowledged, abs=Decimal("1e-8"))
    # The provider that finished is billed everything it was sent.
    assert not served.billing_unknown and Decimal(served.possibly_billed_usd) == 0
    served_cost = (PER_SECOND * 2 * Decimal(repr(second.streams[0].received_s))).quantize(QUANTUM)
    assert Decimal(served.cost_usd) == served_cost
    assert Decimal(out.summary.route_info.cost_usd) == Decimal(stalled.cost_usd) + served_cost

    request = next(r for r in records if r.kind == "request")
    assert request.cost_usd == Decimal(out.summary.route_info.cost_usd)
    assert request.possibly_billed_usd == Decimal(stalled.possibly_billed_usd)
    ledger_stalled = next(r for r in records if r.kind == "attempt" and r.provider == "first")
    assert ledger_stalled.billing_unknown and ledger_stalled.units.audio_seconds == pytest.approx(
        acknowledged_s
    )


async def test_local_only_streams_never_reach_a_cloud_provider(tmp_path):
    cloud = FakeStreamingTranscriber(name="cloud-stream", locality=Locality.CLOUD)
    local = FakeStreamingTranscriber(name="local-stream", fail_after_s=2.0)
    # Free cloud, dear local: only the privacy rule keeps the cloud out.
    prices = {("cloud-stream", cloud.model): UnitPrices()}
    async with gateway(tmp_path, [cloud, local], prices=prices) as gw:
        config = linear16(routing=common.RoutingOptions(privacy=common.PRIVACY_LOCAL_ONLY))
        out = await gw.stream([pb.StreamTranscribeRequest(config=config), *audio_messages(speech())])
    # The only local provider drops; failover must not reach for the cloud.
    assert out.code == grpc.StatusCode.UNAVAILABLE, out.details
    assert cloud.streams == [] and cloud.received_s == 0
    assert local.streams and local.streams[0].received_s >= 2.0


async def test_idle_stream_ends_resource_exhausted_and_keepalive_keeps_it(tmp_path):
    fake = FakeStreamingTranscriber()

    def tune(settings: Settings) -> None:
        settings.streams.max_idle_s = 0.6

    async with gateway(tmp_path, [fake], tune=tune) as gw:
        config = pb.StreamTranscribeRequest(config=linear16())
        pcm = speech(["mike", "oscar"], (1,))
        idle = await gw.stream([config, *audio_messages(pcm), 1.5])
        keepalive = pb.StreamTranscribeRequest(control=pb.STREAM_CONTROL_KEEPALIVE)
        kept = await gw.stream([config, keepalive, 0.3, keepalive, 0.3, keepalive, 0.3, *audio_messages(pcm)])
    assert idle.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "KEEPALIVE" in idle.details
    assert idle.transcript == ["mike", "oscar"]  # what was heard is still delivered
    assert kept.code == grpc.StatusCode.OK, kept.details
    assert kept.transcript == ["mike", "oscar"]
    assert fake.streams[1].keepalives == 3


async def test_max_duration_ends_the_stream(tmp_path):
    fake = FakeStreamingTranscriber()

    def tune(settings: Settings) -> None:
        settings.streams.max_duration_s = 2.0

    async with gateway(tmp_path, [fake], tune=tune) as gw:
        out = await gw.stream([pb.StreamTranscribeRequest(config=linear16()), *audio_messages(speech())])
    assert out.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "2 s of audio" in out.details
    assert out.summary.billed_seconds == pytest.approx(2.0)
    assert fake.streams[0].received_s == pytest.approx(2.0)


async def test_per_tenant_stream_cap(tmp_path):
    fake = FakeStreamingTranscriber()

    def tune(settings: Settings) -> None:
        settings.streams.max_streams_per_tenant = 1

    async with gateway(tmp_path, [fake], tune=tune) as gw:
        config = pb.StreamTranscribeRequest(config=linear16())
        held = asyncio.create_task(gw.stream([config, *audio_messages(speech(["papa"], ())), 1.0]))
        async with asyncio.timeout(5):
            while not fake.streams:  # noqa: ASYNC110 (the fake has no event to wait on)
                await asyncio.sleep(0.01)
        refused = await gw.stream([config])
        first = await held
    assert refused.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "limit of 1 streams" in refused.details
    assert first.code == grpc.StatusCode.OK, first.details


# -- the Python clients ------------------------------------------------------------------------------------


async def test_python_clients_stream_and_get_interim_and_final_results(tmp_path):
    from gateway.client import AsyncGatewayClient, GatewayClient

    fake = FakeStreamingTranscriber()
    pcm = speech(WORDS[:3], (2,))
    chunks = [pcm[i : i + CHUNK] for i in range(0, len(pcm), CHUNK)]
    async with gateway(tmp_path, [fake]) as gw:
        target = f"127.0.0.1:{gw.server.port}"
        async with AsyncGatewayClient(target, api_key=KEY) as client:
            replies = [r async for r in client.stream_transcribe(chunks, linear16())]

        def blocking() -> list[pb.StreamTranscribeResponse]:
            with GatewayClient(target, api_key=KEY) as client:
                return list(client.stream_transcribe([*chunks, pb.STREAM_CONTROL_FINALIZE], linear16()))

        sync_replies = await asyncio.to_thread(blocking)
    for responses in (replies, sync_replies):
        out = Outcome(responses)
        assert out.transcript == WORDS[:3]
        assert out.interims
        assert out.summary.route_info.provider == "fake-stream"


async def test_reflection_lists_stream_transcribe(tmp_path):
    from google.protobuf.descriptor_pool import DescriptorPool
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    async with gateway(tmp_path, [FakeStreamingTranscriber()]) as gw:
        target = f"127.0.0.1:{gw.server.port}"

        def methods() -> dict[str, tuple[bool, bool]]:
            with grpc.insecure_channel(target) as channel:
                pool = DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
                service = pool.FindServiceByName("gateway.api.v1.AudioGateway")
                return {m.name: (m.client_streaming, m.server_streaming) for m in service.methods}

        found = await asyncio.to_thread(methods)
    assert found["StreamTranscribe"] == (True, True)
