"""Requests and results as the core sees them, free of protobuf types."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from decimal import Decimal

from gateway.core.errors import InvalidInput, clip
from gateway.core.provider_types import Locality, Operation, SegmentTiming, TranscribeOptions, Usage


def language_code(value: str | None) -> str | None:
    """A caller's language tag as the primary ISO 639 code ("en-US" → "en"); None when unset."""
    value = (value or "").strip().lower()
    if not value:
        return None
    primary = value.replace("_", "-").split("-")[0]
    if not primary.isalpha() or not 2 <= len(primary) <= 3:
        raise InvalidInput(f"language {clip(value)!r} is not a language code such as 'en'")
    return primary


class CallKind(enum.StrEnum):
    """The calls the gateway serves, as admission control and its metrics count them."""

    TRANSCRIBE = Operation.TRANSCRIBE.value
    SYNTHESIZE = Operation.SYNTHESIZE.value
    UNDERSTAND = Operation.UNDERSTAND.value
    EXPLAIN = "explain"


class Privacy(enum.StrEnum):
    LOCAL_ONLY = "local_only"
    ON_PREM = "on_prem"
    ANY = "any"


class Objective(enum.StrEnum):
    COST = "cost"
    LATENCY = "latency"
    QUALITY = "quality"


class CacheMode(enum.StrEnum):
    DEFAULT = "default"
    BYPASS = "bypass"
    REFRESH = "refresh"


class OutputFormat(enum.StrEnum):
    WAV = "wav"
    PCM16 = "pcm16"
    MP3 = "mp3"
    OGG_OPUS = "opus"  # Opus in Ogg
    FLAC = "flac"
    MULAW = "mulaw"  # G.711 mu-law, 8 kHz, headerless (telephony)
    AAC = "aac"  # AAC-LC in ADTS frames


@dataclass(frozen=True)
class Routing:
    """Per-request routing wishes; the policy decides how far they are honoured."""

    policy: str | None = None
    privacy: Privacy | None = None
    objective: Objective | None = None
    max_cost_usd: Decimal | None = None
    max_latency_ms: float | None = None
    provider: str | None = None
    cache: CacheMode = CacheMode.DEFAULT


@dataclass(frozen=True)
class AudioInput:
    content: bytes | None
    uri: str | None
    mime_type: str


@dataclass(frozen=True)
class TranscribeRequest:
    audio: AudioInput
    options: TranscribeOptions
    routing: Routing


@dataclass(frozen=True)
class SynthesizeRequest:
    text: str
    voice: str | None
    format: OutputFormat
    sample_rate: int | None
    speed: float
    routing: Routing


@dataclass(frozen=True)
class UnderstandRequest:
    audio: AudioInput
    question: str
    language: str | None
    max_answer_tokens: int | None
    routing: Routing


@dataclass(frozen=True)
class AttemptRecord:
    provider: str
    model: str
    operation: Operation
    outcome: str  # "ok" or an error kind
    error: str
    latency_ms: float
    cost_usd: Decimal
    locality: Locality
    usage: Usage = field(default_factory=Usage)
    # Cancelled or timed out: the vendor may bill the call, or not. cost_usd stays 0 and the estimate of
    # what it would have cost is kept apart, so no figure mixes what was billed with what may have been.
    billing_unknown: bool = False
    possibly_billed_usd: Decimal = Decimal(0)


@dataclass
class RouteInfo:
    request_id: str
    policy: str
    provider: str = ""
    model: str = ""
    locality: Locality | None = None
    cache_hit: bool = False
    cost_usd: Decimal = Decimal(0)
    saved_usd: Decimal = Decimal(0)
    latency_ms: float = 0.0
    attempts: list[AttemptRecord] = field(default_factory=list)


@dataclass(frozen=True)
class TranscribeResult:
    text: str
    language: str
    duration_s: float
    segments: tuple[SegmentTiming, ...]
    route: RouteInfo
    # The engine's confidence in a language it detected (0-1); 0 when it does not say.
    language_probability: float = 0.0


@dataclass(frozen=True)
class SynthesizeResult:
    audio: bytes
    mime_type: str
    sample_rate: int
    duration_s: float
    voice: str
    route: RouteInfo


@dataclass(frozen=True)
class SpeechChunk:
    """One piece of a streamed synthesis: encoded audio and the span of the text it speaks."""

    audio: bytes
    sequence: int
    start_s: float
    duration_s: float
    text_start: int  # code-point offsets into the request's text, [start, end)
    text_end: int
    mime_type: str
    sample_rate: int
    voice: str
    voice_may_change: bool = False
    characters: int = 0  # the last chunk only: what the providers spoke, over every attempt
    route: RouteInfo | None = None  # the last chunk only


@dataclass(frozen=True)
class UnderstandResult:
    answer: str
    transcript: str
    duration_s: float
    route: RouteInfo


@dataclass(frozen=True)
class ExplainRequest:
    operation: Operation
    audio: AudioInput | None
    audio_s: float | None
    text: str | None
    characters: int | None
    language: str | None
    word_timestamps: bool
    voice: str | None
    routing: Routing
    # Whether the real request would ask for speaker labels (transcribe).
    diarize: bool = False
    translate: bool = False


@dataclass(frozen=True)
class ExplainedCandidate:
    provider: str
    model: str
    locality: Locality
    eligible: bool
    rejected_reason: str
    rank: int
    estimated_cost_usd: Decimal
    estimated_latency_ms: float
    score: float
    breaker_state: str
    latency_learned: bool
    latency_source: str = "prior"  # "prior", "fit" or "level"; see RouteCandidate in the proto
    latency_observations: int = 0
    latency_fixed_ms: float = 0.0
    latency_per_unit: float = 0.0  # rtf for audio, ms per character for text


@dataclass(frozen=True)
class Explanation:
    tenant: str
    policy: str
    privacy: Privacy
    objective: Objective
    max_attempts: int
    audio_s: float
    characters: int
    candidates: tuple[ExplainedCandidate, ...]
    transcription_candidates: tuple[ExplainedCandidate, ...]
    remaining_budget_usd: Decimal | None
