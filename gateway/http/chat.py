"""``POST /v1/chat/completions`` with an ``input_audio`` part: OpenAI's chat API over Understand.

The gateway answers questions about a recording; it is not a general chat model. So a request must carry
exactly one recording, as an ``input_audio`` content part (base64 ``data`` and its ``format``) of a user
message, and the question is the text of the last user message. System and developer messages are put
before the question as instructions; earlier turns are not sent (Understand takes one question). A
conversation with no audio is refused with 400 saying so, rather than answered by a model that never
heard it.

Understand runs through the one pipeline (policy, cache, budget, ledger), and the reply is a
``chat.completion``; with ``stream=true`` the same answer goes out as ``chat.completion.chunk`` events
ending with ``data: [DONE]``. The answer is complete before the first event leaves (Understand does not
stream), so a refusal is still an error response with its HTTP status.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from gateway.core.domain import AudioInput, UnderstandRequest, UnderstandResult
from gateway.core.errors import InvalidInput, LimitExceeded, clip
from gateway.core.provider_types import Operation
from gateway.http import json_bodies
from gateway.http.callers import Caller, gateway_of
from gateway.http.errors import ERROR_RESPONSES, FieldErrors
from gateway.http.models import model_routing
from gateway.http.route_headers import route_headers
from gateway.http.transcriptions import MODEL_DOC

router = APIRouter(tags=["chat"])

# input_audio.format → the MIME type the gateway's probe is told (it checks the bytes either way).
AUDIO_FORMATS = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "opus": "audio/ogg",
    "webm": "audio/webm",
    "m4a": "audio/mp4",
    "aac": "audio/aac",
}
_WORD = re.compile(r"\s*\S+")


class ChatMessage(BaseModel):
    # Assistant turns may carry fields (audio ids, tool calls) that mean nothing here.
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=256, description=MODEL_DOC)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_completion_tokens: int | None = Field(None, ge=1)
    max_tokens: int | None = Field(None, ge=1, description="the older name of max_completion_tokens")
    n: int = Field(1, ge=1, le=1, description="one answer per request")
    modalities: list[Literal["text"]] | None = Field(None, description="text only: the answer is text")
    # Sampling and bookkeeping fields OpenAI programs send: accepted, and left to the engine's settings.
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    user: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None


def _parts(message: ChatMessage) -> list[dict[str, Any]]:
    if message.content is None:
        return []
    if isinstance(message.content, str):
        return [{"type": "text", "text": message.content}]
    return message.content


def _text(message: ChatMessage, index: int) -> str:
    texts = []
    for j, part in enumerate(_parts(message)):
        kind = part.get("type")
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind != "input_audio":
            raise FieldErrors(
                [
                    {
                        "loc": (f"messages[{index}].content[{j}].type",),
                        "msg": f"content parts may be text or input_audio, not {clip(str(kind))!r}",
                    }
                ]
            )
    return "\n".join(t.strip() for t in texts if t.strip())


def _audio(body: ChatRequest, audio_limit: int) -> AudioInput:
    found: list[tuple[str, dict[str, Any]]] = []
    for i, message in enumerate(body.messages):
        for j, part in enumerate(_parts(message)):
            if part.get("type") == "input_audio":
                where = f"messages[{i}].content[{j}].input_audio"
                if message.role != "user":
                    raise FieldErrors([{"loc": (where,), "msg": "audio may only come in a user message"}])
                found.append((where, part.get("input_audio") or {}))
    if not found:
        raise InvalidInput(
            "this endpoint answers questions about a recording: add the audio to a user message as an "
            "input_audio content part ({'type': 'input_audio', 'input_audio': {'data': <base64>, "
            "'format': 'wav'}}); a conversation without audio is not served here"
        )
    if len(found) > 1:
        raise FieldErrors(
            [{"loc": (found[1][0],), "msg": "one recording per request: send the others apart"}]
        )
    where, part = found[0]
    fmt, data = part.get("format"), part.get("data")
    if fmt not in AUDIO_FORMATS:
        names = ", ".join(AUDIO_FORMATS)
        raise FieldErrors([{"loc": (f"{where}.format",), "msg": f"must be one of {names}"}])
    if not isinstance(data, str) or not data:
        raise FieldErrors([{"loc": (f"{where}.data",), "type": "missing", "msg": "the base64 audio"}])
    if len(data) * 3 // 4 > audio_limit + 2:
        raise LimitExceeded(f"the audio is over {audio_limit} bytes (GATEWAY_LIMITS__MAX_AUDIO_BYTES)")
    try:
        content = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise FieldErrors([{"loc": (f"{where}.data",), "msg": "is not valid base64"}]) from None
    return AudioInput(content=content, uri=None, mime_type=AUDIO_FORMATS[fmt])


def _question(body: ChatRequest) -> str:
    users = [(i, m) for i, m in enumerate(body.messages) if m.role == "user"]
    if not users:
        raise InvalidInput("the conversation has no user message: ask the question in one")
    index, last = users[-1]
    question = _text(last, index)
    if not question:
        raise FieldErrors(
            [{"loc": (f"messages[{index}].content",), "msg": "add a text part with the question to ask"}]
        )
    instructions = [_text(m, i) for i, m in enumerate(body.messages) if m.role in ("system", "developer")]
    return "\n\n".join([*filter(None, instructions), question])


def _usage(result: UnderstandResult) -> dict[str, int]:
    prompt = completion = 0
    for attempt in result.route.attempts:
        if attempt.operation is Operation.UNDERSTAND and attempt.outcome == "ok":
            prompt += attempt.usage.input_tokens + attempt.usage.audio_input_tokens
            completion += attempt.usage.output_tokens
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _envelope(result: UnderstandResult, body: ChatRequest, kind: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{result.route.request_id}",
        "object": kind,
        "created": int(time.time()),
        "model": result.route.model or body.model,
        "system_fingerprint": None,
    }


def _completion(result: UnderstandResult, body: ChatRequest) -> dict[str, Any]:
    message = {"role": "assistant", "content": result.answer, "refusal": None, "annotations": []}
    choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
    return {**_envelope(result, body, "chat.completion"), "choices": [choice], "usage": _usage(result)}


def _chunk_event(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()


async def _chunks(result: UnderstandResult, body: ChatRequest) -> AsyncIterator[bytes]:
    envelope = _envelope(result, body, "chat.completion.chunk")

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return _chunk_event({**envelope, "choices": [choice]})

    yield chunk({"role": "assistant", "content": ""})
    for word in _WORD.findall(result.answer):
        yield chunk({"content": word})
    yield chunk({}, "stop")
    if body.stream_options is not None and body.stream_options.include_usage:
        yield _chunk_event({**envelope, "choices": [], "usage": _usage(result)})
    yield b"data: [DONE]\n\n"


@router.post(
    "/v1/chat/completions",
    openapi_extra=json_bodies.request_body(ChatRequest),
    responses={
        200: {
            "description": "a chat.completion; with stream=true, chat.completion.chunk events",
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "text/event-stream": {"schema": {"type": "string"}},
            },
        },
        **ERROR_RESPONSES,
    },
    response_class=Response,
)
async def create_chat_completion(request: Request, ctx: Caller) -> Response:
    """Answer a question about a recording sent as an input_audio part (Understand)."""
    gateway = gateway_of(request)
    limit = gateway.settings.limits.max_audio_bytes
    # The audio travels as base64: four bytes of body for every three of audio.
    what = f"the audio may be up to {limit} bytes (GATEWAY_LIMITS__MAX_AUDIO_BYTES) before base64"
    body = await json_bodies.parse(request, ChatRequest, limit * 4 // 3 + 4, what)
    understand = UnderstandRequest(
        audio=_audio(body, limit),
        question=_question(body),
        language=None,
        max_answer_tokens=body.max_completion_tokens or body.max_tokens,
        routing=model_routing(body.model, gateway),
    )
    result = await gateway.router.understand(understand, ctx)
    headers = route_headers(result.route)
    if body.stream:
        headers["cache-control"] = "no-cache"
        return StreamingResponse(_chunks(result, body), media_type="text/event-stream", headers=headers)
    return JSONResponse(_completion(result, body), headers=headers)
