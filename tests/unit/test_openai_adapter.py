"""The OpenAI adapters against a wire-level fake of the API, through the real openai SDK."""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterator

import numpy as np
import openai
import pytest

from gateway.core.audio import Recording, decode_pcm16
from gateway.core.errors import (
    ProviderBadResponse,
    ProviderInputError,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
)
from gateway.core.provider_types import (
    AnswerOptions,
    Locality,
    Operation,
    SynthesizeOptions,
    TranscribeOptions,
)
from providers.base import Answerer, Synthesizer, Transcriber
from providers.config import ProviderConfig
from providers.openai import OPENAI_VOICES, OpenAIProvider
from providers.openai_compatible import OpenAICompatibleProvider
from tests.audio_files import MIME, encode, recording, tone
from tests.fakes.openai_server import FakeOpenAI, openai_error, parse_form

KEY = "sk-test-0123456789"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(fake: FakeOpenAI) -> Iterator[None]:
    fake.reset()
    yield
    fake.reset()


def clip(seconds: float = 2.0, kind: str = "wav") -> Recording:
    return recording(encode(tone(seconds), 16_000, kind), MIME[kind])


def config(fake: FakeOpenAI, operation: str, model: str, **extra: object) -> ProviderConfig:
    fields: dict[str, object] = {
        "name": f"openai-{operation}",
        "kind": "openai",
        "operation": operation,
        "model": model,
        "base_url": fake.base_url,
        "api_key": KEY,
        **extra,
    }
    return ProviderConfig.model_validate(fields)


def provider(fake: FakeOpenAI, operation: str, model: str, **extra: object) -> OpenAIProvider:
    return OpenAIProvider(config(fake, operation, model, **extra))


# -- transcribe ----------------------------------------------------------------------------------


async def test_whisper_sends_the_file_and_options_and_maps_segments_and_words(fake):
    audio = clip(2.0)
    whisper = provider(fake, "transcribe", "whisper-1")
    assert isinstance(whisper, Transcriber)
    options = TranscribeOptions(language="en", word_timestamps=True, prompt="Fox, dog.")
    result = await whisper.transcribe(audio, options, timeout_s=10)

    [request] = fake.requests
    assert (request.method, request.path) == ("POST", "/v1/audio/transcriptions")
    assert request.headers["authorization"] == f"Bearer {KEY}"
    form = parse_form(request)
    assert form.fields["model"] == ["whisper-1"]
    assert form.fields["language"] == ["en"]
    assert form.fields["prompt"] == ["Fox, dog."]
    assert form.fields["response_format"] == ["verbose_json"]
    assert form.fields["timestamp_granularities[]"] == ["segment", "word"]
    upload = form.files["file"]
    assert (upload.filename, upload.content_type) == ("audio.wav", "audio/wav")
    assert upload.data == audio.original

    assert result.text == fake.transcript
    assert result.language == "en"
    assert [s.text for s in result.segments] == [
        "The quick brown fox jumps over the lazy dog.",
        "It was not amused.",
    ]
    first, second = result.segments
    assert [w.text for w in first.words] == [
        "The",
        "quick",
        "brown",
        "fox",
        "jumps",
        "over",
        "the",
        "lazy",
        "dog",
    ]
    assert [w.text for w in second.words] == ["It", "was", "not", "amused"]
    assert first.start_s == 0.0
    assert second.end_s == pytest.approx(audio.duration_s)
    assert all(w.start_s >= second.start_s for w in second.words)
    assert result.usage.audio_seconds == audio.duration_s
    assert result.usage.characters == result.usage.input_tokens == 0


async def test_whisper_without_words_asks_for_segments_only_and_reads_the_detected_language(fake):
    fake.transcript = "Bonjour tout le monde."
    result = await provider(fake, "transcribe", "whisper-1").transcribe(clip(), TranscribeOptions(), 10)
    form = parse_form(fake.requests[0])
    assert "timestamp_granularities[]" not in form.fields
    assert "language" not in form.fields and "prompt" not in form.fields
    assert result.language == "en"  # the fake reports "english", as Whisper does
    assert [(s.text, s.words) for s in result.segments] == [("Bonjour tout le monde.", ())]


