"""Probing and the bounded decode, on the hostile inputs that once stalled or crashed the gateway,
on real files of every container, and on a few thousand seeded mutations of them."""

from __future__ import annotations

import dataclasses
import io
import random
import subprocess
import sys
import time

import av
import numpy as np
import pytest

from gateway.core import audio
from gateway.core.errors import GatewayError, InvalidInput, LimitExceeded, UnsupportedAudio
from tests import hostile_audio as hostile
from tests.audio_files import FORMATS, MIME, encode, tone

LIMITS = audio.AudioLimits(max_bytes=5_000_000, max_duration_s=600.0)


def probe_and_decode(data: bytes, mime_type: str = "", limits: audio.AudioLimits = LIMITS) -> np.ndarray:
    return audio.decode_samples(data, audio.probe(data, mime_type, limits), limits)


# -- refused by the probe, before any decoding ------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (hostile.gigahertz_wav, "a sample rate of 1962950272 Hz; accepted rates are 8000–192000 Hz"),
        (hostile.one_hertz_wav, "a sample rate of 1 Hz; accepted rates are 8000–192000 Hz"),
        (hostile.zero_bits_wav, "0 bits per sample"),
        (hostile.extensible_wav, "unrecognised format tag"),
        (lambda: hostile.wav(hostile.pcm16(1.0) * 12, channels=12), "12 channels; accepted are 1–8"),
        (lambda: hostile.wav(hostile.pcm16(1.0), channels=0, block_align=2), "0 channels"),
    ],
    ids=["1.96 GHz", "1 Hz", "0 bits per sample", "format tag 0xFFFE", "12 channels", "0 channels"],
)
def test_headers_no_recording_has_are_refused_fast_by_the_probe(make, message):
    started = time.perf_counter()
    with pytest.raises(UnsupportedAudio) as caught:
        audio.probe(make(), "audio/wav", LIMITS)
    assert message in str(caught.value)
    assert "re-encode" in str(caught.value) or "resample" in str(caught.value) or "mix" in str(caught.value)
    assert time.perf_counter() - started < 0.5


def test_a_wav_chunk_claiming_more_than_the_file_holds_is_refused_before_ffmpeg_reads_it():
    started = time.perf_counter()
    with pytest.raises(UnsupportedAudio, match="'LIST' chunk declares 400000000 bytes but only"):
        audio.probe(hostile.info_bomb_wav(), "audio/wav", LIMITS)
    assert time.perf_counter() - started < 0.1
    # A metadata chunk a truncated copy cut short by a few bytes is still FFmpeg's to judge.
    cut = hostile.wav(hostile.pcm16(1.0)) + b"LIST" + (100).to_bytes(4, "little") + b"INFO"
    assert audio.probe(cut, "audio/wav", LIMITS).duration_s == pytest.approx(1.0)


_ALLOCATION_PROBE = """
import resource, sys
from tests import hostile_audio as hostile
from gateway.core.audio.containers import MEDIA_ERRORS, open_input
data = hostile.info_bomb_wav(int(sys.argv[1]))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    with open_input(data, "audio/wav") as container:
        list(container.demux())
    outcome = "opened"
except MEDIA_ERRORS as exc:
    outcome = type(exc).__name__
print(outcome, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


@pytest.mark.parametrize("claimed", [400_000_000, 2_000_000_000])
def test_ffmpeg_refuses_an_allocation_a_header_sizes_past_the_cap(claimed):
    # Straight to FFmpeg, past the probe's own check: the process-wide cap is what bounds any container.
    run = subprocess.run(
        [sys.executable, "-c", _ALLOCATION_PROBE, str(claimed)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    outcome, grown_mib = run.stdout.split()
    assert outcome != "opened"
    assert int(grown_mib) < 32, run.stdout


def test_the_rate_and_channel_bounds_are_configurable():
    tight = dataclasses.replace(LIMITS, min_sample_rate=16_000, max_channels=1)
    with pytest.raises(UnsupportedAudio, match="8000 Hz; accepted rates are 16000–192000 Hz"):
        audio.probe(hostile.wav(hostile.pcm16(1.0, 8_000), rate=8_000), "", tight)
    with pytest.raises(UnsupportedAudio, match="2 channels; accepted are 1–1"):
        audio.probe(hostile.wav(hostile.pcm16(1.0), channels=2), "", tight)


def _sparse_opus(container: str, gap_s: float) -> bytes:
    """One second of Opus silence whose packets are stamped ``gap_s`` apart."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as out:
        stream = out.add_stream("libopus", rate=48_000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 48_000), np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 48_000, 0
        resampler = av.AudioResampler(format=stream.codec_context.format, layout="mono", rate=48_000)
        packets = [p for f in resampler.resample(frame) for p in stream.encode(f)] + stream.encode(None)
        for i, packet in enumerate(packets):
            packet.pts = packet.dts = int(i * gap_s * 48_000)
            out.mux(packet)
    return buffer.getvalue()


