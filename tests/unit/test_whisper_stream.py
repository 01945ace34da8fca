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


TIMESTAMP = 50_363  # tiny.en's <|0.00|>: tokens from here on are timestamps


def segment(
    text: str, *, tokens: int | None = None, ratio: float = 1.5, logprob: float = -0.3, closed: bool = True
) -> object:
    from types import SimpleNamespace

    count = tokens if tokens is not None else len(text.split()) + 2
    # Text tokens, then the timestamp that closes the segment (unless it was left open).
    ids = [*range(count - 1), TIMESTAMP + 50 if closed else 352]
    return SimpleNamespace(text=text, tokens=ids, compression_ratio=ratio, avg_logprob=logprob)


@pytest.mark.parametrize(
    ("segments", "trusted"),
    [
        ([segment("Mr. John Dashwood had then leisure"), segment(" to consider.")], True),
        ([], False),  # speech was heard: nothing at all is a decode that stopped early
        ([segment("ten of clubs ten of clubs ten of clubs")], False),  # a loop
        ([segment("Mr. John Dashwood", ratio=2.6)], False),  # too repetitive for Whisper's own check
        ([segment("Mr. John Dashwood", logprob=-1.2)], False),  # too unlikely for it
        ([segment("Mr. John Dashwood", tokens=30)], False),  # it used its whole token allowance
        ([segment("1 1", closed=False)], False),  # "one" with no end in sight: a word said once, twice
        ([segment("One. Two.", closed=True), segment(" 3 3", closed=False)], False),
    ],
)
def test_a_short_window_final_is_kept_only_when_it_passes_whispers_checks(segments, trusted):
    from providers.faster_whisper import _trustworthy

    assert _trustworthy(segments, allowance=30, timestamp_begin=TIMESTAMP) is trusted


async def test_a_pause_is_finalized_at_once_even_while_an_interim_step_runs(vad_session):
    """A final never waits for an interim step: the step is still on its worker when the final is out."""
    import asyncio

    from gateway.core.streaming import StreamConfig, StreamResult
    from providers.whisper_stream import Hypothesis, StreamTuning, WhisperStream
    from providers.workers import Timed

    step_started, release_step = asyncio.Event(), asyncio.Event()
    decodes: list[str] = []

    def decoder(audio: np.ndarray, prompt: str, final: bool) -> Hypothesis:
        decodes.append("final" if final else "interim")
        return Hypothesis((tuple(words("the final words" if final else "the interim")),))

    async def run_decode(fn, final: bool) -> Timed[Hypothesis]:
        if not final:
            step_started.set()
            await release_step.wait()  # an interim step stuck on a busy worker
        return Timed(fn(), 0.0)

    async def run_front(fn) -> Timed[object]:
        return Timed(fn(), 0.0)

    ended = asyncio.Event()
    stream = WhisperStream(
        "engine",
        StreamConfig(sample_rate=RATE),
        StreamTuning(step_s=0.5, pause_s=0.2, max_buffer_s=15.0, vad_threshold=0.5),
        Front(RATE, Endpointer(vad_session, 0.5, 500)),
        decoder,
        run_decode,
        run_front,
        ended.set,
    )
    events = []

    async def collect() -> None:
        async for event in stream.events():
            events.append(event)

    collector = asyncio.create_task(collect())
    voice = (speech_16k("librivox_sense_sensibility_0880") * 32768).astype("<i2")
    await stream.send(voice[: int(1.6 * RATE)].tobytes())  # cut mid-word: an interim step starts
    await asyncio.wait_for(step_started.wait(), 5)
    await stream.send(np.zeros(RATE, dtype="<i2").tobytes())
    for _ in range(200):
        if any(isinstance(e, StreamResult) and e.is_final for e in events):
            break
        await asyncio.sleep(0.01)
    finals = [e for e in events if isinstance(e, StreamResult) and e.is_final]
    assert [f.text for f in finals] == ["the final words"], events
    assert decodes == ["final"]  # the step has not even reached its worker
    # The stale step, released after the final, adds nothing: its utterance is over.
    release_step.set()
    await stream.close()
    await asyncio.wait_for(collector, 5)
    assert [e.text for e in events if isinstance(e, StreamResult)][-1] == "the final words"
    assert ended.is_set()


