"""Deepgram: pre-recorded transcription (Nova) and Aura speech synthesis, through the official SDK.

One config entry is one operation. Transcription posts the file's own bytes to
``/v1/listen``; synthesis asks ``/v1/speak`` for 16-bit WAV so the reply decodes
without guessing, and StreamSynthesize for raw 16-bit PCM, read as it arrives.
An Aura entry prices the family (``model: aura-2``) while the voice, Deepgram's
own model name (``aura-2-thalia-en``), is sent per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, aclosing, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import websockets
from deepgram import AsyncDeepgramClient
from deepgram.core.api_error import ApiError
from deepgram.core.parse_error import ParsingError
from deepgram.environment import DeepgramClientEnvironment
from deepgram.listen.v1.types.listen_v1error import ListenV1Error
from deepgram.listen.v1.types.listen_v1results import ListenV1Results
from deepgram.listen.v1.types.listen_v1speech_started import ListenV1SpeechStarted
from deepgram.listen.v1.types.listen_v1utterance_end import ListenV1UtteranceEnd
from deepgram.types.listen_v1response import ListenV1Response

from gateway.core.audio import decode_pcm16
from gateway.core.errors import (
    ProviderBadResponse,
    ProviderError,
    ProviderInputError,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    clip,
)
from gateway.core.provider_types import (
    LatencyModel,
    Operation,
    SegmentTiming,
    Speech,
    SynthesizeOptions,
    TranscribeOptions,
    Transcript,
    Usage,
    WordTiming,
)
from gateway.core.streaming import (
    PCM_SAMPLE_WIDTH,
    SpeechEvent,
    SpeechEventKind,
    StreamConfig,
    StreamEvent,
    StreamResult,
)
from providers.live import STREAM_OPTIONS, LiveEvents, stall_seconds
from providers.remote import PcmPieces, capabilities_from, error_for_status

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from deepgram.listen.v1.socket_client import AsyncV1SocketClient

    from gateway.core.audio import Recording
    from providers.config import ProviderConfig

_TRANSCRIBE_LATENCY = LatencyModel(fixed_ms=500.0, rtf=0.03)
_SYNTHESIZE_LATENCY = LatencyModel(fixed_ms=300.0, ms_per_char=1.5)

# Formatting is on unless the entry's `options:` turns it off.
_LISTEN_DEFAULTS: dict[str, str | bool | int | float] = {"smart_format": True, "punctuate": True}
_SPEAK_ENCODING = "linear16"
_SPEAK_CONTAINER = "wav"
_SPEAK_SAMPLE_RATE = 24_000
_RESERVED_SPEAK_OPTIONS = frozenset({"model", "encoding", "container", "sample_rate", "speed"})
_RESERVED_LISTEN_OPTIONS = frozenset({"model", "language"})
# Switches the SDK takes as typed arguments; the rest of `options:` goes as extra query parameters.
_LISTEN_SWITCHES = ("smart_format", "punctuate", "diarize", "utterances", "paragraphs", "detect_language")

# Nova-3 transcribes English unless told otherwise.
_DEFAULT_LANGUAGE = "en"

# Switches of `options:` that also mean something on a live stream (the rest are pre-recorded only).
_LIVE_SWITCHES = ("punctuate", "smart_format", "diarize", "numerals", "profanity_filter", "filler_words")
# Deepgram refuses an utterance_end_ms under 1000 ms.
_MIN_UTTERANCE_END_MS = 1000
# Close codes Deepgram documents for a stream it ends on its side: 1008, data it could not decode (the
# same audio fails again, elsewhere too); 1011, a timeout or an internal error (another try may work).
_REJECTED_CLOSE_CODES = frozenset({1008})
# Deepgram answers audio in steps of about a second: audio this close to the end of its last answer is
# not owed an answer yet.
_ANSWER_SLACK_S = 1.0


class DeepgramProvider:
    """A Deepgram transcriber or synthesizer, as its config entry's ``operation`` says."""

    def __init__(self, config: ProviderConfig) -> None:
        if config.operation not in (Operation.TRANSCRIBE, Operation.SYNTHESIZE):
            raise ValueError(
                f"provider {config.name!r}: the deepgram adapter transcribes and synthesizes; "
                f"it cannot {config.operation.value}"
            )
        key = config.secret()
        if key is None and config.base_url is None:
            raise ValueError(f"provider {config.name!r}: Deepgram's API needs a key: set api_key_env")
        self.name = config.name
        self.model = config.model
        self._config = config
        self._options = dict(config.options)
        if config.operation is Operation.TRANSCRIBE:
            # Every pre-recorded model diarizes when asked (``diarize=true``), per request or, with
            # ``options: {diarize: true}``, on every request.
            features = {"word_timestamps", "segments", "streaming", "diarization"}
            if self._options.get("detect_language") is True:
                features.add("language_detection")
            latency = _TRANSCRIBE_LATENCY
        else:
            features = {"voices", "speed"}
            latency = _SYNTHESIZE_LATENCY
        self.capabilities = capabilities_from(config, frozenset(features), latency)
        self._default_voice = config.default_voice or config.model
        self._voices = config.voices if config.voices else frozenset({self._default_voice})
        if self._default_voice not in self._voices:
            raise ValueError(
                f"provider {config.name!r}: default_voice {self._default_voice!r} is not among its voices"
            )
        self._stall_s = stall_seconds(self._options, config.name)
        self._http = httpx.AsyncClient(timeout=config.timeout_s)
        self._client = AsyncDeepgramClient(
            api_key=key or "",
            environment=_environment(config.base_url),
            timeout=config.timeout_s,
            # The router owns retries: one attempt per call.
            max_retries=0,
            httpx_client=self._http,
        )

    async def start(self) -> None:
        """Nothing to load: the first request opens the connection."""

    async def close(self) -> None:
        await self._http.aclose()

    # -- transcription ------------------------------------------------------------

    async def transcribe(
        self, audio: Recording, options: TranscribeOptions, timeout_s: float | None
    ) -> Transcript:
        self._require(Operation.TRANSCRIBE)
        query = {k: v for k, v in {**_LISTEN_DEFAULTS, **self._options}.items() if k not in STREAM_OPTIONS}
        if options.diarize:
            query["diarize"] = True
        if query.get("diarize") is True:
            # Utterances carry the speaker turns that segments are built from.
            query.setdefault("utterances", True)
        language = options.language or _str_or_none(query.get("language"))
        switches = {k: query[k] for k in _LISTEN_SWITCHES if k in query}
        extra = {
            k: v for k, v in query.items() if k not in _RESERVED_LISTEN_OPTIONS and k not in _LISTEN_SWITCHES
        }
        limit = self._limit(timeout_s)
        try:
            response = await asyncio.wait_for(
                self._client.listen.v1.media.transcribe_file(
                    request=audio.original,
                    model=self.model,
                    language=language,
                    **switches,
                    request_options={
                        "timeout": limit,
                        "max_retries": 0,
                        "additional_query_parameters": extra,
                    },
                ),
                limit,
            )
        except (ApiError, ParsingError, httpx.HTTPError, TimeoutError, ValueError) as exc:
            raise self._failure(exc) from exc
        try:
            parsed = _parse_listen(response)
        except (AttributeError, TypeError, ValueError, IndexError) as exc:
            raise ProviderBadResponse(
                self.name, f"unexpected transcription reply ({type(exc).__name__})"
            ) from exc
        text, segments, detected = parsed
        return Transcript(
            text=text,
            language=language or detected or _DEFAULT_LANGUAGE,
            segments=segments,
            usage=Usage(audio_seconds=audio.duration_s),
        )

    # -- live transcription -------------------------------------------------------

    async def open_stream(self, config: StreamConfig, timeout_s: float | None) -> DeepgramStream:
        self._require(Operation.TRANSCRIBE)
        limit = self._limit(timeout_s)
        query = {**_LISTEN_DEFAULTS, **self._options}
        switches = {k: _flag(query[k]) for k in _LIVE_SWITCHES if k in query}
        language = config.language or _str_or_none(query.get("language"))
        stack = AsyncExitStack()
        try:
            async with asyncio.timeout(limit):
                socket = await stack.enter_async_context(
                    self._client.listen.v1.connect(
                        model=self.model,
                        encoding="linear16",
                        sample_rate=config.sample_rate,
                        channels=1,
                        # Always on: UtteranceEnd needs interim results, so a caller who wants none gets
                        # them filtered here instead.
                        interim_results="true",
                        endpointing=config.endpointing_ms,
                        utterance_end_ms=max(config.utterance_end_ms, _MIN_UTTERANCE_END_MS),
                        vad_events="true",
                        language=language,
                        **switches,
                    )
                )
        except BaseException as exc:
            await stack.aclose()
            if isinstance(exc, Exception):
                raise self._open_failure(exc) from exc
            raise
        return DeepgramStream(self.name, socket, stack, config, self._stall_s)

    def _open_failure(self, exc: Exception) -> ProviderError:
        if isinstance(exc, ApiError):
            return error_for_status(self.name, exc.status_code or 502, _detail(exc.body))
        if isinstance(exc, TimeoutError):
            return ProviderTimeout(self.name, "the live socket did not open before the deadline")
        if isinstance(exc, websockets.exceptions.InvalidURI):
            return ProviderRejected(self.name, "base_url does not make a valid websocket URL")
        if isinstance(exc, OSError | websockets.exceptions.WebSocketException):
            return ProviderUnavailable(self.name, f"the live socket could not open ({type(exc).__name__})")
        return ProviderBadResponse(self.name, f"the live socket could not open ({type(exc).__name__})")

    # -- synthesis ----------------------------------------------------------------

    def voices(self) -> frozenset[str]:
        return self._voices

    async def synthesize(self, text: str, options: SynthesizeOptions, timeout_s: float | None) -> Speech:
        self._require(Operation.SYNTHESIZE)
        voice, sample_rate, extra = self._speak_params(options)
        limit = self._limit(timeout_s)
        try:
            body = await asyncio.wait_for(
                self._speak(text, voice, sample_rate, options.speed, extra, limit), limit
            )
        except (ApiError, ParsingError, httpx.HTTPError, TimeoutError, ValueError) as exc:
            raise self._failure(exc) from exc
        try:
            samples, rate = await asyncio.to_thread(decode_pcm16, body, "audio/wav")
        except ValueError as exc:
            raise ProviderBadResponse(self.name, "the synthesized audio could not be decoded") from exc
        usage = Usage(characters=len(text), audio_seconds=len(samples) / rate)
        return Speech(samples=samples, sample_rate=rate, voice=voice, usage=usage)

    async def synthesize_stream(
        self, text: str, options: SynthesizeOptions, timeout_s: float | None
    ) -> AsyncIterator[Speech]:
        """Aura's body read as it arrives, as raw PCM (no WAV header to wait for) in pieces.

        Only the awaits on the network are bounded here: a timeout must not span a ``yield``, where the
        caller's own work runs.
        """
        self._require(Operation.SYNTHESIZE)
        voice, sample_rate, extra = self._speak_params(options)
        limit = self._limit(timeout_s)
        deadline = asyncio.get_running_loop().time() + limit
        pieces = PcmPieces(int(sample_rate), voice)
        stream = self._client.speak.v1.audio.generate(
            text=text,
            model=voice,
            encoding=_SPEAK_ENCODING,
            container="none",
            sample_rate=sample_rate,
            speed=options.speed if options.speed != 1.0 else None,
            request_options={"timeout": limit, "max_retries": 0, "additional_query_parameters": extra},
        )
        try:
            async with aclosing(stream):
                while True:
                    try:
                        async with asyncio.timeout_at(deadline):
                            data = await anext(stream)
                    except StopAsyncIteration:
                        break
                    if (piece := pieces.push(data)) is not None:
                        yield piece
        except (ApiError, ParsingError, httpx.HTTPError, TimeoutError) as exc:
            raise self._failure(exc) from exc
        try:
            last = pieces.finish(len(text))
        except ValueError as exc:
            raise ProviderBadResponse(self.name, f"the speech stream is malformed: {exc}") from exc
        yield last

    def _speak_params(self, options: SynthesizeOptions) -> tuple[str, Any, dict[str, Any]]:
        voice = options.voice or self._default_voice
        if voice not in self._voices:
            raise ProviderInputError(
                self.name,
                f"unknown voice {clip(voice)!r}; available voices: {', '.join(sorted(self._voices))}",
            )
        sample_rate = self._options.get("sample_rate", _SPEAK_SAMPLE_RATE)
        extra = {
            k: v
            for k, v in self._options.items()
            if k not in _RESERVED_SPEAK_OPTIONS and k not in STREAM_OPTIONS
        }
        return voice, sample_rate, extra

    async def _speak(
        self,
        text: str,
        voice: str,
        sample_rate: Any,
        speed: float,
        extra: dict[str, Any],
        limit: float,
    ) -> bytes:
        chunks: list[bytes] = []
        stream = self._client.speak.v1.audio.generate(
            text=text,
            model=voice,
            encoding=_SPEAK_ENCODING,
            container=_SPEAK_CONTAINER,
            sample_rate=sample_rate,
            # Deepgram's default pace is 1.0; only a change is worth a parameter.
            speed=speed if speed != 1.0 else None,
            request_options={"timeout": limit, "max_retries": 0, "additional_query_parameters": extra},
        )
        # Closed explicitly so a deadline that cancels mid-body releases the connection at once.
        async with aclosing(stream):
            async for chunk in stream:
                chunks.append(chunk)
        return b"".join(chunks)

    # -- shared -------------------------------------------------------------------

    def _require(self, operation: Operation) -> None:
        if operation not in self.capabilities.operations:
            raise ProviderRejected(self.name, f"this entry is configured to {self._config.operation.value}")

    def _limit(self, timeout_s: float | None) -> float:
        limit = self._config.timeout_s if timeout_s is None else min(timeout_s, self._config.timeout_s)
        if limit <= 0:
            raise ProviderTimeout(self.name, "no time left before the request deadline")
        return limit

    def _failure(self, exc: Exception) -> ProviderError:
        if isinstance(exc, ApiError):
            status = exc.status_code
            if status is None:
                return ProviderUnavailable(self.name, "the request failed without an HTTP status")
            if 200 <= status < 300:
                # The SDK reports a 2xx body it could not parse as JSON this way.
                return ProviderBadResponse(self.name, f"HTTP {status} with a body that is not JSON")
            return error_for_status(self.name, status, _detail(exc.body))
        if isinstance(exc, ParsingError):
            return ProviderBadResponse(self.name, "the reply did not match Deepgram's schema")
        if isinstance(exc, TimeoutError | httpx.TimeoutException):
            return ProviderTimeout(self.name, "no reply before the deadline")
        if isinstance(exc, httpx.DecodingError):
            return ProviderBadResponse(self.name, "the reply's content encoding is corrupt")
        if isinstance(exc, httpx.HTTPError):
            return ProviderUnavailable(self.name, f"connection failed ({type(exc).__name__})")
        return ProviderBadResponse(self.name, f"the reply could not be read ({type(exc).__name__})")


