"""Uploads: the size limit holds while the body streams in, and no body or field, however mangled, makes
the HTTP door answer 500."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from urllib.parse import quote

import httpx
import pytest

from gateway.app import build_app
from gateway.grpc.server import GatewayServer
from gateway.http.app import create_http_app
from gateway.http.server import HttpDoor, http_doors
from gateway.http.uploads import FORM_ALLOWANCE_BYTES
from providers.testing import FakeTranscriber
from tests.audio_files import encode, tone
from tests.conftest import local_settings
from tests.multipart_bodies import form_part

LIMIT = 100_000
CHUNK = 16 * 1024
BOUNDARY = "gw-boundary-7"


def _head(boundary: str = BOUNDARY) -> bytes:
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()


class CountingBody:
    """A form whose file holds ``file_bytes`` zeros, sent in chunks; records how much the server pulled."""

    def __init__(self, file_bytes: int) -> None:
        self.file_bytes = file_bytes
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        head = _head()
        self.pulled += len(head)
        yield head
        left = self.file_bytes
        while left > 0:
            chunk = b"\0" * min(CHUNK, left)
            left -= len(chunk)
            self.pulled += len(chunk)
            yield chunk
        yield f"\r\n--{BOUNDARY}--\r\n".encode()


@pytest.fixture
async def asgi_client() -> AsyncIterator[httpx.AsyncClient]:
    # In process: httpx's ASGI transport hands the body over only as the app asks for it, so what the
    # app pulled is what it read.
    app = build_app(local_settings(max_audio_bytes=LIMIT), providers=[FakeTranscriber()])
    transport = httpx.ASGITransport(app=create_http_app(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        yield client
    await app.close()


async def test_a_chunked_body_is_refused_at_the_limit_not_after_reading_it(asgi_client):
    body = CountingBody(file_bytes=50 * 1024 * 1024)
    reply = await asgi_client.post(
        "/v1/audio/transcriptions",
        content=body,
        headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    assert reply.status_code == 413, reply.text
    assert reply.json()["error"]["code"] == "request_too_large"
    assert LIMIT < body.pulled <= LIMIT + FORM_ALLOWANCE_BYTES + 2 * CHUNK


async def test_a_declared_length_over_the_limit_is_refused_before_any_byte_is_read(asgi_client):
    body = CountingBody(file_bytes=10 * 1024 * 1024)
    reply = await asgi_client.post(
        "/v1/audio/transcriptions",
        content=body,
        headers={
            "content-type": f"multipart/form-data; boundary={BOUNDARY}",
            "content-length": str(10 * 1024 * 1024),
        },
    )
    assert reply.status_code == 413
    assert body.pulled == 0


async def test_a_body_just_under_the_limit_is_read_whole(asgi_client):
    # Past the size check the audio is judged: a file of zeros is not audio.
    body = CountingBody(file_bytes=LIMIT - 1024)
    reply = await asgi_client.post(
        "/v1/audio/transcriptions",
        content=body,
        headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    assert reply.status_code == 400 and reply.json()["error"]["code"] == "invalid_audio"
    assert body.pulled == len(_head()) + LIMIT - 1024


# -- fuzz -------------------------------------------------------------------------------------------------

NASTY = [
    "",
    " ",
    "\x00",
    "nan",
    "inf",
    "-1",
    "1e999",
    "true",
    "false",
    "[]",
    "{}",
    "null",
    "policy:",
    "provider:",
    "policy:default",
    "provider:fake-stt",
    "verbose_json",
    "json",
    "text",
    "word",
    "segment",
    "en",
    "zz-ZZ",
    "ünïcödé",
    "\u202e\u200b",
    "\ud7ff" * 50,
    "x" * 20_000,
    'a\r\nContent-Disposition: form-data; name="evil"',
    "--" + BOUNDARY,
]
FIELDS = [
    "model",
    "language",
    "prompt",
    "response_format",
    "temperature",
    "timestamp_granularities[]",
    "stream",
    "file",
    "include[]",
    "chunking_strategy",
    "",
    "naïve",
]


def _part(name: str, value: bytes, filename: str | None = None, content_type: str | None = None) -> bytes:
    return form_part(BOUNDARY, name, value, filename, content_type)


def _mutate(data: bytes, rng: random.Random) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        if not data:
            break
        op = rng.randrange(5)
        at = rng.randrange(len(data))
        if op == 0:
            data[at] ^= 1 << rng.randrange(8)
        elif op == 1:
            del data[at : at + rng.randint(1, 64)]
        elif op == 2:
            data[at:at] = rng.randbytes(rng.randint(1, 64))
        elif op == 3:
            data = data[: at + 1]
        else:
            span = data[at : at + rng.randint(1, 256)]
            data[at:at] = span * rng.randint(1, 4)
    return bytes(data)


def _case(rng: random.Random, audio: bytes) -> tuple[bytes, str]:
    """One request body and content type: a plausible form with random fields, often mangled."""
    parts = []
    file_bytes = _mutate(audio, rng) if rng.random() < 0.5 else audio
    if rng.random() < 0.9:
        parts.append(_part("file", file_bytes, rng.choice(["a.wav", "", "../x", "é.mp3"]), "audio/wav"))
    for _ in range(rng.randint(0, 6)):
        name = rng.choice(FIELDS)
        value = rng.choice(NASTY).encode("utf-8", "surrogatepass")
        if rng.random() < 0.1:
            value = rng.randbytes(rng.randint(0, 40))
        parts.append(_part(name, value))
    if rng.random() < 0.8:
        parts.insert(rng.randrange(len(parts) + 1), _part("model", rng.choice(NASTY[:20]).encode()))
    body = b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()
    if rng.random() < 0.3:
        body = _mutate(body, rng)
    content_type = f"multipart/form-data; boundary={BOUNDARY}"
    if rng.random() < 0.1:
        content_type = rng.choice(
            [
                "multipart/form-data",
                "multipart/form-data; boundary=",
                "multipart/form-data; boundary=other",
                "application/json",
                "text/plain; charset=utf-8",
                "multipart/form-data; boundary=" + "b" * 300,
                "multipart/form-data; charset=nonexistent; boundary=" + BOUNDARY,
            ]
        )
    return body, content_type


@pytest.fixture
async def live() -> AsyncIterator[str]:
    settings = local_settings(max_audio_bytes=LIMIT)
    settings.whisper.enabled = settings.piper.enabled = settings.llama.enabled = False
    settings.http.host, settings.http.port = "127.0.0.1", 0
    settings.redis.key_prefix = f"test-http-fuzz:{uuid.uuid4().hex}:"
    settings.admission.transcribe = 0
    server = GatewayServer(settings, providers=[FakeTranscriber()], doors=http_doors(settings))
    await server.start()
    await server.wait_ready(10)
    door = server.doors[0]
    assert isinstance(door, HttpDoor)
    yield f"http://127.0.0.1:{door.port}"
    await server.stop(2)


async def test_mangled_uploads_and_fields_never_make_a_500(live):
    rng = random.Random(20261128)
    audio = encode(tone(0.5), 16_000, "wav")
    statuses: dict[int, int] = {}
    async with httpx.AsyncClient(base_url=live, timeout=30) as http:
        for _ in range(300):
            body, content_type = _case(rng, audio)
            path = rng.choice(["/v1/audio/transcriptions"] * 3 + ["/v1/audio/translations"])
            reply = await http.post(path, content=body, headers={"content-type": content_type})
            statuses[reply.status_code] = statuses.get(reply.status_code, 0) + 1
            assert reply.status_code < 500 or reply.status_code == 503, (reply.status_code, reply.text[:500])
            if reply.status_code >= 400:
                error = reply.json()["error"]
                assert set(error) == {"message", "type", "param", "code"} and error["message"]
        for _ in range(50):
            name = rng.choice(NASTY).encode("utf-8", "surrogatepass").decode("utf-8", "replace")
            reply = await http.get("/v1/models/" + quote(name, safe=""))
            assert reply.status_code in (200, 404), (reply.status_code, reply.text[:300])
    # The corpus reaches the pipeline as well as the refusals in front of it.
    assert statuses.get(200, 0) >= 10 and statuses.get(400, 0) >= 100, statuses
