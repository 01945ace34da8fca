"""Languages through the gateway: the local ladder with tiny.en (the default) and multilingual Whisper base.

Spanish speech made with espeak-ng goes to base (tiny.en cannot do Spanish), over gRPC and over the
OpenAI-compatible translations endpoint; English still goes to tiny.en. (Spanish, since base hears espeak-ng's
Spanish voice well: its French voice was detected with probability 0.35-0.5 and translated into invented
sentences.) One gateway, both models loaded
once, short clips.
"""

from __future__ import annotations

import functools
import re
import tempfile
import unicodedata
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import jiwer
import openai
import pytest

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc as pb_grpc
from gateway.api.v1 import common_pb2 as common
from gateway.core.audio import encode_wav
from gateway.grpc.server import GatewayServer
from gateway.http.server import HttpDoor
from gateway.settings import WhisperModelSettings
from tests import speech
from tests.conftest import local_settings, serving_with_http

pytestmark = [pytest.mark.engines, pytest.mark.timeout(240)]

SPANISH = "Buenos días. Hoy hace buen tiempo y vamos a la playa con mis amigos."
# Words an English translation of SPANISH holds, whatever its phrasing (base said "Good evening. Today is the
# good time to go to the beach with my friends.").
ENGLISH_WORDS = {"good", "morning", "today", "weather", "beach", "friends"}
# base transcribed SPANISH without an error; espeak-ng's voice is robotic, so the bound leaves room.
SPANISH_WER = 0.25
BASE = "faster-whisper-base"
BYPASS = common.RoutingOptions(cache=common.CACHE_MODE_BYPASS)


def spanish_wer(hypothesis: str) -> float:
    """Word error rate against SPANISH, accents kept (the English normaliser would strip them)."""

    def words(text: str) -> str:
        return " ".join(re.sub(r"[^\w']+", " ", unicodedata.normalize("NFC", text).lower()).split())

    return jiwer.wer(words(SPANISH), words(hypothesis))


@functools.cache
def spanish_wav() -> bytes:
    return speech.espeak_wav(SPANISH, voice="es")


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[GatewayServer]:
    settings = local_settings()
    settings.piper.enabled = settings.llama.enabled = False
    settings.whisper.extra_models = [WhisperModelSettings(model="base")]
    settings.whisper.model_cache_dir = Path(tempfile.mkdtemp(prefix="gw-models-"))
    async with serving_with_http(settings) as gateway:
        yield gateway


