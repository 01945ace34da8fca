"""Speech and chat over HTTP share gRPC's pipeline: one ledger record each at the same price, one cache,
the same budgets; and the OpenAPI document describes both endpoints. Fake engines with known prices, the
real Redis, the official openai SDK."""

from __future__ import annotations

import asyncio
import base64
import json
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import grpc
import httpx
import httpx2
import openai
import pytest
from openapi_spec_validator import validate

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc as pb_grpc
from gateway.api.v1 import common_pb2 as common
from gateway.api.v1 import cost_reports_pb2 as reports_pb
from gateway.api.v1 import cost_reports_pb2_grpc as reports_grpc
from gateway.core.errors import ProviderUnavailable
from gateway.core.provider_types import Locality, Speech, SynthesizeOptions
from gateway.grpc.server import GatewayServer
from gateway.http.server import HttpDoor, http_doors
from gateway.money.pricing import UnitPrices
from policies.loader import hash_key
from providers.testing import FakeAnswerer, FakeSynthesizer, FakeTranscriber
from tests.audio_files import encode, tone
from tests.conftest import local_settings

ACME, FRUGAL, ADMIN = "acme-speech-key", "frugal-speech-key", "ops-speech-key"
PER_CHAR = Decimal("0.00002")
PER_S = Decimal("0.0001")
PER_TOKEN = Decimal("0.000001")


class SpeaksOnce(FakeSynthesizer):
    """Speaks the first sentence it is given, then fails: a vendor that dies mid-stream."""

    async def synthesize(self, text: str, options: SynthesizeOptions, timeout_s: float | None) -> Speech:
        if self.calls:
            self.fail_with = ProviderUnavailable(self.name, "connection reset")
        return await super().synthesize(text, options, timeout_s)


@dataclass
class Gateway:
    base_url: str
    channel: grpc.aio.Channel
    tts: FakeSynthesizer
    llm: FakeAnswerer
    broken: SpeaksOnce

    def client(self, key: str = ACME, request_id: str | None = None) -> openai.AsyncOpenAI:
        headers = {"x-request-id": request_id} if request_id else None
        return openai.AsyncOpenAI(base_url=self.base_url, api_key=key, max_retries=0, default_headers=headers)


@pytest.fixture(scope="module")
async def gw(redis_url: str) -> AsyncIterator[Gateway]:
    policies = Path(tempfile.mkdtemp(prefix="gw-http-ledger-")) / "policies.yaml"
    tenant = "  - {{name: {0}, key_sha256: {1}, default_policy: default{2}}}\n"
    policies.write_text(
        "policies:\n  - name: default\ntenants:\n"
        + tenant.format("acme", hash_key(ACME), "")
        + tenant.format("frugal", hash_key(FRUGAL), ", monthly_budget_usd: 0.0000001")
        + tenant.format("ops", hash_key(ADMIN), ", admin: true")
    )
    settings = local_settings(max_audio_bytes=2_000_000)
    settings.policies_file = policies
    settings.redis.url = redis_url
    settings.redis.key_prefix = f"test-http-ledger:{uuid.uuid4().hex}:"
    settings.ledger.flush_interval_s = 0.05
    settings.http.host, settings.http.port = "127.0.0.1", 0
    # Cloud fakes: billed by their units at the prices below (a local engine bills its compute time).
    cloud = Locality.CLOUD
    stt, tts, llm = (
        FakeTranscriber(locality=cloud),
        FakeSynthesizer(locality=cloud),
        FakeAnswerer(locality=cloud),
    )
    prices = {
        (stt.name, stt.model): UnitPrices(per_audio_second=PER_S),
        (tts.name, tts.model): UnitPrices(per_character=PER_CHAR),
        (llm.name, llm.model): UnitPrices(per_input_token=PER_TOKEN, per_output_token=PER_TOKEN),
    }
    broken = SpeaksOnce(name="broken-tts", locality=cloud)
    slow = FakeSynthesizer(name="slow-tts", locality=cloud, delay_s=0.5)
    for fake in (broken, slow):
        prices[(fake.name, fake.model)] = UnitPrices(per_character=PER_CHAR)
    server = GatewayServer(
        settings, providers=[stt, tts, llm, broken, slow], prices=prices, doors=http_doors(settings)
    )
    port = await server.start()
    await server.wait_ready(10)
    door = server.doors[0]
    assert isinstance(door, HttpDoor)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield Gateway(f"http://127.0.0.1:{door.port}/v1", channel, tts, llm, broken)
    await server.stop(5)


