"""StreamTranscribe end to end with the real vendor adapters behind the session.

The gateway loads its streaming vendors from a providers file, as it would in production; each entry points
its vendor's real SDK at a websocket wire fake on 127.0.0.1. The audio is tone words
(providers.testing.tone_words_pcm). The OpenAI Realtime fake listens: it transcribes the tone words in the
audio it was sent, so a failover that lost or repeated audio would show up as lost or repeated words. The
Deepgram and AssemblyAI fakes read a script on their audio timeline, written here from the same layout of
words, so they "hear" each word when its audio has reached them. Audio is streamed as fast as the gateway
takes it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc as pb_grpc
from gateway.api.v1 import common_pb2 as common
from gateway.grpc.server import GatewayServer
from gateway.ledger.store import LedgerRecord
from policies.loader import hash_key
from providers.base import Provider
from providers.config import load_providers_file
from providers.registry import build_remote_providers
from providers.testing import FakeStreamingTranscriber, hear_tone_words, tone_words_pcm
from tests.conftest import local_settings
from tests.fakes.assemblyai_live import FakeAssemblyAILive
from tests.fakes.deepgram_live import FakeDeepgramLive
from tests.fakes.openai_realtime_server import FakeOpenAIRealtime
from tests.fakes.ws_base import ScriptWord, WsFake
from tests.grpc.test_stream_transcribe import Outcome, audio_messages, linear16

TENANT_KEY = "vendor-stream-tenant"
KEY_ENV = "AUDIO_GATEWAY_TEST_REALTIME_KEY"
OPENAI_KEY = "sk-stream-vendors-0123456789"
DEEPGRAM_KEY = "dg-stream-vendors-key"
ASSEMBLYAI_KEY = "aai-stream-vendors-key"
DEEPGRAM_KEY_ENV = "AUDIO_GATEWAY_TEST_DEEPGRAM_KEY"
ASSEMBLYAI_KEY_ENV = "AUDIO_GATEWAY_TEST_ASSEMBLYAI_KEY"
RATE = 16_000
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india"]
LONG = [*WORDS, "juliet", "kilo", "lima", "mike", "november", "oscar"]


def config(**overrides: object) -> pb.StreamTranscribeConfig:
    # OpenAI's Realtime sessions time no words.
    return linear16(word_timestamps=False, **overrides)


WORD_S, GAP_S, PAUSE_S = 0.3, 0.15, 1.0


def speech(words: Sequence[str]) -> bytes:
    """Tone words, an utterance of three at a time, each utterance followed by a 1 s pause."""
    return tone_words_pcm(
        words, RATE, word_s=WORD_S, gap_s=GAP_S, pause_after=range(2, len(words), 3), pause_s=PAUSE_S
    )


def script(words: Sequence[str]) -> tuple[tuple[ScriptWord, ...], ...]:
    """What :func:`speech` says and when, as the scripted fakes read it: utterances of three words."""
    utterances: list[tuple[ScriptWord, ...]] = []
    at = 0.0
    for start in range(0, len(words), 3):
        utterance = []
        for index, word in enumerate(words[start : start + 3], start):
            utterance.append(ScriptWord(word, word, round(at, 3), round(at + WORD_S, 3)))
            at += WORD_S + (PAUSE_S if index % 3 == 2 else GAP_S)
        utterances.append(tuple(utterance))
    return tuple(utterances)


@dataclass
class Vendors:
    openai: FakeOpenAIRealtime
    openai_second: FakeOpenAIRealtime
    deepgram: FakeDeepgramLive
    assemblyai: FakeAssemblyAILive

    def entry(self, vendor: str, name: str | None = None) -> dict[str, Any]:
        """A providers-file entry for ``vendor`` ("openai", "openai_second", "deepgram", "assemblyai")."""
        if vendor == "deepgram":
            return {
                "name": name or "deepgram-live",
                "kind": "deepgram",
                "operation": "transcribe",
                "model": "nova-3",
                "base_url": self.deepgram.url,
                "api_key_env": DEEPGRAM_KEY_ENV,
                "timeout_s": 10,
                "options": {"stream_stall_s": 2.0},
            }
        if vendor == "assemblyai":
            return {
                "name": name or "assemblyai-live",
                "kind": "assemblyai",
                "operation": "transcribe",
                "model": "universal",
                "base_url": "https://api.assemblyai.invalid",
                "api_key_env": ASSEMBLYAI_KEY_ENV,
                "timeout_s": 10,
                "options": {"streaming_url": self.assemblyai.url, "stream_stall_s": 2.0},
            }
        model = "gpt-4o-mini-transcribe" if vendor == "openai" else "gpt-4o-transcribe"
        return openai_entry(name or f"{vendor.replace('_', '-')}-live", model, getattr(self, vendor))

    def received_s(self, vendor: str) -> list[float]:
        """The seconds of audio each connection to ``vendor``'s fake received."""
        fake = getattr(self, vendor)
        if isinstance(fake, WsFake):
            return [session.heard_s for session in fake.sessions]
        return [conn.audio_s for conn in fake.connections]


