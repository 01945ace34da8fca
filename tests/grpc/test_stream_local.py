"""StreamTranscribe over gRPC to the local faster-whisper engine, with real recorded speech.

A gateway of its own with the real faster-whisper engine (no other engines). Audio is streamed as fast as the
gateway takes it; the engine's timing is the benchmark's business (bench/stream_transcribe.py).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import grpc
import pytest

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc as pb_grpc
from gateway.api.v1 import common_pb2 as common
from gateway.core.audio import encode_wav
from gateway.grpc.server import GatewayServer
from tests import speech
from tests.conftest import local_settings

pytestmark = [pytest.mark.engines, pytest.mark.timeout(180)]

CHUNK_S = 0.1


@pytest.fixture(scope="module")
async def stub() -> AsyncIterator[pb_grpc.AudioGatewayStub]:
    settings = local_settings()
    settings.piper.enabled = settings.llama.enabled = False
    server = GatewayServer(settings)
    port = await server.start()
    await server.wait_ready(timeout_s=120)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield pb_grpc.AudioGatewayStub(channel)
    finally:
        await server.stop(grace_s=5)


async def test_real_speech_streams_through_the_local_engine_as_well_as_batch(stub):
    clip = speech.real_clip("long_librivox_sense_sensibility_x5")  # 26.7 s, five sentences
    pcm = clip.pcm() + b"\0\0" * clip.rate  # a second of silence ends the last utterance
    step = round(CHUNK_S * clip.rate) * 2
    config = pb.StreamTranscribeConfig(
        encoding=pb.STREAM_ENCODING_LINEAR16,
        sample_rate_hertz=clip.rate,
        language="en",
        interim_results=True,
        routing=common.RoutingOptions(privacy=common.PRIVACY_LOCAL_ONLY),
    )

    async def requests() -> AsyncIterator[pb.StreamTranscribeRequest]:
        yield pb.StreamTranscribeRequest(config=config)
        for offset in range(0, len(pcm), step):
            yield pb.StreamTranscribeRequest(audio=pcm[offset : offset + step])

    started = time.monotonic()
    responses = [r async for r in stub.StreamTranscribe(requests(), timeout=150)]
    elapsed = time.monotonic() - started
    results = [r.result for r in responses if r.HasField("result")]
    finals = [r for r in results if r.is_final]
    streamed = " ".join(f.alternatives[0].text for f in finals)

    batch = await stub.Transcribe(
        pb.TranscribeRequest(
            audio=common.Audio(content=encode_wav(clip.samples, clip.rate), mime_type="audio/wav"),
            language="en",
            routing=common.RoutingOptions(
                privacy=common.PRIVACY_LOCAL_ONLY, provider="faster-whisper", cache=common.CACHE_MODE_BYPASS
            ),
        ),
        timeout=150,
    )
    stream_wer = speech.wer([clip.reference], [streamed])
    batch_wer = speech.wer([clip.reference], [batch.text])
    assert stream_wer <= 0.25, streamed
    assert stream_wer <= max(1.5 * batch_wer, batch_wer + 0.05), (streamed, batch.text)
    # Faster than real time, through the whole gateway.
    assert elapsed < clip.duration_s, elapsed
    assert responses[0].route.provider == "faster-whisper"
    assert responses[0].route.locality == common.LOCALITY_LOCAL
    assert len(finals) >= 3
    ends = [f.result_end_time_s for f in finals]
    assert ends == sorted(ends) and ends[-1] <= clip.duration_s + 1.0
    summary = responses[-1]
    assert summary.billed_seconds == pytest.approx(len(pcm) / 2 / clip.rate)
    assert [(a.provider, a.outcome) for a in summary.route_info.attempts] == [("faster-whisper", "ok")]
