"""StreamSynthesize through Deepgram Aura, read as it streams (the real deepgram SDK) from the Deepgram
fake, which sends the body in chunks and can cut it off; an in-process engine is the dearer fallback."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
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
from providers.config import load_providers_file
from providers.registry import build_remote_providers
from providers.testing import FakeSynthesizer
from tests.conftest import local_settings
from tests.encoded_audio import decode_pyav
from tests.fakes.deepgram_server import FakeDeepgram

KEY_ENV = "GW_TEST_DEEPGRAM_STREAM_KEY"
KEY = "dg-stream-key"
VOICE = "aura-2-thalia-en"
SENTENCES = ["Aura streams too.", "Its second sentence is here."]
TEXT = " ".join(SENTENCES)
CHUNK_BYTES = 9_600  # 0.2 s at 24 kHz
CHUNK_DELAY_S = 0.05


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeDeepgram]:
    with FakeDeepgram(api_key=KEY) as server:
        yield server


@pytest.fixture
async def gateway(fake: FakeDeepgram, tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch):
    fake.reset()
    fake.speak_replies.clear()
    fake.speak_chunk_bytes = CHUNK_BYTES
    fake.speak_chunk_delay_s = CHUNK_DELAY_S
    providers_file = tmp_path / "providers.yaml"
    providers_file.write_text(
        "providers:\n  - {name: deepgram-aura, kind: deepgram, operation: synthesize, model: aura-2,\n"
        f"     default_voice: {VOICE}, api_key_env: {KEY_ENV}, base_url: '{fake.url}'}}\n"
    )
    monkeypatch.setenv(KEY_ENV, KEY)
    (aura,) = build_remote_providers(load_providers_file(providers_file))
    backup = FakeSynthesizer(name="backup-tts", voice=VOICE, locality=Locality.CLOUD)
    policies = tmp_path / "policies.yaml"
    policies.write_text("policies:\n  - name: default\n    objective: cost\n")
    settings = local_settings()
    settings.redis.url = redis_url
    settings.redis.key_prefix = f"test:{uuid.uuid4().hex}:"
    settings.policies_file = policies
    prices = {
        ("deepgram-aura", "aura-2"): UnitPrices(per_character=Decimal("0.00003")),
        ("backup-tts", backup.model): UnitPrices(per_character=Decimal("0.0001")),
    }
    server = GatewayServer(settings, providers=[aura, backup], prices=prices)
    await server.start()
    await server.wait_ready(10)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield pb_grpc.AudioGatewayStub(channel), backup
    await server.stop(1)


def _request(text: str, fmt: int) -> pb.SynthesizeRequest:
    return pb.SynthesizeRequest(
        text=text, format=fmt, routing=common.RoutingOptions(cache=common.CACHE_MODE_BYPASS)
    )


async def test_aura_audio_leaves_before_deepgram_has_finished_sending(gateway, fake):
    stub, backup = gateway
    sentence = SENTENCES[1]  # 28 characters: 1.4 s, 7 chunks
    received = [
        (time.monotonic(), c) async for c in stub.StreamSynthesize(_request(sentence, pb.AUDIO_FORMAT_WAV))
    ]
    (reply,) = fake.speak_replies
    assert reply.sent_at is not None and reply.chunks is not None and len(reply.chunks) == 7
    assert received[0][0] < reply.sent_at - 3 * CHUNK_DELAY_S
    chunks = [c for _, c in received]
    assert len(chunks) - 1 >= 4
    (speak,) = fake.requests_to("/v1/speak")
    assert speak.query["container"] == ["none"] and speak.query["model"] == [VOICE]
    samples, rate, _ = decode_pyav(b"".join(c.audio for c in chunks), pb.AUDIO_FORMAT_WAV, 24_000)
    assert rate == 24_000
    assert samples.tolist() == fake.tone(len(sentence) * 0.05, 24_000).tolist()
    assert [(a.provider, a.outcome) for a in chunks[-1].route.attempts] == [("deepgram-aura", "ok")]
    assert chunks[-1].characters == len(sentence)
    assert backup.calls == 0


async def test_an_aura_drop_mid_stream_goes_on_with_the_next_candidate(gateway, fake):
    stub, backup = gateway
    fake.drop_speak(after_chunks=2)
    chunks = [c async for c in stub.StreamSynthesize(_request(TEXT, pb.AUDIO_FORMAT_MP3))]
    spoken = chunks[:-1]
    assert [c.voice_may_change for c in spoken].count(True) == 1
    switch = next(i for i, c in enumerate(spoken) if c.voice_may_change)
    assert switch == 2  # two pieces of Aura's first sentence went out before it broke off
    assert [TEXT[c.text_start : c.text_end] for c in spoken[switch:]] == SENTENCES
    attempts = [(a.provider, a.outcome) for a in chunks[-1].route.attempts]
    assert attempts == [("deepgram-aura", "ok"), ("deepgram-aura", "unavailable"), ("backup-tts", "ok")]
    assert backup.calls == 2
    samples, rate, _ = decode_pyav(b"".join(c.audio for c in chunks), pb.AUDIO_FORMAT_MP3, 24_000)
    assert samples.size / rate == pytest.approx(0.4 + 1.0, abs=0.08)  # 0.4 s cut short, two 0.5 s tones
