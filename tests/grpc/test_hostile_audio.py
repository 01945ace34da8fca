"""Uploads built to stall or crash the gateway, end to end against the real server and engines: each
gets a precise status with a message the caller can act on, and the server keeps serving."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import common_pb2 as common
from tests import hostile_audio as hostile

pytestmark = pytest.mark.engines

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def transcribe(content: bytes, mime: str = "audio/wav") -> pb.TranscribeRequest:
    return pb.TranscribeRequest(audio=common.Audio(content=content, mime_type=mime), language="en")


HOSTILE = {
    "1.96 GHz header": (hostile.gigahertz_wav, ["1962950272 Hz", "accepted rates are 8000–192000 Hz"]),
    "1 Hz header": (hostile.one_hertz_wav, ["sample rate of 1 Hz", "resample the recording"]),
    "0 bits per sample": (hostile.zero_bits_wav, ["0 bits per sample", "re-encode it as 16-bit PCM WAV"]),
    "format tag 0xFFFE": (hostile.extensible_wav, ["unrecognised format tag", "re-encode"]),
    "LIST chunk claiming 400 MB": (hostile.info_bomb_wav, ["'LIST' chunk declares 400000000", "re-encode"]),
    # The engine server's only transcriber is local: the NaNs are found by the decode it needs.
    "NaN float samples": (hostile.nan_wav, ["NaN or infinite sample values", "re-encode"]),
}


@pytest.mark.parametrize("case", HOSTILE)
async def test_hostile_uploads_are_refused_with_an_actionable_message(stub, case):
    make, phrases = HOSTILE[case]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Transcribe(transcribe(make()))
    assert caught.value.code() == INVALID
    for phrase in phrases:
        assert phrase in caught.value.details()


async def test_mp3_frames_that_switch_between_mono_and_stereo_are_transcribed(stub):
    reply = await stub.Transcribe(transcribe(hostile.layout_switching_mp3(3.0, switches=3), "audio/mpeg"))
    assert reply.duration_s == pytest.approx(3.2, abs=0.3)
    assert reply.route.provider == "faster-whisper"


@pytest.mark.parametrize(
    ("name", "phrase"),
    [("clip%00.wav", "contains a NUL byte"), ("n" * 300 + ".wav", "too long a file name")],
    ids=["%00", "300-character name"],
)
async def test_hostile_file_uris_are_refused_and_echoed_clipped(stub, uploads_dir, name, phrase):
    request = pb.TranscribeRequest(audio=common.Audio(uri=f"file://{uploads_dir}/{name}"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Transcribe(request)
    assert caught.value.code() == INVALID
    assert phrase in caught.value.details()
    assert "n" * 101 not in caught.value.details()


async def test_the_server_keeps_serving_after_hostile_uploads(stub, channel):
    for make, _ in HOSTILE.values():
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Transcribe(transcribe(make()))
    health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    reply = await stub.Transcribe(transcribe(hostile.wav(hostile.pcm16(1.0))))
    assert reply.duration_s == pytest.approx(1.0)
