"""Clients for the gateway: :class:`GatewayClient` (blocking) and :class:`AsyncGatewayClient` (asyncio).

Both speak the same API and build their requests with the same module-level
helpers, so they cannot drift apart::

    with GatewayClient("localhost:50051") as client:
        reply = client.transcribe("meeting.wav", language="en")
        print(reply.text, reply.route.provider, reply.route.cost_usd)

    async with AsyncGatewayClient("localhost:50051") as client:
        speech = await client.synthesize("Hello there.")

Audio is given as the file's bytes, or as a path (``str`` or :class:`~pathlib.Path`)
that the client reads; for a path the MIME type is guessed from the suffix
unless ``mime_type`` is given. Failed calls raise :class:`grpc.RpcError`
(``grpc.aio.AioRpcError`` for the async client) with the server's status code
and message.
"""

from __future__ import annotations

import asyncio
import mimetypes
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal, Self, TypedDict, TypeVar, Unpack

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.api.v1 import (
    audio_gateway_pb2,
    audio_gateway_pb2_grpc,
    common_pb2,
    cost_reports_pb2,
    cost_reports_pb2_grpc,
)

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_TARGET",
    "DEFAULT_TIMEOUT_S",
    "MAX_MESSAGE_BYTES",
    "AsyncGatewayClient",
    "AudioSource",
    "GatewayClient",
    "OutputFormat",
    "TranscribeArgs",
    "TranscriptFormat",
    "load_audio",
    "transcribe_request",
    "with_default_port",
]

DEFAULT_PORT = 50051
DEFAULT_TARGET = f"localhost:{DEFAULT_PORT}"
# The gateway sends every caller this header first, so its absence marks a call that never reached it.
REQUEST_ID_HEADER = "x-request-id"
DEFAULT_TIMEOUT_S = 300.0
# Matches the server's default limit (GATEWAY_SERVER__MAX_MESSAGE_BYTES): whole recordings in one message.
MAX_MESSAGE_BYTES = 32 * 1024 * 1024


def with_default_port(target: str) -> str:
    """``host`` or ``[v6addr]`` with the gateway's port added; gRPC would otherwise assume 443.

    Targets that name a port, a resolver scheme (``dns:``, ``unix:``, ``ipv4:``…) or a bare IPv6
    address are returned unchanged.
    """
    if ":" not in target:
        return f"{target}:{DEFAULT_PORT}"
    if target.startswith("[") and target.endswith("]"):
        return f"{target}:{DEFAULT_PORT}"
    return target


CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
)

AudioSource = bytes | str | Path
OutputFormat = Literal["wav", "pcm16", "mp3", "opus", "flac", "mulaw", "aac"]
TranscriptFormat = Literal["json", "text", "srt", "vtt"]
Metadata = tuple[tuple[str, str], ...]

_FORMATS: dict[str, audio_gateway_pb2.AudioFormat] = {
    "wav": audio_gateway_pb2.AUDIO_FORMAT_WAV,
    "pcm16": audio_gateway_pb2.AUDIO_FORMAT_PCM16,
    "mp3": audio_gateway_pb2.AUDIO_FORMAT_MP3,
    "opus": audio_gateway_pb2.AUDIO_FORMAT_OGG_OPUS,
    "flac": audio_gateway_pb2.AUDIO_FORMAT_FLAC,
    "mulaw": audio_gateway_pb2.AUDIO_FORMAT_MULAW,
    "aac": audio_gateway_pb2.AUDIO_FORMAT_AAC,
}
_TRANSCRIPT_FORMATS: dict[str, audio_gateway_pb2.TranscriptFormat] = {
    "json": audio_gateway_pb2.TRANSCRIPT_FORMAT_JSON,
    "text": audio_gateway_pb2.TRANSCRIPT_FORMAT_TEXT,
    "srt": audio_gateway_pb2.TRANSCRIPT_FORMAT_SRT,
    "vtt": audio_gateway_pb2.TRANSCRIPT_FORMAT_VTT,
}
_HEALTH_STATUS = health_pb2.HealthCheckResponse.ServingStatus
_HEALTH_POLL_S = 0.25
_HEALTH_CALL_TIMEOUT_S = 5.0
T = TypeVar("T")


# -- request building, shared by both clients ---------------------------------


class TranscribeArgs(TypedDict, total=False):
    """The keyword arguments of :func:`transcribe_request` (and of both clients' ``transcribe``)."""

    mime_type: str
    language: str
    word_timestamps: bool
    prompt: str
    response_format: TranscriptFormat
    diarize: bool
    translate: bool
    routing: common_pb2.RoutingOptions | None


