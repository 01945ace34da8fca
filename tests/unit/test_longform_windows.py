"""Long-form planning on real recordings with a stand-in decoder: windows, the safety net for speech a
window's decode left out, and the placement of segments and words on the recording's timeline."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pytest

from gateway.core.provider_types import SegmentTiming, WordTiming
from providers import longform
from providers.longform import SAMPLE_RATE, Decoded, LongformTuning, Span
from tests import speech

TUNING = LongformTuning(max_window_s=15.0, vad_threshold=0.2, vad_min_silence_ms=300, vad_speech_pad_ms=400)


def _s(start_s: float, end_s: float) -> Span:
    return Span(round(start_s * SAMPLE_RATE), round(end_s * SAMPLE_RATE))


def _seg(text: str, start_s: float, end_s: float) -> SegmentTiming:
    return SegmentTiming(text=text, start_s=start_s, end_s=end_s)


def _float(clip_id: str) -> np.ndarray:
    clip = speech.real_clip(clip_id)
    assert clip.rate == SAMPLE_RATE
    return clip.samples.astype(np.float32) / 32768.0


class Recorder:
    """Decodes each span as one segment naming it, except the windows told to come back empty (as a
    Whisper pass that ended its text early leaves the rest of its window)."""

    def __init__(self, empty_first: int = 0, text: str = "") -> None:
        self.calls: list[list[Span]] = []
        self.empty_first = empty_first
        self.text = text

    def __call__(self, samples: np.ndarray, spans: Sequence[Span]) -> Decoded:
        self.calls.append(list(spans))
        per_span = []
        for span in spans:
            if len(self.calls) == 1 and len(per_span) < self.empty_first:
                per_span.append([])
                continue
            words = self.text or f"speech from {span.start} to {span.end}"
            per_span.append([_seg(words, span.start_s + 0.1, span.end_s - 0.1)])
        return Decoded(per_span, "en")


def test_windows_merge_regions_in_order_up_to_the_limit():
    regions = [_s(1, 4), _s(5, 9), _s(10, 14.5), _s(15, 20), _s(40, 41)]
    # Each window also takes the short silence before it (soft first words hide there), not a long one.
    assert longform.windows(regions, 15.0) == [_s(0, 14.5), _s(14.5, 20), _s(40, 41)]
    assert longform.windows(regions, 30.0) == [_s(0, 20), _s(40, 41)]
    assert longform.windows([_s(4, 6)], 15.0) == [_s(4, 6)]
    assert longform.windows([], 15.0) == []


def test_a_widened_window_stays_within_whisper_s_30_seconds():
    assert longform.windows([_s(2, 4), _s(6, 35.5)], 30.0) == [_s(0, 4), _s(5.5, 35.5)]


def test_a_region_the_segments_leave_bare_is_missed_and_drift_is_not():
    regions = [_s(0, 5), _s(6, 10), _s(11, 11.5), _s(12, 16)]
    segments = [_seg("first", 0.2, 4.9), _seg("drifted", 16.2, 17.0)]  # 0.2 s past the last region
    # The second region has nothing; the third is too short to matter; the last is reached only by drift
    # slack (0.3 s before 16.2 s = 0.1 s of its 4 s), so it is bare too.
    assert longform.missed(regions, segments) == [_s(6, 10), _s(12, 16)]
    assert longform.missed(regions, [*segments, _seg("late", 13.8, 16.0)]) == [_s(6, 10)]
    # Less than half of it reached counts as bare: a window that skipped a speaker leaves its region so.
    assert longform.missed(regions, [*segments, _seg("late", 14.5, 16.0)]) == [_s(6, 10), _s(12, 16)]


def test_text_already_heard_in_the_window_is_not_added_twice():
    window = [_seg("He might even have been made amiable himself, ten of clubs.", 26.5, 26.5)]
    assert longform.heard(_seg("He might even have been made amiable himself.", 26.5, 29.6), window)
    assert not longform.heard(_seg("To the north and within easy reach.", 30.0, 32.0), window)
    assert longform.heard(_seg("", 30.0, 30.5), window)


def test_segments_and_words_are_placed_on_the_timeline_within_their_span():
    span = _s(20.0, 30.0)
    seg = SegmentTiming(
        text="a b c",
        start_s=-0.2,  # a little before the audio it was given
        end_s=10.4,  # and past it (Whisper's input is padded to 30 s)
        words=(
            WordTiming("a", -0.2, 0.5, 0.9),
            WordTiming("b", 0.5, 9.0, 0.8),
            WordTiming("c", 9.5, 10.4, 0.7),
        ),
    )
    placed = longform.placed(seg, span, offset_s=span.start_s)
    assert (placed.start_s, placed.end_s) == (20.0, 30.0)
    assert [(w.text, w.start_s, w.end_s, w.confidence) for w in placed.words] == [
        ("a", 20.0, 20.5, 0.9),
        ("b", 20.5, 29.0, 0.8),
        ("c", 29.5, 30.0, 0.7),
    ]
    already_there = longform.placed(_seg("x", 19.9, 25.0), span, offset_s=0.0)
    assert (already_there.start_s, already_there.end_s) == (20.0, 25.0)


def test_a_recording_that_fits_one_whisper_window_is_decoded_whole():
    samples = _float("long_librivox_sense_sensibility_x5")  # 26.7 s
    decoder = Recorder()
    segments, language = longform.transcribe(samples, decoder, TUNING)
    assert decoder.calls == [[Span(0, samples.size)]]
    assert language == "en" and len(segments) == 1


def test_a_long_recording_is_cut_into_windows_of_speech_in_order():
    samples = _float("long_fleurs_dev_x5")  # 42.9 s, five speakers 0.5 s apart
    decoder = Recorder()
    segments, _ = longform.transcribe(samples, decoder, TUNING)
    (spans,) = decoder.calls
    assert len(spans) >= 3  # 43 s of speech in windows of at most 15 s
    assert all(0 < s.end - s.start <= 15 * SAMPLE_RATE for s in spans)
    assert all(a.end <= b.start for a, b in itertools.pairwise(spans))
    # Every part's speech is inside some window: none is left out.
    for part in speech.long_parts("long_fleurs_dev_x5"):
        middle = round((part.start_s + part.end_s) / 2 * SAMPLE_RATE)
        assert any(s.start <= middle < s.end for s in spans), part.id
    assert [seg.start_s for seg in segments] == sorted(seg.start_s for seg in segments)


def test_speech_a_window_left_out_is_decoded_again_on_its_own():
    samples = _float("long_fleurs_dev_x5")
    decoder = Recorder(empty_first=1)  # the first window's decode comes back with nothing
    segments, _ = longform.transcribe(samples, decoder, TUNING)
    first, again = decoder.calls
    regions = longform.speech_regions(samples, TUNING)
    lost = [r for r in regions if first[0].start <= r.start and r.end <= first[0].end]
    assert again == [r for r in lost if r.end - r.start >= SAMPLE_RATE]
    assert again  # the first window held speech, and it is back
    assert all(any(seg.start_s < r.end_s and r.start_s < seg.end_s for seg in segments) for r in again)
    assert [seg.start_s for seg in segments] == sorted(seg.start_s for seg in segments)


def test_a_second_decode_of_words_the_window_already_has_adds_nothing():
    samples = _float("long_fleurs_dev_x5")
    decoder = Recorder(text="the same words every time")
    segments, _ = longform.transcribe(samples, _collapsed(decoder), TUNING)
    first, again = decoder.calls
    assert again  # the squeezed segments left regions bare, so they were decoded again...
    assert len(segments) == len(first)  # ...and added nothing: their words were already heard


def _collapsed(decoder: Recorder) -> longform.Decoder:
    """The decoder's segments squeezed to their window's first 10 ms, as a failed word alignment leaves
    them: the windows' regions look bare, though their words were all heard."""

    def decode(samples: np.ndarray, spans: Sequence[Span]) -> Decoded:
        decoded = decoder(samples, spans)
        if len(decoder.calls) > 1:
            return decoded
        squeezed = [
            [_seg(seg.text, span.start_s, span.start_s + 0.01) for seg in segs]
            for span, segs in zip(spans, decoded.per_span, strict=True)
        ]
        return Decoded(squeezed, decoded.language)

    return decode


def test_a_long_silence_is_not_decoded_at_all():
    decoder = Recorder()
    segments, language = longform.transcribe(np.zeros(40 * SAMPLE_RATE, dtype=np.float32), decoder, TUNING)
    assert (segments, language, decoder.calls) == ([], "", [])


@pytest.mark.parametrize("max_window_s", [5.0, 30.0])
def test_vad_regions_never_exceed_a_window(max_window_s):
    samples = _float("long_fleurs_dev_x5")
    tuning = LongformTuning(max_window_s, 0.2, 300, 400)
    regions = longform.speech_regions(samples, tuning)
    assert regions and all(r.end - r.start <= max_window_s * SAMPLE_RATE for r in regions)
