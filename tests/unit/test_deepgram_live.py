"""Deepgram live transcription on the real SDK's websocket client, against a fake /v1/listen socket."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator

import pytest
from pydantic import SecretStr

from gateway.core.errors import ProviderRejected, ProviderTimeout, ProviderUnavailable
from gateway.core.streaming import SpeechEventKind, StreamConfig
from providers.base import StreamingTranscriber
from providers.config import ProviderConfig
from providers.deepgram import DeepgramProvider
from tests.fakes.deepgram_live import FakeDeepgramLive
from tests.live_streams import RATE, Collector, pcm, send_all

# The SDK's websocket client is built on websockets' legacy API, which warns on import.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

KEY = "dg-live-key-456"
BEGIN, END = SpeechEventKind.SPEECH_BEGIN, SpeechEventKind.END_OF_UTTERANCE


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeDeepgramLive]:
    with FakeDeepgramLive(api_key=KEY) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(fake: FakeDeepgramLive) -> None:
    fake.reset()


def entry(fake: FakeDeepgramLive, **overrides: object) -> ProviderConfig:
    fields: dict[str, object] = {
        "name": "deepgram-nova",
        "kind": "deepgram",
        "operation": "transcribe",
        "model": "nova-3",
        "base_url": fake.url,
        "api_key": SecretStr(KEY),
        "timeout_s": 5.0,
        "options": {"stream_stall_s": 0.5},
    }
    return ProviderConfig.model_validate({**fields, **overrides})


@pytest.fixture
async def provider(fake: FakeDeepgramLive) -> AsyncIterator[DeepgramProvider]:
    dg = DeepgramProvider(entry(fake))
    await dg.start()
    yield dg
    await dg.close()


CONFIG = StreamConfig(sample_rate=RATE, language="en", word_timestamps=True)


async def test_declares_streaming_on_the_transcriber_entry(provider: DeepgramProvider) -> None:
    assert "streaming" in provider.capabilities.features
    assert isinstance(provider, StreamingTranscriber)


async def test_interim_and_final_results_and_speech_events(
    provider: DeepgramProvider, fake: FakeDeepgramLive
) -> None:
    stream = await provider.open_stream(CONFIG, 5.0)
    collector = Collector(stream)
    audio = pcm(5.0)
    await send_all(stream, audio)
    await stream.close()
    await collector.finished()
    assert collector.error is None

    assert [r.text for r in collector.finals] == ["Hello from the gateway.", "Streams never stop."]
    first, second = collector.finals
    # Deepgram's start/duration, on the stream's timeline: the first utterance ends with the
    # endpointing silence (500 ms) after its last word.
    assert (first.start_s, first.end_s) == pytest.approx((0.0, 2.1))
    assert first.stability == 1.0 and first.confidence == pytest.approx(0.91)
    assert [(w.text, w.start_s, w.end_s) for w in first.words] == [
        ("Hello", 0.30, 0.62),
        ("from", 0.70, 0.92),
        ("the", 0.95, 1.05),
        ("gateway.", 1.10, 1.60),
    ]
    assert second.end_s == pytest.approx(4.6)
    interims = [r.text for r in collector.interims]
    assert interims[:4] == ["Hello", "Hello from", "Hello from the", "Hello from the gateway."]
    assert all(not r.is_final and r.stability == 0.0 for r in collector.interims)
    # UtteranceEnd follows speech_final here: the utterance ends once, where speech_final put it.
    assert collector.speech == [(BEGIN, 0.3), (END, 2.1), (BEGIN, 2.8), (END, 4.6)]
    assert any(m["type"] == "UtteranceEnd" for m in fake.session.sent)

    session = fake.session
    assert session.path == "/v1/listen"
    assert session.headers["authorization"] == f"Token {KEY}"
    expected = {
        "model": "nova-3",
        "encoding": "linear16",
        "sample_rate": "16000",
        "channels": "1",
        "interim_results": "true",
        "endpointing": "500",
        "utterance_end_ms": "1000",
        "vad_events": "true",
        "punctuate": "true",
        "smart_format": "true",
        "language": "en",
    }
    assert {k: session.query.get(k) for k in expected} == expected
    assert bytes(session.audio) == audio
    assert session.control_types() == ["CloseStream"]
    assert stream.usage().audio_seconds == pytest.approx(5.0)


async def test_without_interim_results_only_finals_reach_the_caller(
    provider: DeepgramProvider, fake: FakeDeepgramLive
) -> None:
    stream = await provider.open_stream(
        StreamConfig(sample_rate=RATE, interim_results=False, endpointing_ms=300, utterance_end_ms=1500), 5.0
    )
    collector = Collector(stream)
    await send_all(stream, pcm(2.5))
    await stream.close()
    await collector.finished()
    assert collector.interims == []
    assert [r.text for r in collector.finals] == ["Hello from the gateway."]
    # Interim results stay on at Deepgram: UtteranceEnd needs them.
    assert fake.session.query["interim_results"] == "true"
    assert fake.session.query["endpointing"] == "300"
    assert fake.session.query["utterance_end_ms"] == "1500"
    assert collector.finals[0].words == ()  # word timestamps were not asked for


async def test_finalize_sends_finalize_and_flushes_what_was_heard(
    provider: DeepgramProvider, fake: FakeDeepgramLive
) -> None:
    stream = await provider.open_stream(CONFIG, 5.0)
    collector = Collector(stream)
    await send_all(stream, pcm(1.0))
    await stream.finalize()
    finals = await collector.until_final()
    assert [f.text for f in finals] == ["Hello from"]
    assert fake.session.control_types() == ["Finalize"]
    assert fake.session.control_at_s == [pytest.approx(1.0)]
    await stream.close()
    await collector.finished()
    assert collector.error is None
    assert fake.session.control_types() == ["Finalize", "CloseStream"]


async def test_keepalive_and_close_flushes_then_ends(
    provider: DeepgramProvider, fake: FakeDeepgramLive
) -> None:
    stream = await provider.open_stream(CONFIG, 5.0)
    collector = Collector(stream)
    await send_all(stream, pcm(0.7))
    await stream.keepalive()
    await stream.close()
    events = await collector.finished()
    assert collector.error is None
    assert [r.text for r in collector.finals] == ["Hello"]
    assert events[-1] == collector.finals[-1]
    assert fake.session.control_types() == ["KeepAlive", "CloseStream"]
    assert any(m["type"] == "Metadata" for m in fake.session.sent)


async def test_single_utterance_closes_after_the_first_utterance(
    provider: DeepgramProvider, fake: FakeDeepgramLive
) -> None:
    stream = await provider.open_stream(StreamConfig(sample_rate=RATE, single_utterance=True), 5.0)
    collector = Collector(stream)
    await send_all(stream, pcm(2.5))
    await collector.finished()
    assert [r.text for r in collector.finals] == ["Hello from the gateway."]
    assert fake.session.control_types() == ["CloseStream"]


async def test_a_dropped_socket_raises_unavailable_and_usage_counts_what_was_sent(
    provider: DeepgramProvider, fake: FakeDeepgramLive
) -> None:
    fake.drop_after_s = 1.0
    stream = await provider.open_stream(CONFIG, 5.0)
    collector = Collector(stream)
    await send_all(stream, pcm(3.0))
    await collector.finished()
    assert isinstance(collector.error, ProviderUnavailable)
    assert collector.error.retryable
    assert "without a close frame" in str(collector.error)
    # Sends after the drop are not counted: the vendor never got them.
    assert 1.0 <= stream.usage().audio_seconds <= 3.0
    # Audio written before the drop was noticed counts: the socket took it, and the vendor may bill it.
    assert stream.usage().audio_seconds >= fake.session.heard_s
    # What Deepgram showed it heard: the end of its last Results, an empty one for silence included.
    reached = max(m["start"] + m["duration"] for m in fake.session.sent if m.get("type") == "Results")
    assert stream.acknowledged_s() == pytest.approx(reached)
    assert 0 < stream.acknowledged_s() <= fake.session.heard_s < stream.usage().audio_seconds


async def test_a_stall_raises_timeout_and_drops_the_socket(
    provider: DeepgramProvider, fake: FakeDeepgramLive
) -> None:
    fake.stall_after_s = 1.0
    stream = await provider.open_stream(CONFIG, 5.0)
    collector = Collector(stream)
    await send_all(stream, pcm(3.0))
    await collector.finished(within_s=5.0)
    assert isinstance(collector.error, ProviderTimeout)
    assert [r.text for r in collector.interims][:1] == ["Hello"]
    for _ in range(100):
        if fake.session.closed:
            break
        await asyncio.sleep(0.02)
    assert fake.session.closed


async def test_an_error_message_raises_unavailable(
    provider: DeepgramProvider, fake: FakeDeepgramLive
) -> None:
    fake.error_after_s = 0.5
    stream = await provider.open_stream(CONFIG, 5.0)
    collector = Collector(stream)
    await send_all(stream, pcm(2.0))
    await collector.finished()
    assert isinstance(collector.error, ProviderUnavailable)
    assert "NET-0001" in str(collector.error) or "did not receive audio" in str(collector.error)


async def test_a_wrong_key_is_rejected_when_the_socket_opens(fake: FakeDeepgramLive) -> None:
    dg = DeepgramProvider(entry(fake, api_key=SecretStr("wrong-key")))
    with pytest.raises(ProviderRejected, match="401"):
        await dg.open_stream(CONFIG, 5.0)
    await dg.close()
    assert fake.sessions == [] and fake.handshakes == 1


async def test_nothing_listening_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = ProviderConfig.model_validate(
        {
            "name": "deepgram-nova",
            "kind": "deepgram",
            "operation": "transcribe",
            "model": "nova-3",
            "base_url": f"http://127.0.0.1:{port}",
            "api_key": SecretStr(KEY),
        }
    )
    dg = DeepgramProvider(config)
    with pytest.raises(ProviderUnavailable):
        await dg.open_stream(CONFIG, 2.0)
    await dg.close()
