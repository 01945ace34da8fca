from __future__ import annotations

import numpy as np
import pytest

from gateway.core import audio
from gateway.core.errors import InvalidInput, LimitExceeded, PermissionDenied, UnsupportedAudio
from gateway.settings import LimitSettings
from tests.audio_files import FORMATS, MIME, encode, tone

LIMITS = audio.AudioLimits(max_bytes=5_000_000, max_duration_s=60.0)


@pytest.mark.parametrize("kind", FORMATS)
@pytest.mark.parametrize("hint", [True, False])
def test_decodes_each_container_to_16k_mono_with_exact_duration(kind, hint):
    data = encode(tone(2.5, 22_050), 22_050, kind)
    decoded = audio.decode(data, MIME[kind] if hint else "", LIMITS)
    assert decoded.duration_s == pytest.approx(2.5, abs=0.03)
    assert decoded.samples.dtype == np.float32
    assert len(decoded.samples) == pytest.approx(2.5 * 16_000, rel=0.02)
    assert 0.2 < float(np.abs(decoded.samples).max()) <= 1.0


def test_a_wrong_mime_hint_does_not_reject_good_audio():
    data = encode(tone(1.0), 16_000, "flac")
    assert audio.decode(data, "audio/mpeg", LIMITS).duration_s == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("kind", ["wav", "flac", "mp3", "ogg", "webm"])
def test_rejects_a_file_cut_in_half(kind):
    data = encode(tone(3.0), 16_000, kind)
    with pytest.raises(UnsupportedAudio):
        audio.decode(data[: len(data) // 2], MIME[kind], LIMITS)


def test_streamed_wav_without_a_size_is_accepted():
    data = bytearray(encode(tone(1.0), 16_000, "wav"))
    at = data.find(b"data")
    data[at + 4 : at + 8] = (0x7FFFF000).to_bytes(4, "little")
    assert audio.decode(bytes(data), "audio/wav", LIMITS).duration_s == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (b"", InvalidInput, "empty"),
        (b"just some text, definitely not audio" * 10, UnsupportedAudio, "not decodable"),
        (b"\0" * 5_000_001, LimitExceeded, "5000001 bytes"),
    ],
)
def test_rejects_bad_bytes(data, error, message):
    with pytest.raises(error, match=message):
        audio.decode(data, "", LIMITS)


def test_duration_limit_is_enforced_while_decoding():
    data = encode(tone(61.0, 8_000), 8_000, "flac")
    with pytest.raises(LimitExceeded, match="60 s limit"):
        audio.decode(data, "", LIMITS)


def test_resample_and_encode_round_trip():
    samples = tone(1.0, 22_050)
    out = audio.resample_pcm16(samples, 22_050, 16_000)
    assert out.dtype == np.int16 and len(out) == pytest.approx(16_000, abs=64)
    wav = audio.encode_wav(out, 16_000)
    assert audio.decode(wav, "audio/wav", LIMITS).duration_s == pytest.approx(len(out) / 16_000)
    assert audio.encode_pcm16(out) == out.astype("<i2").tobytes()


def test_file_uris_are_confined_to_the_allowed_roots(tmp_path):
    clip = tmp_path / "in" / "a.wav"
    clip.parent.mkdir()
    clip.write_bytes(encode(tone(0.5), 16_000, "wav"))
    outside = tmp_path / "secret.wav"
    outside.write_bytes(clip.read_bytes())
    limits = LimitSettings(uri_roots=[tmp_path / "in"])
    assert audio.read_uri(clip.as_uri(), limits.uri_roots, limits.max_audio_bytes) == clip.read_bytes()
    with pytest.raises(PermissionDenied, match="outside the allowed roots"):
        audio.read_uri(outside.as_uri(), limits.uri_roots, limits.max_audio_bytes)
    with pytest.raises(PermissionDenied, match="outside the allowed roots"):
        audio.read_uri(f"file://{tmp_path}/in/../secret.wav", limits.uri_roots, limits.max_audio_bytes)
    with pytest.raises(InvalidInput, match="scheme 'http'"):
        audio.read_uri("http://example.invalid/a.wav", limits.uri_roots, limits.max_audio_bytes)
    with pytest.raises(PermissionDenied, match="disabled"):
        audio.read_uri(clip.as_uri(), [], LimitSettings().max_audio_bytes)
