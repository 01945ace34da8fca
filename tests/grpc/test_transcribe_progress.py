"""TranscribeProgress on real long recordings, through the local Whisper engine: over gRPC and the CLI."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
import structlog

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc as pb_grpc
from gateway.api.v1 import common_pb2 as common
from gateway.cli import main as cli
from gateway.grpc.server import GatewayServer
from tests.conftest import local_settings
from tests.speech import SPEECH_DIR

pytestmark = [pytest.mark.engines, pytest.mark.timeout(180)]

# 42.9 s: the engine decodes it in four windows of at most 15 s (GATEWAY_WHISPER__MAX_WINDOW_S), and
# reports as each batch's segments come out: two windows a batch on one worker here, so there are steps
# to see (with the default eight, the four are one batch).
FIVE_SPEAKERS = SPEECH_DIR / "audio" / "long_fleurs_dev_x5.wav"


@pytest.fixture(scope="module")
async def gateway(redis_url: str) -> AsyncIterator[tuple[pb_grpc.AudioGatewayStub, str]]:
    settings = local_settings()
    settings.piper.enabled = settings.llama.enabled = False
    settings.whisper.batch_size, settings.whisper.workers = 2, 1
    # The real Redis, for the cache; keys under a prefix of this module's own.
    settings.redis.url, settings.redis.key_prefix = redis_url, f"test:{uuid.uuid4().hex}:"
    server = GatewayServer(settings)
    await server.start()
    try:
        await server.wait_ready(timeout_s=120)
        target = f"127.0.0.1:{server.port}"
        async with grpc.aio.insecure_channel(target) as channel:
            yield pb_grpc.AudioGatewayStub(channel), target
    finally:
        await server.stop(grace_s=5)


def _request(wav: bytes) -> pb.TranscribeRequest:
    return pb.TranscribeRequest(
        audio=common.Audio(content=wav, mime_type="audio/wav"),
        language="en",
        # The default policy: whose cache keeps the result (a local-only request's is kept only where its
        # policy says so). The local engine is this gateway's only transcriber.
    )


async def test_progress_rises_with_the_segments_and_ends_with_the_response(gateway):
    stub, _ = gateway
    events = [e async for e in stub.TranscribeProgress(_request(FIVE_SPEAKERS.read_bytes()), timeout=120)]
    *steps, last = events
    reply = last.response
    assert last.HasField("response") and not any(e.HasField("response") for e in steps)
    assert reply.route.provider == "faster-whisper" and not reply.route.cache_hit
    assert (last.audio_done_s, last.audio_total_s) == (reply.duration_s, reply.duration_s)
    assert reply.duration_s == pytest.approx(42.9, abs=0.1)
    # A step per batch at least, before the end.
    assert len(steps) >= 2, [e.audio_done_s for e in steps]
    done = [e.audio_done_s for e in steps]
    assert done == sorted(set(done)), done  # rising, never repeated
    assert done[0] < reply.duration_s / 2 and done[-1] <= reply.duration_s
    assert all(e.audio_total_s == reply.duration_s for e in steps)
    assert reply.text and float(reply.route.cost_usd) > 0

    # The same pipeline as Transcribe: the result is cached, and a hit is all done at once.
    [hit] = [e async for e in stub.TranscribeProgress(_request(FIVE_SPEAKERS.read_bytes()), timeout=60)]
    assert hit.response.route.cache_hit and hit.response.text == reply.text
    assert hit.audio_done_s == hit.audio_total_s == reply.duration_s


async def test_progress_of_a_local_only_diarize_request_is_its_refusal(gateway):
    stub, _ = gateway
    request = _request(FIVE_SPEAKERS.read_bytes())
    request.diarize = True
    request.routing.privacy = common.PRIVACY_LOCAL_ONLY
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        _ = [e async for e in stub.TranscribeProgress(request, timeout=30)]
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "diarization" in caught.value.details()


async def test_cli_shows_the_percentage_rising_to_100(gateway, capsys):
    _, target = gateway
    # --words keys it apart from the other test's result in the cache: this one is decoded afresh.
    argv = [
        "transcribe",
        str(FIVE_SPEAKERS),
        "--progress",
        "--words",
        "--privacy",
        "local_only",
        "--language",
        "en",
    ]
    with structlog.testing.capture_logs():  # the server's logs stay off the command's stdout
        assert await asyncio.to_thread(cli.main, [*argv, "--target", target, "--timeout", "120"]) == 0
    out, err = capsys.readouterr()
    shown = [int(p) for p in re.findall(r"^transcribed (\d+)% \(", err, flags=re.MULTILINE)]
    assert len(shown) >= 3, err
    assert shown == sorted(set(shown)) and shown[-1] == 100, shown
    assert shown[0] < 50
    assert "42.9 of 42.9 s of audio" in err
    assert "faster-whisper" in out and "long_fleurs_dev_x5.wav" in out
