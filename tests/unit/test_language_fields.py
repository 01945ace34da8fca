"""The language fields on the way through: translate in, detected language and its probability out."""

from __future__ import annotations

import json

import pytest

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import common_pb2 as common
from gateway.cache import codec
from gateway.core.domain import RouteInfo, TranscribeResult
from gateway.core.provider_types import SegmentTiming, Transcript, Usage
from gateway.grpc import converters
from gateway.http.transcripts import Task, verbose

AUDIO = common.Audio(content=b"RIFF", mime_type="audio/wav")


def _result(probability: float) -> TranscribeResult:
    return TranscribeResult(
        text="bonjour",
        language="fr",
        duration_s=1.0,
        segments=(SegmentTiming("bonjour", 0.0, 1.0),),
        route=RouteInfo(request_id="r", policy="default"),
        language_probability=probability,
    )


def test_the_probability_survives_the_cache():
    transcript = Transcript("bonjour", "fr", (), Usage(), language_probability=0.93)
    assert codec.decode_transcript(codec.encode_transcript(transcript)).language_probability == 0.93


def test_an_entry_cached_before_the_field_existed_still_reads():
    old = json.dumps({"v": codec.FORMAT_VERSION, "text": "hi", "language": "en", "segments": []}).encode()
    assert codec.decode_transcript(old).language_probability == 0.0


@pytest.mark.parametrize("translate", [True, False])
def test_grpc_translate_reaches_the_options_and_the_explanation(translate):
    request = converters.transcribe_request(pb.TranscribeRequest(audio=AUDIO, translate=translate))
    assert request.options.translate is translate
    explain = converters.explain_request(
        pb.ExplainRouteRequest(operation=pb.OPERATION_TRANSCRIBE, audio_duration_s=1.0, translate=translate)
    )
    assert explain.translate is translate


def test_grpc_response_carries_the_probability():
    reply = converters.transcribe_response(_result(0.875))
    assert (reply.language, reply.language_probability) == ("fr", 0.875)


def test_verbose_json_adds_the_probability_only_when_known():
    known = verbose(_result(0.875), Task.TRANSCRIBE, 0.0, segments=False, words=False)
    unknown = verbose(_result(0.0), Task.TRANSCRIBE, 0.0, segments=False, words=False)
    assert known["language"] == "french" and known["language_probability"] == 0.875
    assert "language_probability" not in unknown
