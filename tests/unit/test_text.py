"""Caller text reaching an engine: control characters are the caller's error, ordinary whitespace is not."""

from __future__ import annotations

import pytest

from gateway.core.errors import InvalidInput
from gateway.core.text import refuse_control_characters


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
