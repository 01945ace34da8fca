"""Fake providers for tests: instant, deterministic, and with knobs for failure and delay.

They implement the same Protocols as the real engines (:mod:`providers.base`)
and run in process (locality LOCAL), so a whole gateway can be started in
milliseconds::

    stt, tts, llm = FakeTranscriber(), FakeSynthesizer(), FakeAnswerer()
    server = GatewayServer(settings, providers=[stt, tts, llm])

Knobs, all plain attributes that a test may change between calls:

- ``fail_with``: an exception (usually a :class:`gateway.errors.ProviderError`)
  raised by every call, after the delay; ``None`` to succeed.
- ``delay_s``: seconds each call takes. A delay longer than the call's
  ``timeout_s`` raises :class:`~gateway.errors.ProviderTimeout`, as the real
  worker pools do.
- ``start_delay_s`` / ``start_fail_with``: the same for :meth:`start` (loading).
- ``calls``: how many calls were made (counted before any failure).
- ``reads_samples`` (transcriber): await ``audio.samples()`` first, as a local engine does, so the
  recording is decoded and its decode errors reach the router; off, the fake is a cloud route that
  never decodes.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import numpy as np

from gateway.core.errors import ProviderInputError, ProviderTimeout, clip
from gateway.core.provider_types import (
    Answer,
    AnswerOptions,
    Capabilities,
    LatencyModel,
    Locality,
    Operation,
    SegmentTiming,
    Speech,
    SynthesizeOptions,
    TranscribeOptions,
    Transcript,
    Usage,
    WordTiming,
)

if TYPE_CHECKING:
    from gateway.core.audio import Recording

__all__ = [
    "FAKE_ANSWER",
    "FAKE_TRANSCRIPT",
    "FAKE_VOICE",
    "FakeAnswerer",
    "FakeLLM",
    "FakeSTT",
    "FakeSynthesizer",
    "FakeTTS",
    "FakeTranscriber",
    "sine_pcm16",
]

FAKE_TRANSCRIPT = "the quick brown fox jumps over the lazy dog"
FAKE_ANSWER = "The speaker talks about a fox."
FAKE_VOICE = "fake-voice"


def sine_pcm16(seconds: float = 0.5, sample_rate: int = 16_000, hz: float = 440.0) -> np.ndarray:
    """A mono int16 sine tone at half scale."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    return (np.sin(2 * np.pi * hz * t) * 16_000).astype(np.int16)


class _FakeProvider:
    """What every fake shares: identity, capabilities, lifecycle and the knobs."""

    def __init__(
        self,
        name: str,
        model: str,
        operation: Operation,
        *,
        locality: Locality,
        features: frozenset[str],
        languages: frozenset[str] | None,
        latency_prior: LatencyModel,
        fail_with: Exception | None,
        delay_s: float,
    ) -> None:
        self.name = name
        self.model = model
        self.capabilities = Capabilities(
            operations=frozenset({operation}),
            locality=locality,
            retains_data=False,
            latency_prior=latency_prior,
            languages=languages,
            features=features,
        )
        self.fail_with = fail_with
        self.delay_s = delay_s
        self.start_delay_s = 0.0
        self.start_fail_with: Exception | None = None
        self.calls = 0
        self.started = False
        self.closed = False

    async def start(self) -> None:
        if self.start_delay_s:
            await asyncio.sleep(self.start_delay_s)
        if self.start_fail_with is not None:
            raise self.start_fail_with
        self.started = True

    async def close(self) -> None:
        self.closed = True

    async def _attempt(self, timeout_s: float | None) -> None:
        """Count the call, take the configured time, and fail if told to."""
        self.calls += 1
        if self.delay_s:
            if timeout_s is not None and self.delay_s > timeout_s:
                await asyncio.sleep(max(timeout_s, 0.0))
                raise ProviderTimeout(self.name, f"no result within {timeout_s:.1f} s")
            await asyncio.sleep(self.delay_s)
        if self.fail_with is not None:
            raise self.fail_with

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, calls={self.calls})"