async def scripted_stream(
    vad_session, audio: np.ndarray, finals_wait: bool = False, pause_s: float = 0.2
) -> tuple[list[tuple[float, float]], set[str]]:
    """The stream fed ``audio`` and closed, with a decoder that records what each final decode is given
    (with ``finals_wait``, no final decode gets a worker until all the audio has come). Returns the finals'
    spans (the audio decoded for each) and the prompts the final decodes had."""
    import asyncio

    from gateway.core.streaming import StreamConfig, StreamResult
    from providers.whisper_stream import Hypothesis, StreamTuning, WhisperStream
    from providers.workers import Timed

    decoded: list[tuple[int, str]] = []
    all_sent = asyncio.Event()

    def decoder(samples: np.ndarray, prompt: str, final: bool) -> Hypothesis:
        if final:
            decoded.append((samples.size, prompt))
        # Two segments, so an over-long utterance has a committed segment end to be cut at.
        return Hypothesis((tuple(words("said something")), tuple(words("and more", start=0.6))))

    async def run_decode(fn, final: bool) -> Timed[object]:
        if final and finals_wait:
            await all_sent.wait()
        return Timed(fn(), 0.0)

    async def run_front(fn) -> Timed[object]:
        return Timed(fn(), 0.0)

    stream = WhisperStream(
        "engine",
        StreamConfig(sample_rate=RATE, interim_results=False),
        StreamTuning(step_s=0.5, pause_s=pause_s, max_buffer_s=15.0, vad_threshold=0.5),
        Front(RATE, Endpointer(vad_session, 0.5, 500, round(pause_s * 1000))),
        decoder,
        run_decode,
        run_front,
        lambda: None,
    )
    pcm = (audio * 32768).astype("<i2").tobytes()
    for offset in range(0, len(pcm), 3200):
        await stream.send(pcm[offset : offset + 3200])
        await asyncio.sleep(0)
    all_sent.set()
    await stream.close()
    results = [e async for e in stream.events() if isinstance(e, StreamResult) and e.is_final]
    # A final's span is the audio that was decoded for it.
    sizes = {size for size, _ in decoded}
    assert all(round((r.end_s - r.start_s) * RATE) in sizes for r in results), (results, sizes)
    return [(r.start_s, r.end_s) for r in results], {prompt for _, prompt in decoded}


async def test_a_soft_onset_vad_misses_is_decoded_with_its_utterance(vad_session):
    """ "To the north and within easy reach..." starts softly: after the sentence before it, Silero hears
    speech over a second late. The final's audio reaches back over the short silence before its speech
    (to the stream's start, then to the end of the utterance before), so Whisper hears the first words."""
    first, soft = speech_16k("fleurs_en_us_001"), speech_16k("fleurs_en_us_002")
    gap = np.zeros(RATE, dtype=np.float32)
    audio = np.concatenate([gap, first, gap, soft, 2 * gap])
    begins = [at / RATE for kind, at, _ in Endpointer(vad_session, 0.5, 500).feed(audio) if kind == "begin"]
    soft_at = 2.0 + first.size / RATE
    assert len(begins) == 2 and begins[0] > 1.3 and begins[1] > soft_at + 1.0, begins  # VAD is late

    spans, prompts = await scripted_stream(vad_session, audio)
    assert [start for start, _ in spans] == [0.0, spans[0][1]]
    assert spans[0][1] < soft_at
    # A final is decoded with no earlier text as its prompt, as batch transcription decodes.
    assert prompts == {""}


async def test_an_utterance_is_not_cut_for_the_audio_that_came_while_its_final_waited(vad_session):
    """A 12 s utterance whose final waits for a busy worker while 5 s more audio arrives is not over-long
    (15 s): it is finalized whole, not cut at a segment end with its rest decoded apart."""
    voice = speech_16k("fleurs_en_us_002")
    audio = np.concatenate([np.zeros(RATE // 2, dtype=np.float32), voice, np.zeros(5 * RATE, np.float32)])
    spans, _ = await scripted_stream(vad_session, audio, finals_wait=True)
    assert len(spans) == 1, spans
    assert spans[0][0] == 0.0 and 11.5 < spans[0][1] < 12.5


@pytest.mark.parametrize("pause_s", [0.2, 0.3])
async def test_a_final_keeps_the_pause_it_was_decoded_at(vad_session, pause_s):
    """The final's audio runs ``pause_s`` past where Silero heard the speech end: Whisper drops a last word
    clipped short, and on the speech set 300 ms of it made fewer errors than 200 ms."""
    voice = speech_16k("librivox_sense_sensibility_0880")
    audio = np.concatenate([np.zeros(RATE // 2, dtype=np.float32), voice, np.zeros(2 * RATE, np.float32)])
    ends = [at / RATE for kind, at, _ in Endpointer(vad_session, 0.5, 500).feed(audio) if kind == "end"]
    spans, _ = await scripted_stream(vad_session, audio, pause_s=pause_s)
    assert len(ends) == 1 and len(spans) == 1, (ends, spans)
    assert spans[0][1] == pytest.approx(ends[0] + pause_s, abs=1 / RATE)
    assert spans[0][1] < 0.5 + voice.size / RATE + pause_s  # silence, not the next utterance