@pytest.mark.parametrize("container", ["webm", "ogg"])
def test_timestamps_that_claim_more_audio_than_the_bytes_hold_are_refused(container):
    with pytest.raises(UnsupportedAudio) as caught:
        audio.probe(_sparse_opus(container, gap_s=10.0), "", LIMITS)
    assert "timestamps claim" in str(caught.value) and "bytes of encoded audio" in str(caught.value)


@pytest.mark.parametrize(
    ("kind", "rate"), [("flac", 8_000), ("flac", 48_000), ("ogg", 48_000), ("m4a", 8_000)]
)
def test_silence_is_not_mistaken_for_a_crafted_file(kind, rate):
    """The bytes-per-second floor sits below the cheapest real encoding of a recording: silence."""
    data = encode(np.zeros(8_000 * 20, np.int16), 8_000, kind, codec_rate=rate)
    # Within one codec frame: an AAC frame at 8 kHz is 0.128 s.
    assert audio.probe(data, MIME[kind], LIMITS).duration_s == pytest.approx(20.0, abs=0.15)


def test_a_container_with_too_many_packets_for_the_probe_budget_is_refused():
    data = encode(tone(12.0), 16_000, "ogg")  # 600 packets of 20 ms
    with pytest.raises(UnsupportedAudio, match="CPU"):
        audio.probe(data, "audio/ogg", dataclasses.replace(LIMITS, probe_cpu_s=1e-9))


def test_a_long_upload_is_refused_as_over_the_limit_without_reading_it_all():
    data = encode(tone(45.0, 8_000), 8_000, "mp3")
    with pytest.raises(LimitExceeded, match=r"past the 15 s limit \(reading stopped at 15\.\d s\)"):
        audio.probe(data, "audio/mpeg", dataclasses.replace(LIMITS, max_duration_s=15.0))


# -- accepted by the probe, bounded by the decode ---------------------------------------------------


def test_nan_samples_are_refused_by_the_decode():
    data = hostile.nan_wav(1.0)
    assert audio.probe(data, "audio/wav", LIMITS).duration_s == pytest.approx(1.0)
    with pytest.raises(InvalidInput, match="NaN or infinite"):
        probe_and_decode(data, "audio/wav")
    with pytest.raises(InvalidInput, match="NaN or infinite"):
        probe_and_decode(hostile.float_wav(np.full(16_000, np.inf, np.float32)))


def test_float_samples_beyond_full_scale_are_clipped():
    samples = probe_and_decode(hostile.float_wav(np.full(16_000, 1e30, np.float32)))
    assert float(samples.max()) == 1.0


def test_frames_that_switch_between_mono_and_stereo_decode():
    data = hostile.layout_switching_mp3(3.0, switches=5)
    probed = audio.probe(data, "audio/mpeg", LIMITS)
    samples = audio.decode_samples(data, probed, LIMITS)
    assert len(samples) / 16_000 == pytest.approx(probed.duration_s, abs=0.05)
    assert 0.1 < float(np.abs(samples).max()) <= 1.0


