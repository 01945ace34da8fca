"""StreamSynthesize through OpenAI's speech endpoint, read as it streams (the real SDK's
``with_streaming_response``) from the OpenAI fake, which sends the body in chunks and can cut it off.

The second candidate is an in-process engine at a higher price, so the cost objective tries OpenAI first
and a failover is visible in the voice, the route and the ledger.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
import yaml

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc as pb_grpc
from gateway.api.v1 import common_pb2 as common
from gateway.api.v1 import cost_reports_pb2 as reports_pb
from gateway.api.v1 import cost_reports_pb2_grpc as reports_grpc
from gateway.core.provider_types import Locality
from gateway.grpc.server import GatewayServer
from gateway.money.pricing import UnitPrices
from policies.loader import hash_key
from providers.config import load_providers_file
from providers.registry import build_remote_providers
from providers.testing import FakeSynthesizer
from tests.conftest import local_settings
from tests.encoded_audio import decode_pyav
from tests.fakes.openai_server import SPEECH_RATE, FakeOpenAI

KEY_ENV = "GW_TEST_OPENAI_STREAM_KEY"
API_KEY = "acme-stream-key"
SENTENCES = ["Streams start early.", "The second sentence follows on.", "A third ends it."]
TEXT = " ".join(SENTENCES)
# 0.05 s of speech per character at 24 kHz s16le: a 20-character sentence is 1 s, 48 000 bytes.
CHUNK_BYTES = 9_600  # 0.2 s of audio per chunk
CHUNK_DELAY_S = 0.05


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(autouse=True)
def _streamed(fake: FakeOpenAI) -> None:
    fake.reset()
    fake.speech_chunk_bytes = CHUNK_BYTES
    fake.speech_chunk_delay_s = CHUNK_DELAY_S


@pytest.fixture
async def make(fake: FakeOpenAI, tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch):
    servers: list[GatewayServer] = []

    async def build(fallback_mid_stream: bool = True) -> tuple[grpc.aio.Channel, FakeSynthesizer]:
        providers_file = tmp_path / "providers.yaml"
        providers_file.write_text(
            yaml.safe_dump(
                {
                    "providers": [
                        {
                            "name": "openai-tts",
                            "kind": "openai",
                            "operation": "synthesize",
                            "model": "tts-1",
                            "base_url": fake.base_url,
                            "api_key_env": KEY_ENV,
                        }
                    ]
                }
            )
        )
        policies = tmp_path / "policies.yaml"
        policies.write_text(
            "policies:\n  - name: default\n    objective: cost\n"
            f"    fallback_mid_stream: {str(fallback_mid_stream).lower()}\n"
            f"tenants:\n  - {{name: acme, key_sha256: {hash_key(API_KEY)}, default_policy: default}}\n"
        )
        monkeypatch.setenv(KEY_ENV, "sk-stream-test")
        (openai_tts,) = build_remote_providers(load_providers_file(providers_file))
        backup = FakeSynthesizer(name="backup-tts", voice="alloy", locality=Locality.CLOUD, seconds=0.5)
        settings = local_settings()
        settings.redis.url = redis_url
        settings.redis.key_prefix = f"test:{uuid.uuid4().hex}:"
        settings.policies_file = policies
        settings.ledger.flush_interval_s = 0.05
        prices = {
            ("openai-tts", "tts-1"): UnitPrices(per_character=Decimal("0.000015")),
            ("backup-tts", backup.model): UnitPrices(per_character=Decimal("0.0001")),
        }
        server = GatewayServer(settings, providers=[openai_tts, backup], prices=prices)
        await server.start()
        await server.wait_ready(10)
        servers.append(server)
        return grpc.aio.insecure_channel(f"127.0.0.1:{server.port}"), backup

    yield build
    for server in servers:
        await server.stop(1)


def _auth(request_id: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {API_KEY}"), ("x-request-id", request_id))


async def _stream(
    channel: grpc.aio.Channel, request: pb.SynthesizeRequest, request_id: str
) -> AsyncIterator[tuple[float, pb.SynthesizeChunk]]:
    async for chunk in pb_grpc.AudioGatewayStub(channel).StreamSynthesize(
        request, metadata=_auth(request_id)
    ):
        yield time.monotonic(), chunk


def _request(text: str, fmt: int = pb.AUDIO_FORMAT_WAV) -> pb.SynthesizeRequest:
    return pb.SynthesizeRequest(
        text=text, format=fmt, routing=common.RoutingOptions(cache=common.CACHE_MODE_BYPASS)
    )


async def _ledger(channel: grpc.aio.Channel, request_id: str, records: int) -> list[reports_pb.LedgerRecord]:
    stub = reports_grpc.CostReportsStub(channel)
    found: list[reports_pb.LedgerRecord] = []
    for _ in range(100):
        reply = await stub.FindRecords(
            reports_pb.FindRecordsRequest(request_id=request_id), metadata=_auth(request_id)[:1]
        )
        found = list(reply.records)
        if len(found) >= records:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"the ledger holds {len(found)} records under {request_id}, not {records}")


async def test_the_first_audio_leaves_before_openai_has_finished_sending(make, fake):
    channel, backup = await make()
    sentence = SENTENCES[1]  # 31 characters: 1.55 s of speech, 8 chunks 50 ms apart
    received = [item async for item in _stream(channel, _request(sentence), f"first-{uuid.uuid4().hex[:8]}")]
    (reply,) = fake.speech_replies
    assert reply.sent_at is not None and reply.chunks is not None and len(reply.chunks) == 8
    first_at = received[0][0]
    # The caller had audio while the vendor was still speaking: at least ~0.3 s before its last byte.
    assert first_at < reply.sent_at - 3 * CHUNK_DELAY_S
    chunks = [chunk for _, chunk in received]
    spoken = chunks[:-1]
    assert len(spoken) >= 4  # within one sentence, piece by piece
    assert {(c.text_start, c.text_end) for c in spoken} == {(0, len(sentence))}
    assert {c.voice for c in spoken} == {"alloy"}
    assert backup.calls == 0
    # The joined WAV is the whole utterance, at OpenAI's 24 kHz, sample for sample.
    samples, rate, _ = decode_pyav(b"".join(c.audio for c in chunks), pb.AUDIO_FORMAT_WAV, SPEECH_RATE)
    assert rate == SPEECH_RATE
    assert samples.tolist() == fake.speech_samples(sentence).tolist()
    route = chunks[-1].route
    assert [(a.provider, a.outcome) for a in route.attempts] == [("openai-tts", "ok")]
    assert chunks[-1].characters == len(sentence)
    assert Decimal(route.cost_usd) == Decimal("0.000015") * len(sentence)
    # It asked for raw PCM, the format that needs no header before its first sample.
    assert fake.requests[-1].json()["response_format"] == "pcm"


async def test_a_drop_mid_stream_goes_on_with_the_next_candidate_from_the_sentence(make, fake):
    channel, backup = await make()
    fake.drop_speech(after_chunks=2, skip=1)  # the second sentence breaks off after 0.4 s of audio
    request_id = f"drop-{uuid.uuid4().hex[:8]}"
    chunks = [c async for _, c in _stream(channel, _request(TEXT, pb.AUDIO_FORMAT_OGG_OPUS), request_id)]
    spoken = chunks[:-1]
    spans = [TEXT[c.text_start : c.text_end] for c in spoken]
    # OpenAI spoke the first sentence and part of the second; the backup took over from the second.
    switch = next(i for i, c in enumerate(spoken) if c.voice_may_change)
    assert [c.voice_may_change for c in spoken].count(True) == 1
    assert set(spans[:switch]) == set(SENTENCES[:2]) and spans[switch - 1] == SENTENCES[1]
    assert spans[switch:] == SENTENCES[1:]
    assert backup.calls == 2
    route = chunks[-1].route
    outcomes = [(a.provider, a.outcome) for a in route.attempts]
    assert outcomes == [("openai-tts", "ok"), ("openai-tts", "unavailable"), ("backup-tts", "ok")]
    assert "broke off" in route.attempts[1].error
    # Billed: OpenAI's first sentence (the interrupted one is not whole), the backup's two.
    assert chunks[-1].characters == len(SENTENCES[0]) + len(SENTENCES[1]) + len(SENTENCES[2])
    samples, rate, _ = decode_pyav(b"".join(c.audio for c in chunks), pb.AUDIO_FORMAT_OGG_OPUS, 24_000)
    # 1.0 s (sentence 1) + 0.4 s cut short + two 0.5 s backup tones, as one playable file.
    assert samples.size / rate == pytest.approx(2.4, abs=0.06)

    records = await _ledger(channel, request_id, records=4)
    attempts = sorted((r for r in records if r.kind == "attempt"), key=lambda r: r.record_id)
    assert [(r.provider, r.outcome) for r in attempts] == outcomes
    (request,) = [r for r in records if r.kind == "request"]
    assert Decimal(request.cost_usd) == Decimal(route.cost_usd) > 0


async def test_without_mid_stream_fallback_a_drop_ends_the_stream_unavailable(make, fake):
    channel, backup = await make(fallback_mid_stream=False)
    fake.drop_speech(after_chunks=2)
    request_id = f"nofb-{uuid.uuid4().hex[:8]}"
    received: list[pb.SynthesizeChunk] = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _, chunk in _stream(channel, _request(TEXT), request_id):
            received.append(chunk)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "openai-tts" in caught.value.details() and "broke off" in caught.value.details()
    assert received and {c.text_start for c in received} == {0}  # part of the first sentence went out
    assert backup.calls == 0
    # Part of the first sentence went out and none whole: one record, the failure, possibly billed for
    # the sentence OpenAI was asked to speak, and nothing billed for certain.
    records = await _ledger(channel, request_id, records=2)
    attempts = sorted((r for r in records if r.kind == "attempt"), key=lambda r: r.record_id)
    assert [(r.provider, r.outcome) for r in attempts] == [("openai-tts", "unavailable")]
    assert attempts[0].billing_unknown and attempts[0].cost_usd == "0"
    assert Decimal(attempts[0].possibly_billed_usd) == Decimal("0.000015") * len(SENTENCES[0])
    (request,) = [r for r in records if r.kind == "request"]
    assert Decimal(request.cost_usd) == 0


async def test_a_drop_before_any_audio_falls_back_quietly(make, fake):
    channel, backup = await make(fallback_mid_stream=False)
    fake.drop_speech(after_chunks=0)
    chunks = [c async for _, c in _stream(channel, _request(SENTENCES[0]), f"quiet-{uuid.uuid4().hex[:8]}")]
    assert not any(c.voice_may_change for c in chunks)
    assert [(a.provider, a.outcome) for a in chunks[-1].route.attempts] == [
        ("openai-tts", "unavailable"),
        ("backup-tts", "ok"),
    ]
    assert backup.calls == 1
