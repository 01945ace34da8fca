"""Live transcription on a local Whisper: Silero VAD endpointing plus LocalAgreement-2 (Macháček et al. 2023).

Whisper is not a streaming model, so a stream re-decodes the audio of the current utterance every
``step_s`` of new audio. Two hypotheses in a row that agree on a prefix of words *commit* that prefix
(LocalAgreement-2): it is never revised again, and it opens every later hypothesis of the utterance. The
words after it are the unstable tail. Each step yields one interim result for the utterance so far, whose
stability is the share of its words already committed.

Silero VAD, run incrementally on the 16 kHz audio as it arrives, decides where utterances begin and end:
after ``endpointing_ms`` of silence the utterance is decoded once more and its final result emitted; the
audio before it is dropped. An utterance longer than ``max_buffer_s`` is cut at the end of a committed
segment and that part is finalized early, because Whisper sees at most 30 s at a time.

All CPU work (resampling, VAD, decoding) runs in worker pools: the event loop only moves bytes and events.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import enum
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from gateway.core.errors import ProviderBusy, ProviderError, ProviderInputError, ProviderUnavailable
from gateway.core.provider_types import Usage, WordTiming
from gateway.core.streaming import (
    PCM_SAMPLE_WIDTH,
    SpeechEvent,
    SpeechEventKind,
    StreamConfig,
    StreamEvent,
    StreamResult,
)
from providers import longform

if TYPE_CHECKING:
    from providers.workers import Timed

T = TypeVar("T")

RATE = 16_000  # what Whisper and Silero take
_WINDOW = 512  # Silero v5+/v6 at 16 kHz: 32 ms per probability
_CONTEXT = 64  # samples of the previous window Silero sees before each window
# Speech must last this many windows before an utterance begins, so a click is not an utterance.
_MIN_SPEECH_WINDOWS = 3
# Audio kept before the first speech window: Silero's onsets are late by a window or two, and Whisper
# drops clipped words. An utterance that follows the one before it (or the stream's start) within a short
# silence takes in all of that silence instead, as long-form windows do (longform.onset): a speaker who
# starts softly is heard by Whisper before VAD. After its last speech window, an utterance keeps the pause
# that was heard when its final was decoded (StreamTuning.pause_s).
_PRE_ROLL_S = 0.3
# Silence kept while no utterance is open: what an onset may reach back to, and Silero's onset delay.
_SILENCE_KEPT_S = longform.ONSET_S + 1.0
# Text of earlier utterances handed to Whisper as the prompt of interim steps: context for names and casing.
_PROMPT_CHARS = 200
# A final decode refused by a full queue is retried for about this long before the stream fails.
_BUSY_PATIENCE_S = 10.0


@dataclass(frozen=True)
class Word:
    text: str  # as Whisper wrote it (case, punctuation)
    start_s: float  # on the decoded buffer's timeline
    end_s: float
    probability: float = 0.0


@dataclass(frozen=True)
class Hypothesis:
    """One decode of a buffer: its words, grouped by the segments Whisper ended."""

    segments: tuple[tuple[Word, ...], ...]

    @property
    def words(self) -> list[Word]:
        return [w for seg in self.segments for w in seg]


Decoder = Callable[[np.ndarray, str, bool], Hypothesis]
"""(16 kHz float32 audio, prompt, final?) → hypothesis. Runs on a worker thread."""


def _key(word: str) -> str:
    # Agreement is judged on the words, not on Whisper's casing and punctuation, which flicker.
    return re.sub(r"[^\w']", "", word.lower())


class LocalAgreement:
    """LocalAgreement-2 over the words of one utterance.

    ``committed`` only grows. Each hypothesis is aligned against it (Whisper may spell an early word a
    little differently each time), and the words after the alignment point are compared with the tail of
    the previous hypothesis: their longest common prefix is committed.
    """

    def __init__(self) -> None:
        self.committed: list[Word] = []
        self.tail: list[Word] = []  # the uncommitted words of the latest hypothesis
        self._previous_tail: list[Word] | None = None

    def _after_committed(self, words: list[Word]) -> list[Word]:
        if not self.committed:
            return words
        ours = [_key(w.text) for w in self.committed]
        theirs = [_key(w.text) for w in words]
        blocks = [
            b
            for b in difflib.SequenceMatcher(None, ours, theirs, autojunk=False).get_matching_blocks()
            if b.size
        ]
        if not blocks:
            # Nothing in common: trust time instead (words that start after the last committed one).
            cut = self.committed[-1].end_s - 0.1
            return [w for w in words if w.start_s >= cut]
        last = blocks[-1]
        # Committed words after the last match were rewritten in this hypothesis: skip as many.
        skip = last.b + last.size + (len(ours) - (last.a + last.size))
        return words[skip:]

    def update(self, words: list[Word]) -> None:
        """Take one more hypothesis of the whole buffer; commit what the last two agree on."""
        fresh = self._after_committed(words)
        if self._previous_tail is not None:
            agreed = 0
            for mine, theirs in zip(self._previous_tail, fresh, strict=False):
                if _key(mine.text) != _key(theirs.text):
                    break
                agreed += 1
            self.committed.extend(fresh[:agreed])
            fresh = fresh[agreed:]
        self._previous_tail = fresh
        self.tail = fresh

    def forget(self, count: int) -> None:
        """The first ``count`` committed words were finalized and their audio dropped."""
        del self.committed[:count]


# Quiet windows within speech after which no interim step starts: the worker is kept for the final.
_HUSH_WINDOWS = 2


class Endpointer:
    """Silero VAD fed incrementally, with a hysteresis that turns probabilities into utterance bounds.

    Not thread-safe; one stream feeds it from one worker at a time.
    """

    def __init__(self, session: Any, threshold: float, endpointing_ms: int, pause_ms: int = 200) -> None:
        self._session = session
        self._threshold = threshold
        self._neg_threshold = max(threshold - 0.15, 0.01)  # as Silero's own get_speech_timestamps
        self._silence_windows = max(1, round(endpointing_ms / 1000 * RATE / _WINDOW))
        # A pause of ``pause_ms``: the utterance may end here, so decoding it now has its final ready
        # when the endpointing silence is complete.
        self._pause_windows = -(-round(pause_ms / 1000 * RATE) // _WINDOW)
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(_CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self._position = 0  # samples already turned into windows
        self.in_speech = False
        self._run_start: int | None = None
        self._run = 0
        self._silence_start: int | None = None
        self._silence = 0

    @property
    def silent_windows(self) -> int:
        return self._silence

    def feed(self, samples: np.ndarray) -> list[tuple[str, int, int]]:
        """Boundaries as (kind, sample, detected at): "begin" (speech start), "pause" (a silence began at
        sample), "resume" (speech again after a pause) and "end" (the silence that began at sample lasted
        the endpointing time)."""
        audio = np.concatenate([self._pending, samples]) if self._pending.size else samples
        count = audio.size // _WINDOW
        self._pending = audio[count * _WINDOW :].copy()
        if count == 0:
            return []
        windows = audio[: count * _WINDOW].reshape(count, _WINDOW)
        contexts = np.empty((count, _CONTEXT), dtype=np.float32)
        contexts[0] = self._context
        contexts[1:] = windows[:-1, -_CONTEXT:]
        self._context = windows[-1, -_CONTEXT:].copy()
        batch = np.concatenate([contexts, windows], axis=1).astype(np.float32, copy=False)
        probs, self._h, self._c = self._session.run(None, {"input": batch, "h": self._h, "c": self._c})
        boundaries: list[tuple[str, int, int]] = []
        for prob in np.asarray(probs).reshape(-1):
            start = self._position
            self._position += _WINDOW
            if not self.in_speech:
                if prob >= self._threshold:
                    if self._run == 0:
                        self._run_start = start
                    self._run += 1
                    if self._run >= _MIN_SPEECH_WINDOWS:
                        assert self._run_start is not None
                        self.in_speech = True
                        self._silence, self._silence_start = 0, None
                        boundaries.append(("begin", self._run_start, self._position))
                else:
                    self._run = 0
            elif prob < self._neg_threshold:
                if self._silence == 0:
                    self._silence_start = start
                self._silence += 1
                if self._silence == self._pause_windows < self._silence_windows:
                    assert self._silence_start is not None
                    boundaries.append(("pause", self._silence_start, self._position))
                if self._silence >= self._silence_windows:
                    assert self._silence_start is not None
                    self.in_speech = False
                    self._run = 0
                    boundaries.append(("end", self._silence_start, self._position))
            else:
                if self._pause_windows <= self._silence < self._silence_windows:
                    boundaries.append(("resume", start, self._position))
                self._silence, self._silence_start = 0, None
        return boundaries


class Front:
    """What each chunk goes through on a worker: s16le at the stream's rate → 16 kHz float32 → VAD."""

    def __init__(self, sample_rate: int, endpointer: Endpointer) -> None:
        self._endpointer = endpointer
        self._resampler: Any = None
        if sample_rate != RATE:
            import av

            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        self._rate = sample_rate

    @property
    def in_speech(self) -> bool:
        return self._endpointer.in_speech

    @property
    def hushed(self) -> bool:
        """Speech has gone quiet for a couple of windows: a pause, and maybe the end, is coming."""
        return self._endpointer.in_speech and self._endpointer.silent_windows >= _HUSH_WINDOWS

    def feed(self, pcm: bytes) -> tuple[np.ndarray, list[tuple[str, int, int]]]:
        samples = np.frombuffer(pcm, dtype="<i2")
        if self._resampler is not None:
            samples = self._resample(samples)
        audio = samples.astype(np.float32) / 32768.0
        return audio, self._endpointer.feed(audio)

    def flush(self) -> tuple[np.ndarray, list[tuple[str, int, int]]]:
        """What the resampler still holds (its filter delay) once no more audio comes."""
        if self._resampler is None:
            return np.zeros(0, dtype=np.float32), []
        tail = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(None)]
        audio = (np.concatenate(tail) if tail else np.zeros(0, np.int16)).astype(np.float32) / 32768.0
        return audio, self._endpointer.feed(audio)

    def _resample(self, samples: np.ndarray) -> np.ndarray:
        import av

        if samples.size == 0:
            return samples
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self._rate
        out = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        return np.concatenate(out) if out else np.zeros(0, np.int16)