def _environment(base_url: str | None) -> DeepgramClientEnvironment:
    if base_url is None:
        return DeepgramClientEnvironment.PRODUCTION
    http = base_url.rstrip("/")
    # The REST calls use `base`; the socket URLs follow the same host so nothing leaks to the default.
    scheme, _, rest = http.partition("://")
    ws = f"{'wss' if scheme == 'https' else 'ws'}://{rest}"
    return DeepgramClientEnvironment(base=http, production=ws, agent=ws, agent_rest=http)


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _detail(body: object) -> str:
    if isinstance(body, dict):
        for key in ("err_msg", "message", "error", "err_code"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
        return ""
    return body if isinstance(body, str) else ""


# -- reply parsing ------------------------------------------------------------------
# The SDK builds its models without validation, so every field read here is
# checked: a reply of the wrong shape must become ProviderBadResponse, not a crash.


@dataclass(frozen=True)
class _Word:
    timing: WordTiming
    speaker: int | None


def _parse_listen(response: object) -> tuple[str, tuple[SegmentTiming, ...], str | None]:
    if not isinstance(response, ListenV1Response) or response.results is None:
        raise ValueError("not a pre-recorded transcription result")
    channels = response.results.channels
    if not isinstance(channels, list) or not channels or not channels[0].alternatives:
        raise ValueError("no channel alternatives")
    channel = channels[0]
    alternative = channel.alternatives[0]
    text = _text(alternative.transcript)
    words = [_word(w) for w in alternative.words or ()]
    detected = _str_or_none(channel.detected_language)
    if response.results.utterances:
        segments = tuple(_utterance(u) for u in response.results.utterances)
    elif alternative.paragraphs is not None and alternative.paragraphs.paragraphs:
        segments = _paragraphs(alternative.paragraphs.paragraphs, words)
    elif text:
        segments = (_single_segment(text, words),)
    else:
        segments = ()
    return text, segments, detected


def _text(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError("transcript is not a string")
    return value.strip()


def _word(raw: Any) -> _Word:
    punctuated = getattr(raw, "punctuated_word", None)
    text = punctuated if isinstance(punctuated, str) and punctuated else raw.word
    if not isinstance(text, str):
        raise TypeError("word is not a string")
    speaker = raw.speaker
    if speaker is not None and not isinstance(speaker, int):
        raise TypeError("speaker is not an integer")
    timing = WordTiming(
        text=text,
        start_s=float(raw.start),
        end_s=float(raw.end),
        confidence=float(raw.confidence) if raw.confidence is not None else 0.0,
        speaker=_speaker(speaker),
    )
    return _Word(timing, speaker)


def _speaker(speaker: object) -> str:
    if speaker is None:
        return ""
    if not isinstance(speaker, int):
        raise TypeError("speaker is not an integer")
    return f"speaker_{speaker}"


def _utterance(raw: Any) -> SegmentTiming:
    words = tuple(_word(w).timing for w in raw.words or ())
    return SegmentTiming(
        text=_text(raw.transcript),
        start_s=float(raw.start),
        end_s=float(raw.end),
        words=words,
        speaker=_speaker(raw.speaker),
    )


def _paragraphs(paragraphs: list[Any], words: list[_Word]) -> tuple[SegmentTiming, ...]:
    counts = [p.num_words for p in paragraphs]
    by_count = all(isinstance(n, int) for n in counts) and sum(counts) == len(words)
    segments: list[SegmentTiming] = []
    cursor = 0
    for paragraph in paragraphs:
        start, end = float(paragraph.start), float(paragraph.end)
        if by_count:
            mine = words[cursor : cursor + paragraph.num_words]
            cursor += paragraph.num_words
        else:
            mine = [w for w in words if start <= w.timing.start_s <= end]
        text = " ".join(_text(s.text) for s in paragraph.sentences or ())
        segments.append(
            SegmentTiming(
                text=text,
                start_s=start,
                end_s=end,
                words=tuple(w.timing for w in mine),
                speaker=_speaker(paragraph.speaker),
            )
        )
    return tuple(segments)


def _single_segment(text: str, words: list[_Word]) -> SegmentTiming:
    speakers = {w.speaker for w in words}
    speaker = speakers.pop() if len(speakers) == 1 else None
    return SegmentTiming(
        text=text,
        start_s=words[0].timing.start_s if words else 0.0,
        end_s=words[-1].timing.end_s if words else 0.0,
        words=tuple(w.timing for w in words),
        speaker=_speaker(speaker),
    )


# -- live transcription ------------------------------------------------------------


def _flag(value: object) -> str:
    """The SDK puts query values in the URL as Python prints them; Deepgram reads "true", not "True"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class DeepgramStream:
    """One live socket: audio in as binary frames, Results / SpeechStarted / UtteranceEnd out as events.

    Results carry ``start`` and ``duration`` on the stream's audio timeline. A final with ``speech_final``
    means Deepgram heard the endpointing silence: the utterance ended there. ``UtteranceEnd`` ends it too
    when noise kept ``speech_final`` from coming; whichever comes first ends the utterance, once.
    """

    def __init__(
        self,
        provider: str,
        socket: AsyncV1SocketClient,
        stack: AsyncExitStack,
        config: StreamConfig,
        stall_s: float,
    ) -> None:
        self._provider = provider
        self._socket = socket
        self._stack = stack
        self._config = config
        self._events = LiveEvents(provider, stall_s)
        self._bytes_sent = 0
        self._closing = False
        self._in_utterance = False
        self._finalizing = False
        self._reader = asyncio.create_task(self._read(), name=f"{provider}-live-reader")

    async def send(self, pcm: bytes) -> None:
        if self._closing or self._events.finished:
            return
        # Deepgram answers audio continuously (silence with empty finals), so audio is owed an answer.
        if await self._write(self._socket.send_media(pcm)):
            self._bytes_sent += len(pcm)
            self._events.owe()

    async def finalize(self) -> None:
        if not self._closing and await self._write(self._socket.send_finalize()):
            self._finalizing = True
            self._events.owe()

    async def keepalive(self) -> None:
        if not self._closing:
            await self._write(self._socket.send_keep_alive())

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if await self._write(self._socket.send_close_stream()):
            self._events.owe()

    async def abort(self) -> None:
        self._closing = True
        # A graceful close waits for the vendor's close frame (up to 10 s), and a vendor that stalled may
        # never send it: the connection is cut instead. The SDK exposes no abort of its own.
        transport = getattr(getattr(self._socket, "_websocket", None), "transport", None)
        if isinstance(transport, asyncio.WriteTransport):
            transport.abort()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        await self._release()
        self._events.end()

    def events(self) -> AsyncIterator[StreamEvent]:
        return self._events.iterate(self.abort)

    def usage(self) -> Usage:
        return Usage(audio_seconds=self._seconds_sent())

    def acknowledged_s(self) -> float:
        return self._events.acknowledged_s

    def _seconds_sent(self) -> float:
        return self._bytes_sent / (PCM_SAMPLE_WIDTH * self._config.sample_rate)

    # -- internals ----------------------------------------------------------------

    async def _write(self, sending: Any) -> bool:
        try:
            await sending
        except websockets.exceptions.ConnectionClosed as exc:
            # The reader sees the same close and reports it; a failed write only must not raise here.
            self._events.fail(self._closed(exc))
            return False
        return True

    async def _release(self) -> None:
        with suppress(OSError, websockets.exceptions.WebSocketException):
            await self._stack.aclose()

    async def _read(self) -> None:
        try:
            async for message in self._socket:
                self._events.heard()
                for event in self._map(message):
                    self._events.put(event)
                    if (
                        self._config.single_utterance
                        and isinstance(event, SpeechEvent)
                        and event.kind is SpeechEventKind.END_OF_UTTERANCE
                    ):
                        await self.close()
        except websockets.exceptions.ConnectionClosed as exc:
            self._events.fail(self._closed(exc))
        except _VendorError as exc:
            self._events.fail(exc.error)
        except (AttributeError, TypeError, ValueError, IndexError) as exc:
            self._events.fail(
                ProviderBadResponse(self._provider, f"unexpected live message ({type(exc).__name__})")
            )
        else:
            if self._closing:
                self._events.end()
            else:
                self._events.fail(ProviderUnavailable(self._provider, "Deepgram closed the stream unasked"))
        finally:
            await self._release()

    def _closed(self, exc: websockets.exceptions.ConnectionClosed) -> ProviderError:
        frame = exc.rcvd
        if frame is None:
            return ProviderUnavailable(self._provider, "the live socket dropped without a close frame")
        reason = " ".join(frame.reason.split())[:100]
        message = f"Deepgram closed the stream ({frame.code}{': ' + reason if reason else ''})"
        if frame.code in _REJECTED_CLOSE_CODES:
            return ProviderRejected(self._provider, message)
        return ProviderUnavailable(self._provider, message)

    def _map(self, message: object) -> list[StreamEvent]:
        if isinstance(message, ListenV1Results):
            return self._results(message)
        if isinstance(message, ListenV1SpeechStarted):
            if self._in_utterance:
                return []
            self._in_utterance = True
            self._events.reached(float(message.timestamp))
            return [SpeechEvent(SpeechEventKind.SPEECH_BEGIN, float(message.timestamp))]
        if isinstance(message, ListenV1UtteranceEnd):
            self._events.reached(float(message.last_word_end))
            return self._utterance_end(float(message.last_word_end))
        if isinstance(message, ListenV1Error):
            detail = " ".join(str(message.description or message.code or "").split())[:100]
            raise _VendorError(ProviderUnavailable(self._provider, f"Deepgram reported an error: {detail}"))
        # Metadata, configure acknowledgements: nothing a caller needs.
        return []

    def _results(self, message: ListenV1Results) -> list[StreamEvent]:
        alternative = message.channel.alternatives[0]
        text = _text(alternative.transcript)
        start = float(message.start)
        end = start + float(message.duration)
        # Every Results message, an empty one for silence included, covers the audio up to its end.
        self._events.reached(end)
        if message.from_finalize:
            self._finalizing = False
        if not self._finalizing and not self._closing and end >= self._seconds_sent() - _ANSWER_SLACK_S:
            self._events.settle()
        events: list[StreamEvent] = []
        if text:
            words = tuple(_word(w).timing for w in alternative.words or ())
            if not self._in_utterance:
                self._in_utterance = True
                events.append(SpeechEvent(SpeechEventKind.SPEECH_BEGIN, words[0].start_s if words else start))
            final = bool(message.is_final)
            if final or self._config.interim_results:
                events.append(
                    StreamResult(
                        text=text,
                        is_final=final,
                        start_s=start,
                        end_s=end,
                        # Deepgram gives no stability for interim results; 0.0 says "not known".
                        stability=1.0 if final else 0.0,
                        confidence=float(alternative.confidence or 0.0),
                        words=words if self._config.word_timestamps else (),
                    )
                )
        if message.is_final and message.speech_final:
            events.extend(self._utterance_end(end))
        return events

    def _utterance_end(self, at_s: float) -> list[StreamEvent]:
        if not self._in_utterance:
            return []
        self._in_utterance = False
        return [SpeechEvent(SpeechEventKind.END_OF_UTTERANCE, at_s)]


class _VendorError(Exception):
    def __init__(self, error: ProviderError) -> None:
        super().__init__(str(error))
        self.error = error
