"""The AssemblyAI adapter on the real SDK, against a wire-level fake of the pre-recorded API."""

from __future__ import annotations

import asyncio
import time

import assemblyai as aai
import pytest

from gateway.core.errors import (
    ProviderBadResponse,
    ProviderError,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
)
from gateway.core.provider_types import Locality, TranscribeOptions, Usage
from providers.assemblyai import AssemblyAIProvider
from providers.base import Transcriber
from providers.config import ProviderConfig
from tests.audio_files import encode, recording, tone
from tests.fakes.assemblyai_server import CONVERSATION, FakeAssemblyAI

# The SDK still calls pydantic's v1-style methods (.dict(), .copy(), .parse_obj()).
pytestmark = pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20")

POLL_S = 0.05
DECODED = recording(encode(tone(2.5), 16_000, "wav"), "audio/wav")


@pytest.fixture(scope="module")
def fake():
    with FakeAssemblyAI() as server:
        yield server


@pytest.fixture(autouse=True)
def clean(fake):
    fake.reset()
    yield
    fake.reset()


def entry(fake: FakeAssemblyAI, **overrides) -> ProviderConfig:
    fields = {
        "name": "assemblyai-universal",
        "kind": "assemblyai",
        "operation": "transcribe",
        "model": "universal",
        "api_key": fake.api_key,
        "base_url": fake.url,
        "poll_interval_s": POLL_S,
        "timeout_s": 10.0,
    }
    return ProviderConfig(**{**fields, **overrides})


@pytest.fixture
async def make(fake):
    made: list[AssemblyAIProvider] = []

    async def build(**overrides) -> AssemblyAIProvider:
        provider = AssemblyAIProvider(entry(fake, **overrides))
        await provider.start()
        made.append(provider)
        return provider

    yield build
    for provider in made:
        await provider.close()


@pytest.fixture
async def diarizing(make) -> AssemblyAIProvider:
    return await make(options={"speaker_labels": True})


# -- the happy path ---------------------------------------------------------------------


async def test_uploads_creates_polls_and_parses_the_transcript(fake, diarizing):
    fake.polls_before_done = 2
    fake.audio_duration = 7  # the vendor's figure must not be what we bill
    started = time.monotonic()
    result = await diarizing.transcribe(DECODED, TranscribeOptions(language="en", word_timestamps=True), 5.0)
    elapsed = time.monotonic() - started

    (upload,) = fake.upload_requests
    assert upload.body == DECODED.original
    assert upload.headers["authorization"] == fake.api_key  # the raw key, no "Bearer"
    (upload_url,) = fake.uploads

    (create,) = fake.creates
    assert create.headers["authorization"] == fake.api_key
    assert create.json() == {
        "audio_url": upload_url,
        "speech_model": "universal",
        "language_code": "en",
        "speaker_labels": True,
        "punctuate": True,
        "format_text": True,
    }
    (job_id,) = fake.jobs
    assert [p.path for p in fake.polls] == [f"/v2/transcript/{job_id}"] * 3
    assert elapsed >= 2 * POLL_S  # it slept between polls

    assert result.text == "Hello there. Hi, back."
    assert result.language == "en"
    assert [(s.speaker, s.text, s.start_s, s.end_s) for s in result.segments] == [
        ("speaker_A", "Hello there.", 0.12, 0.9),
        ("speaker_B", "Hi, back.", 1.1, 1.8),
    ]
    words = [w for s in result.segments for w in s.words]
    assert [(w.text, w.start_s, w.end_s, w.confidence) for w in words] == [
        (w.text, w.start_ms / 1000, w.end_ms / 1000, w.confidence) for w in CONVERSATION
    ]
    assert result.usage == Usage(audio_seconds=DECODED.duration_s)
    assert result.usage.audio_seconds == pytest.approx(2.5, abs=0.01)


async def test_without_a_language_it_asks_for_detection_and_reports_the_detected_one(fake, make):
    fake.detected_language = "es"
    provider = await make()
    result = await provider.transcribe(DECODED, TranscribeOptions(), 5.0)
    body = fake.creates[0].json()
    assert body["language_detection"] is True
    assert "language_code" not in body
    assert result.language == "es"