@pytest.fixture(scope="module")
def vendors() -> Iterator[Vendors]:
    with (
        FakeOpenAIRealtime(OPENAI_KEY) as first,
        FakeOpenAIRealtime(OPENAI_KEY) as second,
        FakeDeepgramLive(DEEPGRAM_KEY) as deepgram,
        FakeAssemblyAILive(ASSEMBLYAI_KEY) as assemblyai,
    ):
        yield Vendors(first, second, deepgram, assemblyai)


@pytest.fixture(autouse=True)
def _listening(vendors: Vendors, monkeypatch) -> None:
    monkeypatch.setenv(KEY_ENV, OPENAI_KEY)
    monkeypatch.setenv(DEEPGRAM_KEY_ENV, DEEPGRAM_KEY)
    monkeypatch.setenv(ASSEMBLYAI_KEY_ENV, ASSEMBLYAI_KEY)
    for fake in (vendors.openai, vendors.openai_second):
        fake.reset()
        fake.hear = hear_tone_words
        # Deltas as fast as the words are heard: every interim names only words already spoken.
        fake.seconds_per_word = 0.45
    for scripted in (vendors.deepgram, vendors.assemblyai):
        scripted.reset()


def openai_entry(name: str, model: str, fake: FakeOpenAIRealtime) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "openai",
        "operation": "transcribe",
        "model": model,
        "base_url": fake.base_url,
        "api_key_env": KEY_ENV,
        "timeout_s": 10,
        "options": {"realtime_stall_s": 2.0},
    }


@dataclass
class Gateway:
    server: GatewayServer
    stub: pb_grpc.AudioGatewayStub

    async def stream(self, config: pb.StreamTranscribeConfig, pcm: bytes, request_id: str = "") -> Outcome:
        metadata = [("authorization", f"Bearer {TENANT_KEY}")]
        if request_id:
            metadata.append(("x-request-id", request_id))
        messages = [pb.StreamTranscribeRequest(config=config), *audio_messages(pcm)]

        async def requests() -> AsyncIterator[pb.StreamTranscribeRequest]:
            for message in messages:
                yield message

        outcome = Outcome()
        call = self.stub.StreamTranscribe(requests(), metadata=tuple(metadata), timeout=30)
        try:
            async for response in call:
                outcome.responses.append(response)
        except grpc.aio.AioRpcError as exc:
            outcome.code, outcome.details = exc.code(), exc.details() or ""
        return outcome

    async def records(self, request_id: str) -> list[LedgerRecord]:
        for _ in range(100):
            found = await self.server.app.ledger.find("acme", request_id)
            if any(r.kind == "request" for r in found):
                return found
            await asyncio.sleep(0.05)
        raise AssertionError(f"no ledger records for {request_id}")


@asynccontextmanager
async def gateway(
    tmp_path: Path, entries: list[dict[str, Any]], redis_url: str, extra: Sequence[Provider] = ()
) -> AsyncIterator[Gateway]:
    policies = tmp_path / "policies.yaml"
    policies.write_text(
        "policies:\n  - {name: default}\n"
        f"tenants:\n  - {{name: acme, key_sha256: {hash_key(TENANT_KEY)}, default_policy: default}}\n"
    )
    providers_file = tmp_path / "providers.yaml"
    providers_file.write_text(yaml.safe_dump({"providers": entries}), encoding="utf-8")
    settings = local_settings()
    settings.whisper.enabled = settings.piper.enabled = settings.llama.enabled = False
    settings.policies_file = policies
    settings.providers_file = providers_file
    settings.redis.url = redis_url
    settings.redis.key_prefix = f"test:{uuid.uuid4().hex}:"
    settings.ledger.flush_interval_s = 0.05
    # The vendors come from the providers file, built by the same code the server uses; ``extra`` adds
    # in-process engines next to them.
    providers = [*build_remote_providers(load_providers_file(providers_file)), *extra] if extra else None
    server = GatewayServer(settings, providers=providers)
    port = await server.start()
    await server.wait_ready(10)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield Gateway(server, pb_grpc.AudioGatewayStub(channel))
    finally:
        await server.stop(5)


def seconds(pcm: bytes) -> float:
    return len(pcm) / 2 / RATE


# -- one vendor --------------------------------------------------------------------------------------------


