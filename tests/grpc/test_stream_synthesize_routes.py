"""StreamSynthesize's walk, failover, ledger and cache, with fake engines behind the real gRPC server."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import grpc
import pytest

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import common_pb2 as common
from gateway.core.errors import ProviderUnavailable
from gateway.core.provider_types import Locality, Speech, SynthesizeOptions
from gateway.grpc.server import GatewayServer
from gateway.money.pricing import UnitPrices
from providers.testing import FakeSynthesizer
from tests.conftest import local_settings
from tests.encoded_audio import decode_ffmpeg, decode_pyav, wav_seconds

TEXT = "First sentence here. Second one follows. Third and last."
SENTENCES = ["First sentence here.", "Second one follows.", "Third and last."]


class FlakySynthesizer(FakeSynthesizer):
    """Speaks each sentence as a tone; fails every call from the ``fail_from``-th on (0-based)."""

    def __init__(self, *, fail_from: int | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.fail_from = fail_from
        self.texts: list[str] = []

    async def synthesize(self, text: str, options: SynthesizeOptions, timeout_s: float | None) -> Speech:
        self.texts.append(text)
        if self.fail_from is not None and len(self.texts) > self.fail_from:
            raise ProviderUnavailable(self.name, "the engine went away")
        return await super().synthesize(text, options, timeout_s)


async def _server(
    tmp_path, redis_url, fallback_mid_stream: bool, first: FlakySynthesizer, second: FlakySynthesizer
):
    policies = tmp_path / "policies.yaml"
    policies.write_text(
        "policies:\n  - name: default\n    objective: cost\n"
        f"    fallback_mid_stream: {str(fallback_mid_stream).lower()}\n"
    )
    settings = local_settings()
    settings.redis.url = redis_url
    settings.redis.key_prefix = f"test:{uuid.uuid4().hex}:"
    settings.policies_file = policies
    prices = {
        (first.name, first.model): UnitPrices(per_character=Decimal("0.00001")),
        (second.name, second.model): UnitPrices(per_character=Decimal("0.00002")),
    }
    server = GatewayServer(settings, providers=[first, second], prices=prices)
    port = await server.start()
    await server.wait_ready(10)
    return server, port


@pytest.fixture
async def make(tmp_path, redis_url):
    servers: list[GatewayServer] = []

    async def build(fallback_mid_stream: bool = True, fail_from: int | None = None):
        first = FlakySynthesizer(name="tts-a", voice="voice-a", locality=Locality.CLOUD, fail_from=fail_from)
        second = FlakySynthesizer(name="tts-b", voice="voice-b", locality=Locality.CLOUD)
        second.sample_rate = 24_000  # another voice at another rate: the encoder resamples it in place
        server, port = await _server(tmp_path, redis_url, fallback_mid_stream, first, second)
        servers.append(server)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        return server, channel, first, second

    yield build
    for server in servers:
        await server.stop(5)


async def _chunks(channel, request: pb.SynthesizeRequest) -> list[pb.SynthesizeChunk]:
    from gateway.api.v1 import audio_gateway_pb2_grpc as pb_grpc

    return [c async for c in pb_grpc.AudioGatewayStub(channel).StreamSynthesize(request)]


async def test_a_failure_before_the_first_chunk_falls_back_quietly(make):
    _, channel, _, second = await make(fail_from=0)
    chunks = await _chunks(channel, pb.SynthesizeRequest(text=TEXT, format=pb.AUDIO_FORMAT_FLAC))
    assert not any(c.voice_may_change for c in chunks)
    assert {c.voice for c in chunks[:-1]} == {"voice-b"}
    route = chunks[-1].route
    assert [(a.provider, a.outcome) for a in route.attempts] == [("tts-a", "unavailable"), ("tts-b", "ok")]
    assert second.texts == SENTENCES


async def test_a_failure_mid_stream_goes_on_from_the_interrupted_sentence(make):
    _, channel, first, second = await make(fail_from=1)
    chunks = await _chunks(
        channel,
        pb.SynthesizeRequest(
            text=TEXT,
            format=pb.AUDIO_FORMAT_OGG_OPUS,
            routing=common.RoutingOptions(cache=common.CACHE_MODE_BYPASS),
        ),
    )
    spoken = chunks[:-1]
    assert [TEXT[c.text_start : c.text_end] for c in spoken] == SENTENCES
    assert [c.voice for c in spoken] == ["voice-a", "voice-b", "voice-b"]
    assert [c.voice_may_change for c in spoken] == [False, True, False]
    assert first.texts == SENTENCES[:2] and second.texts == SENTENCES[1:]
    route = chunks[-1].route
    # The ledger's view: what tts-a spoke, its failure, and the rest by tts-b.
    assert [(a.provider, a.outcome) for a in route.attempts] == [
        ("tts-a", "ok"),
        ("tts-a", "unavailable"),
        ("tts-b", "ok"),
    ]
    assert chunks[-1].characters == len(SENTENCES[0]) + len(SENTENCES[1]) + len(SENTENCES[2])
    joined = b"".join(c.audio for c in chunks)
    samples, rate, _ = decode_pyav(joined, pb.AUDIO_FORMAT_OGG_OPUS, chunks[0].sample_rate)
    assert samples.size / rate == pytest.approx(1.5, abs=0.05)  # three 0.5 s tones, one file
    assert wav_seconds(
        decode_ffmpeg(joined, pb.AUDIO_FORMAT_OGG_OPUS, chunks[0].sample_rate)
    ) == pytest.approx(1.5, abs=0.05)


async def test_without_mid_stream_fallback_the_stream_ends_unavailable(make):
    _, channel, _, second = await make(fallback_mid_stream=False, fail_from=1)
    from gateway.api.v1 import audio_gateway_pb2_grpc as pb_grpc

    received: list[pb.SynthesizeChunk] = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for chunk in pb_grpc.AudioGatewayStub(channel).StreamSynthesize(
            pb.SynthesizeRequest(text=TEXT)
        ):
            received.append(chunk)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "tts-a" in caught.value.details()
    assert [TEXT[c.text_start : c.text_end] for c in received] == SENTENCES[:1]
    assert second.texts == []


async def test_a_finished_stream_is_cached_and_a_hit_streams_at_once(make):
    _, channel, first, _ = await make()
    request = pb.SynthesizeRequest(text=TEXT, format=pb.AUDIO_FORMAT_WAV)
    fresh = await _chunks(channel, request)
    assert not fresh[-1].route.cache_hit
    (hit,) = await _chunks(channel, request)
    assert hit.route.cache_hit and hit.route.cost_usd == "0"
    assert hit.route.saved_usd == fresh[-1].route.cost_usd != "0"
    assert (hit.text_start, hit.text_end) == (0, len(TEXT))
    assert len(first.texts) == 3  # the hit called nobody
    # Cached as the whole file: the streamed WAV's open lengths are filled in, and Synthesize reads it.
    assert hit.audio[44:] == b"".join(c.audio for c in fresh)[44:]
    assert int.from_bytes(hit.audio[40:44], "little") == len(hit.audio) - 44
    from gateway.api.v1 import audio_gateway_pb2_grpc as pb_grpc

    unary = await pb_grpc.AudioGatewayStub(channel).Synthesize(request)
    assert unary.route.cache_hit and unary.audio == hit.audio


async def test_python_clients_stream_the_same_chunks(make):
    from gateway.client import AsyncGatewayClient, GatewayClient

    server, _, _, _ = await make()
    target = f"127.0.0.1:{server.port}"
    bypass = common.RoutingOptions(cache=common.CACHE_MODE_BYPASS)
    async with AsyncGatewayClient(target) as client:
        chunks = [c async for c in client.stream_synthesize(TEXT, format="mulaw", routing=bypass)]
    assert [TEXT[c.text_start : c.text_end] for c in chunks[:-1]] == SENTENCES
    assert chunks[-1].route.provider == "tts-a" and chunks[-1].sample_rate == 8000

    def blocking() -> list[pb.SynthesizeChunk]:
        with GatewayClient(target) as sync_client:
            return list(sync_client.stream_synthesize(TEXT, format="mulaw", routing=bypass))

    same = await asyncio.to_thread(blocking)
    assert b"".join(c.audio for c in same) == b"".join(c.audio for c in chunks)