async def _request_record(gw: Gateway, request_id: str) -> reports_pb.LedgerRecord:
    stub = reports_grpc.CostReportsStub(gw.channel)
    for _ in range(100):
        reply = await stub.FindRecords(
            reports_pb.FindRecordsRequest(request_id=request_id, tenant="acme"),
            metadata=(("authorization", f"Bearer {ADMIN}"),),
        )
        records = [r for r in reply.records if r.kind == "request"]
        if records:
            [record] = records
            return record
        await asyncio.sleep(0.05)
    raise AssertionError(f"no request record for {request_id}")


def _acme(request_id: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {ACME}"), ("x-request-id", request_id))


async def test_speech_over_http_is_billed_once_and_cached_for_grpc(gw):
    text = f"The ledger sees speech from both doors {uuid.uuid4().hex[:8]}."
    calls = gw.tts.calls
    async with (
        gw.client(request_id="speech-http-1") as client,
        client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input=text, response_format="mp3"
        ) as response,
    ):
        streamed = await response.read()
    reply = await pb_grpc.AudioGatewayStub(gw.channel).Synthesize(
        pb.SynthesizeRequest(text=text, format=pb.AUDIO_FORMAT_MP3), metadata=_acme("speech-grpc-1")
    )
    assert gw.tts.calls == calls + 1  # the second door's request never reached the engine
    assert reply.route.cache_hit and reply.audio == streamed
    http_record = await _request_record(gw, "speech-http-1")
    grpc_record = await _request_record(gw, "speech-grpc-1")
    cost = Decimal(http_record.cost_usd)
    assert cost == PER_CHAR * len(text)
    assert (http_record.operation, http_record.provider, http_record.cache_hit) == (
        "synthesize",
        "fake-tts",
        False,
    )
    assert (
        grpc_record.cache_hit
        and Decimal(grpc_record.cost_usd) == 0
        and Decimal(grpc_record.saved_usd) == cost
    )


async def test_chat_over_http_is_billed_once_and_cached_for_grpc(gw):
    clip = encode(tone(1.5, hz=523.0), 16_000, "wav")
    question = f"What is said here? {uuid.uuid4().hex[:8]}"
    audio_part = {
        "type": "input_audio",
        "input_audio": {"data": base64.b64encode(clip).decode(), "format": "wav"},
    }
    async with gw.client(request_id="chat-http-1") as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o-audio-preview",
            messages=[{"role": "user", "content": [{"type": "text", "text": question}, audio_part]}],
        )
    completion = raw.parse()
    assert completion.choices[0].message.content == gw.llm.answer_text
    assert gw.llm.last_question == question
    reply = await pb_grpc.AudioGatewayStub(gw.channel).Understand(
        pb.UnderstandRequest(audio=common.Audio(content=clip, mime_type="audio/wav"), question=question),
        metadata=_acme("chat-grpc-1"),
    )
    assert reply.route.cache_hit and reply.answer == completion.choices[0].message.content
    http_record = await _request_record(gw, "chat-http-1")
    grpc_record = await _request_record(gw, "chat-grpc-1")
    cost = Decimal(http_record.cost_usd)
    assert cost > 0 and Decimal(raw.headers["x-gateway-cost-usd"]) == cost
    # The usage the SDK reads is the answerer's tokens, priced here at PER_TOKEN each.
    assert completion.usage is not None
    tokens = completion.usage.total_tokens
    assert cost == PER_S * Decimal("1.5") + PER_TOKEN * tokens
    assert grpc_record.cache_hit and Decimal(grpc_record.saved_usd) == cost


async def test_a_tenant_over_budget_gets_429_with_retry_after(gw):
    async with gw.client(FRUGAL) as client:
        with pytest.raises(openai.RateLimitError) as caught:
            await client.audio.speech.create(model="tts-1", voice="alloy", input="Too dear for me.")
    assert int(caught.value.response.headers["retry-after"]) >= 1
    assert "budget" in caught.value.body["message"]


