"""Live transcription through OpenAI Realtime transcription sessions: the real openai SDK against a
websocket fake of the Realtime API on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator
from decimal import Decimal

import numpy as np
import pytest

from gateway.core.errors import ProviderRejected, ProviderTimeout, ProviderUnavailable
from gateway.core.provider_types import Locality
from gateway.core.streaming import SpeechEvent, SpeechEventKind, StreamConfig, StreamEvent, StreamResult
from gateway.money.pricing import PriceList, default_price_list_path, price_units
from providers.base import StreamingTranscriber, TranscriptionStream
from providers.config import ProviderConfig
from providers.openai import OpenAIProvider
from providers.openai_compatible import OpenAICompatibleProvider
from tests.fakes.openai_realtime_server import FakeOpenAIRealtime

KEY = "sk-test-realtime-0123456789"
FIRST = "hello there general kenobi"
SECOND = "you are a bold one"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAIRealtime]:
    with FakeOpenAIRealtime(api_key=KEY) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(fake: FakeOpenAIRealtime) -> Iterator[None]:
    fake.reset()
    fake.script = [FIRST, SECOND]
    yield
    fake.reset()


def entry(fake: FakeOpenAIRealtime, model: str = "gpt-4o-transcribe", **extra: object) -> ProviderConfig:
    fields: dict[str, object] = {
        "name": "openai-live",
        "kind": "openai",
        "operation": "transcribe",
        "model": model,
        "base_url": fake.base_url,
        "api_key": KEY,
        "timeout_s": 20.0,
        **extra,
    }
    return ProviderConfig.model_validate(fields)


def openai_provider(
    fake: FakeOpenAIRealtime, model: str = "gpt-4o-transcribe", **extra: object
) -> OpenAIProvider:
    return OpenAIProvider(entry(fake, model, **extra))


def tone(seconds: float, rate: int, hz: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (np.sin(2 * np.pi * hz * t) * 12_000).astype("<i2")


def silence(seconds: float, rate: int) -> np.ndarray:
    return np.zeros(round(seconds * rate), dtype="<i2")


def chunks(samples: np.ndarray, rate: int, chunk_s: float = 0.1) -> list[bytes]:
    step = max(round(chunk_s * rate), 1)
    return [samples[i : i + step].tobytes() for i in range(0, len(samples), step)]


async def collect(
    stream: TranscriptionStream, out: list[StreamEvent], changed: asyncio.Condition | None = None
) -> None:
    async for event in stream.events():
        out.append(event)
        if changed is not None:
            async with changed:
                changed.notify_all()


async def until(changed: asyncio.Condition, predicate: Callable[[], object]) -> None:
    async with asyncio.timeout(5), changed:
        await changed.wait_for(predicate)


async def stream_all(stream: TranscriptionStream, pcm: list[bytes]) -> list[StreamEvent]:
    """Send everything as fast as the socket takes it, close, and return every event."""
    out: list[StreamEvent] = []
    reader = asyncio.create_task(collect(stream, out))
    for chunk in pcm:
        await stream.send(chunk)
    await stream.close()
    await asyncio.wait_for(reader, 20)
    return out


def finals(events: list[StreamEvent]) -> list[StreamResult]:
    return [e for e in events if isinstance(e, StreamResult) and e.is_final]


def interims(events: list[StreamEvent]) -> list[StreamResult]:
    return [e for e in events if isinstance(e, StreamResult) and not e.is_final]


def speech(events: list[StreamEvent]) -> list[SpeechEvent]:
    return [e for e in events if isinstance(e, SpeechEvent)]


def two_utterances(rate: int) -> np.ndarray:
    return np.concatenate(
        [silence(0.3, rate), tone(1.5, rate), silence(0.8, rate), tone(1.0, rate), silence(0.8, rate)]
    )


# -- the session ---------------------------------------------------------------------------------


async def test_a_transcribe_entry_streams_and_configures_a_transcription_session(fake):
    provider = openai_provider(fake)
    assert isinstance(provider, StreamingTranscriber)
    assert "streaming" in provider.capabilities.features
    config = StreamConfig(sample_rate=24_000, language="en", endpointing_ms=700)
    stream = await provider.open_stream(config, timeout_s=20.0)
    await stream_all(stream, chunks(tone(0.5, 24_000), 24_000))
    await provider.close()

    (conn,) = fake.connections
    assert conn.path == "/v1/realtime"
    assert conn.query == {"intent": ["transcription"]}
    assert conn.headers["authorization"] == f"Bearer {KEY}"
    (session,) = conn.sessions
    assert session["type"] == "transcription"
    audio_in = session["audio"]["input"]
    assert audio_in["format"] == {"type": "audio/pcm", "rate": 24_000}
    assert audio_in["transcription"] == {"model": "gpt-4o-transcribe", "language": "en"}
    assert audio_in["turn_detection"] == {"type": "server_vad", "silence_duration_ms": 700}


async def test_deltas_are_interims_completions_are_finals_and_vad_gives_speech_events(fake):
    provider = openai_provider(fake)
    stream = await provider.open_stream(StreamConfig(sample_rate=16_000, endpointing_ms=500), timeout_s=20.0)
    events = await stream_all(stream, chunks(two_utterances(16_000), 16_000))
    await provider.close()

    assert [r.text for r in finals(events)] == [FIRST, SECOND]
    first, second = finals(events)
    # Speech begins 0.3 s in, less the server's 300 ms prefix padding; it stops 500 ms into the silence.
    assert first.start_s == pytest.approx(0.0, abs=0.02)
    assert first.end_s == pytest.approx(2.3, abs=0.02)
    assert second.start_s == pytest.approx(2.3, abs=0.02)
    assert second.end_s == pytest.approx(4.1, abs=0.02)
    assert first.stability == 1.0

    kinds = [(e.kind, round(e.at_s, 1)) for e in speech(events)]
    assert kinds == [
        (SpeechEventKind.SPEECH_BEGIN, 0.0),
        (SpeechEventKind.END_OF_UTTERANCE, 2.3),
        (SpeechEventKind.SPEECH_BEGIN, 2.3),
        (SpeechEventKind.END_OF_UTTERANCE, 4.1),
    ]
    # Interims accumulate an item's deltas: each is a prefix of that item's final, and they grow.
    texts = [r.text for r in interims(events)]
    assert texts[:4] == ["hello", "hello there", "hello there general", FIRST]
    assert all(FIRST.startswith(t) or SECOND.startswith(t) for t in texts)
    assert "you are" in texts
    # Every interim comes before the final of its item.
    assert events.index(first) > events.index(interims(events)[3])
    # The trailing silence was committed on close, and its empty transcript produced no result.
    assert fake.connections[0].commits == 1
    assert stream.usage().audio_seconds == pytest.approx(4.4)
    # The server's answer to the closing commit took the audio up to its end.
    assert stream.acknowledged_s() == pytest.approx(4.4)


async def test_interim_results_off_sends_only_finals(fake):
    provider = openai_provider(fake)
    config = StreamConfig(sample_rate=16_000, interim_results=False)
    events = await stream_all(
        await provider.open_stream(config, 20.0), chunks(two_utterances(16_000), 16_000)
    )
    await provider.close()
    assert interims(events) == []
    assert [r.text for r in finals(events)] == [FIRST, SECOND]


async def test_single_utterance_ends_the_stream_after_the_first_final(fake):
    provider = openai_provider(fake)
    stream = await provider.open_stream(StreamConfig(sample_rate=16_000, single_utterance=True), 20.0)
    out: list[StreamEvent] = []
    reader = asyncio.create_task(collect(stream, out))
    for chunk in chunks(two_utterances(16_000), 16_000):
        await stream.send(chunk)
        await asyncio.sleep(0)
    await asyncio.wait_for(reader, 5)
    await stream.close()
    await provider.close()
    assert [r.text for r in finals(out)] == [FIRST]


# -- finalize and commits ------------------------------------------------------------------------


async def test_finalize_commits_and_the_completion_arrives_as_a_final(fake):
    # gpt-realtime-whisper refuses server VAD: only commits end items.
    provider = openai_provider(fake, "gpt-realtime-whisper")
    stream = await provider.open_stream(StreamConfig(sample_rate=24_000), 20.0)
    out: list[StreamEvent] = []
    changed = asyncio.Condition()
    reader = asyncio.create_task(collect(stream, out, changed))
    for chunk in chunks(tone(1.0, 24_000), 24_000):
        await stream.send(chunk)
    await stream.finalize()
    await until(changed, lambda: finals(out))
    conn = fake.connections[0]
    assert conn.commits == 1
    assert conn.sessions[0]["audio"]["input"]["turn_detection"] is None
    assert speech(out) == []
    (first,) = finals(out)
    assert (first.text, first.start_s, first.end_s) == (FIRST, 0.0, pytest.approx(1.0))

    for chunk in chunks(tone(0.6, 24_000), 24_000):
        await stream.send(chunk)
    await stream.close()
    await asyncio.wait_for(reader, 5)
    await provider.close()
    assert conn.commits == 2
    second = finals(out)[1]
    assert (second.text, second.start_s, second.end_s) == (SECOND, pytest.approx(1.0), pytest.approx(1.6))


async def test_finalize_in_mid_speech_closes_the_utterance_under_vad(fake):
    provider = openai_provider(fake)
    stream = await provider.open_stream(StreamConfig(sample_rate=16_000), 20.0)
    out: list[StreamEvent] = []
    changed = asyncio.Condition()
    reader = asyncio.create_task(collect(stream, out, changed))
    for chunk in chunks(tone(1.2, 16_000), 16_000):
        await stream.send(chunk)
    await until(changed, lambda: speech(out))
    await stream.finalize()
    await until(changed, lambda: finals(out))
    assert finals(out)[0].text == FIRST
    assert finals(out)[0].end_s == pytest.approx(1.2)
    # Nothing came after the commit: closing needs no second one.
    await stream.close()
    await asyncio.wait_for(reader, 5)
    await provider.close()
    assert fake.connections[0].commits == 1


async def test_a_commit_of_nothing_is_answered_by_the_empty_buffer_error_and_is_not_a_failure(fake):
    provider = openai_provider(fake, "gpt-realtime-whisper")
    stream = await provider.open_stream(StreamConfig(sample_rate=24_000), 20.0)
    # 50 ms: less than the 100 ms a commit needs.
    events = await stream_all(stream, chunks(tone(0.05, 24_000), 24_000))
    await provider.close()
    assert finals(events) == []
    conn = fake.connections[0]
    assert conn.commits == 1
    assert conn.events[-1]["type"] == "input_audio_buffer.commit"


# -- resampling ----------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [8_000, 16_000, 44_100, 48_000])
async def test_audio_is_resampled_to_24_khz_without_losing_or_adding_samples(fake, rate):
    provider = openai_provider(fake)
    stream = await provider.open_stream(StreamConfig(sample_rate=rate), 20.0)
    # Ragged chunks: the resampler must carry its state across boundaries that fall anywhere.
    samples = tone(2.0, rate, hz=1_000.0)
    pieces = [samples[i : i + 1_237].tobytes() for i in range(0, len(samples), 1_237)]
    await stream_all(stream, pieces)
    await provider.close()

    conn = fake.connections[0]
    assert len(conn.audio) == 24_000 * 2 * 2
    assert stream.usage().audio_seconds == pytest.approx(2.0)
    received = np.frombuffer(bytes(conn.audio), dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(received))
    peak_hz = np.argmax(spectrum) * 24_000 / len(received)
    assert peak_hz == pytest.approx(1_000.0, abs=2.0)


# -- failures ------------------------------------------------------------------------------------


async def test_a_connection_dropped_mid_stream_raises_unavailable(fake):
    fake.drop_after_s = 1.0
    provider = openai_provider(fake)
    stream = await provider.open_stream(StreamConfig(sample_rate=16_000), 20.0)
    with pytest.raises(ProviderUnavailable, match="dropped") as caught:
        await stream_all(stream, chunks(two_utterances(16_000), 16_000))
    assert caught.value.retryable
    # The server's VAD events said how far it had heard; its deltas carry no times and say nothing.
    heard_s = fake.connections[0].audio_s
    assert stream.acknowledged_s() <= heard_s < stream.usage().audio_seconds
    await provider.close()


async def test_a_server_that_stops_answering_raises_timeout(fake):
    fake.stall_after_s = 0.5
    provider = openai_provider(fake, options={"realtime_stall_s": 0.3})
    stream = await provider.open_stream(StreamConfig(sample_rate=16_000), 20.0)
    started = asyncio.get_running_loop().time()
    with pytest.raises(ProviderTimeout):
        await stream_all(stream, chunks(tone(1.0, 16_000), 16_000))
    assert asyncio.get_running_loop().time() - started < 3.0
    await provider.close()


@pytest.mark.parametrize(
    ("error_type", "expected"),
    [("server_error", ProviderUnavailable), ("invalid_request_error", ProviderRejected)],
)
async def test_an_error_event_raises_by_its_type(fake, error_type, expected):
    fake.error_after_s = 0.5
    fake.error_type = error_type
    provider = openai_provider(fake)
    stream = await provider.open_stream(StreamConfig(sample_rate=16_000), 20.0)
    with pytest.raises(expected, match=error_type):
        await stream_all(stream, chunks(tone(1.0, 16_000), 16_000))
    await provider.close()


async def test_a_refused_key_is_rejected_at_open_without_echoing_it(fake):
    fake.reject_auth = True
    provider = openai_provider(fake)
    with pytest.raises(ProviderRejected, match="401") as caught:
        await provider.open_stream(StreamConfig(sample_rate=16_000), 20.0)
    assert not caught.value.retryable
    assert KEY not in str(caught.value)
    await provider.close()


async def test_no_server_listening_is_unavailable(fake):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = OpenAIProvider(entry(fake).model_copy(update={"base_url": f"http://127.0.0.1:{port}/v1"}))
    with pytest.raises(ProviderUnavailable, match="could not connect"):
        await provider.open_stream(StreamConfig(sample_rate=16_000), 20.0)
    await provider.close()


async def test_abort_ends_the_events_without_an_error(fake):
    provider = openai_provider(fake)
    stream = await provider.open_stream(StreamConfig(sample_rate=16_000), 20.0)
    out: list[StreamEvent] = []
    reader = asyncio.create_task(collect(stream, out))
    for chunk in chunks(tone(0.5, 16_000), 16_000):
        await stream.send(chunk)
    await stream.abort()
    await asyncio.wait_for(reader, 5)
    await provider.close()
    assert fake.connections[0].commits == 0


# -- self-hosted servers -------------------------------------------------------------------------


async def test_an_on_prem_openai_compatible_server_streams_through_the_same_adapter(fake):
    config = ProviderConfig.model_validate(
        {
            "name": "voxtral-live",
            "kind": "openai_compatible",
            "operation": "transcribe",
            "model": "mistralai/Voxtral-Mini-4B-Realtime",
            "base_url": fake.base_url,
            "api_key": KEY,
            "options": {"realtime": True, "realtime_sample_rate": 16_000},
        }
    )
    provider = OpenAICompatibleProvider(config)
    assert provider.capabilities.locality is Locality.ON_PREM
    assert "streaming" in provider.capabilities.features
    stream = await provider.open_stream(StreamConfig(sample_rate=16_000), 20.0)
    samples = two_utterances(16_000)
    events = await stream_all(stream, chunks(samples, 16_000))
    await provider.close()

    assert [r.text for r in finals(events)] == [FIRST, SECOND]
    conn = fake.connections[0]
    assert conn.query == {"intent": ["transcription"], "model": ["mistralai/Voxtral-Mini-4B-Realtime"]}
    assert conn.sessions[0]["audio"]["input"]["format"]["rate"] == 16_000
    # The server's own rate: the bytes went through untouched.
    assert bytes(conn.audio) == samples.tobytes()


async def test_an_openai_compatible_entry_streams_only_when_its_options_say_so(fake):
    config = ProviderConfig.model_validate(
        {
            "name": "speaches",
            "kind": "openai_compatible",
            "operation": "transcribe",
            "model": "Systran/faster-whisper-small",
            "base_url": fake.base_url,
        }
    )
    provider = OpenAICompatibleProvider(config)
    assert "streaming" not in provider.capabilities.features
    with pytest.raises(ProviderRejected, match=r"options\.realtime"):
        await provider.open_stream(StreamConfig(sample_rate=16_000), 20.0)
    await provider.close()
    assert fake.connections == []


def test_a_bad_realtime_sample_rate_is_refused_at_load(fake):
    with pytest.raises(ValueError, match="realtime_sample_rate"):
        openai_provider(fake, options={"realtime_sample_rate": 1_000_000})


@pytest.mark.parametrize("model", ["gpt-realtime-whisper", "gpt-live-transcribe", "gpt-4o-transcribe"])
async def test_a_streamed_minute_is_priced_from_the_price_book(fake, model):
    fake.script = []
    provider = openai_provider(fake, model)
    stream = await provider.open_stream(StreamConfig(sample_rate=8_000, interim_results=False), 20.0)
    await stream_all(stream, chunks(silence(60.0, 8_000), 8_000, chunk_s=1.0))
    await provider.close()
    book = PriceList.load(default_price_list_path())
    cost = price_units(book.prices[f"openai/{model}"], stream.usage())
    assert cost == {"gpt-4o-transcribe": Decimal("0.006")}.get(model, Decimal("0.017"))


# -- vLLM's dialect ------------------------------------------------------------------------------


def vllm_provider(fake: FakeOpenAIRealtime, **options: object) -> OpenAICompatibleProvider:
    config = ProviderConfig.model_validate(
        {
            "name": "voxtral-live",
            "kind": "openai_compatible",
            "operation": "transcribe",
            "model": "voxtral-realtime",
            "base_url": fake.base_url,
            "api_key": KEY,
            "options": {"realtime": True, "realtime_protocol": "vllm", **options},
        }
    )
    return OpenAICompatibleProvider(config)


async def test_vllm_names_the_model_starts_with_a_commit_and_ends_with_a_final_commit(fake):
    fake.protocol = "vllm"
    provider = vllm_provider(fake)
    assert provider.capabilities.locality is Locality.ON_PREM
    stream = await provider.open_stream(StreamConfig(sample_rate=16_000), 20.0)
    samples = tone(1.5, 16_000)
    events = await stream_all(stream, chunks(samples, 16_000))
    await provider.close()

    conn = fake.connections[0]
    assert conn.sessions == [{"model": "voxtral-realtime"}]
    assert [e["type"] for e in conn.events] == [
        "session.update",
        "input_audio_buffer.commit",
        "input_audio_buffer.commit",
    ]
    assert conn.events[-1].get("final") is True
    assert bytes(conn.audio) == samples.tobytes()  # 16 kHz: the server's own rate
    texts = [r.text for r in interims(events)]
    assert texts[:2] == ["hello", "hello there"]
    (final,) = finals(events)
    assert (final.text, final.start_s, final.end_s) == (FIRST, 0.0, pytest.approx(1.5))
    assert speech(events) == []


async def test_vllm_finalize_holds_audio_until_the_next_transcription_starts(fake):
    fake.protocol = "vllm"
    fake.done_delay_s = 0.2  # audio sent before the done would be dropped by the server
    provider = vllm_provider(fake)
    stream = await provider.open_stream(StreamConfig(sample_rate=16_000), 20.0)
    out: list[StreamEvent] = []
    changed = asyncio.Condition()
    reader = asyncio.create_task(collect(stream, out, changed))
    for chunk in chunks(tone(1.0, 16_000), 16_000):
        await stream.send(chunk)
    await stream.finalize()
    for chunk in chunks(tone(1.0, 16_000), 16_000):
        await stream.send(chunk)
    await until(changed, lambda: finals(out))
    await stream.close()
    await asyncio.wait_for(reader, 5)
    await provider.close()

    conn = fake.connections[0]
    assert conn.dropped == 0
    assert len(conn.audio) == 2 * 16_000 * 2
    first, second = finals(out)
    assert (first.text, first.start_s, first.end_s) == (FIRST, 0.0, pytest.approx(1.0))
    assert (second.text, second.start_s, second.end_s) == (SECOND, pytest.approx(1.0), pytest.approx(2.0))
    assert [e.get("final", False) for e in conn.events if e["type"] == "input_audio_buffer.commit"] == [
        False,
        True,
        False,
        True,
    ]


@pytest.mark.parametrize(
    ("code", "expected"), [("processing_error", ProviderUnavailable), ("invalid_audio", ProviderRejected)]
)
async def test_vllm_error_events_raise_by_code(fake, code, expected):
    fake.protocol = "vllm"
    fake.error_after_s = 0.5
    fake.error_code = code
    provider = vllm_provider(fake)
    stream = await provider.open_stream(StreamConfig(sample_rate=16_000), 20.0)
    with pytest.raises(expected, match=code):
        await stream_all(stream, chunks(tone(1.0, 16_000), 16_000))
    await provider.close()


async def test_vllm_stall_and_drop_raise_timeout_and_unavailable(fake):
    fake.protocol = "vllm"
    fake.done_delay_s = 2.0
    provider = vllm_provider(fake, realtime_stall_s=0.3)
    stream = await provider.open_stream(StreamConfig(sample_rate=16_000), 20.0)
    with pytest.raises(ProviderTimeout):
        await stream_all(stream, chunks(tone(0.5, 16_000), 16_000))
    fake.done_delay_s = 0.0
    fake.drop_after_s = 0.5
    stream = await provider.open_stream(StreamConfig(sample_rate=16_000), 20.0)
    with pytest.raises(ProviderUnavailable):
        await stream_all(stream, chunks(tone(1.0, 16_000), 16_000))
    await provider.close()
