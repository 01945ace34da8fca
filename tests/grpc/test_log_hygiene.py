"""No log line carries an API key, a transcript, synthesized text, a question or audio bytes."""

from __future__ import annotations

import base64
import io
import json
import logging

import grpc
import pytest
import yaml

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc as pb_grpc
from gateway.api.v1 import common_pb2 as common
from gateway.grpc.server import GatewayServer
from gateway.settings import LogSettings
from gateway.telemetry.logs import configure
from tests.audio_files import encode, tone
from tests.conftest import local_settings
from tests.fakes.deepgram_server import FakeDeepgram
from tests.fakes.openai_server import FakeOpenAI

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

OPENAI_KEY = "sk-hygiene-openai-4242"
DEEPGRAM_KEY = "dg-hygiene-key-9191"
TRANSCRIPT = "Confidential merger with Initech closes Friday"
ANSWER = "The merger with Initech closes on Friday"
SPOKEN = "Wire the funds to account seventeen"
QUESTION = "Which company is being acquired?"


async def test_logs_hold_ids_units_and_costs_only(tmp_path, monkeypatch):
    monkeypatch.setenv("HYGIENE_OPENAI_KEY", OPENAI_KEY)
    monkeypatch.setenv("HYGIENE_DEEPGRAM_KEY", DEEPGRAM_KEY)
    clip = encode(tone(1.5), 16_000, "wav")
    with FakeOpenAI(transcript=TRANSCRIPT, answer=ANSWER) as openai, FakeDeepgram(api_key=DEEPGRAM_KEY) as dg:
        entries = [
            {"name": "oa-stt", "kind": "openai", "operation": "transcribe", "model": "whisper-1"},
            {"name": "oa-tts", "kind": "openai", "operation": "synthesize", "model": "tts-1"},
            {"name": "oa-llm", "kind": "openai", "operation": "understand", "model": "gpt-4o-audio-preview"},
        ]
        for entry in entries:
            entry.update(base_url=openai.base_url, api_key_env="HYGIENE_OPENAI_KEY")
        entries.append(
            {
                "name": "dg-stt",
                "kind": "deepgram",
                "operation": "transcribe",
                "model": "nova-3",
                "base_url": dg.url,
                "api_key_env": "HYGIENE_DEEPGRAM_KEY",
            }
        )
        path = tmp_path / "providers.yaml"
        path.write_text(yaml.safe_dump({"providers": entries}))
        settings = local_settings()
        settings.whisper.enabled = settings.piper.enabled = settings.llama.enabled = False
        settings.providers_file = path

        sink = io.StringIO()
        configure(LogSettings(level="debug", format="json"), stream=sink)
        root = logging.getLogger()
        saved = (root.handlers[:], root.level)
        root.handlers[:] = [logging.StreamHandler(sink)]
        root.setLevel(logging.DEBUG)
        server = GatewayServer(settings)
        port = await server.start()
        await server.wait_ready(30)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = pb_grpc.AudioGatewayStub(channel)
                audio = common.Audio(content=clip)
                for provider in ("oa-stt", "dg-stt"):
                    await stub.Transcribe(
                        pb.TranscribeRequest(audio=audio, routing=common.RoutingOptions(provider=provider))
                    )
                await stub.Synthesize(pb.SynthesizeRequest(text=SPOKEN))
                reply = await stub.Understand(pb.UnderstandRequest(audio=audio, question=QUESTION))
                assert reply.answer == ANSWER
                # Failures log too: a vendor refusing the key, and one echoing the request back.
                openai.fail_next(401, {"error": {"message": f"Incorrect API key provided: {OPENAI_KEY}"}})
                with pytest.raises(grpc.aio.AioRpcError):
                    await stub.Transcribe(
                        pb.TranscribeRequest(audio=audio, routing=common.RoutingOptions(provider="oa-stt"))
                    )
                openai.fail_next(500, {"error": {"message": "boom"}})
                with pytest.raises(grpc.aio.AioRpcError):
                    await stub.Synthesize(pb.SynthesizeRequest(text=SPOKEN))
        finally:
            await server.stop(1)
            configure(LogSettings(level="info", format="console"))
            root.handlers[:], level = saved
            root.setLevel(level)

    logged = sink.getvalue()
    events = [json.loads(line) for line in logged.splitlines() if line.startswith("{")]
    assert any(e.get("event") == "request.served" for e in events), "the requests were not logged at all"
    secrets = [
        OPENAI_KEY,
        DEEPGRAM_KEY,
        TRANSCRIPT,
        ANSWER,
        SPOKEN,
        QUESTION,
        base64.b64encode(clip[:48]).decode(),
        clip[44:80].hex(),
    ]
    for secret in secrets:
        assert secret.lower() not in logged.lower(), f"{secret[:12]}... leaked into the logs"
