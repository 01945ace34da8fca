"""Whole recordings on the local Whisper engine, transcribed without losing speech.

Whisper reads 30 s at a time. faster-whisper's own long-form loop slides that window along a recording and
feeds each window the text before it. Across a change of speaker that garbles phrases, and when the model
ends a window's text early, the rest of the window is skipped: whole sentences vanish. Instead:

1. Silero VAD (shipped inside faster-whisper) finds the speech regions.
2. The regions are merged, in order, into windows of at most ``max_window_s``, each widened back over a
   short silence before it (speech too soft for VAD starts there). Longer silence is not decoded: it is
   where Whisper invents text.
3. Each window is decoded on its own (one after the other, or several at once through faster-whisper's
   ``BatchedInferencePipeline``) and its segments and words are shifted onto the recording's timeline.
4. A safety net: a speech region that no decoded segment reaches is decoded again on its own, and its
   segments take their place in time, unless their words are already in the text of the window around
   them (then only the window's times were off, as word alignment sometimes leaves them).

A recording that fits in one Whisper window is decoded whole, as it always was; the safety net still
applies to it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from gateway.core.provider_types import SegmentTiming, WordTiming

SAMPLE_RATE = 16_000
WHISPER_WINDOW_S = 30.0
# A region is decoded again when the decoded segments reach less than this share of it: a window whose text
# ended early leaves whole regions bare, while segment times that merely drift still reach most of theirs
# (and a region decoded again whose words the window already has adds nothing; see heard()).
_MISSED_SHARE = 0.5
# Shorter regions are left alone: a breath or a click that VAD took for speech, not a lost sentence.
_MISSED_MIN_S = 1.0
# Silence before a window that is decoded with it: where a soft-spoken start hides from VAD.
ONSET_S = 3.0
# How far Whisper's segment times may drift from the speech they transcribe.
_DRIFT_S = 0.3
# A region decoded again whose words the window's text already holds, this share of them in order, was
# heard the first time.
_HEARD_SHARE = 0.5


@dataclass(frozen=True)
class Span:
    """``[start, end)`` in samples of the 16 kHz recording."""

    start: int
    end: int

    @property
    def start_s(self) -> float:
        return self.start / SAMPLE_RATE

    @property
    def end_s(self) -> float:
        return self.end / SAMPLE_RATE


@dataclass(frozen=True)
class LongformTuning:
    max_window_s: float
    vad_threshold: float
    vad_min_silence_ms: int
    vad_speech_pad_ms: int


@dataclass(frozen=True)
class Decoded:
    """What the decoder made of each span it was given: segments on the recording's timeline, in order."""

    per_span: list[list[SegmentTiming]]
    language: str

    @property
    def segments(self) -> list[SegmentTiming]:
        return [segment for segments in self.per_span for segment in segments]


# Decodes each span of the recording on its own.
Decoder = Callable[[np.ndarray, Sequence[Span]], Decoded]


# The same, awaited (the windows wait for a batch of the model shared with other requests).
AsyncDecoder = Callable[[np.ndarray, Sequence[Span]], Awaitable[Decoded]]


@dataclass(frozen=True)
class Plan:
    """Where the speech is, and the windows to decode."""

    regions: list[Span]
    spans: list[Span]


def plan(samples: np.ndarray, tuning: LongformTuning) -> Plan:
    regions = speech_regions(samples, tuning)
    if samples.size <= WHISPER_WINDOW_S * SAMPLE_RATE:
        return Plan(regions, [Span(0, samples.size)])
    return Plan(regions, windows(regions, tuning.max_window_s))


def transcribe(
    samples: np.ndarray, decode: Decoder, tuning: LongformTuning
) -> tuple[list[SegmentTiming], str]:
    """The recording's segments in order, and the language the first window was decoded in."""
    planned = plan(samples, tuning)
    if not planned.spans:
        return [], ""
    decoded = decode(samples, planned.spans)
    bare = missed(planned.regions, decoded.segments)
    again = decode(samples, bare) if bare else None
    return merged(planned.spans, decoded, bare, again)


async def transcribe_planned(
    samples: np.ndarray, planned: Plan, decode: AsyncDecoder
) -> tuple[list[SegmentTiming], str]:
    """:func:`transcribe` with the plan made and an awaited decoder."""
    if not planned.spans:
        return [], ""
    decoded = await decode(samples, planned.spans)
    bare = missed(planned.regions, decoded.segments)
    again = await decode(samples, bare) if bare else None
    return merged(planned.spans, decoded, bare, again)


