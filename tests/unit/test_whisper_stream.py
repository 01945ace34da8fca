"""The parts of the local streaming engine that need no Whisper: LocalAgreement-2 and Silero endpointing."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.core.audio import resample_pcm16
from providers.whisper_stream import RATE, Endpointer, Front, LocalAgreement, Word
from tests import speech


def words(text: str, start: float = 0.0) -> list[Word]:
    return [Word(w, start + i * 0.3, start + i * 0.3 + 0.25) for i, w in enumerate(text.split())]


def texts(ws: list[Word]) -> str:
    return " ".join(w.text for w in ws)


def test_nothing_is_committed_until_two_hypotheses_agree():
    agreement = LocalAgreement()
    agreement.update(words("the quick brown"))
    assert agreement.committed == []
    assert texts(agreement.tail) == "the quick brown"
    agreement.update(words("the quick brown fox jumps"))
    assert texts(agreement.committed) == "the quick brown"
    assert texts(agreement.tail) == "fox jumps"


def test_agreement_ignores_case_and_punctuation_but_not_words():
    agreement = LocalAgreement()
    agreement.update(words("And Mr. John Dashwood had that"))
    agreement.update(words("and mr John Dashwood, had then leisure"))
    # "that" and "then" disagree: the commit stops before them.
    assert texts(agreement.committed) == "and mr John Dashwood, had"
    assert texts(agreement.tail) == "then leisure"


def test_committed_words_never_change_even_when_later_hypotheses_respell_them():
    agreement = LocalAgreement()
    agreement.update(words("he was not an old"))
    agreement.update(words("he was not an old disposed"))
    assert texts(agreement.committed) == "he was not an old"
    # Whisper now hears "ill" instead of "old": the committed word stays, the tail is aligned after it.
    agreement.update(words("he was not an ill disposed young man"))
    assert texts(agreement.committed) == "he was not an old disposed"
    assert texts(agreement.tail) == "young man"


def test_an_inserted_word_before_the_tail_does_not_duplicate_committed_words():
    agreement = LocalAgreement()
    agreement.update(words("go forward ten"))
    agreement.update(words("go forward ten meters"))
    agreement.update(words("so go forward ten meters now"))
    assert texts(agreement.committed) == "go forward ten meters"
    assert texts(agreement.tail) == "now"


def test_forgetting_finalized_words_keeps_the_rest_aligned():
    agreement = LocalAgreement()
    agreement.update(words("one two three four"))
    agreement.update(words("one two three four five"))
    agreement.forget(2)
    assert texts(agreement.committed) == "three four"
    agreement.update(words("three four five six", start=0.6))
    assert texts(agreement.committed) == "three four five"
    assert texts(agreement.tail) == "six"


@pytest.fixture(scope="module")
def vad_session():
    from faster_whisper.vad import get_vad_model

    return get_vad_model().session


def speech_16k(clip_id: str) -> np.ndarray:
    clip = speech.real_clip(clip_id)
    return resample_pcm16(clip.samples, clip.rate, RATE).astype(np.float32) / 32768.0


@pytest.mark.parametrize("chunk", [160, 1600, 7919])
def test_the_endpointer_finds_each_utterance_whatever_the_chunking(vad_session, chunk):
    voice = speech_16k("librivox_sense_sensibility_0880")
    pause = np.zeros(RATE, dtype=np.float32)
    audio = np.concatenate([pause, voice, pause, voice, pause])
    endpointer = Endpointer(vad_session, threshold=0.5, endpointing_ms=500)
    found = []
    for offset in range(0, audio.size, chunk):
        found += [
            (kind, at / RATE, seen / RATE)
            for kind, at, seen in endpointer.feed(audio[offset : offset + chunk])
        ]
    begins = [(at, seen) for kind, at, seen in found if kind == "begin"]
    ends = [(at, seen) for kind, at, seen in found if kind == "end"]
    assert len(begins) == 2 and len(ends) == 2, found
    voice_s = voice.size / RATE
    first_begin, second_begin = begins[0][0], begins[1][0]
    assert 1.0 - 0.1 <= first_begin <= 1.0 + 0.6
    assert 2.0 + voice_s - 0.1 <= second_begin <= 2.0 + voice_s + 0.6
    for (speech_end, heard_at), speech_start in zip(ends, (1.0, 2.0 + voice_s), strict=True):
        assert speech_start + voice_s - 0.6 <= speech_end <= speech_start + voice_s + 0.2
        # The end is declared once the endpointing silence has been heard, not before.
        assert heard_at - speech_end == pytest.approx(0.5, abs=0.04)


def test_a_longer_endpointing_silence_hears_a_short_pause_as_one_utterance(vad_session):
    voice = speech_16k("sphinx_goforward")
    gap = np.zeros(int(0.6 * RATE), dtype=np.float32)
    # The clip has about a second of silence around its words of its own.
    audio = np.concatenate([voice, gap, voice, np.zeros(4 * RATE, dtype=np.float32)])
    short = [kind for kind, _, _ in Endpointer(vad_session, 0.5, 300).feed(audio) if kind in ("begin", "end")]
    long = [kind for kind, _, _ in Endpointer(vad_session, 0.5, 3000).feed(audio) if kind in ("begin", "end")]
    assert short == ["begin", "end", "begin", "end"]
    assert long == ["begin", "end"]


def test_silence_and_noise_floor_never_begin_an_utterance(vad_session):
    rng = np.random.default_rng(7)
    hiss = (rng.standard_normal(5 * RATE) * 0.003).astype(np.float32)
    assert Endpointer(vad_session, 0.5, 500).feed(hiss) == []


def test_the_front_resamples_to_16_khz_and_keeps_the_timeline(vad_session):
    clip = speech.real_clip("fleurs_en_us_003")  # 48 kHz Ogg/Opus
    front = Front(clip.rate, Endpointer(vad_session, 0.5, 500))
    pcm = clip.pcm()
    total = 0
    kinds = []
    step = clip.rate // 10 * 2
    for offset in range(0, len(pcm), step):
        audio, boundaries = front.feed(pcm[offset : offset + step])
        assert audio.dtype == np.float32
        total += audio.size
        kinds += [kind for kind, _, _ in boundaries]
    tail, boundaries = front.flush()
    total += tail.size
    assert total == pytest.approx(clip.duration_s * RATE, abs=2)
    assert kinds[0] == "begin"


@pytest.mark.parametrize(
    ("heard", "kept"),
    [
        ("however however however however", "however"),
        ("styles in the west styles in the west styles in the west", "styles in the west"),
        ("one two three one two three one two three", "one two three"),
        ("five five", "five five"),  # said twice is speech, not a loop
        ("go forward ten meters", "go forward ten meters"),
    ],
)
def test_an_interim_hypothesis_is_cut_where_it_starts_looping(heard, kept):
    from providers.faster_whisper import _without_loop

    segments = [words(heard)]
    assert texts([w for seg in _without_loop(segments, 60.0) for w in seg]) == kept


def test_an_interim_hypothesis_is_cut_where_it_runs_past_the_audio():
    from providers.faster_whisper import _without_loop

    segments = [words("and mister john"), words("dashwood had then", start=1.0)]
    cut = _without_loop(segments, duration_s=1.5)
    assert [texts(seg) for seg in cut] == ["and mister john", "dashwood had"]
