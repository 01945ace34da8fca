"""Transcribe's response_format over gRPC: real speech from the local engine as text, SRT and WebVTT."""

from __future__ import annotations

import io
import itertools
import re
from datetime import timedelta

import grpc
import pytest
import srt
import webvtt

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import common_pb2 as common
from gateway.core.subtitles import MAX_CUE_S, MAX_LINE_COLUMNS, columns
from tests import speech

pytestmark = pytest.mark.engines


@pytest.fixture(scope="module")
def clip() -> bytes:
    return speech.piper_wav(" ".join(speech.SENTENCES[:3]))


def _words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower())


async def test_srt_follows_the_word_times(stub, clip):
    reply = await stub.Transcribe(
        pb.TranscribeRequest(
            audio=common.Audio(content=clip), word_timestamps=True, response_format=pb.TRANSCRIPT_FORMAT_SRT
        )
    )
    cues = list(srt.parse(reply.formatted, ignore_errors=False))
    assert len(cues) >= 2
    # The structured transcript is still there, and the cues show exactly its words.
    assert reply.words and reply.segments
    assert _words(" ".join(c.content for c in cues)) == _words(reply.text)
    starts = {round(w.start_s, 3) for w in reply.words}
    for cue in cues:
        assert round(cue.start.total_seconds(), 3) in starts
        assert cue.end - cue.start <= timedelta(seconds=MAX_CUE_S)
        assert all(columns(line) <= MAX_LINE_COLUMNS for line in cue.content.split("\n"))
    assert all(a.end <= b.start for a, b in itertools.pairwise(cues))
    assert cues[-1].end.total_seconds() <= reply.duration_s + 0.5


async def test_vtt_and_text_without_word_timestamps(stub, clip):
    vtt = await stub.Transcribe(
        pb.TranscribeRequest(audio=common.Audio(content=clip), response_format=pb.TRANSCRIPT_FORMAT_VTT)
    )
    assert vtt.formatted.startswith("WEBVTT\n\n")
    cues = list(webvtt.from_buffer(io.StringIO(vtt.formatted)))
    assert cues and _words(" ".join(c.text for c in cues)) == _words(vtt.text)
    assert not vtt.words  # no word times asked for: the cues share out the segments' times
    text = await stub.Transcribe(
        pb.TranscribeRequest(audio=common.Audio(content=clip), response_format=pb.TRANSCRIPT_FORMAT_TEXT)
    )
    assert text.formatted == text.text.strip() + "\n"
    plain = await stub.Transcribe(pb.TranscribeRequest(audio=common.Audio(content=clip)))
    assert plain.formatted == "" and plain.text == text.text


async def test_an_unknown_format_is_invalid_argument(stub, clip):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Transcribe(pb.TranscribeRequest(audio=common.Audio(content=clip), response_format=99))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "response_format" in (caught.value.details() or "")
