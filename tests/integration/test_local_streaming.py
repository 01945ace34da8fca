"""Live transcription on the local faster-whisper engine (tiny.en), at the provider, with real recordings.

Audio is streamed faster than real time (real-time pacing is the benchmark's business), so these tests
check what the engine decides, not how fast it decides it.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator

import numpy as np
import pytest

from gateway.core.errors import ProviderBusy, ProviderInputError
from gateway.core.provider_types import TranscribeOptions
from gateway.core.streaming import SpeechEvent, SpeechEventKind, StreamConfig, StreamEvent, StreamResult
from gateway.settings import WhisperSettings
from providers.faster_whisper import FasterWhisperTranscriber
from tests import speech
from tests.audio_files import recording

pytestmark = [pytest.mark.engines, pytest.mark.timeout(120)]

CHUNK_S = 0.1


@pytest.fixture(scope="module")
async def engine() -> AsyncIterator[FasterWhisperTranscriber]:
    provider = FasterWhisperTranscriber(WhisperSettings(workers=2, max_streams=2))
    await provider.start()
    yield provider
    await provider.close()


def silence(seconds: float, rate: int) -> bytes:
    return b"\0\0" * round(seconds * rate)


async def feed(stream, pcm: bytes, rate: int, pace_s: float = 0.0, close: bool = True) -> None:
    step = round(CHUNK_S * rate) * 2
    for offset in range(0, len(pcm), step):
        await stream.send(pcm[offset : offset + step])
        await asyncio.sleep(pace_s)
    if close:
        await stream.close()


async def collect(stream) -> list[StreamEvent]:
    return [event async for event in stream.events()]


def finals(events: list[StreamEvent]) -> list[StreamResult]:
    return [e for e in events if isinstance(e, StreamResult) and e.is_final]


def speech_events(events: list[StreamEvent], kind: SpeechEventKind) -> list[SpeechEvent]:
    return [e for e in events if isinstance(e, SpeechEvent) and e.kind is kind]


async def test_the_engine_declares_streaming(engine):
    assert "streaming" in engine.capabilities.features


async def test_finals_are_as_good_as_batch_transcription_of_the_same_audio(engine):
    clip = speech.real_clip("long_librivox_sense_sensibility_x5")  # five sentences, 0.5 s apart
    stream = await engine.open_stream(StreamConfig(sample_rate=clip.rate), timeout_s=5)
    events, _ = await asyncio.gather(
        collect(stream), feed(stream, clip.pcm() + silence(1.0, clip.rate), clip.rate)
    )
    streamed = " ".join(r.text for r in finals(events))

    from gateway.core.audio import encode_wav

    batch = await engine.transcribe(
        recording(encode_wav(clip.samples, clip.rate)), TranscribeOptions(language="en"), None
    )
    stream_wer = speech.wer([clip.reference], [streamed])
    batch_wer = speech.wer([clip.reference], [batch.text])
    assert stream_wer <= max(1.5 * batch_wer, batch_wer + 0.05), (streamed, batch.text)
    # Each sentence is an utterance of its own, timed where it is in the audio.
    results = finals(events)
    assert len(results) >= 3
    assert all(a.end_s <= b.start_s + 1e-6 for a, b in itertools.pairwise(results))
    assert results[-1].end_s <= clip.duration_s + 1.0
    assert stream.usage().audio_seconds == pytest.approx(clip.duration_s + 1.0, abs=0.01)
    assert stream.usage().compute_seconds > 0


async def test_each_word_said_once_is_finalized_once(engine):
    """ "one two three", each word its own utterance, streamed as "1 1 2 3 3": a final decoded on a short
    window stopped without closing its segment ("one" as "1 1"). Such a final is decoded again on the full
    window."""
    clip = speech.real_clip("uberi_one_two_three")
    stream = await engine.open_stream(StreamConfig(sample_rate=clip.rate), timeout_s=5)
    events, _ = await asyncio.gather(
        collect(stream), feed(stream, clip.pcm() + silence(1.5, clip.rate), clip.rate)
    )
    said = [r.text.lower().strip(" .,!").split() for r in finals(events)]
    assert len(said) == 3, said
    for words, spellings in zip(said, ({"one", "1"}, {"two", "2"}, {"three", "3"}), strict=True):
        assert len(words) == 1 and words[0] in spellings, said


async def test_interim_results_come_first_and_grow_into_the_final(engine):
    clip = speech.real_clip("librivox_sense_sensibility_0870")  # 7.1 s, one sentence
    stream = await engine.open_stream(StreamConfig(sample_rate=clip.rate, word_timestamps=True), timeout_s=5)
    # A quarter of real time is still fast, and slow enough for several decode steps within the sentence.
    pcm = clip.pcm() + silence(1.0, clip.rate)
    events, _ = await asyncio.gather(collect(stream), feed(stream, pcm, clip.rate, pace_s=CHUNK_S / 4))
    results = [e for e in events if isinstance(e, StreamResult)]
    assert isinstance(events[0], SpeechEvent) and events[0].kind is SpeechEventKind.SPEECH_BEGIN
    interims = [r for r in results if not r.is_final]
    assert interims, events
    first_final = next(i for i, r in enumerate(results) if r.is_final)
    assert first_final > 0 and not results[0].is_final
    assert all(0.0 <= r.stability < 1.0 for r in interims)
    final = results[first_final]
    assert final.stability == 1.0
    assert speech.wer([clip.reference], [final.text]) <= 0.25, final.text
    # Words are timed on the stream's timeline, in order, inside the final's span.
    assert len(final.words) >= 15
    starts = [w.start_s for w in final.words]
    assert starts == sorted(starts)
    assert final.start_s - 0.05 <= final.words[0].start_s < final.words[-1].end_s <= final.end_s + 0.3


async def test_no_interim_results_when_the_caller_wants_none(engine):
    clip = speech.real_clip("librivox_sense_sensibility_0880")
    stream = await engine.open_stream(StreamConfig(sample_rate=clip.rate, interim_results=False), timeout_s=5)
    pcm = clip.pcm() + silence(1.0, clip.rate)
    events, _ = await asyncio.gather(collect(stream), feed(stream, pcm, clip.rate, pace_s=CHUNK_S / 4))
    results = [e for e in events if isinstance(e, StreamResult)]
    assert results and all(r.is_final for r in results)
    assert all(r.words == () for r in results)  # word timestamps were not asked for


async def test_a_pause_longer_than_the_endpointing_silence_ends_the_utterance(engine):
    first = speech.real_clip("librivox_sense_sensibility_0880")
    second = speech.real_clip("librivox_sense_sensibility_0930")
    rate = first.rate
    pcm = first.pcm() + silence(1.5, rate) + second.pcm() + silence(1.5, rate)
    stream = await engine.open_stream(StreamConfig(sample_rate=rate, endpointing_ms=600), timeout_s=5)
    events, _ = await asyncio.gather(collect(stream), feed(stream, pcm, rate))
    ends = speech_events(events, SpeechEventKind.END_OF_UTTERANCE)
    begins = speech_events(events, SpeechEventKind.SPEECH_BEGIN)
    assert len(ends) == 2 and len(begins) == 2, events
    gap_start = first.duration_s
    assert begins[0].at_s < ends[0].at_s <= gap_start + 1.5
    assert gap_start + 1.5 <= begins[1].at_s < ends[1].at_s
    # Each END_OF_UTTERANCE follows the final of its utterance.
    for end in ends:
        before = events[: events.index(end)]
        assert finals(before) and finals(before)[-1].end_s <= end.at_s + 1e-6
    assert speech.wer([first.reference, second.reference], [r.text for r in finals(events)]) <= 0.3


async def test_single_utterance_ends_the_stream_after_the_first_utterance(engine):
    first = speech.real_clip("librivox_sense_sensibility_0880")
    second = speech.real_clip("librivox_sense_sensibility_0930")
    rate = first.rate
    pcm = first.pcm() + silence(1.5, rate) + second.pcm() + silence(1.5, rate)
    stream = await engine.open_stream(StreamConfig(sample_rate=rate, single_utterance=True), timeout_s=5)
    events, _ = await asyncio.gather(collect(stream), feed(stream, pcm, rate, close=False))
    assert len(finals(events)) == 1
    assert events[-1] == speech_events(events, SpeechEventKind.END_OF_UTTERANCE)[0]
    assert speech.wer([first.reference], [finals(events)[0].text]) <= 0.3


async def test_finalize_flushes_what_was_heard_without_waiting_for_silence(engine):
    clip = speech.real_clip("librivox_sense_sensibility_0890")
    stream = await engine.open_stream(StreamConfig(sample_rate=clip.rate), timeout_s=5)
    seen: list[StreamEvent] = []

    async def until_final() -> None:
        async for event in stream.events():
            seen.append(event)
            if isinstance(event, StreamResult) and event.is_final:
                return

    reader = asyncio.create_task(until_final())
    # The speech without its trailing silence: no endpoint can fire, only FINALIZE ends it.
    voiced = clip.samples[: int(np.flatnonzero(np.abs(clip.samples) > 1000)[-1]) + 1]
    await feed(stream, voiced.astype("<i2").tobytes(), clip.rate, close=False)
    await stream.finalize()
    await asyncio.wait_for(reader, timeout=30)
    final = finals(seen)[0]
    assert speech.wer([clip.reference], [final.text]) <= 0.3, final.text
    assert not speech_events(seen, SpeechEventKind.END_OF_UTTERANCE)  # the speech did not end; it was cut
    assert final.end_s == pytest.approx(voiced.size / clip.rate, abs=0.01)
    await stream.close()
    rest = await asyncio.wait_for(collect(stream), timeout=30)
    assert finals(rest) == []


async def test_other_sample_rates_are_resampled(engine):
    clip = speech.real_clip("fleurs_en_us_003")  # 48 kHz Ogg/Opus, decoded to PCM
    stream = await engine.open_stream(StreamConfig(sample_rate=clip.rate), timeout_s=5)
    events, _ = await asyncio.gather(
        collect(stream), feed(stream, clip.pcm() + silence(1.0, clip.rate), clip.rate)
    )
    assert speech.wer([clip.reference], [" ".join(r.text for r in finals(events))]) <= 0.3
    assert finals(events)[-1].end_s <= clip.duration_s + 1.0


async def test_streams_past_the_cap_are_refused_as_busy_until_one_ends(engine):
    config = StreamConfig(sample_rate=16_000)
    first = await engine.open_stream(config, timeout_s=5)
    second = await engine.open_stream(config, timeout_s=5)
    with pytest.raises(ProviderBusy) as refused:
        await engine.open_stream(config, timeout_s=5)
    assert refused.value.retryable and "MAX_STREAMS" in str(refused.value)
    await first.close()
    assert await collect(first) == []
    third = await engine.open_stream(config, timeout_s=5)
    for stream in (second, third):
        await stream.abort()
    # Both slots are free again.
    again = [await engine.open_stream(config, timeout_s=5) for _ in range(2)]
    for stream in again:
        await stream.abort()


async def test_abort_stops_at_once_even_mid_decode(engine):
    clip = speech.real_clip("long_fleurs_dev_x5")
    stream = await engine.open_stream(StreamConfig(sample_rate=clip.rate), timeout_s=5)
    got: list[StreamEvent] = []
    decoding = asyncio.Event()

    async def read() -> None:
        async for event in stream.events():
            got.append(event)
            if isinstance(event, StreamResult):
                decoding.set()

    reader = asyncio.create_task(read())
    await feed(stream, clip.pcm(), clip.rate, close=False)
    await asyncio.wait_for(decoding.wait(), timeout=60)  # decoding is under way
    started = time.perf_counter()
    await stream.abort()
    await asyncio.wait_for(reader, timeout=1.0)
    assert time.perf_counter() - started < 0.5
    count = len(got)
    await stream.send(clip.pcm()[:3200])  # ignored: the stream is over
    await asyncio.sleep(0.2)
    assert len(got) == count


async def test_a_language_the_model_lacks_is_refused_at_open(engine):
    with pytest.raises(ProviderInputError):
        await engine.open_stream(StreamConfig(sample_rate=16_000, language="fr"), timeout_s=5)


async def test_an_utterance_longer_than_the_buffer_is_finalized_in_parts(engine):
    clip = speech.real_clip("long_librivox_sense_sensibility_x5")  # 27 s; its 0.5 s gaps do not end it
    config = StreamConfig(sample_rate=clip.rate, endpointing_ms=3000)
    stream = await engine.open_stream(config, timeout_s=5)
    pcm = clip.pcm() + silence(3.5, clip.rate)
    events, _ = await asyncio.gather(collect(stream), feed(stream, pcm, clip.rate, pace_s=CHUNK_S / 4))
    results = finals(events)
    # Whisper sees at most 30 s: the committed head of the utterance is finalized every 15 s or so.
    assert len(results) >= 2, events
    assert results[0].start_s < 1.0 and results[-1].end_s > clip.duration_s - 1.0
    for before, after in itertools.pairwise(results):
        assert after.start_s == pytest.approx(before.end_s, abs=1e-6)
        assert after.end_s - after.start_s <= 25.0
    assert len(speech_events(events, SpeechEventKind.END_OF_UTTERANCE)) == 1
    assert speech.wer([clip.reference], [" ".join(r.text for r in results)]) <= 0.2