async def test_an_accepted_container_is_uploaded_as_it_is(fake):
    audio = clip(1.5, "flac")
    await provider(fake, "transcribe", "whisper-1").transcribe(audio, TranscribeOptions(), 10)
    upload = parse_form(fake.requests[0]).files["file"]
    assert (upload.filename, upload.content_type) == ("audio.flac", "audio/flac")
    assert upload.data == audio.original


@pytest.mark.parametrize("model", ["gpt-4o-transcribe", "gpt-4o-mini-transcribe"])
async def test_gpt4o_transcription_asks_for_json_and_returns_one_spanning_segment(fake, model):
    audio = clip(2.5)
    transcriber = provider(fake, "transcribe", model)
    assert "word_timestamps" not in transcriber.capabilities.features
    result = await transcriber.transcribe(audio, TranscribeOptions(language="en"), 10)
    form = parse_form(fake.requests[0])
    assert form.fields["model"] == [model]
    assert form.fields["response_format"] == ["json"]
    assert "timestamp_granularities[]" not in form.fields
    assert result.text == fake.transcript
    assert result.language == "en"
    [segment] = result.segments
    assert (segment.start_s, segment.end_s, segment.words) == (0.0, audio.duration_s, ())
    assert result.usage.audio_seconds == audio.duration_s


def test_capabilities_follow_the_model_and_the_config(fake):
    whisper = provider(fake, "transcribe", "whisper-1")
    caps = whisper.capabilities
    assert caps.operations == frozenset({Operation.TRANSCRIBE})
    assert "word_timestamps" in caps.features
    assert (caps.locality, caps.retains_data) == (Locality.CLOUD, True)
    narrowed = provider(fake, "transcribe", "whisper-1", languages=["en"], region="eu")
    assert narrowed.capabilities.languages == frozenset({"en"})
    assert narrowed.capabilities.region == "eu"
    assert provider(fake, "synthesize", "tts-1").capabilities.features == frozenset({"voices", "speed"})
    understand = provider(fake, "understand", "gpt-4o-audio-preview")
    assert understand.listens is True
    assert isinstance(understand, Answerer)


async def test_calling_an_operation_the_entry_does_not_declare_is_refused(fake):
    tts = provider(fake, "synthesize", "tts-1")
    with pytest.raises(ProviderRejected, match="configured for synthesize"):
        await tts.transcribe(clip(), TranscribeOptions(), 10)
    assert fake.requests == []


# -- synthesize ----------------------------------------------------------------------------------


async def test_tts_asks_for_wav_and_decodes_it(fake):
    tts = provider(fake, "synthesize", "tts-1")
    assert isinstance(tts, Synthesizer)
    text = "Hello from the gateway."
    speech = await tts.synthesize(text, SynthesizeOptions(), timeout_s=10)

    [request] = fake.requests
    assert (request.method, request.path) == ("POST", "/v1/audio/speech")
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.json() == {"model": "tts-1", "input": text, "voice": "alloy", "response_format": "wav"}
    expected = fake.speech_samples(text)
    assert speech.sample_rate == 24_000
    assert speech.samples.dtype == np.int16
    np.testing.assert_array_equal(speech.samples, expected)
    assert speech.voice == "alloy"
    assert speech.usage.characters == len(text)
    assert speech.usage.audio_seconds == pytest.approx(len(expected) / 24_000)


async def test_tts_passes_voice_speed_and_instructions(fake):
    tts = provider(fake, "synthesize", "gpt-4o-mini-tts", options={"instructions": "Speak calmly."})
    text = "Slow and steady."
    speech = await tts.synthesize(text, SynthesizeOptions(voice="nova", speed=1.5), 10)
    body = fake.requests[0].json()
    assert (body["voice"], body["speed"], body["instructions"]) == ("nova", 1.5, "Speak calmly.")
    assert speech.voice == "nova"
    assert len(speech.samples) == len(fake.speech_samples(text, speed=1.5))


