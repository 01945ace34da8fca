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

:class:`FakeStreamingTranscriber` hears "tone words": :func:`tone_words_pcm` writes each word of
:data:`TONE_VOCABULARY` as a tone of its own pitch, and the fake recognises the pitch of every voiced span
of the audio it is sent, so what it transcribes depends on the audio and nothing else (a replay after a
failover transcribes the same words again). Its knobs: ``fail_after_s`` (raise ProviderUnavailable once
a stream has received that much audio), ``stall_after_s`` (go silent from then on), ``open_fail_with``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import numpy as np

from gateway.core.errors import ProviderInputError, ProviderTimeout, ProviderUnavailable, clip
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
from gateway.core.streaming import SpeechEvent, SpeechEventKind, StreamConfig, StreamEvent, StreamResult

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from gateway.core.audio import Recording

__all__ = [
    "FAKE_ANSWER",
    "FAKE_TRANSCRIPT",
    "FAKE_VOICE",
    "TONE_VOCABULARY",
    "FakeAnswerer",
    "FakeLLM",
    "FakeSTT",
    "FakeStreamingTranscriber",
    "FakeSynthesizer",
    "FakeTTS",
    "FakeTranscriber",
    "hear_tone_words",
    "sine_pcm16",
    "tone_words_pcm",
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


# -- live transcription -------------------------------------------------------------------------------------

TONE_VOCABULARY = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
]
_TONE_BASE_HZ = 200.0
_TONE_STEP_HZ = 100.0
_VOICED_RMS = 500.0
_FRAME_S = 0.01
_WORD_GAP_S = 0.05  # silence that ends a word (a pause between words is longer than this)
_INTERIM_EVERY_S = 0.1


def tone_words_pcm(
    words: Sequence[str],
    sample_rate: int = 16_000,
    *,
    word_s: float = 0.3,
    gap_s: float = 0.15,
    pause_after: Sequence[int] = (),
    pause_s: float = 1.0,
) -> bytes:
    """s16le mono "speech" the streaming fake understands: each word a tone, ``gap_s`` of silence after
    it, and ``pause_s`` of silence after the words whose indexes are in ``pause_after`` (utterance ends)."""
    parts: list[np.ndarray] = []
    for index, word in enumerate(words):
        hz = _TONE_BASE_HZ + _TONE_STEP_HZ * TONE_VOCABULARY.index(word)
        parts.append(sine_pcm16(word_s, sample_rate, hz))
        silence = pause_s if index in pause_after else gap_s
        parts.append(np.zeros(round(silence * sample_rate), dtype=np.int16))
    return np.concatenate(parts).astype("<i2").tobytes() if parts else b""


class FakeStreamingTranscriber(FakeTranscriber):
    """A streaming (and whole-file) transcriber that hears tone words; see :func:`tone_words_pcm`.

    ``streams`` holds every stream opened, so a test can see what each received (a cloud fake that a
    local_only stream must never reach has ``streams == []``).
    """

    def __init__(
        self,
        *,
        name: str = "fake-stream",
        model: str = "fake-stream-1",
        locality: Locality = Locality.LOCAL,
        fail_after_s: float | None = None,
        stall_after_s: float | None = None,
        open_fail_with: Exception | None = None,
        open_delay_s: float = 0.0,
    ) -> None:
        super().__init__(name=name, model=model, locality=locality)
        caps = self.capabilities
        self.capabilities = Capabilities(
            operations=caps.operations,
            locality=caps.locality,
            retains_data=caps.retains_data,
            latency_prior=caps.latency_prior,
            languages=caps.languages,
            features=caps.features | {"streaming"},
        )
        self.fail_after_s = fail_after_s
        self.stall_after_s = stall_after_s
        self.open_fail_with = open_fail_with
        self.open_delay_s = open_delay_s
        self.streams: list[FakeTranscriptionStream] = []

    async def open_stream(self, config: StreamConfig, timeout_s: float | None) -> FakeTranscriptionStream:
        if self.open_delay_s:
            await asyncio.sleep(self.open_delay_s)
        if self.open_fail_with is not None:
            raise self.open_fail_with
        stream = FakeTranscriptionStream(self, config)
        self.streams.append(stream)
        return stream

    @property
    def received_s(self) -> float:
        return sum(s.received_s for s in self.streams)


