"""The gRPC contract from a second ecosystem: Node's @grpc/grpc-js calls the real server.

A contract only our own generated stubs can use is not a contract. Each test here starts nothing but the
gateway (in process, fake providers with known prices, the real Redis) and runs a small script from
``tests/node/`` that loads ``protos/`` at run time with @grpc/proto-loader, as a Node service would, and
prints what it saw as JSON. The assertions are on that JSON.

``node`` and ``npm`` are required, not optional: a machine without them fails here with the command that
installs them (``.ci/run`` does). ``npm ci`` runs once per session, and not at all while
``tests/node/node_modules`` was installed from the same lockfile.
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
import tempfile
import uuid
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc as pb_grpc
from gateway.api.v1 import common_pb2 as common
from gateway.api.v1 import cost_reports_pb2 as reports_pb
from gateway.api.v1 import cost_reports_pb2_grpc as reports_grpc
from gateway.core.provider_types import Locality
from gateway.grpc.server import GatewayServer
from gateway.money.pricing import UnitPrices
from policies.loader import hash_key
from providers.testing import FakeSynthesizer, FakeTranscriber
from tests.audio_files import encode, tone
from tests.conftest import local_settings
from tests.encoded_audio import decode_pyav
from tests.node_runner import NODE_DIR, node_binary, run_node

PER_S = Decimal("0.0002")
PER_CHAR = Decimal("0.00001")
ACME, GLOBEX, ADMIN = "acme-key", "globex-key", "admin-key"
TEXT = "node clients reach the gateway"


@pytest.fixture(scope="session")
def node() -> str:
    return node_binary()


@dataclass
class Gateway:
    target: str
    channel: grpc.aio.Channel
    provider: FakeTranscriber
    synthesizer: FakeSynthesizer


@pytest.fixture(scope="module")
async def gateway(redis_url: str) -> AsyncIterator[Gateway]:
    policies = Path(tempfile.mkdtemp(prefix="gw-node-")) / "policies.yaml"
    policies.write_text(
        "policies:\n  - name: default\n"
        "tenants:\n"
        f"  - {{name: acme, key_sha256: {hash_key(ACME)}, default_policy: default}}\n"
        f"  - {{name: globex, key_sha256: {hash_key(GLOBEX)}, default_policy: default}}\n"
        f"  - {{name: ops, key_sha256: {hash_key(ADMIN)}, default_policy: default, admin: true}}\n"
    )
    settings = local_settings()
    settings.redis.url = redis_url
    settings.redis.key_prefix = f"test:{uuid.uuid4().hex}:"
    settings.policies_file = policies
    settings.ledger.flush_interval_s = 0.05
    provider = FakeTranscriber(name="cloud-stt", text=TEXT, locality=Locality.CLOUD)
    synthesizer = FakeSynthesizer(name="cloud-tts", voice="voice-a", locality=Locality.CLOUD)
    prices = {
        ("cloud-stt", provider.model): UnitPrices(per_audio_second=PER_S),
        ("cloud-tts", synthesizer.model): UnitPrices(per_character=PER_CHAR),
    }
    server = GatewayServer(settings, providers=[provider, synthesizer], prices=prices)
    port = await server.start()
    await server.wait_ready(10)
    target = f"127.0.0.1:{port}"
    async with grpc.aio.insecure_channel(target) as channel:
        yield Gateway(target, channel, provider, synthesizer)
    await server.stop(5)


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    """Two seconds of a 16 kHz tone in a WAV file."""
    path = tmp_path / "tone.wav"
    path.write_bytes(encode(tone(2.0, hz=440.0), 16_000, "wav"))
    return path


async def test_node_transcribes_a_wav_with_a_bearer_key(node, gateway, wav):
    calls = gateway.provider.calls
    request_id = f"node-{uuid.uuid4().hex[:12]}"
    chosen = await run_node(node, "transcribe.mjs", gateway.target, ACME, str(wav), request_id)
    reply, trailers = chosen["reply"], chosen["trailers"]
    assert reply["text"] == TEXT
    assert reply["duration_s"] == pytest.approx(2.0)
    route = reply["route"]
    assert (route["provider"], route["model"], route["locality"]) == (
        "cloud-stt",
        gateway.provider.model,
        "LOCALITY_CLOUD",
    )
    assert (route["request_id"], route["cache_hit"]) == (request_id, False)
    assert Decimal(route["cost_usd"]) == PER_S * 2
    assert [(a["provider"], a["outcome"]) for a in route["attempts"]] == [("cloud-stt", "ok")]
    # The id comes back in the unary call's trailers, where a Node client's logs can pick it up.
    assert trailers["x-request-id"] == request_id
    assert "x-request-id" not in chosen["headers"]
    assert gateway.provider.calls == calls + 1

    # Without one, the gateway chooses an id, and the trailer and the route agree on it.
    chosen_by_gateway = await run_node(node, "transcribe.mjs", gateway.target, ACME, str(wav))
    minted = chosen_by_gateway["trailers"]["x-request-id"]
    assert minted and minted != request_id
    assert chosen_by_gateway["reply"]["route"]["request_id"] == minted


async def test_node_follows_a_transcription_to_its_response(node, gateway, wav):
    calls = gateway.provider.calls
    followed = await run_node(node, "transcribe_progress.mjs", gateway.target, ACME, str(wav))
    assert followed["status"]["code"] == grpc.StatusCode.OK.value[0], followed["status"]
    *_, last = followed["events"]
    # A cloud provider answers all at once: its one event is the whole audio, with the response.
    assert last["audio_done_s"] == last["audio_total_s"] == pytest.approx(2.0)
    reply = last["response"]
    assert reply["text"] == TEXT
    assert (reply["route"]["provider"], Decimal(reply["route"]["cost_usd"])) == ("cloud-stt", PER_S * 2)
    assert all(e["response"] is None for e in followed["events"][:-1])
    assert gateway.provider.calls == calls + 1


async def test_node_streams_a_synthesis_that_plays_when_joined(node, gateway):
    sentences = ["Node streams speech.", "It plays as one file."]
    text = " ".join(sentences)
    request_id = f"node-tts-{uuid.uuid4().hex[:12]}"
    streamed = await run_node(
        node, "stream_synthesize.mjs", gateway.target, ACME, text, "AUDIO_FORMAT_OGG_OPUS", "0", request_id
    )
    assert streamed["status"]["code"] == grpc.StatusCode.OK.value[0], streamed["status"]
    assert streamed["headers"]["x-request-id"] == request_id
    chunks = streamed["chunks"]
    # One chunk per sentence as the engine speaks it, in order, then the last message with the route.
    assert [int(c["sequence"]) for c in chunks] == list(range(len(chunks)))
    spoken, last = chunks[:-1], chunks[-1]
    assert [text[c["text_start"] : c["text_end"]] for c in spoken] == sentences
    assert [c["start_s"] for c in spoken] == pytest.approx([0.0, 0.5], abs=0.01)
    assert {(c["mime_type"], c["sample_rate"], c["voice"]) for c in chunks} == {
        ("audio/ogg;codecs=opus", 16_000, "voice-a")
    }
    assert not any(c["voice_may_change"] for c in chunks)
    assert all(c["route"] is None for c in spoken)
    route = last["route"]
    assert (route["provider"], route["request_id"], route["cache_hit"]) == ("cloud-tts", request_id, False)
    assert last["characters"] == sum(len(s) for s in sentences)
    assert Decimal(route["cost_usd"]) == PER_CHAR * last["characters"]
    assert [(a["provider"], a["outcome"]) for a in route["attempts"]] == [("cloud-tts", "ok")]

    # Joined as a Node caller writes them to a file, the chunks are one Ogg/Opus stream: two 0.5 s tones.
    joined = base64.b64decode(streamed["audio"])
    assert sum(c["audio_bytes"] for c in chunks) == len(joined)
    samples, rate, container = decode_pyav(joined, pb.AUDIO_FORMAT_OGG_OPUS, 16_000)
    assert container == "ogg"  # libopus decodes at 48 kHz whatever rate it was encoded at
    assert samples.size / rate == pytest.approx(1.0, abs=0.03)
    assert np.abs(samples).max() > 1000  # a tone, not silence


async def test_node_is_told_which_rates_an_encoding_takes(node, gateway):
    refused = await run_node(
        node, "stream_synthesize.mjs", gateway.target, ACME, "Hi.", "AUDIO_FORMAT_OGG_OPUS", "44100"
    )
    assert refused["chunks"] == []
    assert refused["status"]["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    details = refused["status"]["details"]
    assert "sample_rate 44100 is not supported by opus; use one of 8000, 12000" in details


async def find_from_python(gateway: Gateway, api_key: str, request_id: str, records: int) -> None:
    """Waits until FindRecords returns ``records`` records, so the Node calls after it see them all."""
    stub = reports_grpc.CostReportsStub(gateway.channel)
    found = 0
    for _ in range(100):
        reply = await stub.FindRecords(
            reports_pb.FindRecordsRequest(request_id=request_id),
            metadata=(("authorization", f"Bearer {api_key}"),),
        )
        found = len(reply.records)
        if found >= records:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the ledger holds {found} records under {request_id}, not {records}")


async def test_node_finds_the_records_sent_under_its_request_id(node, gateway, wav, tmp_path):
    request_id = f"node-find-{uuid.uuid4().hex[:12]}"
    # Two requests under one id: one from Node, one from the Python stub with a longer recording.
    sent = await run_node(node, "transcribe.mjs", gateway.target, ACME, str(wav), request_id)
    assert sent["reply"]["route"]["request_id"] == request_id
    await pb_grpc.AudioGatewayStub(gateway.channel).Transcribe(
        pb.TranscribeRequest(
            audio=common.Audio(content=encode(tone(3.0, hz=550.0), 16_000, "wav")),
            routing=common.RoutingOptions(cache=common.CACHE_MODE_BYPASS),
        ),
        metadata=(("authorization", f"Bearer {ACME}"), ("x-request-id", request_id)),
    )
    await find_from_python(gateway, ACME, request_id, records=4)

    found = await run_node(node, "find_records.mjs", gateway.target, ACME, request_id)
    records = found["reply"]["records"]
    assert {(r["tenant"], r["request_id"], r["operation"]) for r in records} == {
        ("acme", request_id, "transcribe")
    }
    assert sorted(r["kind"] for r in records) == ["attempt", "attempt", "request", "request"]
    assert len({r["request_key"] for r in records}) == 2
    assert len({r["record_id"] for r in records}) == 4
    requests = [r for r in records if r["kind"] == "request"]
    # Oldest first: Node's 2 s request, then Python's 3 s one, each priced from the audio it carried.
    assert [Decimal(r["cost_usd"]) for r in requests] == [PER_S * 2, PER_S * 3]
    assert {(r["provider"], r["locality"], r["outcome"]) for r in records} == {("cloud-stt", "cloud", "ok")}
    assert [r["timestamp"] for r in records] == sorted(r["timestamp"] for r in records)

    # Another tenant finds nothing under the same id; an admin finds acme's by naming the tenant.
    assert (await run_node(node, "find_records.mjs", gateway.target, GLOBEX, request_id))["reply"] == {
        "records": []
    }
    as_admin = await run_node(node, "find_records.mjs", gateway.target, ADMIN, request_id, "acme")
    assert [r["record_id"] for r in as_admin["reply"]["records"]] == [r["record_id"] for r in records]
    # A tenant naming another tenant is refused, and so is an id no request could have carried.
    denied = await run_node(node, "find_records.mjs", gateway.target, GLOBEX, request_id, "acme")
    assert denied["error"]["code"] == grpc.StatusCode.PERMISSION_DENIED.value[0]
    bad_id = await run_node(node, "find_records.mjs", gateway.target, ACME, "not a request id!")
    assert bad_id["error"]["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "1 to 128 of A-Z a-z 0-9" in bad_id["error"]["details"]


async def test_node_gets_precise_statuses_for_a_missing_key_and_a_corrupt_body(node, gateway):
    calls = gateway.provider.calls
    refused = await run_node(node, "refused.mjs", gateway.target, ACME)
    assert refused["no_key"] == {
        "code": grpc.StatusCode.UNAUTHENTICATED.value[0],
        "details": "missing API key: send it as 'authorization: Bearer <key>' metadata",
    }
    assert refused["unknown_key"] == {
        "code": grpc.StatusCode.UNAUTHENTICATED.value[0],
        "details": "unknown API key",
    }
    malformed = refused["malformed"]
    assert malformed["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0], malformed
    assert malformed["details"].startswith("the request is not a valid gateway.api.v1.TranscribeRequest")
    assert "encode it with the message types of this service's .proto" in malformed["details"]
    assert gateway.provider.calls == calls


async def test_node_lists_the_gateways_services_by_reflection(node, gateway):
    listed = await run_node(node, "list_services.mjs", gateway.target, "gateway.api.v1.CostReports")
    assert listed["error"] is None
    assert sorted(listed["services"]) == [
        "gateway.api.v1.AudioGateway",
        "gateway.api.v1.CostReports",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ]
    # Enough to build a client with no .proto at hand: the defining file first, then what it imports.
    assert listed["files"][0] == "gateway/api/v1/cost_reports.proto"


def test_the_vendored_reflection_proto_declares_what_the_server_serves(tmp_path):
    """The reflection.proto vendored for Node declares grpcio-reflection's messages and service."""
    out = tmp_path / "reflection.pb"
    subprocess.run(
        [
            *(sys.executable, "-m", "grpc_tools.protoc", f"-I{NODE_DIR / 'protos'}"),
            *(f"--descriptor_set_out={out}", "grpc/reflection/v1alpha/reflection.proto"),
        ],
        check=True,
    )
    (ours,) = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    served = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(served)
    for message in ours.message_type:
        for field in message.field:
            field.ClearField("json_name")  # protoc adds it; the compiled-in descriptor leaves it out
    assert ours.package == served.package
    assert list(ours.message_type) == list(served.message_type)
    assert list(ours.service) == list(served.service)


