"""The gateway end to end over gRPC, with its real local engines and real weights."""

from __future__ import annotations

import asyncio
import io
import time
import wave

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import common_pb2 as common
from gateway.grpc.server import GatewayServer
from tests import speech

pytestmark = pytest.mark.engines


def audio(content: bytes, mime: str = "") -> common.Audio:
    return common.Audio(content=content, mime_type=mime)


async def test_reflection_lists_the_gateway(channel):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)

    async def one() -> reflection_pb2.ServerReflectionResponse:
        async for response in stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        ):
            return response
        raise AssertionError("no reflection response")

    names = {s.name for s in (await one()).list_services_response.service}
    assert "gateway.api.v1.AudioGateway" in names
    assert "grpc.health.v1.Health" in names


@pytest.mark.parametrize(
    "service",
    [
        "",
        "gateway.api.v1.AudioGateway",
        "gateway.api.v1.AudioGateway/Transcribe",
        "gateway.api.v1.AudioGateway/Synthesize",
        "gateway.api.v1.AudioGateway/Understand",
    ],
)
async def test_health_is_serving_once_warm(channel, service):
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_transcribes_english_speech_from_two_voices(stub):
    references, hypotheses = [], []
    for index, sentence in enumerate(speech.SENTENCES):
        clip = speech.piper_wav(sentence) if index % 2 == 0 else speech.espeak_wav(sentence)
        reply = await stub.Transcribe(pb.TranscribeRequest(audio=audio(clip, "audio/wav"), language="en"))
        references.append(sentence)
        hypotheses.append(reply.text)
        assert reply.language == "en"
        assert reply.duration_s > 1.0
        assert reply.route.provider == "faster-whisper"
        assert reply.route.locality == common.LOCALITY_LOCAL
    assert speech.wer(references, hypotheses) <= 0.35, list(zip(references, hypotheses, strict=True))


async def test_transcribe_reports_words_segments_route_and_request_id(stub):
    clip = speech.piper_wav(speech.SENTENCES[0])
    call = stub.Transcribe(
        pb.TranscribeRequest(audio=audio(clip), word_timestamps=True),
        metadata=(("x-request-id", "req-words-1"),),
    )
    reply = await call
    # A unary reply carries the id in its trailers, which leave with the status in one batch.
    assert dict(await call.trailing_metadata())["x-request-id"] == "req-words-1"
    assert "x-request-id" not in dict(await call.initial_metadata())
    assert reply.route.request_id == "req-words-1"
    assert len(reply.words) >= 8
    starts = [w.start_s for w in reply.words]
    assert starts == sorted(starts) and reply.words[-1].end_s <= reply.duration_s + 0.5
    assert reply.segments and reply.segments[0].words
    # Billed duration is the decoded one: piper's clip length from its own header.
    with wave.open(io.BytesIO(clip)) as w:
        assert reply.duration_s == pytest.approx(w.getnframes() / w.getframerate(), abs=0.01)
    assert float(reply.route.cost_usd) > 0
    assert [a.outcome for a in reply.route.attempts] == ["ok"]


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "ogg", "webm"])
async def test_transcribes_every_container(stub, fmt):
    from tests.audio_files import MIME, encode

    clip = speech.piper_wav("Good morning everyone.")
    with wave.open(io.BytesIO(clip)) as w:
        import numpy as np

        samples = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        rate = w.getframerate()
    reply = await stub.Transcribe(pb.TranscribeRequest(audio=audio(encode(samples, rate, fmt), MIME[fmt])))
    assert speech.wer(["Good morning everyone."], [reply.text]) <= 0.34


async def test_synthesize_round_trips_through_transcription(stub):
    text = "Please bring the budget report to the meeting."
    reply = await stub.Synthesize(pb.SynthesizeRequest(text=text, format=pb.AUDIO_FORMAT_WAV))
    assert reply.mime_type == "audio/wav"
    with wave.open(io.BytesIO(reply.audio)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, reply.sample_rate)
        assert w.getnframes() / w.getframerate() == pytest.approx(reply.duration_s, abs=0.01)
    assert reply.voice == "en_US-joe-medium"
    back = await stub.Transcribe(pb.TranscribeRequest(audio=audio(reply.audio)))
    # Piper samples noise, so what tiny.en hears varies from run to run: it has heard "Please bring" as one
    # word ("Clayspring"), two errors of nine. Speech that failed to round-trip scores far worse.
    assert speech.wer([text], [back.text]) <= 2 / 9, back.text


async def test_synthesize_pcm16_at_a_requested_rate(stub):
    reply = await stub.Synthesize(
        pb.SynthesizeRequest(text="Hello there.", format=pb.AUDIO_FORMAT_PCM16, sample_rate=16000, speed=1.5)
    )
    assert reply.mime_type == "audio/L16;rate=16000"
    assert reply.sample_rate == 16000
    assert len(reply.audio) % 2 == 0
    assert len(reply.audio) / 2 / 16000 == pytest.approx(reply.duration_s, abs=0.001)
    slow = await stub.Synthesize(
        pb.SynthesizeRequest(text="Hello there.", format=pb.AUDIO_FORMAT_PCM16, sample_rate=16000, speed=0.75)
    )
    assert slow.duration_s > reply.duration_s * 1.4


async def test_understand_answers_with_the_transcript(stub):
    clip = speech.piper_wav("The meeting moved to Thursday afternoon. Please bring the budget report.")
    reply = await stub.Understand(pb.UnderstandRequest(audio=audio(clip), question="When is the meeting?"))
    assert reply.answer.strip()
    assert "thursday" in reply.transcript.lower()
    assert reply.route.provider == "llama-cpp"
    assert [(a.provider, a.operation) for a in reply.route.attempts] == [
        ("faster-whisper", "transcribe"),
        ("llama-cpp", "understand"),
    ]
    assert float(reply.route.cost_usd) == pytest.approx(sum(float(a.cost_usd) for a in reply.route.attempts))


def whisper_calls(server: GatewayServer) -> float:
    count = server.app.metrics.registry.get_sample_value(
        "audio_gateway_attempt_latency_seconds_count",
        {"provider": "faster-whisper", "operation": "transcribe"},
    )
    return count or 0.0


async def test_health_answers_quickly_during_ten_transcriptions(stub, channel, engine_server):
    speech_clip = speech.piper_wav(" ".join(speech.SENTENCES[:3]))
    # Ten different clips: identical ones would be merged into one engine call.
    clips = [speech.padded(speech_clip, 0.02 * n) for n in range(10)]
    assert len(set(clips)) == 10
    health = health_pb2_grpc.HealthStub(channel)
    before = whisper_calls(engine_server)
    calls = [stub.Transcribe(pb.TranscribeRequest(audio=audio(clip))) for clip in clips]
    gathered = asyncio.gather(*calls)
    # Probe early and often: on an idle machine the ten finish in about a second.
    await asyncio.sleep(0.1)
    latencies = []
    while not gathered.done() and len(latencies) < 20:
        started = time.perf_counter()
        reply = await health.Check(health_pb2.HealthCheckRequest(service="gateway.api.v1.AudioGateway"))
        latencies.append(time.perf_counter() - started)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        await asyncio.sleep(0.05)
    replies = await gathered
    assert all("fox" in r.text.lower() for r in replies)
    assert not any(r.route.cache_hit for r in replies)
    assert whisper_calls(engine_server) - before == 10
    assert len(latencies) >= 3, "the transcriptions finished before health was probed under load"
    latencies.sort()
    assert latencies[len(latencies) // 2] < 0.1, latencies
