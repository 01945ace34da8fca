"""Transcribe over gRPC, pinned to an AssemblyAI entry from the providers file, priced from the price book."""

from __future__ import annotations

from decimal import Decimal

import grpc
import pytest
import yaml

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc, common_pb2
from gateway.core import audio
from gateway.grpc.server import GatewayServer
from tests.audio_files import encode, tone
from tests.conftest import local_settings
from tests.fakes.assemblyai_server import FakeAssemblyAI

# The SDK still calls pydantic's v1-style methods (.dict(), .copy(), .parse_obj()).
pytestmark = pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20")

KEY_ENV = "GATEWAY_TEST_ASSEMBLYAI_KEY"
# gateway/pricebook.yaml: assemblyai/universal is $0.15 per hour of audio.
USD_PER_AUDIO_SECOND = Decimal("0.15") / Decimal(3600)


async def test_transcribe_pinned_to_assemblyai(tmp_path, monkeypatch):
    clip = encode(tone(3.0), 16_000, "wav")
    decoded_s = audio.probe(clip, "audio/wav", audio.AudioLimits(10_000_000, 60.0)).duration_s
    with FakeAssemblyAI(api_key="grpc-test-key") as fake:
        monkeypatch.setenv(KEY_ENV, fake.api_key)
        providers_file = tmp_path / "providers.yaml"
        entry = {
            "name": "assemblyai-universal",
            "kind": "assemblyai",
            "operation": "transcribe",
            "model": "universal",
            "api_key_env": KEY_ENV,
            "base_url": fake.url,
            "poll_interval_s": 0.05,
            "timeout_s": 10,
            "options": {"speaker_labels": True},
        }
        providers_file.write_text(yaml.safe_dump({"providers": [entry]}), encoding="utf-8")
        settings = local_settings()
        settings.providers_file = providers_file
        settings.whisper.enabled = settings.piper.enabled = settings.llama.enabled = False

        server = GatewayServer(settings)
        await server.start()
        try:
            await server.wait_ready(timeout_s=30)
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                stub = audio_gateway_pb2_grpc.AudioGatewayStub(channel)
                reply = await stub.Transcribe(
                    pb.TranscribeRequest(
                        audio=common_pb2.Audio(content=clip, mime_type="audio/wav"),
                        language="en",
                        word_timestamps=True,
                        routing=common_pb2.RoutingOptions(provider="assemblyai-universal"),
                    ),
                    timeout=30,
                )
        finally:
            await server.stop(grace_s=1)

    (upload,) = fake.upload_requests
    assert upload.body == clip
    assert upload.headers["authorization"] == "grpc-test-key"
    body = fake.creates[0].json()
    assert (body["speech_model"], body["language_code"], body["speaker_labels"]) == ("universal", "en", True)

    assert reply.text == "Hello there. Hi, back."
    assert reply.language == "en"
    assert [(s.speaker, s.text) for s in reply.segments] == [
        ("speaker_A", "Hello there."),
        ("speaker_B", "Hi, back."),
    ]
    assert [w.text for w in reply.words] == ["Hello", "there.", "Hi,", "back."]
    assert reply.words[0].start_s == pytest.approx(0.12)
    assert reply.duration_s == pytest.approx(decoded_s)

    route = reply.route
    assert (route.provider, route.model) == ("assemblyai-universal", "universal")
    assert route.locality == common_pb2.LOCALITY_CLOUD
    expected = (USD_PER_AUDIO_SECOND * Decimal(repr(decoded_s))).quantize(Decimal("0.000000001"))
    assert expected > 0
    assert Decimal(route.cost_usd) == expected
    assert [(a.provider, a.outcome) for a in route.attempts] == [("assemblyai-universal", "ok")]
