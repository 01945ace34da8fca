"""``POST /v1/audio/speech``: OpenAI's text-to-speech API over StreamSynthesize.

The body goes out with chunked transfer as the engine speaks, through the same streamed pipeline as gRPC
StreamSynthesize (``Router.stream_synthesize``: policy, cache, budget reservation, ledger), so the first
sentence plays while the rest is being spoken. ``stream_format=sse`` sends the same audio as server-sent
events, ``speech.audio.delta`` with base64 audio and a closing ``speech.audio.done``, as OpenAI does.

Refusals before any audio (a bad field, no route, a budget) are OpenAI errors with their HTTP status. A
failure after audio has gone out can no longer change the status. With ``stream_format=audio`` the
connection is then dropped without the closing chunk, so a client sees a broken body, never a short file
that looks whole; with ``sse`` the stream ends with an ``error`` event in OpenAI's error shape instead of
``speech.audio.done``.

Voices: OpenAI's own voice names (``alloy``, ``nova``…) mean "the provider's default voice", so a program
written for OpenAI works whichever engine the policy picks; any other name is passed to the provider,
which refuses one it does not have (400). With ``model=provider:<name>`` every voice name is passed on.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any, Literal

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from gateway.core.domain import OutputFormat, SpeechChunk, SynthesizeRequest
from gateway.core.errors import GatewayError, classify
from gateway.http import json_bodies
from gateway.http.callers import StreamingCaller, gateway_of
from gateway.http.errors import ERROR_RESPONSES
from gateway.http.models import PROVIDER_PREFIX, model_routing
from gateway.http.transcriptions import MODEL_DOC

log = structlog.get_logger(__name__)
router = APIRouter(tags=["audio"])

# OpenAI's built-in voices: portable wishes, not names an arbitrary engine knows.
OPENAI_VOICES = frozenset(
    {"alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse"}
    | {"marin", "cedar"}
)
# OpenAI's pcm is 24 kHz 16-bit little-endian mono; the other formats keep the voice's own rate.
PCM_RATE = 24_000

SpeechFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]
_FORMATS: dict[str, OutputFormat] = {
    "mp3": OutputFormat.MP3,
    "opus": OutputFormat.OGG_OPUS,
    "aac": OutputFormat.AAC,
    "flac": OutputFormat.FLAC,
    "wav": OutputFormat.WAV,
    "pcm": OutputFormat.PCM16,
}


class SpeechRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=256, description=MODEL_DOC)
    input: str = Field(description="the text to speak")
    voice: str = Field(min_length=1, max_length=256, description="an OpenAI voice name, or a provider's")
    response_format: SpeechFormat = "mp3"
    speed: float = Field(1.0, ge=0.25, le=4.0)
    stream_format: Literal["audio", "sse"] = Field("audio", description="raw audio, or server-sent events")
    instructions: str | None = Field(None, description="accepted and ignored: the engines take no style")


def _voice(body: SpeechRequest) -> str | None:
    voice = body.voice.strip()
    if voice in OPENAI_VOICES and not body.model.startswith(PROVIDER_PREFIX):
        return None
    return voice or None


def _sse(payload: dict[str, Any]) -> bytes:
    return f"event: {payload['type']}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


async def _audio(first: SpeechChunk, rest: AsyncIterator[SpeechChunk]) -> AsyncIterator[bytes]:
    try:
        if first.audio:
            yield first.audio
        async for chunk in rest:
            if chunk.audio:
                yield chunk.audio
    finally:
        await rest.aclose()  # type: ignore[attr-defined]


async def _raw_audio(first: SpeechChunk, rest: AsyncIterator[SpeechChunk]) -> AsyncIterator[bytes]:
    try:
        async for audio in _audio(first, rest):
            yield audio
    except GatewayError as exc:
        # Raising out of the response is how ASGI drops a connection mid-body; the log says why.
        log.warning("speech.stream_failed", kind=exc.kind, stream_format="audio")
        raise


async def _events(first: SpeechChunk, rest: AsyncIterator[SpeechChunk]) -> AsyncIterator[bytes]:
    try:
        async for audio in _audio(first, rest):
            yield _sse({"type": "speech.audio.delta", "audio": base64.b64encode(audio).decode("ascii")})
    except GatewayError as exc:
        log.warning("speech.stream_failed", kind=exc.kind, stream_format="sse")
        classification = classify(exc)
        error = {"message": str(exc), "type": classification.openai_type, "code": classification.openai_code}
        yield _sse({"type": "error", "error": error})
        return
    yield _sse({"type": "speech.audio.done"})


@router.post(
    "/v1/audio/speech",
    responses={
        200: {
            "description": "the audio, chunked as it is spoken; or server-sent events with stream_format=sse",
            "content": {
                "audio/mpeg": {"schema": {"type": "string", "format": "binary"}},
                "text/event-stream": {"schema": {"type": "string"}},
            },
        },
        **ERROR_RESPONSES,
    },
    openapi_extra=json_bodies.request_body(SpeechRequest),
    response_class=StreamingResponse,
)
async def create_speech(request: Request, ctx: StreamingCaller) -> StreamingResponse:
    """Text to speech, routed by policy (OpenAI's speech API), streamed as it is spoken."""
    gateway = gateway_of(request)
    chars = gateway.settings.limits.max_text_chars
    # Four UTF-8 bytes at most a character, six as a JSON escape pair; the text limit itself is checked
    # in characters by the pipeline.
    what = f"the input may be up to {chars} characters (GATEWAY_LIMITS__MAX_TEXT_CHARS)"
    body = await json_bodies.parse(request, SpeechRequest, chars * 6, what)
    fmt = _FORMATS[body.response_format]
    synthesize = SynthesizeRequest(
        text=body.input,
        voice=_voice(body),
        format=fmt,
        sample_rate=PCM_RATE if fmt is OutputFormat.PCM16 else None,
        speed=body.speed,
        routing=model_routing(body.model, gateway),
    )
    chunks = gateway.router.stream_synthesize(synthesize, ctx)
    # The first chunk is awaited here, so a refusal is still an error response with its status.
    try:
        first = await anext(chunks)
    except BaseException:
        await chunks.aclose()  # type: ignore[attr-defined]
        raise
    headers = {"cache-control": "no-cache"}
    if body.stream_format == "sse":
        return StreamingResponse(_events(first, chunks), media_type="text/event-stream", headers=headers)
    return StreamingResponse(_raw_audio(first, chunks), media_type=first.mime_type, headers=headers)
