"""A transcription result in the response format an OpenAI caller asked for.

``json`` and ``text`` carry the text; ``srt`` and ``vtt`` are subtitles, cued by
:mod:`gateway.core.subtitles` as gRPC Transcribe and the CLI cue them; ``verbose_json`` adds the language
(by Whisper's name, as OpenAI reports it), the duration, segments and, when asked, words; ``diarized_json``
has segments labelled by speaker (the request is routed only to a provider that diarizes); ``stream`` sends
the text as server-sent events, ``transcript.text.delta`` per segment and ``transcript.text.done`` with the
whole text, the events OpenAI's SDKs parse.

Segment fields OpenAI's schema requires but the gateway's providers do not all measure (``tokens``,
``avg_logprob``, ``compression_ratio``, ``no_speech_prob``, ``seek``) are present with neutral values,
so strict clients parse the reply; no decision should be made on them.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import AsyncIterator, Sequence
from typing import Any

from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from gateway.core import subtitles
from gateway.core.domain import TranscribeResult
from gateway.core.languages import language_name
from gateway.core.provider_types import SegmentTiming
from gateway.http.route_headers import route_headers


class TranscriptFormat(enum.StrEnum):
    JSON = "json"
    TEXT = "text"
    SRT = "srt"
    VTT = "vtt"
    VERBOSE_JSON = "verbose_json"
    # Segments labelled by speaker: only a provider with the ``diarization`` feature may serve it.
    DIARIZED_JSON = "diarized_json"


# Formats that show when each piece was said: only a provider that times segments may serve them.
TIMED_FORMATS = frozenset(
    {
        TranscriptFormat.VERBOSE_JSON,
        TranscriptFormat.SRT,
        TranscriptFormat.VTT,
        TranscriptFormat.DIARIZED_JSON,
    }
)


class Task(enum.StrEnum):
    TRANSCRIBE = "transcribe"
    TRANSLATE = "translate"


def _usage(result: TranscribeResult) -> dict[str, Any]:
    # Whisper bills by the second, rounded up; the gateway's own bill is in the x-gateway-cost-usd header.
    return {"type": "duration", "seconds": math.ceil(result.duration_s)}


def verbose(
    result: TranscribeResult, task: Task, temperature: float, segments: bool, words: bool
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task": task.value,
        "language": language_name(result.language),
        "duration": result.duration_s,
        "text": result.text,
    }
    if result.language_probability:
        # Not in OpenAI's schema (its SDKs keep unknown fields): how sure a local engine's detection was.
        body["language_probability"] = result.language_probability
    if segments:
        body["segments"] = [
            {
                "id": index,
                "seek": 0,
                "start": segment.start_s,
                "end": segment.end_s,
                "text": segment.text,
                "tokens": [],
                "temperature": temperature,
                "avg_logprob": 0.0,
                "compression_ratio": 0.0,
                "no_speech_prob": 0.0,
            }
            for index, segment in enumerate(result.segments)
        ]
    if words:
        body["words"] = [
            {"word": word.text.strip(), "start": word.start_s, "end": word.end_s}
            for segment in result.segments
            for word in segment.words
        ]
    body["usage"] = _usage(result)
    return body


def diarized(result: TranscribeResult) -> dict[str, Any]:
    """OpenAI's ``diarized_json``: each segment with its speaker (the gateway's label, as the provider gave
    it: ``speaker_0`` from Deepgram, ``speaker_A`` from AssemblyAI)."""
    segments = [
        {
            "type": "transcript.text.segment",
            "id": f"seg_{index}",
            "start": segment.start_s,
            "end": segment.end_s,
            "text": segment.text,
            "speaker": segment.speaker,
        }
        for index, segment in enumerate(result.segments)
    ]
    return {
        "task": Task.TRANSCRIBE.value,
        "duration": result.duration_s,
        "text": result.text,
        "segments": segments,
        "usage": _usage(result),
    }


def render(
    result: TranscribeResult,
    fmt: TranscriptFormat,
    task: Task,
    temperature: float = 0.0,
    segments: bool = True,
    words: bool = False,
) -> Response:
    headers = route_headers(result.route)
    if fmt is TranscriptFormat.TEXT:
        return PlainTextResponse(result.text + "\n", headers=headers)
    if fmt is TranscriptFormat.SRT:
        return PlainTextResponse(subtitles.to_srt(result.segments), headers=headers)
    if fmt is TranscriptFormat.VTT:
        return PlainTextResponse(subtitles.to_vtt(result.segments), headers=headers, media_type="text/vtt")
    if fmt is TranscriptFormat.VERBOSE_JSON:
        return JSONResponse(verbose(result, task, temperature, segments, words), headers=headers)
    if fmt is TranscriptFormat.DIARIZED_JSON:
        return JSONResponse(diarized(result), headers=headers)
    return JSONResponse({"text": result.text, "usage": _usage(result)}, headers=headers)


def _event(payload: dict[str, Any]) -> bytes:
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return f"event: {payload['type']}\ndata: {data}\n\n".encode()


def deltas(text: str, segments: Sequence[SegmentTiming]) -> list[str]:
    """``text`` cut at its segments' ends: the pieces join back into exactly ``text``."""
    pieces: list[str] = []
    cursor = 0
    for segment in segments:
        wanted = segment.text.strip()
        at = text.find(wanted, cursor) if wanted else -1
        if at < 0:
            continue
        end = at + len(wanted)
        pieces.append(text[cursor:end])
        cursor = end
    pieces.append(text[cursor:])
    return [piece for piece in pieces if piece]


async def _events(result: TranscribeResult) -> AsyncIterator[bytes]:
    for piece in deltas(result.text, result.segments):
        yield _event({"type": "transcript.text.delta", "delta": piece})
    yield _event({"type": "transcript.text.done", "text": result.text})


def stream(result: TranscribeResult) -> StreamingResponse:
    headers = {**route_headers(result.route), "cache-control": "no-cache"}
    return StreamingResponse(_events(result), media_type="text/event-stream", headers=headers)