# -- StreamTranscribe --------------------------------------------------------------------------------------

STREAM_WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]
STREAM_PER_S = Decimal("0.0001")


async def test_node_streams_a_wav_and_gets_interim_and_final_results(node, redis_url, tmp_path):
    from providers.testing import FakeStreamingTranscriber, tone_words_pcm

    policies = tmp_path / "policies.yaml"
    policies.write_text(
        "policies:\n  - name: default\n"
        f"tenants:\n  - {{name: acme, key_sha256: {hash_key(ACME)}, default_policy: default}}\n"
    )
    settings = local_settings()
    settings.redis.url = redis_url
    settings.redis.key_prefix = f"test:{uuid.uuid4().hex}:"
    settings.policies_file = policies
    provider = FakeStreamingTranscriber(name="cloud-stream", locality=Locality.CLOUD)
    prices = {("cloud-stream", provider.model): UnitPrices(per_audio_second=STREAM_PER_S)}
    pcm = tone_words_pcm(STREAM_WORDS, 16_000, pause_after=(2,))
    wav = tmp_path / "words.wav"
    with wave.open(str(wav), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16_000)
        out.writeframes(pcm)
    seconds = len(pcm) / 2 / 16_000
    server = GatewayServer(settings, providers=[provider], prices=prices)
    port = await server.start()
    await server.wait_ready(10)
    try:
        request_id = f"node-stream-{uuid.uuid4().hex[:12]}"
        seen = await run_node(node, "stream_transcribe.mjs", f"127.0.0.1:{port}", ACME, str(wav), request_id)
    finally:
        await server.stop(5)
    assert "error" not in seen, seen["error"]
    responses = seen["responses"]
    assert responses[0]["route"]["provider"] == "cloud-stream"
    assert responses[0]["route"]["locality"] == "LOCALITY_CLOUD"
    results = [r["result"] for r in responses if r.get("response") == "result"]
    finals = [r for r in results if r["is_final"]]
    interims = [r for r in results if not r["is_final"]]
    assert [f["alternatives"][0]["text"] for f in finals] == ["alpha bravo charlie", "delta echo foxtrot"]
    assert [w["text"] for f in finals for w in f["alternatives"][0]["words"]] == STREAM_WORDS
    assert len(interims) >= len(STREAM_WORDS)
    assert all(r["alternatives"][0]["text"].split()[0] in ("alpha", "delta") for r in interims)
    last = responses[-1]
    assert last["billed_seconds"] == pytest.approx(seconds)
    route = last["route_info"]
    assert (route["provider"], route["request_id"]) == ("cloud-stream", request_id)
    assert Decimal(route["cost_usd"]) == STREAM_PER_S * Decimal(str(seconds))
    assert [(a["provider"], a["outcome"]) for a in route["attempts"]] == [("cloud-stream", "ok")]
    assert seen["headers"]["x-request-id"] == request_id
    assert provider.streams[0].received_samples * 2 == len(pcm)
