"""A real websocket server on 127.0.0.1 that the live-transcription vendor fakes build on.

The server runs on its own event loop in a thread, so a test's loop (where the real SDK runs) and the fake
never wait on each other. Every connection becomes a :class:`Session` that records what the client sent:
the URL's query parameters, the headers, every byte of audio and every control message, in order.

A fake answers as the audio arrives: it knows a script of words on the audio timeline and says what a
vendor would have heard once enough seconds of audio have come in. Failure knobs, read when the audio
reaches them (seconds on the session's audio timeline):

- ``drop_after_s``: end the TCP stream without a close frame (a vendor that vanished);
- ``stall_after_s``: keep reading, but never answer again (a vendor that hangs);
- ``error_after_s``: the vendor's own error (an error message and/or a close code, per vendor);
- ``api_key``: the handshake of any other key is refused with HTTP 401.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

SAMPLE_WIDTH = 2  # s16le mono


@dataclass(frozen=True)
class ScriptWord:
    text: str  # as spoken, lower case
    punctuated: str  # as a formatted transcript shows it
    start: float  # seconds on the audio timeline
    end: float
    confidence: float = 0.95


# Two utterances with a pause between them long enough to end the first one.
SCRIPT: tuple[tuple[ScriptWord, ...], ...] = (
    (
        ScriptWord("hello", "Hello", 0.30, 0.62),
        ScriptWord("from", "from", 0.70, 0.92),
        ScriptWord("the", "the", 0.95, 1.05),
        ScriptWord("gateway", "gateway.", 1.10, 1.60, 0.91),
    ),
    (
        ScriptWord("streams", "Streams", 2.80, 3.20),
        ScriptWord("never", "never", 3.30, 3.60, 0.88),
        ScriptWord("stop", "stop.", 3.70, 4.10),
    ),
)


@dataclass
class Session:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    audio: bytearray = field(default_factory=bytearray)
    controls: list[dict[str, Any]] = field(default_factory=list)
    # Audio seconds received when each control message arrived, in the same order as ``controls``.
    control_at_s: list[float] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    audio_messages: int = 0
    closing: bool = False  # the fake began to close: later messages are read and dropped
    closed: bool = False
    opened_at: float = field(default_factory=time.monotonic)

    @property
    def sample_rate(self) -> int:
        return int(self.query.get("sample_rate", "16000"))

    @property
    def heard_s(self) -> float:
        return len(self.audio) / (SAMPLE_WIDTH * self.sample_rate)

    def control_types(self) -> list[str]:
        return [str(c.get("type")) for c in self.controls]


class WsFake:
    """Start with ``with Fake() as fake:``; ``fake.url`` is an http:// base URL for SDKs that derive ws://."""

    def __init__(self, api_key: str | None = None) -> None:
        self.api_key = api_key
        self.sessions: list[Session] = []
        self.handshakes = 0
        self.drop_after_s: float | None = None
        self.stall_after_s: float | None = None
        self.error_after_s: float | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: Server | None = None
        self._closing: set[asyncio.Task[None]] = set()

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> WsFake:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(10)
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            assert self._server is not None
            # Sessions a test left stalled would hold a graceful close open: they are cut instead.
            self._server.close(close_connections=False)
            for connection in list(self._server.all_connections):
                connection.transport.abort()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> WsFake:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        self.sessions.clear()
        self.handshakes = 0
        self.drop_after_s = self.stall_after_s = self.error_after_s = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return next(iter(self._server.sockets)).getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def session(self) -> Session:
        assert self.sessions, "no client has connected"
        return self.sessions[-1]

    # -- serving ---------------------------------------------------------------------

    async def _serve(self) -> Server:
        return await serve(self._handle, "127.0.0.1", 0, process_request=self._process_request)

    def authorized(self, headers: Headers) -> bool:
        raise NotImplementedError

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.handshakes += 1
        if self.api_key is not None and not self.authorized(request.headers):
            return connection.respond(HTTPStatus.UNAUTHORIZED, "Invalid credentials.\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        sock = ws.transport.get_extra_info("socket")
        if sock is not None:
            # Answers are small frames sent as audio arrives: Nagle would hold each one for the client's
            # delayed ACK and add tens of milliseconds to every latency a test or benchmark measures.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        parts = urlsplit(ws.request.path if ws.request else "/")
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        headers = {k.lower(): v for k, v in (ws.request.headers.raw_items() if ws.request else [])}
        session = Session(path=parts.path, query=query, headers=headers)
        self.sessions.append(session)
        try:
            await self.converse(ws, session)
        except ConnectionClosed:
            pass
        finally:
            session.closed = True

    async def converse(self, ws: ServerConnection, session: Session) -> None:
        raise NotImplementedError

    # -- helpers for vendor fakes ----------------------------------------------------

    def stalled(self, session: Session) -> bool:
        return self.stall_after_s is not None and session.heard_s >= self.stall_after_s

    def should_drop(self, session: Session) -> bool:
        return self.drop_after_s is not None and session.heard_s >= self.drop_after_s

    def should_error(self, session: Session) -> bool:
        return self.error_after_s is not None and session.heard_s >= self.error_after_s

    async def send(self, ws: ServerConnection, session: Session, message: dict[str, Any]) -> None:
        if self.stalled(session):
            return
        session.sent.append(message)
        await ws.send(json.dumps(message))

    @staticmethod
    def drop(ws: ServerConnection, session: Session) -> None:
        """Hang up without a close frame: what was sent still arrives, then the TCP stream just ends.

        An abort would reset the connection while the client's audio sits unread, and a reset discards
        answers still in flight, so what the client heard before the drop would be left to chance.
        """
        session.closing = True
        ws.transport.write_eof()

    def close(self, ws: ServerConnection, session: Session, code: int, reason: str = "") -> None:
        """Start the closing handshake without waiting in the handler.

        Awaiting ``ws.close()`` here would stop reading: the connection's incoming queue fills with the
        audio the client keeps sending, reading pauses, and the client's close frame is never read.
        The handler goes on draining until the connection is closed.
        """
        session.closing = True
        task = asyncio.get_running_loop().create_task(ws.close(code, reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
