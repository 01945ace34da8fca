"""OpenAI's audio APIs through the official SDK: transcription, speech, and audio-in chat.

One instance serves the one operation its config entry names:

- transcribe: ``audio.transcriptions`` (whisper-1, gpt-4o-transcribe, gpt-4o-mini-transcribe). Whisper
  answers ``verbose_json`` with segments and, on request, words; the gpt-4o models answer plain
  ``json``, so their transcript is one segment spanning the audio and they declare no word timestamps.
  Whisper also translates (``audio.translations``: English text from any language), declared as the
  ``translate`` feature.
- synthesize: ``audio.speech`` (tts-1, tts-1-hd, gpt-4o-mini-tts), asking for WAV (or raw 24 kHz PCM)
  so the samples decode without guessing. StreamSynthesize reads the body as it arrives
  (``with_streaming_response``, always raw PCM, which needs no header before the first sample).
- understand: ``chat.completions`` with an ``input_audio`` part (gpt-4o-audio-preview, gpt-audio): the
  model listens to the recording itself.

The same code speaks to self-hosted servers with the same API (see
:mod:`providers.openai_compatible`).
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import aiohttp
import httpx2
import numpy as np
import openai
import orjson

from gateway.core.audio import ASR_SAMPLE_RATE, decode_pcm16, encode_wav
from gateway.core.errors import (
    ProviderBadResponse,
    ProviderError,
    ProviderInputError,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    clip,
)
from gateway.core.languages import WHISPER_LANGUAGE_CODES
from gateway.core.provider_types import (
    Answer,
    AnswerOptions,
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
from providers.openai_realtime import (
    REALTIME_SAMPLE_RATE,
    RealtimeSettings,
    RealtimeTranscriptionStream,
    open_realtime_stream,
)
from providers.remote import PcmPieces, capabilities_from, error_for_status

if TYPE_CHECKING:
    from gateway.core.audio import Recording
    from gateway.core.streaming import StreamConfig
    from providers.config import ProviderConfig

T = TypeVar("T")

DEFAULT_BASE_URL = "https://api.openai.com/v1"
OPENAI_VOICES = frozenset(
    {"alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse"}
)
DEFAULT_VOICE = "alloy"
# The speech endpoint's raw "pcm" format: 24 kHz signed 16-bit little-endian mono.
PCM_SAMPLE_RATE = 24_000

# Containers each endpoint accepts as they are; anything else is re-encoded to WAV first.
_TRANSCRIBE_CONTAINERS = ("flac", "mp3", "mp4", "mpeg", "mpga", "m4a", "ogg", "wav", "webm")
_INPUT_AUDIO_CONTAINERS = ("wav", "mp3")
_MIME = {"mp3": "audio/mpeg", "mp4": "audio/mp4", "m4a": "audio/mp4", "mpga": "audio/mpeg"}
# These transcription models answer json or text only: no segments, no words, no language.
_JSON_ONLY_PREFIXES = ("gpt-4o", "gpt-transcribe")
# Realtime transcription models that refuse server VAD: the client commits every item itself.
_NO_VAD_MODELS = ("gpt-realtime-whisper",)

_LATENCY = {
    Operation.TRANSCRIBE: LatencyModel(fixed_ms=600.0, rtf=0.08),
    Operation.SYNTHESIZE: LatencyModel(fixed_ms=500.0, ms_per_char=12.0),
    Operation.UNDERSTAND: LatencyModel(fixed_ms=1500.0, rtf=0.1),
}

AUDIO_SYSTEM_PROMPT = (
    "You answer questions about the attached audio recording. "
    "Answer the question in one or two sentences, using only what is said in the recording."
)


class OpenAIProvider:
    """One (operation, model) of the OpenAI API, as a config entry of kind ``openai`` declares it."""

    #: Understanding models take the recording itself.
    listens = True
    #: Voices the speech endpoint knows; None accepts any name (self-hosted servers name their own).
    known_voices: ClassVar[frozenset[str] | None] = OPENAI_VOICES
    #: Whether a transcription entry streams (Realtime transcription sessions) unless its options say.
    streams_by_default: ClassVar[bool] = True
    #: Self-hosted Realtime servers choose the model from the URL; OpenAI's transcription intent does not.
    realtime_model_in_url: ClassVar[bool] = False
    #: Whether a Whisper transcription entry also serves /audio/translations (an entry's features may say).
    translates: ClassVar[bool] = True

    def __init__(self, config: ProviderConfig) -> None:
        self.name = config.name
        self.model = config.model
        self._config = config
        self._operation = config.operation
        self._pcm = _speech_format(config) == "pcm"
        self._pcm_rate = int(config.options.get("pcm_sample_rate", PCM_SAMPLE_RATE))
        self._default_voice = config.default_voice or DEFAULT_VOICE
        self._verbose = bool(
            config.options.get("verbose_json", not config.model.startswith(_JSON_ONLY_PREFIXES))
        )
        self._realtime = self._realtime_settings(config)
        self._client = openai.AsyncOpenAI(
            api_key=config.secret() or "unset",
            # Explicit, so the SDK never falls back to OPENAI_BASE_URL from the environment.
            base_url=config.base_url or DEFAULT_BASE_URL,
            # The router owns retries: exactly one attempt per call.
            max_retries=0,
            timeout=config.timeout_s,
            http_client=_http_client(),
        )
        self.capabilities = capabilities_from(config, self._features(), _LATENCY[config.operation])

    def _realtime_settings(self, config: ProviderConfig) -> RealtimeSettings | None:
        """How this entry streams, or None when it does not (``options.realtime: false``)."""
        if config.operation is not Operation.TRANSCRIBE:
            return None
        if not bool(config.options.get("realtime", self.streams_by_default)):
            return None
        protocol = str(config.options.get("realtime_protocol", "openai"))
        if protocol not in ("openai", "vllm"):
            raise ValueError(
                f"provider {config.name!r}: options.realtime_protocol must be 'openai' or 'vllm', "
                f"not {protocol!r}"
            )
        # vLLM's realtime models take 16 kHz PCM; OpenAI's API only 24 kHz.
        default_rate = 16_000 if protocol == "vllm" else REALTIME_SAMPLE_RATE
        rate = int(config.options.get("realtime_sample_rate", default_rate))
        stall_s = float(config.options.get("realtime_stall_s", 10.0))
        if not 8_000 <= rate <= 48_000 or stall_s <= 0:
            raise ValueError(
                f"provider {config.name!r}: options.realtime_sample_rate must be 8000-48000 Hz and "
                "options.realtime_stall_s positive"
            )
        return RealtimeSettings(
            sample_rate=rate,
            server_vad=bool(config.options.get("realtime_vad", not config.model.startswith(_NO_VAD_MODELS))),
            model_in_url=self.realtime_model_in_url,
            stall_s=stall_s,
            protocol=protocol,
        )

    def _features(self) -> frozenset[str]:
        if self._operation is Operation.TRANSCRIBE:
            streaming = frozenset({"streaming"}) if self._realtime is not None else frozenset()
            # OpenAI's translations endpoint serves whisper-1 only (the verbose models here).
            translate = frozenset({"translate"}) if self._verbose and self.translates else frozenset()
            if self._verbose:
                verbose = frozenset({"segments", "word_timestamps", "prompt", "language_detection"})
                return verbose | streaming | translate
            return frozenset({"prompt"}) | streaming
        if self._operation is Operation.SYNTHESIZE:
            return frozenset({"voices", "speed"})
        return frozenset({"listens"})

    async def start(self) -> None:
        """Nothing to load: the client connects on first use."""

    async def close(self) -> None:
        await self._client.close()

    # -- transcribe ----------------------------------------------------------------

    async def transcribe(
        self, audio: Recording, options: TranscribeOptions, timeout_s: float | None
    ) -> Transcript:
        self._require(Operation.TRANSCRIBE)
        container, data = await _upload(audio, _TRANSCRIBE_CONTAINERS)
        limit = self._limit(timeout_s)
        # Typed as Any: the SDK's overloads pick a return type per literal response_format.
        response_format: Any = "verbose_json" if self._verbose else "json"
        file = (f"audio.{container}", data, _MIME.get(container, f"audio/{container}"))
        # The raw reply, read as JSON here: building the SDK's typed models of a verbose transcript (every
        # segment and word) took about an eighth of the CPU of its whole call.
        request: Awaitable[Any]
        if options.translate:
            # The translations endpoint: English text, segments in verbose_json, no words or language.
            request = self._client.audio.translations.with_raw_response.create(
                file=file,
                model=self.model,
                prompt=options.prompt or openai.omit,
                response_format=response_format,
                timeout=limit,
            )
        else:
            words = self._verbose and options.word_timestamps
            request = self._client.audio.transcriptions.with_raw_response.create(
                file=file,
                model=self.model,
                language=options.language or openai.omit,
                prompt=options.prompt or openai.omit,
                response_format=response_format,
                timestamp_granularities=["segment", "word"] if words else openai.omit,
                timeout=limit,
            )
        result = _json_object(self.name, (await self._call(request, limit)).content)
        try:
            text = _text(result["text"])
            if options.translate:
                segments = (
                    _verbose_segments(result, audio.duration_s, text)
                    if self._verbose
                    else (SegmentTiming(text=text, start_s=0.0, end_s=audio.duration_s),)
                )
                language = "en"
            elif self._verbose:
                segments = _verbose_segments(result, audio.duration_s, text)
                language = options.language or _language_code(result.get("language"))
            else:
                segments = (SegmentTiming(text=text, start_s=0.0, end_s=audio.duration_s),)
                language = options.language or ""
        except (KeyError, TypeError, ValueError) as exc:
            raise ProviderBadResponse(self.name, "the transcription response is malformed") from exc
        return Transcript(
            text=text, language=language, segments=segments, usage=Usage(audio_seconds=audio.duration_s)
        )

    # -- stream --------------------------------------------------------------------

    async def open_stream(self, config: StreamConfig, timeout_s: float | None) -> RealtimeTranscriptionStream:
        """A Realtime transcription session; one per stream attempt."""
        self._require(Operation.TRANSCRIBE)
        if self._realtime is None:
            raise ProviderRejected(self.name, "streaming is off for this entry (options.realtime)")
        return await open_realtime_stream(
            self._client, self.name, self.model, config, self._realtime, self._limit(timeout_s)
        )

    # -- synthesize ----------------------------------------------------------------

    def voices(self) -> frozenset[str]:
        if self._config.voices is not None:
            return self._config.voices
        return self.known_voices if self.known_voices is not None else frozenset({self._default_voice})

    def _voice(self, options: SynthesizeOptions) -> str:
        voice = options.voice or self._default_voice
        checked = self._config.voices if self._config.voices is not None else self.known_voices
        if checked is not None and voice not in checked:
            raise ProviderInputError(
                self.name, f"unknown voice {clip(voice)!r}; available voices: {', '.join(sorted(checked))}"
            )
        return voice

    def _speech_args(self, text: str, voice: str, options: SynthesizeOptions) -> dict[str, Any]:
        instructions = self._config.options.get("instructions")
        return {
            "model": self.model,
            "input": text,
            "voice": voice,
            "speed": options.speed if options.speed != 1.0 else openai.omit,
            "instructions": instructions if isinstance(instructions, str) else openai.omit,
        }

    async def synthesize(self, text: str, options: SynthesizeOptions, timeout_s: float | None) -> Speech:
        self._require(Operation.SYNTHESIZE)
        voice = self._voice(options)
        limit = self._limit(timeout_s)
        response = await self._call(
            self._client.audio.speech.create(
                **self._speech_args(text, voice, options),
                response_format="pcm" if self._pcm else "wav",
                timeout=limit,
            ),
            limit,
        )
        data = response.content
        try:
            samples, rate = self._decode_speech(data)
        except ValueError as exc:
            raise ProviderBadResponse(self.name, f"the speech audio does not decode: {exc}") from exc
        usage = Usage(characters=len(text), audio_seconds=len(samples) / rate)
        return Speech(samples=samples, sample_rate=rate, voice=voice, usage=usage)

    async def synthesize_stream(
        self, text: str, options: SynthesizeOptions, timeout_s: float | None
    ) -> AsyncIterator[Speech]:
        """The speech body read as it arrives, as PCM pieces; the last carries the characters.

        Only the awaits on the network are bounded here (a timeout must not span a ``yield``, where the
        caller's own work runs); a body that breaks off part-way raises ProviderUnavailable.
        """
        self._require(Operation.SYNTHESIZE)
        voice = self._voice(options)
        limit = self._limit(timeout_s)
        deadline = asyncio.get_running_loop().time() + limit
        pieces = PcmPieces(self._pcm_rate, voice)
        request = self._client.audio.speech.with_streaming_response.create(
            **self._speech_args(text, voice, options), response_format="pcm", timeout=limit
        )
        try:
            async with contextlib.AsyncExitStack() as stack:
                async with asyncio.timeout_at(deadline):
                    response = await stack.enter_async_context(request)
                body = response.iter_bytes()
                while True:
                    try:
                        async with asyncio.timeout_at(deadline):
                            data = await anext(body)
                    except StopAsyncIteration:
                        break
                    if (piece := pieces.push(data)) is not None:
                        yield piece
        except TimeoutError as exc:
            raise ProviderTimeout(self.name, f"the speech did not finish within {limit:.1f} s") from exc
        except openai.OpenAIError as exc:
            raise map_error(self.name, exc) from exc
        # A streamed body is read straight from the SDK's transport (httpx2), whose errors it does not wrap.
        except httpx2.TimeoutException as exc:
            raise ProviderTimeout(self.name, "the speech stream stalled") from exc
        except httpx2.TransportError as exc:
            raise ProviderUnavailable(self.name, "the speech stream broke off") from exc
        try:
            last = pieces.finish(len(text))
        except ValueError as exc:
            raise ProviderBadResponse(self.name, f"the speech stream is malformed: {exc}") from exc
        yield last

    def _decode_speech(self, data: bytes) -> tuple[np.ndarray, int]:
        if not self._pcm:
            return decode_pcm16(data, "audio/wav")
        if not data or len(data) % 2:
            raise ValueError(f"{len(data)} bytes is not whole 16-bit samples")
        return np.frombuffer(data, dtype="<i2").astype(np.int16), self._pcm_rate

    # -- understand ----------------------------------------------------------------

    async def answer(
        self,
        question: str,
        transcript: str | None,
        audio: Recording | None,
        options: AnswerOptions,
        timeout_s: float | None,
    ) -> Answer:
        self._require(Operation.UNDERSTAND)
        if audio is None:
            raise ProviderUnavailable(self.name, "listens to the audio; the router must pass it")
        container, data = await _upload(audio, _INPUT_AUDIO_CONTAINERS)
        messages: Any = [
            {"role": "system", "content": AUDIO_SYSTEM_PROMPT},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": question},
                    {
                        "type": "input_audio",
                        "input_audio": {"data": base64.b64encode(data).decode("ascii"), "format": container},
                    },
                ],
            },
        ]
        limit = self._limit(timeout_s)
        completion: Any = await self._call(
            self._client.chat.completions.create(
                model=self.model, messages=messages, max_completion_tokens=options.max_tokens, timeout=limit
            ),
            limit,
        )
        try:
            text = _text(completion.choices[0].message.content).strip()
            usage = completion.usage
            prompt_tokens = int(usage.prompt_tokens)
            details = usage.prompt_tokens_details
            audio_tokens = int(details.audio_tokens or 0) if details is not None else 0
            output_tokens = int(usage.completion_tokens)
        except (AttributeError, IndexError, TypeError, ValueError) as exc:
            raise ProviderBadResponse(self.name, "the chat completion is malformed") from exc
        if not text:
            raise ProviderBadResponse(self.name, "the model produced an empty answer")
        return Answer(
            text=text,
            usage=Usage(
                input_tokens=prompt_tokens - audio_tokens,
                audio_input_tokens=audio_tokens,
                output_tokens=output_tokens,
            ),
        )

    # -- shared --------------------------------------------------------------------

    def _require(self, operation: Operation) -> None:
        if operation is not self._operation:
            raise ProviderRejected(
                self.name, f"configured for {self._operation.value}, asked to {operation.value}"
            )

    def _limit(self, timeout_s: float | None) -> float:
        """The request's remaining deadline, capped by the entry's own timeout."""
        limit = self._config.timeout_s if timeout_s is None else min(timeout_s, self._config.timeout_s)
        return max(limit, 0.001)

    async def _call(self, request: Awaitable[T], limit: float) -> T:
        """Await one SDK call and translate its failures; the SDK's timeout is per read, this one total."""
        try:
            async with asyncio.timeout(limit):
                return await request
        except TimeoutError as exc:
            raise ProviderTimeout(self.name, f"no answer within {limit:.1f} s") from exc
        except openai.OpenAIError as exc:
            raise map_error(self.name, exc) from exc
        except json.JSONDecodeError as exc:
            raise ProviderBadResponse(self.name, "the response is not valid JSON") from exc


def map_error(provider: str, exc: openai.OpenAIError) -> ProviderError:
    """The SDK's exception tree, by type and HTTP status, to ours."""
    if isinstance(exc, openai.APITimeoutError) and not _dropped(exc):
        return ProviderTimeout(provider, "the request timed out")
    if isinstance(exc, openai.APIConnectionError):
        return ProviderUnavailable(provider, "connection failed")
    if isinstance(exc, openai.APIResponseValidationError):
        return ProviderBadResponse(provider, "the response does not match the API's schema")
    if isinstance(exc, openai.APIStatusError):
        # Authentication messages can echo part of the key: keep only the status for those.
        detail = "" if exc.status_code in (401, 403) else _error_detail(exc.body)
        return error_for_status(provider, exc.status_code, detail)
    return ProviderUnavailable(provider, f"the SDK failed: {type(exc).__name__}")


def _dropped(exc: BaseException) -> bool:
    """Whether a "timeout" was a connection the server dropped or refused.

    The SDK's aiohttp transport reports every aiohttp connection error as a connect timeout; the error it
    chains from still says which it was.
    """
    cause = exc.__cause__
    while cause is not None:
        if isinstance(cause, aiohttp.ClientConnectionError):
            return not isinstance(cause, asyncio.TimeoutError)
        cause = cause.__cause__
    return False


def _http_client() -> httpx2.AsyncClient:
    """The SDK's HTTP client on its aiohttp transport, with the SDK's own connection limits.

    The default transport parses HTTP in pure Python: measured side by side (bench/cloud_overhead.py),
    it cost about 13 ms of CPU per transcription against 3.5 ms on aiohttp, and at 64 concurrent calls
    that CPU, not the vendor, bounded the gateway's throughput.
    """
    return openai.DefaultAioHttpClient(
        limits=openai.DEFAULT_CONNECTION_LIMITS, event_hooks={"request": [_body_in_one_piece]}
    )


def _error_detail(body: object) -> str:
    if isinstance(body, dict):
        message = body.get("message")
        return message if isinstance(message, str) else ""
    return body if isinstance(body, str) else ""


def _speech_format(config: ProviderConfig) -> str:
    fmt = config.options.get("response_format", "wav")
    if fmt not in ("wav", "pcm"):
        raise ValueError(
            f"provider {config.name!r}: options.response_format must be 'wav' or 'pcm', not {fmt!r}"
        )
    return str(fmt)


async def _upload(audio: Recording, accepted: tuple[str, ...]) -> tuple[str, bytes]:
    """The original file when the endpoint accepts its container; only otherwise a decode, sent as WAV."""
    for name in audio.container.split(","):
        if name in accepted:
            return name, audio.original
    return "wav", encode_wav(await audio.samples(), ASR_SAMPLE_RATE)


async def _body_in_one_piece(request: httpx2.Request) -> None:
    """Join the request body before it is sent, so it leaves in one write after the headers.

    The SDK sends an upload as a multipart stream, one socket write per piece of framing and per field
    (about twenty for a transcription). Each write wakes the server to read a few bytes; on a busy host
    that ping-pong, not the transfer, was most of the time the gateway added to a vendor call. The body
    is in memory already (the audio is bytes), so joining it costs one copy.
    """
    await request.aread()


def _json_object(provider: str, content: bytes) -> dict[str, Any]:
    """A reply body that must be one JSON object."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise ProviderBadResponse(provider, "the response is not valid JSON") from exc
    if not isinstance(body, dict):
        raise ProviderBadResponse(provider, "the response is not a JSON object")
    return body


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {type(value).__name__}")
    return value


def _language_code(name: object) -> str:
    if not isinstance(name, str):
        return ""
    name = name.strip().lower()
    return WHISPER_LANGUAGE_CODES.get(name, name)


def _verbose_segments(result: dict[str, Any], duration_s: float, text: str) -> tuple[SegmentTiming, ...]:
    """Whisper's segments with its top-level words placed in the segment they start in."""
    raw_segments = sorted(result.get("segments") or (), key=lambda s: float(s["start"]))
    words = [
        WordTiming(text=_text(w["word"]), start_s=float(w["start"]), end_s=float(w["end"]))
        # Translations have no words at all.
        for w in (result.get("words") or ())
    ]
    if not raw_segments:
        return (SegmentTiming(text=text.strip(), start_s=0.0, end_s=duration_s, words=tuple(words)),)
    starts = [float(s["start"]) for s in raw_segments]
    grouped: list[list[WordTiming]] = [[] for _ in raw_segments]
    for word in words:
        grouped[max(bisect.bisect_right(starts, word.start_s) - 1, 0)].append(word)
    return tuple(
        SegmentTiming(
            text=_text(segment["text"]).strip(),
            start_s=float(segment["start"]),
            end_s=float(segment["end"]),
            words=tuple(group),
        )
        for segment, group in zip(raw_segments, grouped, strict=True)
    )
