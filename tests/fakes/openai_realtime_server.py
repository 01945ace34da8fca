"""A fake of OpenAI's Realtime transcription sessions: a websocket on 127.0.0.1 speaking the event format.

Give the SDK ``base_url=fake.base_url``; it connects to ``ws://127.0.0.1:PORT/v1/realtime?intent=transcription``.
The fake answers the way the Realtime API does:

- on connect, ``session.created``; on ``session.update``, ``session.updated`` (the config is recorded);
- ``input_audio_buffer.append`` (base64 s16le at the session's rate, 24 kHz unless the session says
  otherwise): the bytes are recorded. With server VAD on (the default), an energy detector over 10 ms frames
  emits ``input_audio_buffer.speech_started`` (``audio_start_ms``, less ``prefix_padding_ms``) and, after
  ``silence_duration_ms`` of quiet, ``input_audio_buffer.speech_stopped`` (``audio_end_ms``) followed by
  ``input_audio_buffer.committed`` and the transcription. With ``turn_detection: null`` only commits end
  an item;
- the transcript of the n-th item is ``script[n]``, or, when ``hear`` is set, what ``hear(pcm, rate)``
  makes of the item's audio (so a test can tell which audio the fake was sent); its words arrive as
  ``conversation.item.input_audio_transcription.delta`` events as the item's audio accumulates (one word
  per ``seconds_per_word``), the rest when the item is committed, then
  ``conversation.item.input_audio_transcription.completed`` with the whole text and duration usage;
- ``input_audio_buffer.commit`` with less than 100 ms in the buffer is refused with an ``error`` event
  (code ``input_audio_buffer_commit_empty``), as OpenAI does.

Failure knobs, read as audio arrives: ``reject_auth`` (401 on the upgrade), ``drop_after_s`` (the TCP
connection is cut without a close frame), ``stall_after_s`` (the fake stops answering but keeps the socket
open), ``error_after_s`` (an ``error`` event of type ``error_type``).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

DEFAULT_RATE = 24_000
FRAME_MS = 10
# Mean absolute amplitude (of 32768) above which a 10 ms frame counts as speech.
SPEECH_LEVEL = 500.0
MIN_COMMIT_MS = 100


@dataclass
class Connection:
    """What one websocket connection received."""

    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    events: list[dict[str, Any]] = field(default_factory=list)  # every client event but the audio
    sessions: list[dict[str, Any]] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    commits: int = 0
    dropped: int = 0  # audio bytes the server threw away (vLLM, between a final commit and its done)
    closed_by_client: bool = False
    default_rate: int = DEFAULT_RATE

    @property
    def audio_s(self) -> float:
        return len(self.audio) / 2 / self.rate

    @property
    def rate(self) -> int:
        session = self.sessions[-1] if self.sessions else {}
        fmt = session.get("audio", {}).get("input", {}).get("format") or {}
        return int(fmt.get("rate", self.default_rate))


class _Session:
    """The server's side of one connection: VAD, items, transcripts."""

    def __init__(self, fake: FakeOpenAIRealtime, conn: Connection, ws: ServerConnection) -> None:
        self.fake = fake
        self.conn = conn
        self.ws = ws
        self.ids = itertools.count(1)
        self.vad: dict[str, Any] | None = {
            "type": "server_vad",
            "silence_duration_ms": 500,
            "prefix_padding_ms": 300,
        }
        self.samples = 0  # received, at the session's rate
        self.item_start = 0  # where the current (uncommitted) buffer starts, in samples
        self.speaking = False
        self.speech_item: str | None = None
        self.quiet_samples = 0
        self.pending = np.zeros(0, dtype="<i2")  # less than one VAD frame, kept for the next append
        self.words_sent = 0
        self.delta_item: str | None = None
        self.stalled = False
        self.errored = False

    # -- helpers -----------------------------------------------------------------------

    def ms(self, samples: int) -> int:
        return samples * 1000 // self.conn.rate

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self.ids):04d}"

    async def emit(self, event: dict[str, Any]) -> None:
        if self.stalled:
            return
        event.setdefault("event_id", self.new_id("event"))
        await self.ws.send(json.dumps(event))

    def script_text(self) -> str:
        if self.fake.hear is not None:
            heard = self.conn.audio[self.item_start * 2 : self.samples * 2]
            return " ".join(self.fake.hear(bytes(heard), self.conn.rate))
        index = self.fake.items_completed
        return self.fake.script[index] if index < len(self.fake.script) else ""

    def current_item(self) -> str:
        if self.delta_item is None:
            self.delta_item = self.new_id("item")
        return self.delta_item

    # -- events --------------------------------------------------------------------------

    async def handle(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "session.update":
            session = event.get("session") or {}
            self.conn.sessions.append(session)
            audio_in = session.get("audio", {}).get("input", {})
            if "turn_detection" in audio_in:
                self.vad = audio_in["turn_detection"]
            if session.get("type") != "transcription":
                await self.error("invalid_request_error", "session.type must be 'transcription'", event)
                return
            await self.emit({"type": "session.updated", "session": session})
        elif kind == "input_audio_buffer.append":
            await self.append(base64.b64decode(event.get("audio", "")))
        elif kind == "input_audio_buffer.commit":
            self.conn.commits += 1
            await self.commit(event)
        else:
            await self.error("invalid_request_error", f"unknown event type {kind!r}", event)

    async def error(
        self, type_: str, message: str, cause: dict[str, Any] | None, code: str | None = None
    ) -> None:
        await self.emit(
            {
                "type": "error",
                "error": {
                    "type": type_,
                    "code": code,
                    "message": message,
                    "param": None,
                    "event_id": (cause or {}).get("event_id"),
                },
            }
        )

    async def append(self, data: bytes) -> None:
        self.conn.audio.extend(data)
        fake = self.fake
        received_s = self.conn.audio_s
        if fake.drop_after_s is not None and received_s >= fake.drop_after_s:
            self.ws.transport.abort()
            return
        if fake.stall_after_s is not None and received_s >= fake.stall_after_s:
            self.stalled = True
        if fake.error_after_s is not None and received_s >= fake.error_after_s and not self.errored:
            self.errored = True
            await self.error(fake.error_type, "injected failure", None, fake.error_code)
        samples = np.concatenate([self.pending, np.frombuffer(data, dtype="<i2")])
        frame = self.conn.rate * FRAME_MS // 1000
        whole = len(samples) - len(samples) % frame
        self.pending = samples[whole:]
        for start in range(0, whole, frame):
            loud = float(np.abs(samples[start : start + frame].astype(np.int32)).mean()) > SPEECH_LEVEL
            self.samples += frame
            await self.step_vad(loud)
            if self.speaking or self.vad is None:
                await self.send_due_words()

    async def step_vad(self, loud: bool) -> None:
        if self.vad is None:
            return
        if loud and not self.speaking:
            self.speaking = True
            self.quiet_samples = 0
            self.speech_item = self.current_item()
            padding = self.conn.rate * int(self.vad.get("prefix_padding_ms", 300)) // 1000
            onset = max(self.samples - self.conn.rate * FRAME_MS // 1000 - padding, self.item_start)
            self.item_start = onset
            await self.emit(
                {
                    "type": "input_audio_buffer.speech_started",
                    "audio_start_ms": self.ms(onset),
                    "item_id": self.speech_item,
                }
            )
        elif self.speaking:
            self.quiet_samples = 0 if loud else self.quiet_samples + self.conn.rate * FRAME_MS // 1000
            if self.quiet_samples * 1000 >= int(self.vad.get("silence_duration_ms", 500)) * self.conn.rate:
                self.speaking = False
                item = self.speech_item or self.current_item()
                await self.emit(
                    {
                        "type": "input_audio_buffer.speech_stopped",
                        "audio_end_ms": self.ms(self.samples),
                        "item_id": item,
                    }
                )
                await self.finish_item(item)

    async def send_due_words(self) -> None:
        words = self.script_text().split()
        heard_s = (self.samples - self.item_start) / self.conn.rate
        due = min(int(heard_s / self.fake.seconds_per_word), len(words))
        if due > self.words_sent:
            await self.delta(" ".join(words[self.words_sent : due]))
            self.words_sent = due

    async def delta(self, text: str) -> None:
        prefix = " " if self.words_sent else ""
        await self.emit(
            {
                "type": "conversation.item.input_audio_transcription.delta",
                "item_id": self.current_item(),
                "content_index": 0,
                "delta": prefix + text,
            }
        )

    async def commit(self, event: dict[str, Any]) -> None:
        buffered = self.samples + len(self.pending) - self.item_start
        if buffered * 1000 < MIN_COMMIT_MS * self.conn.rate:
            await self.error(
                "invalid_request_error",
                "Error committing input audio buffer: buffer too small. "
                f"Expected at least {MIN_COMMIT_MS}ms of audio, "
                f"but buffer only has {buffered * 1000 / self.conn.rate:.2f}ms of audio.",
                event,
                code="input_audio_buffer_commit_empty",
            )
            return
        # With VAD on and no speech in progress the buffer holds only silence: its transcript is empty.
        silence = self.vad is not None and not self.speaking
        self.speaking = False
        await self.finish_item(self.speech_item or self.current_item(), silence=silence)

    async def finish_item(self, item: str, silence: bool = False) -> None:
        words = [] if silence else self.script_text().split()
        if self.words_sent < len(words):
            await self.delta(" ".join(words[self.words_sent :]))
        duration_s = (self.samples - self.item_start) / self.conn.rate
        await self.emit({"type": "input_audio_buffer.committed", "item_id": item, "previous_item_id": None})
        await self.emit(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item,
                "content_index": 0,
                "transcript": " ".join(words),
                "usage": {"type": "duration", "seconds": round(duration_s, 3)},
            }
        )
        if not silence:
            self.fake.items_completed += 1
        self.item_start = self.samples
        self.words_sent = 0
        self.delta_item = self.speech_item = None


class _VllmSession(_Session):
    """vLLM's dialect: ``session.update`` names the model at the top level and is not answered; a plain
    commit starts one transcription of the audio as it arrives, ``commit`` with ``final: true`` ends it
    with ``transcription.done``; deltas are ``transcription.delta``; there is no VAD. Audio that arrives
    after the final commit and before the ``done`` is dropped, as vLLM drops it (``done_delay_s`` widens
    that window; ``conn.dropped`` counts the bytes)."""

    def __init__(self, fake: FakeOpenAIRealtime, conn: Connection, ws: ServerConnection) -> None:
        super().__init__(fake, conn, ws)
        self.vad = None
        self.generating = False
        self.ending = False

    async def handle(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "session.update":
            self.conn.sessions.append({k: v for k, v in event.items() if k != "type"})
        elif kind == "input_audio_buffer.append":
            if self.ending:
                self.conn.dropped += len(base64.b64decode(event.get("audio", "")))
                return
            await self.append(base64.b64decode(event.get("audio", "")))
        elif kind == "input_audio_buffer.commit":
            self.conn.commits += 1
            if event.get("final"):
                if self.generating:
                    self.ending = True
                    asyncio.get_running_loop().create_task(self.done())
            elif not self.generating:
                self.generating = True
                self.item_start = self.samples
                self.words_sent = 0
        else:
            await self.error("", f"Unknown event type: {kind}", event, code="unknown_event")

    async def error(
        self, type_: str, message: str, cause: dict[str, Any] | None, code: str | None = None
    ) -> None:
        await self.emit({"type": "error", "error": message, "code": code or type_})

    async def send_due_words(self) -> None:
        if self.generating and not self.ending:
            await super().send_due_words()

    async def delta(self, text: str) -> None:
        prefix = " " if self.words_sent else ""
        await self.emit({"type": "transcription.delta", "delta": prefix + text})

    async def done(self) -> None:
        await asyncio.sleep(self.fake.done_delay_s)
        words = self.script_text().split()
        if self.words_sent < len(words):
            await self.delta(" ".join(words[self.words_sent :]))
        await self.emit(
            {
                "type": "transcription.done",
                "text": " ".join(words),
                "usage": {
                    "prompt_tokens": 10,
                    "completion_tokens": len(words),
                    "total_tokens": 10 + len(words),
                },
            }
        )
        self.fake.items_completed += 1
        self.generating = self.ending = False
        self.words_sent = 0


class FakeOpenAIRealtime:
    """Start with ``with FakeOpenAIRealtime() as fake:``; point the SDK at ``fake.base_url``."""

    def __init__(self, api_key: str | None = None) -> None:
        self.api_key = api_key
        self.connections: list[Connection] = []
        self.script: list[str] = []
        self.hear: Callable[[bytes, int], list[str]] | None = None
        self.seconds_per_word = 0.25
        self.items_completed = 0
        self.reject_auth = False
        self.drop_after_s: float | None = None
        self.stall_after_s: float | None = None
        self.error_after_s: float | None = None
        self.error_type = "server_error"
        self.error_code: str | None = None
        self.protocol = "openai"
        self.done_delay_s = 0.0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: Server | None = None

    def reset(self) -> None:
        self.connections.clear()
        self.script = []
        self.hear = None
        self.seconds_per_word = 0.25
        self.items_completed = 0
        self.reject_auth = False
        self.drop_after_s = self.stall_after_s = self.error_after_s = None
        self.error_type = "server_error"
        self.error_code = None
        self.protocol = "openai"
        self.done_delay_s = 0.0

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = next(iter(self._server.sockets)).getsockname()[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> FakeOpenAIRealtime:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(5)
        return self

    def stop(self) -> None:
        if self._server is not None:
            server = self._server

            async def shutdown() -> None:
                server.close()
                await server.wait_closed()

            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def __enter__(self) -> FakeOpenAIRealtime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- serving --------------------------------------------------------------------------

    async def _serve(self) -> Server:
        return await serve(self._handle, "127.0.0.1", 0, process_request=self._upgrade, max_size=None)

    def _upgrade(self, ws: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        if parts.path != "/v1/realtime":
            return ws.respond(HTTPStatus.NOT_FOUND, "no such endpoint\n")
        authorization = request.headers.get("Authorization", "")
        if self.reject_auth or (self.api_key is not None and authorization != f"Bearer {self.api_key}"):
            body = json.dumps(
                {"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error"}}
            )
            response = ws.respond(HTTPStatus.UNAUTHORIZED, body)
            response.headers = Headers({"Content-Type": "application/json", "Content-Length": str(len(body))})
            return response
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        sock = ws.transport.get_extra_info("socket")
        if sock is not None:
            # Small JSON events leave at once instead of waiting for the peer's delayed ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        request = ws.request
        assert request is not None
        parts = urlsplit(request.path)
        conn = Connection(
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in request.headers.raw_items()},
            # vLLM's realtime models take 16 kHz; its session does not say.
            default_rate=16_000 if self.protocol == "vllm" else DEFAULT_RATE,
        )
        self.connections.append(conn)
        session = (_VllmSession if self.protocol == "vllm" else _Session)(self, conn, ws)
        if self.protocol == "vllm":
            await session.emit({"type": "session.created", "id": session.new_id("sess"), "created": 0})
        else:
            await session.emit(
                {
                    "type": "session.created",
                    "session": {"type": "transcription", "id": session.new_id("sess")},
                }
            )
        try:
            async for message in ws:
                event = json.loads(message)
                if event.get("type") != "input_audio_buffer.append":
                    conn.events.append(event)
                await session.handle(event)
        except ConnectionClosed:
            pass
        conn.closed_by_client = ws.close_code == 1000