async def test_tts_raw_pcm_is_24khz_s16le(fake):
    tts = provider(fake, "synthesize", "tts-1-hd", options={"response_format": "pcm"}, default_voice="echo")
    text = "Raw samples please."
    speech = await tts.synthesize(text, SynthesizeOptions(), 10)
    body = fake.requests[0].json()
    assert (body["response_format"], body["voice"]) == ("pcm", "echo")
    assert speech.sample_rate == 24_000
    np.testing.assert_array_equal(speech.samples, fake.speech_samples(text))


async def test_an_unknown_voice_is_an_input_error_naming_the_voices(fake):
    tts = provider(fake, "synthesize", "tts-1")
    assert tts.voices() == OPENAI_VOICES
    with pytest.raises(ProviderInputError, match=r"unknown voice 'bob'.*alloy, ash, ballad") as info:
        await tts.synthesize("hi", SynthesizeOptions(voice="bob"), 10)
    assert info.value.retryable is False
    assert fake.requests == []


async def test_configured_voices_replace_the_known_set(fake):
    tts = provider(fake, "synthesize", "tts-1", voices=["nova", "onyx"], default_voice="onyx")
    assert tts.voices() == frozenset({"nova", "onyx"})
    with pytest.raises(ProviderInputError, match="available voices: nova, onyx"):
        await tts.synthesize("hi", SynthesizeOptions(voice="alloy"), 10)
    speech = await tts.synthesize("hi", SynthesizeOptions(), 10)
    assert speech.voice == "onyx"


def test_an_unsupported_speech_format_is_a_config_error(fake):
    with pytest.raises(ValueError, match=r"'openai-synthesize'.*'wav' or 'pcm'"):
        provider(fake, "synthesize", "tts-1", options={"response_format": "mp3"})


# -- understand ----------------------------------------------------------------------------------


async def test_audio_understanding_sends_the_wav_and_splits_audio_tokens(fake):
    audio = clip(2.0)
    model = provider(fake, "understand", "gpt-4o-audio-preview")
    answer = await model.answer("What is said?", None, audio, AnswerOptions(max_tokens=64), timeout_s=10)

    [request] = fake.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == f"Bearer {KEY}"
    body = request.json()
    assert body["model"] == "gpt-4o-audio-preview"
    assert body["max_completion_tokens"] == 64
    system, user = body["messages"]
    assert system["role"] == "system"
    text_part, audio_part = user["content"]
    assert text_part == {"type": "text", "text": "What is said?"}
    assert audio_part["type"] == "input_audio"
    assert audio_part["input_audio"]["format"] == "wav"
    assert base64.b64decode(audio_part["input_audio"]["data"]) == audio.original

    assert answer.text == fake.answer
    usage = fake.last_usage
    assert usage is not None
    audio_tokens = usage["prompt_tokens_details"]["audio_tokens"]
    assert audio_tokens == 20  # 10 per second of audio
    assert answer.usage.audio_input_tokens == audio_tokens
    assert answer.usage.input_tokens == usage["prompt_tokens"] - audio_tokens > 0
    assert answer.usage.output_tokens == usage["completion_tokens"] == len(fake.answer.split())


async def test_audio_the_endpoint_does_not_take_is_reencoded_to_wav(fake):
    audio = clip(1.5, "flac")
    await provider(fake, "understand", "gpt-audio").answer("Q?", None, audio, AnswerOptions(), 10)
    part = fake.requests[0].json()["messages"][1]["content"][1]["input_audio"]
    assert part["format"] == "wav"
    samples, rate = decode_pcm16(base64.b64decode(part["data"]), "audio/wav")
    assert rate == 16_000
    assert len(samples) == len(await audio.samples())
    assert fake.last_usage is not None
    assert fake.last_usage["prompt_tokens_details"]["audio_tokens"] == 15


async def test_an_answer_without_usage_or_text_is_a_bad_response(fake):
    model = provider(fake, "understand", "gpt-4o-audio-preview")
    fake.answer = "   "
    with pytest.raises(ProviderBadResponse, match="empty answer"):
        await model.answer("Q?", None, clip(), AnswerOptions(), 10)
    fake.fail_next(200, {"id": "x", "object": "chat.completion", "choices": []})
    with pytest.raises(ProviderBadResponse, match="malformed") as info:
        await model.answer("Q?", None, clip(), AnswerOptions(), 10)
    assert info.value.retryable is True
    no_usage = {
        "id": "x",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-4o-audio-preview",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Hi."}, "finish_reason": "stop"}
        ],
    }
    fake.fail_next(200, no_usage)
    with pytest.raises(ProviderBadResponse, match="malformed"):
        await model.answer("Q?", None, clip(), AnswerOptions(), 10)


