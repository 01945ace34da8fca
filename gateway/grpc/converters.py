"""Protobuf messages ↔ domain objects. Shape checks that need no configuration live here."""

from __future__ import annotations

import math
from collections import OrderedDict
from decimal import Decimal

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import common_pb2 as common
from gateway.core import domain
from gateway.core.domain import language_code
from gateway.core.errors import InvalidInput
from gateway.core.progress import AudioProgress
from gateway.core.provider_types import Locality, Operation, SegmentTiming, TranscribeOptions, WordTiming
from gateway.core.subtitles import TranscriptFormat, render
from gateway.money.pricing import usd_text

MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8_000, 48_000
MIN_SPEED, MAX_SPEED = 0.25, 4.0

_PRIVACY = {
    common.PRIVACY_UNSPECIFIED: None,
    common.PRIVACY_LOCAL_ONLY: domain.Privacy.LOCAL_ONLY,
    common.PRIVACY_ON_PREM: domain.Privacy.ON_PREM,
    common.PRIVACY_ANY: domain.Privacy.ANY,
}
_OBJECTIVE = {
    common.OBJECTIVE_UNSPECIFIED: None,
    common.OBJECTIVE_COST: domain.Objective.COST,
    common.OBJECTIVE_LATENCY: domain.Objective.LATENCY,
    common.OBJECTIVE_QUALITY: domain.Objective.QUALITY,
}
_CACHE = {
    common.CACHE_MODE_UNSPECIFIED: domain.CacheMode.DEFAULT,
    common.CACHE_MODE_BYPASS: domain.CacheMode.BYPASS,
    common.CACHE_MODE_REFRESH: domain.CacheMode.REFRESH,
}
_FORMAT = {
    pb.AUDIO_FORMAT_UNSPECIFIED: domain.OutputFormat.WAV,
    pb.AUDIO_FORMAT_WAV: domain.OutputFormat.WAV,
    pb.AUDIO_FORMAT_PCM16: domain.OutputFormat.PCM16,
    pb.AUDIO_FORMAT_MP3: domain.OutputFormat.MP3,
    pb.AUDIO_FORMAT_OGG_OPUS: domain.OutputFormat.OGG_OPUS,
    pb.AUDIO_FORMAT_FLAC: domain.OutputFormat.FLAC,
    pb.AUDIO_FORMAT_MULAW: domain.OutputFormat.MULAW,
    pb.AUDIO_FORMAT_AAC: domain.OutputFormat.AAC,
}
_TRANSCRIPT_FORMAT = {
    pb.TRANSCRIPT_FORMAT_UNSPECIFIED: TranscriptFormat.JSON,
    pb.TRANSCRIPT_FORMAT_JSON: TranscriptFormat.JSON,
    pb.TRANSCRIPT_FORMAT_TEXT: TranscriptFormat.TEXT,
    pb.TRANSCRIPT_FORMAT_SRT: TranscriptFormat.SRT,
    pb.TRANSCRIPT_FORMAT_VTT: TranscriptFormat.VTT,
}
_LOCALITY = {
    None: common.LOCALITY_UNSPECIFIED,
    Locality.LOCAL: common.LOCALITY_LOCAL,
    Locality.ON_PREM: common.LOCALITY_ON_PREM,
    Locality.CLOUD: common.LOCALITY_CLOUD,
}


def _enum(table: dict, value: int, field: str, enum_type: object) -> object:
    try:
        return table[value]
    except KeyError:
        names = ", ".join(enum_type.Name(v) for v in table)  # type: ignore[attr-defined]
        raise InvalidInput(f"{field} has unknown value {value}; use one of {names}") from None


