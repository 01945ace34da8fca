"""The incremental encoder: chunks joined are one playable file, whatever the encoding and chunking."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.core.audio import containers
from gateway.core.audio.encoder import Encoder, check_rate, encode_all, output_rate
from gateway.core.domain import OutputFormat
from gateway.core.errors import InvalidInput
from tests.encoded_audio import decode_ffmpeg, decode_pyav, slack_s, wav_seconds

PROTO = {
    OutputFormat.WAV: pb.AUDIO_FORMAT_WAV,
    OutputFormat.PCM16: pb.AUDIO_FORMAT_PCM16,
    OutputFormat.MP3: pb.AUDIO_FORMAT_MP3,
    OutputFormat.OGG_OPUS: pb.AUDIO_FORMAT_OGG_OPUS,
    OutputFormat.FLAC: pb.AUDIO_FORMAT_FLAC,
    OutputFormat.MULAW: pb.AUDIO_FORMAT_MULAW,
    OutputFormat.AAC: pb.AUDIO_FORMAT_AAC,
}


def _tone(seconds: float, rate: int, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * hz * t) * 12000).astype(np.int16)


def _dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.fft.rfftfreq(samples.size, 1 / rate)[int(np.argmax(spectrum))])


@pytest.mark.parametrize("fmt", list(OutputFormat))
def test_streamed_chunks_join_into_one_playable_file(fmt):
    rate = output_rate(fmt, None, 22050)
    encoder = Encoder(fmt, rate)
    source = _tone(1.5, 22050)
    # Uneven chunks, as sentences come out of an engine.
    chunks = [encoder.push(source[i : i + 7001], 22050) for i in range(0, source.size, 7001)]
    chunks.append(encoder.flush())
    assert any(chunks[:-1]), "nothing left before the flush: the stream would not be incremental"
    joined = b"".join(chunks)
    samples, decoded_rate, _ = decode_pyav(joined, PROTO[fmt], rate)
    # MP3 adds its encoder delay and pads the last frame (no gapless header on a stream): up to ~0.1 s.
    assert samples.size / decoded_rate == pytest.approx(1.5, abs=slack_s(PROTO[fmt], rate))
    assert _dominant_hz(samples, decoded_rate) == pytest.approx(440, abs=5)
    assert wav_seconds(decode_ffmpeg(joined, PROTO[fmt], rate)) == pytest.approx(
        1.5, abs=slack_s(PROTO[fmt], rate)
    )
    assert encoder.duration_s == pytest.approx(1.5, abs=0.01)


def test_whole_file_wav_has_exact_lengths_and_the_stream_an_open_one():
    source = _tone(0.5, 16000)
    whole, encoder = encode_all(source, 16000, OutputFormat.WAV, 16000)
    assert encoder.duration_s == pytest.approx(0.5)
    assert int.from_bytes(whole[40:44], "little") == source.size * 2
    streamed = Encoder(OutputFormat.WAV, 16000)
    first = streamed.push(source, 16000)
    assert first[:4] == b"RIFF" and first[40:44] == b"\xff\xff\xff\xff"
    assert first[44:] == whole[44:]


def test_a_fallback_voice_at_another_rate_is_resampled_in_place():
    encoder = Encoder(OutputFormat.FLAC, 16000)
    out = encoder.push(_tone(0.5, 22050, 300.0), 22050) + encoder.push(_tone(0.5, 24000, 600.0), 24000)
    out += encoder.flush()
    samples, rate, _ = decode_pyav(out, pb.AUDIO_FORMAT_FLAC, 16000)
    assert rate == 16000 and samples.size / rate == pytest.approx(1.0, abs=0.01)
    assert _dominant_hz(samples[: rate // 2 - 400], rate) == pytest.approx(300, abs=5)
    assert _dominant_hz(samples[rate // 2 + 400 :], rate) == pytest.approx(600, abs=5)


@pytest.mark.parametrize(
    ("fmt", "rate", "choices"),
    [
        (OutputFormat.OGG_OPUS, 44100, "8000, 12000, 16000, 24000, 48000"),
        (OutputFormat.MULAW, 16000, "8000"),
        (OutputFormat.MP3, 9000, "8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000"),
    ],
)
def test_rates_an_encoding_cannot_carry_are_refused_with_the_choices(fmt, rate, choices):
    with pytest.raises(
        InvalidInput, match=f"sample_rate {rate} is not supported by {fmt.value}; use one of {choices} Hz"
    ):
        check_rate(fmt, rate)


def test_default_rate_is_the_native_one_or_the_next_the_codec_takes():
    assert output_rate(OutputFormat.WAV, None, 22050) == 22050
    assert output_rate(OutputFormat.OGG_OPUS, None, 22050) == 24000
    assert output_rate(OutputFormat.OGG_OPUS, None, 44100) == 48000
    assert output_rate(OutputFormat.MULAW, None, 24000) == 8000
    assert output_rate(OutputFormat.MP3, 16000, 22050) == 16000


@pytest.mark.parametrize("rate", [8000, 22050, 48000])
def test_aac_chunks_are_whole_adts_frames(rate):
    encoder = Encoder(OutputFormat.AAC, rate)
    source = _tone(1.0, rate)
    chunks = [encoder.push(source[i : i + 3000], rate) for i in range(0, source.size, 3000)]
    chunks.append(encoder.flush())
    for chunk in filter(None, chunks):
        # Each chunk is a run of ADTS frames: a sync word, then frames whose 13-bit lengths tile the chunk.
        offset = 0
        while offset < len(chunk):
            assert chunk[offset] == 0xFF and chunk[offset + 1] & 0xF6 == 0xF0, "not an ADTS header"
            length = ((chunk[offset + 3] & 0x03) << 11) | (chunk[offset + 4] << 3) | (chunk[offset + 5] >> 5)
            offset += length
        assert offset == len(chunk)
    samples, decoded_rate, container = decode_pyav(b"".join(chunks), pb.AUDIO_FORMAT_AAC, rate)
    assert container == "aac" and decoded_rate == rate
    assert _dominant_hz(samples, rate) == pytest.approx(440, abs=5)


@pytest.mark.parametrize("fmt", [OutputFormat.WAV, OutputFormat.OGG_OPUS])
def test_a_long_utterance_is_encoded_whole_under_ffmpegs_allocation_cap(fmt):
    # The longest text a request may carry is minutes of speech. In one frame, 7 minutes at 22.05 kHz
    # resampled to 48 kHz passed the process-wide cap on FFmpeg's allocations, and the file came out empty.
    assert containers.cap_ffmpeg_allocations()  # as importing the module did, for the server
    source = _tone(420.0, 22050)
    body, encoder = encode_all(source, 22050, fmt, 48000)

    assert encoder.duration_s == pytest.approx(420.0, abs=0.1)
    if fmt is OutputFormat.WAV:
        assert wav_seconds(body) == pytest.approx(420.0, abs=0.1)
    else:
        samples, rate, _ = decode_pyav(body, PROTO[fmt], 48000)
        assert samples.size / rate == pytest.approx(420.0, abs=0.2)
