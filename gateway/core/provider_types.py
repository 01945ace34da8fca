"""The values providers exchange with the core: operations, capabilities, usage, results, options."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


class Operation(enum.StrEnum):
    TRANSCRIBE = "transcribe"
    SYNTHESIZE = "synthesize"
    UNDERSTAND = "understand"


class Locality(enum.StrEnum):
    """Where the computation happens; the privacy rules are written against this."""

    LOCAL = "local"  # in this process
    ON_PREM = "on_prem"  # a self-hosted server inside the organisation
    CLOUD = "cloud"  # a vendor's API


@dataclass(frozen=True)
class LatencyModel:
    """Expected latency: ``fixed_ms + rtf * audio_s * 1000`` (or per character for TTS)."""

    fixed_ms: float
    rtf: float = 0.0  # seconds of processing per second of audio
    ms_per_char: float = 0.0

    def estimate_ms(self, audio_s: float = 0.0, characters: int = 0) -> float:
        return self.fixed_ms + self.rtf * audio_s * 1000.0 + self.ms_per_char * characters


@dataclass(frozen=True)
class Capabilities:
    operations: frozenset[Operation]
    locality: Locality
    retains_data: bool
    latency_prior: LatencyModel
    region: str | None = None
    languages: frozenset[str] | None = None  # None: any language
    features: frozenset[str] = frozenset()  # word_timestamps, voices, diarization, listens...
    max_audio_s: float | None = None
    # Published quality figure (e.g. WER on LibriSpeech test-clean) for the
    # "quality" objective; None when unknown.
    published_wer: float | None = None
    # The longest one attempt may take, whatever the request's deadline; None: only the deadline bounds it.
    timeout_s: float | None = None
    # A local engine's compute seconds per second of live audio it streams, what ranking prices a stream
    # at (a stream re-decodes as it goes, so this is not the file rtf). 1.0, the default, is the most a
    # stream paced in real time can hold, and what its budget increments reserve.
    stream_compute_per_audio_s: float = 1.0
    # Engines whose priors are declared relative to each other (the rungs of the local Whisper ladder):
    # one that has not learned its latency yet borrows a learned kin's, scaled by their priors' ratio.
    latency_family: str = ""


@dataclass(frozen=True)
class Usage:
    """What an attempt consumed, in the units providers are billed in."""

    audio_seconds: float = 0.0
    characters: int = 0
    input_tokens: int = 0  # text (or all) prompt tokens
    audio_input_tokens: int = 0  # prompt tokens that encode audio, where the vendor prices them apart
    output_tokens: int = 0
    compute_seconds: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            audio_seconds=self.audio_seconds + other.audio_seconds,
            characters=self.characters + other.characters,
            input_tokens=self.input_tokens + other.input_tokens,
            audio_input_tokens=self.audio_input_tokens + other.audio_input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            compute_seconds=self.compute_seconds + other.compute_seconds,
        )


@dataclass(frozen=True)
class WordTiming:
    text: str
    start_s: float
    end_s: float
    confidence: float = 0.0
    speaker: str = ""


@dataclass(frozen=True)
class SegmentTiming:
    text: str
    start_s: float
    end_s: float
    words: tuple[WordTiming, ...] = ()
    speaker: str = ""


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    segments: tuple[SegmentTiming, ...]
    usage: Usage
    # How sure the engine is of ``language`` when it detected it (0-1); 0 when the engine does not say.
    language_probability: float = 0.0


@dataclass(frozen=True)
class Speech:
    """Synthesized mono PCM16 samples at the voice's native rate."""

    samples: np.ndarray  # int16, mono
    sample_rate: int
    voice: str
    usage: Usage


@dataclass(frozen=True)
class Answer:
    text: str
    usage: Usage


@dataclass(frozen=True)
class TranscribeOptions:
    language: str | None = None
    word_timestamps: bool = False
    prompt: str | None = None
    # English text from speech in any language (Whisper's "translate" task); only a provider with the
    # ``translate`` feature is routed such a request.
    translate: bool = False
    # The caller needs the text timed in segments (subtitles, verbose output): only a provider with the
    # ``segments`` feature is routed such a request, never one that returns a single untimed block.
    segments: bool = False
    # Who speaks when: only a provider with the ``diarization`` feature is routed such a request, and it
    # labels the speaker of each segment and word.
    diarize: bool = False


@dataclass(frozen=True)
class SynthesizeOptions:
    voice: str | None = None
    speed: float = 1.0


@dataclass(frozen=True)
class AnswerOptions:
    max_tokens: int = 256
    language: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