# -- failures ------------------------------------------------------------------------------------


async def _call(fake: FakeOpenAI, operation: str, timeout_s: float = 10.0) -> object:
    if operation == "transcribe":
        return await provider(fake, "transcribe", "whisper-1").transcribe(
            clip(1.0), TranscribeOptions(), timeout_s
        )
    if operation == "synthesize":
        return await provider(fake, "synthesize", "tts-1").synthesize("Hi.", SynthesizeOptions(), timeout_s)
    return await provider(fake, "understand", "gpt-4o-audio-preview").answer(
        "Q?", None, clip(1.0), AnswerOptions(), timeout_s
    )


OPERATIONS = ["transcribe", "synthesize", "understand"]


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize(
    ("status", "error", "retryable"),
    [
        (500, ProviderUnavailable, True),
        (503, ProviderUnavailable, True),
        (429, ProviderUnavailable, True),
        (408, ProviderUnavailable, True),
        (401, ProviderRejected, False),
        (403, ProviderRejected, False),
        (400, ProviderRejected, False),
        (404, ProviderRejected, False),
        (413, ProviderRejected, False),
        (422, ProviderRejected, False),
    ],
)
async def test_http_errors_map_by_status_with_a_single_attempt(fake, operation, status, error, retryable):
    fake.fail_next(status, openai_error("Incorrect API key provided: sk-te***6789", code="invalid_api_key"))
    with pytest.raises(error, match=f"HTTP {status}") as info:
        await _call(fake, operation)
    assert type(info.value) is error
    assert info.value.retryable is retryable
    assert isinstance(info.value.__cause__, openai.APIStatusError)
    assert len(fake.requests) == 1  # the SDK's own retries are off
    if status in (401, 403):
        assert "sk-te" not in str(info.value)
        assert "api_key_env" in str(info.value)
    else:
        assert "Incorrect API key" in str(info.value)


@pytest.mark.parametrize("operation", OPERATIONS)
async def test_a_reply_slower_than_the_deadline_is_a_timeout(fake, operation):
    fake.delay_s = 2.0
    started = time.monotonic()
    with pytest.raises(ProviderTimeout) as info:
        await _call(fake, operation, timeout_s=0.3)
    assert time.monotonic() - started < 1.5
    assert info.value.retryable is True
    assert len(fake.requests) == 1


@pytest.mark.parametrize("operation", OPERATIONS)
async def test_a_slow_first_byte_is_a_timeout(fake, operation):
    fake.slow_first_byte_s = 2.0
    with pytest.raises(ProviderTimeout):
        await _call(fake, operation, timeout_s=0.3)