@pytest.fixture(scope="module")
async def stub(server: GatewayServer) -> AsyncIterator[pb_grpc.AudioGatewayStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield pb_grpc.AudioGatewayStub(channel)


def _request(wav: bytes, **fields: object) -> pb.TranscribeRequest:
    fields.setdefault("routing", BYPASS)
    return pb.TranscribeRequest(audio=common.Audio(content=wav, mime_type="audio/wav"), **fields)  # type: ignore[arg-type]


def test_each_rung_accounts_for_its_memory(server):
    def resident(provider: str) -> float:
        value = server.app.metrics.registry.get_sample_value(
            "audio_gateway_engine_memory_bytes", {"provider": provider}
        )
        assert value is not None, provider
        return value

    # Measured at load: about 90 MB for tiny.en and 195 MB for base (int8; its model.bin alone is 145 MB).
    assert 20e6 < resident("faster-whisper") < 1e9
    assert 100e6 < resident(BASE) < 1e9


async def test_spanish_goes_to_the_multilingual_model(stub):
    reply = await stub.Transcribe(_request(spanish_wav(), language="es"), timeout=120)

    assert reply.route.provider == BASE
    assert reply.route.model == "whisper-base"
    assert reply.language == "es"
    assert reply.language_probability == 1.0  # given, not guessed
    assert spanish_wer(reply.text) <= SPANISH_WER, reply.text


async def test_the_language_is_detected_with_its_probability(stub):
    # The quality objective climbs the ladder; the default (cost) keeps English-looking requests on tiny.en.
    routing = common.RoutingOptions(cache=common.CACHE_MODE_BYPASS, objective=common.OBJECTIVE_QUALITY)
    reply = await stub.Transcribe(_request(spanish_wav(), routing=routing), timeout=120)

    assert reply.route.provider == BASE
    assert reply.language == "es"
    assert 0.7 < reply.language_probability <= 1.0  # 0.93 measured
    assert spanish_wer(reply.text) <= SPANISH_WER, reply.text


async def test_translate_returns_english(stub):
    reply = await stub.Transcribe(_request(spanish_wav(), translate=True), timeout=120)

    assert reply.route.provider == BASE
    assert reply.language == "en"
    words = set(speech.normalize(reply.text).split())
    assert len(words & ENGLISH_WORDS) >= 3, reply.text


async def test_english_stays_on_tiny_en(stub):
    # A real recording: on a formant voice, tiny.en's int8 output differs by CPU (one test sentence read
    # "quick round-fark" on one machine and "quick brown fox" on another).
    clip = speech.real_clip("librivox_sense_sensibility_0870")
    reply = await stub.Transcribe(_request(encode_wav(clip.samples, clip.rate)), timeout=60)

    assert reply.route.provider == "faster-whisper"
    assert reply.route.model == "whisper-tiny.en"
    wrong, _, words = speech.errors(clip.reference, reply.text)
    assert wrong / words <= 0.2, reply.text
    # An English-only model assumes English: it claims no detection.
    assert (reply.language, reply.language_probability) == ("en", 0.0)


async def test_explain_route_says_why_tiny_en_is_passed_over(stub):
    for request, reason in [
        (pb.ExplainRouteRequest(language="es"), "does not support language 'es' (supports en)"),
        (pb.ExplainRouteRequest(translate=True), "lacks feature(s) translate"),
    ]:
        request.operation = pb.OPERATION_TRANSCRIBE
        request.audio_duration_s = 5.0
        reply = await stub.ExplainRoute(request)
        candidates = {c.provider: c for c in reply.candidates}
        assert candidates["faster-whisper"].rejected_reason == reason
        assert not candidates["faster-whisper"].eligible
        assert candidates[BASE].eligible and candidates[BASE].rank == 1


async def test_tiny_en_pinned_refuses_spanish(stub):
    routing = common.RoutingOptions(provider="faster-whisper", cache=common.CACHE_MODE_BYPASS)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Transcribe(_request(spanish_wav(), language="es", routing=routing), timeout=60)

    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "faster-whisper: does not support language 'es' (supports en)" in caught.value.details()


async def test_openai_translations_reach_the_local_model(server):
    door = server.doors[0]
    assert isinstance(door, HttpDoor)
    client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{door.port}/v1", api_key="unused", max_retries=0)
    async with client:
        result = await client.audio.translations.with_raw_response.create(
            model="whisper-1",
            file=("spanish.wav", spanish_wav(), "audio/wav"),
            response_format="verbose_json",
        )
    body = result.parse()

    assert result.headers["x-gateway-provider"] == BASE
    assert body.language == "english"
    assert len(set(speech.normalize(body.text).split()) & ENGLISH_WORDS) >= 3, body.text


async def test_the_quality_objective_streams_on_the_larger_model(stub):
    # Streams rank as whole files do: a caller who asks for quality gets base, whose per-utterance finals
    # hold "ill disposed" (tiny.en's, without the sentence before, write "old sposed").
    clip = speech.real_clip("long_librivox_sense_sensibility_x5")
    pcm = clip.pcm() + b"\0\0" * clip.rate  # a second of silence ends the last utterance
    step = round(0.1 * clip.rate) * 2
    config = pb.StreamTranscribeConfig(
        encoding=pb.STREAM_ENCODING_LINEAR16,
        sample_rate_hertz=clip.rate,
        language="en",
        routing=common.RoutingOptions(objective=common.OBJECTIVE_QUALITY),
    )

    async def requests() -> AsyncIterator[pb.StreamTranscribeRequest]:
        yield pb.StreamTranscribeRequest(config=config)
        for offset in range(0, len(pcm), step):
            yield pb.StreamTranscribeRequest(audio=pcm[offset : offset + step])

    responses = [r async for r in stub.StreamTranscribe(requests(), timeout=180)]
    finals = [r.result for r in responses if r.HasField("result") and r.result.is_final]
    streamed = " ".join(f.alternatives[0].text for f in finals)

    assert responses[0].route.provider == BASE
    assert responses[0].route.model == "whisper-base"
    assert [a.provider for a in responses[-1].route_info.attempts] == [BASE]
    assert "ill disposed" in speech.english(streamed), streamed
    assert speech.wer([clip.reference], [streamed]) <= 0.1, streamed
