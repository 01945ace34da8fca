"""AssemblyAI: pre-recorded transcription through the official SDK.

A transcription is three kinds of call: upload the file's own bytes
(``POST /v2/upload``), create a job for the uploaded URL (``POST
/v2/transcript``), then poll the job (``GET /v2/transcript/{id}``) until it is
``completed`` or ``error``. The adapter drives the SDK's asyncio transcriber
(``AsyncTranscriber.submit`` then ``AsyncTranscript.wait_for_completion``), so
waiting on the vendor holds no thread, and one deadline around the whole
exchange cancels the upload, the creation or the poll wherever it has got to.

The SDK makes one HTTP request per step and never retries on its own.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import TYPE_CHECKING, Any

import assemblyai as aai
import httpx
from assemblyai.streaming import v3 as live

from gateway.core.errors import (
    ProviderBadResponse,
    ProviderError,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
)
from gateway.core.provider_types import (
    LatencyModel,
    Operation,
    SegmentTiming,
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
from providers.remote import capabilities_from, error_for_status

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from gateway.core.audio import Recording
    from providers.config import ProviderConfig

# Upload, queueing and at least one poll before any result, then processing that
# grows with the audio (a fraction of real time).
_FIXED_MS = 2000.0
_RTF = 0.1

# Set per request from the call and the entry's model; `options:` may not override them.
_RESERVED_OPTIONS = frozenset(
    {"speech_model", "speech_models", "language_code", "language_codes", "raw_transcription_config"}
)
_KNOWN_OPTIONS = frozenset(inspect.signature(aai.TranscriptionConfig.__init__).parameters) - {"self"}
_DEFAULT_OPTIONS: dict[str, Any] = {"punctuate": True, "format_text": True}
_SPEECH_MODELS = frozenset(model.value for model in aai.SpeechModel)
_MAX_DETAIL = 200
# Only ever parsed, never fetched: lets a config entry's options be validated at start-up.
_PLACEHOLDER_URL = "https://example.invalid/audio"

_STREAMING_HOST = "streaming.assemblyai.com"
_STREAMING_MODELS = frozenset(model.value for model in live.SpeechModel)
_ENGLISH_STREAMING_MODEL = "universal-streaming-english"
_MULTILINGUAL_STREAMING_MODEL = "universal-streaming-multilingual"
# The v3 endpoint takes audio messages of 50 to 1000 ms; 100 ms keeps latency low and messages few.
_CHUNK_S = 0.1
_MIN_CHUNK_S = 0.05
# Close and error codes AssemblyAI documents for a session the caller cannot fix by trying again
# (auth, funds, a paid feature, invalid parameters or messages); the others (3005 server error,
# 1013 / 3009 / 4102 capacity, 1006 a dropped socket, expiries) may work on another try or vendor.
_REJECTED_CODES = frozenset({401, 403, 1008, 3006, 4001, 4002, 4003, 4100, 4101})


class AssemblyAIProvider:
    """An AssemblyAI transcriber; ``model`` is the speech model (``universal``, ``best``, ``nano``...)."""

    def __init__(self, config: ProviderConfig) -> None:
        if config.operation is not Operation.TRANSCRIBE:
            raise ValueError(
                f"provider {config.name!r}: the assemblyai adapter only transcribes; "
                f"it cannot {config.operation.value}"
            )
        if config.secret() is None and config.base_url is None:
            raise ValueError(f"provider {config.name!r}: AssemblyAI's API needs a key: set api_key_env")
        self.name = config.name
        self.model = config.model
        self._config = config
        self._options = _vendor_options(config)
        self._stall_s = stall_seconds(config.options, config.name)
        self._streaming_host = _streaming_host(config)
        streaming_model = config.options.get("streaming_model")
        if streaming_model is not None and streaming_model not in _STREAMING_MODELS:
            raise ValueError(
                f"provider {config.name!r}: unknown streaming_model {streaming_model!r}; "
                f"one of {', '.join(sorted(_STREAMING_MODELS))}"
            )
        self._streaming_model = streaming_model
        # Every speech model labels speakers when asked (``speaker_labels``), per request or, with
        # ``options: {speaker_labels: true}``, on every request.
        features = {"word_timestamps", "segments", "language_detection", "streaming", "diarization"}
        # The poll interval is time the caller waits on top of the vendor's own.
        latency = LatencyModel(fixed_ms=_FIXED_MS + config.poll_interval_s * 1000.0, rtf=_RTF)
        self.capabilities = capabilities_from(config, frozenset(features), latency)
        self._client: aai.AsyncClient | None = None

    async def start(self) -> None:
        """Nothing to load; the client's connection pool belongs to the running event loop."""
        self._http()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def transcribe(
        self, audio: Recording, options: TranscribeOptions, timeout_s: float | None
    ) -> Transcript:
        budget = self._config.timeout_s if timeout_s is None else min(timeout_s, self._config.timeout_s)
        transcriber = aai.AsyncTranscriber(client=self._http(), config=self._request_config(options))
        try:
            async with asyncio.timeout(budget):
                job = await transcriber.submit(audio.original)
                await job.wait_for_completion()
        except TimeoutError as exc:
            raise ProviderTimeout(self.name, f"no transcript within {budget:.2f} s") from exc
        except aai.AssemblyAIError as exc:
            raise self._sdk_error(exc) from exc
        except httpx.TimeoutException as exc:
            raise ProviderTimeout(self.name, f"the HTTP request timed out ({type(exc).__name__})") from exc
        except httpx.UnsupportedProtocol as exc:
            raise ProviderRejected(self.name, "base_url must be an http or https URL") from exc
        except httpx.TransportError as exc:
            raise ProviderUnavailable(self.name, f"the connection failed ({type(exc).__name__})") from exc
        except httpx.RequestError as exc:
            raise ProviderBadResponse(self.name, f"unreadable HTTP reply ({type(exc).__name__})") from exc
        except (ValueError, KeyError, TypeError) as exc:
            # Not JSON, or JSON the SDK's models reject (pydantic's ValidationError is a ValueError).
            raise ProviderBadResponse(self.name, f"unexpected reply ({type(exc).__name__})") from exc

        if job.status == aai.TranscriptStatus.error:
            # The vendor took the job and could not transcribe the audio: another try gets the same.
            raise ProviderRejected(self.name, f"the transcription failed: {_clip(job.error or 'no reason')}")
        text = job.text
        if job.status != aai.TranscriptStatus.completed or text is None:
            raise ProviderBadResponse(
                self.name, f"the job finished as {job.status.value!r} without a transcript"
            )
        return Transcript(
            text=text,
            language=_language(job.language_code, options.language),
            segments=_segments(text, job.utterances, job.words, audio.duration_s, options.word_timestamps),
            usage=Usage(audio_seconds=audio.duration_s),
        )

    # -- live transcription (Universal-Streaming v3) ------------------------------

    async def open_stream(self, config: StreamConfig, timeout_s: float | None) -> AssemblyAIStream:
        limit = self._config.timeout_s if timeout_s is None else min(timeout_s, self._config.timeout_s)
        if limit <= 0:
            raise ProviderTimeout(self.name, "no time left before the request deadline")
        model = self._streaming_model or (
            _ENGLISH_STREAMING_MODEL if config.language in (None, "en") else _MULTILINGUAL_STREAMING_MODEL
        )
        params = live.RealTimeParameters(
            sample_rate=config.sample_rate,
            encoding=live.Encoding.pcm_s16le,
            speech_model=live.SpeechModel(model),
            format_turns=True,
            min_turn_silence=config.endpointing_ms,
            max_turn_silence=max(config.utterance_end_ms, config.endpointing_ms),
        )
        options = live.RealTimeTranscriberOptions(
            api_host=self._streaming_host,
            api_key=self._config.secret() or "",
            connect_timeout=limit,
            # One attempt: the router owns retries.
            max_connection_retries=0,
            # Past the stall watchdog, so a vendor that never sends Termination is a timeout, not this.
            terminate_timeout=self._stall_s * 2,
        )
        stream = AssemblyAIStream(self.name, live.AsyncRealTimeTranscriber(options), config, self._stall_s)
        await stream.open(params, limit)
        return stream

    # -- helpers ------------------------------------------------------------------

    def _http(self) -> aai.AsyncClient:
        if self._client is None:
            self._client = _client(self._config)
        return self._client

    def _request_config(self, options: TranscribeOptions) -> aai.TranscriptionConfig:
        fields = _request_fields(self._config.model, self._options, options.language)
        if options.diarize:
            fields["speaker_labels"] = True
        return aai.TranscriptionConfig(**fields)

    def _sdk_error(self, exc: aai.AssemblyAIError) -> ProviderError:
        if exc.status_code is None:
            return ProviderUnavailable(self.name, f"the SDK failed ({type(exc).__name__})")
        return error_for_status(self.name, exc.status_code, str(exc))