def load_audio(audio: AudioSource, mime_type: str = "") -> common_pb2.Audio:
    """An ``Audio`` message from bytes, or from a file path (read here; MIME type guessed from the suffix)."""
    if isinstance(audio, bytes | bytearray | memoryview):
        return common_pb2.Audio(content=bytes(audio), mime_type=mime_type)
    path = Path(audio).expanduser()
    content = path.read_bytes()
    return common_pb2.Audio(content=content, mime_type=mime_type or mimetypes.guess_type(path.name)[0] or "")


def transcribe_request(
    audio: AudioSource,
    *,
    mime_type: str = "",
    language: str = "",
    word_timestamps: bool = False,
    prompt: str = "",
    response_format: TranscriptFormat = "json",
    diarize: bool = False,
    translate: bool = False,
    routing: common_pb2.RoutingOptions | None = None,
) -> audio_gateway_pb2.TranscribeRequest:
    """A ``TranscribeRequest``, as both clients' ``transcribe`` and ``transcribe_progress`` send it."""
    try:
        fmt = _TRANSCRIPT_FORMATS[response_format]
    except KeyError:
        raise ValueError(
            f"response_format must be one of {', '.join(_TRANSCRIPT_FORMATS)}, not {response_format!r}"
        ) from None
    return audio_gateway_pb2.TranscribeRequest(
        audio=load_audio(audio, mime_type),
        language=language,
        word_timestamps=word_timestamps,
        prompt=prompt,
        response_format=fmt,
        diarize=diarize,
        translate=translate,
        routing=routing,
    )


def _synthesize_request(
    text: str,
    voice: str,
    format: OutputFormat,
    sample_rate: int,
    speed: float,
    routing: common_pb2.RoutingOptions | None,
) -> audio_gateway_pb2.SynthesizeRequest:
    try:
        audio_format = _FORMATS[format]
    except KeyError:
        raise ValueError(f"format must be one of {', '.join(_FORMATS)}, not {format!r}") from None
    return audio_gateway_pb2.SynthesizeRequest(
        text=text,
        voice=voice,
        format=audio_format,
        sample_rate=sample_rate,
        speed=speed,
        routing=routing,
    )


def _understand_request(
    audio: AudioSource,
    question: str,
    mime_type: str,
    language: str,
    max_answer_tokens: int,
    routing: common_pb2.RoutingOptions | None,
) -> audio_gateway_pb2.UnderstandRequest:
    return audio_gateway_pb2.UnderstandRequest(
        audio=load_audio(audio, mime_type),
        question=question,
        language=language,
        max_answer_tokens=max_answer_tokens,
        routing=routing,
    )


def _health_request(service: str) -> health_pb2.HealthCheckRequest:
    return health_pb2.HealthCheckRequest(service=service)


def _call_metadata(metadata: Sequence[tuple[str, str]] | None, api_key: str | None) -> Metadata:
    pairs = tuple((key.lower(), value) for key, value in metadata or ())
    if api_key:
        pairs += (("authorization", f"Bearer {api_key}"),)
    return pairs


def _status_name(status: int) -> str:
    return _HEALTH_STATUS.Name(status)


def _unknown_service(error: grpc.RpcError) -> bool:
    # The health service answers NOT_FOUND for a name it has never been told about.
    return isinstance(error, grpc.Call) and error.code() == grpc.StatusCode.NOT_FOUND


def _not_serving_message(service: str, timeout_s: float, last: str) -> str:
    return f"health of {service or 'the server'!r} was not SERVING within {timeout_s:g} s (last: {last})"


def _poll_timeout(remaining_s: float) -> float:
    return max(min(remaining_s, _HEALTH_CALL_TIMEOUT_S), 0.05)


def _describe_rpc_error(error: grpc.RpcError) -> str:
    if isinstance(error, grpc.Call):
        return f"{error.code().name}: {error.details()}"
    return type(error).__name__


async def _off_loop_if_path(audio: AudioSource, build: Callable[[], T]) -> T:
    """Build a request; reading a file happens on a worker thread, not on the event loop."""
    if isinstance(audio, bytes | bytearray | memoryview):
        return build()
    return await asyncio.to_thread(build)


