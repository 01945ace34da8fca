"""AssemblyAI Universal-Streaming v3 on the real SDK's asyncio client, against a fake /v3/ws socket."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator

import pytest

from gateway.core.errors import ProviderRejected, ProviderTimeout, ProviderUnavailable
from gateway.core.streaming import SpeechEventKind, StreamConfig
from providers.assemblyai import AssemblyAIProvider
from providers.base import StreamingTranscriber
from providers.config import ProviderConfig
from tests.fakes.assemblyai_live import FakeAssemblyAILive
from tests.live_streams import RATE, Collector, pcm, send_all

# The SDK still calls pydantic's v1-style methods, and reads ConnectionClosed.code, which websockets
# deprecates.
pytestmark = [
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:websockets.exceptions"),
]

KEY = "aai-live-key-789"
BEGIN, END = SpeechEventKind.SPEECH_BEGIN, SpeechEventKind.END_OF_UTTERANCE
CONFIG = StreamConfig(sample_rate=RATE, language="en", word_timestamps=True)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAssemblyAILive]:
    with FakeAssemblyAILive(api_key=KEY) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(fake: FakeAssemblyAILive) -> None:
    fake.reset()


def entry(fake: FakeAssemblyAILive, **overrides: object) -> ProviderConfig:
    fields: dict[str, object] = {
        "name": "assemblyai-universal",
        "kind": "assemblyai",
        "operation": "transcribe",
        "model": "universal",
        "api_key": KEY,
        "base_url": "https://api.assemblyai.invalid",
        "timeout_s": 5.0,
        "options": {"streaming_url": fake.url, "stream_stall_s": 0.5},
    }
    return ProviderConfig(**{**fields, **overrides})


@pytest.fixture
async def provider(fake: FakeAssemblyAILive) -> AsyncIterator[AssemblyAIProvider]:
    aai = AssemblyAIProvider(entry(fake))
    await aai.start()
    yield aai
    await aai.close()


async def test_declares_streaming_on_the_transcriber_entry(provider: AssemblyAIProvider) -> None:
    assert "streaming" in provider.capabilities.features
    assert isinstance(provider, StreamingTranscriber)


async def test_turns_become_interim_and_final_results(
    provider: AssemblyAIProvider, fake: FakeAssemblyAILive
) -> None:
    stream = await provider.open_stream(CONFIG, 5.0)
    collector = Collector(stream)
    audio = pcm(5.0)
    await send_all(stream, audio)
    await stream.close()
    await collector.finished()
    assert collector.error is None

    # Finals are the formatted turns; the unformatted end of a turn was one more interim.
    assert [r.text for r in collector.finals] == ["Hello from the gateway.", "Streams never stop."]
    first, second = collector.finals
    assert (first.start_s, first.end_s) == pytest.approx((0.3, 1.6))
    assert (second.start_s, second.end_s) == pytest.approx((2.8, 4.1))
    assert first.stability == 1.0
    assert first.confidence == pytest.approx((0.95 * 3 + 0.91) / 4)
    assert [(w.text, w.start_s, w.end_s) for w in first.words] == [
        ("Hello", 0.30, 0.62),
        ("from", 0.70, 0.92),
        ("the", 0.95, 1.05),
        ("gateway.", 1.10, 1.60),
    ]
    interims = collector.interims
    assert [r.text for r in interims[:3]] == ["hello", "hello from", "hello from the"]
    # The word still being spoken is not settled yet: stability counts the settled words.
    partial = next(r for r in interims if r.text == "hello from the gateway" and r.stability < 1.0)
    assert partial.stability == pytest.approx(3 / 4)
    assert collector.speech == [(BEGIN, 0.3), (END, 1.6), (BEGIN, 2.8), (END, 4.1)]

    session = fake.session
    assert session.path == "/v3/ws"
    assert session.headers["authorization"] == KEY
    expected = {
        "sample_rate": "16000",
        "encoding": "pcm_s16le",
        "speech_model": "universal-streaming-english",
        "format_turns": "True",
        "min_turn_silence": "500",
        "max_turn_silence": "1000",
    }
    assert {k: session.query.get(k) for k in expected} == expected
    assert bytes(session.audio) == audio
    # 100 ms per message: within the 50-1000 ms the endpoint accepts.
    assert session.audio_messages == 50
    assert session.control_types() == ["Terminate"]
    assert stream.usage().audio_seconds == pytest.approx(5.0)


async def test_small_sends_are_gathered_and_the_tail_padded_to_the_minimum_message(
    provider: AssemblyAIProvider, fake: FakeAssemblyAILive
) -> None:
    stream = await provider.open_stream(StreamConfig(sample_rate=RATE), 5.0)
    collector = Collector(stream)
    audio = pcm(0.93)
    await send_all(stream, audio, chunk_s=0.01)
    await stream.close()
    await collector.finished()
    # 9 messages of 100 ms, then the 30 ms tail padded with silence to 50 ms.
    assert fake.session.audio_messages == 10
    assert bytes(fake.session.audio) == audio + bytes(int(0.02 * RATE) * 2)
    assert stream.usage().audio_seconds == pytest.approx(0.93)
    assert [r.text for r in collector.finals] == ["Hello from"]
    assert collector.finals[0].words == ()


async def test_finalize_sends_force_endpoint_and_ends_the_turn(
    provider: AssemblyAIProvider, fake: FakeAssemblyAILive
) -> None:
    stream = await provider.open_stream(CONFIG, 5.0)
    collector = Collector(stream)
    await send_all(stream, pcm(1.0))
    await stream.finalize()
    finals = await collector.until_final()
    assert [f.text for f in finals] == ["Hello from"]
    assert fake.session.control_types() == ["ForceEndpoint"]
    assert fake.session.control_at_s == [pytest.approx(1.0)]
    assert collector.speech == [(BEGIN, 0.3), (END, 0.92)]
    await stream.keepalive()
    await stream.close()
    await collector.finished()
    assert collector.error is None
    assert fake.session.control_types() == ["ForceEndpoint", "KeepAlive", "Terminate"]


async def test_without_interim_results_only_finals_reach_the_caller(
    provider: AssemblyAIProvider, fake: FakeAssemblyAILive
) -> None:
    stream = await provider.open_stream(
        StreamConfig(sample_rate=RATE, interim_results=False, endpointing_ms=300, utterance_end_ms=2000), 5.0
    )
    collector = Collector(stream)
    await send_all(stream, pcm(2.0))
    await stream.close()
    await collector.finished()
    assert collector.interims == []
    assert [r.text for r in collector.finals] == ["Hello from the gateway."]
    assert fake.session.query["min_turn_silence"] == "300"
    assert fake.session.query["max_turn_silence"] == "2000"


async def test_a_dropped_socket_raises_unavailable(
    provider: AssemblyAIProvider, fake: FakeAssemblyAILive
) -> None:
    fake.drop_after_s = 1.0
    stream = await provider.open_stream(CONFIG, 5.0)
    collector = Collector(stream)
    await send_all(stream, pcm(3.0))
    await collector.finished()
    assert isinstance(collector.error, ProviderUnavailable)
    assert "1006" in str(collector.error)
    assert 1.0 <= stream.usage().audio_seconds <= 3.0
    # What AssemblyAI showed it heard: the end of the last word of its turns, or a later speech start.
    reached = max(
        [w["end"] / 1000 for m in fake.session.sent if m.get("type") == "Turn" for w in m["words"]]
        + [m["timestamp"] / 1000 for m in fake.session.sent if m.get("type") == "SpeechStarted"]
    )
    assert stream.acknowledged_s() == pytest.approx(reached)
    assert 0 < stream.acknowledged_s() <= fake.session.heard_s


async def test_a_server_error_raises_unavailable(
    provider: AssemblyAIProvider, fake: FakeAssemblyAILive
) -> None:
    fake.error_after_s = 0.5
    stream = await provider.open_stream(CONFIG, 5.0)
    collector = Collector(stream)
    await send_all(stream, pcm(2.0))
    await collector.finished()
    assert isinstance(collector.error, ProviderUnavailable)
    assert "3005" in str(collector.error)


async def test_a_stall_raises_timeout(provider: AssemblyAIProvider, fake: FakeAssemblyAILive) -> None:
    fake.stall_after_s = 1.0
    stream = await provider.open_stream(CONFIG, 5.0)
    collector = Collector(stream)
    await send_all(stream, pcm(3.0))
    await stream.close()
    await collector.finished(within_s=5.0)
    assert isinstance(collector.error, ProviderTimeout)
    assert fake.session.control_types() == ["Terminate"]


async def test_a_wrong_key_is_rejected_when_the_session_opens(fake: FakeAssemblyAILive) -> None:
    aai = AssemblyAIProvider(entry(fake, api_key="wrong-key"))
    with pytest.raises(ProviderRejected, match="401"):
        await aai.open_stream(CONFIG, 5.0)
    await aai.close()
    assert fake.sessions == [] and fake.handshakes == 1


async def test_the_streaming_host_follows_base_url_without_streaming_url(fake: FakeAssemblyAILive) -> None:
    aai = AssemblyAIProvider(entry(fake, base_url=fake.url, options={}))
    stream = await aai.open_stream(StreamConfig(sample_rate=8_000, language="es"), 5.0)
    await stream.close()
    assert [e async for e in stream.events()] == []
    assert fake.session.query["speech_model"] == "universal-streaming-multilingual"
    assert fake.session.query["sample_rate"] == "8000"
    await aai.close()


async def test_abort_ends_events_without_terminating(
    provider: AssemblyAIProvider, fake: FakeAssemblyAILive
) -> None:
    stream = await provider.open_stream(CONFIG, 5.0)
    collector = Collector(stream)
    await send_all(stream, pcm(1.0))
    await stream.abort()
    await collector.finished()
    assert collector.error is None
    for _ in range(100):
        if fake.session.closed:
            break
        await asyncio.sleep(0.02)
    assert fake.session.closed
    assert "Terminate" not in fake.session.control_types()


def test_unknown_streaming_model_is_refused_at_start(fake: FakeAssemblyAILive) -> None:
    with pytest.raises(ValueError, match="streaming_model"):
        AssemblyAIProvider(entry(fake, options={"streaming_model": "nope"}))


async def test_single_utterance_terminates_after_the_first_turn(
    provider: AssemblyAIProvider, fake: FakeAssemblyAILive
) -> None:
    stream = await provider.open_stream(StreamConfig(sample_rate=RATE, single_utterance=True), 5.0)
    collector = Collector(stream)
    await send_all(stream, pcm(2.5))
    await collector.finished()
    assert collector.error is None
    assert [r.text for r in collector.finals] == ["Hello from the gateway."]
    assert fake.session.control_types() == ["Terminate"]


async def test_nothing_listening_is_unavailable(fake: FakeAssemblyAILive) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    aai = AssemblyAIProvider(entry(fake, options={"streaming_url": f"http://127.0.0.1:{port}"}))
    with pytest.raises(ProviderUnavailable):
        await aai.open_stream(CONFIG, 2.0)
    await aai.close()
