"""StreamTranscribe through the whole gateway to the cloud adapters: providers file, real SDKs, wire fakes.

AssemblyAI drops mid-stream; the gateway replays the audio since the last final into Deepgram, and the
caller sees one transcript. The fakes hear a script by the audio timeline, so Deepgram's script is what
the replayed audio holds: the original one, moved back by where the replay starts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
import yaml

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc as pb_grpc
from gateway.api.v1 import common_pb2 as common
from gateway.grpc.server import GatewayServer
from gateway.money.pricing import PriceList, default_price_list_path
from policies.loader import hash_key
from tests.conftest import local_settings
from tests.fakes.assemblyai_live import FakeAssemblyAILive
from tests.fakes.deepgram_live import FakeDeepgramLive
from tests.fakes.ws_base import SCRIPT
from tests.grpc.test_stream_transcribe import acknowledged_before_switch
from tests.live_streams import RATE, pcm

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20"),
]

KEY = "cloud-stream-tenant"
DG_ENV, AAI_ENV = "STREAM_CLOUD_DG_KEY", "STREAM_CLOUD_AAI_KEY"
DG_KEY, AAI_KEY = "dg-stream-key", "aai-stream-key"
QUANTUM = Decimal("0.000000001")
PROVIDERS = """\
providers:
  - name: assemblyai-live
    kind: assemblyai
    operation: transcribe
    model: universal
    api_key_env: {aai_env}
    base_url: https://api.assemblyai.invalid
    options: {{streaming_url: "{aai_url}", stream_stall_s: 2.0}}
  - name: deepgram-live
    kind: deepgram
    operation: transcribe
    model: nova-3
    api_key_env: {dg_env}
    base_url: "{dg_url}"
    options: {{stream_stall_s: 2.0}}
