"""Concurrent whole-file requests on the local Whisper engine (tiny.en), their windows decoded together in
batched model calls: what each request gets back against the same recordings decoded one at a time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from gateway.core.audio import encode_wav
from gateway.core.errors import ProviderBusy, ProviderTimeout
from gateway.core.provider_types import TranscribeOptions, Transcript
from gateway.settings import WhisperSettings
from providers.faster_whisper import FasterWhisperTranscriber
from tests import speech
from tests.audio_files import recording

pytestmark = [pytest.mark.engines, pytest.mark.timeout(300)]

# Word errors the batched decodes may add over the set, against one at a time (the same model, beam and
# windows; a batch decodes each window once, at temperature 0, where alone Whisper may fall back, and its
# encoder reads the longest window and a few seconds of silence, not 30 s: that moves a word here and
# there either way, as "And" at the start of librivox_sense_sensibility_0870).
EXTRA_ERRORS = 0.01
# ... but never less than this many words on a small set, where one such word is past 1 %.
EXTRA_WORDS = 2
ENGLISH = TranscribeOptions(language="en")


def _shorts() -> list[speech.RealClip]:
    ids = [clip_id for clip_id, entry in speech.manifest().items() if entry["subset"] == "short"]
    return [speech.real_clip(clip_id) for clip_id in ids]


def _wav(clip: speech.RealClip) -> bytes:
    return encode_wav(clip.samples, clip.rate)


@pytest.fixture(scope="module")
async def engines() -> AsyncIterator[tuple[FasterWhisperTranscriber, FasterWhisperTranscriber]]:
    batched = FasterWhisperTranscriber(WhisperSettings(batch_size=8, max_queued=32))
    alone = FasterWhisperTranscriber(WhisperSettings(batch_size=1), name="one-by-one")
    for engine in (batched, alone):
        await engine.start()
    yield batched, alone
    for engine in (batched, alone):
        await engine.close()


async def _transcribe(
    engine: FasterWhisperTranscriber, clip: speech.RealClip, options: TranscribeOptions = ENGLISH
) -> Transcript:
    return await engine.transcribe(recording(_wav(clip)), options, 120)


def _errors(clips: list[speech.RealClip], texts: list[str]) -> tuple[int, int]:
    """Word errors over the set, and its reference words."""
    wrong = total = 0
    for clip, text in zip(clips, texts, strict=True):
        errors, _, words = speech.errors(clip.reference, text)
        wrong, total = wrong + errors, total + words
    return wrong, total


def _no_worse(clips: list[speech.RealClip], texts: list[str], alone: list[str]) -> bool:
    wrong, total = _errors(clips, texts)
    expected, _ = _errors(clips, alone)
    return wrong <= expected + max(EXTRA_WORDS, EXTRA_ERRORS * total)


async def test_concurrent_requests_share_model_calls_and_score_as_one_at_a_time(engines):
    batched, alone = engines
    clips = _shorts()
    one_at_a_time = [(await _transcribe(alone, clip)).text for clip in clips]

    calls = batched._batcher.calls
    started = time.perf_counter()
    together = await asyncio.gather(*(_transcribe(batched, clip) for clip in clips))
    wall_s = time.perf_counter() - started

    assert batched._batcher.calls - calls < len(clips) / 2
    texts = [reply.text for reply in together]
    assert _no_worse(clips, texts, one_at_a_time), (texts, one_at_a_time)
    # Each request is billed its share of the calls it was in: together no more than the threads held
    # (two workers and the one that finds the speech).
    computes = [reply.usage.compute_seconds for reply in together]
    assert all(c > 0 for c in computes)
    assert sum(computes) <= 3 * wall_s


async def test_a_lone_request_is_decoded_as_it_always_was(engines):
    batched, alone = engines
    clip = _shorts()[0]
    reply, expected = await _transcribe(batched, clip), await _transcribe(alone, clip)
    assert reply.text == expected.text
    assert [s.start_s for s in reply.segments] == [s.start_s for s in expected.segments]


async def test_batched_words_are_timed_within_their_own_recording(engines):
    batched, _ = engines
    clips = _shorts()[:6]
    options = TranscribeOptions(language="en", word_timestamps=True)
    replies = await asyncio.gather(*(_transcribe(batched, clip, options) for clip in clips))
    for clip, reply in zip(clips, replies, strict=True):
        words = [w for seg in reply.segments for w in seg.words]
        assert words, clip.id
        starts = [w.start_s for w in words]
        assert starts == sorted(starts)
        assert all(0 <= w.start_s <= w.end_s <= clip.duration_s + 0.01 for w in words), clip.id
        assert speech.heard_share(clip.reference, reply.text) >= 0.6, (clip.id, reply.text)


async def test_a_request_cancelled_among_others_leaves_theirs_intact(engines):
    batched, alone = engines
    clips = _shorts()[:5]
    expected = [(await _transcribe(alone, clip)).text for clip in clips[1:]]
    tasks = [asyncio.create_task(_transcribe(batched, clip)) for clip in clips]
    await asyncio.sleep(0.3)  # its audio decoded and its windows queued, or in a batch
    tasks[0].cancel()
    replies = await asyncio.gather(*tasks[1:])
    texts = [r.text for r in replies]
    assert _no_worse(clips[1:], texts, expected), (texts, expected)
    with pytest.raises(asyncio.CancelledError):
        await tasks[0]
    # The engine still serves.
    assert (await _transcribe(batched, clips[0])).text


async def test_requests_past_the_queue_are_refused_and_a_deadline_ends_a_request():
    engine = FasterWhisperTranscriber(WhisperSettings(batch_size=8, workers=1, max_queued=1))
    await engine.start()
    try:
        clips = _shorts()[:3]
        # One on the worker, one waiting: the third is refused at once, as the pool refuses.
        results = await asyncio.gather(*(_transcribe(engine, clip) for clip in clips), return_exceptions=True)
        busy = [r for r in results if isinstance(r, ProviderBusy)]
        assert len(busy) == 1 and "1 requests already wait" in str(busy[0]), results
        assert all(isinstance(r, Transcript) and r.text for r in results if r not in busy)

        # 42.9 s of speech, four windows: its audio is decoded in time, its windows are not.
        with pytest.raises(ProviderTimeout, match="no result within"):
            await engine.transcribe(recording(_wav(speech.real_clip("long_fleurs_dev_x5"))), ENGLISH, 0.4)
        # Its windows were left out or finished unseen; the engine serves the next request.
        assert (await _transcribe(engine, clips[1])).text
        assert engine._requests == 0
    finally:
        await engine.close()


async def test_a_lone_rest_is_decoded_on_a_short_encoder_and_again_in_full_when_unsure(engines, monkeypatch):
    import providers.faster_whisper as fw

    batched, _ = engines
    clip = speech.real_clip("librivox_sense_sensibility_0880")
    audio = (await recording(_wav(clip)).samples())[: 16_000 * 4]  # a rest: 4 s, cut mid-sentence
    common = {
        "language": "en",
        "word_timestamps": False,
        "initial_prompt": None,
        "beam_size": 5,
        "vad_filter": False,
        "task": "transcribe",
    }
    engine = batched._loaded()
    full: list[int] = []
    checked: list[str] = []
    real_whole, real_check = batched._whole, fw._trustworthy
    verdict = True

    def whole(model, samples, options):
        full.append(samples.size)
        return real_whole(model, samples, options)

    def check(segments, allowance, timestamp_begin):
        checked.append(" ".join(seg.text for seg in segments))
        real_check(segments, allowance, timestamp_begin)  # runs on what the short encoder gave
        return verdict

    monkeypatch.setattr(batched, "_whole", whole)
    monkeypatch.setattr(fw, "_trustworthy", check)
    short = batched._rest(engine, audio, common)
    assert len(checked) == 1 and full == []  # the short decode, kept
    assert speech.english(short[0].text).split()[:3] == ["he", "was", "not"]
    assert short[-1].end_s <= 4.5

    verdict = False
    again = batched._rest(engine, audio, common)
    assert len(checked) == 2 and full == [audio.size]  # unsure: decoded again on the full 30 s
    assert speech.english(again[0].text).split()[:3] == ["he", "was", "not"]
