"""StreamSynthesize through Deepgram Aura, read as it streams (the real deepgram SDK) from the Deepgram
fake, which sends the body in chunks and can cut it off; an in-process engine is the dearer fallback."""

from __future__ import annotations

import asyncio
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
from gateway.ledger.store import Ledger, LedgerRecord
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
def fallback_mid_stream() -> bool:
    return True


@pytest.fixture
async def gateway(
    fake: FakeDeepgram,
    tmp_path: Path,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    fallback_mid_stream: bool,
):
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
    policies.write_text(
        "policies:\n  - name: default\n    objective: cost\n"
        f"    fallback_mid_stream: {str(fallback_mid_stream).lower()}\n"
    )
    settings = local_settings()
    settings.ledger.flush_interval_s = 0.05
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
        yield pb_grpc.AudioGatewayStub(channel), backup, server.app.ledger
    await server.stop(1)


def _request(text: str, fmt: int) -> pb.SynthesizeRequest:
    return pb.SynthesizeRequest(
        text=text, format=fmt, routing=common.RoutingOptions(cache=common.CACHE_MODE_BYPASS)
    )


async def test_aura_audio_leaves_before_deepgram_has_finished_sending(gateway, fake):
    stub, backup, _ = gateway
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
    stub, backup, _ = gateway
    fake.drop_speak(after_chunks=2)
    chunks = [c async for c in stub.StreamSynthesize(_request(TEXT, pb.AUDIO_FORMAT_MP3))]
    spoken = chunks[:-1]
    assert [c.voice_may_change for c in spoken].count(True) == 1
    switch = next(i for i, c in enumerate(spoken) if c.voice_may_change)
    assert switch == 2  # two pieces of Aura's first sentence went out before it broke off
    assert [TEXT[c.text_start : c.text_end] for c in spoken[switch:]] == SENTENCES
    route = chunks[-1].route
    # Aura spoke no sentence whole: its one record is the failure, with the 0.4 s that went out.
    attempts = [(a.provider, a.outcome) for a in route.attempts]
    assert attempts == [("deepgram-aura", "unavailable"), ("backup-tts", "ok")]
    assert route.attempts[0].billing_unknown
    assert Decimal(route.attempts[0].possibly_billed_usd) == Decimal("0.00003") * len(SENTENCES[0])
    assert chunks[-1].characters == len(TEXT) - 1  # the backup spoke both sentences, space left out
    assert backup.calls == 2
    samples, rate, _ = decode_pyav(b"".join(c.audio for c in chunks), pb.AUDIO_FORMAT_MP3, 24_000)
    assert samples.size / rate == pytest.approx(0.4 + 1.0, abs=0.08)  # 0.4 s cut short, two 0.5 s tones


async def _records(ledger: Ledger, request_id: str, count: int) -> list[LedgerRecord]:
    for _ in range(100):
        found = await ledger.find("anonymous", request_id)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"the ledger holds {len(found)} records under {request_id}, not {count}")


@pytest.mark.parametrize("fallback_mid_stream", [False])
@pytest.mark.parametrize(
    ("after_chunks", "whole"),
    [(1, 0), (2, 1)],  # a piece into the first sentence; two into the second, the first spoken whole
    ids=["first-sentence", "second-sentence"],
)
async def test_without_mid_stream_fallback_an_aura_drop_ends_unavailable_and_is_recorded(
    gateway, fake, after_chunks, whole
):
    stub, backup, ledger = gateway
    fake.drop_speak(after_chunks=after_chunks, skip=whole)
    request_id = f"dg-nofb-{uuid.uuid4().hex[:8]}"
    received: list[pb.SynthesizeChunk] = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for chunk in stub.StreamSynthesize(
            _request(TEXT, pb.AUDIO_FORMAT_WAV), metadata=(("x-request-id", request_id),)
        ):
            received.append(chunk)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "deepgram-aura" in caught.value.details()
    assert received  # audio had gone out: that is what forbids the fallback
    assert TEXT[received[-1].text_start : received[-1].text_end] == SENTENCES[whole]
    assert backup.calls == 0

    records = await _records(ledger, request_id, count=2 + whole)
    attempts = sorted((r for r in records if r.kind == "attempt"), key=lambda r: r.record_id)
    (request,) = [r for r in records if r.kind == "request"]
    price = Decimal("0.00003")
    if whole:
        ok, failed = attempts
        # The sentence spoken whole is billed at its characters; nothing of the interrupted one is.
        assert (ok.outcome, ok.units.characters) == ("ok", len(SENTENCES[0]))
        assert ok.cost_usd == price * len(SENTENCES[0])
        assert ok.units.audio_seconds == pytest.approx(len(SENTENCES[0]) * 0.05, abs=0.001)
    else:
        (failed,) = attempts
    assert (failed.provider, failed.outcome) == ("deepgram-aura", "unavailable")
    assert failed.units.characters == 0 and failed.cost_usd == 0
    # What went out of the interrupted sentence, in whole 0.2 s chunks (the tail is held back).
    assert failed.units.audio_seconds == pytest.approx(0.2 * after_chunks, abs=0.011)
    assert failed.billing_unknown and failed.possibly_billed_usd == price * len(SENTENCES[whole])
    assert request.outcome == "all_attempts_failed"
    assert request.cost_usd == price * len(SENTENCES[0]) * whole
    assert request.units.characters == len(SENTENCES[0]) * whole
    assert request.possibly_billed_usd == failed.possibly_billed_usd


async def test_a_caller_who_leaves_mid_sentence_leaves_the_sentence_possibly_billed(gateway, fake):
    stub, backup, ledger = gateway
    request_id = f"dg-left-{uuid.uuid4().hex[:8]}"
    call = stub.StreamSynthesize(
        _request(TEXT, pb.AUDIO_FORMAT_WAV), metadata=(("x-request-id", request_id),)
    )
    async for chunk in call:
        if chunk.text_start > 0:  # the first piece of the second sentence: leave
            call.cancel()
            break
    records = await _records(ledger, request_id, count=3)
    attempts = sorted((r for r in records if r.kind == "attempt"), key=lambda r: r.record_id)
    assert [(r.outcome, r.units.characters) for r in attempts] == [
        ("ok", len(SENTENCES[0])),
        ("cancelled", 0),
    ]
    price = Decimal("0.00003")
    assert attempts[0].cost_usd == price * len(SENTENCES[0])
    left = attempts[1]
    assert left.billing_unknown and left.cost_usd == 0
    assert left.possibly_billed_usd == price * len(SENTENCES[1])  # the sentence asked for, not the request
    assert left.units.audio_seconds > 0
    assert backup.calls == 0