def routing(msg: common.RoutingOptions) -> domain.Routing:
    max_cost = None
    if msg.HasField("max_cost_usd"):
        if not math.isfinite(msg.max_cost_usd) or msg.max_cost_usd < 0:
            raise InvalidInput("routing.max_cost_usd must be a non-negative number")
        max_cost = Decimal(repr(msg.max_cost_usd))
    return domain.Routing(
        policy=msg.policy or None,
        privacy=_enum(_PRIVACY, msg.privacy, "routing.privacy", common.Privacy),  # type: ignore[arg-type]
        objective=_enum(_OBJECTIVE, msg.objective, "routing.objective", common.Objective),  # type: ignore[arg-type]
        max_cost_usd=max_cost,
        max_latency_ms=float(msg.max_latency_ms) if msg.HasField("max_latency_ms") else None,
        provider=msg.provider or None,
        cache=_enum(_CACHE, msg.cache, "routing.cache", common.CacheMode),  # type: ignore[arg-type]
    )


def audio_input(msg: common.Audio) -> domain.AudioInput:
    source = msg.WhichOneof("source")
    if source is None:
        raise InvalidInput("audio is missing: set audio.content to the file's bytes")
    return domain.AudioInput(
        content=msg.content if source == "content" else None,
        uri=msg.uri if source == "uri" else None,
        mime_type=msg.mime_type,
    )


def transcribe_request(msg: pb.TranscribeRequest) -> domain.TranscribeRequest:
    return domain.TranscribeRequest(
        audio=audio_input(msg.audio),
        options=TranscribeOptions(
            language=language_code(msg.language),
            word_timestamps=msg.word_timestamps,
            prompt=msg.prompt or None,
            translate=msg.translate,
            # Subtitles need timed segments: never route them to a provider that returns one untimed block.
            segments=transcript_format(msg) in (TranscriptFormat.SRT, TranscriptFormat.VTT),
            diarize=msg.diarize,
        ),
        routing=routing(msg.routing),
    )


def transcript_format(msg: pb.TranscribeRequest) -> TranscriptFormat:
    return _enum(_TRANSCRIPT_FORMAT, msg.response_format, "response_format", pb.TranscriptFormat)  # type: ignore[return-value]


def synthesize_request(msg: pb.SynthesizeRequest) -> domain.SynthesizeRequest:
    fmt = _enum(_FORMAT, msg.format, "format", pb.AudioFormat)
    if msg.sample_rate and not MIN_SAMPLE_RATE <= msg.sample_rate <= MAX_SAMPLE_RATE:
        raise InvalidInput(
            f"sample_rate {msg.sample_rate} is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz"
        )
    speed = msg.speed or 1.0
    if not math.isfinite(speed) or not MIN_SPEED <= speed <= MAX_SPEED:
        raise InvalidInput(f"speed {msg.speed:g} is outside {MIN_SPEED:g}..{MAX_SPEED:g}")
    return domain.SynthesizeRequest(
        text=msg.text,
        voice=msg.voice.strip() or None,
        format=fmt,  # type: ignore[arg-type]
        sample_rate=msg.sample_rate or None,
        speed=speed,
        routing=routing(msg.routing),
    )


def understand_request(msg: pb.UnderstandRequest) -> domain.UnderstandRequest:
    return domain.UnderstandRequest(
        audio=audio_input(msg.audio),
        question=msg.question,
        language=language_code(msg.language),
        max_answer_tokens=msg.max_answer_tokens or None,
        routing=routing(msg.routing),
    )


_OPERATION = {
    pb.OPERATION_TRANSCRIBE: Operation.TRANSCRIBE,
    pb.OPERATION_SYNTHESIZE: Operation.SYNTHESIZE,
    pb.OPERATION_UNDERSTAND: Operation.UNDERSTAND,
}
_PRIVACY_OUT = {v: k for k, v in _PRIVACY.items() if v is not None}
_OBJECTIVE_OUT = {v: k for k, v in _OBJECTIVE.items() if v is not None}


