"""Replies to cache hits: a payload is decoded once, a transcript's protobuf body built once, and every
reply still carries its own duration and route."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.cache import codec
from gateway.core.domain import RouteInfo, TranscribeResult
from gateway.core.provider_types import SegmentTiming, Transcript, Usage, WordTiming
from gateway.core.subtitles import TranscriptFormat
from gateway.grpc import converters

WORDS = (WordTiming("hello", 0.0, 0.4, 0.9), WordTiming("there", 0.5, 0.9, 0.8))
TRANSCRIPT = Transcript(
    text="hello there",
    language="en",
    segments=(SegmentTiming("hello there", 0.0, 0.9, words=WORDS),),
    usage=Usage(),
    language_probability=0.97,
)
PAYLOAD = codec.encode_transcript(TRANSCRIPT)


def hit(transcript: Transcript, request_id: str, duration_s: float = 0.9) -> TranscribeResult:
    route = RouteInfo(request_id=request_id, policy="default", provider="openai-whisper", cache_hit=True)
    route.saved_usd = Decimal("0.0001")
    return TranscribeResult(
        text=transcript.text,
        language=transcript.language,
        duration_s=duration_s,
        segments=transcript.segments,
        route=route,
        language_probability=transcript.language_probability,
    )


def test_a_payload_is_decoded_once_while_it_is_recent():
    calls: list[bytes] = []

    def decode(payload: bytes) -> Transcript:
        calls.append(payload)
        return codec.decode_transcript(payload)

    recent = codec.RecentDecodes(decode, max_entries=2)
    first = recent(PAYLOAD)
    # A payload read again from Redis is another bytes object with the same contents.
    assert recent(bytes(bytearray(PAYLOAD))) is first
    assert len(calls) == 1
    others = [codec.encode_transcript(replace(TRANSCRIPT, text=f"take {n}")) for n in range(2)]
    for other in others:
        recent(other)
    recent(PAYLOAD)  # pushed out by the two others: decoded again
    assert len(calls) == 4


def test_large_payloads_are_not_held():
    calls: list[bytes] = []
    recent = codec.RecentDecodes(lambda p: calls.append(p) or len(p), max_bytes=10 * (len(PAYLOAD) - 1))
    recent(PAYLOAD)
    recent(PAYLOAD)
    assert len(calls) == 2


def test_an_unreadable_payload_raises_every_time():
    recent = codec.RecentDecodes(codec.decode_transcript)
    for _ in range(2):
        with pytest.raises(codec.PayloadError):
            recent(b'{"v": 0}')


@pytest.mark.parametrize("fmt", [TranscriptFormat.JSON, TranscriptFormat.SRT])
def test_hits_of_one_transcript_get_equal_bodies_and_their_own_routes(fmt: TranscriptFormat):
    bodies = converters.TranscriptBodies()
    shared = codec.decode_transcript(PAYLOAD)
    first = bodies.response(hit(shared, "first"), fmt)
    second = bodies.response(hit(shared, "second", duration_s=2.5), fmt)
    assert first == converters.transcribe_response(hit(shared, "first"), fmt)
    assert second == converters.transcribe_response(hit(shared, "second", duration_s=2.5), fmt)
    # The kept body is copied, never handed out: the first reply is untouched by the second.
    assert (first.route.request_id, first.duration_s) == ("first", pytest.approx(0.9))
    assert (second.route.request_id, second.duration_s) == ("second", 2.5)
    assert [w.text for w in second.words] == ["hello", "there"]


def test_formats_and_other_transcripts_get_bodies_of_their_own():
    bodies = converters.TranscriptBodies()
    shared = codec.decode_transcript(PAYLOAD)
    as_json = bodies.response(hit(shared, "a"), TranscriptFormat.JSON)
    as_srt = bodies.response(hit(shared, "b"), TranscriptFormat.SRT)
    assert as_json.formatted == "" and "hello there" in as_srt.formatted
    # Same segments object, other text (no segments are shared by two results in practice; the guard
    # keeps a body from ever being served for a transcript it was not built from).
    retold = bodies.response(hit(replace(shared, text="HELLO THERE"), "c"), TranscriptFormat.JSON)
    assert retold.text == "HELLO THERE"


def test_fresh_results_are_built_as_they_are():
    bodies = converters.TranscriptBodies()
    fresh = replace(hit(TRANSCRIPT, "fresh"), route=RouteInfo(request_id="fresh", policy="default"))
    assert bodies.response(fresh, TranscriptFormat.JSON) == converters.transcribe_response(fresh)
    assert isinstance(bodies.response(fresh, TranscriptFormat.JSON), pb.TranscribeResponse)
