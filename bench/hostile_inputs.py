"""Hostile inputs and a mutation fuzz against a running gateway, with its health checks timed throughout.

The gateway is ``audio-gateway serve`` in a subprocess with one local engine, faster-whisper (the default
tiny.en weights), so every decode path runs; Redis holds its ledger and cache; Audio.uri is allowed under a
scratch directory so file names reach the file system.

1. A seeded mutation fuzz at c=16: flips, truncations, splices and boundary integers over real wav, flac,
   mp3 and ogg files (piper speech encoded by PyAV) sent as Transcribe requests, and over serialized
   TranscribeRequest messages sent as raw bytes. It runs first, on a fresh gateway, so that a named input
   that wedges the gateway cannot turn the fuzz into a count of deadlines.
2. Named hostile inputs, one at a time, each followed by a wait until health answers again: WAV headers
   that lie (absurd and tiny sample rates, NaN floats, zero bits per sample, an extensible format naming no
   codec, a LIST chunk claiming 400 MB), an MP3 whose frames change channel layout, hostile Audio.uri
   values, a corrupt protobuf body and invalid UTF-8 in a string field.

Meanwhile another process polls grpc.health.v1 Check every ~20 ms. Prints the count of each status code,
health-check latency p99 and max, and the gateway's peak RSS (VmHWM), next to the goals. Inputs that got
INTERNAL, UNKNOWN or DEADLINE_EXCEEDED are saved so they can be replayed.

Run: PYTHONPATH=. python bench/hostile_inputs.py [--quick] [--requests N] [--seed N] [--redis-url URL]
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct
import tempfile
import time
from argparse import Namespace
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench import clips
from bench.harness import ENGINES_OFF, GatewayProcess, argument_parser, percentile_ms, report
from bench.health_poller import PROBE_TIMEOUT_S, HealthPoller, Probe
from bench.mutations import mutate
from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import common_pb2 as common
from tests.audio_files import MIME, encode, tone
from tests.hostile_audio import info_bomb_wav

TRANSCRIBE = "/gateway.api.v1.AudioGateway/Transcribe"
CONCURRENCY = 16
# Short clips keep whisper's share of the fuzz small: the point is the paths before and around it.
FUZZ_SECONDS = 1.5
# Share of fuzz requests that mutate the serialized request rather than the audio inside it.
PROTO_SHARE = 0.25
GOAL_HEALTH_P99_MS = 100.0
GOAL_HEALTH_MAX_MS = 250.0
GOAL_PEAK_RSS_BYTES = 1 << 30
FORBIDDEN = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
# Inputs worth replaying: the forbidden codes, and deadlines (an input that takes the gateway too long).
SAVED_CODES = (*FORBIDDEN, grpc.StatusCode.DEADLINE_EXCEEDED)
SAVED_PER_CODE = 20
# Bucket bounds of the gateway's stall histograms worth printing (gateway/telemetry/metrics.py).
STALL_BOUNDS_S = (0.05, 0.1, 0.25)
PROGRESS_EVERY = 2000


def wav(
    data: bytes, rate: int = 16_000, channels: int = 1, bits: int = 16, tag: int = 1, extension: bytes = b""
) -> bytes:
    """A RIFF/WAVE file whose header says exactly what it is told to, true or not.

    Written by hand on purpose: encoders (PyAV included) refuse to write the lies these cases need.
    """
    block_align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, (rate * block_align) & 0xFFFFFFFF, block_align, bits)
    fmt += extension
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def _pcm(samples: int) -> bytes:
    return tone(samples / 16_000).astype("<i2").tobytes()


def _transcribe(audio: common.Audio, language: str = "en") -> bytes:
    return pb.TranscribeRequest(audio=audio, language=language).SerializeToString()


def _content(data: bytes, mime_type: str = "") -> bytes:
    return _transcribe(common.Audio(content=data, mime_type=mime_type))


def _invalid_utf8_language(data: bytes) -> bytes:
    valid = _transcribe(common.Audio(content=data), language="xx")
    # The language field (2) is the last one serialized: swap its two ASCII bytes for a broken sequence.
    assert valid.endswith(b"\x12\x02xx")
    return valid[:-2] + b"\xc3\x28"


def named_cases(uri_root: Path, clip: bytes) -> dict[str, bytes]:
    """Each hostile input as the serialized request body that goes on the wire."""
    one_second = _pcm(16_000)
    mono = encode(tone(1.0, 22_050), 22_050, "mp3")
    stereo = encode(tone(1.0, 22_050), 22_050, "mp3", layout="stereo")
    no_codec_guid = struct.pack("<HHI", 22, 16, 0x4) + bytes(16)
    return {
        "control: a valid 16 kHz WAV": _content(clip, "audio/wav"),
        "32 KB WAV claiming 1,962,950,272 Hz": _content(wav(_pcm(16_384), rate=1_962_950_272)),
        "3.6 KB WAV at 1 Hz": _content(wav(_pcm(1_778), rate=1)),
        "1 s of NaN float32 samples (format 3)": _content(
            wav(np.full(16_000, np.nan, "<f4").tobytes(), bits=32, tag=3)
        ),
        "WAV with bits_per_sample=0": _content(wav(one_second, bits=0)),
        "WAV with format tag 0xFFFE naming no codec": _content(
            wav(one_second, tag=0xFFFE, extension=no_codec_guid)
        ),
        "MP3 whose frames go mono, stereo, mono": _content(mono + stereo + mono, "audio/mpeg"),
        "WAV whose LIST chunk claims 400 MB": _content(info_bomb_wav(), "audio/wav"),
        "Audio.uri with %00": _transcribe(common.Audio(uri=f"file://{uri_root}/speech%00.wav")),
        "Audio.uri with a 300-character file name": _transcribe(
            common.Audio(uri=f"file://{uri_root}/{'a' * 296}.wav")
        ),
        "corrupt protobuf body": b"\x0a\x80\x80\x80\x80\x10" + b"\x00not a message\xff" * 4,
        "invalid UTF-8 in TranscribeRequest.language": _invalid_utf8_language(clip),
    }


@dataclass
class Tally:
    """Responses by status code; inputs worth replaying (SAVED_CODES) are saved to ``save_dir``."""

    save_dir: Path
    codes: Counter[str] = field(default_factory=Counter)
    saved: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def record(self, code: grpc.StatusCode, details: str, label: str, body: bytes) -> None:
        self.codes[code.name] += 1
        if code in SAVED_CODES and self.saved[code.name] < SAVED_PER_CODE:
            self.saved[code.name] += 1
            path = self.save_dir / f"{code.name.lower()}-{self.saved[code.name]:02d}.pb"
            path.write_bytes(body)
            self.examples.setdefault(code.name, []).append(f"{path.name} [{label}]: {details[:160]}")


async def send(channel: grpc.aio.Channel, body: bytes, timeout_s: float) -> tuple[grpc.StatusCode, str]:
    """Send a request body as it is, so corrupt ones reach the server exactly as built."""
    call = channel.unary_unary(TRANSCRIBE, request_serializer=lambda b: b, response_deserializer=lambda b: b)
    try:
        await call(body, timeout=timeout_s)
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def fuzz_bodies(rng: random.Random, files: dict[str, bytes]) -> Callable[[], tuple[str, bytes]]:
    """A source of mutated request bodies: mostly the audio inside a valid request, sometimes the request."""
    kinds = sorted(files)
    requests = {kind: _content(files[kind], MIME[kind]) for kind in kinds}

    def next_body() -> tuple[str, bytes]:
        kind, donor = rng.choice(kinds), rng.choice(kinds)
        if rng.random() < PROTO_SHARE:
            operations, body = mutate(rng, requests[kind], requests[donor])
            return f"request({kind}) {operations}", body
        operations, data = mutate(rng, files[kind], files[donor])
        mime_type = rng.choice(("", MIME[kind], "audio/wav"))
        return f"audio({kind}, mime {mime_type or 'none'}) {operations}", _content(data, mime_type)

    return next_body


async def fuzz(
    channel: grpc.aio.Channel,
    next_body: Callable[[], tuple[str, bytes]],
    total: int,
    timeout_s: float,
    gateway: GatewayProcess,
) -> tuple[Tally, float]:
    tally = Tally(Path(tempfile.mkdtemp(prefix="gw-bench-fuzz-")))
    tickets = iter(range(total))

    started = time.perf_counter()

    async def worker() -> None:
        for _ in tickets:
            label, body = next_body()
            code, details = await send(channel, body, timeout_s)
            tally.record(code, details, label, body)
            done = tally.codes.total()
            if done % PROGRESS_EVERY == 0:
                took = time.perf_counter() - started
                alive = gateway.exit_code() is None
                peak = f", peak RSS {gateway.peak_rss_bytes() / 2**20:.0f} MiB" if alive else ""
                print(f"  fuzz: {done}/{total} in {took:.0f} s{peak}", flush=True)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return tally, time.perf_counter() - started


async def answers_health(channel: grpc.aio.Channel, limit_s: float) -> float | None:
    """Seconds until the gateway answers a health check again (None: not within ``limit_s``)."""
    check = health_pb2_grpc.HealthStub(channel).Check
    started = time.perf_counter()
    while time.perf_counter() - started < limit_s:
        with contextlib.suppress(grpc.aio.AioRpcError):
            await check(health_pb2.HealthCheckRequest(), timeout=0.5)
            return time.perf_counter() - started
    return None


async def send_named(
    channel: grpc.aio.Channel, cases: dict[str, bytes], tally: Tally, args: Namespace, gateway: GatewayProcess
) -> list[tuple[str, float, float]]:
    """One at a time, each followed by a wait for the gateway to answer again, so that damage done by one
    input is seen after it rather than blamed on the next. Returns when each was sent and answered."""
    windows = []
    for label, body in cases.items():
        sent_at, started = time.time(), time.perf_counter()
        code, details = await send(channel, body, args.timeout)
        took = time.perf_counter() - started
        tally.record(code, details, label, body)
        recovered = await answers_health(channel, args.recovery) if args.recovery else 0.0
        if recovered is None:
            after = f"; health still unanswered {args.recovery:g} s after it"
        elif recovered > 0.1:
            after = f"; health unanswered for {recovered:.1f} s after it"
        else:
            after = ""
        # The high-water mark only rises: read after each input, it names the one that raised it.
        peak = f"peak RSS {gateway.peak_rss_bytes() / 2**20:.0f} MiB" if gateway.exit_code() is None else ""
        print(f"  {label}: {code.name} in {took:.2f} s{after}; {peak}  {details[:120]!r}", flush=True)
        windows.append((label, sent_at, time.time()))
    return windows


def print_stalls(gateway: GatewayProcess) -> None:
    """The gateway's own view of its stalls, to tell a slow health probe's cause: loop lag, or GC."""
    for title, name in (
        ("event-loop lag", "audio_gateway_event_loop_lag_seconds"),
        ("GC pauses", "audio_gateway_gc_pause_seconds"),
    ):
        buckets = gateway.histogram_buckets(name)
        for labels in sorted({labels for labels, _ in buckets}):
            total = buckets[(labels, float("inf"))]
            over = ", ".join(f"> {b * 1000:g} ms: {total - buckets[(labels, b)]:g}" for b in STALL_BOUNDS_S)
            print(f"  {title}{f' ({labels})' if labels else ''}: {total:g} observed; {over}")


def report_health(phase: str, probes: list[Probe]) -> None:
    if not probes:
        report(f"health check p99 ({phase})", "no probe completed", f"<= {GOAL_HEALTH_P99_MS:g} ms", False)
        return
    latencies = [probe.latency_s for probe in probes]
    p99, worst = percentile_ms(latencies, 99), max(latencies) * 1000
    unanswered = sum(not probe.serving for probe in probes)
    detail = f"{len(probes)} probes, {unanswered} not answered SERVING within {PROBE_TIMEOUT_S:g} s"
    report(
        f"health check p99 ({phase})",
        f"{p99:.1f} ms",
        f"<= {GOAL_HEALTH_P99_MS:g} ms",
        p99 <= GOAL_HEALTH_P99_MS,
        detail,
    )
    # When the slowest probes were sent, to match a stall with what ran then (the gateway's log).
    slowest = sorted(probes, key=lambda probe: probe.latency_s)[-5:]
    started = probes[0].sent_at
    when = ", ".join(f"{p.latency_s * 1e3:.0f} ms at +{p.sent_at - started:.0f} s" for p in reversed(slowest))
    report(
        f"health check max ({phase})",
        f"{worst:.1f} ms",
        f"<= {GOAL_HEALTH_MAX_MS:g} ms",
        worst <= GOAL_HEALTH_MAX_MS,
        f"slowest: {when}",
    )


async def run(args: Namespace, gateway: GatewayProcess, uri_root: Path) -> None:
    clip = clips.speech_wav(2.0)
    files = clips.speech_in_containers(FUZZ_SECONDS)
    named = Tally(Path(tempfile.mkdtemp(prefix="gw-bench-hostile-")))
    options = [("grpc.max_send_message_length", 64 * 1024 * 1024)]
    async with grpc.aio.insecure_channel(gateway.target, options=options) as channel:
        with HealthPoller(gateway.target) as poller:
            fuzz_started = time.time()
            fuzzed, elapsed = await fuzz(
                channel, fuzz_bodies(random.Random(args.seed), files), args.requests, args.timeout, gateway
            )
            fuzz_ended = time.time()
            if gateway.exit_code() is None:
                print(f"peak RSS after the fuzz: {gateway.peak_rss_bytes() / 2**20:.0f} MiB", flush=True)
            print("named hostile inputs:", flush=True)
            windows = await send_named(channel, named_cases(uri_root, clip), named, args, gateway)
            after, _ = await send(channel, _content(clip, "audio/wav"), args.timeout)
    exit_code = gateway.exit_code()
    if exit_code is None:
        print("the gateway's own stalls over the whole run (its /metrics):")
        print_stalls(gateway)
    peak_rss = gateway.peak_rss_bytes() if exit_code is None else None

    print(f"named inputs by status: {dict(sorted(named.codes.items()))}")
    print(
        f"fuzz: {args.requests} requests at c={CONCURRENCY} in {elapsed:.1f} s (seed {args.seed}); "
        f"by status: {dict(sorted(fuzzed.codes.items()))}"
    )
    for tally in (named, fuzzed):
        for code, examples in tally.examples.items():
            print(f"  {code} inputs saved in {tally.save_dir}, e.g.:")
            for example in examples[:5]:
                print(f"    {example}")
    state = "running" if exit_code is None else f"exited with {exit_code}"
    print(f"a valid request after everything: {after.name}; the gateway is {state}")

    codes = named.codes + fuzzed.codes
    for code in FORBIDDEN:
        report(f"{code.name} responses", str(codes[code.name]), "0", codes[code.name] == 0)
    print("health checks while each named input was in flight (and until health answered again):")
    for label, sent_at, done_at in windows:
        # Every probe in flight at some point of the window: one stuck through it counts too.
        during = [p for p in poller.probes if p.sent_at <= done_at and p.sent_at + p.latency_s >= sent_at]
        worst = max((probe.latency_s for probe in during), default=0.0) * 1000
        unanswered = sum(not probe.serving for probe in during)
        print(f"  {label}: max {worst:.0f} ms over {len(during)} probes, {unanswered} unanswered")
    report_health("whole run", poller.probes)
    report_health("fuzz only", [p for p in poller.probes if fuzz_started <= p.sent_at <= fuzz_ended])
    if peak_rss is None:
        report("gateway peak RSS", "unknown (the gateway exited)", "<= 1024 MiB", False)
    else:
        rss_mib = peak_rss / 2**20
        report(
            "gateway peak RSS", f"{rss_mib:.0f} MiB", "<= 1024 MiB", peak_rss <= GOAL_PEAK_RSS_BYTES, "VmHWM"
        )


def main() -> None:
    parser = argument_parser(__doc__, "300 fuzz requests, 1 s deadlines, no waits for recovery (a smoke run)")
    parser.add_argument("--requests", type=int, help="fuzz requests (default 20000; 300 with --quick)")
    parser.add_argument("--seed", type=int, default=20240521)
    parser.add_argument(
        "--timeout", type=float, help="deadline of each request in seconds (default 30; 1 with --quick)"
    )
    parser.add_argument(
        "--recovery",
        type=float,
        help="seconds to wait for health to answer after each named input (default 120; 0 with --quick)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="GATEWAY_NAME=VALUE",
        help="a gateway setting for this run, e.g. GATEWAY_WHISPER__BATCH_SIZE=1 (repeatable)",
    )
    args = parser.parse_args()
    args.requests = args.requests or (300 if args.quick else 20_000)
    args.timeout = args.timeout or (1.0 if args.quick else 30.0)
    args.recovery = (0.0 if args.quick else 120.0) if args.recovery is None else args.recovery
    uri_root = Path(tempfile.mkdtemp(prefix="gw-bench-uri-"))
    settings = {
        **ENGINES_OFF,
        "GATEWAY_WHISPER__ENABLED": "true",
        # The fuzz is about input handling; a greedy search keeps 20,000 requests within the hour.
        "GATEWAY_WHISPER__BEAM_SIZE": "1",
        "GATEWAY_LIMITS__URI_ROOTS": f'["{uri_root}"]',
        **dict(setting.split("=", 1) for setting in args.set),
    }
    with GatewayProcess(settings, args.redis_url) as gateway:
        print(f"config: gateway subprocess with {gateway.describe()}", flush=True)
        print("health: grpc.health.v1 Check every 20 ms from another process on its own channel", flush=True)
        asyncio.run(run(args, gateway, uri_root))


if __name__ == "__main__":
    main()