def test_an_mp3_without_a_frame_count_is_measured_not_called_truncated():
    # No Xing header, and a first frame at a lower bitrate than the rest: FFmpeg's size/bitrate
    # estimate of the duration is half again too long.
    data = hostile.layout_switching_mp3(40.0, switches=1)
    assert audio.probe(data, "audio/mpeg", LIMITS).duration_s == pytest.approx(40.0, abs=0.2)


def test_a_decode_that_yields_more_than_the_probe_measured_is_stopped():
    data = encode(tone(10.0), 16_000, "flac")
    lying = dataclasses.replace(audio.probe(data, "", LIMITS), duration_s=2.0)
    with pytest.raises(UnsupportedAudio, match=r"decodes to more than 2\.6 s"):
        audio.decode_samples(data, lying, LIMITS)


def test_a_decode_over_its_cpu_budget_is_stopped():
    data = encode(tone(20.0), 16_000, "mp3")
    stingy = dataclasses.replace(LIMITS, decode_cpu_s=0.001, decode_cpu_s_per_audio_s=0.0)
    with pytest.raises(UnsupportedAudio, match="CPU"):
        probe_and_decode(data, "audio/mpeg", stingy)


# -- the probe measures what the old decode did ------------------------------------------------------


def _decoded_duration_s(data: bytes) -> float:
    """What the gateway used to bill: every sample FFmpeg decodes, at the source rate."""
    with av.open(io.BytesIO(data)) as container:
        frames = list(container.decode(audio=0))
    return sum(f.samples for f in frames) / frames[0].sample_rate


@pytest.mark.parametrize("kind", FORMATS)
@pytest.mark.parametrize("seconds", [0.3, 7.5])
def test_the_probe_measures_the_duration_a_full_decode_does(kind, seconds):
    data = encode(tone(seconds, 22_050), 22_050, kind)
    probed = audio.probe(data, MIME[kind], LIMITS)
    # Within one codec frame (AAC decodes its priming frame, which this muxer does not trim).
    assert probed.duration_s == pytest.approx(_decoded_duration_s(data), abs=0.05)
    assert probed.duration_s == pytest.approx(seconds, abs=0.05)


# -- mutation fuzz --------------------------------------------------------------------------------

FUZZ_CASES = 3000
FUZZ_BOUND_S = 2.0


def _mutate(rng: random.Random, data: bytes, donors: list[bytes]) -> bytes:
    out = bytearray(data)
    operation = rng.randrange(5)
    if operation == 0:  # scattered byte flips
        for _ in range(rng.randint(1, 16)):
            out[rng.randrange(len(out))] = rng.randrange(256)
    elif operation == 1:  # flips in the header
        for _ in range(rng.randint(1, 8)):
            out[rng.randrange(min(len(out), 96))] = rng.randrange(256)
    elif operation == 2:  # truncation
        del out[rng.randrange(1, len(out)) :]
    elif operation == 3:  # a splice from another container
        donor = rng.choice(donors)
        start = rng.randrange(len(donor))
        at = rng.randrange(len(out))
        out[at:at] = donor[start : start + rng.randrange(1, 4096)]
    else:  # a stretch of the file repeated elsewhere
        start = rng.randrange(len(out))
        at = rng.randrange(len(out))
        out[at:at] = out[start : rng.randrange(start, len(out) + 1)]
    return bytes(out)