def _stream_message(chunk: bytes | int) -> audio_gateway_pb2.StreamTranscribeRequest:
    if isinstance(chunk, int):
        return audio_gateway_pb2.StreamTranscribeRequest(control=chunk)  # type: ignore[arg-type]
    return audio_gateway_pb2.StreamTranscribeRequest(audio=bytes(chunk))


def _stream_requests(
    config: audio_gateway_pb2.StreamTranscribeConfig, chunks: Iterable[bytes | int]
) -> Iterator[audio_gateway_pb2.StreamTranscribeRequest]:
    yield audio_gateway_pb2.StreamTranscribeRequest(config=config)
    for chunk in chunks:
        yield _stream_message(chunk)


class _ClientBase:
    def __init__(
        self,
        target: str,
        timeout_s: float | None,
        metadata: Sequence[tuple[str, str]] | None,
        api_key: str | None,
    ) -> None:
        self.target = target
        self.timeout_s = timeout_s
        # Holds the credentials: never logged, never part of repr().
        self._metadata = _call_metadata(metadata, api_key)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(target={self.target!r}, timeout_s={self.timeout_s!r})"

    def _health_timeout(self) -> float:
        # A health check is cheap: never wait the long default an audio call may need.
        if self.timeout_s is None:
            return _HEALTH_CALL_TIMEOUT_S
        return min(self.timeout_s, _HEALTH_CALL_TIMEOUT_S)


# -- blocking client -------------------------------------------------------------


