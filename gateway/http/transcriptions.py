"""``POST /v1/audio/transcriptions`` and ``POST /v1/audio/translations``.

Each is a converter: the multipart form (read within the size limit) becomes a domain
:class:`~gateway.core.domain.TranscribeRequest`, the Router runs it through the one pipeline (the same
cache, budget, ledger and metrics as gRPC Transcribe), and the result is rendered in the response format
asked for. A translation is a transcription with ``translate`` set: only providers with the ``translate``
feature are ranked for it, and its results are cached apart.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.core.domain import AudioInput, TranscribeRequest, language_code
from gateway.core.errors import NoRoute
from gateway.core.provider_types import TranscribeOptions
from gateway.http import transcripts
from gateway.http.callers import Caller, gateway_of
from gateway.http.errors import ERROR_RESPONSES, FieldErrors
from gateway.http.models import model_routing
from gateway.http.transcripts import TIMED_FORMATS, Task, TranscriptFormat
from gateway.http.uploads import read_form, read_upload, text_fields

router = APIRouter(tags=["audio"])

MODEL_DOC = (
    "whisper-1 (or any OpenAI model name): the key's default policy; policy:<name>: that policy; "
    "provider:<name>: pin that provider. GET /v1/models lists them."
)


class _Form(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    model: str = Field(min_length=1, max_length=256, description=MODEL_DOC)
    prompt: str | None = Field(None, description="text that biases recognition (names, jargon)")
    response_format: TranscriptFormat = TranscriptFormat.JSON
    # Accepted for compatibility; the gateway's engines decode at their own settings.
    temperature: float = Field(0.0, ge=0.0, le=1.0)


class TranscriptionForm(_Form):
    language: str | None = Field(None, description="ISO 639 code of the speech, e.g. en (default: detect)")
    timestamp_granularities: list[Literal["word", "segment"]] = Field(
        default_factory=list,
        alias="timestamp_granularities[]",
        description="verbose_json only: word adds word timings",
    )
    stream: bool = Field(False, description="server-sent events transcript.text.delta / transcript.text.done")
    # Sent by some OpenAI clients; the gateway has no use for them.
    chunking_strategy: str | None = Field(None, description="accepted and ignored")
    include: list[str] = Field(default_factory=list, alias="include[]", description="accepted and ignored")


class TranslationForm(_Form):
    pass


def _multipart_body(form: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI requestBody of a form endpoint (its body is read by hand, within the size limit)."""
    schema = form.model_json_schema(by_alias=True)
    schema["properties"] = {
        "file": {"type": "string", "format": "binary", "description": "the audio file"},
        **schema["properties"],
    }
    schema["required"] = ["file", *schema.get("required", [])]
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the transcript in the response_format asked for",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "text/plain": {"schema": {"type": "string"}},
            "text/event-stream": {"schema": {"type": "string"}},
        },
    },
    **ERROR_RESPONSES,
}


async def _read(request: Request, form_type: type[_Form]) -> tuple[AudioInput, Any]:
    limit = gateway_of(request).settings.limits.max_audio_bytes
    form = await read_form(request, limit)
    upload = read_upload(form, limit)
    try:
        fields = form_type.model_validate(text_fields(form, frozenset({"file"})))
    except ValidationError as exc:
        raise FieldErrors(list(exc.errors())) from None
    content_type = upload.content_type if upload.content_type != "application/octet-stream" else ""
    return AudioInput(content=upload.data, uri=None, mime_type=content_type), fields


@router.post(
    "/v1/audio/transcriptions",
    openapi_extra=_multipart_body(TranscriptionForm),
    responses=_RESPONSES,
    response_class=Response,
)
async def create_transcription(request: Request, ctx: Caller) -> Response:
    """Speech to text, routed by policy (OpenAI's transcription API)."""
    audio, form = await _read(request, TranscriptionForm)
    assert isinstance(form, TranscriptionForm)
    granularities = set(form.timestamp_granularities)
    if granularities and form.response_format is not TranscriptFormat.VERBOSE_JSON:
        raise FieldErrors(
            [{"loc": ("timestamp_granularities[]",), "msg": "needs response_format=verbose_json"}]
        )
    if form.stream and form.response_format not in (TranscriptFormat.JSON, TranscriptFormat.TEXT):
        raise FieldErrors([{"loc": ("stream",), "msg": "streams text: use response_format json or text"}])
    words = "word" in granularities
    request_ = TranscribeRequest(
        audio=audio,
        options=TranscribeOptions(
            language=language_code(form.language),
            word_timestamps=words,
            prompt=form.prompt or None,
            segments=form.response_format in TIMED_FORMATS,
            diarize=form.response_format is TranscriptFormat.DIARIZED_JSON,
        ),
        routing=model_routing(form.model, gateway_of(request)),
    )
    result = await gateway_of(request).router.transcribe(request_, ctx)
    if form.stream:
        return transcripts.stream(result)
    # OpenAI leaves segments out when only word timings were asked for.
    segments = not granularities or "segment" in granularities
    return transcripts.render(
        result, form.response_format, Task.TRANSCRIBE, form.temperature, segments, words
    )


@router.post(
    "/v1/audio/translations",
    openapi_extra=_multipart_body(TranslationForm),
    responses=_RESPONSES,
    response_class=Response,
)
async def create_translation(request: Request, ctx: Caller) -> Response:
    """Speech in any language to English text, by a provider with the ``translate`` feature."""
    audio, form = await _read(request, TranslationForm)
    assert isinstance(form, TranslationForm)
    if form.response_format is TranscriptFormat.DIARIZED_JSON:
        raise FieldErrors([{"loc": ("response_format",), "msg": "diarized_json is for transcriptions"}])
    request_ = TranscribeRequest(
        audio=audio,
        options=TranscribeOptions(
            prompt=form.prompt or None, translate=True, segments=form.response_format in TIMED_FORMATS
        ),
        routing=model_routing(form.model, gateway_of(request)),
    )
    try:
        result = await gateway_of(request).router.transcribe(request_, ctx)
    except NoRoute as exc:
        raise NoRoute(
            "no provider can translate this recording into English under this policy: translations need a "
            "provider with the 'translate' feature (OpenAI whisper-1, or a multilingual local Whisper model)",
            exc.rejections,
        ) from None
    return transcripts.render(result, form.response_format, Task.TRANSLATE, form.temperature)