"""


@asynccontextmanager
async def cloud_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, price_book: Path | None = None
) -> AsyncIterator[tuple[pb_grpc.AudioGatewayStub, FakeAssemblyAILive, FakeDeepgramLive]]:
    with FakeAssemblyAILive(api_key=AAI_KEY) as aai, FakeDeepgramLive(api_key=DG_KEY) as dg:
        providers = tmp_path / "providers.yaml"
        providers.write_text(PROVIDERS.format(aai_env=AAI_ENV, aai_url=aai.url, dg_env=DG_ENV, dg_url=dg.url))
        policies = tmp_path / "policies.yaml"
        policies.write_text(
            "policies:\n  - {name: default}\n"
            f"tenants:\n  - {{name: acme, key_sha256: {hash_key(KEY)}, default_policy: default}}\n"
        )
        monkeypatch.setenv(AAI_ENV, AAI_KEY)
        monkeypatch.setenv(DG_ENV, DG_KEY)
        settings = local_settings()
        settings.whisper.enabled = settings.piper.enabled = settings.llama.enabled = False
        settings.providers_file = providers
        settings.policies_file = policies
        settings.price_book_file = price_book
        server = GatewayServer(settings)
        await server.start()
        await server.wait_ready(timeout_s=30)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                yield pb_grpc.AudioGatewayStub(channel), aai, dg
        finally:
            await server.stop(grace_s=1)


@pytest.fixture
async def cloud(
    tmp_path, monkeypatch
) -> AsyncIterator[tuple[pb_grpc.AudioGatewayStub, FakeAssemblyAILive, FakeDeepgramLive]]:
    async with cloud_gateway(tmp_path, monkeypatch) as served:
        yield served


async def stream(
    stub: pb_grpc.AudioGatewayStub, audio: bytes, routing: common.RoutingOptions | None = None
) -> list[pb.StreamTranscribeResponse]:
    async def requests() -> AsyncIterator[pb.StreamTranscribeRequest]:
        yield pb.StreamTranscribeRequest(
            config=pb.StreamTranscribeConfig(
                encoding=pb.STREAM_ENCODING_LINEAR16,
                sample_rate_hertz=RATE,
                interim_results=True,
                word_timestamps=True,
                routing=routing,
            )
        )
        chunk = RATE * 2 // 10
        for i in range(0, len(audio), chunk):
            yield pb.StreamTranscribeRequest(audio=audio[i : i + chunk])

    call = stub.StreamTranscribe(requests(), metadata=(("authorization", f"Bearer {KEY}"),), timeout=30)
    return [response async for response in call]


def per_second(key: str) -> Decimal:
    return PriceList.load(default_price_list_path()).prices[key].per_audio_second


async def test_a_vendor_that_drops_mid_stream_hands_over_with_no_lost_words(cloud):
    stub, aai, dg = cloud
    aai.drop_after_s = 3.0
    # AssemblyAI's first final ends at its last word, 1.6 s: the replay into Deepgram starts there.
    replay_s = 1.6
    dg.script = tuple(
        shifted
        for utterance in SCRIPT
        if (shifted := tuple(replace(w, start=w.start - replay_s, end=w.end - replay_s) for w in utterance))
        and shifted[0].start >= 0
    )
    audio = pcm(5.0)
    responses = await stream(stub, audio)

    routes = [r.route for r in responses if r.HasField("route")]
    assert [(r.provider, r.locality) for r in routes] == [
        ("assemblyai-live", common.LOCALITY_CLOUD),
        ("deepgram-live", common.LOCALITY_CLOUD),
    ]
    finals = [r.result for r in responses if r.HasField("result") and r.result.is_final]
    assert [f.alternatives[0].text for f in finals] == ["Hello from the gateway.", "Streams never stop."]
    # Deepgram's times, moved onto the caller's timeline.
    streams = finals[1].alternatives[0].words[0]
    assert (streams.text, streams.start_s, streams.end_s) == pytest.approx(("Streams", 2.8, 3.2))

    # Deepgram heard exactly the caller's audio from the last final on: nothing lost, nothing twice.
    start = round(replay_s * RATE) * 2
    assert bytes(dg.session.audio) == audio[start:]
    assert dg.session.control_types() == ["CloseStream"]

    summary = responses[-1]
    assert summary.billed_seconds == pytest.approx(5.0)
    attempts = summary.route_info.attempts
    assert [(a.provider, a.outcome) for a in attempts] == [
        ("assemblyai-live", "unavailable"),
        ("deepgram-live", "ok"),
    ]
    # Each attempt is priced at its vendor's streaming rate for the audio it was sent.
    dg_cost = (per_second("deepgram/nova-3:streaming") * Decimal("3.4")).quantize(QUANTUM)
    assert Decimal(attempts[1].cost_usd) == dg_cost
    # AssemblyAI is billed the audio its answers reached; what was sent after, until the drop was seen,
    # may or may not be on its bill.
    aai_rate = per_second("assemblyai/universal:streaming")
    acknowledged = Decimal(repr(acknowledged_before_switch(responses)))
    assert Decimal("1.6") <= acknowledged < 4
    assert Decimal(attempts[0].cost_usd) == (aai_rate * acknowledged).quantize(QUANTUM)
    assert attempts[0].billing_unknown
    assert 0 < Decimal(attempts[0].possibly_billed_usd) <= (aai_rate * (5 - acknowledged)).quantize(QUANTUM)
    assert Decimal(summary.route_info.cost_usd) == Decimal(attempts[0].cost_usd) + dg_cost


async def test_a_refused_key_stops_the_walk_and_names_the_attempt(cloud):
    stub, aai, dg = cloud
    aai.api_key = "rotated-elsewhere"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stream(stub, pcm(2.5))
    # A 401 is not retryable: another vendor would not fix the key, so none is opened.
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "[rejected] assemblyai-live: HTTP 401" in (caught.value.details() or "")
    assert "api_key_env" in (caught.value.details() or "")
    assert aai.sessions == [] and aai.handshakes == 1
    assert dg.handshakes == 0


async def test_local_only_streams_never_reach_a_cloud_vendor(cloud):
    stub, aai, dg = cloud
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stream(stub, pcm(1.0), common.RoutingOptions(privacy=common.PRIVACY_LOCAL_ONLY))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert aai.handshakes == 0 and dg.handshakes == 0


async def test_streams_are_ranked_at_streaming_rates_not_file_rates(tmp_path, monkeypatch):
    """Deepgram is the cheaper vendor for files and the dearer for streams: a stream goes to AssemblyAI."""
    book = yaml.safe_load(default_price_list_path().read_text(encoding="utf-8"))
    dg_file = per_second("deepgram/nova-3")
    assert per_second("deepgram/nova-3:streaming") > per_second("assemblyai/universal:streaming")
    # AssemblyAI's file rate raised above Deepgram's; its streaming rate stays the list price.
    book["prices"]["assemblyai/universal"]["usd"] = str(dg_file * 2 * 3600)
    path = tmp_path / "pricebook.yaml"
    path.write_text(yaml.safe_dump(book), encoding="utf-8")

    async with cloud_gateway(tmp_path, monkeypatch, path) as (stub, aai, dg):
        explain = pb.ExplainRouteRequest(operation=pb.OPERATION_TRANSCRIBE, audio_duration_s=60.0)
        explained = await stub.ExplainRoute(explain, metadata=(("authorization", f"Bearer {KEY}"),))
        eligible = sorted((c.rank, c.provider) for c in explained.candidates if c.eligible)
        assert eligible == [(1, "deepgram-live"), (2, "assemblyai-live")]

        responses = await stream(stub, pcm(2.0))
    routes = [r.route for r in responses if r.HasField("route")]
    assert [r.provider for r in routes] == ["assemblyai-live"]
    assert len(aai.sessions) == 1 and dg.handshakes == 0
