"""A timed transcript rendered as subtitles (SubRip and WebVTT) or plain text.

Cues follow common subtitle practice: at most 42 columns a line, two lines a cue, seven seconds a cue, lines
balanced and broken after punctuation where that costs little, and a cue never spans two segments (a segment
is a sentence, a phrase between pauses or a speaker's turn). A cue shorter than 5/6 s is held on screen into
the gap before the next one, so a one-word cue can be read. Cues never overlap and come in time order.

With word times, cues start on their first word and end on their last. Without them, a segment's time is
shared among its words in proportion to their columns. The segment's text is what is shown: word lists that
drop punctuation or spacing (OpenAI's words have neither) are aligned back onto it.

Columns count what a viewer sees: a combining mark or zero-width character counts 0, a wide (CJK) character
2, anything else 1. Scripts written without spaces break between any two wide characters.
"""

from __future__ import annotations

import enum
import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gateway.core.provider_types import SegmentTiming

MAX_LINE_COLUMNS = 42
MAX_LINES = 2
MAX_CUE_S = 7.0
MIN_CUE_S = 5 / 6

_SENTENCE_END = frozenset(".!?\u2026\u3002\uff01\uff1f")
_CLAUSE_END = frozenset(",;:\u2013\u2014\u3001\uff0c\uff1b\uff1a")
_CLOSERS = "\"')]\u201d\u2019\u300d\u300f\uff09"
# A line break after one of these reads better than a slightly more even one elsewhere.
_BREAK_AFTER = _SENTENCE_END | _CLAUSE_END
_BREAK_BONUS = 6
_TOKEN = re.compile(r"\S+")


class TranscriptFormat(enum.StrEnum):
    """How a door renders a transcript besides its structured fields."""

    JSON = "json"  # only the structured fields
    TEXT = "text"
    SRT = "srt"
    VTT = "vtt"


@dataclass(frozen=True)
class Cue:
    start_ms: int
    end_ms: int
    lines: tuple[str, ...]
    speaker: str = ""


@dataclass(frozen=True)
class _Piece:
    """The smallest unit a line or cue may break around: a word, or one wide character."""

    text: str  # no surrounding whitespace, never empty
    start_s: float
    end_s: float
    spaced: bool  # a space separates it from the piece before


def render(fmt: TranscriptFormat, text: str, segments: Sequence[SegmentTiming]) -> str:
    """The transcript as the format's document; empty for JSON, which has only the structured fields."""
    if fmt is TranscriptFormat.SRT:
        return to_srt(segments)
    if fmt is TranscriptFormat.VTT:
        return to_vtt(segments)
    if fmt is TranscriptFormat.TEXT:
        return text.strip() + "\n" if text.strip() else ""
    return ""


def to_srt(segments: Iterable[SegmentTiming]) -> str:
    """A SubRip document: numbered cues, ``HH:MM:SS,mmm`` times, a blank line after each cue."""
    blocks = [
        f"{n}\n{_clock(c.start_ms, ',')} --> {_clock(c.end_ms, ',')}\n" + "\n".join(c.lines) + "\n"
        for n, c in enumerate(cues(segments), start=1)
    ]
    return "\n".join(blocks)


def to_vtt(segments: Iterable[SegmentTiming]) -> str:
    """A WebVTT document: the ``WEBVTT`` header, ``HH:MM:SS.mmm`` times, a speaker as a voice span."""
    blocks = ["WEBVTT\n"]
    for c in cues(segments):
        lines = [_vtt_escape(line) for line in c.lines]
        if c.speaker:
            lines[0] = f"<v {_vtt_escape(c.speaker)}>{lines[0]}"
        blocks.append(f"{_clock(c.start_ms, '.')} --> {_clock(c.end_ms, '.')}\n" + "\n".join(lines) + "\n")
    return "\n".join(blocks)


def cues(segments: Iterable[SegmentTiming]) -> list[Cue]:
    """The cues of a transcript, in time order, none overlapping another."""
    raw: list[Cue] = []
    for segment in segments:
        pieces = _split_long(_word_pieces(segment) if segment.words else _text_pieces(segment))
        raw.extend(_cue(group, segment.speaker) for group in _pack(pieces))
    raw.sort(key=lambda c: c.start_ms)
    return _without_overlaps(raw)


def columns(text: str) -> int:
    """How many columns ``text`` takes on screen."""
    return sum(_char_columns(ch) for ch in text)


def _char_columns(ch: str) -> int:
    if unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


# -- pieces ------------------------------------------------------------------------------------------------