@dataclass
class _Utterance:
    start: int  # absolute 16 kHz sample index of the first sample decoded
    begin_at: int | None  # where speech began (None: it continues an utterance cut by FINALIZE)
    end: int | None = None  # set when the utterance is over (VAD, FINALIZE or the end of input)
    ended_by_vad_at: int | None = None  # the sample at which the endpointing silence was heard
    announced: bool = False
    pause_end: int | None = None  # where the utterance ends if the pause going on lasts


@dataclass(frozen=True)
class _Slice:
    start: int  # absolute 16 kHz sample index
    end: int
    samples: np.ndarray


class _Control(enum.Enum):
    FINALIZE = "finalize"
    CLOSE = "close"


@dataclass(frozen=True)
class StreamTuning:
    step_s: float  # new audio between two decodes of an unfinished utterance
    # The silence after which an utterance's final is decoded, in case it ends there; the utterance
    # keeps that much of it (Whisper drops words clipped short).
    pause_s: float
    max_buffer_s: float  # past it, a long utterance is cut at a committed segment end
    vad_threshold: float


@dataclass
class _Tally:
    audio_samples: int = 0
    compute_s: float = 0.0


class WhisperStream:
    """One live transcription on the local engine (a :class:`~providers.base.TranscriptionStream`)."""

    def __init__(
        self,
        name: str,
        config: StreamConfig,
        tuning: StreamTuning,
        front: Front,
        decoder: Decoder,
        # (work, final?) → its result; a final is urgent, an interim step can wait.
        run_decode: Callable[[Callable[[], Hypothesis], bool], Awaitable[Timed[Hypothesis]]],
        run_front: Callable[[Callable[[], Any]], Awaitable[Timed[Any]]],
        on_end: Callable[[], None],
    ) -> None:
        self._name = name
        self._config = config
        self._tuning = tuning
        self._front = front
        self._decoder = decoder
        self._run_decode = run_decode
        self._run_front = run_front
        self._on_end = on_end
        self._ended = False
        self._tally = _Tally()
        self._inbox: asyncio.Queue[bytes | _Control] = asyncio.Queue()
        self._events: asyncio.Queue[StreamEvent | BaseException | None] = asyncio.Queue()
        self._wake = asyncio.Event()
        # Audio from absolute sample ``_base`` on; everything before it was finalized or was silence.
        self._audio = np.zeros(0, dtype=np.float32)
        self._base = 0
        self._utterances: deque[_Utterance] = deque()
        self._finalized_to = 0  # where the last utterance finalized ended
        self._input_done = False
        self._done = False  # single utterance over, or aborted: no more events
        self._history = ""  # finalized text, the prompt of later interim steps
        self._last_interim = ""
        self._intake_task = asyncio.create_task(self._intake(), name=f"{name}-stream-intake")
        self._decode_task = asyncio.create_task(self._decode_loop(), name=f"{name}-stream-decode")

    # -- the TranscriptionStream surface ------------------------------------------------------------

    async def send(self, pcm: bytes) -> None:
        if len(pcm) % PCM_SAMPLE_WIDTH:
            raise ProviderInputError(self._name, "audio must be whole 16-bit samples")
        if self._done or self._input_done:
            return
        self._tally.audio_samples += len(pcm) // PCM_SAMPLE_WIDTH
        self._inbox.put_nowait(pcm)

    async def finalize(self) -> None:
        if not (self._done or self._input_done):
            self._inbox.put_nowait(_Control.FINALIZE)

    async def keepalive(self) -> None:
        # Nothing times out on a local engine while the caller is quiet.
        return None

    async def close(self) -> None:
        if not (self._done or self._input_done):
            self._inbox.put_nowait(_Control.CLOSE)

    async def abort(self) -> None:
        self._done = True
        for task in (self._intake_task, self._decode_task):
            task.cancel()
        for task in (self._intake_task, self._decode_task):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._finish(None)

    async def events(self) -> AsyncIterator[StreamEvent]:
        while True:
            item = await self._events.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def usage(self) -> Usage:
        return Usage(
            audio_seconds=self._tally.audio_samples / self._config.sample_rate,
            compute_seconds=self._tally.compute_s,
        )

    def acknowledged_s(self) -> float:
        # In process, nothing is lost on the way: what the VAD has taken in was heard.
        return (self._base + self._audio.size) / RATE

    # -- intake: resampling and VAD, in arrival order -----------------------------------------------

    async def _intake(self) -> None:
        try:
            while True:
                items = [await self._inbox.get()]
                while not self._inbox.empty():
                    items.append(self._inbox.get_nowait())
                # Chunks that queued up while a worker was busy go to it in one job.
                pcm = bytearray()
                for item in items:
                    if isinstance(item, bytes):
                        pcm += item
                        continue
                    if pcm:
                        self._take(await self._run_front(lambda pcm=bytes(pcm): self._front.feed(pcm)))
                        pcm = bytearray()
                    if item is _Control.FINALIZE:
                        self._cut(continues=self._front.in_speech)
                        continue
                    self._take(await self._run_front(self._front.flush))
                    self._cut(continues=False)
                    self._input_done = True
                    self._wake.set()
                    return
                if pcm:
                    self._take(await self._run_front(lambda pcm=bytes(pcm): self._front.feed(pcm)))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._fail(exc)

    def _take(self, timed: Timed[tuple[np.ndarray, list[tuple[str, int, int]]]]) -> None:
        self._tally.compute_s += timed.compute_s
        audio, boundaries = timed.value
        self._audio = np.concatenate([self._audio, audio]) if self._audio.size else audio
        total = self._base + self._audio.size
        for kind, at, detected in boundaries:
            last = self._utterances[-1] if self._utterances else None
            if kind == "begin":
                before = last.end if last is not None and last.end is not None else self._finalized_to
                onset = min(longform.onset(at, before), at - round(_PRE_ROLL_S * RATE))
                start = max(onset, before, self._base)
                self._utterances.append(_Utterance(start=start, begin_at=at))
                continue
            if last is None or last.end is not None:
                continue
            end = max(last.start, min(at + round(self._tuning.pause_s * RATE), total))
            if kind == "pause":
                last.pause_end = end
            elif kind == "resume":
                last.pause_end = None
            else:
                last.end = end
                last.ended_by_vad_at = detected
        if not self._utterances:
            # Silence between utterances is never decoded: keep only what a coming onset may reach back to.
            self._drop_before(total - round(_SILENCE_KEPT_S * RATE))
        self._wake.set()

    def _cut(self, continues: bool) -> None:
        """FINALIZE or the end of input: what is open ends here; speech going on starts a new utterance."""
        total = self._base + self._audio.size
        if self._utterances and self._utterances[-1].end is None:
            self._utterances[-1].end = total
            if continues:
                self._utterances.append(_Utterance(start=total, begin_at=None, announced=True))
        self._wake.set()

    # -- decoding: LocalAgreement steps, finals, speech events --------------------------------------

    async def _decode_loop(self) -> None:
        # An interim step runs on a worker while this loop goes on watching for the utterance's end, so
        # a final never waits for one.
        step: asyncio.Task[tuple[int, Hypothesis | None]] | None = None
        try:
            agreement = LocalAgreement()
            decoded_to = 0  # absolute sample the latest decode of the current utterance started up to
            applied_to = 0  # ... and the latest hypothesis taken into the agreement reached
            # A decode of the utterance up to where a pause began: its final, if the pause lasts.
            ready: tuple[int, int, Hypothesis] | None = None
            while not self._done:
                utterance = self._utterances[0] if self._utterances else None
                total = self._base + self._audio.size
                if utterance is None:
                    if self._input_done:
                        break
                    await self._sleep()
                    continue
                if not utterance.announced:
                    utterance.announced = True
                    assert utterance.begin_at is not None
                    self._emit(SpeechEvent(SpeechEventKind.SPEECH_BEGIN, utterance.begin_at / RATE))
                if step is not None and step.done():
                    end, hypothesis = step.result()
                    step = None
                    # A step that a later decode overtook (a pause's final) is stale.
                    if hypothesis is not None and end > applied_to:
                        applied_to = end
                        agreement.update(hypothesis.words)
                        self._interim(utterance, agreement)
                        self._trim_long(utterance, agreement, hypothesis)
                    continue
                if utterance.end is None:
                    pause = utterance.pause_end
                    if (
                        pause is not None
                        and pause <= total
                        and (ready is None or ready[:2] != (utterance.start, pause))
                    ):
                        # The pause may be the end: decode the final now, while the endpointing
                        # silence is still being heard.
                        hypothesis = await self._decode(self._take_audio(utterance.start, pause), True)
                        assert hypothesis is not None
                        decoded_to = max(decoded_to, pause)
                        ready = (utterance.start, pause, hypothesis)
                        if pause > applied_to:
                            applied_to = pause
                            agreement.update(hypothesis.words)
                            self._interim(utterance, agreement)
                            self._trim_long(utterance, agreement, hypothesis)
                        continue
                    if (
                        step is None
                        and total - max(decoded_to, utterance.start) >= round(self._tuning.step_s * RATE)
                        and not self._front.hushed
                    ):
                        step = self._step(self._take_audio(utterance.start, total), total)
                        decoded_to = total
                        continue
                    await self._sleep()
                    continue
                if step is not None:
                    # The final covers what the step would have: it is not waited for, and skipped if
                    # it has not started.
                    step.cancel()
                    step = None
                if ready is not None and ready[:2] == (utterance.start, utterance.end):
                    hypothesis = ready[2]
                else:
                    decoded = await self._decode(self._take_audio(utterance.start, utterance.end), True)
                    assert decoded is not None
                    hypothesis = decoded
                # The final is its own decode at full quality; it may differ from the interims' committed
                # words, which only promise that interim results will not revise them.
                self._final(utterance.start, utterance.end, hypothesis.words)
                if utterance.ended_by_vad_at is not None:
                    self._emit(
                        SpeechEvent(SpeechEventKind.END_OF_UTTERANCE, utterance.ended_by_vad_at / RATE)
                    )
                self._utterances.popleft()
                self._finalized_to = utterance.end
                self._drop_before(utterance.end)
                agreement, decoded_to, applied_to, ready = LocalAgreement(), 0, 0, None
                if self._config.single_utterance and utterance.ended_by_vad_at is not None:
                    self._done = True
                    self._intake_task.cancel()
            self._finish(None)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._fail(exc)
        finally:
            if step is not None:
                step.cancel()

    async def _sleep(self) -> None:
        self._wake.clear()
        await self._wake.wait()

    def _step(self, audio: _Slice, end: int) -> asyncio.Task[tuple[int, Hypothesis | None]]:
        async def step() -> tuple[int, Hypothesis | None]:
            return end, await self._decode(audio, False)

        task = asyncio.create_task(step(), name=f"{self._name}-stream-step")
        task.add_done_callback(lambda _: self._wake.set())
        return task

    def _take_audio(self, start: int, end: int) -> _Slice:
        """The samples [start, end), copied now: the buffer may be trimmed before a worker is free."""
        return _Slice(start, end, self._audio[start - self._base : end - self._base].copy())

    async def _decode(self, audio: _Slice, final: bool) -> Hypothesis | None:
        """Decode on the engine pool; None when an interim step found the queue full."""
        # A final is decoded as batch transcription decodes a window, with no text before it: the earlier
        # finals as its prompt made tiny.en's finals worse on the benchmark's recordings (a word of one
        # sentence written into the next), whichever part of them was given. Interim steps keep it.
        prompt = "" if final else self._history[-_PROMPT_CHARS:]
        samples = audio.samples
        loop = asyncio.get_running_loop()

        def decode() -> Hypothesis:
            # Timed on the worker, so a step given up on while it ran still counts as the stream's
            # compute: it held the worker all the same.
            started = time.perf_counter()
            try:
                return self._decoder(samples, prompt, final)
            finally:
                loop.call_soon_threadsafe(self._count_compute, time.perf_counter() - started)

        waited = 0.0
        while True:
            try:
                timed = await self._run_decode(decode, final)
            except ProviderBusy as busy:
                # Batch work fills the queue: an interim can wait for the next step, a final cannot.
                if not final:
                    return None
                if waited >= _BUSY_PATIENCE_S:
                    raise
                await asyncio.sleep(busy.retry_after_s)
                waited += busy.retry_after_s
                continue
            return _placed(timed.value, audio.start / RATE, (audio.end - audio.start) / RATE)

    def _count_compute(self, seconds: float) -> None:
        self._tally.compute_s += seconds

    def _interim(self, utterance: _Utterance, agreement: LocalAgreement) -> None:
        if not self._config.interim_results:
            return
        words = [*agreement.committed, *agreement.tail]
        text = _join(words)
        if not words or text == self._last_interim:
            return
        self._last_interim = text
        self._emit(
            StreamResult(
                text=text,
                is_final=False,
                start_s=utterance.start / RATE,
                end_s=max(words[-1].end_s, utterance.start / RATE),
                stability=round(len(agreement.committed) / len(words), 3),
                confidence=_confidence(words),
                words=self._timings(words),
            )
        )

    def _final(self, start: int, end: int, words: list[Word]) -> None:
        self._last_interim = ""
        if not words:
            return
        text = _join(words)
        self._history = f"{self._history} {text}".strip()[-_PROMPT_CHARS * 2 :]
        self._emit(
            StreamResult(
                text=text,
                is_final=True,
                start_s=start / RATE,
                end_s=end / RATE,
                stability=1.0,
                confidence=_confidence(words),
                words=self._timings(words),
            )
        )

    def _trim_long(self, utterance: _Utterance, agreement: LocalAgreement, hypothesis: Hypothesis) -> None:
        """Finalize the committed head of an over-long utterance at a segment end, and drop its audio."""
        total = self._base + self._audio.size
        # An utterance that has ended, or is pausing, is only that long, however much audio came after it
        # while its decode waited for a worker: its final is next, and cutting it would only lose words.
        heard = next((at for at in (utterance.end, utterance.pause_end) if at is not None), total)
        if (heard - utterance.start) / RATE < self._tuning.max_buffer_s:
            return
        committed = len(agreement.committed)
        cut_words, cut_at = 0, None
        counted = 0
        for segment in hypothesis.segments[:-1]:
            counted += len(segment)
            if counted > committed or not segment:
                break
            cut_words, cut_at = counted, segment[-1].end_s
        if cut_at is None and committed:
            # No committed segment end yet: cut after the committed words rather than outgrow Whisper.
            cut_words, cut_at = committed, agreement.committed[-1].end_s
        if cut_at is None:
            return
        cut = min(max(round(cut_at * RATE), utterance.start + 1), total)
        self._final(utterance.start, cut, agreement.committed[:cut_words])
        agreement.forget(cut_words)
        utterance.start = cut
        self._drop_before(cut)

    def _drop_before(self, sample: int) -> None:
        keep_from = max(self._base, sample - round(_PRE_ROLL_S * RATE))
        if self._utterances:
            keep_from = min(keep_from, self._utterances[0].start)
        self._audio = self._audio[keep_from - self._base :]
        self._base = keep_from

    def _timings(self, words: list[Word]) -> tuple[WordTiming, ...]:
        if not self._config.word_timestamps:
            return ()
        return tuple(WordTiming(w.text, round(w.start_s, 3), round(w.end_s, 3), w.probability) for w in words)

    # -- ending --------------------------------------------------------------------------------------

    def _emit(self, event: StreamEvent) -> None:
        if not self._ended:
            self._events.put_nowait(event)

    def _fail(self, exc: BaseException) -> None:
        self._done = True
        if not isinstance(exc, ProviderError):
            wrapped = ProviderUnavailable(self._name, f"the stream failed: {type(exc).__name__}")
            wrapped.__cause__ = exc
            exc = wrapped
        for task in (self._intake_task, self._decode_task):
            if task is not asyncio.current_task():
                task.cancel()
        self._finish(exc)

    def _finish(self, error: BaseException | None) -> None:
        if self._ended:
            return
        self._ended = True
        if error is not None:
            self._events.put_nowait(error)
        self._events.put_nowait(None)
        self._on_end()


def _placed(hypothesis: Hypothesis, offset: float, length: float) -> Hypothesis:
    """Word times moved onto the stream's timeline, and kept inside the audio that was decoded (Whisper's
    may run a little past it)."""

    def place(w: Word) -> Word:
        begin = offset + min(max(w.start_s, 0.0), length)
        return Word(w.text, begin, max(begin, offset + min(w.end_s, length)), w.probability)

    return Hypothesis(tuple(tuple(place(w) for w in seg) for seg in hypothesis.segments))


def _join(words: list[Word]) -> str:
    return " ".join(w.text for w in words).strip()


def _confidence(words: list[Word]) -> float:
    probabilities = [w.probability for w in words if w.probability > 0]
    return round(float(np.mean(probabilities)), 3) if probabilities else 0.0