def _client(config: ProviderConfig) -> aai.AsyncClient:
    fields: dict[str, Any] = {
        "api_key": config.secret(),
        "http_timeout": config.timeout_s,
        "polling_interval": config.poll_interval_s,
    }
    if config.base_url:
        fields["base_url"] = config.base_url
    # aai.Settings is a pydantic BaseSettings: instantiating it would fill every unset field
    # from ASSEMBLYAI_* environment variables. model_construct takes only the entry's values
    # and the SDK's defaults, and leaves the process-wide aai.settings untouched.
    settings = aai.Settings.model_construct(**fields)
    return aai.AsyncClient(settings=settings, api_key_required=False)


def _vendor_options(config: ProviderConfig) -> dict[str, Any]:
    """The entry's ``options:`` merged over the defaults, checked against the SDK's own models."""
    unknown = sorted(set(config.options) - (_KNOWN_OPTIONS - _RESERVED_OPTIONS) - STREAM_OPTIONS)
    if unknown:
        raise ValueError(
            f"provider {config.name!r}: unknown AssemblyAI options {unknown}; the model comes from "
            "'model:' and the language from each request"
        )
    vendor = {k: v for k, v in config.options.items() if k not in STREAM_OPTIONS}
    merged = {**_DEFAULT_OPTIONS, **vendor}
    if "diarization" in config.features:
        merged["speaker_labels"] = True
    try:
        # The same construction `submit` makes, so a bad value fails at start-up, not per request.
        fields = _request_fields(config.model, merged, None)
        raw = aai.TranscriptionConfig(**fields).raw.model_dump(exclude_none=True)
        aai.types.TranscriptRequest(audio_url=_PLACEHOLDER_URL, **raw)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"provider {config.name!r}: invalid AssemblyAI options: {exc}") from exc
    return merged