def _word_pieces(segment: SegmentTiming) -> list[_Piece]:
    spans = _align(segment.text, [w.text.strip() for w in segment.words])
    pieces: list[_Piece] = []
    if spans is None:
        for i, word in enumerate(segment.words):
            text = word.text.strip()
            if text:
                spaced = word.text[:1].isspace() or (i > 0 and not _unspaced_join(pieces, text))
                pieces.append(_Piece(text, word.start_s, word.end_s, spaced))
        return pieces
    # Each word shows the segment's text from where it starts to where the next begins, so punctuation the
    # word list dropped stays; the first also takes what comes before it (an opening quote).
    bounds = [0, *(start for start, _ in spans[1:]), len(segment.text)]
    for i, word in enumerate(segment.words):
        raw = segment.text[bounds[i] : bounds[i + 1]]
        text = raw.strip()
        if text:
            spaced = i > 0 and segment.text[bounds[i] - 1].isspace()
            pieces.append(_Piece(text, word.start_s, word.end_s, spaced))
    return pieces


def _unspaced_join(pieces: list[_Piece], text: str) -> bool:
    """Whether a word given without its spacing continues the previous one with no space (CJK)."""
    return bool(pieces) and (_char_columns(pieces[-1].text[-1]) == 2 or _char_columns(text[0]) == 2)


def _align(text: str, words: list[str]) -> list[tuple[int, int]] | None:
    """Where each word lies in ``text``, in order; None when one is not found (the text is not its words)."""
    spans: list[tuple[int, int]] = []
    cursor = 0
    for word in words:
        if not word:
            spans.append((cursor, cursor))
            continue
        found = re.compile(re.escape(word), re.IGNORECASE).search(text, cursor)
        if found is None:
            return None
        spans.append(found.span())
        cursor = found.end()
    return spans


def _text_pieces(segment: SegmentTiming) -> list[_Piece]:
    """The segment's words and wide characters, its time shared out by their columns."""
    units: list[tuple[str, bool]] = []
    for token in _TOKEN.finditer(segment.text):
        for j, part in enumerate(_wide_split(token.group())):
            units.append((part, j == 0 and bool(units)))
    weights = [columns(text) + (1 if spaced else 0) for text, spaced in units]
    total = sum(weights) or 1
    span = max(segment.end_s - segment.start_s, 0.0)
    pieces: list[_Piece] = []
    offset = 0
    for (text, spaced), weight in zip(units, weights, strict=True):
        start = segment.start_s + span * offset / total
        offset += weight
        pieces.append(_Piece(text, start, segment.start_s + span * offset / total, spaced))
    return pieces


def _wide_split(token: str) -> list[str]:
    """A token cut around each wide character, where a script written without spaces may break.

    Closing punctuation stays with what it closes and opening punctuation with what it opens, so no line
    starts with a full stop or ends with an opening bracket.
    """
    parts: list[tuple[str, bool]] = []  # (text, holds a wide character)
    for ch in token:
        wide = _char_columns(ch) == 2
        if parts and (
            unicodedata.category(ch) in ("Pe", "Pf", "Po")
            or all(unicodedata.category(c) in ("Ps", "Pi") for c in parts[-1][0])
            or not (wide or parts[-1][1])
        ):
            parts[-1] = (parts[-1][0] + ch, parts[-1][1] or wide)
        else:
            parts.append((ch, wide))
    return [text for text, _ in parts]


def _split_long(pieces: list[_Piece]) -> list[_Piece]:
    """Pieces wider than a line cut into line-wide parts, the piece's time shared out by their columns."""
    out: list[_Piece] = []
    for piece in pieces:
        if columns(piece.text) <= MAX_LINE_COLUMNS:
            out.append(piece)
            continue
        parts: list[str] = []
        current = ""
        for ch in piece.text:
            if current and columns(current + ch) > MAX_LINE_COLUMNS:
                parts.append(current)
                current = ""
            current += ch
        parts.append(current)
        total = columns(piece.text) or 1
        span = piece.end_s - piece.start_s
        offset = 0
        for i, part in enumerate(parts):
            start = piece.start_s + span * offset / total
            offset += columns(part)
            out.append(_Piece(part, start, piece.start_s + span * offset / total, piece.spaced and i == 0))
    return out


# -- cues --------------------------------------------------------------------------------------------------


