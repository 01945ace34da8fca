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