def _request_fields(model: str, vendor_options: dict[str, Any], language: str | None) -> dict[str, Any]:
    fields = dict(vendor_options)
    if model in _SPEECH_MODELS:
        fields["speech_model"] = aai.SpeechModel(model)
    else:
        # Models newer than this SDK's enum go through the list form, which takes any name.
        fields["speech_models"] = [model]
    if language:
        fields["language_code"] = language
        # A given language and automatic detection contradict each other; the caller wins.
        fields.pop("language_detection", None)
    else:
        # The gateway's contract: no language means "detect it", not the vendor's en_us default.
        fields.setdefault("language_detection", True)
    return fields


def _segments(
    text: str,
    utterances: Sequence[aai.Utterance] | None,
    words: Sequence[aai.Word] | None,
    audio_s: float,
    with_words: bool,
) -> tuple[SegmentTiming, ...]:
    if utterances:
        return tuple(
            SegmentTiming(
                text=u.text,
                start_s=_seconds(u.start),
                end_s=_seconds(u.end),
                words=_words(u.words) if with_words else (),
                speaker=_speaker(u.speaker),
            )
            for u in utterances
        )
    if not text:
        return ()
    # Without speaker turns the vendor returns no segmentation: one segment spans the audio.
    return (SegmentTiming(text=text, start_s=0.0, end_s=audio_s, words=_words(words) if with_words else ()),)


def _words(words: Sequence[aai.Word] | None) -> tuple[WordTiming, ...]:
    return tuple(
        WordTiming(w.text, _seconds(w.start), _seconds(w.end), float(w.confidence), _speaker(w.speaker))
        for w in words or ()
    )


def _speaker(label: str | None) -> str:
    # AssemblyAI names speakers "A", "B"...; the gateway's labels read the same whatever the vendor.
    return f"speaker_{label}" if label else ""


def _seconds(milliseconds: int) -> float:
    return milliseconds / 1000.0


def _language(code: object, requested: str | None) -> str:
    # The vendor answers with its own codes ("en_us"); the gateway speaks ISO 639-1 ("en").
    value = getattr(code, "value", code) or requested or ""
    return str(value).split("_")[0].lower()