def test_mutated_files_raise_only_our_input_errors_and_return_promptly():
    rng = random.Random(20_240_601)
    seeds = {kind: encode(tone(0.25, 22_050), 22_050, kind) for kind in FORMATS}
    donors = list(seeds.values())
    limits = dataclasses.replace(LIMITS, max_duration_s=60.0)
    outcomes: dict[str, int] = {}
    slowest = 0.0
    for _ in range(FUZZ_CASES):
        kind = rng.choice(list(seeds))
        data = _mutate(rng, seeds[kind], donors)
        mime = MIME[kind] if rng.random() < 0.5 else ""
        started = time.perf_counter()
        try:
            probed = audio.probe(data, mime, limits)
            audio.decode_samples(data, probed, limits)
            outcome = "decoded"
        except (InvalidInput, LimitExceeded) as exc:
            outcome = type(exc).__name__
        except GatewayError as exc:  # pragma: no cover - the assertion below names it
            pytest.fail(f"{type(exc).__name__} is not an input error: {exc}")
        slowest = max(slowest, time.perf_counter() - started)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert slowest < FUZZ_BOUND_S
    # The mutations exercise both sides: plenty still decode, plenty are refused.
    assert outcomes.get("decoded", 0) > FUZZ_CASES // 5
    assert outcomes.get("UnsupportedAudio", 0) > FUZZ_CASES // 5


# -- the header-only probe of plain PCM WAV -----------------------------------------------------------


@pytest.mark.parametrize("bits", [8, 16, 24, 32])
@pytest.mark.parametrize(("channels", "rate"), [(1, 8_000), (2, 44_100), (1, 16_000)])
@pytest.mark.parametrize("streamed", [False, True], ids=["sized", "streamed size"])
def test_a_plain_pcm_wav_is_measured_from_its_header_as_the_full_probe_measures_it(
    bits, channels, rate, streamed
):
    frames = int(rate * 0.75)
    body = bytes(random.Random(bits).randrange(256) for _ in range(64)) * (frames * channels * bits // 512)
    data = hostile.wav(body, channels=channels, rate=rate, bits=bits)
    if streamed:  # what a writer to a pipe leaves: a data size of 0
        at = data.index(b"data") + 4
        data = data[:at] + b"\x00\x00\x00\x00" + data[at + 4 :]
    quick = audio.quick_pcm_wav(data, LIMITS)
    assert quick is not None
    assert quick == audio.probe(data, "", LIMITS)


@pytest.mark.parametrize(
    "make",
    [
        lambda: hostile.float_wav(tone(0.5).astype(np.float32) / 32768),
        hostile.extensible_wav,
        hostile.zero_bits_wav,
        lambda: hostile.wav(hostile.pcm16(0.5), channels=0, block_align=2),
        lambda: encode(tone(0.5), 16_000, "flac"),
        # Real files have a handful of chunks before the audio; hundreds are left to FFmpeg.
        lambda: hostile.wav(hostile.pcm16(0.5)).replace(b"data", b"JUNK\x00\x00\x00\x00" * 300 + b"data", 1),
    ],
    ids=["float", "extensible", "0 bits", "0 channels", "flac", "300 chunks before the data"],
)
def test_what_the_header_probe_does_not_recognise_is_left_to_the_full_probe(make):
    assert audio.quick_pcm_wav(make(), LIMITS) is None


def test_the_header_probe_refuses_what_the_full_probe_refuses():
    for make in (hostile.gigahertz_wav, hostile.one_hertz_wav):
        with pytest.raises(UnsupportedAudio, match="accepted rates are"):
            audio.quick_pcm_wav(make(), LIMITS)
    truncated = hostile.wav(hostile.pcm16(1.0))[:-8000]
    with pytest.raises(UnsupportedAudio, match="truncated"):
        audio.quick_pcm_wav(truncated, LIMITS)


def test_mutated_wavs_get_the_full_probes_verdict_from_the_header_probe():
    rng = random.Random(11)
    original = hostile.wav(hostile.pcm16(0.5), channels=1)
    for _ in range(2_000):
        data = bytearray(original)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(0, 64)] = rng.randrange(256)
        try:
            quick = audio.quick_pcm_wav(bytes(data), LIMITS)
        except GatewayError as exc:
            with pytest.raises(type(exc)):
                audio.probe(bytes(data), "", LIMITS)
            continue
        if quick is not None:
            assert quick == audio.probe(bytes(data), "", LIMITS)
