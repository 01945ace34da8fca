"""Subtitles: cue rules (42 columns, 2 lines, 7 s, in order, no overlaps), read back by real parsers."""

from __future__ import annotations

import io
import itertools
import re
from datetime import timedelta

import pytest
import srt
import webvtt

from gateway.core.provider_types import SegmentTiming, WordTiming
from gateway.core.subtitles import (
    MAX_CUE_S,
    MAX_LINE_COLUMNS,
    MAX_LINES,
    TranscriptFormat,
    columns,
    render,
    to_srt,
    to_vtt,
)

SENTENCES = (
    "The quick brown fox jumps over the lazy dog while the farmer watches from the porch. "
    "Meanwhile, in the kitchen, a pot of soup simmers slowly on the stove, filling the house with warmth! "
    "Nobody knows exactly when dinner will be ready, but everyone agrees it will be worth the wait."
)


def _timed_words(text: str, start_s: float = 0.0, step_s: float = 0.3, spaced: bool = True) -> tuple:
    words = []
    for i, token in enumerate(text.split()):
        words.append(
            WordTiming((" " if spaced else "") + token, start_s + i * step_s, start_s + i * step_s + 0.25)
        )
    return tuple(words)


def _openai_words(text: str, step_s: float = 0.3) -> tuple:
    """Words as OpenAI's verbose_json gives them: no spacing, no punctuation."""
    return tuple(
        WordTiming(re.sub(r"[^\w']", "", token), i * step_s, i * step_s + 0.25)
        for i, token in enumerate(text.split())
    )


CASES = {
    "words": [SegmentTiming(SENTENCES, 0.0, 40.0, _timed_words(SENTENCES))],
    "openai_words": [SegmentTiming(SENTENCES, 0.0, 40.0, _openai_words(SENTENCES))],
    "slow_words": [SegmentTiming(SENTENCES, 0.0, 200.0, _timed_words(SENTENCES, step_s=2.5))],
    "no_words": [SegmentTiming(SENTENCES, 3.0, 33.0)],
    "no_words_fast": [SegmentTiming(SENTENCES, 0.0, 4.0)],
    "many_segments": [
        SegmentTiming(sentence.strip() + ".", i * 4.0, i * 4.0 + 3.5)
        for i, sentence in enumerate(SENTENCES.split("."))
        if sentence.strip()
    ],
    "overlapping_segments": [
        SegmentTiming("First speaker says something rather long that needs two lines.", 0.0, 5.0),
        SegmentTiming("Second speaker talks over the first one.", 4.0, 8.0),
        SegmentTiming("Same start.", 8.0, 8.0),
        SegmentTiming("Same start too.", 8.0, 8.0),
    ],
    "long_token": [SegmentTiming("see https://example.com/" + "a" * 120 + " for details", 0.0, 6.0)],
    "cjk": [
        SegmentTiming(
            "我们今天讨论的是一个非常重要的问题，关于如何让字幕在屏幕上显示得更加清楚。然后我们再看下一个问题。",
            0.0,
            9.0,
        )
    ],
    "combining_and_emoji": [
        SegmentTiming(
            "Cafe\u0301 cre\u0300me bru\u0302le\u0301e 😀 na\u00efve fa\u00e7ade " * 4,
            1.0,
            12.0,
        )
    ],
}


def _srt_cues(segments: list[SegmentTiming]) -> list[srt.Subtitle]:
    document = to_srt(segments)
    return list(srt.parse(document, ignore_errors=False))


def _vtt_cues(segments: list[SegmentTiming]) -> list:
    document = to_vtt(segments)
    assert document.startswith("WEBVTT\n\n")
    return list(webvtt.from_buffer(io.StringIO(document)))