def _pack(pieces: list[_Piece]) -> list[list[_Piece]]:
    """Consecutive pieces grouped into cues that fit two lines and seven seconds.

    Of the groupings that fit, the one chosen has the fewest cues, each new cue costing one, where a cue that
    ends mid-sentence costs two more and one that ends on a comma or the like half of one more: a cue
    is one sentence, or a clause of one, wherever the limits allow it.
    """
    n = len(pieces)
    reach = _line_reach(pieces)
    best = [0.0] + [math.inf] * n
    cut = [0] * (n + 1)
    for i in range(n):
        # Two lines end where the second line, started at the first's reach, reaches in turn.
        last = max(reach[reach[i]], i + 1)
        for j in range(i + 1, last + 1):
            if j > i + 1 and pieces[j - 1].end_s - pieces[i].start_s > MAX_CUE_S:
                break
            cost = best[i] + 1 + (0.0 if j == n else _end_penalty(pieces[j - 1].text))
            if cost < best[j]:
                best[j], cut[j] = cost, i
    groups: list[list[_Piece]] = []
    j = n
    while j > 0:
        groups.append(pieces[cut[j] : j])
        j = cut[j]
    return groups[::-1]


def _line_reach(pieces: list[_Piece]) -> list[int]:
    """For each piece, the end of the longest run starting there that fits on one line (itself at least)."""
    widths = [columns(p.text) for p in pieces]
    reach = [0] * (len(pieces) + 1)
    end = 0
    width = 0  # columns of pieces[i:end], from pieces[i] with no space before it
    for i in range(len(pieces)):
        if end <= i:
            end, width = i + 1, widths[i]
        while end < len(pieces) and width + widths[end] + pieces[end].spaced <= MAX_LINE_COLUMNS:
            width += widths[end] + pieces[end].spaced
            end += 1
        reach[i] = end
        if i + 1 < end:
            width -= widths[i] + pieces[i + 1].spaced
    reach[len(pieces)] = len(pieces)
    return reach


def _end_penalty(text: str) -> float:
    last = text.rstrip(_CLOSERS)[-1:]
    if last in _SENTENCE_END:
        return 0.0
    return 0.5 if last in _CLAUSE_END else 2.0


def _join(pieces: Sequence[_Piece]) -> str:
    return "".join((" " if p.spaced and i else "") + p.text for i, p in enumerate(pieces))


def _lines(pieces: list[_Piece]) -> tuple[str, ...] | None:
    """The pieces laid out on one line, or two balanced ones; None when they do not fit."""
    whole = _join(pieces)
    if columns(whole) <= MAX_LINE_COLUMNS:
        return (whole,)
    best: tuple[float, int] | None = None
    for i in range(1, len(pieces)):
        top, bottom = columns(_join(pieces[:i])), columns(_join(pieces[i:]))
        if max(top, bottom) > MAX_LINE_COLUMNS:
            continue
        # Balanced lines, a break after punctuation, and (on a tie) the shorter line on top.
        score = (
            max(top, bottom) - (_BREAK_BONUS if pieces[i - 1].text[-1] in _BREAK_AFTER else 0) + top / 1000
        )
        if best is None or score < best[0]:
            best = (score, i)
    if best is None:
        return None
    return _join(pieces[: best[1]]), _join(pieces[best[1] :])


def _cue(pieces: list[_Piece], speaker: str) -> Cue:
    lines = _lines(pieces)
    if lines is None:  # _pack groups only pieces that fit, and a single piece always does
        raise AssertionError("a cue was packed wider than two lines")
    start = max(round(pieces[0].start_s * 1000), 0)
    end = min(round(pieces[-1].end_s * 1000), start + round(MAX_CUE_S * 1000))
    return Cue(start, end, lines, speaker)


def _without_overlaps(raw: list[Cue]) -> list[Cue]:
    """Cues moved to start after the one before ends, then short ones held into the following gap."""
    placed: list[Cue] = []
    for cue in raw:
        start = max(cue.start_ms, placed[-1].end_ms if placed else 0)
        end = max(cue.end_ms, start + 1)
        placed.append(Cue(start, end, cue.lines, cue.speaker))
    min_ms = round(MIN_CUE_S * 1000)
    for i, cue in enumerate(placed):
        if cue.end_ms - cue.start_ms < min_ms and i + 1 < len(placed):
            end = max(cue.end_ms, min(cue.start_ms + min_ms, placed[i + 1].start_ms))
            placed[i] = Cue(cue.start_ms, end, cue.lines, cue.speaker)
    return placed


def _clock(ms: int, separator: str) -> str:
    seconds, millis = divmod(ms, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{millis:03d}"


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
