"""Long recordings of real speech through the gateway (gRPC Transcribe) to the local faster-whisper engine.

Whisper tiny.en, with the engine's default settings. The bounds compare the long clip with the same clips sent
one at a time through the same gateway, so they hold whatever the model; and every sentence must be heard,
since a long-form decode that loses whole sentences can still post a fair word error rate.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc as pb_grpc
from gateway.api.v1 import common_pb2 as common
from gateway.grpc.server import GatewayServer
from tests import speech
from tests.conftest import local_settings

pytestmark = [pytest.mark.engines, pytest.mark.timeout(240)]

# Most of each sentence's words, in order: a dropped sentence scores about 0, while tiny.en's misheard
# words ("seven of clothes" for "seven of clubs") leave two thirds of a three-word command.
HEARD = 0.6
# The long clip's word error rate against the same clips one at a time (README: 21.2 % against 9.6 % before).
WER_RATIO = 1.3


async def _server(batch_size: int) -> GatewayServer:
    settings = local_settings()
    settings.piper.enabled = settings.llama.enabled = False
    settings.whisper.batch_size = batch_size
    server = GatewayServer(settings)
    await server.start()
    await server.wait_ready(timeout_s=120)
    return server


@pytest.fixture(scope="module")
async def stub() -> AsyncIterator[pb_grpc.AudioGatewayStub]:
    server = await _server(batch_size=1)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield pb_grpc.AudioGatewayStub(channel)
    finally:
        await server.stop(grace_s=5)


async def _transcribe(
    stub: pb_grpc.AudioGatewayStub, wav: bytes, words: bool = False
) -> pb.TranscribeResponse:
    return await stub.Transcribe(
        pb.TranscribeRequest(
            audio=common.Audio(content=wav, mime_type="audio/wav"),
            language="en",
            word_timestamps=words,
            routing=common.RoutingOptions(privacy=common.PRIVACY_LOCAL_ONLY, cache=common.CACHE_MODE_BYPASS),
        ),
        timeout=180,
    )


def _wav(clip_id: str) -> bytes:
    from gateway.core.audio import encode_wav

    clip = speech.real_clip(clip_id)
    return encode_wav(clip.samples, clip.rate)


async def _one_at_a_time(stub: pb_grpc.AudioGatewayStub, parts: tuple[speech.Part, ...]) -> float:
    wrong = total = 0
    for part in parts:
        reply = await _transcribe(stub, _wav(part.id))
        errors, _, words = speech.errors(part.reference, reply.text)
        wrong, total = wrong + errors, total + words
    return wrong / total


def _assert_every_sentence_heard(parts: tuple[speech.Part, ...], text: str) -> None:
    heard = {part.id: round(speech.heard_share(part.reference, text), 2) for part in parts}
    assert min(heard.values()) >= HEARD, heard


async def test_five_speakers_joined_score_close_to_their_clips_one_at_a_time(stub):
    parts = speech.long_parts("long_fleurs_dev_x5")  # 42.9 s, five FLEURS speakers 0.5 s apart
    reply = await _transcribe(stub, _wav("long_fleurs_dev_x5"))
    errors, deletions, words = speech.errors(speech.manifest()["long_fleurs_dev_x5"]["reference"], reply.text)
    clip_by_clip = await _one_at_a_time(stub, parts)
    assert errors / words <= WER_RATIO * clip_by_clip, (errors, words, clip_by_clip)
    assert deletions <= 0.05 * words
    _assert_every_sentence_heard(parts, reply.text)
    assert reply.route.provider == "faster-whisper"
    assert reply.duration_s == pytest.approx(42.86, abs=0.01)


async def test_the_single_reader_control_does_not_get_worse(stub):
    reply = await _transcribe(stub, _wav("long_librivox_sense_sensibility_x5"))  # 26.7 s, one reader
    errors, _, words = speech.errors(
        speech.manifest()["long_librivox_sense_sensibility_x5"]["reference"], reply.text
    )
    assert errors / words <= 0.02, reply.text  # 1 error in 71 words before this change
    _assert_every_sentence_heard(speech.long_parts("long_librivox_sense_sensibility_x5"), reply.text)


async def test_speakers_taking_turns_lose_no_sentence_and_keep_their_times(stub):
    # 70 s: the five FLEURS speakers and the LibriVox reader taking turns, 0.5 s apart. Whisper's own
    # long-form decoding dropped whole sentences of it (65 deletions in 175 words, sentences 6 % heard).
    fleurs = speech.manifest()["long_fleurs_dev_x5"]["parts"]
    librivox = speech.manifest()["long_librivox_sense_sensibility_x5"]["parts"]
    joined = speech.joined([clip for pair in zip(fleurs, librivox, strict=True) for clip in pair])  # type: ignore[call-overload]
    reply = await _transcribe(stub, joined.wav, words=True)
    _assert_every_sentence_heard(joined.parts, reply.text)
    errors, deletions, words = speech.errors(joined.reference, reply.text)
    assert deletions <= 0.05 * words
    assert errors / words <= 0.15  # 8.6 % measured; 40.6 % before

    # Segments and words are on the recording's timeline, in order, and each part's words where it is.
    end = joined.parts[-1].end_s
    starts = [w.start_s for w in reply.words]
    assert starts == sorted(starts) and starts[0] >= 0 and starts[-1] <= end
    assert all(seg.start_s <= seg.end_s <= end + 0.01 for seg in reply.segments)
    _assert_words_in_their_parts(joined.parts, list(reply.words))


def _assert_words_in_their_parts(parts: tuple[speech.Part, ...], words: list[pb.Word]) -> None:
    """A word that only one part says is timed within that part (1 s of slack for the pad around it)."""
    vocab = {part.id: set(speech.english(part.reference).split()) for part in parts}
    checked = 0
    for part in parts:
        others = set().union(*(v for k, v in vocab.items() if k != part.id))
        own = {w for w in vocab[part.id] - others if len(w) >= 5}
        times = [w.start_s for w in words if speech.english(w.text).strip() in own]
        assert all(part.start_s - 1.0 <= t <= part.end_s + 1.0 for t in times), (part.id, part.start_s, times)
        checked += len(times)
    assert checked >= len(parts)


async def test_windows_decoded_in_batches_hear_every_sentence():
    server = await _server(batch_size=4)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = pb_grpc.AudioGatewayStub(channel)
            parts = speech.long_parts("long_fleurs_dev_x5")
            reply = await _transcribe(stub, _wav("long_fleurs_dev_x5"), words=True)
    finally:
        await server.stop(grace_s=5)
    _assert_every_sentence_heard(parts, reply.text)
    errors, _, words = speech.errors(speech.manifest()["long_fleurs_dev_x5"]["reference"], reply.text)
    assert errors / words <= 0.15
    starts = [w.start_s for w in reply.words]
    assert starts == sorted(starts) and starts[-1] <= parts[-1].end_s
    _assert_words_in_their_parts(parts, list(reply.words))