@pytest.mark.parametrize("case", CASES)
def test_srt_cues_follow_the_rules(case):
    cues = _srt_cues(CASES[case])
    assert cues, "a transcript with text has cues"
    assert [c.index for c in cues] == list(range(1, len(cues) + 1))
    for cue in cues:
        lines = cue.content.split("\n")
        assert 1 <= len(lines) <= MAX_LINES, cue.content
        assert all(0 < columns(line) <= MAX_LINE_COLUMNS for line in lines), cue.content
        assert all(line == line.strip() for line in lines)
        assert timedelta(0) < cue.end - cue.start <= timedelta(seconds=MAX_CUE_S), cue
    for before, after in itertools.pairwise(cues):
        assert before.end <= after.start, (before, after)


@pytest.mark.parametrize("case", CASES)
def test_no_text_is_lost(case):
    segments = CASES[case]
    shown = "".join(line for cue in _srt_cues(segments) for line in cue.content.split("\n"))
    expected = "".join(s.text for s in segments)
    # Whitespace is where lines and cues break; every other character survives, in order.
    assert re.sub(r"\s", "", shown) == re.sub(r"\s", "", expected)


@pytest.mark.parametrize("case", CASES)
def test_vtt_has_the_same_cues_as_srt(case):
    srt_cues = _srt_cues(CASES[case])
    vtt_cues = _vtt_cues(CASES[case])
    assert len(vtt_cues) == len(srt_cues)
    for a, b in zip(srt_cues, vtt_cues, strict=True):
        assert b.start_in_seconds * 1000 + b.start_time.milliseconds == pytest.approx(
            a.start.total_seconds() * 1000, abs=1
        )
        assert b.text == a.content


def test_exact_timestamp_formats():
    segments = [SegmentTiming("Hello.", 1.0, 2.5), SegmentTiming("Later.", 3725.5, 3727.25)]
    assert to_srt(segments) == (
        "1\n00:00:01,000 --> 00:00:02,500\nHello.\n\n2\n01:02:05,500 --> 01:02:07,250\nLater.\n"
    )
    assert to_vtt(segments) == (
        "WEBVTT\n\n00:00:01.000 --> 00:00:02.500\nHello.\n\n01:02:05.500 --> 01:02:07.250\nLater.\n"
    )


def test_empty_transcript():
    assert to_srt([]) == ""
    assert to_vtt([]) == "WEBVTT\n"
    assert to_srt([SegmentTiming("   ", 0.0, 1.0)]) == ""


def test_word_times_set_the_cues():
    segments = CASES["words"]
    words = segments[0].words
    cues = _srt_cues(segments)
    assert cues[0].start == timedelta(seconds=words[0].start_s)
    starts = {round(w.start_s, 3) for w in words}
    ends = {round(w.end_s, 3) for w in words}
    for cue in cues:
        assert round(cue.start.total_seconds(), 3) in starts
        assert round(cue.end.total_seconds(), 3) in ends
    assert cues[-1].end == timedelta(seconds=words[-1].end_s)


def test_slow_speech_is_cut_at_seven_seconds_not_at_two_lines():
    cues = _srt_cues(CASES["slow_words"])
    # 2.5 s a word: a cue holds three words (0, 2.5, 5 s starts; the fourth would end past 7 s).
    assert all(len(c.content.split()) <= 3 for c in cues)
    assert max(c.end - c.start for c in cues) <= timedelta(seconds=MAX_CUE_S)


def test_without_words_time_follows_the_characters():
    text = "a" * 20 + " " + "b" * 19 + ". " + "c" * 40 + " " + "d" * 30 + "."
    cues = _srt_cues([SegmentTiming(text, 10.0, 20.0)])
    # The second cue starts with c's space, 41 of the 114 columns in.
    assert [c.content.replace("\n", " ") for c in cues] == [text[:41], text[42:]]
    assert cues[0].start == timedelta(seconds=10)
    assert cues[1].start.total_seconds() == pytest.approx(10.0 + 10.0 * 41 / 114, abs=0.002)
    assert cues[-1].end == timedelta(seconds=20)