def merged(
    spans: Sequence[Span], decoded: Decoded, bare: Sequence[Span], again: Decoded | None
) -> tuple[list[SegmentTiming], str]:
    """The windows' segments with those of the speech regions they left bare, decoded again, in time
    order; and the language."""
    segments = decoded.segments
    if again is None:
        return segments, decoded.language
    for region, found in zip(bare, again.per_span, strict=True):
        window = next(
            i for i, span in enumerate(spans) if span.start <= region.start and region.end <= span.end
        )
        segments += [seg for seg in found if not heard(seg, decoded.per_span[window])]
    segments.sort(key=lambda seg: (seg.start_s, seg.end_s))
    return segments, decoded.language or again.language


def speech_regions(samples: np.ndarray, tuning: LongformTuning) -> list[Span]:
    """Silero VAD's speech regions, none longer than a window (a longer one is cut at a pause in it)."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(
        threshold=tuning.vad_threshold,
        min_silence_duration_ms=tuning.vad_min_silence_ms,
        speech_pad_ms=tuning.vad_speech_pad_ms,
        max_speech_duration_s=tuning.max_window_s,
    )
    return [Span(int(r["start"]), int(r["end"])) for r in get_speech_timestamps(samples, options)]


def windows(regions: Sequence[Span], max_window_s: float) -> list[Span]:
    """The regions merged in order into windows of at most ``max_window_s``, each from the start of its
    first region to the end of its last (the pauses between them stay in).

    A window also takes in a short silence before it (up to ``ONSET_S``, within Whisper's 30 s): VAD
    misses the quiet first words of a speaker who starts softly, and Whisper, which hears them, would
    otherwise never be given them. Only longer silence is left out.
    """
    limit = round(max_window_s * SAMPLE_RATE)
    merged: list[Span] = []
    for region in regions:
        if merged and region.end - merged[-1].start <= limit:
            merged[-1] = Span(merged[-1].start, region.end)
        else:
            merged.append(region)
    whole = round(WHISPER_WINDOW_S * SAMPLE_RATE)
    widened = []
    for window in merged:
        before = widened[-1].end if widened else 0
        widened.append(Span(max(onset(window.start, before), window.end - whole), window.end))
    return widened


def onset(start: int, before: int) -> int:
    """Where to begin decoding speech that VAD found starting at sample ``start``, when the audio decoded
    before it ended at ``before``: back at ``before`` if the silence between is short (up to ``ONSET_S``),
    since VAD misses the quiet first words of a speaker who starts softly; else at ``start``, since longer
    silence is where Whisper invents text."""
    return before if start - before <= round(ONSET_S * SAMPLE_RATE) else start


def missed(regions: Sequence[Span], segments: Sequence[SegmentTiming]) -> list[Span]:
    """The speech regions (of a second or more) that the segments leave almost bare."""
    bare = []
    for region in regions:
        length = region.end_s - region.start_s
        if length < _MISSED_MIN_S:
            continue
        reached = sum(
            max(0.0, min(region.end_s, s.end_s + _DRIFT_S) - max(region.start_s, s.start_s - _DRIFT_S))
            for s in segments
        )
        if reached < _MISSED_SHARE * length:
            bare.append(region)
    return bare


def heard(segment: SegmentTiming, window: Sequence[SegmentTiming]) -> bool:
    """Whether most of ``segment``'s words are already, in order, in the text decoded from its window."""
    words = _words(segment.text)
    if not words:
        return True
    heard_words = [w for s in window for w in _words(s.text)]
    matcher = difflib.SequenceMatcher(None, heard_words, words, autojunk=False)
    matched = sum(block.size for block in matcher.get_matching_blocks())
    return matched >= _HEARD_SHARE * len(words)


def _words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower())


def placed(segment: SegmentTiming, span: Span, offset_s: float) -> SegmentTiming:
    """A segment decoded from ``span``, its times moved by ``offset_s`` onto the recording's timeline (the
    span's start when it was decoded alone, 0 when already there) and kept within the span.

    Whisper may place text a little past the audio it was given (its input is padded to 30 s): clamped, one
    span's words never land in another's, and the timeline stays in order.
    """

    def at(t: float) -> float:
        return min(max(offset_s + t, span.start_s), span.end_s)

    words = tuple(WordTiming(w.text, at(w.start_s), at(w.end_s), w.confidence) for w in segment.words)
    return replace(segment, start_s=at(segment.start_s), end_s=at(segment.end_s), words=words)
