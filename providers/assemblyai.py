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
from providers.remote import capabilities_from, error_for_status

if TYPE_CHECKING:
    from collections.abc import Sequence

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
        features = {"word_timestamps", "segments", "language_detection"}
        if self._options.get("speaker_labels") is True:
            features.add("diarization")
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

    # -- helpers ------------------------------------------------------------------

    def _http(self) -> aai.AsyncClient:
        if self._client is None:
            self._client = _client(self._config)
        return self._client

    def _request_config(self, options: TranscribeOptions) -> aai.TranscriptionConfig:
        return aai.TranscriptionConfig(**_request_fields(self._config.model, self._options, options.language))

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
    unknown = sorted(set(config.options) - (_KNOWN_OPTIONS - _RESERVED_OPTIONS))
    if unknown:
        raise ValueError(
            f"provider {config.name!r}: unknown AssemblyAI options {unknown}; the model comes from "
            "'model:' and the language from each request"
        )
    merged = {**_DEFAULT_OPTIONS, **config.options}
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
                speaker=f"speaker_{u.speaker}" if u.speaker else "",
            )
            for u in utterances
        )
    if not text:
        return ()
    # Without speaker turns the vendor returns no segmentation: one segment spans the audio.
    return (SegmentTiming(text=text, start_s=0.0, end_s=audio_s, words=_words(words) if with_words else ()),)


def _words(words: Sequence[aai.Word] | None) -> tuple[WordTiming, ...]:
    return tuple(
        WordTiming(w.text, _seconds(w.start), _seconds(w.end), float(w.confidence)) for w in words or ()
    )


def _seconds(milliseconds: int) -> float:
    return milliseconds / 1000.0


def _language(code: object, requested: str | None) -> str:
    # The vendor answers with its own codes ("en_us"); the gateway speaks ISO 639-1 ("en").
    value = getattr(code, "value", code) or requested or ""
    return str(value).split("_")[0].lower()


def _clip(detail: str) -> str:
    return " ".join(detail.split())[:_MAX_DETAIL]
