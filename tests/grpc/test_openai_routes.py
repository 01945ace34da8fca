"""The gateway over gRPC with OpenAI-format providers from a providers file, pointed at the wire fake."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path

import grpc
import numpy as np
import pytest
import yaml

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc
from gateway.api.v1 import common_pb2 as common
from gateway.core.audio import decode_pcm16
from gateway.grpc.server import GatewayServer
from gateway.money.pricing import PriceList, UnitPrices, default_price_list_path
from tests.audio_files import encode, tone
from tests.conftest import local_settings
from tests.fakes.openai_server import FakeOpenAI

# litellm's own type definitions warn when it first builds its response models.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Items? .* (is|are) using the `ReadOnly` qualifier:UserWarning"
)

KEY_ENV = "AUDIO_GATEWAY_TEST_OPENAI_KEY"
KEY = "sk-grpc-test-31337"
QUANTUM = Decimal("0.000000001")
LITELLM_INPUT = Decimal("0.00000015")
LITELLM_OUTPUT = Decimal("0.0000006")
CLIP = encode(tone(2.0), 16_000, "wav")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(answer="A fox jumps over a dog.") as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(fake: FakeOpenAI) -> None:
    fake.reset()


def providers_file(directory: Path, base_url: str) -> Path:
    common_fields = {"kind": "openai", "base_url": base_url, "api_key_env": KEY_ENV}
    entries = [
        {"name": "openai-whisper", "operation": "transcribe", "model": "whisper-1", **common_fields},
        {"name": "openai-tts", "operation": "synthesize", "model": "tts-1", **common_fields},
        {
            "name": "openai-audio",
            "operation": "understand",
            "model": "gpt-4o-audio-preview",
            **common_fields,
        },
        {
            "name": "litellm-mini",
            "kind": "litellm",
            "operation": "understand",
            "model": "openai/gpt-4o-mini",
            "base_url": base_url,
            "api_key_env": KEY_ENV,
            "prices": {"per_input_token": str(LITELLM_INPUT), "per_output_token": str(LITELLM_OUTPUT)},
        },
    ]
    path = directory / "providers.yaml"
    path.write_text(yaml.safe_dump({"providers": entries}), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
async def stub(
    fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[audio_gateway_pb2_grpc.AudioGatewayStub]:
    settings = local_settings()
    settings.whisper.enabled = settings.piper.enabled = settings.llama.enabled = False
    settings.providers_file = providers_file(tmp_path_factory.mktemp("openai"), fake.base_url)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEY_ENV, KEY)
        server = GatewayServer(settings)
    await server.start()
    await server.wait_ready(timeout_s=60)
    assert not server.app.catalogue.failures, server.app.catalogue.failures
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield audio_gateway_pb2_grpc.AudioGatewayStub(channel)
    await server.stop(grace_s=1)


def price(key: str) -> UnitPrices:
    return PriceList.load(default_price_list_path()).prices[key]


def pin(name: str) -> common.RoutingOptions:
    return common.RoutingOptions(provider=name)


async def test_transcribe_through_whisper(stub, fake):
    reply = await stub.Transcribe(
        pb.TranscribeRequest(
            audio=common.Audio(content=CLIP, mime_type="audio/wav"),
            language="en",
            word_timestamps=True,
            routing=pin("openai-whisper"),
        )
    )
    [request] = fake.requests
    assert request.path == "/v1/audio/transcriptions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert reply.text == fake.transcript
    assert reply.language == "en"
    assert [w.text for w in reply.words] == [w.strip(".") for w in fake.transcript.split()]
    assert len(reply.segments) == 2
    assert reply.route.provider == "openai-whisper"
    assert reply.route.model == "whisper-1"
    assert reply.route.locality == common.LOCALITY_CLOUD
    per_second = price("openai/whisper-1").per_audio_second
    expected = (per_second * Decimal(repr(reply.duration_s))).quantize(QUANTUM)
    assert reply.duration_s == pytest.approx(2.0, abs=0.01)
    assert Decimal(reply.route.cost_usd) == expected > 0


async def test_synthesize_through_tts(stub, fake):
    text = "Your appointment is confirmed."
    reply = await stub.Synthesize(pb.SynthesizeRequest(text=text, voice="nova", routing=pin("openai-tts")))
    assert fake.requests[0].json()["voice"] == "nova"
    assert reply.mime_type == "audio/wav"
    assert reply.sample_rate == 24_000
    assert reply.voice == "nova"
    samples, rate = decode_pcm16(reply.audio, "audio/wav")
    assert rate == 24_000
    np.testing.assert_array_equal(samples, fake.speech_samples(text))
    assert reply.route.provider == "openai-tts"
    assert reply.route.model == "tts-1"
    assert reply.route.locality == common.LOCALITY_CLOUD
    expected = (price("openai/tts-1").per_character * len(text)).quantize(QUANTUM)
    assert Decimal(reply.route.cost_usd) == expected > 0


async def test_an_unknown_voice_is_invalid_argument(stub, fake):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Synthesize(pb.SynthesizeRequest(text="Hi.", voice="bob", routing=pin("openai-tts")))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "alloy" in (info.value.details() or "")
    assert fake.requests == []


async def test_understand_by_listening(stub, fake):
    reply = await stub.Understand(
        pb.UnderstandRequest(
            audio=common.Audio(content=CLIP, mime_type="audio/wav"),
            question="What animal is mentioned?",
            routing=pin("openai-audio"),
        )
    )
    [request] = fake.requests  # the model listened: nothing was transcribed
    assert request.path == "/v1/chat/completions"
    assert reply.answer == fake.answer
    assert reply.transcript == ""
    assert reply.route.provider == "openai-audio"
    assert reply.route.model == "gpt-4o-audio-preview"
    assert reply.route.locality == common.LOCALITY_CLOUD
    usage = fake.last_usage
    assert usage is not None
    audio_tokens = usage["prompt_tokens_details"]["audio_tokens"]
    prices = price("openai/gpt-4o-audio-preview")
    expected = (
        prices.per_input_token * (usage["prompt_tokens"] - audio_tokens)
        + prices.per_audio_input_token * audio_tokens
        + prices.per_output_token * usage["completion_tokens"]
    ).quantize(QUANTUM)
    assert audio_tokens == 20
    assert Decimal(reply.route.cost_usd) == expected > 0


async def test_understand_by_transcript_through_litellm(stub, fake):
    reply = await stub.Understand(
        pb.UnderstandRequest(
            audio=common.Audio(content=CLIP, mime_type="audio/wav"),
            question="What animal is mentioned?",
            routing=pin("litellm-mini"),
        )
    )
    assert [r.path for r in fake.requests] == ["/v1/audio/transcriptions", "/v1/chat/completions"]
    chat = fake.requests[1].json()
    assert chat["model"] == "gpt-4o-mini"
    assert fake.transcript in chat["messages"][1]["content"]
    assert reply.answer == fake.answer
    assert reply.transcript == fake.transcript
    assert reply.route.provider == "litellm-mini"
    assert reply.route.model == "openai/gpt-4o-mini"
    # The chain went through a cloud transcriber: the route is as private as its least private step.
    assert reply.route.locality == common.LOCALITY_CLOUD
    usage = fake.last_usage
    assert usage is not None
    transcription = (price("openai/whisper-1").per_audio_second * Decimal(repr(reply.duration_s))).quantize(
        QUANTUM
    )
    answer = (LITELLM_INPUT * usage["prompt_tokens"] + LITELLM_OUTPUT * usage["completion_tokens"]).quantize(
        QUANTUM
    )
    assert [a.provider for a in reply.route.attempts] == ["openai-whisper", "litellm-mini"]
    assert Decimal(reply.route.attempts[1].cost_usd) == answer > 0
    assert Decimal(reply.route.cost_usd) == transcription + answer


async def test_a_vendor_outage_is_unavailable_with_the_attempt_listed(stub, fake):
    fake.fail_next(503)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Synthesize(pb.SynthesizeRequest(text="Hi.", routing=pin("openai-tts")))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "openai-tts" in (info.value.details() or "")
    assert len(fake.requests) == 1
