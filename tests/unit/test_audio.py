from __future__ import annotations

import numpy as np
import pytest

from gateway.core import audio
from gateway.core.errors import InvalidInput, LimitExceeded, PermissionDenied, UnsupportedAudio
from gateway.settings import LimitSettings
from tests.audio_files import FORMATS, MIME, encode, tone

LIMITS = audio.AudioLimits(max_bytes=5_000_000, max_duration_s=60.0)


def decoded(data: bytes, mime_type: str = "") -> tuple[audio.ProbeResult, np.ndarray]:
    probed = audio.probe(data, mime_type, LIMITS)
    return probed, audio.decode_samples(data, probed, LIMITS)


@pytest.mark.parametrize("kind", FORMATS)
@pytest.mark.parametrize("hint", [True, False])
def test_probes_and_decodes_each_container_to_16k_mono_with_exact_duration(kind, hint):
    data = encode(tone(2.5, 22_050), 22_050, kind)
    probed, samples = decoded(data, MIME[kind] if hint else "")
    # Within one codec frame: encoders pad the last one (AAC 1024 samples, MP3 1152).
    assert probed.duration_s == pytest.approx(2.5, abs=0.05)
    assert (probed.channels, probed.sample_rate) == (1, FORMATS[kind][2])
    assert samples.dtype == np.float32
    # AAC also decodes its 1024 priming samples, which this muxer writes no edit list to trim.
    assert len(samples) / 16_000 == pytest.approx(2.5, abs=0.06)
    assert 0.2 < float(np.abs(samples).max()) <= 1.0
    assert not samples.flags.writeable


def test_a_wrong_mime_hint_does_not_reject_good_audio():
    data = encode(tone(1.0), 16_000, "flac")
    assert audio.probe(data, "audio/mpeg", LIMITS).duration_s == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("kind", ["wav", "flac", "mp3", "ogg", "webm"])
def test_rejects_a_file_cut_in_half(kind):
    data = encode(tone(3.0), 16_000, kind)
    with pytest.raises(UnsupportedAudio, match="truncated"):
        audio.probe(data[: len(data) // 2], MIME[kind], LIMITS)


def test_streamed_wav_without_a_size_is_accepted():
    data = bytearray(encode(tone(1.0), 16_000, "wav"))
    at = data.find(b"data")
    data[at + 4 : at + 8] = (0x7FFFF000).to_bytes(4, "little")
    assert audio.probe(bytes(data), "audio/wav", LIMITS).duration_s == pytest.approx(1.0, abs=0.01)


def test_wav_duration_counts_the_bytes_present_not_the_header_byte_rate():
    data = bytearray(encode(tone(2.0), 16_000, "wav"))
    # The header's byte rate and block align claim four times the real frame size.
    data[28:32] = (16_000 * 8).to_bytes(4, "little")
    data[32:34] = (8).to_bytes(2, "little")
    probed, samples = decoded(bytes(data), "audio/wav")
    assert probed.duration_s == pytest.approx(2.0)
    assert len(samples) == pytest.approx(2.0 * 16_000, abs=16)


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
        audio.probe(data, "", LIMITS)


def test_a_mime_type_is_echoed_clipped():
    with pytest.raises(UnsupportedAudio) as caught:
        audio.probe(b"not audio at all" * 20, "audio/" + "x" * 500, LIMITS)
    assert "audio/xxx" in str(caught.value)
    assert len(str(caught.value)) < 200


def test_duration_limit_is_enforced_by_the_probe():
    data = encode(tone(61.0, 8_000), 8_000, "flac")
    with pytest.raises(LimitExceeded, match="60 s limit"):
        audio.probe(data, "", LIMITS)


def test_resample_and_encode_round_trip():
    samples = tone(1.0, 22_050)
    out = audio.resample_pcm16(samples, 22_050, 16_000)
    assert out.dtype == np.int16 and len(out) == pytest.approx(16_000, abs=64)
    wav = audio.encode_wav(out, 16_000)
    assert audio.probe(wav, "audio/wav", LIMITS).duration_s == pytest.approx(len(out) / 16_000)
    assert audio.encode_pcm16(out) == out.astype("<i2").tobytes()
    # Float samples are scaled from [-1, 1] to full-scale 16-bit.
    pcm, rate = audio.decode_pcm16(audio.encode_wav(np.array([0.5, -1.0], np.float32), 16_000))
    assert rate == 16_000 and pcm.tolist() == [16384, -32767]


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
    with pytest.raises(LimitExceeded, match="the limit is 100 bytes"):
        audio.read_uri(clip.as_uri(), limits.uri_roots, 100)
