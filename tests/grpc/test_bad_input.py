"""Every kind of bad input gets a precise status and a message that says what is wrong."""

from __future__ import annotations

import io
import wave

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import common_pb2 as common
from tests.audio_files import encode, tone

pytestmark = pytest.mark.engines

INVALID = grpc.StatusCode.INVALID_ARGUMENT
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


def _wav(seconds: float) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(tone(seconds).tobytes())
    return buffer.getvalue()


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _transcribe(content: bytes | None, mime: str = "") -> pb.TranscribeRequest:
    if content is None:
        return pb.TranscribeRequest()
    return pb.TranscribeRequest(audio=common.Audio(content=content, mime_type=mime))


AUDIO_CASES = {
    "missing audio": (_transcribe(None), INVALID, "audio is missing"),
    "empty bytes": (_transcribe(b""), INVALID, "audio is empty"),
    "not audio": (
        _transcribe(b"%PDF-1.7 this is a document, not a recording" * 20),
        INVALID,
        "not decodable",
    ),
    "declared wav, text inside": (_transcribe(b"hello " * 500, "audio/wav"), INVALID, "not decodable"),
    "truncated wav": (_transcribe(_wav(3.0)[:30_000]), INVALID, "truncated"),
    "truncated ogg": (_transcribe(_half(encode(tone(3.0), 16000, "ogg"))), INVALID, "truncated"),
    "truncated mp3": (_transcribe(_half(encode(tone(3.0), 16000, "mp3"))), INVALID, "truncated"),
    "zero-length clip": (_transcribe(_wav(0.0)), INVALID, "zero length"),
    "over the duration limit": (
        _transcribe(encode(tone(130.0, 8000), 8000, "flac")),
        EXHAUSTED,
        "120 s limit",
    ),
    "over the byte limit": (_transcribe(b"\0" * 4_100_000), EXHAUSTED, "the limit is 4000000 bytes"),
    "malformed language": (
        pb.TranscribeRequest(audio=common.Audio(content=_wav(1.0)), language="english"),
        INVALID,
        "not a language code",
    ),
    "language no engine speaks": (
        pb.TranscribeRequest(audio=common.Audio(content=_wav(1.0)), language="fr"),
        grpc.StatusCode.FAILED_PRECONDITION,
        "faster-whisper: does not support language 'fr' (supports en)",
    ),
}


@pytest.mark.parametrize("case", AUDIO_CASES)
async def test_bad_audio(stub, case):
    request, code, message = AUDIO_CASES[case]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Transcribe(request)
    assert caught.value.code() == code
    assert message in caught.value.details()


SYNTH_CASES = {
    "empty text": (pb.SynthesizeRequest(text=""), "text is empty"),
    "blank text": (pb.SynthesizeRequest(text=" \n\t "), "text is empty"),
    "oversized text": (pb.SynthesizeRequest(text="word " * 500), "the limit is 2000"),
    "unknown voice": (pb.SynthesizeRequest(text="Hi.", voice="no-such-voice"), "en_US-joe-medium"),
    "unknown format": (pb.SynthesizeRequest(text="Hi.", format=99), "AUDIO_FORMAT_OGG_OPUS"),
    "opus at 44.1 kHz": (
        pb.SynthesizeRequest(text="Hi.", format=pb.AUDIO_FORMAT_OGG_OPUS, sample_rate=44100),
        "sample_rate 44100 is not supported by opus; use one of 8000, 12000, 16000, 24000, 48000 Hz",
    ),
    "mu-law at 16 kHz": (
        pb.SynthesizeRequest(text="Hi.", format=pb.AUDIO_FORMAT_MULAW, sample_rate=16000),
        "sample_rate 16000 is not supported by mulaw; use one of 8000 Hz",
    ),
    "mp3 at 9 kHz": (
        pb.SynthesizeRequest(text="Hi.", format=pb.AUDIO_FORMAT_MP3, sample_rate=9000),
        "use one of 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000 Hz",
    ),
    "sample rate out of range": (pb.SynthesizeRequest(text="Hi.", sample_rate=1000), "sample_rate 1000"),
    "speed out of range": (pb.SynthesizeRequest(text="Hi.", speed=9.0), "speed 9"),
}


@pytest.mark.parametrize("case", SYNTH_CASES)
async def test_bad_synthesis_request(stub, case):
    request, message = SYNTH_CASES[case]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Synthesize(request)
    assert caught.value.code() == INVALID
    assert message in caught.value.details()


@pytest.mark.parametrize("question", ["", "   "])
async def test_missing_question(stub, question):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Understand(pb.UnderstandRequest(audio=common.Audio(content=_wav(1.0)), question=question))
    assert caught.value.code() == INVALID
    assert "question is empty" in caught.value.details()


async def test_unknown_policy_and_impossible_pin(stub):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Synthesize(pb.SynthesizeRequest(text="Hi.", routing=common.RoutingOptions(policy="gold")))
    assert caught.value.code() == INVALID and "unknown policy 'gold'" in caught.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Synthesize(
            pb.SynthesizeRequest(text="Hi.", routing=common.RoutingOptions(provider="deepgram"))
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = caught.value.details()
    assert "no provider named 'deepgram' is configured; providers that can synthesize:" in details
    assert "piper" in details


async def test_server_keeps_serving_after_bad_input(stub, channel):
    for request, _, _ in AUDIO_CASES.values():
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Transcribe(request)
    health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    reply = await stub.Synthesize(pb.SynthesizeRequest(text="Still here."))
    assert reply.audio