class GatewayClient(_ClientBase):
    """A blocking client over one gRPC channel. Use it as a context manager, or call :meth:`close`."""

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
        metadata: Sequence[tuple[str, str]] | None = None,
        api_key: str | None = None,
    ) -> None:
        super().__init__(target, timeout_s, metadata, api_key)
        self._channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        self._stub = audio_gateway_pb2_grpc.AudioGatewayStub(self._channel)
        self._reports = cost_reports_pb2_grpc.CostReportsStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def transcribe(
        self,
        audio: AudioSource,
        **options: Unpack[TranscribeArgs],
    ) -> audio_gateway_pb2.TranscribeResponse:
        request = transcribe_request(audio, **options)
        return self._stub.Transcribe(request, timeout=self.timeout_s, metadata=self._metadata)

    def transcribe_progress(
        self,
        audio: AudioSource,
        **options: Unpack[TranscribeArgs],
    ) -> Iterator[audio_gateway_pb2.TranscribeProgressEvent]:
        """:meth:`transcribe`, followed: events with the audio seconds done so far, the last one with the
        ``response``."""
        request = transcribe_request(audio, **options)
        yield from self._stub.TranscribeProgress(request, timeout=self.timeout_s, metadata=self._metadata)

    def stream_transcribe(
        self,
        chunks: Iterable[bytes | int],
        config: audio_gateway_pb2.StreamTranscribeConfig,
    ) -> Iterator[audio_gateway_pb2.StreamTranscribeResponse]:
        """Live transcription: ``chunks`` are audio bytes in ``config``'s encoding, or a
        ``STREAM_CONTROL_*`` value; responses come as they are heard, the last one with ``route_info``."""
        requests = _stream_requests(config, chunks)
        yield from self._stub.StreamTranscribe(requests, timeout=self.timeout_s, metadata=self._metadata)

    def synthesize(
        self,
        text: str,
        *,
        voice: str = "",
        format: OutputFormat = "wav",
        sample_rate: int = 0,
        speed: float = 0.0,
        routing: common_pb2.RoutingOptions | None = None,
    ) -> audio_gateway_pb2.SynthesizeResponse:
        request = _synthesize_request(text, voice, format, sample_rate, speed, routing)
        return self._stub.Synthesize(request, timeout=self.timeout_s, metadata=self._metadata)

    def stream_synthesize(
        self,
        text: str,
        *,
        voice: str = "",
        format: OutputFormat = "wav",
        sample_rate: int = 0,
        speed: float = 0.0,
        routing: common_pb2.RoutingOptions | None = None,
    ) -> Iterator[audio_gateway_pb2.SynthesizeChunk]:
        """Chunks as the engine speaks each sentence; their ``audio`` joined in order is one file. The last
        chunk carries ``route`` (and the characters billed)."""
        request = _synthesize_request(text, voice, format, sample_rate, speed, routing)
        yield from self._stub.StreamSynthesize(request, timeout=self.timeout_s, metadata=self._metadata)

    def understand(
        self,
        audio: AudioSource,
        question: str,
        *,
        mime_type: str = "",
        language: str = "",
        max_answer_tokens: int = 0,
        routing: common_pb2.RoutingOptions | None = None,
    ) -> audio_gateway_pb2.UnderstandResponse:
        request = _understand_request(audio, question, mime_type, language, max_answer_tokens, routing)
        return self._stub.Understand(request, timeout=self.timeout_s, metadata=self._metadata)

    def explain(
        self, request: audio_gateway_pb2.ExplainRouteRequest
    ) -> audio_gateway_pb2.ExplainRouteResponse:
        """How ``request`` would be routed, and why; nothing is executed or billed."""
        return self._stub.ExplainRoute(request, timeout=self.timeout_s, metadata=self._metadata)

    def report(self, request: cost_reports_pb2.GetCostReportRequest) -> cost_reports_pb2.CostReport:
        """A cost report; a tenant's key sees only its own traffic, an admin key every tenant's."""
        return self._reports.GetCostReport(request, timeout=self.timeout_s, metadata=self._metadata)

    def find_records(self, request_id: str, tenant: str = "") -> list[cost_reports_pb2.LedgerRecord]:
        """The ledger records of every request sent with ``x-request-id: request_id``, oldest first."""
        request = cost_reports_pb2.FindRecordsRequest(request_id=request_id, tenant=tenant)
        reply = self._reports.FindRecords(request, timeout=self.timeout_s, metadata=self._metadata)
        return list(reply.records)

    def health(self, service: str = "") -> str:
        """The serving status of ``service`` ("" is the whole server): "SERVING", "NOT_SERVING",
        or "SERVICE_UNKNOWN" for a name the server does not know. Raises grpc.RpcError when unreachable."""
        try:
            reply = self._health.Check(
                _health_request(service), timeout=self._health_timeout(), metadata=self._metadata
            )
        except grpc.RpcError as exc:
            if _unknown_service(exc):
                return _status_name(_HEALTH_STATUS.SERVICE_UNKNOWN)
            raise
        return _status_name(reply.status)

    def wait_until_serving(self, timeout_s: float, service: str = "") -> None:
        """Poll health until ``service`` is SERVING; raise TimeoutError after ``timeout_s`` seconds.

        An unreachable server counts as not serving yet, so this also waits for a server to start.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            try:
                reply = self._health.Check(
                    _health_request(service),
                    timeout=_poll_timeout(remaining),
                    metadata=self._metadata,
                )
                last = _status_name(reply.status)
            except grpc.RpcError as exc:
                last = _describe_rpc_error(exc)
            if last == "SERVING":
                return
            if time.monotonic() + _HEALTH_POLL_S > deadline:
                raise TimeoutError(_not_serving_message(service, timeout_s, last))
            time.sleep(_HEALTH_POLL_S)


# -- asyncio client ----------------------------------------------------------------


class AsyncGatewayClient(_ClientBase):
    """The asyncio client (grpc.aio). Use it as an async context manager, or await :meth:`close`."""

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
        metadata: Sequence[tuple[str, str]] | None = None,
        api_key: str | None = None,
    ) -> None:
        super().__init__(target, timeout_s, metadata, api_key)
        self._channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        self._stub = audio_gateway_pb2_grpc.AudioGatewayStub(self._channel)
        self._reports = cost_reports_pb2_grpc.CostReportsStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def transcribe(
        self,
        audio: AudioSource,
        **options: Unpack[TranscribeArgs],
    ) -> audio_gateway_pb2.TranscribeResponse:
        request = await _off_loop_if_path(
            audio,
            lambda: transcribe_request(audio, **options),
        )
        return await self._stub.Transcribe(request, timeout=self.timeout_s, metadata=self._metadata)

    async def transcribe_progress(
        self,
        audio: AudioSource,
        **options: Unpack[TranscribeArgs],
    ) -> AsyncIterator[audio_gateway_pb2.TranscribeProgressEvent]:
        """As :meth:`GatewayClient.transcribe_progress`."""
        request = await _off_loop_if_path(audio, lambda: transcribe_request(audio, **options))
        call = self._stub.TranscribeProgress(request, timeout=self.timeout_s, metadata=self._metadata)
        async for event in call:
            yield event

    async def stream_transcribe(
        self,
        chunks: AsyncIterable[bytes | int] | Iterable[bytes | int],
        config: audio_gateway_pb2.StreamTranscribeConfig,
    ) -> AsyncIterator[audio_gateway_pb2.StreamTranscribeResponse]:
        """As :meth:`GatewayClient.stream_transcribe`; ``chunks`` may be an async iterable."""

        async def requests() -> AsyncIterator[audio_gateway_pb2.StreamTranscribeRequest]:
            yield audio_gateway_pb2.StreamTranscribeRequest(config=config)
            if isinstance(chunks, AsyncIterable):
                async for chunk in chunks:
                    yield _stream_message(chunk)
            else:
                for chunk in chunks:
                    yield _stream_message(chunk)

        call = self._stub.StreamTranscribe(requests(), timeout=self.timeout_s, metadata=self._metadata)
        async for response in call:
            yield response

    async def synthesize(
        self,
        text: str,
        *,
        voice: str = "",
        format: OutputFormat = "wav",
        sample_rate: int = 0,
        speed: float = 0.0,
        routing: common_pb2.RoutingOptions | None = None,
    ) -> audio_gateway_pb2.SynthesizeResponse:
        request = _synthesize_request(text, voice, format, sample_rate, speed, routing)
        return await self._stub.Synthesize(request, timeout=self.timeout_s, metadata=self._metadata)

    async def stream_synthesize(
        self,
        text: str,
        *,
        voice: str = "",
        format: OutputFormat = "wav",
        sample_rate: int = 0,
        speed: float = 0.0,
        routing: common_pb2.RoutingOptions | None = None,
    ) -> AsyncIterator[audio_gateway_pb2.SynthesizeChunk]:
        """Chunks as the engine speaks each sentence (see :meth:`GatewayClient.stream_synthesize`)."""
        request = _synthesize_request(text, voice, format, sample_rate, speed, routing)
        call = self._stub.StreamSynthesize(request, timeout=self.timeout_s, metadata=self._metadata)
        async for chunk in call:
            yield chunk

    async def understand(
        self,
        audio: AudioSource,
        question: str,
        *,
        mime_type: str = "",
        language: str = "",
        max_answer_tokens: int = 0,
        routing: common_pb2.RoutingOptions | None = None,
    ) -> audio_gateway_pb2.UnderstandResponse:
        request = await _off_loop_if_path(
            audio,
            lambda: _understand_request(audio, question, mime_type, language, max_answer_tokens, routing),
        )
        return await self._stub.Understand(request, timeout=self.timeout_s, metadata=self._metadata)

    async def explain(
        self, request: audio_gateway_pb2.ExplainRouteRequest
    ) -> audio_gateway_pb2.ExplainRouteResponse:
        """How ``request`` would be routed, and why; nothing is executed or billed."""
        return await self._stub.ExplainRoute(request, timeout=self.timeout_s, metadata=self._metadata)

    async def report(self, request: cost_reports_pb2.GetCostReportRequest) -> cost_reports_pb2.CostReport:
        """A cost report; see :meth:`GatewayClient.report`."""
        return await self._reports.GetCostReport(request, timeout=self.timeout_s, metadata=self._metadata)

    async def find_records(self, request_id: str, tenant: str = "") -> list[cost_reports_pb2.LedgerRecord]:
        """Ledger records by the caller's request id; see :meth:`GatewayClient.find_records`."""
        request = cost_reports_pb2.FindRecordsRequest(request_id=request_id, tenant=tenant)
        reply = await self._reports.FindRecords(request, timeout=self.timeout_s, metadata=self._metadata)
        return list(reply.records)

    async def health(self, service: str = "") -> str:
        """The serving status of ``service``; see :meth:`GatewayClient.health`."""
        try:
            reply = await self._health.Check(
                _health_request(service), timeout=self._health_timeout(), metadata=self._metadata
            )
        except grpc.RpcError as exc:
            if _unknown_service(exc):
                return _status_name(_HEALTH_STATUS.SERVICE_UNKNOWN)
            raise
        return _status_name(reply.status)

    async def wait_until_serving(self, timeout_s: float, service: str = "") -> None:
        """Poll health until ``service`` is SERVING; see :meth:`GatewayClient.wait_until_serving`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            remaining = deadline - loop.time()
            try:
                reply = await self._health.Check(
                    _health_request(service),
                    timeout=_poll_timeout(remaining),
                    metadata=self._metadata,
                )
                last = _status_name(reply.status)
            except grpc.RpcError as exc:
                last = _describe_rpc_error(exc)
            if last == "SERVING":
                return
            if loop.time() + _HEALTH_POLL_S > deadline:
                raise TimeoutError(_not_serving_message(service, timeout_s, last))
            await asyncio.sleep(_HEALTH_POLL_S)