class FakeTranscriptionStream:
    def __init__(self, owner: FakeStreamingTranscriber, config: StreamConfig) -> None:
        self._owner = owner
        self.config = config
        self._rate = config.sample_rate
        self._frame = max(round(config.sample_rate * _FRAME_S), 1)
        self._queue: asyncio.Queue[StreamEvent | BaseException | None] = asyncio.Queue()
        self._pending = np.zeros(0, dtype=np.int16)
        self.received_samples = 0
        self.finalized = 0
        self.keepalives = 0
        self.closed = False
        self.aborted = False
        self._ended = False
        self._stalled = False
        # Recognition state, on this stream's own timeline (samples).
        self._word: list[np.ndarray] = []
        self._word_start = 0
        self._voiced_end = 0
        self._silence = 0
        self._since_interim = 0
        self._utterance: list[WordTiming] = []
        self._in_utterance = False
        self._reached_s = 0.0  # how far the events it said reach

    @property
    def received_s(self) -> float:
        return self.received_samples / self._rate

    async def send(self, pcm: bytes) -> None:
        if self._ended or self._stalled:
            if not self._ended:
                self.received_samples += len(pcm) // 2
            return
        samples = np.frombuffer(pcm, dtype="<i2")
        self.received_samples += len(samples)
        owner = self._owner
        if owner.fail_after_s is not None and self.received_s >= owner.fail_after_s:
            self._end(ProviderUnavailable(owner.name, "the fake dropped the stream"))
            return
        if owner.stall_after_s is not None and self.received_s >= owner.stall_after_s:
            self._stalled = True
            return
        self._pending = np.concatenate([self._pending, samples])
        while len(self._pending) >= self._frame:
            frame, self._pending = self._pending[: self._frame], self._pending[self._frame :]
            self._hear(frame)

    async def finalize(self) -> None:
        self.finalized += 1
        if not self._ended and not self._stalled:
            self._end_word()
            self._final(eou=False)

    async def keepalive(self) -> None:
        self.keepalives += 1

    async def close(self) -> None:
        self.closed = True
        if not self._ended and not self._stalled:
            self._end_word()
            self._final(eou=False)
            self._end(None)

    async def abort(self) -> None:
        self.aborted = True
        self._end(None)

    async def events(self) -> AsyncIterator[StreamEvent]:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def usage(self) -> Usage:
        return Usage(audio_seconds=self.received_s, compute_seconds=0.0)

    def acknowledged_s(self) -> float:
        return self._reached_s

    def _put(self, event: StreamEvent) -> None:
        self._reached_s = max(self._reached_s, event.at_s if isinstance(event, SpeechEvent) else event.end_s)
        self._queue.put_nowait(event)

    # -- recognition ----------------------------------------------------------------------------------

    def _hear(self, frame: np.ndarray) -> None:
        start = self.received_samples - len(self._pending) - len(frame)
        voiced = float(np.sqrt(np.mean(frame.astype(np.float32) ** 2))) >= _VOICED_RMS
        if voiced:
            if not self._in_utterance:
                self._in_utterance = True
                self._put(SpeechEvent(SpeechEventKind.SPEECH_BEGIN, start / self._rate))
            if not self._word:
                self._word_start = start
            self._word.append(frame)
            self._voiced_end = start + len(frame)
            self._silence = 0
            self._since_interim += len(frame)
            if self.config.interim_results and self._since_interim >= _INTERIM_EVERY_S * self._rate:
                self._since_interim = 0
                self._interim()
            return
        self._silence += len(frame)
        if self._word and self._silence >= _WORD_GAP_S * self._rate:
            self._end_word()
        if self._in_utterance and self._silence >= self.config.endpointing_ms / 1000 * self._rate:
            self._final(eou=True)
            if self.config.single_utterance:
                self._end(None)

    def _guess(self) -> str:
        samples = np.concatenate(self._word).astype(np.float32)
        crossings = int(np.count_nonzero(np.diff(np.signbit(samples))))
        hz = crossings / 2 / (len(samples) / self._rate)
        index = round((hz - _TONE_BASE_HZ) / _TONE_STEP_HZ)
        return TONE_VOCABULARY[min(max(index, 0), len(TONE_VOCABULARY) - 1)]

    def _end_word(self) -> None:
        if not self._word:
            return
        word = WordTiming(self._guess(), self._word_start / self._rate, self._voiced_end / self._rate, 0.9)
        self._utterance.append(word)
        self._word = []

    def _interim(self) -> None:
        words = [w.text for w in self._utterance] + [self._guess()]
        start = self._utterance[0].start_s if self._utterance else self._word_start / self._rate
        self._put(StreamResult(" ".join(words), False, start, self._voiced_end / self._rate, stability=0.5))

    def _final(self, *, eou: bool) -> None:
        if self._utterance:
            words = tuple(self._utterance)
            self._put(
                StreamResult(
                    " ".join(w.text for w in words),
                    True,
                    words[0].start_s,
                    words[-1].end_s,
                    stability=1.0,
                    confidence=0.9,
                    words=words if self.config.word_timestamps else (),
                )
            )
        if eou and self._in_utterance:
            self._put(
                SpeechEvent(SpeechEventKind.END_OF_UTTERANCE, (self._voiced_end + self._silence) / self._rate)
            )
        self._utterance = []
        self._in_utterance = False
        self._since_interim = 0

    def _end(self, error: BaseException | None) -> None:
        if self._ended:
            return
        self._ended = True
        if error is not None:
            self._queue.put_nowait(error)
        self._queue.put_nowait(None)


def hear_tone_words(pcm: bytes, sample_rate: int) -> list[str]:
    """The tone words in s16le mono ``pcm`` (see :func:`tone_words_pcm`), at any sample rate.

    What the wire fakes of streaming vendors "transcribe" when a test asks them to listen instead of
    reading a script: the words then depend only on the audio a vendor was sent, so audio lost or
    repeated in a failover shows up as words lost or repeated.
    """
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2").astype(np.float32)
    frame = max(round(sample_rate * _FRAME_S), 1)
    words: list[str] = []
    voiced: list[np.ndarray] = []
    silence = 0
    for start in range(0, len(samples) - frame + 1, frame):
        chunk = samples[start : start + frame]
        if float(np.sqrt(np.mean(chunk**2))) >= _VOICED_RMS:
            voiced.append(chunk)
            silence = 0
            continue
        silence += frame
        if voiced and silence >= _WORD_GAP_S * sample_rate:
            words.append(_tone_word(np.concatenate(voiced), sample_rate))
            voiced = []
    if voiced:
        words.append(_tone_word(np.concatenate(voiced), sample_rate))
    return words


def _tone_word(samples: np.ndarray, sample_rate: int) -> str:
    crossings = int(np.count_nonzero(np.diff(np.signbit(samples))))
    hz = crossings / 2 / (len(samples) / sample_rate)
    index = round((hz - _TONE_BASE_HZ) / _TONE_STEP_HZ)
    return TONE_VOCABULARY[min(max(index, 0), len(TONE_VOCABULARY) - 1)]
