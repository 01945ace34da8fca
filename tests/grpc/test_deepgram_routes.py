"""Deepgram through the whole gateway: providers file, routing pin, price book, gRPC response."""

from __future__ import annotations

import io
import wave
from collections.abc import AsyncIterator
from decimal import Decimal

import grpc
import pytest

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc
from gateway.api.v1 import common_pb2 as common
from gateway.grpc.server import GatewayServer
from gateway.money.pricing import PriceList, default_price_list_path
from tests.audio_files import encode, tone
from tests.conftest import local_settings
from tests.fakes.deepgram_server import SECONDS_PER_CHARACTER, FakeDeepgram

KEY_ENV = "DEEPGRAM_ROUTES_TEST_KEY"
KEY = "dg-routes-key-456"
QUANTUM = Decimal("0.000000001")

PROVIDERS = """\
providers:
  - name: deepgram-nova
    kind: deepgram
    operation: transcribe
    model: nova-3
    api_key_env: {env}
    base_url: {url}
    options: {{diarize: true}}
  - name: deepgram-aura
    kind: deepgram
    operation: synthesize
    model: aura-2
    default_voice: aura-2-thalia-en
    api_key_env: {env}
    base_url: {url}
"""


@pytest.fixture
async def gateway(
    tmp_path, monkeypatch
) -> AsyncIterator[tuple[audio_gateway_pb2_grpc.AudioGatewayStub, FakeDeepgram]]:
    with FakeDeepgram(api_key=KEY) as fake:
        path = tmp_path / "providers.yaml"
        path.write_text(PROVIDERS.format(env=KEY_ENV, url=fake.url))
        monkeypatch.setenv(KEY_ENV, KEY)
        settings = local_settings()
        settings.whisper.enabled = settings.piper.enabled = settings.llama.enabled = False
        settings.providers_file = path
        server = GatewayServer(settings)
        await server.start()
        await server.wait_ready(timeout_s=30)
        assert not server.app.catalogue.failures, server.app.catalogue.failures
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                yield audio_gateway_pb2_grpc.AudioGatewayStub(channel), fake
        finally:
            await server.stop(grace_s=1)


def unit_price(key: str) -> tuple[Decimal, Decimal]:
    prices = PriceList.load(default_price_list_path()).prices[key]
    return prices.per_audio_second, prices.per_character


async def test_transcribe_through_deepgram_is_priced_per_decoded_second(gateway):
    stub, fake = gateway
    fake.reported_duration_s = 60.0  # the vendor's figure must not be what is billed
    clip = encode(tone(2.5), 16_000, "wav")
    response = await stub.Transcribe(
        pb.TranscribeRequest(
            audio=common.Audio(content=clip, mime_type="audio/wav"),
            routing=common.RoutingOptions(provider="deepgram-nova"),
        ),
        timeout=30,
    )
    [sent] = fake.requests_to("/v1/listen")
    assert sent.body == clip
    assert sent.headers["authorization"] == f"Token {KEY}"
    assert sent.query["model"] == ["nova-3"]
    assert sent.query["diarize"] == ["true"]

    assert response.text == "Hello there. Hi! How are you?"
    assert [(s.speaker, s.text) for s in response.segments] == [
        ("speaker_0", "Hello there."),
        ("speaker_1", "Hi! How are you?"),
    ]
    assert [w.text for w in response.words] == ["Hello", "there.", "Hi!", "How", "are", "you?"]
    assert response.duration_s == pytest.approx(2.5)

    route = response.route
    assert (route.provider, route.model, route.locality) == ("deepgram-nova", "nova-3", common.LOCALITY_CLOUD)
    per_second, _ = unit_price("deepgram/nova-3")
    assert per_second == Decimal("0.0043") / 60
    expected = (per_second * Decimal(repr(response.duration_s))).quantize(QUANTUM)
    assert Decimal(route.cost_usd) == expected
    assert expected > 0
    assert [(a.provider, a.outcome) for a in route.attempts] == [("deepgram-nova", "ok")]


async def test_synthesize_through_deepgram_is_priced_per_character(gateway):
    stub, fake = gateway
    text = "The gateway speaks through Aura."
    response = await stub.Synthesize(
        pb.SynthesizeRequest(text=text, routing=common.RoutingOptions(provider="deepgram-aura")),
        timeout=30,
    )
    [sent] = fake.requests_to("/v1/speak")
    assert sent.json() == {"text": text}
    assert sent.query["model"] == ["aura-2-thalia-en"]
    assert sent.headers["authorization"] == f"Token {KEY}"

    assert response.mime_type == "audio/wav"
    assert response.voice == "aura-2-thalia-en"
    with wave.open(io.BytesIO(response.audio)) as wav:
        assert wav.getframerate() == response.sample_rate == 24_000
        frames = wav.getnframes()
    assert frames == fake.tone(len(text) * SECONDS_PER_CHARACTER, 24_000).size
    assert response.duration_s == pytest.approx(frames / 24_000)

    route = response.route
    assert (route.provider, route.model, route.locality) == ("deepgram-aura", "aura-2", common.LOCALITY_CLOUD)
    _, per_character = unit_price("deepgram/aura-2")
    assert per_character == Decimal("0.030") / 1000
    assert Decimal(route.cost_usd) == (per_character * len(text)).quantize(QUANTUM)
