"""The values a live transcription stream exchanges between the gateway and a streaming provider.

The gateway hands every streaming provider the same audio: 16-bit little-endian PCM, mono, at the
stream's ``sample_rate`` (the gateway decodes the caller's encoding, mu-law or Ogg/Opus, before it reaches
a provider, and a provider resamples if its engine or vendor wants another rate). Each provider stream
reports times on its own timeline, in seconds of the audio it was sent; the gateway shifts them onto the
caller's timeline, which is what lets it replay audio into a fallback after a failure mid-stream.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from gateway.core.provider_types import WordTiming

# What every provider stream receives: the gateway's one internal format.
PCM_SAMPLE_WIDTH = 2  # bytes per sample, s16le, mono


class AudioEncoding(enum.StrEnum):
    """How the caller's audio bytes are encoded (what it declares in its first message)."""

    LINEAR16 = "linear16"  # s16le PCM, mono, at sample_rate_hertz
    MULAW = "mulaw"  # G.711 mu-law, mono, usually at 8 kHz (telephony)
    OGG_OPUS = "ogg_opus"  # an Ogg stream of Opus packets, as browsers' MediaRecorder writes it


@dataclass(frozen=True)
class StreamConfig:
    """What a provider stream is opened with (checked by the gateway before any provider sees it)."""

    sample_rate: int  # of the PCM the provider receives
    language: str | None = None
    interim_results: bool = True
    word_timestamps: bool = False
    # The silence that ends an utterance (a final result and END_OF_UTTERANCE follow it).
    endpointing_ms: int = 500
    # The longest silence within one turn: past it, the turn ends (Deepgram's utterance_end_ms).
    utterance_end_ms: int = 1000
    # End the stream after the first utterance (a voice command), like StreamingRecognize's flag.
    single_utterance: bool = False


@dataclass(frozen=True)
class StreamResult:
    """A hypothesis about a span of the audio: interim (may change) or final (never changes again)."""

    text: str
    is_final: bool
    start_s: float  # where the span starts, on the provider stream's timeline
    end_s: float  # where it ends: Google's result_end_time
    # How likely an interim result is to stay as it is (0..1); 1.0 for finals.
    stability: float = 0.0
    confidence: float = 0.0
    words: tuple[WordTiming, ...] = ()


class SpeechEventKind(enum.StrEnum):
    SPEECH_BEGIN = "speech_begin"  # speech started after silence
    END_OF_UTTERANCE = "end_of_utterance"  # the utterance ended (endpointing silence heard)


@dataclass(frozen=True)
class SpeechEvent:
    kind: SpeechEventKind
    at_s: float  # on the provider stream's timeline


StreamEvent = StreamResult | SpeechEvent
