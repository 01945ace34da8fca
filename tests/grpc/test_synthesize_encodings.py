"""Every output encoding round-trips: piper speaks, PyAV and ffmpeg decode, whisper hears the same words."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import common_pb2 as common
from tests import speech
from tests.encoded_audio import CONTAINERS, FORMATS, decode_ffmpeg, decode_pyav, slack_s, wav_seconds

pytestmark = pytest.mark.engines

TEXT = "Please bring the budget report to the meeting."

# format → (requested rate, the rate it must come out at)
CASES = {
    "wav": (pb.AUDIO_FORMAT_WAV, 0, 22050),
    "pcm16": (pb.AUDIO_FORMAT_PCM16, 16000, 16000),
    "mp3": (pb.AUDIO_FORMAT_MP3, 0, 22050),
    "mp3 at 44.1 kHz": (pb.AUDIO_FORMAT_MP3, 44100, 44100),
    # piper's 22.05 kHz is not an Opus rate: the next one up.
    "opus": (pb.AUDIO_FORMAT_OGG_OPUS, 0, 24000),
    "opus at 48 kHz": (pb.AUDIO_FORMAT_OGG_OPUS, 48000, 48000),
    "flac": (pb.AUDIO_FORMAT_FLAC, 0, 22050),
    "mulaw": (pb.AUDIO_FORMAT_MULAW, 0, 8000),
    "aac": (pb.AUDIO_FORMAT_AAC, 0, 22050),
    "aac at 16 kHz": (pb.AUDIO_FORMAT_AAC, 16000, 16000),
}

# Telephony audio carries nothing above 4 kHz, and piper varies its prosody from call to call: now and
# then tiny.en mishears a plosive pair there ("please bring" as "play spring"), so 8 kHz mu-law may lose
# two of the eight words where the wideband encodings may lose one.
MAX_WER = {pb.AUDIO_FORMAT_MULAW: 0.25}


@pytest.mark.parametrize("case", CASES)
async def test_synthesize_encoding_round_trips(stub, case):
    fmt, asked, expected_rate = CASES[case]
    reply = await stub.Synthesize(
        pb.SynthesizeRequest(
            text=TEXT,
            format=fmt,
            sample_rate=asked,
            routing=common.RoutingOptions(cache=common.CACHE_MODE_BYPASS),
        )
    )
    assert reply.mime_type.startswith(FORMATS[fmt][1])
    assert reply.sample_rate == expected_rate
    samples, rate, container = decode_pyav(reply.audio, fmt, reply.sample_rate)
    assert container.split(",")[0] == CONTAINERS[fmt]
    if fmt == pb.AUDIO_FORMAT_OGG_OPUS:
        # Opus always decodes at 48 kHz; the rate it was encoded from is in its OpusHead.
        head = reply.audio.index(b"OpusHead")
        assert int.from_bytes(reply.audio[head + 12 : head + 16], "little") == expected_rate
        assert rate == 48000
    else:
        assert rate == expected_rate
    # MP3 and AAC add their encoder delay and pad their last frame (Opus pre-skip is removed).
    assert samples.size / rate == pytest.approx(reply.duration_s, abs=slack_s(fmt, reply.sample_rate))
    assert np.abs(samples.astype(np.int32)).max() > 3000  # speech, not silence
    wav = decode_ffmpeg(reply.audio, fmt, reply.sample_rate)
    assert wav_seconds(wav) == pytest.approx(reply.duration_s, abs=slack_s(fmt, reply.sample_rate))
    back = await stub.Transcribe(pb.TranscribeRequest(audio=common.Audio(content=wav), language="en"))
    assert speech.wer([TEXT], [back.text]) <= MAX_WER.get(fmt, 0.15), back.text