async def test_openai_realtime_streams_a_wav_through_the_gateway(tmp_path, redis_url, vendors):
    fake = vendors.openai
    entries = [openai_entry("openai-live", "gpt-4o-mini-transcribe", fake)]
    pcm = speech(WORDS)
    async with gateway(tmp_path, entries, redis_url) as gw:
        request_id = f"vendor-{uuid.uuid4().hex[:8]}"
        out = await gw.stream(config(), pcm, request_id)
        records = await gw.records(request_id)
    assert out.code == grpc.StatusCode.OK, out.details
    first = out.responses[0].route
    assert (first.provider, first.model, first.locality) == (
        "openai-live",
        "gpt-4o-mini-transcribe",
        common.LOCALITY_CLOUD,
    )
    assert out.transcript == WORDS
    assert [f.alternatives[0].text for f in out.finals] == [
        " ".join(WORDS[i : i + 3]) for i in range(0, len(WORDS), 3)
    ]
    # Interim results are the vendor's deltas, each a prefix of the utterance it belongs to.
    assert len(out.interims) >= len(WORDS) // 2
    utterances = [f.alternatives[0].text for f in out.finals]
    assert all(any(u.startswith(i.alternatives[0].text) for u in utterances) for i in out.interims)
    assert len(out.events(pb.SPEECH_EVENT_SPEECH_BEGIN)) == 3
    # Finals are timed on the caller's timeline, in order, inside the audio.
    ends = [f.result_end_time_s for f in out.finals]
    assert ends == sorted(ends) and 0 < ends[-1] <= seconds(pcm) + 0.01
    summary = out.summary
    assert summary.billed_seconds == pytest.approx(seconds(pcm))
    assert [(a.provider, a.outcome) for a in summary.route_info.attempts] == [("openai-live", "ok")]
    # The vendor heard all of it, resampled to its 24 kHz, over one authenticated transcription session.
    conn = fake.connections[0]
    assert conn.audio_s == pytest.approx(seconds(pcm), abs=0.01)
    assert conn.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert conn.sessions[0]["type"] == "transcription"
    assert conn.closed_by_client
    assert sorted(r.kind for r in records) == ["attempt", "request"]
    request = next(r for r in records if r.kind == "request")
    assert request.units.audio_seconds == pytest.approx(summary.billed_seconds)
    assert request.cost_usd == Decimal(summary.route_info.cost_usd) > 0


@pytest.mark.parametrize("vendor", ["deepgram", "assemblyai"])
async def test_scripted_vendors_stream_a_wav_through_the_gateway(tmp_path, redis_url, vendors, vendor):
    fake = getattr(vendors, vendor)
    fake.script = script(WORDS)
    entry = vendors.entry(vendor)
    pcm = speech(WORDS)
    async with gateway(tmp_path, [entry], redis_url) as gw:
        request_id = f"vendor-{uuid.uuid4().hex[:8]}"
        out = await gw.stream(config(), pcm, request_id)
        records = await gw.records(request_id)
    assert out.code == grpc.StatusCode.OK, out.details
    assert out.responses[0].route.provider == entry["name"]
    assert out.responses[0].route.locality == common.LOCALITY_CLOUD
    assert out.transcript == WORDS
    spoken = [f.alternatives[0].text for f in out.finals if f.alternatives[0].text]
    assert spoken == [" ".join(WORDS[i : i + 3]) for i in range(0, len(WORDS), 3)]
    assert out.interims
    # Each final is timed where its words are in the caller's audio.
    for final, utterance in zip(
        (f for f in out.finals if f.alternatives[0].text), script(WORDS), strict=True
    ):
        assert final.result_end_time_s >= utterance[-1].end - 0.01
    summary = out.summary
    assert summary.billed_seconds == pytest.approx(seconds(pcm))
    assert [(a.provider, a.outcome) for a in summary.route_info.attempts] == [(entry["name"], "ok")]
    assert vendors.received_s(vendor) == [pytest.approx(seconds(pcm), abs=0.01)]
    assert sorted(r.kind for r in records) == ["attempt", "request"]
    request = next(r for r in records if r.kind == "request")
    assert request.cost_usd == Decimal(summary.route_info.cost_usd) > 0