def explain_request(msg: pb.ExplainRouteRequest) -> domain.ExplainRequest:
    if msg.operation not in _OPERATION:
        raise InvalidInput(
            "operation is required: OPERATION_TRANSCRIBE, OPERATION_SYNTHESIZE or OPERATION_UNDERSTAND"
        )
    which = msg.WhichOneof("input")
    duration = msg.audio_duration_s if which == "audio_duration_s" else None
    if duration is not None and (not math.isfinite(duration) or duration < 0):
        raise InvalidInput("audio_duration_s must be a non-negative number of seconds")
    return domain.ExplainRequest(
        operation=_OPERATION[msg.operation],
        audio=audio_input(msg.audio) if which == "audio" else None,
        audio_s=duration,
        text=msg.text if which == "text" else None,
        characters=msg.characters if which == "characters" else None,
        language=language_code(msg.language),
        word_timestamps=msg.word_timestamps,
        voice=msg.voice.strip() or None,
        routing=routing(msg.routing),
        diarize=msg.diarize,
        translate=msg.translate,
    )


def _candidate(c: domain.ExplainedCandidate) -> pb.RouteCandidate:
    return pb.RouteCandidate(
        provider=c.provider,
        model=c.model,
        locality=_LOCALITY[c.locality],
        eligible=c.eligible,
        rejected_reason=c.rejected_reason,
        rank=c.rank,
        estimated_cost_usd=_money(c.estimated_cost_usd),
        estimated_latency_ms=c.estimated_latency_ms,
        score=c.score,
        breaker_state=c.breaker_state,
        latency_learned=c.latency_learned,
        latency_source=c.latency_source,
        latency_observations=c.latency_observations,
        latency_fixed_ms=c.latency_fixed_ms,
        latency_per_unit=c.latency_per_unit,
    )


def explain_response(result: domain.Explanation) -> pb.ExplainRouteResponse:
    return pb.ExplainRouteResponse(
        tenant=result.tenant,
        policy=result.policy,
        privacy=_PRIVACY_OUT[result.privacy],
        objective=_OBJECTIVE_OUT[result.objective],
        max_attempts=result.max_attempts,
        audio_duration_s=result.audio_s,
        characters=result.characters,
        candidates=[_candidate(c) for c in result.candidates],
        transcription_candidates=[_candidate(c) for c in result.transcription_candidates],
        remaining_budget_usd=""
        if result.remaining_budget_usd is None
        else _money(result.remaining_budget_usd),
    )


def route_info(route: domain.RouteInfo) -> common.RouteInfo:
    return common.RouteInfo(
        request_id=route.request_id,
        provider=route.provider,
        model=route.model,
        locality=_LOCALITY[route.locality],
        cache_hit=route.cache_hit,
        cost_usd=_money(route.cost_usd),
        saved_usd=_money(route.saved_usd),
        latency_ms=route.latency_ms,
        policy=route.policy,
        attempts=[
            common.Attempt(
                provider=a.provider,
                model=a.model,
                operation=a.operation.value,
                outcome=a.outcome,
                error=a.error,
                latency_ms=a.latency_ms,
                cost_usd=_money(a.cost_usd),
                billing_unknown=a.billing_unknown,
                possibly_billed_usd=_money(a.possibly_billed_usd),
            )
            for a in route.attempts
        ],
    )


def _money(value: Decimal) -> str:
    return usd_text(value)


def _word(w: WordTiming) -> pb.Word:
    return pb.Word(text=w.text, start_s=w.start_s, end_s=w.end_s, confidence=w.confidence, speaker=w.speaker)


def _segment(s: SegmentTiming) -> pb.Segment:
    return pb.Segment(
        text=s.text, start_s=s.start_s, end_s=s.end_s, words=[_word(w) for w in s.words], speaker=s.speaker
    )


def transcribe_response(
    result: domain.TranscribeResult, fmt: TranscriptFormat = TranscriptFormat.JSON
) -> pb.TranscribeResponse:
    return _completed(_transcript_body(result, fmt), result)


