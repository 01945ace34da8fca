"""Checks on the text callers hand to engines (words to speak, questions, prompts)."""

from __future__ import annotations

import re

from sentencex import get_sentence_boundaries

from gateway.core.errors import InvalidInput

# C0 and C1 control characters, DEL, and lone surrogates; tab, line feed and carriage return are ordinary
# whitespace. Engines choke on the rest (piper raises on a NUL), and that must be the caller's error, not
# a failure counted against the engine's health.
_REFUSED = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def refuse_control_characters(text: str, field: str) -> None:
    """Raise InvalidInput naming the first control character in ``text`` and where it is."""
    found = _REFUSED.search(text)
    if found is None:
        return
    raise InvalidInput(
        f"{field} contains the control character U+{ord(found.group()):04X} at position {found.start()}: "
        "remove it (of the control characters, only tab, line feed and carriage return are accepted)"
    )


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """``[start, end)`` offsets of the sentences of ``text``, whitespace between them left out.

    sentencex (Wikimedia's segmenter, rules for some 300 languages, compiled) finds the ends: not after
    abbreviations such as "Dr." or "e.g.", inside decimals or an ellipsis that runs on, but after closing
    quotes and brackets, at paragraph breaks, and at the full stops of other scripts (。, ।, ؟). A request
    names a voice, not a language, so the English rules are used; they fall back to the common
    punctuation of every script. pysbd was the other candidate: its regular expressions backtrack
    catastrophically on text such as "..[111 111 111 111 111 111 111 111]" (seconds, growing
    exponentially), which any caller could send. Only the boundaries are taken, and the spans are cut
    from ``text`` itself, so every character of it is in exactly one span.
    """
    ends = {b["end_index"] for b in get_sentence_boundaries("en", text)}
    spans: list[tuple[int, int]] = []
    start = 0
    for end in sorted(e for e in ends | {len(text)} if 0 < e <= len(text)):
        if text[start:end].strip():
            spans.append(_trimmed(text, start, end))
            start = end
    return spans


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    piece = text[start:end]
    return start + len(piece) - len(piece.lstrip()), start + len(piece.rstrip())
