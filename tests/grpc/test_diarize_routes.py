"""Diarization over gRPC: routed only to providers with the feature, speakers in segments and words."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import openai
import pytest
import structlog
import yaml
from openai.types.audio import TranscriptionDiarized

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc
from gateway.api.v1 import common_pb2 as common
from gateway.cli import main as cli
from gateway.grpc.server import GatewayServer
from gateway.http.server import HttpDoor, http_doors
from providers.config import load_providers_file
from providers.registry import build_remote_providers
from providers.testing import FakeTranscriber
from tests.audio_files import encode, tone
from tests.conftest import local_settings
from tests.fakes.assemblyai_server import CONVERSATION as ASSEMBLYAI_SCRIPT
from tests.fakes.assemblyai_server import FakeAssemblyAI
from tests.fakes.deepgram_server import CONVERSATION as DEEPGRAM_SCRIPT
from tests.fakes.deepgram_server import FakeDeepgram

# The AssemblyAI SDK still calls pydantic's v1-style methods (.dict(), .copy(), .parse_obj()).
pytestmark = pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20")

DEEPGRAM_ENV, DEEPGRAM_KEY = "DIARIZE_TEST_DEEPGRAM_KEY", "dg-diarize-key"
ASSEMBLYAI_ENV, ASSEMBLYAI_KEY = "DIARIZE_TEST_ASSEMBLYAI_KEY", "aai-diarize-key"
CLIP = encode(tone(2.5), 16_000, "wav")


@dataclass
class Gateway:
    stub: audio_gateway_pb2_grpc.AudioGatewayStub
    deepgram: FakeDeepgram
    assemblyai: FakeAssemblyAI
    local: FakeTranscriber
    target: str
    http_url: str


@pytest.fixture(scope="module")
async def server(tmp_path_factory, redis_url) -> AsyncIterator[Gateway]:
    with (
        FakeDeepgram(api_key=DEEPGRAM_KEY) as deepgram,
        FakeAssemblyAI(api_key=ASSEMBLYAI_KEY) as assemblyai,
        pytest.MonkeyPatch.context() as env,
    ):
        env.setenv(DEEPGRAM_ENV, DEEPGRAM_KEY)
        env.setenv(ASSEMBLYAI_ENV, ASSEMBLYAI_KEY)
        # Neither entry turns diarization on in its options: only the request asks for it.
        entries = [
            {
                "name": "deepgram-nova",
                "kind": "deepgram",
                "operation": "transcribe",
                "model": "nova-3",
                "api_key_env": DEEPGRAM_ENV,
                "base_url": deepgram.url,
            },
            {
                "name": "assemblyai-universal",
                "kind": "assemblyai",
                "operation": "transcribe",
                "model": "universal",
                "api_key_env": ASSEMBLYAI_ENV,
                "base_url": assemblyai.url,
                "poll_interval_s": 0.05,
                "timeout_s": 10,
            },
        ]
        path = tmp_path_factory.mktemp("diarize") / "providers.yaml"
        path.write_text(yaml.safe_dump({"providers": entries}), encoding="utf-8")
        settings = local_settings()
        settings.whisper.enabled = settings.piper.enabled = settings.llama.enabled = False
        settings.providers_file = path
        # The real Redis, for the cache; keys under a prefix of this test's own.
        settings.redis.url, settings.redis.key_prefix = redis_url, f"test:{uuid.uuid4().hex}:"
        local = FakeTranscriber(name="local-stt")
        # Given providers replace the configured ones: the vendors are built from the same file.
        remote = build_remote_providers(load_providers_file(path))
        settings.http.host, settings.http.port = "127.0.0.1", 0
        server = GatewayServer(settings, providers=[local, *remote], doors=http_doors(settings))
        await server.start()
        try:
            await server.wait_ready(timeout_s=30)
            assert not server.app.catalogue.failures, server.app.catalogue.failures
            target = f"127.0.0.1:{server.port}"
            [door] = server.doors
            assert isinstance(door, HttpDoor)
            async with grpc.aio.insecure_channel(target) as channel:
                stub = audio_gateway_pb2_grpc.AudioGatewayStub(channel)
                yield Gateway(stub, deepgram, assemblyai, local, target, f"http://127.0.0.1:{door.port}/v1")
        finally:
            await server.stop(grace_s=1)


@pytest.fixture
def gateway(server: Gateway) -> Gateway:
    """The module's gateway, its fakes' records cleared for each test."""
    server.deepgram.reset()
    server.assemblyai.reset()
    server.local.calls = 0
    server.local.last_options = None
    return server


def request(
    *, diarize: bool, provider: str = "", policy: str = "", words: bool = True
) -> pb.TranscribeRequest:
    return pb.TranscribeRequest(
        audio=common.Audio(content=CLIP, mime_type="audio/wav"),
        word_timestamps=words,
        diarize=diarize,
        routing=common.RoutingOptions(provider=provider, policy=policy, cache=common.CACHE_MODE_BYPASS),
    )


async def test_deepgram_is_asked_to_diarize_and_its_speakers_reach_segments_and_words(gateway):
    reply = await gateway.stub.Transcribe(request(diarize=True, provider="deepgram-nova"), timeout=30)
    [sent] = gateway.deepgram.requests_to("/v1/listen")
    assert sent.query["diarize"] == ["true"]
    assert sent.query["utterances"] == ["true"]
    assert [(s.speaker, s.text) for s in reply.segments] == [
        ("speaker_0", "Hello there."),
        ("speaker_1", "Hi! How are you?"),
    ]
    assert [(w.speaker, w.text) for w in reply.words] == [
        (f"speaker_{w.speaker}", w.punctuated) for w in DEEPGRAM_SCRIPT
    ]
    assert reply.route.provider == "deepgram-nova"


async def test_without_diarize_deepgram_is_not_asked_and_nobody_is_labelled(gateway):
    reply = await gateway.stub.Transcribe(request(diarize=False, provider="deepgram-nova"), timeout=30)
    [sent] = gateway.deepgram.requests_to("/v1/listen")
    assert "diarize" not in sent.query
    assert reply.text == "Hello there. Hi! How are you?"
    assert {s.speaker for s in reply.segments} == {""}
    assert {w.speaker for w in reply.words} == {""}


async def test_assemblyai_is_asked_for_speaker_labels_and_its_speakers_reach_segments_and_words(gateway):
    reply = await gateway.stub.Transcribe(request(diarize=True, provider="assemblyai-universal"), timeout=30)
    [create] = gateway.assemblyai.creates
    assert create.json()["speaker_labels"] is True
    assert [(s.speaker, s.text) for s in reply.segments] == [
        ("speaker_A", "Hello there."),
        ("speaker_B", "Hi, back."),
    ]
    assert [(w.speaker, w.text) for w in reply.words] == [
        (f"speaker_{w.speaker}", w.text) for w in ASSEMBLYAI_SCRIPT
    ]


async def test_diarize_passes_over_the_cheaper_local_engine(gateway):
    plain = await gateway.stub.Transcribe(request(diarize=False), timeout=30)
    assert plain.route.provider == "local-stt"  # the cheapest, when speakers do not matter
    diarized = await gateway.stub.Transcribe(request(diarize=True), timeout=30)
    assert diarized.route.provider in {"deepgram-nova", "assemblyai-universal"}
    assert len(diarized.segments) == 2 and all(s.speaker for s in diarized.segments)
    assert gateway.local.calls == 1
    assert gateway.local.last_options is not None and not gateway.local.last_options.diarize


async def test_diarize_under_a_local_only_policy_fails_naming_both_rules(gateway):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.stub.Transcribe(request(diarize=True, policy="private"), timeout=30)
    error = caught.value
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = error.details()
    assert "diarize" in details and "privacy local_only" in details
    assert "local-stt: lacks feature(s) diarization" in details
    assert "deepgram-nova: locality cloud is not allowed under privacy local_only" in details
    assert gateway.local.calls == 0
    assert not gateway.deepgram.requests and not gateway.assemblyai.requests


async def test_explain_route_gives_the_reason_each_provider_is_excluded(gateway):
    def explain(diarize: bool) -> pb.ExplainRouteRequest:
        return pb.ExplainRouteRequest(
            operation=pb.OPERATION_TRANSCRIBE,
            audio_duration_s=60.0,
            diarize=diarize,
            routing=common.RoutingOptions(policy="private"),
        )

    diarized = await gateway.stub.ExplainRoute(explain(True), timeout=30)
    reasons = {c.provider: (c.eligible, c.rejected_reason) for c in diarized.candidates}
    assert reasons["local-stt"] == (False, "lacks feature(s) diarization")
    assert reasons["deepgram-nova"] == (False, "locality cloud is not allowed under privacy local_only")
    assert reasons["assemblyai-universal"] == (
        False,
        "locality cloud is not allowed under privacy local_only",
    )

    plain = await gateway.stub.ExplainRoute(explain(False), timeout=30)
    assert {c.provider for c in plain.candidates if c.eligible} == {"local-stt"}


async def test_diarized_and_plain_results_are_cached_apart(gateway):
    cached = common.RoutingOptions(provider="deepgram-nova")
    for diarize in (False, True, True):
        message = request(diarize=diarize)
        message.routing.CopyFrom(cached)
        reply = await gateway.stub.Transcribe(message, timeout=30)
    assert reply.route.cache_hit
    # The cached payload keeps every speaker, the words' too.
    assert [s.speaker for s in reply.segments] == ["speaker_0", "speaker_1"]
    assert reply.words[0].speaker == "speaker_0" and reply.words[-1].speaker == "speaker_1"
    listens = gateway.deepgram.requests_to("/v1/listen")
    assert ["diarize" in r.query for r in listens] == [False, True]


async def run_cli(*argv: str) -> int:
    """The command line, in a thread (it blocks) while the server answers on this loop; the server's
    logs are kept off the stdout the command prints to."""
    with structlog.testing.capture_logs():
        return await asyncio.to_thread(cli.main, list(argv))


async def test_cli_diarize_flag_reaches_the_provider(gateway, tmp_path, capsys):
    path = tmp_path / "meeting.wav"
    # Audio of its own: the command line uses the cache, which other tests' results must not answer.
    path.write_bytes(encode(tone(3.0), 16_000, "wav"))
    argv = ["transcribe", str(path), "--diarize", "--target", gateway.target, "--timeout", "30"]
    assert await run_cli(*argv, "--provider", "assemblyai-universal", "--json") == 0
    body = json.loads(capsys.readouterr().out)
    assert [s["speaker"] for s in body["segments"]] == ["speaker_A", "speaker_B"]
    assert gateway.assemblyai.creates[0].json()["speaker_labels"] is True

    assert await run_cli(*argv, "--provider", "deepgram-nova") == 0
    out = capsys.readouterr().out
    assert "speaker_0" in out and "speaker_1" in out and "Hi! How are you?" in out


async def test_cli_explain_diarize_shows_why_the_local_engine_is_out(gateway, capsys):
    argv = ["explain", "transcribe", "--seconds", "30", "--diarize", "--policy", "private"]
    assert await run_cli(*argv, "--target", gateway.target, "--json") == 0
    body = json.loads(capsys.readouterr().out)
    local = next(c for c in body["candidates"] if c["provider"] == "local-stt")
    assert local["rejected_reason"] == "lacks feature(s) diarization"


# -- the OpenAI-compatible door: response_format=diarized_json -------------------------------------


def openai_client(gateway: Gateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gateway.http_url, api_key="unused", max_retries=0)


async def test_http_diarized_json_is_served_by_a_diarizing_provider_with_speakers(gateway):
    async with openai_client(gateway) as client:
        reply = await client.audio.transcriptions.create(
            model="provider:deepgram-nova", file=("talk.wav", CLIP), response_format="diarized_json"
        )
    assert isinstance(reply, TranscriptionDiarized)
    assert [(s.speaker, s.text) for s in reply.segments] == [
        ("speaker_0", "Hello there."),
        ("speaker_1", "Hi! How are you?"),
    ]
    assert reply.duration == pytest.approx(2.5) and reply.text == "Hello there. Hi! How are you?"
    [sent] = gateway.deepgram.requests_to("/v1/listen")
    assert sent.query["diarize"] == ["true"]


async def test_http_diarized_json_skips_the_local_engine_and_is_refused_under_local_only(
    gateway,
):
    async with openai_client(gateway) as client:
        reply = await client.audio.transcriptions.create(
            model="whisper-1", file=("talk.wav", CLIP), response_format="diarized_json"
        )
        assert all(s.speaker for s in reply.segments) and gateway.local.calls == 0
        with pytest.raises(openai.BadRequestError) as caught:
            await client.audio.transcriptions.create(
                model="policy:private", file=("talk.wav", CLIP), response_format="diarized_json"
            )
    assert (
        "diarize" in caught.value.message
        and "local-stt: lacks feature(s) diarization" in caught.value.message
    )


async def test_http_translations_refuse_diarized_json(gateway):
    async with openai_client(gateway) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.audio.translations.create(
                model="whisper-1",
                file=("talk.wav", CLIP),
                response_format="diarized_json",  # type: ignore[arg-type]
            )
    assert "diarized_json is for transcriptions" in caught.value.message