def _clip(detail: str) -> str:
    return " ".join(detail.split())[:_MAX_DETAIL]


# -- live transcription ------------------------------------------------------------


def _streaming_host(config: ProviderConfig) -> str:
    """Where the v3 socket goes: ``streaming_url``, else the entry's ``base_url`` host, else AssemblyAI's."""
    url = config.options.get("streaming_url")
    base = url if isinstance(url, str) and url else config.base_url
    if not base:
        return _STREAMING_HOST
    scheme, separator, rest = base.rstrip("/").partition("://")
    if not separator:
        return base
    return f"{'wss' if scheme in ('https', 'wss') else 'ws'}://{rest}"


class AssemblyAIStream:
    """One Universal-Streaming session, through the SDK's asyncio client.

    The SDK reads the socket on its own task and calls handlers; they only translate and queue. A turn
    is interim while it grows, and final once ``end_of_turn`` comes with its formatted text (the session
    asks for formatted turns, so the unformatted end of a turn is one more interim). Word times are
    milliseconds on the session's audio timeline.
    """

    def __init__(
        self, provider: str, client: live.AsyncRealTimeTranscriber, config: StreamConfig, stall_s: float
    ) -> None:
        self._provider = provider
        self._client = client
        self._config = config
        self._events = LiveEvents(provider, stall_s)
        self._chunk_bytes = int(config.sample_rate * _CHUNK_S) * PCM_SAMPLE_WIDTH
        self._min_chunk_bytes = int(config.sample_rate * _MIN_CHUNK_S) * PCM_SAMPLE_WIDTH
        self._pending = bytearray()
        self._bytes_received = 0
        self._began = asyncio.Event()
        self._open_failure: ProviderError | None = None
        self._speaking = False
        self._closing = False
        self._closer: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._single_close: asyncio.Task[None] | None = None
        client.on(live.RealTimeEvents.Begin, self._on_begin)
        client.on(live.RealTimeEvents.Turn, self._on_turn)
        client.on(live.RealTimeEvents.SpeechStarted, self._on_speech_started)
        client.on(live.RealTimeEvents.Termination, self._on_termination)
        client.on(live.RealTimeEvents.Error, self._on_error)

    async def open(self, params: live.RealTimeParameters, limit: float) -> None:
        try:
            async with asyncio.timeout(limit):
                await self._client.connect(params)
                await self._began.wait()
        except TimeoutError as exc:
            await self._client.disconnect()
            raise ProviderTimeout(self._provider, "the session did not begin before the deadline") from exc
        if self._open_failure is not None:
            await self._client.disconnect()
            raise self._open_failure
        self._watcher = asyncio.create_task(self._watch(), name=f"{self._provider}-live-watch")

    async def send(self, pcm: bytes) -> None:
        if self._closing or self._events.finished:
            return
        self._bytes_received += len(pcm)
        self._pending.extend(pcm)
        while len(self._pending) >= self._chunk_bytes:
            chunk = bytes(self._pending[: self._chunk_bytes])
            del self._pending[: self._chunk_bytes]
            await self._client.stream(chunk)

    async def finalize(self) -> None:
        if self._closing or self._events.finished:
            return
        await self._flush()
        # Not owed an answer: with nothing heard since the last turn, the vendor has nothing to say.
        await self._client.force_endpoint()

    async def keepalive(self) -> None:
        if not self._closing and not self._events.finished:
            await self._client.keep_alive()

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self._events.finished:
            return
        await self._flush()
        self._events.owe()
        # Terminate, then the last turn and Termination arrive through the handlers; events() ends then.
        self._closer = asyncio.create_task(self._terminate(), name=f"{self._provider}-live-close")

    async def abort(self) -> None:
        self._closing = True
        for task in (self._closer, self._watcher):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self._client.disconnect()
        self._events.end()

    def events(self) -> AsyncIterator[StreamEvent]:
        return self._events.iterate(self.abort)

    def usage(self) -> Usage:
        return Usage(audio_seconds=self._bytes_received / (PCM_SAMPLE_WIDTH * self._config.sample_rate))

    def acknowledged_s(self) -> float:
        return self._events.acknowledged_s

    # -- internals ----------------------------------------------------------------

    async def _flush(self) -> None:
        if not self._pending:
            return
        # The endpoint refuses messages under 50 ms: the tail is padded with silence to that length.
        chunk = bytes(self._pending).ljust(self._min_chunk_bytes, b"\0")
        self._pending.clear()
        await self._client.stream(chunk)

    async def _terminate(self) -> None:
        await self._client.disconnect(terminate=True)
        if not self._events.finished:
            self._events.fail(ProviderUnavailable(self._provider, "the session ended without a Termination"))

    async def _watch(self) -> None:
        # The SDK ends its reader without calling any handler when the vendor closes normally (1000)
        # before Termination; a stream that nobody ends would wait for ever.
        reader = getattr(self._client, "_read_task", None)
        if reader is None:
            return
        await asyncio.wait({reader})
        await asyncio.sleep(0)
        if not self._events.finished and not self._closing:
            self._events.fail(ProviderUnavailable(self._provider, "AssemblyAI closed the session unasked"))

    # Handlers run on the SDK's reader task, in the order the messages came. They are plain functions:
    # nothing is awaited between a message and its events.

    def _on_begin(self, _client: object, _event: live.BeginEvent) -> None:
        self._events.heard()
        self._began.set()

    def _on_speech_started(self, _client: object, event: live.SpeechStartedEvent) -> None:
        self._events.heard()
        self._events.reached(event.timestamp / 1000.0)
        if not self._speaking:
            self._speaking = True
            self._events.put(SpeechEvent(SpeechEventKind.SPEECH_BEGIN, event.timestamp / 1000.0))

    def _on_turn(self, _client: object, turn: live.TurnEvent) -> None:
        self._events.heard()
        words = tuple(
            WordTiming(w.text, _seconds(w.start), _seconds(w.end), float(w.confidence)) for w in turn.words
        )
        if words and not self._speaking:
            self._speaking = True
            self._events.put(SpeechEvent(SpeechEventKind.SPEECH_BEGIN, words[0].start_s))
        start = words[0].start_s if words else self._position()
        end = words[-1].end_s if words else start
        if words:
            self._events.reached(end)
        if turn.end_of_turn and turn.turn_is_formatted:
            text = turn.transcript.strip()
            if text:
                self._events.put(
                    StreamResult(
                        text=text,
                        is_final=True,
                        start_s=start,
                        end_s=end,
                        stability=1.0,
                        confidence=sum(w.confidence for w in words) / len(words) if words else 0.0,
                        words=words if self._config.word_timestamps else (),
                    )
                )
            if self._speaking:
                self._speaking = False
                self._events.put(SpeechEvent(SpeechEventKind.END_OF_UTTERANCE, end))
                if self._config.single_utterance and not self._closing:
                    # Handlers cannot await: the close runs on its own task, kept until it is done.
                    self._single_close = asyncio.get_running_loop().create_task(self.close())
            return
        if not self._config.interim_results or not words:
            return
        settled = sum(1 for w in turn.words if w.word_is_final)
        self._events.put(
            StreamResult(
                text=" ".join(w.text for w in words),
                is_final=False,
                start_s=start,
                end_s=end,
                stability=settled / len(words),
                confidence=sum(w.confidence for w in words) / len(words),
                words=words if self._config.word_timestamps else (),
            )
        )

    def _on_termination(self, _client: object, _event: live.TerminationEvent) -> None:
        self._events.heard()
        self._events.end()

    def _on_error(self, _client: object, error: live.RealTimeError) -> None:
        failure = self._failure(error)
        if not self._began.is_set():
            self._open_failure = failure
            self._began.set()
        self._events.fail(failure)

    def _failure(self, error: live.RealTimeError) -> ProviderError:
        code = error.code
        detail = _clip(str(error))
        if code is None:
            return ProviderUnavailable(self._provider, f"the live session failed: {detail}")
        if 400 <= code < 600:
            # An HTTP status on the handshake.
            return error_for_status(self._provider, code, detail)
        message = f"AssemblyAI ended the session ({code}: {detail})"
        if code in _REJECTED_CODES:
            return ProviderRejected(self._provider, message)
        return ProviderUnavailable(self._provider, message)

    def _position(self) -> float:
        return self._bytes_received / (PCM_SAMPLE_WIDTH * self._config.sample_rate)
