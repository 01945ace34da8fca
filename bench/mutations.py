"""Seeded mutations for fuzzing: bit flips, truncations, splices and boundary integers written over headers.

The same seed gives the same sequence of inputs, so a failure found by a run can be found again.
"""

from __future__ import annotations

import random
import struct

# Container headers keep their sizes, rates and counts in the first bytes; mutating there reaches the
# parsing code rather than just the samples.
HEADER_BYTES = 256
_BOUNDARY_INTEGERS = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)
OPERATIONS = ("flip", "truncate", "splice", "integer")


def _flip(rng: random.Random, data: bytes) -> bytes:
    buffer = bytearray(data)
    span = min(len(buffer), HEADER_BYTES) if rng.random() < 0.5 else len(buffer)
    for _ in range(rng.randint(1, 16)):
        buffer[rng.randrange(span)] ^= 1 << rng.randrange(8)
    return bytes(buffer)


def _integer(rng: random.Random, data: bytes) -> bytes:
    width = rng.choice((2, 4))
    if len(data) <= width:
        return data
    at = rng.randrange(min(len(data), HEADER_BYTES) - width + 1)
    value = rng.choice(_BOUNDARY_INTEGERS) & ((1 << (8 * width)) - 1)
    return data[:at] + struct.pack("<H" if width == 2 else "<I", value) + data[at + width :]


def mutate(rng: random.Random, data: bytes, donor: bytes) -> tuple[str, bytes]:
    """One to three mutations of ``data`` (``donor`` supplies the tail of a splice); returns their names."""
    names = []
    for _ in range(rng.randint(1, 3)):
        if not data:
            break
        operation = rng.choice(OPERATIONS)
        names.append(operation)
        if operation == "flip":
            data = _flip(rng, data)
        elif operation == "truncate":
            data = data[: rng.randrange(len(data))]
        elif operation == "splice":
            data = data[: rng.randrange(len(data))] + donor[rng.randrange(len(donor)) :]
        else:
            data = _integer(rng, data)
    return "+".join(names), data
