"""Caller text reaching an engine: control characters are the caller's error, ordinary whitespace is not."""

from __future__ import annotations

import itertools
import time

import pytest

from gateway.core.errors import InvalidInput
from gateway.core.text import refuse_control_characters, sentence_spans


@pytest.mark.parametrize(
    "text",
    ["Hello.", "Line one.\nLine two.", "Tab\tseparated", "Windows\r\nline", "Emoji 😀 and é", "a\u200bb"],
)
def test_ordinary_text_passes(text):
    refuse_control_characters(text, "text")


@pytest.mark.parametrize(
    ("text", "code", "position"),
    [
        ("\x00", "U+0000", 0),
        ("Hi\x00there", "U+0000", 2),
        ("bell\x07", "U+0007", 4),
        ("ab\x0bc", "U+000B", 2),  # vertical tab: not ordinary whitespace for an engine
        ("x\x1b[31m", "U+001B", 1),
        ("del\x7f", "U+007F", 3),
        ("c1\x85", "U+0085", 2),
        ("lone \ud800", "U+D800", 5),
    ],
)
def test_control_characters_are_named_with_their_position(text, code, position):
    with pytest.raises(InvalidInput) as caught:
        refuse_control_characters(text, "question")
    message = str(caught.value)
    assert message.startswith(f"question contains the control character {code} at position {position}:")
    assert "tab, line feed and carriage return" in message


def _sentences(text: str) -> list[str]:
    return [text[start:end] for start, end in sentence_spans(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Abbreviations and initials do not end a sentence.
        (
            "Dr. Smith met Mr. Jones at 5 p.m. on Jan. 3rd. They talked.",
            ["Dr. Smith met Mr. Jones at 5 p.m. on Jan. 3rd.", "They talked."],
        ),
        ("Bring e.g. apples. The U.S. team won.", ["Bring e.g. apples.", "The U.S. team won."]),
        # Decimals and prices.
        ("It costs $3.50 today. Pi is 3.14159.", ["It costs $3.50 today.", "Pi is 3.14159."]),
        # An ellipsis inside a sentence runs on; one before a new sentence ends it.
        ("He paused... and went on. Done.", ["He paused... and went on.", "Done."]),
        ("Then he left... Did he return?", ["Then he left...", "Did he return?"]),
        ("Wait… what? Really!? Yes.", ["Wait… what?", "Really!?", "Yes."]),
        # Closing quotes stay with their sentence.
        ('He said "Stop." Then he went home.', ['He said "Stop."', "Then he went home."]),
        ('"Yes!" she said. "No?" he asked.', ['"Yes!" she said.', '"No?" he asked.']),
        # Other languages' punctuation.
        (
            "Dr. Müller kam um 3.50 Uhr. Er ging z.B. heim.",
            ["Dr. Müller kam um 3.50 Uhr.", "Er ging z.B. heim."],
        ),
        (
            "¿Dónde está el Sr. García? ¡Aquí! Vale.",
            ["¿Dónde está el Sr. García?", "¡Aquí!", "Vale."],
        ),
        (
            "你好。今天天气很好！你呢？",
            ["你好。", "今天天气很好！", "你呢？"],
        ),
        (
            "こんにちは。元気ですか？",
            ["こんにちは。", "元気ですか？"],
        ),
        (
            "मैं घर जा रहा हूँ। तुम कहाँ हो?",
            [
                "मैं घर जा रहा हूँ।",
                "तुम कहाँ हो?",
            ],
        ),
        (
            "مرحبا. كيف حالك؟ أنا بخير.",
            [
                "مرحبا.",
                "كيف حالك؟",
                "أنا بخير.",
            ],
        ),
        (
            "M. Dupont arrive. « Bonjour ! » dit-il.",
            ["M. Dupont arrive.", "« Bonjour ! » dit-il."],
        ),
        # Paragraphs; surrounding and inner whitespace is left out of the spans.
        ("  First part.\n\nSecond part  ", ["First part.", "Second part"]),
        ("No ending at all", ["No ending at all"]),
        ("Same. Same. Same.", ["Same.", "Same.", "Same."]),
    ],
)
def test_sentences_end_where_a_reader_would_pause(text, expected):
    assert _sentences(text) == expected


@pytest.mark.parametrize("text", ["", "   ", "\n\n\t"])
def test_blank_text_has_no_sentences(text):
    assert sentence_spans(text) == []


def test_every_character_is_in_one_span_and_spans_do_not_overlap():
    text = "Dr. A said “go.”  Then… B went (quietly.) Fin. 你好。 ¿Sí? 3.5 m. ok"
    spans = sentence_spans(text)
    for i, char in enumerate(text):
        holders = sum(start <= i < end for start, end in spans)
        assert holders == (0 if char.isspace() and not any(s < i < e - 1 for s, e in spans) else 1), i
    assert all(not text[start].isspace() and not text[end - 1].isspace() for start, end in spans)
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(spans))


def test_a_text_that_makes_regex_splitters_backtrack_is_split_at_once():
    # pysbd takes seconds on eight groups and exponentially more on each further one.
    text = "See above..[" + " ".join(["111"] * 40) + "] And more. " * 50
    started = time.perf_counter()
    spans = sentence_spans(text)
    assert time.perf_counter() - started < 0.5
    assert len(spans) >= 50