class FakeTranscriber(_FakeProvider):
    """Returns ``text`` for any audio, as one segment spanning the decoded duration."""

    def __init__(
        self,
        *,
        name: str = "fake-stt",
        model: str = "fake-stt-1",
        text: str = FAKE_TRANSCRIPT,
        language: str = "en",
        locality: Locality = Locality.LOCAL,
        languages: frozenset[str] | None = None,
        fail_with: Exception | None = None,
        delay_s: float = 0.0,
        reads_samples: bool = False,
    ) -> None:
        super().__init__(
            name,
            model,
            Operation.TRANSCRIBE,
            locality=locality,
            features=frozenset({"word_timestamps", "segments", "prompt", "language_detection"}),
            languages=languages,
            latency_prior=LatencyModel(fixed_ms=5.0, rtf=0.01),
            fail_with=fail_with,
            delay_s=delay_s,
        )
        self.text = text
        self.language = language
        self.reads_samples = reads_samples
        self.last_options: TranscribeOptions | None = None

    async def transcribe(
        self, audio: Recording, options: TranscribeOptions, timeout_s: float | None
    ) -> Transcript:
        self.last_options = options
        await self._attempt(timeout_s)
        if self.reads_samples:
            await audio.samples()
        duration = audio.duration_s
        words: tuple[WordTiming, ...] = ()
        if options.word_timestamps:
            tokens = self.text.split()
            step = duration / max(len(tokens), 1)
            words = tuple(
                WordTiming(f" {token}", i * step, (i + 1) * step, 0.9) for i, token in enumerate(tokens)
            )
        segment = SegmentTiming(text=self.text, start_s=0.0, end_s=duration, words=words)
        return Transcript(
            text=self.text,
            language=options.language or self.language,
            segments=(segment,),
            usage=Usage(audio_seconds=duration, compute_seconds=0.001),
        )


class FakeSynthesizer(_FakeProvider):
    """Speaks any text as a 0.5 s 440 Hz tone: 16-bit mono at 16 kHz."""

    sample_rate = 16_000

    def __init__(
        self,
        *,
        name: str = "fake-tts",
        voice: str = FAKE_VOICE,
        seconds: float = 0.5,
        locality: Locality = Locality.LOCAL,
        fail_with: Exception | None = None,
        delay_s: float = 0.0,
    ) -> None:
        super().__init__(
            name,
            voice,
            Operation.SYNTHESIZE,
            locality=locality,
            features=frozenset({"voices", "speed"}),
            languages=None,
            latency_prior=LatencyModel(fixed_ms=5.0, ms_per_char=0.1),
            fail_with=fail_with,
            delay_s=delay_s,
        )
        self.voice = voice
        self.seconds = seconds
        self.last_text: str | None = None

    def voices(self) -> frozenset[str]:
        return frozenset({self.voice})

    async def synthesize(self, text: str, options: SynthesizeOptions, timeout_s: float | None) -> Speech:
        self.last_text = text
        voice = options.voice or self.voice
        if voice != self.voice:
            self.calls += 1
            raise ProviderInputError(
                self.name, f"unknown voice {clip(voice)!r}; available voices: {self.voice}"
            )
        await self._attempt(timeout_s)
        return Speech(
            samples=sine_pcm16(self.seconds, self.sample_rate),
            sample_rate=self.sample_rate,
            voice=voice,
            usage=Usage(characters=len(text), compute_seconds=0.001),
        )


class FakeAnswerer(_FakeProvider):
    """Answers every question with ``answer``. Reads transcripts (``listens=False``), like a text LLM."""

    listens = False

    def __init__(
        self,
        *,
        name: str = "fake-llm",
        model: str = "fake-llm-1",
        answer: str = FAKE_ANSWER,
        locality: Locality = Locality.LOCAL,
        fail_with: Exception | None = None,
        delay_s: float = 0.0,
    ) -> None:
        super().__init__(
            name,
            model,
            Operation.UNDERSTAND,
            locality=locality,
            features=frozenset({"transcript_input"}),
            languages=None,
            latency_prior=LatencyModel(fixed_ms=5.0, ms_per_char=0.001),
            fail_with=fail_with,
            delay_s=delay_s,
        )
        self.answer_text = answer
        self.last_question: str | None = None
        self.last_transcript: str | None = None

    async def answer(
        self,
        question: str,
        transcript: str | None,
        audio: Recording | None,
        options: AnswerOptions,
        timeout_s: float | None,
    ) -> Answer:
        self.last_question, self.last_transcript = question, transcript
        await self._attempt(timeout_s)
        input_tokens = len(question.split()) + len((transcript or "").split())
        output_tokens = min(len(self.answer_text.split()), options.max_tokens)
        usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens, compute_seconds=0.001)
        return Answer(text=self.answer_text, usage=usage)


# The short names used in the design notes.
FakeSTT = FakeTranscriber
FakeTTS = FakeSynthesizer
FakeLLM = FakeAnswerer
