"""AudioIntake and Recording: reading sources, decoding lazily and once, in a pool that never stalls the
event loop."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator

import numpy as np
import pytest

from gateway.core.audio import AudioIntake, AudioLimits
from gateway.core.domain import AudioInput
from gateway.core.errors import InvalidInput, PermissionDenied, UnsupportedAudio
from tests import hostile_audio as hostile
from tests.audio_files import encode, tone

LIMITS = AudioLimits(max_bytes=25_000_000, max_duration_s=600.0)


@pytest.fixture
def intake() -> Iterator[AudioIntake]:
    pool = AudioIntake(LIMITS, decode_workers=2)
    yield pool
    pool.close()


def content(data: bytes, mime_type: str = "") -> AudioInput:
    return AudioInput(content=data, uri=None, mime_type=mime_type)


def uri(value: str) -> AudioInput:
    return AudioInput(content=None, uri=value, mime_type="")


async def test_open_probes_without_decoding_and_samples_decode_once_for_every_caller(intake):
    recording = await intake.open(content(encode(tone(2.0, 22_050), 22_050, "flac"), "audio/flac"))
    assert (recording.container, recording.codec) == ("flac", "flac")
    assert (recording.sample_rate, recording.channels) == (22_050, 1)
    assert recording.duration_s == pytest.approx(2.0)
    assert not recording.decode_started and intake.decodes_started == 0

    first, second, third = await asyncio.gather(*(recording.samples() for _ in range(3)))
    assert first is second is third
    assert await recording.samples() is first
    assert intake.decodes_started == 1
    assert len(first) == pytest.approx(32_000, abs=16) and first.dtype == np.float32


async def test_a_caller_that_gives_up_does_not_cancel_the_shared_decode(intake):
    recording = await intake.open(content(encode(tone(30.0), 16_000, "mp3")))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(recording.samples(), 0.0001)
    samples = await recording.samples()
    assert len(samples) / 16_000 == pytest.approx(30.0, abs=0.05)
    assert intake.decodes_started == 1


async def test_a_failed_decode_fails_every_caller_with_the_input_error(intake):
    recording = await intake.open(content(hostile.nan_wav(1.0), "audio/wav"))
    for _ in range(2):
        with pytest.raises(InvalidInput, match="NaN"):
            await recording.samples()
    assert intake.decodes_started == 1


async def test_a_missing_source_is_refused(intake):
    with pytest.raises(InvalidInput, match="audio is missing"):
        await intake.open(AudioInput(content=None, uri=None, mime_type=""))


# -- file:// URIs ---------------------------------------------------------------------------------


@pytest.fixture
def rooted(tmp_path) -> Iterator[tuple[AudioIntake, os.PathLike[str]]]:
    root = tmp_path / "uploads"
    root.mkdir()
    pool = AudioIntake(LIMITS, uri_roots=[root])
    yield pool, root
    pool.close()


async def test_a_file_uri_under_the_roots_is_read_and_probed(rooted):
    intake, root = rooted
    clip = root / "a clip.wav"
    clip.write_bytes(encode(tone(1.0), 16_000, "wav"))
    recording = await intake.open(uri(clip.as_uri()))
    assert recording.duration_s == pytest.approx(1.0)
    assert recording.original == clip.read_bytes()


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        ("bad%00name.wav", InvalidInput, "contains a NUL byte"),
        ("x" * 300 + ".wav", InvalidInput, "too long a file name"),
        ("missing.wav", InvalidInput, "does not name an existing file"),
        ("sub", InvalidInput, "not a regular file"),
        ("fifo.wav", InvalidInput, "not a regular file"),
        ("../outside.wav", PermissionDenied, "outside the allowed roots"),
        ("escape.wav", PermissionDenied, "outside the allowed roots"),
    ],
    ids=["%00", "300-character name", "missing", "directory", "fifo", "dot-dot", "symlink out"],
)
async def test_hostile_uris_get_precise_errors_that_echo_at_most_100_characters(rooted, name, error, message):
    intake, root = rooted
    (root / "sub").mkdir()
    os.mkfifo(root / "fifo.wav")
    outside = root.parent / "outside.wav"
    outside.write_bytes(b"RIFF")
    (root / "escape.wav").symlink_to(outside)
    started = time.perf_counter()
    with pytest.raises(error) as caught:
        await intake.open(uri(f"file://{root}/{name}"))
    # A FIFO must be refused, not read (which would block until a writer came).
    assert time.perf_counter() - started < 2.0
    assert message in str(caught.value)
    assert "x" * 101 not in str(caught.value)
    assert len(str(caught.value)) < 250


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("https://example.com/a.wav", "scheme 'https' is not supported"),
        ("file://other-host/a.wav", "only files on this server"),
        ("file://[::1/a.wav", "not a valid URI"),
    ],
)
async def test_uris_that_are_not_local_files_are_refused(rooted, value, message):
    intake, _ = rooted
    with pytest.raises(InvalidInput, match=message):
        await intake.open(uri(value))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
async def test_an_unreadable_file_is_a_permission_error(rooted):
    intake, root = rooted
    secret = root / "secret.wav"
    secret.write_bytes(encode(tone(0.5), 16_000, "wav"))
    secret.chmod(0)
    with pytest.raises(PermissionDenied, match="may not read"):
        await intake.open(uri(secret.as_uri()))


# -- the event loop while hostile decodes run -----------------------------------------------------


async def test_the_event_loop_stays_responsive_while_hostile_uploads_are_probed_and_decoded():
    rng = np.random.default_rng(7)
    loud_192k = (rng.standard_normal(192_000 * 2 * 30) * 3000).astype("<i2").tobytes()
    uploads = {
        "layout switches": (hostile.layout_switching_mp3(60.0, switches=39), None),
        "NaN after 2 min": (hostile.nan_wav(0.5, clean_s=120.0), InvalidInput),
        "192 kHz stereo": (hostile.wav(loud_192k, channels=2, rate=192_000), None),
        "1.96 GHz": (hostile.gigahertz_wav(), UnsupportedAudio),
    }
    intake = AudioIntake(LIMITS, decode_workers=2)
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    async def take(data: bytes) -> np.ndarray:
        return await (await intake.open(content(data))).samples()

    # Three of each: on a fast CPU one of each is done in under 0.2 s, too soon to say anything.
    batch = list(uploads.items()) * 3
    ticking = asyncio.create_task(ticker())
    started = time.perf_counter()
    try:
        results = await asyncio.gather(*(take(data) for _, (data, _) in batch), return_exceptions=True)
    finally:
        done.set()
        await ticking
        intake.close()
    busy_s = time.perf_counter() - started
    for (name, (_, expected)), result in zip(batch, results, strict=True):
        if expected is None:
            assert isinstance(result, np.ndarray), f"{name}: {result!r}"
        else:
            assert isinstance(result, expected), f"{name}: {result!r}"
    assert busy_s > 0.3, "the decodes were too quick to say anything about the loop"
    assert max(gaps) < 0.1, f"the loop stalled for {max(gaps) * 1000:.0f} ms"
