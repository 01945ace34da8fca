"""StreamSynthesize with the real piper engine: chunks in order, joined into one playable file."""

from __future__ import annotations

import itertools

import grpc
import pytest

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import common_pb2 as common
from tests import speech
from tests.encoded_audio import decode_ffmpeg, decode_pyav, slack_s, wav_seconds

pytestmark = pytest.mark.engines

TEXT = "Please bring the budget report. The meeting moved to Thursday! Is the room booked?"
SENTENCES = ["Please bring the budget report.", "The meeting moved to Thursday!", "Is the room booked?"]
BYPASS = common.RoutingOptions(cache=common.CACHE_MODE_BYPASS)

FORMATS = {
    "wav": pb.AUDIO_FORMAT_WAV,
    "pcm16": pb.AUDIO_FORMAT_PCM16,
    "mp3": pb.AUDIO_FORMAT_MP3,
    "opus": pb.AUDIO_FORMAT_OGG_OPUS,
    "flac": pb.AUDIO_FORMAT_FLAC,
    "mulaw": pb.AUDIO_FORMAT_MULAW,
    "aac": pb.AUDIO_FORMAT_AAC,
}


async def _chunks(stub, request: pb.SynthesizeRequest) -> list[pb.SynthesizeChunk]:
    return [chunk async for chunk in stub.StreamSynthesize(request)]


@pytest.mark.parametrize("name", FORMATS)
async def test_joined_chunks_play_as_one_file_and_say_the_text(stub, name):
    fmt = FORMATS[name]
    chunks = await _chunks(stub, pb.SynthesizeRequest(text=TEXT, format=fmt, routing=BYPASS))
    assert [c.sequence for c in chunks] == list(range(len(chunks)))
    spoken, last = chunks[:-1], chunks[-1]
    # One chunk per sentence from piper, each naming the text it speaks.
    assert [TEXT[c.text_start : c.text_end] for c in spoken] == SENTENCES
    assert all(c.audio for c in spoken)
    for before, after in itertools.pairwise(spoken):
        assert after.start_s == pytest.approx(before.start_s + before.duration_s)
    assert len({(c.mime_type, c.sample_rate) for c in chunks}) == 1
    assert not any(c.HasField("route") for c in spoken)
    assert last.route.provider == "piper" and last.route.cost_usd
    assert [a.outcome for a in last.route.attempts] == ["ok"]
    assert last.characters == sum(len(s) for s in SENTENCES)
    total = last.start_s
    joined = b"".join(c.audio for c in chunks)
    samples, rate, _ = decode_pyav(joined, fmt, last.sample_rate)
    assert samples.size / rate == pytest.approx(total, abs=slack_s(fmt, last.sample_rate))
    wav = decode_ffmpeg(joined, fmt, last.sample_rate)
    assert wav_seconds(wav) == pytest.approx(total, abs=slack_s(fmt, last.sample_rate))
    back = await stub.Transcribe(pb.TranscribeRequest(audio=common.Audio(content=wav), language="en"))
    # Piper samples noise, so its speech, and what tiny.en hears in it, varies from run to run. A lost or
    # repeated chunk costs at least the words of the shortest sentence; mishearing costs fewer.
    shortest = min(len(sentence.split()) for sentence in SENTENCES)
    assert speech.wer([TEXT], [back.text]) < shortest / len(TEXT.split()), back.text


async def test_bad_stream_requests_are_invalid_argument(stub):
    for request, message in [
        (pb.SynthesizeRequest(text="Hi.", format=99), "AUDIO_FORMAT_MULAW"),
        (pb.SynthesizeRequest(text="Hi.", format=pb.AUDIO_FORMAT_OGG_OPUS, sample_rate=44100), "8000, 12000"),
        (
            pb.SynthesizeRequest(text="Hi.", format=pb.AUDIO_FORMAT_MULAW, sample_rate=16000),
            "use one of 8000 Hz",
        ),
        (pb.SynthesizeRequest(text="  "), "text is empty"),
        (pb.SynthesizeRequest(text="Hi.", voice="nobody"), "en_US-joe-medium"),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _chunks(stub, request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, request
        assert message in caught.value.details()