def _transcript_body(result: domain.TranscribeResult, fmt: TranscriptFormat) -> pb.TranscribeResponse:
    """What a reply says of the transcript itself: the same for every hit of one cache entry."""
    return pb.TranscribeResponse(
        text=result.text,
        language=result.language,
        language_probability=result.language_probability,
        segments=[_segment(s) for s in result.segments],
        words=[_word(w) for s in result.segments for w in s.words],
        formatted=render(fmt, result.text, result.segments),
    )


def _completed(reply: pb.TranscribeResponse, result: domain.TranscribeResult) -> pb.TranscribeResponse:
    reply.duration_s = result.duration_s
    reply.route.CopyFrom(route_info(result.route))
    return reply


class TranscriptBodies:
    """Transcribe replies to cache hits, copied from a body kept per transcript and format.

    A long transcript's segments and words as protobuf messages, and its subtitles, take ~10 ms to build;
    every hit of one entry carries the very same segments (the plug shares a payload's decoded
    transcript), so a hit copies the body instead. Only the duration and the route are its own.
    """

    def __init__(self, max_entries: int = 16) -> None:
        self._max_entries = max_entries
        # Keyed by the segments' identity: each entry holds its segments, so no other object takes the id.
        self._bodies: OrderedDict[
            tuple[int, TranscriptFormat], tuple[domain.TranscribeResult, pb.TranscribeResponse]
        ] = OrderedDict()

    def response(self, result: domain.TranscribeResult, fmt: TranscriptFormat) -> pb.TranscribeResponse:
        if not result.route.cache_hit:
            return transcribe_response(result, fmt)  # a fresh result is seldom answered again as it is
        key = (id(result.segments), fmt)
        kept = self._bodies.get(key)
        if kept is not None and _same_transcript(kept[0], result):
            self._bodies.move_to_end(key)
            body = kept[1]
        else:
            body = _transcript_body(result, fmt)
            self._bodies[key] = (result, body)
            if len(self._bodies) > self._max_entries:
                self._bodies.popitem(last=False)
        reply = pb.TranscribeResponse()
        reply.CopyFrom(body)
        return _completed(reply, result)


def _same_transcript(a: domain.TranscribeResult, b: domain.TranscribeResult) -> bool:
    return (
        a.segments is b.segments
        and a.text == b.text
        and a.language == b.language
        and a.language_probability == b.language_probability
    )


def transcribe_progress_event(
    event: AudioProgress | domain.TranscribeResult, fmt: TranscriptFormat
) -> pb.TranscribeProgressEvent:
    if isinstance(event, AudioProgress):
        return pb.TranscribeProgressEvent(audio_done_s=event.done_s, audio_total_s=event.total_s)
    return pb.TranscribeProgressEvent(
        audio_done_s=event.duration_s,
        audio_total_s=event.duration_s,
        response=transcribe_response(event, fmt),
    )


def synthesize_response(result: domain.SynthesizeResult) -> pb.SynthesizeResponse:
    return pb.SynthesizeResponse(
        audio=result.audio,
        mime_type=result.mime_type,
        sample_rate=result.sample_rate,
        duration_s=result.duration_s,
        voice=result.voice,
        route=route_info(result.route),
    )


def synthesize_chunk(chunk: domain.SpeechChunk) -> pb.SynthesizeChunk:
    return pb.SynthesizeChunk(
        audio=chunk.audio,
        sequence=chunk.sequence,
        start_s=chunk.start_s,
        duration_s=chunk.duration_s,
        text_start=chunk.text_start,
        text_end=chunk.text_end,
        mime_type=chunk.mime_type,
        sample_rate=chunk.sample_rate,
        voice=chunk.voice,
        voice_may_change=chunk.voice_may_change,
        characters=chunk.characters,
        route=route_info(chunk.route) if chunk.route is not None else None,
    )


def understand_response(result: domain.UnderstandResult) -> pb.UnderstandResponse:
    return pb.UnderstandResponse(
        answer=result.answer,
        transcript=result.transcript,
        duration_s=result.duration_s,
        route=route_info(result.route),
    )
