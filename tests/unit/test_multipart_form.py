"""The HTTP door's in-memory form parser reads every body, however mangled, as Starlette's parser does:
the same parts with the same values, or the same refusal."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from gateway.http.multipart_form import FilePart, MalformedForm, parse_form
from tests.audio_files import encode, tone
from tests.multipart_bodies import form_part

BOUNDARY = "form-boundary-3"
LIMITS = {"max_files": 1, "max_fields": 4, "max_part_size": 1024}


def _part(name: str, value: bytes, filename: str | None = None, content_type: str | None = None) -> bytes:
    return form_part(BOUNDARY, name, value, filename, content_type)


def _mangle(data: bytes, rng: random.Random) -> bytes:
    mangled = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(mangled) + 1)
        op = rng.randrange(4)
        if op == 0 and at < len(mangled):
            mangled[at] ^= 1 << rng.randrange(8)
        elif op == 1:
            del mangled[at : at + rng.randint(1, 32)]
        elif op == 2:
            mangled[at:at] = rng.choice([b"\r\n", b"--", BOUNDARY.encode(), b'"', b";", rng.randbytes(8)])
        else:
            mangled = mangled[:at]
    return bytes(mangled)


def _body(rng: random.Random, audio: bytes) -> bytes:
    parts = [_part("model", b"whisper-1")]
    for _ in range(rng.randint(0, 5)):
        value = rng.choice([b"", b"en", "ünï".encode(), b"x" * 1500, rng.randbytes(12)])
        parts.append(_part(rng.choice(["language", "prompt", "include[]", "naïve", ""]), value))
    for _ in range(rng.choice([0, 1, 1, 1, 2])):
        content_type = rng.choice(["audio/wav", None, "application/octet-stream"])
        parts.insert(
            rng.randrange(len(parts) + 1), _part("file", audio, rng.choice(["a.wav", ""]), content_type)
        )
    body = b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()
    return _mangle(body, rng) if rng.random() < 0.6 else body


async def _chunks(body: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def _starlette(content_type: str, body: bytes, size: int) -> object:
    parser = MultiPartParser(Headers({"content-type": content_type}), _chunks(body, size), **LIMITS)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        return ("refused", exc.message)
    items = []
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            items.append((name, (await value.read(), value.filename, value.content_type or "")))
            await value.close()
        else:
            items.append((name, value))
    return items


async def _ours(content_type: str, body: bytes, size: int) -> object:
    try:
        parsed = await parse_form(content_type, _chunks(body, size), **LIMITS)
    except MalformedForm as exc:
        return ("refused", str(exc))
    return [
        (name, (value.data, value.filename, value.content_type) if isinstance(value, FilePart) else value)
        for name, value in parsed
    ]


async def test_mangled_forms_parse_as_starlette_parses_them():
    rng = random.Random(20261128)
    audio = encode(tone(0.2), 16_000, "wav")
    outcomes = set()
    for _ in range(400):
        body = _body(rng, audio)
        content_type = rng.choice(
            [f"multipart/form-data; boundary={BOUNDARY}"] * 8
            + ["multipart/form-data", f"multipart/form-data; charset=latin-1; boundary={BOUNDARY}"]
        )
        size = rng.choice([7, 1000, 65536])
        expected = await _starlette(content_type, body, size)
        assert await _ours(content_type, body, size) == expected, (content_type, body[:300])
        outcomes.add(expected[0] if isinstance(expected, tuple) else "parsed")
    # The corpus reaches both outcomes, so the comparison means something.
    assert outcomes == {"refused", "parsed"}


@pytest.mark.parametrize("size", [1, 64, 65536])
async def test_a_file_is_read_whole_whatever_the_chunking(size):
    audio = encode(tone(0.3), 16_000, "wav")
    body = (
        _part("file", audio, "a.wav", "audio/wav")
        + _part("model", b"whisper-1")
        + f"--{BOUNDARY}--\r\n".encode()
    )
    parsed = await parse_form(f"multipart/form-data; boundary={BOUNDARY}", _chunks(body, size), **LIMITS)
    assert parsed == [("file", FilePart(audio, "a.wav", "audio/wav")), ("model", "whisper-1")]
