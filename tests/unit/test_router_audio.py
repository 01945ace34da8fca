"""Where decoding happens on a request's way through the router: only for a local engine, never for a
cache hit or a cloud vendor that takes the file as it is."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal

import pytest

from gateway.app import App, build_app
from gateway.core.domain import AudioInput, Routing, TranscribeRequest, UnderstandRequest
from gateway.core.errors import InvalidInput
from gateway.core.provider_types import Locality, TranscribeOptions
from gateway.money.pricing import UnitPrices
from gateway.routing.router import RequestContext
from gateway.settings import Settings
from providers.base import Provider
from providers.config import ProviderConfig
from providers.openai import OpenAIProvider
from providers.testing import FakeTranscriber
from tests import hostile_audio as hostile
from tests.audio_files import FORMATS, MIME, encode, tone
from tests.fakes.openai_server import FakeOpenAI, parse_form


def ctx() -> RequestContext:
    return RequestContext(request_id=uuid.uuid4().hex, deadline=time.monotonic() + 30)


def transcribe(data: bytes, mime_type: str = "") -> TranscribeRequest:
    return TranscribeRequest(
        audio=AudioInput(content=data, uri=None, mime_type=mime_type),
        options=TranscribeOptions(),
        routing=Routing(),
    )


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def openai_provider(fake: FakeOpenAI, operation: str, model: str) -> OpenAIProvider:
    config = ProviderConfig.model_validate(
        {
            "name": f"openai-{operation}",
            "kind": "openai",
            "operation": operation,
            "model": model,
            "base_url": fake.base_url,
            "api_key": "sk-test",
        }
    )
    return OpenAIProvider(config)


@contextlib.asynccontextmanager
async def running(settings: Settings, *providers: Provider) -> AsyncIterator[App]:
    prices = {
        (p.name, p.model): UnitPrices(per_audio_second=Decimal("0.0001"), per_input_token=Decimal("0.000001"))
        for p in providers
    }
    app = build_app(settings, providers=list(providers), prices=prices)
    await app.catalogue.start()
    try:
        yield app
    finally:
        await app.close()


@pytest.fixture
async def cloud_app(fake_openai) -> AsyncIterator[App]:
    fake_openai.reset()
    transcriber = openai_provider(fake_openai, "transcribe", "whisper-1")
    listener = openai_provider(fake_openai, "understand", "gpt-4o-audio-preview")
    async with running(Settings(), transcriber, listener) as app:
        yield app


@pytest.mark.parametrize("kind", FORMATS)
async def test_a_cloud_transcription_sends_the_original_and_never_decodes(cloud_app, fake_openai, kind):
    data = encode(tone(1.5, 22_050), 22_050, kind)
    result = await cloud_app.router.transcribe(transcribe(data, MIME[kind]), ctx())
    assert result.route.provider == "openai-transcribe"
    assert result.duration_s == pytest.approx(1.5, abs=0.05)
    assert parse_form(fake_openai.requests[-1]).files["file"].data == data
    assert cloud_app.audio.decodes_started == 0


async def test_a_listening_model_decodes_only_a_container_its_endpoint_refuses(cloud_app, fake_openai):
    def ask(data: bytes) -> UnderstandRequest:
        return UnderstandRequest(
            audio=AudioInput(content=data, uri=None, mime_type=""),
            question="What is it?",
            language=None,
            max_answer_tokens=None,
            routing=Routing(),
        )

    await cloud_app.router.understand(ask(encode(tone(1.0), 16_000, "wav")), ctx())
    assert cloud_app.audio.decodes_started == 0
    await cloud_app.router.understand(ask(encode(tone(1.0), 16_000, "flac")), ctx())
    # input_audio takes wav and mp3 only: the FLAC went as WAV, decoded once.
    assert cloud_app.audio.decodes_started == 1
    assert fake_openai.requests[-1].json()["messages"][1]["content"][1]["input_audio"]["format"] == "wav"


async def test_a_local_engine_decodes_and_its_decode_errors_reach_the_caller_as_input_errors():
    local = FakeTranscriber(name="local", reads_samples=True)
    async with running(Settings(), local) as app:
        await app.router.transcribe(transcribe(encode(tone(1.0), 16_000, "wav")), ctx())
        assert app.audio.decodes_started == 1
        with pytest.raises(InvalidInput, match="NaN or infinite"):
            await app.router.transcribe(transcribe(hostile.nan_wav(1.0), "audio/wav"), ctx())
        assert app.audio.decodes_started == 2
        # The caller's audio says nothing about the engine: no failure is held against it.
        assert app.health.snapshot()["local"].consecutive_failures == 0


async def test_a_cache_hit_does_not_decode(redis_url):
    settings = Settings()
    settings.redis.url = redis_url
    settings.redis.key_prefix = f"test:{uuid.uuid4().hex}:"
    local = FakeTranscriber(name="local", locality=Locality.ON_PREM, reads_samples=True)
    data = encode(tone(1.0), 16_000, "flac")
    async with running(settings, local) as app:
        first = await app.router.transcribe(transcribe(data), ctx())
        second = await app.router.transcribe(transcribe(data), ctx())
        assert (first.route.cache_hit, second.route.cache_hit) == (False, True)
        assert app.audio.decodes_started == 1 and local.calls == 1