async def test_the_entry_timeout_caps_the_request_deadline(fake):
    fake.delay_s = 2.0
    tts = provider(fake, "synthesize", "tts-1", timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(ProviderTimeout):
        await tts.synthesize("Hi.", SynthesizeOptions(), timeout_s=None)
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize("operation", OPERATIONS)
async def test_a_malformed_body_is_a_retryable_bad_response(fake, operation):
    fake.malformed = True
    with pytest.raises(ProviderBadResponse) as info:
        await _call(fake, operation)
    assert info.value.retryable is True
    assert info.value.__cause__ is not None


@pytest.mark.parametrize("operation", OPERATIONS)
async def test_a_dropped_connection_is_retryable(fake, operation):
    fake.drop = True
    with pytest.raises(ProviderUnavailable, match="connection failed") as info:
        await _call(fake, operation)
    assert info.value.retryable is True
    assert isinstance(info.value.__cause__, openai.APIConnectionError)
    assert len(fake.requests) == 1


async def test_an_unreachable_server_is_retryable(fake):
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    whisper = OpenAIProvider(config(fake, "transcribe", "whisper-1", base_url=f"http://127.0.0.1:{port}/v1"))
    with pytest.raises(ProviderUnavailable):
        await whisper.transcribe(clip(), TranscribeOptions(), 5)


async def test_json_of_the_wrong_shape_is_a_bad_response(fake):
    fake.fail_next(200, {"text": 42, "segments": "nope"})
    with pytest.raises(ProviderBadResponse, match="malformed"):
        await provider(fake, "transcribe", "whisper-1").transcribe(clip(), TranscribeOptions(), 10)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('["a", "list"]', "not a JSON object"),
        ({"segments": []}, "malformed"),  # no text
        ({"text": "hi", "segments": [{"text": "hi", "end": 1.0}]}, "malformed"),  # a segment with no start
        ({"text": "hi", "words": [{"word": "hi", "start": "soon", "end": 1.0}]}, "malformed"),
    ],
)
async def test_a_transcript_missing_its_fields_is_a_bad_response(fake, body, message):
    fake.fail_next(200, body)
    whisper = provider(fake, "transcribe", "whisper-1")
    with pytest.raises(ProviderBadResponse, match=message) as info:
        await whisper.transcribe(clip(), TranscribeOptions(word_timestamps=True), 10)
    assert info.value.retryable is True


async def test_undecodable_speech_is_a_bad_response(fake):
    fake.fail_next(200, "definitely not audio")
    with pytest.raises(ProviderBadResponse, match="does not decode"):
        await provider(fake, "synthesize", "tts-1").synthesize("Hi.", SynthesizeOptions(), 10)


# -- OpenAI-compatible servers -------------------------------------------------------------------


def compatible(fake: FakeOpenAI, operation: str, model: str, **extra: object) -> OpenAICompatibleProvider:
    fields: dict[str, object] = {
        "name": "speaches",
        "kind": "openai_compatible",
        "operation": operation,
        "model": model,
        "base_url": fake.base_url,
        **extra,
    }
    return OpenAICompatibleProvider(ProviderConfig.model_validate(fields))


def test_a_compatible_server_needs_its_base_url():
    entry = ProviderConfig(name="speaches", kind="openai_compatible", operation="transcribe", model="x")
    with pytest.raises(ValueError, match=r"'speaches'.*needs base_url"):
        OpenAICompatibleProvider(entry)


async def test_a_compatible_server_is_on_prem_and_takes_any_model(fake):
    model = "Systran/faster-distil-whisper-small.en"
    server = compatible(fake, "transcribe", model)
    assert server.capabilities.locality is Locality.ON_PREM
    assert server.capabilities.retains_data is False
    assert "word_timestamps" in server.capabilities.features
    result = await server.transcribe(clip(), TranscribeOptions(word_timestamps=True), 10)
    form = parse_form(fake.requests[0])
    assert form.fields["model"] == [model]
    assert form.fields["response_format"] == ["verbose_json"]
    # No key configured: a placeholder, never a key from the environment.
    assert fake.requests[0].headers["authorization"] == "Bearer unset"
    assert sum(len(s.words) for s in result.segments) == len(fake.transcript.split())


async def test_a_compatible_server_names_its_own_voices(fake):
    fake.voices = frozenset({"af_heart"})
    server = compatible(fake, "synthesize", "kokoro", default_voice="af_heart")
    assert server.voices() == frozenset({"af_heart"})
    speech = await server.synthesize("Hello.", SynthesizeOptions(voice="af_heart"), 10)
    assert json.loads(fake.requests[0].body)["voice"] == "af_heart"
    assert speech.voice == "af_heart"
    # Unlisted voices go to the server, which is the one that knows them.
    with pytest.raises(ProviderRejected, match="HTTP 400"):
        await server.synthesize("Hello.", SynthesizeOptions(voice="alloy"), 10)


async def test_a_compatible_entry_may_declare_it_retains_data(fake):
    server = compatible(fake, "understand", "Qwen/Qwen2-Audio-7B-Instruct", retains_data=True)
    assert server.capabilities.retains_data is True
    answer = await server.answer("Q?", None, clip(), AnswerOptions(), 10)
    assert answer.text == fake.answer