async def test_without_speaker_turns_one_segment_spans_the_audio(fake, make):
    provider = await make()
    result = await provider.transcribe(DECODED, TranscribeOptions(language="en", word_timestamps=True), 5.0)
    assert "speaker_labels" not in fake.creates[0].json()
    (segment,) = result.segments
    assert (segment.start_s, segment.end_s, segment.speaker) == (0.0, DECODED.duration_s, "")
    assert [w.text for w in segment.words] == [w.text for w in CONVERSATION]
    assert segment.words[-1].end_s == 1.8


async def test_words_are_left_out_unless_asked_for(diarizing):
    result = await diarizing.transcribe(DECODED, TranscribeOptions(language="en"), 5.0)
    assert [s.speaker for s in result.segments] == ["speaker_A", "speaker_B"]
    assert all(s.words == () for s in result.segments)


async def test_diarization_feature_turns_speaker_labels_on(fake, make):
    provider = await make(features=frozenset({"diarization", "word_timestamps"}))
    assert "diarization" in provider.capabilities.features
    await provider.transcribe(DECODED, TranscribeOptions(language="en"), 5.0)
    assert fake.creates[0].json()["speaker_labels"] is True


async def test_a_request_that_asks_to_diarize_gets_speaker_labels_on_segments_and_words(fake, make):
    provider = await make()
    assert "diarization" in provider.capabilities.features
    result = await provider.transcribe(DECODED, TranscribeOptions(word_timestamps=True, diarize=True), 5.0)
    assert fake.creates[0].json()["speaker_labels"] is True
    assert [s.speaker for s in result.segments] == ["speaker_A", "speaker_B"]
    assert [w.speaker for s in result.segments for w in s.words] == [
        f"speaker_{w.speaker}" for w in CONVERSATION
    ]


async def test_a_model_newer_than_the_sdk_goes_in_the_speech_models_list(fake, make):
    provider = await make(model="universal-3-pro")
    result = await provider.transcribe(DECODED, TranscribeOptions(language="en"), 5.0)
    body = fake.creates[0].json()
    assert body["speech_models"] == ["universal-3-pro"]
    assert "speech_model" not in body
    assert result.text


async def test_options_pass_through_and_override_the_defaults(fake, make):
    provider = await make(options={"punctuate": False, "speakers_expected": 2, "speaker_labels": True})
    await provider.transcribe(DECODED, TranscribeOptions(language="en"), 5.0)
    body = fake.creates[0].json()
    assert (body["punctuate"], body["speakers_expected"], body["speaker_labels"]) == (False, 2, True)


async def test_it_is_a_cloud_transcriber(diarizing):
    assert isinstance(diarizing, Transcriber)
    caps = diarizing.capabilities
    assert caps.locality is Locality.CLOUD and caps.retains_data
    assert {"word_timestamps", "diarization", "language_detection"} <= caps.features


async def test_the_entry_alone_configures_the_sdk(fake, make, monkeypatch):
    # The SDK's settings read ASSEMBLYAI_* variables; the adapter must not pick them up.
    monkeypatch.setenv("ASSEMBLYAI_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("ASSEMBLYAI_API_KEY", "from-the-environment")
    monkeypatch.setenv("ASSEMBLYAI_HTTP_TIMEOUT", "0.000001")
    # Read from the environment, this would fail validation.
    monkeypatch.setenv("ASSEMBLYAI_KEEPALIVE_EXPIRY", "not-a-number")
    global_before = aai.settings.model_dump()
    provider = await make()
    result = await provider.transcribe(DECODED, TranscribeOptions(language="en"), 5.0)
    assert result.text
    assert {r.headers["authorization"] for r in fake.requests} == {fake.api_key}
    assert aai.settings.model_dump() == global_before


# -- configuration errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"operation": "synthesize"},
        {"api_key": None, "base_url": None},
        {"options": {"no_such_switch": True}},
        {"options": {"speech_model": "nano"}},  # the model comes from `model:`
        {"options": {"language_code": "fr"}},  # the language comes from the request
        {"options": {"speakers_expected": "several"}},
    ],
)
def test_a_bad_entry_fails_at_construction(fake, overrides):
    with pytest.raises(ValueError, match="assemblyai-universal"):
        AssemblyAIProvider(entry(fake, **overrides))