def test_punctuation_and_spacing_come_from_the_segment_text():
    cues = _srt_cues(CASES["openai_words"])
    first = cues[0].content.replace("\n", " ")
    assert first.startswith("The quick brown fox jumps over the lazy dog")
    assert any("porch." in c.content for c in cues)
    assert any("Meanwhile," in c.content for c in cues)
    assert [c.content for c in cues] == [c.content for c in _srt_cues(CASES["words"])]


def test_cues_end_on_sentences_where_the_limits_allow():
    second = "Then a much longer sentence follows it, running on for quite a while"
    text = "Short one here. " + second
    words = _timed_words(text)
    cues = _srt_cues([SegmentTiming(text, 0.0, 10.0, words)])
    # Filling the first cue would leave it ending mid-sentence; two cues either way, so it ends on "here."
    assert [c.content.replace("\n", " ") for c in cues] == ["Short one here.", second]


def test_lines_are_balanced_and_prefer_punctuation():
    text = "Well, the committee decided that the proposal needs another careful review"
    (cue,) = _srt_cues([SegmentTiming(text, 0.0, 6.0)])
    top, bottom = cue.content.split("\n")
    assert abs(columns(top) - columns(bottom)) <= 12
    sentence = "We looked everywhere for it, and then we found the keys under the sofa"
    (cue,) = _srt_cues([SegmentTiming(sentence, 0.0, 6.0)])
    assert cue.content.split("\n")[0] == "We looked everywhere for it,"


def test_short_cues_are_held_into_the_gap_but_never_overlap():
    segments = [
        SegmentTiming("Yes.", 1.0, 1.2),
        SegmentTiming("No.", 1.5, 1.7),
        SegmentTiming("Maybe.", 5.0, 5.1),
        SegmentTiming("Fine.", 9.0, 9.2),
    ]
    cues = _srt_cues(segments)
    assert cues[0].end == timedelta(seconds=1.5)  # held until the next cue starts
    assert cues[1].end == timedelta(seconds=2.333)  # held for 5/6 s, the gap being longer
    assert cues[2].end.total_seconds() == pytest.approx(5.833, abs=0.001)
    assert cues[3].end == timedelta(seconds=9.2)  # the last cue keeps its end: nothing follows to fix it


def test_cjk_breaks_between_characters_and_keeps_closing_punctuation():
    cues = _srt_cues(CASES["cjk"])
    lines = [line for c in cues for line in c.content.split("\n")]
    assert all(columns(line) <= MAX_LINE_COLUMNS for line in lines)
    assert not any(line[0] in "，。" for line in lines)
    assert all(" " not in line for line in lines)


def test_combining_marks_take_no_column():
    assert columns("Cafe\u0301") == 4
    assert columns("字幕") == 4
    assert columns("a\u200bb") == 2


def test_vtt_escapes_markup_and_names_the_speaker():
    document = to_vtt([SegmentTiming("if a < b && c > d then -->", 0.0, 2.0, speaker="Ann <2>")])
    body = document.split("\n\n", 1)[1]
    assert "<v Ann &lt;2&gt;>if a &lt; b &amp;&amp; c &gt; d then --&gt;" in body
    (cue,) = webvtt.from_buffer(io.StringIO(document))
    assert cue.voice == "Ann &lt;2&gt;"
    assert "-->" not in body.split("\n", 1)[1]


def test_render_dispatches_on_the_format():
    segments = [SegmentTiming("Hello there.", 0.0, 1.0)]
    assert render(TranscriptFormat.JSON, "Hello there.", segments) == ""
    assert render(TranscriptFormat.TEXT, " Hello there. ", segments) == "Hello there.\n"
    assert render(TranscriptFormat.TEXT, "", ()) == ""
    assert render(TranscriptFormat.SRT, "Hello there.", segments) == to_srt(segments)
    assert render(TranscriptFormat.VTT, "Hello there.", segments) == to_vtt(segments)