# -- failover ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("first", ["openai", "deepgram", "assemblyai"])
async def test_a_vendor_dropping_after_3_s_fails_over_with_no_lost_words(tmp_path, redis_url, vendors, first):
    dropping = getattr(vendors, first)
    dropping.drop_after_s = 3.0
    if isinstance(dropping, WsFake):
        dropping.script = script(LONG)
    # The listening OpenAI fake takes over: its words come only from the audio the gateway replays and
    # sends on. The entries' own prices rank the dropping vendor first (the default objective is cost).
    entries = [
        {**vendors.entry(first, "live-first"), "prices": {"per_audio_second": "0.00001"}},
        {**vendors.entry("openai_second", "live-second"), "prices": {"per_audio_second": "0.001"}},
    ]
    pcm = speech(LONG)
    async with gateway(tmp_path, entries, redis_url) as gw:
        request_id = f"failover-{uuid.uuid4().hex[:8]}"
        out = await gw.stream(config(), pcm, request_id)
        records = await gw.records(request_id)
    assert out.code == grpc.StatusCode.OK, out.details
    # One continuous transcript: every word once, in order, across the switch.
    assert out.transcript == LONG
    changed = out.events(pb.SPEECH_EVENT_PROVIDER_CHANGED)
    assert len(changed) == 1 and changed[0].route.provider == "live-second"
    replay_from = changed[0].event.time_s
    assert 0 < replay_from < 3.0
    # The first vendor heard 3 s (and whatever crossed the mark with it); the second everything from the
    # replay point on, and nothing before it.
    [dropped_at] = vendors.received_s(first)
    assert 3.0 <= dropped_at < seconds(pcm) - 3
    assert vendors.received_s("openai_second") == [pytest.approx(seconds(pcm) - replay_from, abs=0.02)]
    finals_start = [f.result_start_time_s for f in out.finals]
    assert finals_start == sorted(finals_start)
    summary = out.summary
    assert [(a.provider, a.outcome) for a in summary.route_info.attempts] == [
        ("live-first", "unavailable"),
        ("live-second", "ok"),
    ]
    assert summary.billed_seconds == pytest.approx(seconds(pcm))
    attempts = [r for r in records if r.kind == "attempt"]
    assert sorted((r.provider, r.outcome) for r in attempts) == [
        ("live-first", "unavailable"),
        ("live-second", "ok"),
    ]
    # The vendor that finished is billed all it was sent, the replay included. The one that dropped is
    # billed only as far as its answers reached: streamed faster than real time, more audio than it read
    # can be in flight when the drop is noticed, and that may or may not be on its bill (kept apart).
    billed = {r.provider: r for r in attempts}
    assert billed["live-second"].units.audio_seconds == pytest.approx(seconds(pcm) - replay_from, abs=0.02)
    assert not billed["live-second"].billing_unknown
    dropped = billed["live-first"]
    sent_s = dropped.units.audio_seconds + float(dropped.possibly_billed_usd / Decimal("0.00001"))
    assert dropped_at - 0.01 <= sent_s <= seconds(pcm) + 0.01
    # Its answers reached into the audio it read (past the first utterance), not to all that was sent.
    assert 1.0 < dropped.units.audio_seconds < dropped_at and dropped.billing_unknown
    assert dropped.cost_usd == (Decimal("0.00001") * Decimal(repr(dropped.units.audio_seconds))).quantize(
        Decimal("0.000000001")
    )
    request = next(r for r in records if r.kind == "request")
    assert (request.provider, request.outcome) == ("live-second", "ok")


# -- privacy -----------------------------------------------------------------------------------------------


async def test_local_only_streams_never_connect_to_a_cloud_vendor(tmp_path, redis_url, vendors):
    vendors.deepgram.script = vendors.assemblyai.script = script(WORDS[:6])
    # Free cloud vendors, so only the privacy rule keeps them out.
    free = {"per_audio_second": "0"}
    entries = [
        {**vendors.entry(v), "prices": free} for v in ("openai", "openai_second", "deepgram", "assemblyai")
    ]
    local = FakeStreamingTranscriber(name="local-stream")
    pcm = speech(WORDS[:6])
    local_only = config(routing=common.RoutingOptions(privacy=common.PRIVACY_LOCAL_ONLY))
    async with gateway(tmp_path, entries, redis_url, extra=[local]) as gw:
        served = await gw.stream(local_only, pcm)
        # The only local engine drops mid-stream: failover must not reach for a cloud vendor either.
        local.fail_after_s = 2.0
        failed = await gw.stream(local_only, pcm)
        # The same gateway does reach every vendor when the caller pins it (the fakes are reachable).
        local.fail_after_s = None
        pinned = {
            entry["name"]: await gw.stream(config(routing=common.RoutingOptions(provider=entry["name"])), pcm)
            for entry in entries
        }
    assert served.code == grpc.StatusCode.OK, served.details
    assert served.transcript == WORDS[:6] and served.summary.route_info.provider == "local-stream"
    assert failed.code == grpc.StatusCode.UNAVAILABLE, failed.details
    for name, out in pinned.items():
        assert out.code == grpc.StatusCode.OK, (name, out.details)
        assert out.transcript == WORDS[:6], name
    # Only the pinned streams ever reached a vendor: one connection each, and not a handshake more.
    assert len(vendors.openai.connections) == len(vendors.openai_second.connections) == 1
    assert vendors.deepgram.handshakes == vendors.assemblyai.handshakes == 1
    assert len(vendors.deepgram.sessions) == len(vendors.assemblyai.sessions) == 1
