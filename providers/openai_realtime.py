"""Live transcription over OpenAI's Realtime API: one transcription session per stream attempt.

The session is a websocket opened by the SDK's ``realtime.connect`` with ``intent=transcription``. The
client sends ``session.update`` (``type: transcription``: the transcription model, the language, the
input format and server VAD), then ``input_audio_buffer.append`` events carrying base64 16-bit PCM at
24 kHz, and ``input_audio_buffer.commit`` to close the current item. The server answers with
``input_audio_buffer.speech_started`` / ``speech_stopped`` (VAD, in ms of buffered audio),
``input_audio_buffer.committed``, ``conversation.item.input_audio_transcription.delta`` (text appended
to an item) and ``…completed`` (the item's whole transcript), and ``error``.

Self-hosted servers that speak the same protocol (Speaches) use the same code; their wire sample rate and
whether they run VAD are options of the providers-file entry. vLLM (Voxtral Realtime) speaks a dialect of
its own, handled by :class:`VllmRealtimeStream`.

The gateway hands us PCM at ``StreamConfig.sample_rate``; one stateful PyAV resampler per stream
converts it to the wire rate, so no samples are lost or doubled at chunk boundaries. Times the server
reports are milliseconds of buffered audio, which is the same duration as the audio we were sent, so
they map straight onto this stream's timeline.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import av
import numpy as np
import openai
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidHandshake, InvalidStatus

from gateway.core.errors import (
    ProviderBadResponse,
    ProviderError,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    clip,
)
from gateway.core.provider_types import Usage
from gateway.core.streaming import (
    PCM_SAMPLE_WIDTH,
    SpeechEvent,
    SpeechEventKind,
    StreamConfig,
    StreamEvent,
    StreamResult,
)
from providers.remote import error_for_status

if TYPE_CHECKING:
    from openai.resources.realtime.realtime import AsyncRealtimeConnection

#: The only PCM rate OpenAI's Realtime API accepts.
REALTIME_SAMPLE_RATE = 24_000
# A commit of less than 100 ms is refused with this code; for us it only means "nothing left to flush".
_COMMIT_EMPTY = "input_audio_buffer_commit_empty"
# Error types a later attempt (here or elsewhere) may get past; the rest are the request's own fault.
_REJECTED_TYPES = frozenset({"invalid_request_error", "authentication_error", "permission_error"})
# Deltas only ever append; the completed transcript normally equals their concatenation.
_INTERIM_STABILITY = 0.9


@dataclass(frozen=True)
class RealtimeSettings:
    """How one providers-file entry speaks the Realtime protocol."""

    sample_rate: int = REALTIME_SAMPLE_RATE  # of the audio on the wire
    server_vad: bool = True  # False: the server only transcribes what we commit (gpt-realtime-whisper)
    model_in_url: bool = False  # self-hosted servers pick the model from ?model=
    stall_s: float = 10.0  # how long an expected reply (a commit's, a transcript's) may take
    protocol: str = "openai"  # or "vllm": vLLM's own dialect of the protocol (see VllmRealtimeStream)


async def open_realtime_stream(
    client: openai.AsyncOpenAI,
    provider: str,
    model: str,
    config: StreamConfig,
    settings: RealtimeSettings,
    limit_s: float,
) -> RealtimeTranscriptionStream:
    """Connect, configure the transcription session, and wait until the server has accepted it."""
    query: dict[str, str] = {"intent": "transcription"}
    if settings.model_in_url:
        query["model"] = model
    connection: AsyncRealtimeConnection | None = None
    try:
        async with asyncio.timeout(limit_s):
            connection = await client.realtime.connect(extra_query=query).enter()
            if settings.protocol == "vllm":
                return await VllmRealtimeStream.start(provider, connection, model, config, settings)
            await connection.session.update(session=_session(model, config, settings))
            while True:
                event = await connection.recv()
                kind = getattr(event, "type", None)
                if kind == "error":
                    raise _error_event(provider, event)
                if kind in ("session.updated", "transcription_session.updated"):
                    break
    except BaseException as exc:
        if connection is not None:
            await _close_quietly(connection)
        if isinstance(exc, ProviderError):
            raise
        if isinstance(exc, TimeoutError):
            raise ProviderTimeout(provider, f"the session did not open within {limit_s:.1f} s") from exc
        if isinstance(exc, Exception):
            raise _connection_error(provider, exc) from exc
        raise
    return RealtimeTranscriptionStream(provider, connection, config, settings)


def _session(model: str, config: StreamConfig, settings: RealtimeSettings) -> Any:
    transcription: dict[str, Any] = {"model": model}
    if config.language:
        transcription["language"] = config.language
    turn_detection = (
        {"type": "server_vad", "silence_duration_ms": config.endpointing_ms} if settings.server_vad else None
    )
    return {
        "type": "transcription",
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": settings.sample_rate},
                "transcription": transcription,
                "turn_detection": turn_detection,
            }
        },
    }


@dataclass
class _Item:
    """One conversation item: a stretch of audio the server transcribes as a whole."""

    start_s: float
    end_s: float | None = None
    text: str = ""
    by_vad: bool = False  # the server's VAD closed it (its commit is not an answer to ours)


class RealtimeTranscriptionStream:
    """A :class:`providers.base.TranscriptionStream` over one Realtime transcription session."""

    def __init__(
        self,
        provider: str,
        connection: AsyncRealtimeConnection,
        config: StreamConfig,
        settings: RealtimeSettings,
    ) -> None:
        self._provider = provider
        self._conn = connection
        self._config = config
        self._settings = settings
        self._resampler = (
            av.AudioResampler(format="s16", layout="mono", rate=settings.sample_rate)
            if config.sample_rate != settings.sample_rate
            else None
        )
        self._samples_in = 0  # at config.sample_rate: the stream's timeline and its billing
        self._boundary_s = 0.0  # where the audio not yet in any item starts
        self._items: dict[str, _Item] = {}
        self._speaking = False
        self._pending: set[str] = set()  # items committed, their transcript not yet in
        self._commits: collections.deque[tuple[str, float]] = collections.deque()  # ours, unanswered
        self._commit_ids = (f"commit_{n}" for n in itertools.count(1))
        self._expect_since: float | None = None  # when we started waiting for the server
        self._closing = False
        self._aborted = False
        self._finals = 0
        self._wake = asyncio.Event()
        # How far the server's VAD events and answered commits reach (its deltas carry no times).
        self._acknowledged_s = 0.0

    # -- input ---------------------------------------------------------------------------

    @property
    def _sent_s(self) -> float:
        return self._samples_in / self._config.sample_rate

    async def send(self, pcm: bytes) -> None:
        if self._closing or self._aborted or not pcm:
            return
        if len(pcm) % PCM_SAMPLE_WIDTH:
            raise ValueError(f"{len(pcm)} bytes is not whole 16-bit samples")
        self._samples_in += len(pcm) // PCM_SAMPLE_WIDTH
        await self._append(self._resample(pcm))

    async def finalize(self) -> None:
        if not (self._closing or self._aborted):
            await self._commit()

    async def keepalive(self) -> None:
        """Nothing to send: the websocket library's pings keep the connection alive, and the API has no
        idle timeout of its own."""

    async def close(self) -> None:
        if self._closing or self._aborted:
            return
        self._closing = True
        if self._resampler is not None:
            # The resampler holds back its filter delay: flush it, so all that was sent is heard.
            await self._append(self._frames_bytes(self._resampler.resample(None)))
        await self._commit()
        self._wake.set()

    async def abort(self) -> None:
        self._aborted = True
        self._wake.set()
        await _close_quietly(self._conn)

    def usage(self) -> Usage:
        return Usage(audio_seconds=self._sent_s)

    def acknowledged_s(self) -> float:
        return self._acknowledged_s

    def _reached(self, at_s: float | None) -> None:
        if at_s is not None:
            self._acknowledged_s = max(self._acknowledged_s, at_s)

    def _resample(self, pcm: bytes) -> bytes:
        if self._resampler is None:
            return pcm
        samples = np.frombuffer(pcm, dtype="<i2")
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self._config.sample_rate
        return self._frames_bytes(self._resampler.resample(frame))

    @staticmethod
    def _frames_bytes(frames: list[av.AudioFrame]) -> bytes:
        return b"".join(frame.to_ndarray().astype("<i2", copy=False).tobytes() for frame in frames)

    async def _append(self, wire: bytes) -> None:
        if not wire:
            return
        # A failed send is not raised here: the same broken socket fails the receive in events(),
        # which is where the gateway looks for failures.
        with contextlib.suppress(ConnectionClosed, openai.OpenAIError):
            await self._conn.input_audio_buffer.append(audio=base64.b64encode(wire).decode("ascii"))

    async def _commit(self) -> None:
        """Close the current item, unless the server's VAD already closed it and nothing came since."""
        if self._sent_s - self._boundary_s <= 0 and not self._speaking:
            return
        event_id = next(self._commit_ids)
        self._commits.append((event_id, self._sent_s))
        self._expect()
        with contextlib.suppress(ConnectionClosed, openai.OpenAIError):
            await self._conn.input_audio_buffer.commit(event_id=event_id)
        self._wake.set()

    # -- output --------------------------------------------------------------------------

    def _expect(self) -> None:
        if self._expect_since is None:
            self._expect_since = asyncio.get_running_loop().time()

    def _waiting(self) -> bool:
        return bool(self._commits or self._pending)

    def _done(self) -> bool:
        return self._aborted or (self._closing and not self._waiting())

    async def events(self) -> AsyncIterator[StreamEvent]:
        loop = asyncio.get_running_loop()
        receive: asyncio.Task[Any] | None = None
        try:
            while not self._done():
                if receive is None:
                    receive = asyncio.ensure_future(self._receive())
                wake = asyncio.ensure_future(self._wake.wait())
                timeout = None
                if self._waiting() and self._expect_since is not None:
                    timeout = max(self._expect_since + self._settings.stall_s - loop.time(), 0.0)
                done, _ = await asyncio.wait(
                    {receive, wake}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                wake.cancel()
                self._wake.clear()
                if receive in done:
                    task, receive = receive, None
                    try:
                        event = task.result()
                    except ConnectionClosedOK as exc:
                        if self._aborted or self._closing:
                            return
                        raise ProviderUnavailable(self._provider, "the server closed the stream") from exc
                    except ConnectionClosed as exc:
                        if self._aborted:
                            return
                        raise ProviderUnavailable(
                            self._provider, "the connection dropped mid-stream"
                        ) from exc
                    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                        raise ProviderBadResponse(self._provider, "an event is not valid JSON") from exc
                    except openai.OpenAIError as exc:
                        raise ProviderUnavailable(
                            self._provider, f"the SDK failed: {type(exc).__name__}"
                        ) from exc
                    for out in self._handle(event):
                        yield out
                    await self._after_event()
                    # Any event is progress: the stall clock restarts while a reply is still owed.
                    self._expect_since = loop.time() if self._waiting() else None
                elif not done:
                    raise ProviderTimeout(
                        self._provider, f"no reply from the server within {self._settings.stall_s:.1f} s"
                    )
        finally:
            if receive is not None:
                receive.cancel()
            await _close_quietly(self._conn)

    async def _receive(self) -> Any:
        return await self._conn.recv()

    async def _after_event(self) -> None:
        """What a dialect must send in answer to the event just handled (nothing, in OpenAI's)."""

    def _item(self, item_id: str) -> _Item:
        item = self._items.get(item_id)
        if item is None:
            item = self._items[item_id] = _Item(start_s=self._boundary_s)
        return item

    def _handle(self, event: Any) -> Iterator[StreamEvent]:
        kind = getattr(event, "type", None)
        try:
            if kind == "input_audio_buffer.speech_started":
                item = self._item(str(event.item_id))
                item.start_s = max(int(event.audio_start_ms) / 1000, self._boundary_s)
                self._reached(item.start_s)
                self._speaking = True
                yield SpeechEvent(SpeechEventKind.SPEECH_BEGIN, item.start_s)
            elif kind == "input_audio_buffer.speech_stopped":
                item = self._item(str(event.item_id))
                item.end_s = int(event.audio_end_ms) / 1000
                item.by_vad = True
                self._reached(item.end_s)
                self._speaking = False
                self._boundary_s = max(self._boundary_s, item.end_s)
                self._pending.add(str(event.item_id))
                yield SpeechEvent(SpeechEventKind.END_OF_UTTERANCE, item.end_s)
            elif kind == "input_audio_buffer.committed":
                item_id = str(event.item_id)
                item = self._item(item_id)
                if not item.by_vad and self._commits:
                    _, at_s = self._commits.popleft()
                    item.end_s = at_s
                    self._speaking = False
                    self._boundary_s = max(self._boundary_s, at_s)
                self._reached(item.end_s)
                self._pending.add(item_id)
            elif kind == "conversation.item.input_audio_transcription.delta":
                item = self._item(str(event.item_id))
                item.text += event.delta or ""
                text = item.text.strip()
                if self._config.interim_results and text:
                    end_s = item.end_s if item.end_s is not None else self._sent_s
                    yield StreamResult(
                        text=text,
                        is_final=False,
                        start_s=item.start_s,
                        end_s=end_s,
                        stability=_INTERIM_STABILITY,
                    )
            elif kind == "conversation.item.input_audio_transcription.completed":
                item_id = str(event.item_id)
                item = self._items.pop(item_id, None) or _Item(start_s=self._boundary_s)
                self._pending.discard(item_id)
                text = str(event.transcript).strip()
                if text:
                    end_s = item.end_s if item.end_s is not None else self._sent_s
                    self._finals += 1
                    yield StreamResult(
                        text=text, is_final=True, start_s=item.start_s, end_s=end_s, stability=1.0
                    )
                    if self._config.single_utterance:
                        # A voice command: the first utterance is all the caller wants.
                        self._closing = True
                        self._commits.clear()
                        self._pending.clear()
            elif kind == "conversation.item.input_audio_transcription.failed":
                raise ProviderUnavailable(self._provider, "the server could not transcribe an utterance")
            elif kind == "error":
                error = getattr(event, "error", None)
                if getattr(error, "code", None) == _COMMIT_EMPTY:
                    # Our commit found nothing left to transcribe: that answers it.
                    if self._commits:
                        self._commits.popleft()
                        self._speaking = False
                    return
                raise _error_event(self._provider, event)
        except (AttributeError, TypeError, ValueError) as exc:
            raise ProviderBadResponse(self._provider, f"a malformed {clip(str(kind))} event") from exc


class VllmRealtimeStream(RealtimeTranscriptionStream):
    """vLLM's dialect (``vllm serve`` with a realtime model such as Voxtral Realtime).

    It differs from OpenAI's: the session names the model at the top level (``session.update`` with
    ``model``) and is not acknowledged; a plain ``input_audio_buffer.commit`` starts one transcription
    that consumes the audio as it arrives, and ``commit`` with ``final: true`` ends it. The server then
    answers ``transcription.delta`` events (``delta``) and one ``transcription.done`` (``text``) for all
    of it: there is no VAD, no items and no speech events. Errors are ``{"type": "error", "error":
    <message>, "code": ...}``. The server drops audio that arrives between the final commit and the
    ``done``, so a FINALIZE holds the caller's audio back until the next transcription has started.
    """

    # Codes of vLLM's error events that are the request's own fault.
    _REJECTED_CODES = frozenset({"invalid_audio", "model_not_validated", "unknown_event", "invalid_json"})

    @classmethod
    async def start(
        cls,
        provider: str,
        connection: AsyncRealtimeConnection,
        model: str,
        config: StreamConfig,
        settings: RealtimeSettings,
    ) -> VllmRealtimeStream:
        stream = cls(provider, connection, config, settings)
        created = await stream._receive()
        if created.get("type") == "error":
            raise stream._vllm_error(created)
        await connection.send_raw(json.dumps({"type": "session.update", "model": model}))
        await connection.send_raw(json.dumps({"type": "input_audio_buffer.commit"}))
        return stream

    def __init__(
        self,
        provider: str,
        connection: AsyncRealtimeConnection,
        config: StreamConfig,
        settings: RealtimeSettings,
    ) -> None:
        super().__init__(provider, connection, config, settings)
        self._text = ""
        self._span_start_s = 0.0
        self._ending_at_s: float | None = None  # the final commit was sent with this much audio
        self._held: list[bytes] = []  # wire audio that waits for the next transcription to start
        self._restart_due = False

    async def _receive(self) -> Any:
        try:
            event = json.loads(await self._conn.recv_bytes())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ProviderBadResponse(self._provider, "an event is not valid JSON") from exc
        if not isinstance(event, dict):
            raise ProviderBadResponse(self._provider, "an event is not a JSON object")
        return event

    async def _append(self, wire: bytes) -> None:
        if self._ending_at_s is not None:
            self._held.append(wire)
            return
        await super()._append(wire)

    async def _commit(self) -> None:
        if self._ending_at_s is not None or self._sent_s <= self._span_start_s:
            return
        self._ending_at_s = self._sent_s
        self._commits.append(("final", self._sent_s))
        self._expect()
        with contextlib.suppress(ConnectionClosed, openai.OpenAIError):
            await self._conn.send_raw(json.dumps({"type": "input_audio_buffer.commit", "final": True}))
        self._wake.set()

    def _handle(self, event: Any) -> Iterator[StreamEvent]:
        kind = event.get("type")
        if kind == "transcription.delta":
            self._text += str(event.get("delta") or "")
            text = self._text.strip()
            if self._config.interim_results and text:
                yield StreamResult(
                    text=text,
                    is_final=False,
                    start_s=self._span_start_s,
                    end_s=self._ending_at_s if self._ending_at_s is not None else self._sent_s,
                    stability=_INTERIM_STABILITY,
                )
        elif kind == "transcription.done":
            end_s = self._ending_at_s if self._ending_at_s is not None else self._sent_s
            # The answer to the final commit: the transcription took the audio up to it.
            self._reached(self._ending_at_s)
            text = str(event.get("text") or self._text).strip()
            self._commits.clear()
            self._ending_at_s = None
            if text:
                yield StreamResult(
                    text=text, is_final=True, start_s=self._span_start_s, end_s=end_s, stability=1.0
                )
            self._text = ""
            self._span_start_s = end_s
            if self._config.single_utterance and text:
                self._closing = True
                self._held.clear()
            else:
                self._restart_due = True
        elif kind == "error":
            raise self._vllm_error(event)

    async def _after_event(self) -> None:
        if not self._restart_due:
            return
        self._restart_due = False
        if self._closing and not self._held and self._sent_s <= self._span_start_s:
            return
        # Start the next transcription, then send what was held back while the last one ended.
        with contextlib.suppress(ConnectionClosed, openai.OpenAIError):
            await self._conn.send_raw(json.dumps({"type": "input_audio_buffer.commit"}))
        held, self._held = self._held, []
        for wire in held:
            await super()._append(wire)
        if self._closing:
            await self._commit()

    def _vllm_error(self, event: dict[str, Any]) -> ProviderError:
        code = str(event.get("code") or "")
        detail = f"error event ({code}): {clip(str(event.get('error', '')))}"
        if code in self._REJECTED_CODES:
            return ProviderRejected(self._provider, detail)
        return ProviderUnavailable(self._provider, detail)


def _error_event(provider: str, event: Any) -> ProviderError:
    error = getattr(event, "error", None)
    type_ = str(getattr(error, "type", "") or "")
    code = str(getattr(error, "code", "") or "")
    message = getattr(error, "message", "")
    # Error messages about keys can echo part of the key: keep only the type and code for those.
    keyed = "auth" in type_ or "key" in code or "auth" in code
    detail = f"{type_}" + (f" ({code})" if code else "") + ("" if keyed else f": {clip(str(message))}")
    if type_ in _REJECTED_TYPES:
        return ProviderRejected(provider, f"error event {detail}")
    return ProviderUnavailable(provider, f"error event {detail}")


def _connection_error(provider: str, exc: Exception) -> ProviderError:
    if isinstance(exc, InvalidStatus):
        return error_for_status(provider, exc.response.status_code)
    if isinstance(exc, ConnectionClosed):
        return ProviderUnavailable(provider, "the server closed the connection while the session opened")
    if isinstance(exc, InvalidHandshake | OSError):
        return ProviderUnavailable(provider, f"could not connect: {type(exc).__name__}")
    if isinstance(exc, openai.OpenAIError):
        return ProviderUnavailable(provider, f"the SDK failed: {type(exc).__name__}")
    if isinstance(exc, json.JSONDecodeError | UnicodeDecodeError):
        return ProviderBadResponse(provider, "an event is not valid JSON")
    raise exc


async def _close_quietly(connection: AsyncRealtimeConnection) -> None:
    with contextlib.suppress(ConnectionClosed, OSError, openai.OpenAIError):
        await connection.close()