async def test_openapi_describes_speech_and_chat(gw):
    async with httpx.AsyncClient() as http:
        document = (await http.get(gw.base_url.removesuffix("/v1") + "/openapi.json")).json()
    validate(document)
    speech = document["paths"]["/v1/audio/speech"]["post"]
    body = speech["requestBody"]["content"]["application/json"]["schema"]
    assert "$ref" in body or {"model", "input", "voice"} <= set(body["properties"])
    chat = document["paths"]["/v1/chat/completions"]["post"]
    schema = chat["requestBody"]["content"]["application/json"]["schema"]
    assert {"model", "messages", "stream"} <= set(schema["properties"])
    assert "$ref" not in str(schema)
    assert {"400", "401", "429"} <= set(chat["responses"]) and "413" in speech["responses"]


async def test_a_failure_after_audio_went_out_breaks_the_body_or_ends_the_events_with_an_error(gw):
    text = "The first sentence is spoken. The second never comes."
    gw.broken.calls, gw.broken.fail_with = 0, None
    async with gw.client() as client:
        # The SDK reads a streamed body with its transport, whose errors it does not wrap.
        with pytest.raises(httpx2.RemoteProtocolError, match="incomplete chunked read"):
            async with client.audio.speech.with_streaming_response.create(
                model="provider:broken-tts", voice="fake-voice", input=text, response_format="wav"
            ) as response:
                assert response.status_code == 200
                await response.read()
        gw.broken.calls, gw.broken.fail_with = 0, None
        events = []
        async with client.audio.speech.with_streaming_response.create(
            model="provider:broken-tts",
            voice="fake-voice",
            input=text,
            response_format="wav",
            stream_format="sse",
        ) as response:
            async for line in response.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line.removeprefix("data: ")))
    assert [e["type"] for e in events] == ["speech.audio.delta", "error"]
    assert events[-1]["error"]["type"] and "broken-tts" in events[-1]["error"]["message"]


async def test_a_caller_who_leaves_mid_speech_stops_the_engine_and_the_ledger_says_so(gw):
    text = "One is spoken. Two is cut short. Three is never reached. Four neither."
    async with (
        gw.client(request_id="speech-left-1") as client,
        client.audio.speech.with_streaming_response.create(
            model="provider:slow-tts", voice="fake-voice", input=text, response_format="pcm"
        ) as response,
    ):
        async for piece in response.iter_bytes():
            assert piece
            break  # the first sentence's audio is enough: hang up
    stub = reports_grpc.CostReportsStub(gw.channel)
    for _ in range(100):
        reply = await stub.FindRecords(
            reports_pb.FindRecordsRequest(request_id="speech-left-1", tenant="acme"),
            metadata=(("authorization", f"Bearer {ADMIN}"),),
        )
        if any(r.kind == "request" for r in reply.records):
            break
        await asyncio.sleep(0.05)
    [request] = [r for r in reply.records if r.kind == "request"]
    outcomes = sorted(r.outcome for r in reply.records if r.kind == "attempt")
    assert "cancelled" in outcomes, outcomes
    # Billed for what was spoken before the caller left, never for the sentences after.
    assert Decimal(request.cost_usd) < PER_CHAR * len(text)


@pytest.mark.parametrize("path", ["/audio/speech", "/chat/completions"])
async def test_json_bodies_are_read_after_the_key_and_within_a_limit(gw, path):
    huge = b'{"model": "tts-1", "voice": "alloy", "input": "' + b"a" * 9_000_000 + b'"}'
    async with httpx.AsyncClient(timeout=30) as http:
        unknown = await http.post(
            gw.base_url + path,
            content=huge,
            headers={"authorization": "Bearer nope", "content-type": "application/json"},
        )
        too_large = await http.post(
            gw.base_url + path,
            content=huge,
            headers={"authorization": f"Bearer {ACME}", "content-type": "application/json"},
        )
        not_json = await http.post(
            gw.base_url + path, content=b"model=tts-1", headers={"authorization": f"Bearer {ACME}"}
        )
    assert unknown.status_code == 401
    assert too_large.status_code == 413 and "GATEWAY_LIMITS__MAX_" in too_large.json()["error"]["message"]
    assert not_json.status_code == 400 and "application/json" in not_json.json()["error"]["message"]
