"""The Deepgram adapter on the real SDK, against a fake Deepgram on 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator

import numpy as np
import pytest
from pydantic import SecretStr

from gateway.core.errors import (
    ProviderBadResponse,
    ProviderError,
    ProviderInputError,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
)
from gateway.core.provider_types import Operation, SynthesizeOptions, TranscribeOptions, Usage, WordTiming
from providers.config import ProviderConfig
from providers.deepgram import DeepgramProvider
from tests.audio_files import encode, recording, tone
from tests.fakes.deepgram_server import SECONDS_PER_CHARACTER, FakeDeepgram

KEY = "dg-test-key-123"
CLIP = recording(encode(tone(1.75), 16_000, "flac"), "audio/flac")
TEXT = "Hello from the gateway."


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeDeepgram]:
    with FakeDeepgram(api_key=KEY) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(fake: FakeDeepgram) -> None:
    fake.reset()
    fake.detected_language = "en"


def config(fake: FakeDeepgram, operation: str = "transcribe", **overrides: object) -> ProviderConfig:
    defaults: dict[str, object] = (
        {"name": "deepgram-nova", "model": "nova-3"}
        if operation == "transcribe"
        else {"name": "deepgram-aura", "model": "aura-2", "default_voice": "aura-2-thalia-en"}
    )
    return ProviderConfig.model_validate(
        {
            "kind": "deepgram",
            "operation": operation,
            "base_url": fake.url,
            "api_key": SecretStr(KEY),
            "timeout_s": 10.0,
            **defaults,
            **overrides,
        }
    )


@pytest.fixture
async def transcriber(fake: FakeDeepgram) -> AsyncIterator[DeepgramProvider]:
    provider = DeepgramProvider(config(fake))
    await provider.start()
    yield provider
    await provider.close()


@pytest.fixture
async def synthesizer(fake: FakeDeepgram) -> AsyncIterator[DeepgramProvider]:
    provider = DeepgramProvider(config(fake, "synthesize"))
    await provider.start()
    yield provider
    await provider.close()


def one(query: dict[str, list[str]], name: str) -> str:
    values = query[name]
    assert len(values) == 1, (name, values)
    return values[0]


# -- transcription: what is sent ---------------------------------------------------------


async def test_transcribe_posts_the_original_bytes_with_the_model_and_switches(fake, transcriber):
    await transcriber.transcribe(CLIP, TranscribeOptions(), 5.0)
    [sent] = fake.requests
    assert (sent.method, sent.path) == ("POST", "/v1/listen")
    assert sent.body == CLIP.original
    assert sent.headers["authorization"] == f"Token {KEY}"
    assert sent.headers["content-type"] == "application/octet-stream"
    assert one(sent.query, "model") == "nova-3"
    assert one(sent.query, "smart_format") == "true"
    assert one(sent.query, "punctuate") == "true"
    for absent in ("diarize", "utterances", "language", "detect_language"):
        assert absent not in sent.query


async def test_a_requested_language_is_sent_and_reported(fake, transcriber):
    result = await transcriber.transcribe(CLIP, TranscribeOptions(language="de"), 5.0)
    assert one(fake.requests[0].query, "language") == "de"
    assert result.language == "de"


async def test_config_options_override_defaults_and_pass_through(fake):
    provider = DeepgramProvider(
        config(fake, options={"smart_format": False, "numerals": True, "tag": "gateway", "language": "es"})
    )
    try:
        result = await provider.transcribe(CLIP, TranscribeOptions(), 5.0)
    finally:
        await provider.close()
    query = fake.requests[0].query
    assert one(query, "smart_format") == "false"
    assert one(query, "punctuate") == "true"
    assert one(query, "numerals") == "true"
    assert one(query, "tag") == "gateway"
    assert one(query, "language") == "es"
    assert result.language == "es"


# -- transcription: what is parsed -------------------------------------------------------


async def test_transcript_segments_follow_paragraphs_with_punctuated_words(fake, transcriber):
    result = await transcriber.transcribe(CLIP, TranscribeOptions(), 5.0)
    assert result.text == "Hello there. Hi! How are you?"
    assert result.language == "en"
    assert [(s.text, s.start_s, s.end_s, s.speaker) for s in result.segments] == [
        ("Hello there.", 0.08, 0.90, ""),
        ("Hi! How are you?", 1.20, 2.10, ""),
    ]
    assert result.segments[0].words == (
        WordTiming("Hello", 0.08, 0.40, pytest.approx(0.998)),
        WordTiming("there.", 0.44, 0.90, pytest.approx(0.991)),
    )
    assert [w.text for w in result.segments[1].words] == ["Hi!", "How", "are", "you?"]


async def test_usage_is_the_decoded_duration_not_the_vendors(fake, transcriber):
    fake.reported_duration_s = 99.0
    result = await transcriber.transcribe(CLIP, TranscribeOptions(), 5.0)
    assert result.usage == Usage(audio_seconds=CLIP.duration_s)
    assert CLIP.duration_s == pytest.approx(1.75, abs=0.01)


async def test_without_formatting_one_segment_of_raw_words(fake):
    provider = DeepgramProvider(config(fake, options={"smart_format": False, "punctuate": False}))
    try:
        result = await provider.transcribe(CLIP, TranscribeOptions(), 5.0)
    finally:
        await provider.close()
    assert result.text == "hello there hi how are you"
    [segment] = result.segments
    assert (segment.text, segment.start_s, segment.end_s, segment.speaker) == (result.text, 0.08, 2.10, "")
    assert [w.text for w in segment.words] == ["hello", "there", "hi", "how", "are", "you"]


async def test_diarization_asks_for_speakers_and_maps_utterances_to_segments(fake):
    provider = DeepgramProvider(config(fake, options={"diarize": True}))
    try:
        assert "diarization" in provider.capabilities.features
        result = await provider.transcribe(CLIP, TranscribeOptions(), 5.0)
    finally:
        await provider.close()
    query = fake.requests[0].query
    assert one(query, "diarize") == "true"
    assert one(query, "utterances") == "true"
    assert [(s.speaker, s.text) for s in result.segments] == [
        ("speaker_0", "Hello there."),
        ("speaker_1", "Hi! How are you?"),
    ]
    assert [w.text for w in result.segments[1].words] == ["Hi!", "How", "are", "you?"]
    assert result.segments[1].words[0] == WordTiming("Hi!", 1.20, 1.38, pytest.approx(0.987), "speaker_1")


async def test_a_request_that_asks_to_diarize_turns_it_on_for_that_request_only(fake):
    provider = DeepgramProvider(config(fake))
    try:
        diarized = await provider.transcribe(CLIP, TranscribeOptions(diarize=True), 5.0)
        plain = await provider.transcribe(CLIP, TranscribeOptions(), 5.0)
    finally:
        await provider.close()
    first, second = fake.requests
    assert (one(first.query, "diarize"), one(first.query, "utterances")) == ("true", "true")
    assert "diarize" not in second.query and "utterances" not in second.query
    assert [w.speaker for s in diarized.segments for w in s.words] == ["speaker_0"] * 2 + ["speaker_1"] * 4
    assert {w.speaker for s in plain.segments for w in s.words} == {""}


async def test_detected_language_is_reported_when_detection_is_on(fake):
    fake.detected_language = "fr"
    provider = DeepgramProvider(config(fake, options={"detect_language": True}))
    try:
        assert "language_detection" in provider.capabilities.features
        result = await provider.transcribe(CLIP, TranscribeOptions(), 5.0)
    finally:
        await provider.close()
    assert one(fake.requests[0].query, "detect_language") == "true"
    assert result.language == "fr"


async def test_capabilities_describe_a_cloud_transcriber(transcriber):
    caps = transcriber.capabilities
    assert caps.operations == frozenset({Operation.TRANSCRIBE})
    assert caps.locality.value == "cloud"
    assert caps.retains_data is True
    assert {"word_timestamps", "diarization"} <= caps.features
    assert (transcriber.name, transcriber.model) == ("deepgram-nova", "nova-3")


# -- synthesis ---------------------------------------------------------------------------


async def test_synthesize_asks_for_wav_linear16_with_the_voice_as_model(fake, synthesizer):
    await synthesizer.synthesize(TEXT, SynthesizeOptions(), 5.0)
    [sent] = fake.requests
    assert (sent.method, sent.path) == ("POST", "/v1/speak")
    assert sent.headers["authorization"] == f"Token {KEY}"
    assert sent.json() == {"text": TEXT}
    assert one(sent.query, "model") == "aura-2-thalia-en"
    assert one(sent.query, "encoding") == "linear16"
    assert one(sent.query, "container") == "wav"
    assert one(sent.query, "sample_rate") == "24000"
    assert "speed" not in sent.query


async def test_synthesized_audio_is_decoded_to_pcm16_with_usage(fake, synthesizer):
    speech = await synthesizer.synthesize(TEXT, SynthesizeOptions(), 5.0)
    expected = fake.tone(len(TEXT) * SECONDS_PER_CHARACTER, 24_000)
    assert speech.sample_rate == 24_000
    assert speech.samples.dtype == np.int16
    np.testing.assert_array_equal(speech.samples, expected)
    assert speech.voice == "aura-2-thalia-en"
    assert speech.usage == Usage(characters=len(TEXT), audio_seconds=len(expected) / 24_000)
    assert synthesizer.model == "aura-2"


async def test_a_configured_voice_and_speed_are_sent(fake):
    voices = ["aura-2-thalia-en", "aura-2-orion-en"]
    provider = DeepgramProvider(config(fake, "synthesize", voices=voices))
    try:
        assert provider.voices() == frozenset(voices)
        speech = await provider.synthesize(TEXT, SynthesizeOptions(voice="aura-2-orion-en", speed=1.2), 5.0)
    finally:
        await provider.close()
    query = fake.requests[0].query
    assert one(query, "model") == "aura-2-orion-en"
    assert one(query, "speed") == "1.2"
    assert speech.voice == "aura-2-orion-en"


async def test_an_unknown_voice_is_an_input_error_listing_the_voices(fake, synthesizer):
    assert synthesizer.voices() == frozenset({"aura-2-thalia-en"})
    with pytest.raises(ProviderInputError, match="aura-2-thalia-en") as caught:
        await synthesizer.synthesize(TEXT, SynthesizeOptions(voice="aura-2-nobody-en"), 5.0)
    assert caught.value.retryable is False
    assert fake.requests == []


async def test_undecodable_audio_is_a_bad_response(fake, synthesizer):
    fake.fail_next(200, "this is not audio")
    with pytest.raises(ProviderBadResponse) as caught:
        await synthesizer.synthesize(TEXT, SynthesizeOptions(), 5.0)
    assert caught.value.retryable is True


async def test_a_voice_deepgram_refuses_is_rejected(fake):
    provider = DeepgramProvider(config(fake, "synthesize", default_voice="nova-3"))
    try:
        with pytest.raises(ProviderRejected, match="HTTP 400: No such model"):
            await provider.synthesize(TEXT, SynthesizeOptions(), 5.0)
    finally:
        await provider.close()


# -- failures: each knob, for both operations -------------------------------------------


async def call(provider: DeepgramProvider, timeout_s: float = 5.0) -> object:
    if Operation.TRANSCRIBE in provider.capabilities.operations:
        return await provider.transcribe(CLIP, TranscribeOptions(), timeout_s)
    return await provider.synthesize(TEXT, SynthesizeOptions(), timeout_s)


def deepgram_error(code: str, message: str) -> dict:
    return {"err_code": code, "err_msg": message, "request_id": "7f0e7c1c-7b8e-4a45-9a57-1d2a58f1c0de"}


STATUS_CASES = {
    "500": (500, ProviderUnavailable, True),
    "502": (502, ProviderUnavailable, True),
    "503": (503, ProviderUnavailable, True),
    "429": (429, ProviderUnavailable, True),
    "408": (408, ProviderUnavailable, True),
    "400": (400, ProviderRejected, False),
    "401": (401, ProviderRejected, False),
    "403": (403, ProviderRejected, False),
    "404": (404, ProviderRejected, False),
    "413": (413, ProviderRejected, False),
    "422": (422, ProviderRejected, False),
}


@pytest.fixture(params=["transcribe", "synthesize"])
async def provider(request, fake) -> AsyncIterator[DeepgramProvider]:
    adapter = DeepgramProvider(config(fake, request.param))
    yield adapter
    await adapter.close()


@pytest.mark.parametrize("case", STATUS_CASES.values(), ids=STATUS_CASES.keys())
async def test_http_status_maps_to_error_type_without_retrying(fake, provider, case):
    status, error_type, retryable = case
    fake.fail_next(status, deepgram_error("INJECTED", f"injected failure {status}"), times=5)
    with pytest.raises(ProviderError) as caught:
        await call(provider)
    assert type(caught.value) is error_type
    assert caught.value.retryable is retryable
    assert f"HTTP {status}: injected failure {status}" in str(caught.value)
    assert len(fake.requests) == 1  # the SDK's own retries are off


async def test_a_deadline_past_the_timeout_is_a_provider_timeout(fake, provider):
    fake.delay_s = 1.0
    with pytest.raises(ProviderTimeout) as caught:
        await call(provider, timeout_s=0.3)
    assert caught.value.retryable is True
    assert len(fake.requests) == 1


async def test_a_slow_first_byte_is_a_provider_timeout(fake, provider):
    fake.slow_first_byte_s = 1.0
    with pytest.raises(ProviderTimeout):
        await call(provider, timeout_s=0.3)


async def test_the_config_timeout_bounds_an_open_deadline(fake):
    adapter = DeepgramProvider(config(fake, timeout_s=0.3))
    fake.delay_s = 1.0
    try:
        with pytest.raises(ProviderTimeout):
            await adapter.transcribe(CLIP, TranscribeOptions(), None)
    finally:
        await adapter.close()


async def test_no_time_left_fails_without_a_request(fake, provider):
    with pytest.raises(ProviderTimeout):
        await call(provider, timeout_s=0.0)
    assert fake.requests == []


async def test_malformed_json_is_a_bad_response(fake, provider):
    fake.malformed = True
    with pytest.raises(ProviderBadResponse) as caught:
        await call(provider)
    assert caught.value.retryable is True


async def test_a_dropped_connection_is_unavailable_and_not_retried(fake, provider):
    fake.drop = True
    with pytest.raises(ProviderUnavailable) as caught:
        await call(provider)
    assert caught.value.retryable is True
    assert len(fake.requests) == 1


async def test_a_wrong_key_is_rejected_by_the_vendor(fake):
    adapter = DeepgramProvider(config(fake, api_key=SecretStr("not-the-key")))
    try:
        with pytest.raises(ProviderRejected, match=r"HTTP 401: Invalid credentials.*api_key_env") as caught:
            await adapter.transcribe(CLIP, TranscribeOptions(), 5.0)
    finally:
        await adapter.close()
    assert caught.value.retryable is False
    assert fake.requests[0].headers["authorization"] == "Token not-the-key"


@pytest.mark.parametrize(
    "body",
    [
        {"request_id": "7f0e7c1c-7b8e-4a45-9a57-1d2a58f1c0de"},
        {"metadata": {}, "results": {"channels": "not a list"}},
        {"metadata": {}, "results": {"channels": [{"alternatives": []}]}},
        {"metadata": {}, "results": {"channels": [{"alternatives": [{"transcript": 7, "words": []}]}]}},
        {
            "metadata": {},
            "results": {
                "channels": [{"alternatives": [{"transcript": "a", "words": [{"word": "a", "start": "x"}]}]}]
            },
        },
        [1, 2, 3],
    ],
    ids=["callback-ack", "channels-not-list", "no-alternatives", "transcript-not-text", "bad-time", "list"],
)
async def test_json_of_the_wrong_shape_is_a_bad_response(fake, transcriber, body):
    fake.fail_next(200, body)
    with pytest.raises(ProviderBadResponse) as caught:
        await transcriber.transcribe(CLIP, TranscribeOptions(), 5.0)
    assert caught.value.retryable is True


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_connection_refused_is_unavailable(fake):
    adapter = DeepgramProvider(config(fake, base_url=f"http://127.0.0.1:{_closed_port()}"))
    try:
        with pytest.raises(ProviderUnavailable):
            await adapter.transcribe(CLIP, TranscribeOptions(), 5.0)
    finally:
        await adapter.close()


# -- configuration -----------------------------------------------------------------------


def test_a_key_is_required_for_the_cloud_api():
    entry = ProviderConfig.model_validate(
        {"name": "dg", "kind": "deepgram", "operation": "transcribe", "model": "nova-3"}
    )
    with pytest.raises(ValueError, match="api_key_env"):
        DeepgramProvider(entry)


def test_understand_is_not_a_deepgram_operation(fake):
    with pytest.raises(ValueError, match="cannot understand"):
        DeepgramProvider(config(fake, "understand", model="nova-3"))


def test_the_default_voice_must_be_among_the_configured_voices(fake):
    with pytest.raises(ValueError, match="default_voice"):
        DeepgramProvider(config(fake, "synthesize", voices=["aura-2-orion-en"]))