# -- failures, one knob at a time -------------------------------------------------------


async def failing(
    provider: AssemblyAIProvider, timeout_s: float | None = 5.0, chained: bool = True
) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await provider.transcribe(DECODED, TranscribeOptions(language="en"), timeout_s)
    if chained:  # mapped from the SDK's or httpx's exception with `raise ... from`
        assert caught.value.__cause__ is not None
    return caught.value


async def test_a_500_on_upload_is_retryable(fake, diarizing):
    fake.fail_next(500, {"error": "Internal server error"})
    error = await failing(diarizing)
    assert type(error) is ProviderUnavailable and error.retryable
    assert "500" in str(error)
    assert fake.creates == []


async def test_a_429_on_create_is_retryable(fake, diarizing):
    fake.fail_step("create", 429, {"error": "Too many requests"})
    error = await failing(diarizing)
    assert type(error) is ProviderUnavailable and error.retryable
    assert "429" in str(error)
    assert len(fake.upload_requests) == 1 and fake.polls == []


async def test_a_503_while_polling_is_retryable(fake, diarizing):
    fake.fail_step("poll", 503, {"error": "Service unavailable"})
    error = await failing(diarizing)
    assert type(error) is ProviderUnavailable and error.retryable


async def test_a_wrong_key_is_rejected_and_not_retried(fake, make):
    provider = await make(api_key="not-the-key")
    error = await failing(provider)
    assert type(error) is ProviderRejected and not error.retryable
    assert "401" in str(error) and "api_key_env" in str(error)
    assert "not-the-key" not in str(error)
    assert fake.creates == []


@pytest.mark.parametrize(("step", "status"), [("create", 400), ("upload", 413), ("create", 422)])
async def test_client_errors_are_rejected(fake, diarizing, step, status):
    fake.fail_step(step, status, {"error": "the request is invalid"})
    error = await failing(diarizing)
    assert type(error) is ProviderRejected and not error.retryable
    assert str(status) in str(error)


async def test_a_failed_job_is_rejected_with_the_vendors_reason(fake, diarizing):
    fake.job_error = "Transcoding failed. File does not appear to contain audio."
    error = await failing(diarizing, chained=False)
    assert type(error) is ProviderRejected and not error.retryable
    assert "does not appear to contain audio" in str(error)
    assert len(fake.polls) == 2


async def test_malformed_json_is_a_bad_response(fake, diarizing):
    fake.malformed = True
    error = await failing(diarizing)
    assert type(error) is ProviderBadResponse and error.retryable


async def test_a_poll_the_sdk_cannot_validate_is_a_bad_response(fake, diarizing):
    # A transcript without audio_url: the SDK's model refuses it.
    fake.fail_step("poll", 200, {"id": "x", "status": "completed", "text": "hi"})
    error = await failing(diarizing)
    assert type(error) is ProviderBadResponse and error.retryable


async def test_a_dropped_connection_is_retryable(fake, diarizing):
    fake.drop = True
    error = await failing(diarizing)
    assert type(error) is ProviderUnavailable and error.retryable


async def test_a_slow_reply_past_the_deadline_times_out(fake, diarizing):
    fake.delay_s = 1.0
    started = time.monotonic()
    error = await failing(diarizing, timeout_s=0.3)
    assert type(error) is ProviderTimeout and error.retryable
    assert time.monotonic() - started < 0.9


async def test_the_entrys_timeout_caps_a_call_without_a_deadline(fake, make):
    provider = await make(timeout_s=0.3)
    fake.slow_first_byte_s = 1.0
    error = await failing(provider, timeout_s=None)
    assert type(error) is ProviderTimeout and error.retryable


async def test_a_job_that_never_finishes_times_out_and_stops_polling(fake, diarizing):
    fake.never_complete = True
    started = time.monotonic()
    error = await failing(diarizing, timeout_s=0.4)
    assert type(error) is ProviderTimeout and error.retryable
    assert time.monotonic() - started < 0.8
    polls = len(fake.polls)
    assert 2 <= polls <= 0.4 / POLL_S + 2
    await asyncio.sleep(5 * POLL_S)
    assert len(fake.polls) == polls  # nothing keeps polling once the call has failed
