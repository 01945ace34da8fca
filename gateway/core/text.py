"""Checks on the text callers hand to engines (words to speak, questions, prompts)."""

from __future__ import annotations

import re

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


# A sentence ends at ., !, ? or … (with closing quotes or brackets) and whitespace, or at a line break.
_SENTENCE_END = re.compile(r"""[.!?\u2026]+["'\u201d\u2019)\]]*\s+|\n\s*""")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """``[start, end)`` offsets of the sentences of ``text``, whitespace between them left out.

    The split is deliberately plain (an abbreviation such as "Dr." ends a sentence): a sentence is only a
    unit of streaming and of failover, and speaking it on its own costs an engine nothing in quality.
    """
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        end = match.start() + len(match.group().rstrip())
        if text[start:end].strip():
            spans.append(_trimmed(text, start, end))
        start = match.end()
    if text[start:].strip():
        spans.append(_trimmed(text, start, len(text)))
    return spans


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    piece = text[start:end]
    return start + len(piece) - len(piece.lstrip()), start + len(piece.rstrip())
